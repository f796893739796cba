//! The route-policy layer: what a matched route's forward action does with a request.
//!
//! ```text
//!  forward(Routed { manager, table, levels }, action)          [one async level per request]
//!    CORS (cors.rs): a preflight answered here ─► faults (fault.rs): delay (DI), abort (FI)
//!    prepare (not async): weighted pick ─► table.targets[slot] (Arc<Cluster>, resolved at
//!       config time) ─► balancer (Cluster::pick, hash key) ─► upstream request: client's
//!       :authority/Host kept (or host_rewrite), rewrites, hop-by-hop headers out,
//!       x-request-id, header mutations; mirrors (mirror.rs); the body, recorded when a retry
//!       or a mirror may send it again
//!    attempts: send_attempt ─► route timeout + stream idle timeout (one timer, upstream/idle.rs)
//!       ─► endpoint layer (upstream/endpoint.rs); outlier detection told; retry.rs decides
//!       another (back-off, other host, budget) or the last result stands (URX)
//!    failure ─► error.rs (UF, UC, UR, UPE; DPE when the request body failed)
//!    response: hop-by-hop out, header mutations, CORS headers, body streamed with its guards
//!       and the stream idle timeout; the shadows leave when forward returns
//!  WebSocket upgrade (HCM websocket, upgrade.rs): HTTP/1.1 forced (h2-only cluster: 503),
//!    Connection/Upgrade kept, a dedicated connection (endpoint::send_upgrade); a 101 parks
//!    the tunnel for the connection's task and is answered downstream with its headers
//! ```
//!
//! Every `async fn` awaited per request is a copy of its callee's future into its caller's:
//! the work that needs no await is kept in plain functions (`prepare`, `super::route`), and
//! what is rare and large is boxed (upgrades, shadows, formatter request heads).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{self, Scheme, Uri};
use http::{Request, Response, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use rand::RngExt;

use super::headers::{X_REQUEST_ID, request_id, strip_hop_by_hop};
use super::redirect::rewritten_path;
use super::{AuthoritySource, ProxyBody, RequestMeta, Routed, authority_source, upgrade};
use super::{cors, fault, hash, mirror, retry};
use crate::config::formatter::HeaderTemplate;
use crate::config::retry::RetryPolicy;
use crate::config::{ClusterPick, ForwardAction, WeightedCluster};
use crate::error::{ProxyError, ResponseFlags};
use crate::metrics::{Outcome, Reporter, exchange};
use crate::upstream::body::Replayable;
use crate::upstream::idle::{self, Activity, Expired};
use crate::upstream::{Cluster, Endpoint, Protocol, RequestBody, endpoint};

/// The request body bytes kept so that a retry can send them again (Envoy's default
/// connection buffer limit): a larger body is sent once.
pub const RETRY_BUFFER_LIMIT: usize = 1 << 20;

/// Forwards `req` along a route's forward action: CORS, faults, then the cluster. `outcome`
/// collects what happened on the way (`DI`, `URX`) for whichever response the request gets,
/// and what its metrics need: the cluster's service, the upstream's workload and mTLS.
pub(super) async fn forward(
    routed: &Routed<'_>,
    meta: &RequestMeta<'_>,
    action: &ForwardAction,
    req: Request<Incoming>,
    outcome: &mut Outcome,
    detailed: bool,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Routed {
        manager: listener,
        levels,
        ..
    } = routed;
    // CORS first: Istio puts the CORS filter before the fault filter.
    let cors_origin = match action.cors.as_deref().filter(|_| listener.cors_filter) {
        Some(policy) => match cors::on_request(policy, &req) {
            cors::Step::Reply(resp) => return Ok(*resp),
            cors::Step::Forward(origin) => origin.map(|origin| (policy, origin)),
        },
        None => None,
    };
    // Faults next, as Envoy's fault filter runs before the router.
    if let Some(fault) = fault::effective(listener.fault_filter.as_ref(), action.fault.as_deref())
        && let Err(abort) =
            fault::apply(fault, &super::request_view(&req), &mut outcome.flags).await
    {
        // The request never reaches a cluster: its metrics name the route's destination.
        if let ClusterPick::Single(c) = &action.clusters {
            outcome.cluster = routed.table.cluster(c.slot).cloned();
        }
        return Err(abort);
    }
    let Outbound {
        cluster,
        cluster_name,
        weighted,
        protocol,
        tunnel,
        on_upgrade,
        hashed,
        endpoint,
        request: mut upstream_req,
        template,
        replay,
        activity,
        start,
        kept_request,
        downstream_version,
        retry,
        // Launched when this function returns: the caller's response head is back.
        shadows: _shadows,
    } = prepare(routed, meta, action, req)?;
    if meta.metrics.enabled() || detailed {
        outcome.cluster = Some(cluster.clone());
        outcome.request_body = activity.progress().cloned();
        if detailed {
            outcome.request_id = upstream_req.headers().get(&X_REQUEST_ID).cloned();
        }
    }
    let downstream_h2 = downstream_version == Version::HTTP_2;
    let upgrading = tunnel.is_some();
    let deadline = action.timeout.map(|t| start + t);
    let idle = listener.stream_idle_timeout;

    let mut endpoint = endpoint;
    let mut retries = 0u32;
    let mut tried: Vec<std::net::SocketAddr> = Vec::new();
    // The endpoints whose priority levels retries avoid (`previous_priorities`).
    let mut tried_levels: Vec<std::net::SocketAddr> = Vec::new();
    // Held while a retry is in flight (the cluster's `max_retries`).
    let mut _retry_guard = None;
    let mut retries_exhausted = false;
    let mut resp = loop {
        let attempt_start = tokio::time::Instant::now();
        let per_try = retry.and_then(|p| p.per_try_timeout);
        let (limit, per_try_binds) = attempt_limit(deadline, per_try, attempt_start);
        let result = send_attempt(
            cluster,
            &endpoint,
            protocol,
            upgrading,
            upstream_req,
            (attempt_start, limit, idle),
            &activity,
        )
        .await;
        if cluster.outlier.is_some() {
            record_outcome(cluster, &endpoint, &result);
        }
        let (Some(policy), Some((method, uri, version, headers))) = (retry, template.as_ref())
        else {
            break result?;
        };
        let retriable = match &result {
            Ok(resp) => retry::retries_response(policy, resp.status(), resp.headers(), method),
            Err(e) => {
                retry::retries_failure(policy, retry::AttemptFailure::of(e, per_try_binds), method)
            }
        };
        if !retriable {
            break result?;
        }
        let body = replay
            .as_ref()
            .map_or(Some(RequestBody::empty()), |r| r.attempt());
        let refused = if retries >= policy.num_retries {
            Err("attempts exhausted")
        } else if body.is_none() {
            Err("the request body is too large to send again")
        } else {
            cluster.breakers.try_retry()
        };
        let guard = match refused {
            Ok(guard) => guard,
            Err(why) => match result {
                Ok(resp) => {
                    retries_exhausted = true;
                    break resp;
                }
                Err(last) => {
                    return Err(ProxyError::RetriesExhausted {
                        last: Box::new(last),
                        why,
                    });
                }
            },
        };
        _retry_guard = Some(guard);
        // The failed attempt's response (and its connection) goes.
        drop(result);
        retries += 1;
        let wait = retry::backoff(policy, retries);
        if let Some(deadline) = deadline
            && tokio::time::Instant::now() + wait >= deadline
        {
            tokio::time::sleep_until(deadline).await;
            return Err(ProxyError::Timeout {
                endpoint: endpoint.addr,
                timeout: action.timeout.unwrap_or_default(),
            });
        }
        tokio::time::sleep(wait).await;
        if policy.other_hosts {
            tried.push(endpoint.addr);
        }
        if policy.other_priorities {
            tried_levels.push(endpoint.addr);
        }
        endpoint = match hashed.key {
            // The next endpoint on the hash table for the same key.
            Some(_) => cluster.pick_by_key(meta.downstream.local, hashed.key, &tried),
            None => cluster.pick_avoiding(
                meta.downstream.local,
                &tried,
                policy.host_selection_attempts,
                &tried_levels,
            ),
        }
        .ok_or_else(|| ProxyError::NoHealthyUpstream(cluster_name.to_owned()))?;
        let mut next = Request::new(body.unwrap_or_default());
        *next.method_mut() = method.clone();
        *next.uri_mut() = uri.clone();
        *next.version_mut() = *version;
        *next.headers_mut() = headers.clone();
        upstream_req = next;
    };
    let upstream_upgrade = (on_upgrade.is_some()
        && tunnel.is_some_and(|kind| kind.switched(resp.status())))
    .then(|| hyper::upgrade::on(&mut resp));
    let (mut parts, body) = resp.into_parts();
    outcome.upstream = Some(endpoint.addr);
    outcome.via_upstream = true;
    if meta.metrics.enabled() && meta.metrics.reporter() == Reporter::Source {
        outcome.upstream_mtls = endpoint.mesh_tls(protocol);
        // The server's sidecar said who it is; the app does not see it.
        outcome.peer = exchange::take(&mut parts.headers).map(|v| meta.metrics.peer(&v));
    }
    // The upstream switched protocols: the tunnel takes both connections over (from here on,
    // neither the route timeout nor the stream idle timeout applies).
    let switched = match (on_upgrade, upstream_upgrade) {
        (Some(downstream), Some(upstream)) => {
            let upstream = upstream
                .await
                .map_err(|source| upgrade_lost(endpoint.addr, source))?;
            meta.tunnel.put(upgrade::Tunnel {
                downstream,
                upstream,
                endpoint: endpoint.addr,
                in_flight: body.into_in_flight(),
            });
            upgrade::strip_hop_by_hop_keeping_upgrade(&mut parts.headers, false);
            None
        }
        _ => {
            strip_hop_by_hop(&mut parts.headers, false);
            Some(body)
        }
    };
    parts.version = if downstream_h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    if let Some(cookie) = hashed.set_cookie {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    if retries_exhausted {
        outcome
            .flags
            .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
    }
    let empty = (http::Method::GET, Uri::from_static("/"), HeaderMap::new());
    let (method, uri, request_headers) = kept_request.as_deref().unwrap_or(&empty);
    let render = |t: &HeaderTemplate, h: &HeaderMap| {
        t.render(&meta.format_context(
            (method, uri, downstream_version),
            request_headers,
            Some(h),
            Some(endpoint.addr),
        ))
    };
    levels.apply_response(
        weighted.map(|w| &w.response_headers),
        &mut parts.headers,
        &render,
    );
    if let Some((policy, origin)) = &cors_origin {
        cors::on_response(policy, origin, &mut parts.headers);
    }
    let body = match switched {
        // The route timeout covers the whole response, as Envoy's.
        Some(body) => Either::Left(body.bind(activity, idle, deadline)),
        None => Either::Right(http_body_util::Full::default()),
    };
    Ok(Response::from_parts(parts, body))
}

/// A request made ready for its cluster: the upstream request of the first attempt and what
/// the attempts and the response need.
struct Outbound<'a> {
    cluster: &'a Arc<Cluster>,
    cluster_name: &'a str,
    weighted: Option<&'a WeightedCluster>,
    protocol: Protocol,
    /// The upgrade the request asks for (WebSocket, CONNECT), if the listener carries it.
    tunnel: Option<upgrade::Kind>,
    /// The downstream connection, handed over by hyper once the 101 is written.
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    hashed: hash::RequestHash,
    /// The endpoint of the first attempt.
    endpoint: Arc<Endpoint>,
    request: Request<RequestBody>,
    downstream_version: Version,
    /// The route's retry policy, unless the request is an upgrade (never retried).
    retry: Option<&'a RetryPolicy>,
    /// What another attempt needs to rebuild the request (taken only with a retry policy).
    template: Option<(http::Method, Uri, Version, HeaderMap)>,
    /// The request body as recorded for another attempt.
    replay: Option<Replayable>,
    activity: Activity,
    /// When the route timeout and the stream idle timeout's clock started.
    start: tokio::time::Instant,
    /// The request head, for response header values with formatters (rare: boxed).
    kept_request: Option<Box<(http::Method, Uri, HeaderMap)>>,
    /// The mirrors' shadows, launched when this is dropped (rare: boxed).
    shadows: Option<Box<mirror::Launch>>,
}

/// Picks the cluster and the endpoint and builds the upstream request: authority, rewrites,
/// hop-by-hop headers, `x-request-id`, header mutations, mirrors, the body (recorded when a
/// retry or a mirror may send it again). Not async: what it keeps on the way stays out of
/// the request's future.
fn prepare<'a>(
    routed: &Routed<'a>,
    meta: &RequestMeta<'_>,
    action: &'a ForwardAction,
    mut req: Request<Incoming>,
) -> Result<Outbound<'a>, ProxyError> {
    let Routed {
        manager: listener,
        table,
        levels,
    } = routed;
    let (cluster_ref, weighted) = match &action.clusters {
        ClusterPick::Single(c) => (c, None),
        pick @ ClusterPick::Weighted { total, .. } => {
            pick.pick(rand::rng().random_range(0..*total))
        }
    };
    let cluster = table
        .cluster(cluster_ref.slot)
        .ok_or_else(|| ProxyError::NoCluster {
            name: cluster_ref.name.clone(),
            status: action.cluster_not_found,
        })?;
    let downstream_h2 = req.version() == Version::HTTP_2;
    // Without an upgrade: a flag test, and with websocket on one header lookup; no allocation.
    let tunnel = upgrade::requested(&req, listener.websocket, listener.connect);
    let upgrading = tunnel.is_some();
    let protocol = match cluster.protocol(downstream_h2) {
        // An h1 upgrade cannot ride an h2 connection (that takes RFC 8441's extended CONNECT).
        Protocol::Http2 if upgrading => {
            return Err(ProxyError::UpgradeOverHttp2 {
                cluster: cluster_ref.name.clone(),
            });
        }
        protocol => protocol,
    };
    // An upgrade's exchange cannot be replayed: it is never retried.
    let retry = action.retry.as_deref().filter(|_| !upgrading);
    cluster.breakers.record_request();
    // Consistent hashing: the request's key (only when both route and cluster use it).
    let hashed = if action.hash_policy.is_empty() {
        hash::RequestHash::default()
    } else {
        hash::request_hash(&action.hash_policy, &req, meta.downstream.remote)
    };
    let endpoint = cluster
        .pick_by_key(meta.downstream.local, hashed.key, &[])
        .ok_or_else(|| ProxyError::NoHealthyUpstream(cluster_ref.name.clone()))?;
    // The downstream connection, handed over by hyper once the 101 is written.
    let on_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));

    // A weighted cluster's own authority wins over the route's.
    let host_rewrite = weighted
        .and_then(|w| w.host_rewrite.as_ref())
        .or(action.host_rewrite.as_ref());
    let authority = match host_rewrite {
        Some(h) => h.clone(),
        None => downstream_authority(&req, &endpoint.addr)?,
    };
    let (mut parts, body) = req.into_parts();
    // A CONNECT keeps its authority-form target (the tunnel's far end), unrewritten.
    if tunnel != Some(upgrade::Kind::Connect) {
        let path_and_query = rewritten_path(
            &parts.uri,
            action.prefix_rewrite.as_deref(),
            &levels.route.matcher,
        )?;
        let path_and_query = match action.regex_rewrite.as_deref() {
            Some(rewrite) => regex_rewritten(rewrite, &path_and_query)?,
            None => path_and_query,
        };
        parts.uri = match protocol {
            // HTTP/1.1 upstreams get origin-form; the authority travels in Host.
            Protocol::Http1 => Uri::from(path_and_query),
            // HTTP/2 carries it as :authority, which h2 takes from the URI.
            Protocol::Http2 => {
                let mut uri_parts = uri::Parts::default();
                uri_parts.scheme = Some(Scheme::HTTP);
                uri_parts.authority = Some(
                    uri::Authority::try_from(authority.as_bytes())
                        .map_err(|_| ProxyError::BadRequest("invalid authority"))?,
                );
                uri_parts.path_and_query = Some(path_and_query);
                Uri::from_parts(uri_parts)
                    .map_err(|_| ProxyError::BadRequest("invalid request target"))?
            }
        };
    }
    if upgrading {
        upgrade::strip_hop_by_hop_keeping_upgrade(&mut parts.headers, true);
    } else {
        strip_hop_by_hop(&mut parts.headers, true);
    }
    parts.headers.insert(header::HOST, authority);
    // Istio's metadata exchange: a mesh service's sidecar learns who is calling.
    if meta.metrics.enabled()
        && meta.metrics.reporter() == Reporter::Source
        && !cluster.config.service.labels().host.is_empty()
    {
        meta.metrics.own_headers().insert(&mut parts.headers);
    }
    if listener.generate_request_id && !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(X_REQUEST_ID.clone(), request_id());
    }
    let downstream_version = parts.version;
    // Response header values with formatters may read the request: keep what they need.
    let kept_request = levels
        .response_is_dynamic(weighted.map(|w| &w.response_headers))
        .then(|| {
            Box::new((
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            ))
        });
    {
        let (method, uri) = (&parts.method, &parts.uri);
        let render = |t: &HeaderTemplate, h: &HeaderMap| {
            t.render(&meta.format_context(
                (method, uri, downstream_version),
                h,
                None,
                Some(endpoint.addr),
            ))
        };
        levels.apply_request(
            weighted.map(|w| &w.request_headers),
            &mut parts.headers,
            &render,
        );
    }
    // Mirrors (mirror.rs): shadows of the upstream head as it stands now, sent when this
    // function returns (the caller's response head is back); an upgrade is never mirrored.
    let mut shadows = mirror::Shadows::roll(table, &action.mirrors)
        .filter(|_| !upgrading)
        .map(|s| {
            Box::new(s.prepare(
                (&parts.method, &parts.uri, parts.version, &parts.headers),
                meta.downstream.local,
                action.timeout.or(listener.stream_idle_timeout),
            ))
        });
    // The stream idle timeout's clock; a streamed body reports its progress to it (and its
    // failure, which makes the client, not the upstream, the cause of what follows).
    let start = tokio::time::Instant::now();
    let (body, activity, replay) = if http_body::Body::is_end_stream(&body) {
        (
            RequestBody::empty(),
            Activity::complete_request(start),
            None,
        )
    } else {
        let activity = Activity::streamed_request(start);
        let progress = activity.progress().cloned();
        match retry.is_some() || shadows.is_some() {
            // Recorded as it streams, so that a retry (or a mirror) can send it again.
            true => {
                let replay = RequestBody::replayable(body, RETRY_BUFFER_LIMIT, progress);
                if let Some(launch) = shadows.as_mut() {
                    launch.with_body(replay.clone(), activity.clone());
                }
                let first = replay.attempt().unwrap_or_default();
                (first, activity, Some(replay))
            }
            false => (RequestBody::stream(body, progress), activity, None),
        }
    };
    // What another attempt needs to rebuild the request (taken only with a retry policy).
    let template = retry.map(|_| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
            parts.headers.clone(),
        )
    });
    Ok(Outbound {
        cluster,
        cluster_name: &cluster_ref.name,
        weighted,
        protocol,
        tunnel,
        on_upgrade,
        hashed,
        endpoint,
        request: Request::from_parts(parts, body),
        downstream_version,
        retry,
        template,
        replay,
        activity,
        start,
        kept_request,
        shadows,
    })
}

/// Tells the cluster's outlier detection how an attempt went: a response's status (after a
/// connection that worked), or a failure of the proxy's own making (connect failure, reset,
/// timeout). A failure the client caused (its request body) says nothing about the endpoint.
fn record_outcome(
    cluster: &crate::upstream::Cluster,
    endpoint: &crate::upstream::Endpoint,
    result: &Result<Response<crate::upstream::UpstreamBody>, ProxyError>,
) {
    use weft_lb::outlier::Outcome;
    match result {
        Ok(resp) => {
            cluster.record(endpoint, Outcome::ConnectSuccess);
            cluster.record(endpoint, Outcome::Status(resp.status().as_u16()));
        }
        Err(ProxyError::Upstream {
            failure:
                crate::upstream::Failure::DownstreamProtocol | crate::upstream::Failure::Overflow,
            ..
        }) => {}
        Err(ProxyError::Upstream { .. } | ProxyError::Timeout { .. }) => {
            cluster.record(endpoint, Outcome::LocalOriginFailure);
        }
        Err(_) => {}
    }
}

/// `regex_rewrite` applied to the path; the query is kept.
fn regex_rewritten(
    rewrite: &crate::config::mirror::RegexRewrite,
    original: &uri::PathAndQuery,
) -> Result<uri::PathAndQuery, ProxyError> {
    let mut out = rewrite.apply(original.path());
    if let Some(q) = original.query() {
        out.push('?');
        out.push_str(q);
    }
    uri::PathAndQuery::try_from(out)
        .map_err(|_| ProxyError::BadRequest("rewritten path is invalid"))
}

/// The time an attempt may take: the route's remaining time, or the per-try timeout when it is
/// shorter (then `true`: its expiry may be retried).
fn attempt_limit(
    deadline: Option<tokio::time::Instant>,
    per_try: Option<std::time::Duration>,
    now: tokio::time::Instant,
) -> (Option<std::time::Duration>, bool) {
    let remaining = deadline.map(|d| d.saturating_duration_since(now));
    match (remaining, per_try) {
        (Some(r), Some(p)) if p < r => (Some(p), true),
        (None, Some(p)) => (Some(p), true),
        (r, _) => (r, false),
    }
}

/// One attempt: the request to one endpoint until its response head, within `limit` and the
/// stream idle timeout.
async fn send_attempt(
    cluster: &crate::upstream::Cluster,
    endpoint: &std::sync::Arc<crate::upstream::Endpoint>,
    protocol: Protocol,
    upgrading: bool,
    req: Request<RequestBody>,
    (start, limit, idle): (
        tokio::time::Instant,
        Option<std::time::Duration>,
        Option<std::time::Duration>,
    ),
    activity: &Activity,
) -> Result<Response<crate::upstream::UpstreamBody>, ProxyError> {
    let connect_timeout = cluster.config.connect_timeout;
    // The cluster's `max_requests`: beyond it, 503 UO at once (an upgrade's tunnel is bounded
    // by the listener's connection limits instead).
    let permit = if upgrading {
        None
    } else {
        Some(
            cluster
                .breakers
                .try_request()
                .map_err(|overflow| ProxyError::Upstream {
                    endpoint: endpoint.addr,
                    failure: crate::upstream::Failure::Overflow,
                    source: crate::upstream::UpstreamError::Connect(
                        crate::upstream::connect::ConnectError::Overflow {
                            addr: endpoint.addr,
                            overflow,
                        },
                    ),
                })?,
        )
    };
    let send = std::pin::pin!(match permit {
        // Boxed: rare, and it keeps every other request's future small.
        None => tokio_util::either::Either::Left(Box::pin(endpoint::send_upgrade(
            endpoint,
            connect_timeout,
            req
        ))),
        Some(permit) => tokio_util::either::Either::Right(endpoint::send_limited(
            endpoint,
            protocol,
            connect_timeout,
            req,
            Some((permit, &cluster.breakers)),
        )),
    });
    let result = idle::bounded(send, start, limit, idle, activity)
        .await
        .map_err(|expired| match expired {
            Expired::Route(timeout) => ProxyError::Timeout {
                endpoint: endpoint.addr,
                timeout,
            },
            Expired::Idle {
                timeout,
                request_complete,
            } => ProxyError::StreamIdle {
                timeout,
                request_complete,
            },
        })?;
    result.map_err(|e| ProxyError::from_upstream(endpoint.addr, e, activity.downstream_failed()))
}

/// The upstream answered 101 but its connection could not be taken over (it closed): `UC`.
fn upgrade_lost(endpoint: std::net::SocketAddr, source: hyper::Error) -> ProxyError {
    ProxyError::Upstream {
        endpoint,
        failure: crate::upstream::Failure::Terminated,
        source: crate::upstream::UpstreamError::Http1 { endpoint, source },
    }
}

/// The authority the client asked for, as the upstream must see it: the `Host` header's value
/// is reused as it is (no copy); a request-target one is copied; with neither, the endpoint's
/// address.
fn downstream_authority<B>(
    req: &Request<B>,
    endpoint: &std::net::SocketAddr,
) -> Result<HeaderValue, ProxyError> {
    let invalid = |_| ProxyError::BadRequest("invalid authority");
    match authority_source(req) {
        Some(AuthoritySource::Host(h)) => Ok(h.clone()),
        Some(AuthoritySource::Target(a)) => HeaderValue::from_str(a).map_err(invalid),
        None => HeaderValue::try_from(endpoint.to_string()).map_err(invalid),
    }
}
