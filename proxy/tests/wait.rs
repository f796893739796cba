//! `weft-proxy wait` (the injected proxy's `postStart` hook without native sidecars) against
//! a tiny health server that turns ready, and against nothing.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `weft-proxy wait` with `args` and a clean view of the proxy's environment.
fn wait(args: &[&str], env: &[(&str, String)]) -> (Output, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft-proxy"));
    command
        .arg("wait")
        .args(args)
        .env_remove("WEFT_INSTANCE_IP")
        .env_remove("INSTANCE_IP")
        .env_remove("WEFT_HEALTH_PORT");
    for (key, value) in env {
        command.env(key, value);
    }
    let start = Instant::now();
    let out = command.output().expect("runs weft-proxy");
    (out, start.elapsed())
}

/// A health server on loopback: 503 to the first `not_ready` requests, then 200. Returns
/// its port and the count of requests.
fn health_server(not_ready: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let n = stream.read(&mut request).unwrap_or(0);
            assert!(
                request[..n].starts_with(b"GET /healthz/ready HTTP/1.1\r\n"),
                "{:?}",
                String::from_utf8_lossy(&request[..n])
            );
            let answer = if count.fetch_add(1, Ordering::SeqCst) < not_ready {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 16\r\n\r\nno listeners yet"
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nOK\n"
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, asked)
}

#[test]
fn wait_returns_once_the_proxy_turns_ready() {
    let (port, asked) = health_server(3);
    let (out, took) = wait(
        &["--timeout", "10s"],
        &[
            ("WEFT_INSTANCE_IP", "127.0.0.1".into()),
            ("WEFT_HEALTH_PORT", port.to_string()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the proxy is ready"), "{stdout}");
    assert_eq!(asked.load(Ordering::SeqCst), 4, "three 503s, then 200");
    // Three waits of 200 ms between the four requests.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn wait_times_out_when_nothing_listens() {
    // A port just freed: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let (out, took) = wait(
        &["--timeout", "700ms"],
        // Istio's variable when WEFT_INSTANCE_IP is not set.
        &[
            ("INSTANCE_IP", "127.0.0.1".into()),
            ("WEFT_HEALTH_PORT", port.to_string()),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let expected =
        format!("the proxy is not ready after 700ms: GET http://127.0.0.1:{port}/healthz/ready: ");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn wait_names_the_last_answer_and_a_bad_instance_ip() {
    let (port, _) = health_server(usize::MAX);
    let (out, _) = wait(
        &["--timeout", "300ms", "--instance-ip", "127.0.0.1"],
        &[("WEFT_HEALTH_PORT", port.to_string())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("HTTP/1.1 503 Service Unavailable: no listeners yet"),
        "{stderr}"
    );

    let (out, _) = wait(&["--timeout", "1s"], &[("INSTANCE_IP", "pod-ip".into())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("INSTANCE_IP \"pod-ip\" is not an IP address"),
        "{stderr}"
    );
}
