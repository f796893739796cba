//! `weft-proxy wait`: returns once the proxy's `/healthz/ready` answers 200, as Istio's
//! `pilot-agent wait`. Where Kubernetes has no native sidecars the injector makes it the
//! proxy container's `postStart` hook: the kubelet starts the app's containers only after it.
//!
//! A module of the binary (declared in `main.rs`), not of the library: nothing else uses it.
//!
//! ```text
//!  every 200 ms until --timeout:  GET http://<WEFT_INSTANCE_IP|INSTANCE_IP>:<WEFT_HEALTH_PORT>/healthz/ready
//!      200 ─► exit 0        refused, 503, … ─► again        --timeout ─► exit 1, the last answer
//! ```
//!
//! A blocking `std` socket, not tokio and hyper: the hook makes one small request at a time
//! and nothing else, so a runtime would only add start-up time and code.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weft_proxy::args::WaitArgs;

/// How often the proxy is asked.
const PERIOD: Duration = Duration::from_millis(200);
/// One request's budget (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// What is read of an answer: the status line and a short reason.
const MAX_ANSWER: u64 = 4096;

/// Why `weft-proxy wait` gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("INSTANCE_IP {0:?} is not an IP address")]
    InstanceIp(String),
    #[error("the proxy is not ready after {timeout:?}: GET {url}: {last}")]
    NotReady {
        url: String,
        timeout: Duration,
        last: String,
    },
}

/// Asks the proxy until it is ready or `--timeout` has passed.
pub fn run(args: &WaitArgs) -> Result<(), WaitError> {
    let addr = SocketAddr::new(instance_ip(args)?, args.health_port);
    let url = format!("http://{addr}/healthz/ready");
    println!(
        "weft-proxy wait: waiting for the proxy to be ready at {url} (timeout {:?})",
        args.timeout
    );
    let start = Instant::now();
    let deadline = start + args.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match ask(addr, left.clamp(Duration::from_millis(1), REQUEST_TIMEOUT)) {
            Ok(()) => {
                println!(
                    "weft-proxy wait: the proxy is ready after {:?}",
                    start.elapsed()
                );
                return Ok(());
            }
            Err(why) => why,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WaitError::NotReady {
                url,
                timeout: args.timeout,
                last,
            });
        }
        std::thread::sleep(PERIOD.min(left));
    }
}

/// `--instance-ip` (or `WEFT_INSTANCE_IP`), else Istio's `INSTANCE_IP`, else 127.0.0.1.
fn instance_ip(args: &WaitArgs) -> Result<IpAddr, WaitError> {
    if let Some(ip) = args.instance_ip {
        return Ok(ip);
    }
    match std::env::var("INSTANCE_IP") {
        Ok(text) if !text.trim().is_empty() => {
            text.trim().parse().map_err(|_| WaitError::InstanceIp(text))
        }
        _ => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

/// One `GET /healthz/ready`: `Ok` on 200, else what went wrong (the connection's error, or
/// the status line and the proxy's reason).
fn ask(addr: SocketAddr, budget: Duration) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, budget).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(budget))
        .and_then(|()| stream.set_write_timeout(Some(budget)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET /healthz/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // The proxy closes the connection after its answer; a read error after the status line
    // (a timeout, a reset) still leaves the status to judge by.
    let read = stream.take(MAX_ANSWER).read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let Some((status_line, rest)) = answer.split_once("\r\n") else {
        return Err(match read {
            Err(e) => e.to_string(),
            Ok(_) => format!("not an HTTP answer: {:?}", answer.trim()),
        });
    };
    if status_line.split_whitespace().nth(1) == Some("200") {
        return Ok(());
    }
    let reason = rest
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body.trim());
    Err(if reason.is_empty() {
        status_line.to_string()
    } else {
        format!("{status_line}: {reason}")
    })
}
