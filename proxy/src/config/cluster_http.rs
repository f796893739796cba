//! A cluster's upstream connection options: `typed_extension_protocol_options`'
//! `HttpProtocolOptions` (protocol, idle timeout, requests and lifetime per connection, HTTP/2
//! streams per connection and PING keepalive) and `upstream_connection_options.tcp_keepalive`.
//!
//! ```text
//!  HttpProtocolOptions { explicit_http_config h1 │ h2 { max_concurrent_streams,
//!                                                       connection_keepalive { interval, timeout,
//!                                                                              interval_jitter } }
//!                        │ use_downstream_protocol_config (the same h2 options),
//!                        common_http_protocol_options { idle_timeout, max_requests_per_connection,
//!                                                       max_connection_duration } }
//!  upstream_connection_options.tcp_keepalive { probes, time, interval }
//!    (DestinationRule connectionPool: http.idleTimeout, http.maxRequestsPerConnection,
//!     tcp.maxConnectionDuration, http.maxConcurrentStreams, http.http2KeepAlive,
//!     tcp.tcpKeepalive)
//! ```

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as upstream_http;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use weft_xds::contract::HTTP_PROTOCOL_OPTIONS_TYPE_URL as HTTP_PROTOCOL_OPTIONS_TYPE;

use super::cluster::UpstreamProtocol;
use super::{HTTP_PROTOCOL_OPTIONS, Reason, duration, invalid, reject_leftover, reject_set};

/// TCP keepalive on upstream connections (`SO_KEEPALIVE`; unset values keep the system's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Keepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

/// HTTP/2 PING keepalive on upstream connections (`http2_protocol_options.connection_keepalive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Http2Keepalive {
    /// A PING is sent this often (plus the jitter), whether streams are open or not.
    pub interval: Duration,
    /// The connection is closed when a PING is not answered within this.
    pub timeout: Duration,
    /// At most this much is added at random to each interval (Envoy's `interval_jitter`, 15%
    /// of the interval by default).
    pub jitter: Duration,
}

/// Envoy's default `interval_jitter`, in percent of the interval.
const DEFAULT_JITTER_PERCENT: f64 = 15.0;

/// How upstream connections of a cluster are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionOptions {
    /// A connection serves at most this many requests (HTTP/1.1) or streams (HTTP/2).
    pub max_requests_per_connection: Option<u32>,
    /// A connection older than this takes no new request and closes once idle.
    pub max_connection_duration: Option<Duration>,
    /// HTTP/2: streams per connection at most (below the peer's own limit).
    pub max_concurrent_streams: Option<u32>,
    /// HTTP/2: PINGs that close a connection the peer stopped answering.
    pub http2_keepalive: Option<Http2Keepalive>,
    pub keepalive: Option<Keepalive>,
}

/// What `HttpProtocolOptions` says.
#[derive(Debug)]
pub(super) struct UpstreamHttp {
    pub protocol: UpstreamProtocol,
    /// `None`: Envoy's default; `Duration::MAX` when set to 0 (disabled).
    pub idle_timeout: Option<Duration>,
    pub max_requests_per_connection: Option<u32>,
    pub max_connection_duration: Option<Duration>,
    pub max_concurrent_streams: Option<u32>,
    pub http2_keepalive: Option<Http2Keepalive>,
}

/// The HTTP/2 options the proxy acts on: `max_concurrent_streams` and `connection_keepalive`
/// (taken from `h`; anything else is refused, naming `at`).
fn http2_options(
    mut h: core::Http2ProtocolOptions,
    at: &str,
) -> Result<(Option<u32>, Option<Http2Keepalive>), Reason> {
    let streams = h.max_concurrent_streams.take().map(|v| v.value);
    if streams == Some(0) {
        return Err(invalid(
            format!("{at}.max_concurrent_streams"),
            "must be greater than 0",
        ));
    }
    let keepalive = match h.connection_keepalive.take() {
        None => None,
        Some(k) => {
            http2_keepalive(k).map_err(|r| r.within(&format!("{at}.connection_keepalive")))?
        }
    };
    if h != core::Http2ProtocolOptions::default() {
        return Err(Reason::Unsupported(format!(
            "{at} settings other than max_concurrent_streams and connection_keepalive"
        )));
    }
    Ok((streams, keepalive))
}

/// `connection_keepalive` as Envoy reads it: no `interval` (or 0) sends no PING; `timeout` is
/// required, at least 1 ms.
fn http2_keepalive(mut k: core::KeepaliveSettings) -> Result<Option<Http2Keepalive>, Reason> {
    let interval = duration("interval", k.interval.take().as_ref())?;
    let timeout =
        duration("timeout", k.timeout.take().as_ref())?.ok_or(Reason::Missing("timeout"))?;
    if timeout < Duration::from_millis(1) {
        return Err(invalid("timeout", "must be at least 1ms"));
    }
    if interval.is_some_and(|i| !i.is_zero() && i < Duration::from_millis(1)) {
        return Err(invalid("interval", "must be 0 or at least 1ms"));
    }
    let percent = match k.interval_jitter.take() {
        None => DEFAULT_JITTER_PERCENT,
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value,
        Some(p) => {
            return Err(invalid(
                "interval_jitter",
                format!("{} is not a percentage between 0 and 100", p.value),
            ));
        }
    };
    reject_set!(k, connection_idle_interval);
    reject_leftover(&k, "connection_keepalive")?;
    Ok(interval
        .filter(|i| !i.is_zero())
        .map(|interval| Http2Keepalive {
            interval,
            timeout,
            jitter: interval.mul_f64(percent / 100.0),
        }))
}

/// Converts the cluster's `typed_extension_protocol_options` (taken from it).
pub(super) fn upstream_http(opts: &mut HashMap<String, Any>) -> Result<UpstreamHttp, Reason> {
    use upstream_http::http_protocol_options::UpstreamProtocolOptions as U;
    use upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig as P;
    let mut opts = std::mem::take(opts);
    let any = opts.remove(HTTP_PROTOCOL_OPTIONS);
    if let Some(key) = opts.keys().next() {
        return Err(Reason::Unsupported(format!(
            "typed_extension_protocol_options[{key:?}]"
        )));
    }
    let Some(any) = any else {
        return Ok(UpstreamHttp {
            protocol: UpstreamProtocol::Http1,
            idle_timeout: None,
            max_requests_per_connection: None,
            max_connection_duration: None,
            max_concurrent_streams: None,
            http2_keepalive: None,
        });
    };
    if any.type_url != HTTP_PROTOCOL_OPTIONS_TYPE {
        return Err(invalid(
            "typed_extension_protocol_options",
            format!("unexpected type {}", any.type_url),
        ));
    }
    let mut o = upstream_http::HttpProtocolOptions::decode(any.value.as_slice()).map_err(|e| {
        Reason::Decode {
            type_url: any.type_url.clone(),
            error: e.to_string(),
        }
    })?;
    let (mut max_concurrent_streams, mut http2_keepalive) = (None, None);
    let protocol = match o.upstream_protocol_options.take() {
        None => UpstreamProtocol::Http1,
        Some(U::ExplicitHttpConfig(e)) => match e.protocol_config {
            Some(P::HttpProtocolOptions(h)) if h == Default::default() => UpstreamProtocol::Http1,
            Some(P::Http2ProtocolOptions(h)) => {
                (max_concurrent_streams, http2_keepalive) =
                    http2_options(h, "http2_protocol_options")?;
                UpstreamProtocol::Http2
            }
            Some(P::HttpProtocolOptions(_)) => {
                return Err(Reason::Unsupported("http_protocol_options settings".into()));
            }
            Some(P::Http3ProtocolOptions(_)) => {
                return Err(Reason::Unsupported("http3_protocol_options".into()));
            }
            None => UpstreamProtocol::Http1,
        },
        Some(U::UseDownstreamProtocolConfig(mut d)) => {
            if d.http3_protocol_options.is_some() {
                return Err(Reason::Unsupported(
                    "use_downstream_protocol_config.http3_protocol_options".into(),
                ));
            }
            if let Some(h) = d.http2_protocol_options.take() {
                (max_concurrent_streams, http2_keepalive) =
                    http2_options(h, "use_downstream_protocol_config.http2_protocol_options")?;
            }
            if d.http_protocol_options
                .take()
                .is_some_and(|h| h != Default::default())
            {
                return Err(Reason::Unsupported(
                    "use_downstream_protocol_config.http_protocol_options settings".into(),
                ));
            }
            UpstreamProtocol::Downstream
        }
        Some(U::AutoConfig(_)) => {
            return Err(Reason::Unsupported(
                "HttpProtocolOptions.auto_config".into(),
            ));
        }
    };
    let (idle_timeout, max_requests_per_connection, max_connection_duration) = match o
        .common_http_protocol_options
        .take()
    {
        None => (None, None, None),
        Some(mut common) => {
            let at = |r: Reason| r.within("common_http_protocol_options");
            // Envoy: 0 disables the idle timeout.
            let idle = duration("idle_timeout", common.idle_timeout.take().as_ref())
                .map_err(at)?
                .map(|d| if d.is_zero() { Duration::MAX } else { d });
            let per_connection = common
                .max_requests_per_connection
                .take()
                .map(|v| v.value)
                .filter(|v| *v > 0);
            let lifetime = duration(
                "max_connection_duration",
                common.max_connection_duration.take().as_ref(),
            )
            .map_err(at)?
            .filter(|d| !d.is_zero());
            if common != Default::default() {
                return Err(Reason::Unsupported(
                        "common_http_protocol_options settings other than idle_timeout, max_requests_per_connection and max_connection_duration".into(),
                    ));
            }
            (idle, per_connection, lifetime)
        }
    };
    reject_set!(
        o,
        upstream_http_protocol_options,
        http_filters,
        header_validation_config,
        outlier_detection,
        request_mirror_policies,
        hash_policy,
        retry_policy
    );
    reject_leftover(&o, "HttpProtocolOptions")?;
    Ok(UpstreamHttp {
        protocol,
        idle_timeout,
        max_requests_per_connection,
        max_connection_duration,
        max_concurrent_streams,
        http2_keepalive,
    })
}

/// `upstream_connection_options`: its `tcp_keepalive` only.
pub(super) fn keepalive(
    options: Option<cds::UpstreamConnectionOptions>,
) -> Result<Option<Keepalive>, Reason> {
    let Some(mut options) = options else {
        return Ok(None);
    };
    let keepalive = options.tcp_keepalive.take().map(|k| {
        let seconds = |v: Option<envoy_types::pb::google::protobuf::UInt32Value>| {
            v.map(|v| Duration::from_secs(u64::from(v.value)))
        };
        Keepalive {
            probes: k.keepalive_probes.map(|v| v.value),
            time: seconds(k.keepalive_time),
            interval: seconds(k.keepalive_interval),
        }
    });
    reject_leftover(&options, "upstream_connection_options")
        .map_err(|r| r.within("upstream_connection_options"))?;
    Ok(keepalive)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
    use prost::Name;

    use super::*;

    fn options(o: upstream_http::HttpProtocolOptions) -> HashMap<String, Any> {
        HashMap::from([(
            HTTP_PROTOCOL_OPTIONS.to_string(),
            Any {
                type_url: upstream_http::HttpProtocolOptions::type_url(),
                value: o.encode_to_vec(),
            },
        )])
    }

    #[test]
    fn connection_pool_settings() {
        use upstream_http::http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions as U, explicit_http_config::ProtocolConfig,
        };
        let mut opts = options(upstream_http::HttpProtocolOptions {
            common_http_protocol_options: Some(core::HttpProtocolOptions {
                idle_timeout: Some(PbDuration {
                    seconds: 30,
                    nanos: 0,
                }),
                max_requests_per_connection: Some(UInt32Value { value: 1 }),
                max_connection_duration: Some(PbDuration {
                    seconds: 60,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            upstream_protocol_options: Some(U::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    core::Http2ProtocolOptions {
                        max_concurrent_streams: Some(UInt32Value { value: 10 }),
                        ..Default::default()
                    },
                )),
            })),
            ..Default::default()
        });
        let http = upstream_http(&mut opts).unwrap();
        assert_eq!(http.protocol, UpstreamProtocol::Http2);
        assert_eq!(http.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(http.max_requests_per_connection, Some(1));
        assert_eq!(http.max_connection_duration, Some(Duration::from_secs(60)));
        assert_eq!(http.max_concurrent_streams, Some(10));
    }

    #[test]
    fn refuses_what_it_does_not_apply() {
        let mut opts = options(upstream_http::HttpProtocolOptions {
            common_http_protocol_options: Some(core::HttpProtocolOptions {
                max_headers_count: Some(UInt32Value { value: 10 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            upstream_http(&mut opts)
                .unwrap_err()
                .to_string()
                .contains("common_http_protocol_options")
        );
        let keepalive_and_more = cds::UpstreamConnectionOptions {
            tcp_keepalive: Some(core::TcpKeepalive {
                keepalive_probes: Some(UInt32Value { value: 3 }),
                keepalive_time: Some(UInt32Value { value: 10 }),
                keepalive_interval: Some(UInt32Value { value: 5 }),
            }),
            set_local_interface_name_on_upstream_connections: true,
            ..Default::default()
        };
        assert!(keepalive(Some(keepalive_and_more)).is_err());
        let k = keepalive(Some(cds::UpstreamConnectionOptions {
            tcp_keepalive: Some(core::TcpKeepalive {
                keepalive_probes: Some(UInt32Value { value: 3 }),
                keepalive_time: Some(UInt32Value { value: 10 }),
                keepalive_interval: None,
            }),
            ..Default::default()
        }))
        .unwrap()
        .unwrap();
        assert_eq!(
            (k.probes, k.time, k.interval),
            (Some(3), Some(Duration::from_secs(10)), None)
        );
    }

    /// HttpProtocolOptions following the downstream's protocol, with these HTTP/2 options.
    fn downstream_h2(h2: core::Http2ProtocolOptions) -> HashMap<String, Any> {
        use upstream_http::http_protocol_options::{
            UpstreamProtocolOptions as U, UseDownstreamHttpConfig,
        };
        options(upstream_http::HttpProtocolOptions {
            upstream_protocol_options: Some(U::UseDownstreamProtocolConfig(
                UseDownstreamHttpConfig {
                    http2_protocol_options: Some(h2),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
    }

    fn ms(millis: i32) -> Option<PbDuration> {
        Some(PbDuration {
            seconds: 0,
            nanos: millis * 1_000_000,
        })
    }

    #[test]
    fn http2_keepalive_with_envoys_default_jitter_or_its_own() {
        let keepalive = |k: core::KeepaliveSettings| {
            upstream_http(&mut downstream_h2(core::Http2ProtocolOptions {
                connection_keepalive: Some(k),
                ..Default::default()
            }))
            .map(|http| http.http2_keepalive)
        };
        let k = keepalive(core::KeepaliveSettings {
            interval: ms(200),
            timeout: ms(50),
            ..Default::default()
        })
        .unwrap()
        .expect("keepalive");
        assert_eq!(
            k,
            Http2Keepalive {
                interval: Duration::from_millis(200),
                timeout: Duration::from_millis(50),
                jitter: Duration::from_millis(30),
            }
        );
        let k = keepalive(core::KeepaliveSettings {
            interval: ms(200),
            timeout: ms(50),
            interval_jitter: Some(envoy_types::pb::envoy::r#type::v3::Percent { value: 0.0 }),
            ..Default::default()
        })
        .unwrap()
        .expect("keepalive");
        assert_eq!(k.jitter, Duration::ZERO);
        // No interval (or 0): Envoy sends no PING.
        let none = keepalive(core::KeepaliveSettings {
            timeout: ms(50),
            ..Default::default()
        });
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn http2_keepalive_refuses_what_envoy_refuses_or_it_does_not_apply() {
        let error = |k: core::KeepaliveSettings| {
            upstream_http(&mut downstream_h2(core::Http2ProtocolOptions {
                connection_keepalive: Some(k),
                ..Default::default()
            }))
            .unwrap_err()
            .to_string()
        };
        let at = "use_downstream_protocol_config.http2_protocol_options.connection_keepalive";
        let missing = error(core::KeepaliveSettings {
            interval: ms(200),
            ..Default::default()
        });
        assert!(
            missing.contains(&format!("{at}.timeout")) && missing.contains("required"),
            "{missing}"
        );
        let idle = error(core::KeepaliveSettings {
            interval: ms(200),
            timeout: ms(50),
            connection_idle_interval: ms(10),
            ..Default::default()
        });
        assert!(
            idle.contains(&format!("{at}.connection_idle_interval"))
                && idle.contains("not supported"),
            "{idle}"
        );
        let jitter = error(core::KeepaliveSettings {
            interval: ms(200),
            timeout: ms(50),
            interval_jitter: Some(envoy_types::pb::envoy::r#type::v3::Percent { value: 150.0 }),
            ..Default::default()
        });
        assert!(
            jitter.contains(&format!("{at}.interval_jitter")),
            "{jitter}"
        );
        // Other HTTP/2 options are named, not dropped.
        let other = upstream_http(&mut downstream_h2(core::Http2ProtocolOptions {
            allow_connect: true,
            ..Default::default()
        }))
        .unwrap_err()
        .to_string();
        assert!(
            other.contains("use_downstream_protocol_config.http2_protocol_options settings other than max_concurrent_streams and connection_keepalive"),
            "{other}"
        );
    }
}
