//! The `weftctl` binary's command line: help works, bad arguments fail with a clear message.
//! (Having an integration test also makes `cargo test --workspace` build the binary the
//! end-to-end tests run.)

use std::process::Command;

#[test]
fn help_lists_the_demo() {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("demo"), "{help}");
    assert!(help.contains("demo-app"), "{help}");
    assert!(help.contains("proxy-status"), "{help}");
    assert!(help.contains("proxy-config"), "{help}");
}

/// Runs `weftctl demo-app ARGS` with `env` added, which must fail; returns its stderr.
fn demo_app_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("demo-app")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("weftctl runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn demo_app_rejects_a_bad_listen_address() {
    let err = demo_app_fails(
        &["--listen", "nowhere", "--service", "s", "--version", "v1"],
        &[],
    );
    assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");
}

#[test]
fn demo_app_rejects_an_unknown_role() {
    let err = demo_app_fails(
        &[
            "--listen",
            "127.0.0.1:1",
            "--role",
            "frontpage",
            "--version",
            "v1",
        ],
        &[],
    );
    assert!(
        err.contains("frontpage") && err.contains("productpage"),
        "{err}"
    );
}

#[test]
fn demo_app_echo_still_needs_a_service() {
    let err = demo_app_fails(&["--listen", "127.0.0.1:1", "--version", "v1"], &[]);
    assert!(err.contains("--service"), "{err}");
}

#[test]
fn demo_app_names_the_bad_variable() {
    let err = demo_app_fails(
        &[
            "--listen",
            "127.0.0.1:1",
            "--role",
            "reviews",
            "--version",
            "v2",
        ],
        &[("RATINGS_SERVICE_PORT", "http")],
    );
    assert!(err.contains("RATINGS_SERVICE_PORT"), "{err}");
}

#[test]
fn demo_app_refuses_a_ratio_outside_zero_and_one() {
    let base = [
        "--listen",
        "127.0.0.1:1",
        "--service",
        "s",
        "--version",
        "v1",
    ];
    let err = demo_app_fails(&[&base[..], &["--fail-ratio", "1.5"]].concat(), &[]);
    assert!(
        err.contains("--fail-ratio") && err.contains("[0, 1]"),
        "{err}"
    );
    // The environment variable of the same meaning, checked alike.
    let err = demo_app_fails(&base, &[("DEMO_RESET_RATIO", "-1")]);
    assert!(
        err.contains("--reset-ratio") && err.contains("[0, 1]"),
        "{err}"
    );
    let err = demo_app_fails(&[&base[..], &["--delay-ratio", "0.5"]].concat(), &[]);
    assert!(err.contains("--delay-ms"), "{err}");
}

/// Kills the child when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_app_serves_a_bookinfo_role_named_after_it() {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        time::{Duration, Instant},
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_weftctl"))
            .args([
                "demo-app",
                "--listen",
                &listen,
                "--role",
                "ratings",
                "--version",
                "v1",
            ])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "demo-app exited early"
        );
        if let Ok(mut stream) = TcpStream::connect(&listen) {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: ratings\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            if stream.read_to_string(&mut answer).is_ok() && !answer.is_empty() {
                break answer;
            }
        }
        assert!(Instant::now() < deadline, "demo-app never answered");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-weft-service: ratings"), "{answer}");
    assert!(answer.contains("x-weft-version: v1"), "{answer}");
    assert!(
        answer.contains(r#"{"status":"Ratings is healthy"}"#),
        "{answer}"
    );
}
