//! The app's request counters, by outcome, so a test can count the attempts that reached it
//! (retries, outlier ejection, circuit breaking), and the endpoints that read and zero them.
//!
//! `GET /__demo/stats` answers `{"total":N,"ok":N,"failed":N,"reset":N,"hung":N,"delayed":N}`;
//! `POST /__demo/stats/reset` zeroes the counters and answers what they held. Neither is
//! counted, failed, delayed or reset.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderValue, Method, StatusCode, header::ALLOW};
use serde_json::{Value, json};

use super::{Reply, json_reply, text_reply};

/// Where the counters are read.
pub const STATS_PATH: &str = "/__demo/stats";
/// Where the counters are zeroed (POST).
pub const STATS_RESET_PATH: &str = "/__demo/stats/reset";

/// The counters. `total` counts every request as it arrives; the others count its outcome
/// once known: `reset` and `hung` when decided, `ok` (status below 400) and `failed` (400 or
/// more, injected or not) when the answer's head is handed to the connection. `delayed`
/// counts the answers that waited first, so it overlaps `ok` and `failed`. A request whose
/// client leaves before its answer is in `total` only (and `delayed`, if it was waiting).
#[derive(Debug, Default)]
pub struct Stats {
    total: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    reset: AtomicU64,
    hung: AtomicU64,
    delayed: AtomicU64,
}

impl Stats {
    pub fn received(&self) {
        bump(&self.total);
    }

    pub fn reset(&self) {
        bump(&self.reset);
    }

    pub fn hung(&self) {
        bump(&self.hung);
    }

    pub fn delayed(&self) {
        bump(&self.delayed);
    }

    /// An answer with `status` leaves.
    pub fn answered(&self, status: StatusCode) {
        if status.as_u16() < 400 {
            bump(&self.ok);
        } else {
            bump(&self.failed);
        }
    }

    /// The counters, as `GET /__demo/stats` answers them.
    pub fn snapshot(&self) -> Value {
        self.read(|counter| counter.load(Ordering::Relaxed))
    }

    /// Zeroes the counters; what they held.
    pub fn take(&self) -> Value {
        self.read(|counter| counter.swap(0, Ordering::Relaxed))
    }

    fn read(&self, read: impl Fn(&AtomicU64) -> u64) -> Value {
        json!({
            "total": read(&self.total),
            "ok": read(&self.ok),
            "failed": read(&self.failed),
            "reset": read(&self.reset),
            "hung": read(&self.hung),
            "delayed": read(&self.delayed),
        })
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The answer of the stats endpoints, when `path` is one of them.
pub fn admin(stats: &Stats, method: &Method, path: &str) -> Option<Reply> {
    let reply = match path {
        STATS_PATH if method == Method::GET || method == Method::HEAD => {
            json_reply(StatusCode::OK, &stats.snapshot())
        }
        STATS_PATH => not_allowed("GET, HEAD"),
        STATS_RESET_PATH if method == Method::POST => json_reply(StatusCode::OK, &stats.take()),
        STATS_RESET_PATH => not_allowed("POST"),
        _ => return None,
    };
    Some(reply)
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut reply = text_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("allowed: {allow}\n"),
    );
    reply
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_zeroes() {
        let stats = Stats::default();
        for _ in 0..6 {
            stats.received();
        }
        stats.answered(StatusCode::OK);
        stats.answered(StatusCode::NOT_MODIFIED);
        stats.answered(StatusCode::SERVICE_UNAVAILABLE);
        stats.answered(StatusCode::CONFLICT);
        stats.reset();
        stats.hung();
        stats.delayed();
        let counted =
            json!({"total": 6, "ok": 2, "failed": 2, "reset": 1, "hung": 1, "delayed": 1});
        assert_eq!(stats.snapshot(), counted);
        assert_eq!(stats.take(), counted);
        assert_eq!(
            stats.snapshot(),
            json!({"total": 0, "ok": 0, "failed": 0, "reset": 0, "hung": 0, "delayed": 0})
        );
    }

    #[test]
    fn only_the_stats_paths_are_admin() {
        let stats = Stats::default();
        stats.received();
        let get = admin(&stats, &Method::GET, STATS_PATH).expect("stats");
        assert_eq!(get.status(), StatusCode::OK);
        let post = admin(&stats, &Method::POST, STATS_PATH).expect("stats");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
        let get_reset = admin(&stats, &Method::GET, STATS_RESET_PATH).expect("reset");
        assert_eq!(get_reset.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(stats.snapshot()["total"], 1, "a GET does not zero");
        let reset = admin(&stats, &Method::POST, STATS_RESET_PATH).expect("reset");
        assert_eq!(reset.status(), StatusCode::OK);
        assert_eq!(stats.snapshot()["total"], 0);
        for other in ["/", "/__demo", "/__demo/stats/", "/__demo/statsx"] {
            assert!(admin(&stats, &Method::GET, other).is_none(), "{other}");
        }
    }
}
