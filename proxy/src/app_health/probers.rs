//! `ISTIO_KUBE_APP_PROBERS` parsed once at start: the app's original probes by status-port path, every field checked.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// The environment variable the injector passes the original probes in (Istio's name).
pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";
/// A probe's timeout when it sets none (Kubernetes' default `timeoutSeconds`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const PATH_PREFIX: &str = "/app-health/";

/// The app's probes by the status port's path (`/app-health/<container>/<livez│readyz│startupz>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppProbers(pub(super) BTreeMap<String, AppProbe>);

/// One original probe and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProbe {
    pub prober: Prober,
    pub timeout: Duration,
}

/// What kubelet would have done (Kubernetes' probe actions; ports are numbers here, the
/// injector resolves names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prober {
    /// `httpGet`: success is a 2xx or 3xx answer (redirects are not followed).
    Http {
        port: u16,
        path: PathAndQuery,
        scheme: Scheme,
        /// Where to connect instead of the pod IP (and the default `Host`).
        host: Option<String>,
        /// `httpHeaders`, in order; a `Host` among them sets the request's `Host`.
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// `tcpSocket`: success is an open connection.
    Tcp { port: u16, host: Option<String> },
    /// `grpc`: success is `SERVING` from `grpc.health.v1.Health/Check` for `service`.
    Grpc { port: u16, service: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Why `ISTIO_KUBE_APP_PROBERS` cannot be used (the proxy does not start).
#[derive(Debug, thiserror::Error)]
pub enum ProbersError {
    #[error("{APP_PROBERS_ENV} is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{APP_PROBERS_ENV} must be a JSON object of probes by path")]
    NotAnObject,
    #[error("{APP_PROBERS_ENV}[{key:?}]{field}: {reason}")]
    Probe {
        key: String,
        /// The field path inside the probe (`.httpGet.port`), empty for the key itself.
        field: String,
        reason: String,
    },
}

/// A field of one probe that is not usable: its path inside the probe and why.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

fn field_error(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl AppProbers {
    /// The `--app-probers` flag: unset or empty means no probes.
    pub fn from_flag(flag: Option<&str>) -> Result<Self, ProbersError> {
        match flag.map(str::trim) {
            None | Some("") => Ok(Self::default()),
            Some(text) => text.parse(),
        }
    }

    pub fn get(&self, path: &str) -> Option<&AppProbe> {
        self.0.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &AppProbe)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for AppProbers {
    type Err = ProbersError;

    fn from_str(text: &str) -> Result<Self, ProbersError> {
        let Value::Object(map) = serde_json::from_str(text)? else {
            return Err(ProbersError::NotAnObject);
        };
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let wrap = |e: FieldError| ProbersError::Probe {
                key: key.clone(),
                field: e.field,
                reason: e.reason,
            };
            check_path(&key).map_err(wrap)?;
            let probe = AppProbe::try_from(&value).map_err(wrap)?;
            out.insert(key, probe);
        }
        Ok(Self(out))
    }
}

/// Istio's keys: `/app-health/<container>/<livez│readyz│startupz>`.
fn check_path(key: &str) -> Result<(), FieldError> {
    let valid = key
        .strip_prefix(PATH_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(container, which)| {
            !container.is_empty()
                && !container.contains('/')
                && matches!(which, "livez" | "readyz" | "startupz")
        });
    if valid {
        Ok(())
    } else {
        Err(field_error(
            "",
            "the key must be /app-health/<container>/livez, readyz or startupz",
        ))
    }
}

impl TryFrom<&Value> for AppProbe {
    type Error = FieldError;

    fn try_from(value: &Value) -> Result<Self, FieldError> {
        let Value::Object(probe) = value else {
            return Err(field_error("", "a probe must be a JSON object"));
        };
        let get = |key: &str| probe.get(key).filter(|v| !v.is_null());
        let timeout = match get("timeoutSeconds") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.as_u64() {
                Some(0) => DEFAULT_TIMEOUT,
                Some(n) => Duration::from_secs(n),
                None => {
                    return Err(field_error(
                        ".timeoutSeconds",
                        format!("{v} is not a whole number of seconds"),
                    ));
                }
            },
        };
        let actions = [get("httpGet"), get("tcpSocket"), get("grpc")];
        let prober = match actions {
            [Some(action), None, None] => http_prober(action)?,
            [None, Some(action), None] => Prober::Tcp {
                port: port(action, ".tcpSocket")?,
                host: host(action, ".tcpSocket")?,
            },
            [None, None, Some(action)] => Prober::Grpc {
                port: port(action, ".grpc")?,
                service: string(action, ".grpc", "service")?.unwrap_or_default(),
            },
            _ => {
                return Err(field_error(
                    "",
                    "a probe needs exactly one of httpGet, tcpSocket and grpc",
                ));
            }
        };
        Ok(Self { prober, timeout })
    }
}

fn http_prober(action: &Value) -> Result<Prober, FieldError> {
    const AT: &str = ".httpGet";
    let path = string(action, AT, "path")?.unwrap_or_default();
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let path = PathAndQuery::try_from(path.as_str())
        .map_err(|e| field_error(".httpGet.path", format!("{path:?}: {e}")))?;
    let scheme = match string(action, AT, "scheme")?.as_deref() {
        None => Scheme::Http,
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
        Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
        Some(s) => {
            return Err(field_error(
                ".httpGet.scheme",
                format!("{s:?} is not HTTP or HTTPS"),
            ));
        }
    };
    let mut headers = Vec::new();
    if let Some(list) = action.get("httpHeaders").filter(|v| !v.is_null()) {
        let Value::Array(list) = list else {
            return Err(field_error(".httpGet.httpHeaders", "must be a list"));
        };
        for (i, header) in list.iter().enumerate() {
            let at = format!(".httpGet.httpHeaders[{i}]");
            let name = string(header, &at, "name")?.unwrap_or_default();
            let value = string(header, &at, "value")?.unwrap_or_default();
            let name = HeaderName::try_from(name.as_str()).map_err(|_| {
                field_error(
                    &format!("{at}.name"),
                    format!("{name:?} is not a header name"),
                )
            })?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                field_error(
                    &format!("{at}.value"),
                    format!("{value:?} is not a header value"),
                )
            })?;
            headers.push((name, value));
        }
    }
    Ok(Prober::Http {
        port: port(action, AT)?,
        path,
        scheme,
        host: host(action, AT)?,
        headers,
    })
}

/// An optional string field of `object` (`at` is the object's field path).
fn string(object: &Value, at: &str, key: &str) -> Result<Option<String>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(field_error(
            &format!("{at}.{key}"),
            format!("{other} is not a string"),
        )),
    }
}

fn host(object: &Value, at: &str) -> Result<Option<String>, FieldError> {
    Ok(string(object, at, "host")?.filter(|h| !h.is_empty()))
}

/// The `port` of an action: a number (or a number in a string, as Istio accepts).
fn port(action: &Value, at: &str) -> Result<u16, FieldError> {
    let field = format!("{at}.port");
    let n = match action.get("port") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(field_error(
                    &field,
                    format!("{s:?} is a port name: the injector resolves names to numbers"),
                ));
            }
        },
        None | Some(Value::Null) => return Err(field_error(&field, "missing")),
        Some(other) => return Err(field_error(&field, format!("{other} is not a port"))),
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| field_error(&field, "not a port (1-65535)"))
}

impl fmt::Display for Prober {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &Option<String>| h.clone().unwrap_or_else(|| "<pod IP>".into());
        match self {
            Prober::Http {
                port,
                path,
                scheme,
                host: h,
                headers,
            } => {
                let scheme = match scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                };
                write!(f, "GET {scheme}://{}:{port}{path}", host(h))?;
                for (name, _) in headers {
                    write!(f, " +{name}")?;
                }
                Ok(())
            }
            Prober::Tcp { port, host: h } => write!(f, "TCP {}:{port}", host(h)),
            Prober::Grpc { port, service } => {
                write!(f, "gRPC health <pod IP>:{port} service {service:?}")
            }
        }
    }
}
