//! Access log formats: Envoy's substitution format (`%RESPONSE_CODE%`, `%REQ(:METHOD)%`, …) as
//! a text line or a JSON object, parsed once when the listener arrives, rendered per logged
//! request. Commands outside [`COMMANDS`] are refused (the listener is NACKed), so a format is
//! never half applied.

use std::fmt::Write as _;

use http::HeaderName;

use super::Entry;

/// The commands an access log format may use (Envoy's names and meaning); the controller
/// checks mesh formats against the same list.
pub use weft_xds::contract::ACCESS_LOG_COMMANDS as COMMANDS;

/// One command of a format.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    StartTime,
    /// `%REQ(a?b)%`: the request header `a`, else `b`; pseudo headers `:method`, `:path`,
    /// `:authority`, `:scheme`.
    Req(Vec<ReqField>),
    Resp(Vec<HeaderName>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    UpstreamLocalAddress,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    RequestedServerName,
    RouteName,
    DownstreamPeerUriSan,
    UpstreamPeerUriSan,
    TraceId,
    GrpcStatus,
}

#[derive(Debug, Clone, PartialEq)]
enum ReqField {
    Method,
    Path,
    Authority,
    Scheme,
    Header(HeaderName),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Command {
        command: Command,
        max: Option<usize>,
    },
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

/// How a log line is made.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// A text line (`text_format_source`, Envoy's default format when unset).
    Text(Template),
    /// One JSON object per line (`json_format`): keys in the given order.
    Json(Vec<(String, Template)>),
}

/// Why a format was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown command %{0}% (supported: {list})", list = COMMANDS.join(", "))]
    Unknown(String),
    #[error("unterminated command at byte {0}: a `%` opens a command, `%%` is a literal `%`")]
    Unterminated(usize),
    #[error("%{command}({arg})%: {reason}")]
    Argument {
        command: String,
        arg: String,
        reason: String,
    },
}

/// Envoy's default text format (what Envoy writes without a format).
pub const ENVOY_DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

impl Template {
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut at = 0;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(more) = after.strip_prefix('%') {
                literal.push('%');
                at += i + 2;
                rest = more;
                continue;
            }
            let end = after.find('%').ok_or(FormatError::Unterminated(at + i))?;
            let body = &after[..end];
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(command(body)?);
            at += i + 1 + end + 1;
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self(parts))
    }

    /// The value of a template that is one command whose value is a number, as a number
    /// (Envoy's typed JSON values: `"response_code": 200`).
    fn number(&self, entry: &Entry<'_>) -> Option<u64> {
        match self.0.as_slice() {
            [Part::Command { command, .. }] => match command {
                Command::ResponseCode => Some(u64::from(entry.code)),
                Command::BytesReceived => Some(entry.bytes_received),
                Command::BytesSent => Some(entry.bytes_sent),
                Command::Duration => Some(entry.duration_ms()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Renders the template; `None` parts (a value the request does not have) as `missing`.
    fn render(&self, entry: &Entry<'_>, missing: &str, out: &mut String) {
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Command { command, max } => {
                    let start = out.len();
                    if !value(command, entry, out) {
                        out.truncate(start);
                        out.push_str(missing);
                    } else if let Some(max) = max {
                        let mut end = (start + max).min(out.len());
                        while !out.is_char_boundary(end) {
                            end -= 1;
                        }
                        out.truncate(end);
                    }
                }
            }
        }
    }

    /// The template as a span tag value: Envoy's custom tag `value` renders what the request
    /// does not have as an empty string, not `-`.
    pub fn render_tag(&self, entry: &Entry<'_>) -> String {
        let mut out = String::new();
        self.render(entry, "", &mut out);
        out
    }

    /// Whether the template is exactly one command with no text.
    fn is_single_command(&self) -> bool {
        matches!(self.0.as_slice(), [Part::Command { .. }])
    }
}

fn command(body: &str) -> Result<Part, FormatError> {
    // NAME, NAME(arg), NAME:len, NAME(arg):len
    let (head, max) = match body.rsplit_once(':') {
        Some((head, len))
            if len.chars().all(|c| c.is_ascii_digit())
                && !len.is_empty()
                && !head.ends_with('(') =>
        {
            (head, len.parse().ok())
        }
        _ => (body, None),
    };
    let (name, arg) = match head.split_once('(') {
        Some((name, rest)) => match rest.strip_suffix(')') {
            Some(arg) => (name, Some(arg)),
            None => return Err(FormatError::Unknown(body.to_string())),
        },
        None => (head, None),
    };
    let bad = |reason: &str| FormatError::Argument {
        command: name.to_string(),
        arg: arg.unwrap_or_default().to_string(),
        reason: reason.to_string(),
    };
    let headers = |arg: Option<&str>| -> Result<Vec<HeaderName>, FormatError> {
        let arg = arg.ok_or_else(|| bad("needs a header name"))?;
        arg.split('?')
            .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|_| bad("not a header name")))
            .collect()
    };
    let command = match name {
        // Any START_TIME format renders Envoy's default (RFC 3339, milliseconds, UTC).
        "START_TIME" => Command::StartTime,
        "REQ" => {
            let arg = arg.ok_or_else(|| bad("needs a header name"))?;
            let fields = arg
                .split('?')
                .map(|h| match h.to_ascii_lowercase().as_str() {
                    ":method" => Ok(ReqField::Method),
                    ":path" => Ok(ReqField::Path),
                    ":authority" => Ok(ReqField::Authority),
                    ":scheme" => Ok(ReqField::Scheme),
                    _ => HeaderName::from_bytes(h.as_bytes())
                        .map(ReqField::Header)
                        .map_err(|_| bad("not a header name")),
                })
                .collect::<Result<_, _>>()?;
            Command::Req(fields)
        }
        "RESP" => Command::Resp(headers(arg)?),
        "PROTOCOL" => Command::Protocol,
        "RESPONSE_CODE" => Command::ResponseCode,
        "RESPONSE_FLAGS" => Command::ResponseFlags,
        "RESPONSE_CODE_DETAILS" => Command::ResponseCodeDetails,
        "CONNECTION_TERMINATION_DETAILS" => Command::ConnectionTerminationDetails,
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Command::UpstreamTransportFailureReason,
        "UPSTREAM_LOCAL_ADDRESS" => Command::UpstreamLocalAddress,
        "BYTES_RECEIVED" => Command::BytesReceived,
        "BYTES_SENT" => Command::BytesSent,
        "DURATION" => Command::Duration,
        "UPSTREAM_HOST" => Command::UpstreamHost,
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Command::UpstreamCluster,
        "DOWNSTREAM_LOCAL_ADDRESS" => Command::DownstreamLocalAddress,
        "DOWNSTREAM_REMOTE_ADDRESS" => Command::DownstreamRemoteAddress,
        "REQUESTED_SERVER_NAME" => Command::RequestedServerName,
        "ROUTE_NAME" => Command::RouteName,
        "DOWNSTREAM_PEER_URI_SAN" => Command::DownstreamPeerUriSan,
        "UPSTREAM_PEER_URI_SAN" => Command::UpstreamPeerUriSan,
        "TRACE_ID" => Command::TraceId,
        "GRPC_STATUS" => Command::GrpcStatus,
        other => return Err(FormatError::Unknown(other.to_string())),
    };
    Ok(Part::Command { command, max })
}

/// Appends the command's value; `false` when the request has none.
fn value(command: &Command, e: &Entry<'_>, out: &mut String) -> bool {
    let text = |out: &mut String, s: Option<&str>| match s {
        Some(s) if !s.is_empty() => {
            out.push_str(s);
            true
        }
        _ => false,
    };
    match command {
        Command::StartTime => {
            out.push_str(&rfc3339_millis(e.start));
            true
        }
        Command::Req(fields) => fields.iter().any(|f| match f {
            ReqField::Method => text(out, e.request.map(|r| r.method.as_str())),
            ReqField::Path => text(out, e.request.map(|r| r.path())),
            ReqField::Authority => text(out, e.request.and_then(|r| r.authority.as_deref())),
            ReqField::Scheme => text(out, e.request.map(|r| r.uri.scheme_str().unwrap_or("http"))),
            ReqField::Header(name) => text(
                out,
                e.request
                    .and_then(|r| r.headers.get(name))
                    .and_then(|v| v.to_str().ok()),
            ),
        }),
        Command::Resp(names) => names.iter().any(|name| {
            text(
                out,
                e.response_headers
                    .and_then(|h| h.get(name))
                    .and_then(|v| v.to_str().ok()),
            )
        }),
        Command::Protocol => text(out, e.request.map(|r| protocol(r.version))),
        Command::ResponseCode => {
            let _ = write!(out, "{}", e.code);
            true
        }
        Command::ResponseFlags => {
            if e.flags.is_empty() {
                out.push('-');
            } else {
                let _ = write!(out, "{}", e.flags);
            }
            true
        }
        // A TCP connection has no response, so no details (Envoy: `-`).
        Command::ResponseCodeDetails if e.tcp => false,
        Command::ResponseCodeDetails => {
            out.push_str(if e.via_upstream {
                "via_upstream"
            } else {
                "local_reply"
            });
            true
        }
        Command::ConnectionTerminationDetails => text(out, e.termination),
        Command::UpstreamTransportFailureReason => text(out, e.upstream_failure),
        Command::UpstreamLocalAddress => e.upstream_local.is_some_and(|a| {
            let _ = write!(out, "{a}");
            true
        }),
        Command::BytesReceived => {
            let _ = write!(out, "{}", e.bytes_received);
            true
        }
        Command::BytesSent => {
            let _ = write!(out, "{}", e.bytes_sent);
            true
        }
        Command::Duration => {
            let _ = write!(out, "{}", e.duration_ms());
            true
        }
        Command::UpstreamHost => e.upstream_host.is_some_and(|h| {
            let _ = write!(out, "{h}");
            true
        }),
        Command::UpstreamCluster => text(out, e.upstream_cluster),
        Command::DownstreamLocalAddress => {
            let _ = write!(out, "{}", e.downstream_local);
            true
        }
        Command::DownstreamRemoteAddress => {
            let _ = write!(out, "{}", e.downstream_remote);
            true
        }
        Command::RequestedServerName => text(out, e.sni),
        Command::RouteName => text(out, e.route_name),
        Command::DownstreamPeerUriSan => text(out, e.downstream_peer),
        Command::UpstreamPeerUriSan => text(out, e.upstream_peer),
        Command::TraceId => e.trace_id.is_some_and(|id| {
            for b in id {
                let _ = write!(out, "{b:02x}");
            }
            true
        }),
        Command::GrpcStatus => e.grpc_status.is_some_and(|s| {
            let _ = write!(out, "{s}");
            true
        }),
    }
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// `2026-12-03T23:41:11.123Z`.
fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        since.subsec_millis()
    )
}

impl Format {
    /// One log line for `entry`, with its newline.
    pub fn line(&self, entry: &Entry<'_>) -> String {
        let mut out = String::with_capacity(256);
        match self {
            Self::Text(t) => {
                t.render(entry, "-", &mut out);
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            Self::Json(fields) => {
                out.push('{');
                let mut value = String::new();
                for (i, (key, template)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(key, &mut out);
                    out.push(':');
                    if let Some(n) = template.number(entry) {
                        let _ = write!(out, "{n}");
                        continue;
                    }
                    value.clear();
                    template.render(entry, "\u{0}", &mut value);
                    if template.is_single_command() && value == "\u{0}" {
                        out.push_str("null");
                    } else {
                        json_string(&value.replace('\u{0}', "-"), &mut out);
                    }
                }
                out.push_str("}\n");
            }
        }
        out
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoys_default_format_parses_and_unknown_commands_are_refused() {
        Template::parse(ENVOY_DEFAULT).unwrap();
        assert_eq!(
            Template::parse("%NOPE%"),
            Err(FormatError::Unknown("NOPE".into()))
        );
        assert!(matches!(
            Template::parse("100% sure"),
            Err(FormatError::Unknown(_) | FormatError::Unterminated(_))
        ));
        assert_eq!(
            Template::parse("100%% %PROTOCOL%").unwrap().0[0],
            Part::Text("100% ".into())
        );
        assert!(Template::parse("%REQ()%").is_err());
    }

    #[test]
    fn dates_are_rfc3339_in_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_805_271_123);
        assert_eq!(rfc3339_millis(t), "2025-12-03T23:41:11.123Z");
        assert_eq!(
            rfc3339_millis(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
