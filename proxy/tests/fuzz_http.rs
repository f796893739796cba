//! Fuzz target: malformed requests through a real proxy listener, in process.
//!
//! A proxy (a `ConfigStore` fed directly, as in `data_path.rs`) listens on 127.0.0.1 with a route
//! table that forwards to a real upstream on 127.0.0.1, redirects and answers directly. Each input
//! is written raw to a new TCP connection (in up to three pieces), then the client half-closes.
//! Seeds: `crates/fuzz/corpus/http/` (HTTP/1.1 request lines, headers, chunked bodies,
//! `Content-Length` lies, pipelining, upgrades) and h2c prior-knowledge requests built here;
//! mutated byte-wise (a duplicated line is a duplicated header). Checked: the proxy never panics;
//! every connection ends (closed, after its answers) within 2 s; what comes back is HTTP/1.x or
//! HTTP/2 frames and at most 1 MiB; after the run a normal request over HTTP/1.1 and h2c still
//! succeeds. The run must have seen requests answered 2xx and rejected 4xx.
//!
//! Default: 3 s or 300 connections; a long run:
//! `WEFT_FUZZ_SECONDS=600 cargo test --release -p weft-proxy --test fuzz_http`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as rt;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_fuzz::{Fuzz, Tally, raw};

/// How long a half-closed connection may stay open.
const CONNECTION_BOUND: Duration = Duration::from_secs(2);
/// Most bytes one connection may answer with.
const MAX_RESPONSE: usize = 1024 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[test]
fn fuzz_http() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _entered = runtime.enter();
    let upstream_addr = runtime.block_on(upstream("reviews"));
    let mut proxy = Proxy::start();
    proxy.configure(
        &[("outbound|9080||reviews", false, vec![upstream_addr])],
        vec![
            vhost(
                "reviews:9080",
                &["reviews", "reviews:9080"],
                vec![
                    redirect_route("/redirect"),
                    direct_route("/direct"),
                    to_cluster(
                        prefix("/"),
                        "outbound|9080||reviews",
                        Some(Duration::from_secs(1)),
                    ),
                ],
            ),
            vhost("other", &["*.example"], vec![direct_route("/")]),
        ],
    );
    let addr = proxy.addr;

    let mut fuzz = Fuzz::new("http")
        .default_seconds(3.0)
        .default_iterations(300);
    fuzz.seed("h2c GET", h2c_request(false));
    fuzz.seed("h2c POST with DATA", h2c_request(true));

    // First answers by status (`200`, `h2`, `none`, …).
    let statuses = Tally::new();
    let seen = statuses.clone();
    let handle = runtime.handle().clone();
    let summary = fuzz.run(
        |rng, seeds| {
            let mut input = seeds[raw::below(rng, seeds.len())].bytes.clone();
            raw::mutate(rng, &mut input, seeds);
            input
        },
        move |input| {
            let answer = handle.block_on(exchange(addr, input))?;
            let status = classify(input, &answer)?;
            seen.add(&status, 1);
            Ok(())
        },
    );

    println!("fuzz_http: first answers by status: {statuses:?}");
    let count = |class: char| {
        statuses
            .snapshot()
            .iter()
            .filter(|(s, _)| s.starts_with(class))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert!(
        count('2') > 0 && count('4') > 0,
        "{} connections: the inputs must reach both answered (2xx) and rejected (4xx) requests: {statuses:?}",
        summary.replayed as u64 + summary.iterations
    );
    // The proxy still serves normal traffic.
    runtime.block_on(async {
        for client in [h1_client(), h2_client()] {
            let (status, _, body) = get(&client, addr, "reviews", "/after-fuzzing", &[]).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("/after-fuzzing"), "{body}");
        }
    });
    drop(proxy);
}

/// Writes `input` on a new connection (in up to three pieces), half-closes, and reads until
/// the proxy closes; fails if that takes longer than [`CONNECTION_BOUND`].
async fn exchange(addr: SocketAddr, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to the proxy at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    // Piece boundaries derived from the input, so a saved input replays the same way.
    let len = input.len();
    let cuts = [0, len * (len % 3) / 5, len * (len % 7) / 9, len];
    let mut cuts = cuts.to_vec();
    cuts.sort_unstable();
    for pair in cuts.windows(2) {
        // The proxy may answer and close before reading everything: stop writing then.
        if stream.write_all(&input[pair[0]..pair[1]]).await.is_err() {
            break;
        }
    }
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(CONNECTION_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.len() > MAX_RESPONSE {
                        return Err(format!(
                            "more than {MAX_RESPONSE} bytes answered to a {len}-byte input"
                        ));
                    }
                }
            }
        }
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(answer),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the connection is still open {CONNECTION_BOUND:?} after the client half-closed it ({} bytes answered: {:?})",
            answer.len(),
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        )),
    }
}

/// The first answer's status (`"200"`, `"h2"`, `"none"`), or why the answer is not HTTP.
fn classify(input: &[u8], answer: &[u8]) -> Result<String, String> {
    if answer.is_empty() {
        return Ok("none".to_string());
    }
    if let Some(rest) = answer.strip_prefix(b"HTTP/1.") {
        let status = rest.get(2..5).unwrap_or_default();
        if rest.get(1) == Some(&b' ') && status.iter().all(u8::is_ascii_digit) {
            return Ok(String::from_utf8_lossy(status).into_owned());
        }
    }
    // HTTP/2: the server's first frame is SETTINGS (type 4 on stream 0).
    if input.starts_with(H2_PREFACE) && answer.len() >= 9 && answer[3] == 4 {
        return Ok("h2".to_string());
    }
    Err(format!(
        "the answer is neither HTTP/1.x nor HTTP/2: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    ))
}

fn redirect_route(path: &str) -> rt::Route {
    rt::Route {
        r#match: Some(prefix(path)),
        action: Some(rt::route::Action::Redirect(rt::RedirectAction {
            host_redirect: "ratings".into(),
            response_code: rt::redirect_action::RedirectResponseCode::PermanentRedirect as i32,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn direct_route(path: &str) -> rt::Route {
    rt::Route {
        r#match: Some(prefix(path)),
        action: Some(rt::route::Action::DirectResponse(
            rt::DirectResponseAction {
                status: 418,
                body: Some(core::DataSource {
                    specifier: Some(core::data_source::Specifier::InlineString("teapot".into())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// An h2c prior-knowledge request: the preface, an empty SETTINGS frame, and a HEADERS frame
/// (`GET` or `POST`, `http`, `/`, `:authority: reviews`, HPACK-encoded) on stream 1, ending
/// the stream, or followed by a DATA frame that does.
fn h2c_request(with_body: bool) -> Vec<u8> {
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    // Static table: 2 `:method GET`, 3 `:method POST`, 6 `:scheme http`, 4 `:path /`;
    // `:authority` (index 1) as a literal with incremental indexing.
    let method = if with_body { 0x83 } else { 0x82 };
    let mut headers = vec![method, 0x86, 0x84, 0x41, 7];
    headers.extend_from_slice(b"reviews");
    let mut out = H2_PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    if with_body {
        out.extend(frame(1, END_HEADERS, 1, &headers));
        out.extend(frame(0, END_STREAM, 1, b"hello"));
    } else {
        out.extend(frame(1, END_HEADERS | END_STREAM, 1, &headers));
    }
    out
}
