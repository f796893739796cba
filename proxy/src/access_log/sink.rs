//! Where access log lines go: one writer task per path (`/dev/stdout` and `/dev/stderr` are the
//! proxy's own), fed through a bounded queue so that a slow disk never holds a request; a line
//! that finds the queue full is dropped and counted (`weft_access_log_dropped_total`).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Lines waiting per path.
const QUEUE: usize = 4096;

/// Lines dropped because their path's queue was full (or its file could not be opened).
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

static SINKS: LazyLock<Mutex<HashMap<String, mpsc::Sender<String>>>> =
    LazyLock::new(Mutex::default);

/// The queue of `path`, its writer started on first use (inside the runtime).
pub fn sender(path: &str) -> mpsc::Sender<String> {
    let mut sinks = SINKS.lock();
    if let Some(tx) = sinks.get(path).filter(|tx| !tx.is_closed()) {
        return tx.clone();
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(write_lines(path.to_string(), rx));
    sinks.insert(path.to_string(), tx.clone());
    tx
}

/// Queues `line` for `tx`'s path; counts it dropped when the queue is full.
pub fn send(tx: &mpsc::Sender<String>, line: String) {
    if tx.try_send(line).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

async fn write_lines(path: String, mut rx: mpsc::Receiver<String>) {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match path.as_str() {
        "/dev/stdout" => Box::new(tokio::io::stdout()),
        "/dev/stderr" => Box::new(tokio::io::stderr()),
        _ => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
        {
            Ok(file) => Box::new(file),
            Err(e) => {
                tracing::error!(path, error = %e, "cannot open the access log: its lines are dropped");
                while rx.recv().await.is_some() {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        },
    };
    let mut buf = Vec::with_capacity(16 * 1024);
    while let Some(line) = rx.recv().await {
        buf.extend_from_slice(line.as_bytes());
        // What else is queued goes in the same write.
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(line) => buf.extend_from_slice(line.as_bytes()),
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await
        {
            tracing::warn!(path, error = %e, "writing the access log failed");
        }
        buf.clear();
    }
}
