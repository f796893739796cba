//! Request mirroring (`request_mirror_policies`): a share of a route's requests copied, fire
//! and forget, to other clusters; the caller never waits for, nor fails with, a mirror.
//!
//! ```text
//!  forward() ─► Shadows::roll: each mirror by its share ─► none: nothing to do
//!            ─► Shadows::prepare(upstream head): method, rewritten path, headers after the
//!               route's mutations, authority host → host-shadow (port kept)
//!            ─► the request body is recorded (Tee, ≤ 1 MiB) as for retries
//!  forward() returns (response head, or failure): Launch dropped ─► for each mirror:
//!      body read whole and ≤ 1 MiB? ─ no ─► dropped (counted: body)
//!      a slot of MAX_IN_FLIGHT free? ─ no ─► dropped (counted: limit)
//!      tokio::spawn ─► Cluster::pick ─► endpoint::send (recorded body) ─► response drained
//!                     and dropped; the whole shadow bounded by the route timeout (else the
//!                     stream idle timeout); failures counted, logged at debug
//! ```
//!
//! Shadows start once the caller's response head is back, so that their work (a connection to
//! the mirror, the spawned task) never competes with the caller's own request. Like Envoy, a
//! body is buffered for the mirror; a body over 1 MiB, or still incomplete when the caller's
//! response head arrives, is not mirrored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{self, Scheme, Uri};
use http::{Method, Request, Version};
use http_body_util::BodyExt;

use crate::config::RouteTable;
use crate::config::mirror::Mirror;
use crate::upstream::body::Replayable;
use crate::upstream::idle::Activity;
use crate::upstream::{Cluster, Protocol, RequestBody, endpoint};

/// Shadow requests in flight at once, process-wide; beyond, a shadow is dropped (counted), so
/// that a hanging mirror target cannot pile up tasks and buffered bodies.
pub const MAX_IN_FLIGHT: usize = 1024;

/// The limit of a shadow without a route timeout or stream idle timeout (Envoy's default
/// stream idle timeout).
const FALLBACK_LIMIT: Duration = Duration::from_secs(300);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static DROPPED_LIMIT: AtomicU64 = AtomicU64::new(0);
static DROPPED_BODY: AtomicU64 = AtomicU64::new(0);

/// Counters of the process's shadow requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MirrorStats {
    /// Shadows started.
    pub sent: u64,
    /// Shadows that got no response (no endpoint, connect failure, timeout, reset).
    pub failed: u64,
    /// Shadows dropped because `MAX_IN_FLIGHT` were in flight.
    pub dropped_limit: u64,
    /// Shadows dropped because the body was over 1 MiB, failed or still incomplete.
    pub dropped_body: u64,
    /// Shadows in flight now.
    pub in_flight: usize,
}

/// The process's shadow counters.
pub fn stats() -> MirrorStats {
    MirrorStats {
        sent: SENT.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        dropped_limit: DROPPED_LIMIT.load(Ordering::Relaxed),
        dropped_body: DROPPED_BODY.load(Ordering::Relaxed),
        in_flight: IN_FLIGHT.load(Ordering::Relaxed),
    }
}

/// The mirrors a request goes to (their shares rolled when it starts).
pub(super) struct Shadows {
    targets: Vec<Target>,
}

struct Target {
    cluster: Arc<Cluster>,
    shadow_suffix: bool,
}

impl Shadows {
    /// Rolls each mirror's share; `None` when the request is mirrored nowhere (a mirror whose
    /// cluster is unknown is skipped, as Envoy skips it).
    pub(super) fn roll(table: &RouteTable, mirrors: &[Mirror]) -> Option<Self> {
        if mirrors.is_empty() {
            return None;
        }
        let targets: Vec<Target> = mirrors
            .iter()
            .filter(|m| super::fault::chosen(m.per_million))
            .filter_map(|m| {
                Some(Target {
                    cluster: table.cluster(m.cluster.slot)?.clone(),
                    shadow_suffix: m.shadow_suffix,
                })
            })
            .collect();
        (!targets.is_empty()).then_some(Self { targets })
    }

    /// The launch of the shadows of the request whose upstream head is `head`, on drop (when
    /// the caller's response head is back, or the request failed).
    pub(super) fn prepare(
        self,
        head: (&Method, &Uri, Version, &HeaderMap),
        local: SocketAddr,
        limit: Option<Duration>,
    ) -> Launch {
        let (method, uri, version, headers) = head;
        Launch {
            targets: self.targets,
            method: method.clone(),
            path: uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| uri::PathAndQuery::from_static("/")),
            version,
            headers: headers.clone(),
            local,
            limit: limit.unwrap_or(FALLBACK_LIMIT),
            body: None,
        }
    }
}

/// The shadows of one request, sent when this is dropped.
pub(super) struct Launch {
    targets: Vec<Target>,
    method: Method,
    path: uri::PathAndQuery,
    version: Version,
    headers: HeaderMap,
    local: SocketAddr,
    limit: Duration,
    /// The recorded request body and the request's progress (whether it was read whole).
    body: Option<(Replayable, Activity)>,
}

impl Launch {
    /// The request's body, recorded for the shadows.
    pub(super) fn with_body(&mut self, replay: Replayable, activity: Activity) {
        self.body = Some((replay, activity));
    }

    fn launch(&mut self) {
        let targets = std::mem::take(&mut self.targets);
        if targets.is_empty() {
            return;
        }
        for target in targets {
            let body = match &self.body {
                None => Some(RequestBody::empty()),
                Some((replay, activity)) => (activity.request_is_complete()
                    && !activity.downstream_failed())
                .then(|| replay.attempt())
                .flatten(),
            };
            let Some(body) = body else {
                DROPPED_BODY.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cluster = %target.cluster.config.name, "mirror dropped: request body over 1 MiB, failed or incomplete");
                continue;
            };
            let Some(slot) = Slot::take() else {
                DROPPED_LIMIT.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cluster = %target.cluster.config.name, "mirror dropped: {MAX_IN_FLIGHT} shadows in flight");
                continue;
            };
            let Some(req) = self.request(&target, body) else {
                FAILED.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            SENT.fetch_add(1, Ordering::Relaxed);
            let (local, limit) = (self.local, self.limit);
            tokio::spawn(async move {
                let _slot = slot;
                let name = target.cluster.config.name.clone();
                match tokio::time::timeout(limit, shadow(&target.cluster, local, req)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(cluster = %name, %error, "mirror failed");
                    }
                    Err(_) => {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(cluster = %name, ?limit, "mirror timed out");
                    }
                }
            });
        }
        self.body = None;
    }

    /// The shadow request for one target: the caller's upstream head with the shadow authority.
    fn request(&self, target: &Target, body: RequestBody) -> Option<Request<RequestBody>> {
        let authority = self.headers.get(header::HOST)?;
        let authority = if target.shadow_suffix {
            HeaderValue::try_from(shadow_host(authority.to_str().ok()?)).ok()?
        } else {
            authority.clone()
        };
        let h2 = self.version == Version::HTTP_2;
        let uri = match target.cluster.protocol(h2) {
            Protocol::Http1 => Uri::from(self.path.clone()),
            Protocol::Http2 => {
                let mut parts = uri::Parts::default();
                parts.scheme = Some(Scheme::HTTP);
                parts.authority = Some(uri::Authority::try_from(authority.as_bytes()).ok()?);
                parts.path_and_query = Some(self.path.clone());
                Uri::from_parts(parts).ok()?
            }
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req.headers_mut().insert(header::HOST, authority);
        Some(req)
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        self.launch();
    }
}

/// One of the `MAX_IN_FLIGHT` shadow slots, given back on drop.
struct Slot;

impl Slot {
    fn take() -> Option<Self> {
        IN_FLIGHT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a shadow got no response.
#[derive(Debug, thiserror::Error)]
enum ShadowError {
    #[error("no healthy endpoint in {0}")]
    NoEndpoint(String),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("response body: {0}")]
    Body(crate::upstream::body::BoxError),
}

/// Sends one shadow and drains its response.
async fn shadow(
    cluster: &Arc<Cluster>,
    local: SocketAddr,
    req: Request<RequestBody>,
) -> Result<(), ShadowError> {
    let endpoint = cluster
        .pick(local)
        .ok_or_else(|| ShadowError::NoEndpoint(cluster.config.name.clone()))?;
    let protocol = cluster.protocol(req.version() == Version::HTTP_2);
    let resp = endpoint::send(&endpoint, protocol, cluster.config.connect_timeout, req).await?;
    let mut body = std::pin::pin!(resp.into_body());
    while let Some(frame) = body.frame().await {
        frame.map_err(ShadowError::Body)?;
    }
    Ok(())
}

/// Envoy's shadow authority: `host` → `host-shadow`, a port kept (`host:80` → `host-shadow:80`,
/// `[::1]:80` → `[::1]-shadow:80`).
pub fn shadow_host(authority: &str) -> String {
    let port_at = authority
        .rfind(':')
        .filter(|&i| authority.rfind(']').is_none_or(|b| b < i))
        .filter(|&i| {
            let port = &authority[i + 1..];
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        })
        // A bare IPv6 address without brackets has no port.
        .filter(|&i| authority[..i].ends_with(']') || !authority[..i].contains(':'));
    match port_at {
        Some(i) => format!("{}-shadow{}", &authority[..i], &authority[i..]),
        None => format!("{authority}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_host_keeps_the_port() {
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(shadow_host("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_host("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let before = IN_FLIGHT.load(Ordering::Relaxed);
        let held: Vec<Slot> = std::iter::from_fn(Slot::take)
            .take(MAX_IN_FLIGHT + 5)
            .collect();
        assert_eq!(held.len(), MAX_IN_FLIGHT - before);
        assert!(Slot::take().is_none());
        drop(held);
        assert!(Slot::take().is_some());
    }
}
