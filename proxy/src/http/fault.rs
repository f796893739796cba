//! Fault injection (the HCM's fault filter, the route's faults): delay, then abort, each for its
//! share of the requests, before the request is forwarded (the route timeout starts after the
//! delay, as behind Envoy's fault filter).
//!
//! ```text
//!  route fault (else the listener's) ─► headers match? ─► delay? sleep (DI) ─► abort? local reply (FI)
//! ```

use rand::RngExt;

use super::router::RequestView;
use crate::config::fault::{AbortKind, Fault, PER_MILLION};
use crate::error::{ProxyError, ResponseFlags};

/// The fault that applies to a route on a listener: none without the fault filter; the
/// route's own, else the filter's default.
pub(super) fn effective<'a>(
    filter: Option<&'a Option<Box<Fault>>>,
    route: Option<&'a Fault>,
) -> Option<&'a Fault> {
    let default = filter?;
    route.or(default.as_deref())
}

/// Applies `fault` to a request: waits for its delay (`DI` in `flags`), or fails with its
/// abort (`FI`).
pub(super) async fn apply(
    fault: &Fault,
    req: &RequestView<'_>,
    flags: &mut ResponseFlags,
) -> Result<(), ProxyError> {
    if !fault.headers.iter().all(|m| m.matches(req)) {
        return Ok(());
    }
    if let Some(delay) = &fault.delay
        && chosen(delay.per_million)
    {
        tokio::time::sleep(delay.duration).await;
        flags.insert(ResponseFlags::DELAY_INJECTED);
    }
    if let Some(abort) = &fault.abort
        && chosen(abort.per_million)
    {
        let (status, grpc_status) = match abort.kind {
            AbortKind::Http(status) => (status, None),
            AbortKind::Grpc(code) => (http::StatusCode::OK, Some(code)),
        };
        return Err(ProxyError::FaultAbort {
            status,
            grpc_status,
            body: abort.body.clone(),
        });
    }
    Ok(())
}

/// A draw for a share given per million (faults, mirrors).
pub(super) fn chosen(per_million: u32) -> bool {
    per_million >= PER_MILLION
        || (per_million > 0 && rand::rng().random_range(0..PER_MILLION) < per_million)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_share() {
        assert!(!chosen(0));
        assert!(chosen(PER_MILLION));
        let hits = (0..100_000).filter(|_| chosen(250_000)).count();
        assert!((23_500..26_500).contains(&hits), "{hits}");
    }

    #[test]
    fn the_route_overrides_the_listener_default() {
        let listener_default = Some(Box::new(Fault::default()));
        let route = Fault::default();
        assert!(
            effective(None, Some(&route)).is_none(),
            "no filter, no faults"
        );
        assert!(std::ptr::eq(
            effective(Some(&listener_default), Some(&route)).unwrap(),
            &route
        ));
        assert!(std::ptr::eq(
            effective(Some(&listener_default), None).unwrap(),
            listener_default.as_deref().unwrap()
        ));
        assert!(effective(Some(&None), None).is_none());
    }
}
