//! Fault injection (Envoy `HTTPFault`, VirtualService `fault`) → `Fault`: a delay and/or an
//! abort, each for a share of the requests.
//!
//! ```text
//!  HCM http_filters: envoy.filters.http.fault (HTTPFault: the listener-wide default, usually empty)
//!  route typed_per_filter_config["envoy.filters.http.fault"]: HTTPFault, replacing the default
//!    delay { fixed_delay, percentage }  abort { http_status │ grpc_status, percentage }  headers
//! ```

use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use http::StatusCode;

use super::matcher::header_match;
use super::route::HeaderMatch;
use super::{Reason, duration, invalid, reject_leftover, reject_set};

/// One in a million: the unit of fault percentages (Istio sends `MILLION` denominators).
pub const PER_MILLION: u32 = 1_000_000;

/// The faults injected into a route's requests.
#[derive(Debug, Default)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// The request must match every one of these for a fault to apply.
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug)]
pub struct FaultDelay {
    pub duration: Duration,
    /// Share of requests delayed, per million.
    pub per_million: u32,
}

#[derive(Debug)]
pub struct FaultAbort {
    pub kind: AbortKind,
    /// Share of requests aborted, per million.
    pub per_million: u32,
    /// `response_body`, else Envoy's "fault filter abort".
    pub body: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// An HTTP status (200..600).
    Http(StatusCode),
    /// A gRPC status: HTTP 200 with `grpc-status` (a trailers-only response).
    Grpc(u32),
}

impl Fault {
    /// Whether this config injects nothing (an empty `HTTPFault`, as on the listener).
    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}

impl TryFrom<fault::HttpFault> for Fault {
    type Error = Reason;

    fn try_from(mut f: fault::HttpFault) -> Result<Self, Reason> {
        let delay = f.delay.take().map(convert_delay).transpose()?;
        let abort = f.abort.take().map(convert_abort).transpose()?;
        let headers = std::mem::take(&mut f.headers)
            .into_iter()
            .enumerate()
            .map(|(i, h)| header_match(h).map_err(|r| r.within(&format!("headers[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        reject_set!(
            f,
            upstream_cluster,
            downstream_nodes,
            max_active_faults,
            response_rate_limit,
            delay_percent_runtime,
            abort_percent_runtime,
            delay_duration_runtime,
            abort_http_status_runtime,
            max_active_faults_runtime,
            response_rate_limit_percent_runtime,
            abort_grpc_status_runtime,
            disable_downstream_cluster_stats,
            filter_metadata
        );
        reject_leftover(&f, "HTTPFault")?;
        Ok(Self {
            delay,
            abort,
            headers,
        })
    }
}

fn convert_delay(mut d: common_fault::FaultDelay) -> Result<FaultDelay, Reason> {
    use common_fault::fault_delay::FaultDelaySecifier as S;
    let duration = match d.fault_delay_secifier.take() {
        Some(S::FixedDelay(fixed)) => duration("delay.fixed_delay", Some(&fixed))?
            .ok_or(Reason::Missing("delay.fixed_delay"))?,
        Some(S::HeaderDelay(_)) => return Err(Reason::Unsupported("delay.header_delay".into())),
        None => return Err(Reason::Missing("delay.fixed_delay")),
    };
    Ok(FaultDelay {
        duration,
        per_million: per_million("delay.percentage", d.percentage.take())?,
    })
}

fn convert_abort(mut a: fault::FaultAbort) -> Result<FaultAbort, Reason> {
    use fault::fault_abort::ErrorType as E;
    let kind = match a.error_type.take() {
        Some(E::HttpStatus(code)) => AbortKind::Http(
            u16::try_from(code)
                .ok()
                .filter(|c| (200..600).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| {
                    invalid("abort.http_status", format!("{code} is not in [200, 600)"))
                })?,
        ),
        Some(E::GrpcStatus(code)) if code <= 16 => AbortKind::Grpc(code),
        Some(E::GrpcStatus(code)) => {
            return Err(invalid(
                "abort.grpc_status",
                format!("{code} is not a gRPC status"),
            ));
        }
        Some(E::HeaderAbort(_)) => return Err(Reason::Unsupported("abort.header_abort".into())),
        None => return Err(Reason::Missing("abort.http_status or abort.grpc_status")),
    };
    let body = Some(std::mem::take(&mut a.response_body))
        .filter(|b| !b.is_empty())
        .map(Bytes::from);
    Ok(FaultAbort {
        kind,
        per_million: per_million("abort.percentage", a.percentage.take())?,
        body,
    })
}

/// A `FractionalPercent` as parts per million. Unset is Envoy's default `0/100`, i.e. never (the
/// controller always sets it: Istio's translation sends 100 % for a fault without percentage).
/// Values over 100 % are capped, as Envoy does.
pub(super) fn per_million(
    field: &'static str,
    p: Option<FractionalPercent>,
) -> Result<u32, Reason> {
    let Some(p) = p else { return Ok(0) };
    let scale = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::Hundred) => 10_000,
        Ok(DenominatorType::TenThousand) => 100,
        Ok(DenominatorType::Million) => 1,
        Err(_) => {
            return Err(invalid(
                field,
                format!("unknown denominator {}", p.denominator),
            ));
        }
    };
    Ok(p.numerator.saturating_mul(scale).min(PER_MILLION))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::Duration as PbDuration;

    use super::*;

    fn percent(numerator: u32, denominator: DenominatorType) -> Option<FractionalPercent> {
        Some(FractionalPercent {
            numerator,
            denominator: denominator as i32,
        })
    }

    #[test]
    fn istios_delay_and_abort() {
        let f = Fault::try_from(fault::HttpFault {
            delay: Some(common_fault::FaultDelay {
                percentage: percent(100_000, DenominatorType::Million),
                fault_delay_secifier: Some(
                    common_fault::fault_delay::FaultDelaySecifier::FixedDelay(PbDuration {
                        seconds: 7,
                        nanos: 0,
                    }),
                ),
            }),
            abort: Some(fault::FaultAbort {
                percentage: percent(50, DenominatorType::Hundred),
                error_type: Some(fault::fault_abort::ErrorType::HttpStatus(500)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let delay = f.delay.unwrap();
        assert_eq!(delay.duration, Duration::from_secs(7));
        assert_eq!(delay.per_million, 100_000);
        let abort = f.abort.unwrap();
        assert_eq!(
            abort.kind,
            AbortKind::Http(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(abort.per_million, 500_000);
    }

    #[test]
    fn grpc_abort_and_caps() {
        let f = Fault::try_from(fault::HttpFault {
            abort: Some(fault::FaultAbort {
                percentage: percent(200, DenominatorType::Hundred),
                error_type: Some(fault::fault_abort::ErrorType::GrpcStatus(14)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let abort = f.abort.unwrap();
        assert_eq!(abort.kind, AbortKind::Grpc(14));
        assert_eq!(abort.per_million, PER_MILLION, "over 100 % is capped");
        assert!(
            Fault::try_from(fault::HttpFault::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        let err = |f: fault::HttpFault| Fault::try_from(f).unwrap_err().to_string();
        assert!(
            err(fault::HttpFault {
                abort: Some(fault::FaultAbort {
                    error_type: Some(fault::fault_abort::ErrorType::HttpStatus(99)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .contains("abort.http_status")
        );
        assert!(
            err(fault::HttpFault {
                upstream_cluster: "x".into(),
                ..Default::default()
            })
            .contains("upstream_cluster")
        );
        assert!(
            err(fault::HttpFault {
                delay: Some(common_fault::FaultDelay {
                    fault_delay_secifier: Some(
                        common_fault::fault_delay::FaultDelaySecifier::HeaderDelay(
                            common_fault::fault_delay::HeaderDelay {}
                        )
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .contains("header_delay")
        );
    }
}
