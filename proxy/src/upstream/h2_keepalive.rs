//! HTTP/2 PING keepalive on an upstream connection (the cluster's
//! `http2_protocol_options.connection_keepalive`, DestinationRule `http2KeepAlive`): a
//! connection whose peer stopped answering is closed, so its requests fail and new ones open
//! a fresh connection instead of waiting on a dead one. The `h2` crate answers PINGs but sends
//! none of its own, hence this loop.
//!
//! ```text
//!  connection task ─ select ─┬─ drive the h2 connection (ends when it closes)
//!                            └─ every interval (+ jitter): PING ─ no PONG within timeout ─► stop driving: closed
//! ```

use std::time::Duration;

use h2::{Ping, PingPong};
use rand::RngExt;

use crate::config::cluster_http::Http2Keepalive;

/// Sends a PING every interval and returns once one is not answered within the timeout. A
/// connection that ends otherwise (the PING fails) is left to the connection task: this then
/// never returns.
pub async fn unanswered(mut ping_pong: PingPong, settings: Http2Keepalive) {
    loop {
        tokio::time::sleep(settings.interval + jitter(settings.jitter)).await;
        match tokio::time::timeout(settings.timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_closed)) => return std::future::pending().await,
            Err(_elapsed) => return,
        }
    }
}

/// A random extra wait up to `max`, so that connections opened together do not ping together.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rand::rng().random_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_millis(150);
        for _ in 0..100 {
            assert!(jitter(max) <= max);
        }
    }
}
