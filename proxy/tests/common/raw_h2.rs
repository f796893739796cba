//! An HTTP/2 upstream written frame by frame, for what a real server hides: it counts the
//! PINGs it receives and, unlike every real server, can leave them unanswered. It answers
//! each request's HEADERS with an empty `200` and acknowledges SETTINGS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
const END_STREAM_AND_HEADERS: u8 = 0x5;
/// HPACK: `:status: 200`, index 8 of the static table.
const STATUS_200: u8 = 0x88;

/// What the upstream saw.
#[derive(Debug, Default)]
pub struct RawH2 {
    pub accepted: AtomicUsize,
    /// Connections the client closed.
    pub closed: AtomicUsize,
    /// PING frames received (not counting acknowledgements).
    pub pings: AtomicUsize,
    pub requests: AtomicUsize,
}

impl RawH2 {
    pub fn get(&self, counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// Starts the upstream; `answer_pings: false` leaves every PING unanswered.
pub async fn upstream(answer_pings: bool) -> (SocketAddr, Arc<RawH2>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(RawH2::default());
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            state.accepted.fetch_add(1, Ordering::SeqCst);
            let state = state.clone();
            tokio::spawn(async move {
                // Any end (EOF, reset, a bad frame) is the client closing.
                let _ = serve(stream, answer_pings, &state).await;
                state.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

async fn serve(mut io: TcpStream, answer_pings: bool, seen: &RawH2) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE.len()];
    io.read_exact(&mut preface).await?;
    assert_eq!(preface, PREFACE, "not an HTTP/2 client");
    io.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
    loop {
        let mut head = [0u8; 9];
        io.read_exact(&mut head).await?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => io.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
            PING if flags & ACK == 0 => {
                seen.pings.fetch_add(1, Ordering::SeqCst);
                if answer_pings {
                    io.write_all(&frame(PING, ACK, 0, &payload)).await?;
                }
            }
            HEADERS => {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                let response = frame(HEADERS, END_STREAM_AND_HEADERS, stream, &[STATUS_200]);
                io.write_all(&response).await?;
            }
            _ => {}
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
