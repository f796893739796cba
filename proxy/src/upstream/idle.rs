//! The stream idle timeout (HCM `stream_idle_timeout`): when a request last made progress, in
//! either direction, and the one timer that waits for the response head.
//!
//! ```text
//!  request start ─► Activity::Local(start)                       (no request body: nothing shared)
//!               └─► Activity::Shared(Arc<Progress>)              (streamed request body only)
//!                      request body frames ─► touch(); end ─► request_complete; error ─► downstream_failed
//!  wait for the response head: ONE timer at min(route deadline, last activity + idle)
//!                      fires ─► route deadline passed: UT │ idle: SI (408 request incomplete, else 504)
//!                                                         │ activity since: re-armed
//!  response body frames ─► touch(); idle ─► the body fails (downstream reset), SI logged
//! ```

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

/// Progress of a request whose body streams in another task (the upstream connection's).
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    /// Nanoseconds after `start` of the last activity.
    last: AtomicU64,
    request_complete: AtomicBool,
    downstream_failed: AtomicBool,
    /// Body bytes read from downstream (once each, however many attempts send them).
    received: AtomicU64,
}

impl Progress {
    /// `n` more body bytes came from downstream.
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// The body bytes read from downstream so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The downstream request body ended cleanly.
    pub fn request_complete(&self) {
        self.request_complete.store(true, Ordering::Relaxed);
        self.touch();
    }

    /// The downstream request body failed (framing error, truncated): the request is aborted.
    pub fn downstream_failed(&self) {
        self.downstream_failed.store(true, Ordering::Relaxed);
    }
}

/// When a request last made progress.
#[derive(Debug, Clone)]
pub enum Activity {
    /// Everything happens in the request's own task: a plain instant.
    Local(Instant),
    /// The request body streams from another task.
    Shared(Arc<Progress>),
}

impl Activity {
    /// A request without a body: complete as it starts.
    pub fn complete_request(start: Instant) -> Self {
        Self::Local(start)
    }

    /// A request whose body still has to stream (one small allocation, shared with the body).
    pub fn streamed_request(start: Instant) -> Self {
        Self::Shared(Arc::new(Progress {
            start,
            last: AtomicU64::new(0),
            request_complete: AtomicBool::new(false),
            downstream_failed: AtomicBool::new(false),
            received: AtomicU64::new(0),
        }))
    }

    pub fn progress(&self) -> Option<&Arc<Progress>> {
        match self {
            Self::Local(_) => None,
            Self::Shared(p) => Some(p),
        }
    }

    pub fn touch(&mut self) {
        match self {
            Self::Local(at) => *at = Instant::now(),
            Self::Shared(p) => p.touch(),
        }
    }

    pub fn last(&self) -> Instant {
        match self {
            Self::Local(at) => *at,
            Self::Shared(p) => p.start + Duration::from_nanos(p.last.load(Ordering::Relaxed)),
        }
    }

    /// Whether the whole request was received from downstream (Envoy: 504, not 408, on idle).
    pub fn request_is_complete(&self) -> bool {
        match self {
            Self::Local(_) => true,
            Self::Shared(p) => p.request_complete.load(Ordering::Relaxed),
        }
    }

    /// Whether the downstream request body failed.
    pub fn downstream_failed(&self) -> bool {
        match self {
            Self::Local(_) => false,
            Self::Shared(p) => p.downstream_failed.load(Ordering::Relaxed),
        }
    }

    /// When the stream idle timeout ends the stream unless something happens first.
    pub fn idle_deadline(&self, idle: Duration) -> Instant {
        self.last() + idle
    }
}

/// Which limit ended the wait for the response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The route timeout.
    Route(Duration),
    /// The stream idle timeout; whether the downstream request had been received in full.
    Idle {
        timeout: Duration,
        request_complete: bool,
    },
}

/// Runs `fut` (the wait for the response head) under the route timeout and the stream idle
/// timeout with one timer: armed at the earlier deadline, re-armed when activity moved the
/// idle deadline. With neither limit, `fut` runs alone. `fut` is pinned by the caller, so
/// that this future holds a pointer to it rather than a second copy of it.
pub async fn bounded<F: Future>(
    mut fut: Pin<&mut F>,
    start: Instant,
    route: Option<Duration>,
    idle: Option<Duration>,
    activity: &Activity,
) -> Result<F::Output, Expired> {
    let route_deadline = route.map(|t| start + t);
    let next = |activity: &Activity| -> Option<Instant> {
        let idle_deadline = idle.map(|t| activity.idle_deadline(t));
        match (route_deadline, idle_deadline) {
            (Some(r), Some(i)) => Some(r.min(i)),
            (r, i) => r.or(i),
        }
    };
    let Some(first) = next(activity) else {
        return Ok(fut.await);
    };
    let mut timer = pin!(tokio::time::sleep_until(first));
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if let (Some(deadline), Some(t)) = (route_deadline, route)
                && now >= deadline
            {
                return Poll::Ready(Err(Expired::Route(t)));
            }
            if let Some(t) = idle
                && now >= activity.idle_deadline(t)
            {
                return Poll::Ready(Err(Expired::Idle {
                    timeout: t,
                    request_complete: activity.request_is_complete(),
                }));
            }
            // Activity since the timer was armed: wait for the new deadline.
            if let Some(at) = next(activity) {
                timer.as_mut().reset(at);
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn route_timeout_fires_first_when_earlier() {
        let start = Instant::now();
        let activity = Activity::complete_request(start);
        let r = bounded(
            pin!(std::future::pending::<()>()),
            start,
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(5)),
            &activity,
        )
        .await;
        assert_eq!(r, Err(Expired::Route(Duration::from_secs(1))));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_504_for_a_complete_request() {
        let start = Instant::now();
        let activity = Activity::complete_request(start);
        let r = bounded(
            pin!(std::future::pending::<()>()),
            start,
            None,
            Some(Duration::from_secs(5)),
            &activity,
        )
        .await;
        assert_eq!(
            r,
            Err(Expired::Idle {
                timeout: Duration::from_secs(5),
                request_complete: true
            })
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_the_idle_timeout() {
        let start = Instant::now();
        let activity = Activity::streamed_request(start);
        let progress = activity.progress().unwrap().clone();
        let body = async {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                progress.touch();
            }
            // Then the client stops sending without finishing the body.
            std::future::pending::<()>().await;
        };
        let r = bounded(
            pin!(body),
            start,
            None,
            Some(Duration::from_secs(5)),
            &activity,
        )
        .await;
        assert_eq!(
            r,
            Err(Expired::Idle {
                timeout: Duration::from_secs(5),
                request_complete: false
            })
        );
        assert_eq!(start.elapsed(), Duration::from_secs(12 + 5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_waits_for_the_future() {
        let start = Instant::now();
        let activity = Activity::complete_request(start);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            7
        };
        assert_eq!(
            bounded(pin!(slow), start, None, None, &activity).await,
            Ok(7)
        );
    }
}
