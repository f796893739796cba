//! Access log filters: a CEL expression (Envoy's `envoy.access_loggers.extension_filters.cel`,
//! what Istio's Telemetry `accessLogging[].filter.expression` becomes), compiled once with the
//! `cel` crate and evaluated against Envoy's attribute names for each finished request or TCP
//! connection. A request is logged when the expression is `true`; an expression that fails at
//! run time (a missing header, a type mismatch, `request.*` or `response.*` of a TCP
//! connection, which has neither) does not log, as in Envoy.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};

use super::Entry;

/// The top-level attributes an expression may use (Envoy's names).
pub const ATTRIBUTES: &[&str] = &[
    "request",
    "response",
    "connection",
    "source",
    "destination",
    "upstream",
    "xds",
];

/// Why a filter expression was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("not a CEL expression: {0}")]
    Syntax(String),
    #[error("unknown attribute {0:?} (known: {list})", list = ATTRIBUTES.join(", "))]
    Attribute(String),
}

/// A compiled filter expression.
pub struct Filter {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Filter").field(&self.source).finish()
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

impl Filter {
    /// Compiles `source`, refusing unknown top-level attributes (a typo would otherwise make
    /// every request fail the filter, silently).
    pub fn compile(source: &str) -> Result<Self, FilterError> {
        let program = Program::compile(source).map_err(|e| FilterError::Syntax(e.to_string()))?;
        if let Some(unknown) = program
            .references()
            .variables()
            .into_iter()
            .find(|v| !ATTRIBUTES.contains(v))
        {
            return Err(FilterError::Attribute(unknown.to_string()));
        }
        Ok(Self {
            source: source.to_string(),
            program,
        })
    }

    /// Whether `entry` is to be logged.
    pub fn matches(&self, entry: &Entry<'_>) -> bool {
        let mut context = Context::with_env(ENV.clone());
        for (name, value) in attributes(entry) {
            if entry.tcp && matches!(name, "request" | "response") {
                continue;
            }
            context.add_variable_from_value(name, value);
        }
        matches!(self.program.execute(&context), Ok(Value::Bool(true)))
    }
}

/// A CEL expression whose value is a metric label (Telemetry `tagOverrides.<tag>.value`, the
/// stats filter's `dimensions`), over the same attributes as [`Filter`].
pub struct Expression {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    /// Compiles `source`, refusing unknown top-level attributes as [`Filter::compile`] does.
    pub fn compile(source: &str) -> Result<Self, FilterError> {
        let Filter { source, program } = Filter::compile(source)?;
        Ok(Self { source, program })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's value as label text; `None` when it fails or is not a scalar.
    pub fn evaluate(&self, entry: &Entry<'_>) -> Option<String> {
        let mut context = Context::with_env(ENV.clone());
        for (name, value) in attributes(entry) {
            context.add_variable_from_value(name, value);
        }
        match self.program.execute(&context).ok()? {
            Value::String(s) => Some(s.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(u) => Some(u.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<HashMap<String, Value>>()
        .into()
}

fn headers(h: Option<&http::HeaderMap>) -> Value {
    h.map(|h| {
        h.iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), Value::from(v.to_str().ok()?))))
            .collect::<HashMap<String, Value>>()
    })
    .unwrap_or_default()
    .into()
}

fn attributes(e: &Entry<'_>) -> [(&'static str, Value); 7] {
    let text = |s: Option<&str>| s.map_or(Value::Null, Value::from);
    let request = e.request;
    [
        (
            "request",
            map(vec![
                ("method", text(request.map(|r| r.method.as_str()))),
                ("path", text(request.map(|r| r.path()))),
                ("url_path", text(request.map(|r| r.uri.path()))),
                ("host", text(request.and_then(|r| r.authority.as_deref()))),
                (
                    "scheme",
                    text(request.map(|r| r.uri.scheme_str().unwrap_or("http"))),
                ),
                (
                    "protocol",
                    text(request.map(|r| format!("{:?}", r.version)).as_deref()),
                ),
                ("headers", headers(request.map(|r| &r.headers))),
                (
                    "id",
                    text(
                        request
                            .and_then(|r| r.headers.get("x-request-id"))
                            .and_then(|v| v.to_str().ok()),
                    ),
                ),
                ("duration_ms", Value::Int(e.duration_ms() as i64)),
                ("size", Value::Int(e.bytes_received as i64)),
            ]),
        ),
        (
            "response",
            map(vec![
                ("code", Value::Int(i64::from(e.code))),
                (
                    "grpc_status",
                    e.grpc_status
                        .map_or(Value::Null, |s| Value::Int(i64::from(s))),
                ),
                ("flags", Value::from(e.flags.to_string())),
                ("headers", headers(e.response_headers)),
                ("size", Value::Int(e.bytes_sent as i64)),
            ]),
        ),
        (
            "connection",
            map(vec![
                ("mtls", Value::Bool(e.downstream_peer.is_some())),
                ("requested_server_name", text(e.sni)),
                ("uri_san_peer_certificate", text(e.downstream_peer)),
                ("termination_details", text(e.termination)),
            ]),
        ),
        (
            "source",
            map(vec![
                ("address", Value::from(e.downstream_remote.ip().to_string())),
                ("port", Value::Int(i64::from(e.downstream_remote.port()))),
            ]),
        ),
        (
            "destination",
            map(vec![
                ("address", Value::from(e.downstream_local.ip().to_string())),
                ("port", Value::Int(i64::from(e.downstream_local.port()))),
            ]),
        ),
        (
            "upstream",
            map(vec![
                (
                    "address",
                    e.upstream_host
                        .map_or(Value::Null, |h| Value::from(h.to_string())),
                ),
                (
                    "local_address",
                    e.upstream_local
                        .map_or(Value::Null, |h| Value::from(h.to_string())),
                ),
                ("transport_failure_reason", text(e.upstream_failure)),
            ]),
        ),
        (
            "xds",
            map(vec![
                ("cluster_name", text(e.upstream_cluster)),
                ("route_name", text(e.route_name)),
            ]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_attributes_and_bad_syntax_are_refused() {
        assert!(Filter::compile("response.code >= 400").is_ok());
        assert!(
            Filter::compile("response.code >= 400 || xds.cluster_name == 'BlackHoleCluster'")
                .is_ok()
        );
        assert_eq!(
            Filter::compile("respons.code >= 400").unwrap_err(),
            FilterError::Attribute("respons".into())
        );
        assert!(matches!(
            Filter::compile("response.code >=").unwrap_err(),
            FilterError::Syntax(_)
        ));
    }
}
