//! Envoy "custom request/response header" values (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%REQ(x-a?x-b):10%`,
//! `100%%`, …): parsed once when a route config arrives, rendered per request.
//!
//! The grammar is Envoy's substitution-format grammar: `%%` is a literal `%`; any other `%` opens a
//! command `%NAME%`, `%NAME(arg)%`, `%NAME:len%` or `%NAME(arg):len%` (NAME in `A-Z0-9_`; the
//! argument ends at the first `)` that is followed by `%` or `:digits%`). Commands outside
//! [`SUPPORTED`] and malformed `%` sequences are errors, so the proxy NACKs a route config it could
//! not apply instead of sending wrong headers. A value that evaluates to nothing renders as `None`:
//! as in Envoy, the header is then not added (unless the caller keeps empty values).
//!
//! `weft-api` keeps the same command and `START_TIME` specifier lists
//! (`weft_api::header_format`) to refuse such values before they reach a proxy; the
//! controller ↔ proxy contract test checks that the lists agree.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

/// The header formatter commands this proxy implements, with Envoy's semantics.
///
/// Mirrored by `weft_api::header_format::SUPPORTED` (the contract test compares them).
pub const SUPPORTED: &[&str] = &[
    "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_REMOTE_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_PORT",
    "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_LOCAL_PORT",
    "UPSTREAM_REMOTE_ADDRESS",
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_REMOTE_PORT",
    "HOSTNAME",
    "PROTOCOL",
    "START_TIME",
    "REQ",
    "RESP",
    "ENVIRONMENT",
];

/// The `strftime` specifiers `%START_TIME(...)%` accepts; times are UTC. `%f` is the nine
/// fractional digits (nanoseconds), `%1f`..`%9f` the first 1..9 of them (truncated),
/// `%E1S`..`%E9S` the seconds with that many fractional digits, `%s` seconds since the epoch;
/// the others are C `strftime`'s. Others (names of days and months, 12-hour clock, …) are
/// refused, naming this list.
///
/// Mirrored by `weft_api::header_format::START_TIME_SPECIFIERS`.
pub const START_TIME_SPECIFIERS: &[&str] = &[
    "%%",
    "%d",
    "%E1S..%E9S",
    "%Ez",
    "%f",
    "%1f..%9f",
    "%F",
    "%H",
    "%m",
    "%M",
    "%s",
    "%S",
    "%T",
    "%y",
    "%Y",
    "%z",
    "%Z",
];

/// Why a header value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A well-formed `%COMMAND%` this proxy does not implement.
    #[error("unsupported header formatter %{command}% (supported: {})", SUPPORTED.join(", "))]
    Unsupported {
        /// The command name, e.g. `UPSTREAM_METADATA`.
        command: String,
    },
    /// A `%` that is neither `%%` nor the start of a well-formed command.
    #[error(
        "malformed header formatter at byte {position} of {value:?}: expected %COMMAND%, \
         %COMMAND(arg)% or %COMMAND(arg):max-len% (COMMAND in A-Z, 0-9, _); write %% for a literal %"
    )]
    Malformed {
        /// The whole header value.
        value: String,
        /// Byte offset of the offending `%`.
        position: usize,
    },
    /// A command used with an argument or a length it does not take, or without one it needs.
    #[error("header formatter %{command}%: {reason}")]
    BadCommand {
        /// The command name.
        command: String,
        /// What is wrong with its use.
        reason: String,
    },
    /// A control character (other than tab) in the value.
    #[error("header value {value:?} contains a control character")]
    InvalidValue {
        /// The whole header value.
        value: String,
    },
}

/// What a value is rendered from: the request (and, for response headers, the response) being
/// proxied.
#[derive(Debug, Clone, Copy)]
pub struct FormatContext<'a> {
    /// The client's address (`DOWNSTREAM_REMOTE_*`). Weft infers no other address from
    /// `x-forwarded-for` or the PROXY protocol, so it is also `DOWNSTREAM_DIRECT_REMOTE_*`.
    pub downstream_remote: SocketAddr,
    /// The address the request arrived on (`DOWNSTREAM_LOCAL_*`).
    pub downstream_local: SocketAddr,
    /// The downstream protocol (`PROTOCOL`: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`).
    pub protocol: Version,
    /// The request method, for `REQ(:method)`; `None` renders it empty.
    pub request_method: Option<&'a Method>,
    /// The request URI, for `REQ(:path)` (path and query), `REQ(:authority)` (else the `Host`
    /// header) and `REQ(:scheme)` (`http` when the URI has no scheme, as for HTTP/1.1 origin-form
    /// requests on Weft's plaintext listeners).
    pub request_uri: Option<&'a Uri>,
    /// The request headers (`REQ(...)`), as received from downstream.
    pub request_headers: &'a HeaderMap,
    /// The response headers (`RESP(...)`); `None` while request headers are rendered.
    pub response_headers: Option<&'a HeaderMap>,
    /// The upstream endpoint (`UPSTREAM_REMOTE_*`). As in Envoy it is not known yet when
    /// request headers are rendered: pass `None` there.
    pub upstream: Option<SocketAddr>,
    /// When the request started (`START_TIME`).
    pub start_time: SystemTime,
    /// This host's name (`HOSTNAME`).
    pub hostname: &'a str,
}

/// A parsed header value: literal text and commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    segments: Vec<Segment>,
    /// The value when there is no per-request command.
    fixed: Option<HeaderValue>,
}

impl HeaderTemplate {
    /// Parses a header value as Envoy does. `%ENVIRONMENT(VAR)%` is read now, once, as in Envoy.
    pub fn parse(value: &str) -> Result<Self, FormatError> {
        Self::parse_with_env(value, &|name: &str| {
            if name.contains('=') {
                return None;
            }
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// [`HeaderTemplate::parse`] with the environment given as a lookup function.
    pub fn parse_with_env(
        value: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, FormatError> {
        if value.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            return Err(FormatError::InvalidValue {
                value: value.to_string(),
            });
        }
        let mut segments = Vec::new();
        let mut literal: Vec<u8> = Vec::new();
        let mut at = 0;
        while let Some(offset) = value[at..].find('%') {
            let start = at + offset;
            literal.extend_from_slice(&value.as_bytes()[at..start]);
            let rest = &value[start..];
            if rest.starts_with("%%") {
                literal.push(b'%');
                at = start + 2;
                continue;
            }
            let command = match_command(rest).ok_or_else(|| FormatError::Malformed {
                value: value.to_string(),
                position: start,
            })?;
            match Segment::from_command(&command, env)? {
                Segment::Literal(bytes) => literal.extend_from_slice(&bytes),
                segment => {
                    flush_literal(&mut literal, &mut segments);
                    segments.push(segment);
                }
            }
            at = start + command.len;
        }
        literal.extend_from_slice(&value.as_bytes()[at..]);
        flush_literal(&mut literal, &mut segments);
        let fixed = match segments.as_slice() {
            [] => Some(HeaderValue::from_static("")),
            [Segment::Literal(bytes)] => HeaderValue::from_maybe_shared(bytes.clone()).ok(),
            _ => None,
        };
        Ok(HeaderTemplate { segments, fixed })
    }

    /// The value when it has no per-request command (it may be empty): the fast path. `None`
    /// when the value must be rendered per request (or an `%ENVIRONMENT%` value made it invalid,
    /// in which case [`HeaderTemplate::render`] gives `None` too).
    /// A value without commands, taken as it is (e.g. bytes that are not UTF-8).
    pub fn literal(value: HeaderValue) -> Self {
        Self {
            segments: Vec::new(),
            fixed: Some(value),
        }
    }

    pub fn as_static(&self) -> Option<&HeaderValue> {
        self.fixed.as_ref()
    }

    /// Evaluates the value for one request. `None` when it evaluates to the empty string (Envoy
    /// then adds no header unless `keep_empty_value` is set) or to bytes a header value cannot hold.
    pub fn render(&self, ctx: &FormatContext<'_>) -> Option<HeaderValue> {
        if let Some(fixed) = &self.fixed {
            return (!fixed.is_empty()).then(|| fixed.clone());
        }
        let mut out = Vec::with_capacity(64);
        for segment in &self.segments {
            segment.render(ctx, &mut out);
        }
        if out.is_empty() {
            return None;
        }
        HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
    }
}

/// Ends the literal text collected so far (if any) as a segment.
fn flush_literal(literal: &mut Vec<u8>, segments: &mut Vec<Segment>) {
    if !literal.is_empty() {
        segments.push(Segment::Literal(Bytes::from(std::mem::take(literal))));
    }
}

/// One `%NAME(arg):len%` occurrence, as Envoy's regex
/// `^%([A-Z0-9_]+)(?:\((.*?)\))?(?::([0-9]+))?%` reads it.
struct Command<'v> {
    name: &'v str,
    arg: Option<&'v str>,
    max_len: Option<&'v str>,
    /// Bytes consumed, both `%` included.
    len: usize,
}

/// Matches a command at the start of `s` (which starts with `%`).
fn match_command(s: &str) -> Option<Command<'_>> {
    let name_len = s
        .bytes()
        .skip(1)
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
        .count();
    if name_len == 0 {
        return None;
    }
    let name_end = 1 + name_len;
    let name = &s[1..name_end];
    if s.as_bytes().get(name_end) == Some(&b'(') {
        // The shortest argument after which the command can end.
        let arg_start = name_end + 1;
        for (i, _) in s[arg_start..].match_indices(')') {
            let close = arg_start + i;
            if let Some((max_len, end)) = command_end(s, close + 1) {
                return Some(Command {
                    name,
                    arg: Some(&s[arg_start..close]),
                    max_len,
                    len: end,
                });
            }
        }
        return None;
    }
    let (max_len, end) = command_end(s, name_end)?;
    Some(Command {
        name,
        arg: None,
        max_len,
        len: end,
    })
}

/// Matches `(:digits)?%` at byte `at` of `s`: the digits, and the index after the `%`.
fn command_end(s: &str, at: usize) -> Option<(Option<&str>, usize)> {
    let rest = s.get(at..)?;
    if let Some(r) = rest.strip_prefix(':') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        return (digits > 0 && r.as_bytes().get(digits) == Some(&b'%'))
            .then(|| (Some(&r[..digits]), at + 1 + digits + 1));
    }
    rest.starts_with('%').then_some((None, at + 1))
}

impl Command<'_> {
    fn bad(&self, reason: impl Into<String>) -> FormatError {
        FormatError::BadCommand {
            command: self.name.to_string(),
            reason: reason.into(),
        }
    }

    /// A command that takes neither an argument nor a length (`%HOSTNAME()%` is allowed, as in Envoy).
    fn bare(&self) -> Result<(), FormatError> {
        if self.arg.is_some_and(|a| !a.is_empty()) || self.max_len.is_some() {
            return Err(self.bad("takes no argument and no :max-len"));
        }
        Ok(())
    }

    /// The required, non-empty argument.
    fn required_arg(&self, example: &str) -> Result<&str, FormatError> {
        match self.arg {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(self.bad(format!(
                "needs an argument, e.g. %{}({example})%",
                self.name
            ))),
        }
    }

    fn max_len(&self) -> Result<Option<usize>, FormatError> {
        self.max_len
            .map(|d| {
                d.parse()
                    .map_err(|_| self.bad(format!("max length {d} is too large")))
            })
            .transpose()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressOf {
    DownstreamRemote,
    DownstreamLocal,
    Upstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressPart {
    /// `ip:port` (`[v6]:port`).
    Full,
    /// The IP alone (IPv6 without brackets, as Envoy prints it).
    Ip,
    Port,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Bytes),
    Address(AddressOf, AddressPart),
    Hostname,
    Protocol,
    StartTime(Option<Vec<TimePiece>>),
    Request(HeaderRef),
    Response(HeaderRef),
}

impl Segment {
    fn from_command(
        c: &Command<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, FormatError> {
        use AddressOf::*;
        use AddressPart::*;
        let address = |of, part| {
            c.bare()?;
            Ok(Segment::Address(of, part))
        };
        match c.name {
            "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
                address(DownstreamRemote, Full)
            }
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
            | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => address(DownstreamRemote, Ip),
            "DOWNSTREAM_REMOTE_PORT" | "DOWNSTREAM_DIRECT_REMOTE_PORT" => {
                address(DownstreamRemote, Port)
            }
            "DOWNSTREAM_LOCAL_ADDRESS" => address(DownstreamLocal, Full),
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => address(DownstreamLocal, Ip),
            "DOWNSTREAM_LOCAL_PORT" => address(DownstreamLocal, Port),
            "UPSTREAM_REMOTE_ADDRESS" => address(Upstream, Full),
            "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => address(Upstream, Ip),
            "UPSTREAM_REMOTE_PORT" => address(Upstream, Port),
            "HOSTNAME" => c.bare().map(|()| Segment::Hostname),
            "PROTOCOL" => c.bare().map(|()| Segment::Protocol),
            "START_TIME" => {
                if c.max_len.is_some() {
                    return Err(c.bad("takes no :max-len"));
                }
                match c.arg.filter(|a| !a.is_empty()) {
                    None => Ok(Segment::StartTime(None)),
                    Some(format) => parse_time_format(format)
                        .map(|pieces| Segment::StartTime(Some(pieces)))
                        .map_err(|reason| c.bad(reason)),
                }
            }
            "REQ" | "RESP" => {
                let arg = c.required_arg("x-header-name")?;
                let header = HeaderRef::parse(arg, c.max_len()?).map_err(|r| c.bad(r))?;
                Ok(if c.name == "REQ" {
                    Segment::Request(header)
                } else {
                    Segment::Response(header)
                })
            }
            "ENVIRONMENT" => {
                let name = c.required_arg("POD_NAME")?;
                let value = match env(name) {
                    Some(v) => {
                        let mut v = v.into_bytes();
                        if let Some(max) = c.max_len()? {
                            v.truncate(max);
                        }
                        v
                    }
                    // Envoy's "unspecified" value; not truncated.
                    None => b"-".to_vec(),
                };
                Ok(Segment::Literal(Bytes::from(value)))
            }
            _ => Err(FormatError::Unsupported {
                command: c.name.to_string(),
            }),
        }
    }

    fn render(&self, ctx: &FormatContext<'_>, out: &mut Vec<u8>) {
        match self {
            Segment::Literal(bytes) => out.extend_from_slice(bytes),
            Segment::Address(of, part) => {
                let addr = match of {
                    AddressOf::DownstreamRemote => Some(ctx.downstream_remote),
                    AddressOf::DownstreamLocal => Some(ctx.downstream_local),
                    AddressOf::Upstream => ctx.upstream,
                };
                if let Some(addr) = addr {
                    // Writing to a Vec cannot fail.
                    let _ = match part {
                        AddressPart::Full => write!(out, "{addr}"),
                        AddressPart::Ip => write!(out, "{}", addr.ip()),
                        AddressPart::Port => write!(out, "{}", addr.port()),
                    };
                }
            }
            Segment::Hostname => out.extend_from_slice(ctx.hostname.as_bytes()),
            Segment::Protocol => {
                let p: &[u8] = match ctx.protocol {
                    Version::HTTP_10 => b"HTTP/1.0",
                    Version::HTTP_11 => b"HTTP/1.1",
                    Version::HTTP_2 => b"HTTP/2",
                    Version::HTTP_3 => b"HTTP/3",
                    _ => b"",
                };
                out.extend_from_slice(p);
            }
            Segment::StartTime(format) => {
                if let Some(t) = Civil::from_system_time(ctx.start_time) {
                    match format {
                        None => t.write_default(out),
                        Some(pieces) => t.write(pieces, out),
                    }
                }
            }
            Segment::Request(h) => h.render_request(ctx, out),
            Segment::Response(h) => {
                if let Some(headers) = ctx.response_headers {
                    h.render_map(headers, out);
                }
            }
        }
    }
}

/// `REQ(main?alternative):max-len`: the first value of the first of the two headers present.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderRef {
    main: Lookup,
    alternative: Lookup,
    max_len: Option<usize>,
}

/// Where a header named in `REQ`/`RESP` is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    Header(HeaderName),
    Method,
    Path,
    Authority,
    Scheme,
    /// A name no header can have (an unknown pseudo-header, invalid characters, or empty): as in
    /// Envoy, never present.
    Absent,
}

impl HeaderRef {
    fn parse(arg: &str, max_len: Option<usize>) -> Result<Self, String> {
        let mut names = arg.split('?');
        let main = Lookup::parse(names.next().unwrap_or(""));
        let alternative = Lookup::parse(names.next().unwrap_or(""));
        if names.next().is_some() {
            return Err(format!(
                "more than one alternative header in {arg:?} (use main?alternative)"
            ));
        }
        Ok(HeaderRef {
            main,
            alternative,
            max_len,
        })
    }

    fn render_request(&self, ctx: &FormatContext<'_>, out: &mut Vec<u8>) {
        let value = self
            .request_value(&self.main, ctx)
            .or_else(|| self.request_value(&self.alternative, ctx));
        self.push(value, out);
    }

    fn request_value<'c>(&self, lookup: &Lookup, ctx: &FormatContext<'c>) -> Option<&'c [u8]> {
        let headers = ctx.request_headers;
        match lookup {
            Lookup::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            Lookup::Method => ctx.request_method.map(|m| m.as_str().as_bytes()),
            Lookup::Path => ctx
                .request_uri
                .and_then(Uri::path_and_query)
                .map(|p| p.as_str().as_bytes()),
            Lookup::Authority => ctx
                .request_uri
                .and_then(Uri::authority)
                .map(|a| a.as_str().as_bytes())
                .or_else(|| headers.get(http::header::HOST).map(HeaderValue::as_bytes)),
            Lookup::Scheme => ctx
                .request_uri
                .map(|u| u.scheme_str().unwrap_or("http").as_bytes()),
            Lookup::Absent => None,
        }
    }

    fn render_map(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        let get = |l: &Lookup| match l {
            Lookup::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            _ => None,
        };
        self.push(get(&self.main).or_else(|| get(&self.alternative)), out);
    }

    fn push(&self, value: Option<&[u8]>, out: &mut Vec<u8>) {
        if let Some(v) = value {
            let n = self.max_len.map_or(v.len(), |m| m.min(v.len()));
            out.extend_from_slice(&v[..n]);
        }
    }
}

impl Lookup {
    fn parse(name: &str) -> Lookup {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            ":method" => Lookup::Method,
            ":path" => Lookup::Path,
            ":authority" => Lookup::Authority,
            ":scheme" => Lookup::Scheme,
            _ => HeaderName::from_bytes(lower.as_bytes()).map_or(Lookup::Absent, Lookup::Header),
        }
    }
}

/// One piece of a `START_TIME(...)` format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimePiece {
    Text(String),
    /// A `strftime` conversion character (`Y`, `m`, …).
    Spec(char),
    /// `%f` (9) or `%<n>f`: the first n fractional digits.
    Fraction(usize),
    /// `%E<n>S`: seconds with n fractional digits.
    SecondsWithFraction(usize),
    /// `%Ez`: `+00:00`.
    OffsetWithColon,
}

const SIMPLE_SPECS: &str = "dFHmMsSTyYzZ";

/// Parses a `START_TIME` format into pieces, refusing what [`START_TIME_SPECIFIERS`] does not list.
fn parse_time_format(format: &str) -> Result<Vec<TimePiece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        let spec = &rest[i + 1..];
        let (piece, used) = match spec.as_bytes() {
            [b'%', ..] => {
                text.push('%');
                rest = &spec[1..];
                continue;
            }
            [b'f', ..] => (TimePiece::Fraction(9), 1),
            [d @ b'1'..=b'9', b'f', ..] => (TimePiece::Fraction(usize::from(*d - b'0')), 2),
            [b'E', b'z', ..] => (TimePiece::OffsetWithColon, 2),
            [b'E', d @ b'1'..=b'9', b'S', ..] => {
                (TimePiece::SecondsWithFraction(usize::from(*d - b'0')), 3)
            }
            [c, ..] if SIMPLE_SPECS.as_bytes().contains(c) => (TimePiece::Spec(char::from(*c)), 1),
            _ => return Err(unsupported_specifier(spec)),
        };
        if !text.is_empty() {
            pieces.push(TimePiece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = &spec[used..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(TimePiece::Text(text));
    }
    Ok(pieces)
}

/// The error for the specifier at the start of `spec` (the text after a `%`).
fn unsupported_specifier(spec: &str) -> String {
    let shown: String = match spec.chars().next() {
        None => "a trailing %".to_string(),
        Some('E') => format!("%{}", spec.chars().take(3).collect::<String>()),
        Some(c) => format!("%{c}"),
    };
    format!(
        "unsupported START_TIME format specifier {shown} (supported: {})",
        START_TIME_SPECIFIERS.join(" ")
    )
}

/// A UTC time broken down into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    /// Seconds since the epoch.
    epoch: u64,
    nanos: u32,
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    /// `None` before the epoch.
    fn from_system_time(t: SystemTime) -> Option<Civil> {
        let since = t.duration_since(UNIX_EPOCH).ok()?;
        let epoch = since.as_secs();
        let days = i64::try_from(epoch / 86_400).ok()?;
        let secs_of_day = u32::try_from(epoch % 86_400).ok()?;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).ok()?;
        let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).ok()?;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Some(Civil {
            epoch,
            nanos: since.subsec_nanos(),
            year,
            month,
            day,
            hour: secs_of_day / 3600,
            minute: secs_of_day / 60 % 60,
            second: secs_of_day % 60,
        })
    }

    /// Envoy's default, `%Y-%m-%dT%H:%M:%E3SZ`: `2016-04-15T20:17:00.310Z`.
    fn write_default(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanos / 1_000_000
        );
    }

    fn write(&self, pieces: &[TimePiece], out: &mut Vec<u8>) {
        for piece in pieces {
            // Writing to a Vec cannot fail.
            let _ = match piece {
                TimePiece::Text(t) => out.write_all(t.as_bytes()),
                TimePiece::Spec(c) => self.write_spec(*c, out),
                TimePiece::Fraction(n) => self.write_fraction(*n, out),
                TimePiece::SecondsWithFraction(n) => {
                    write!(out, "{:02}.", self.second).and_then(|()| self.write_fraction(*n, out))
                }
                TimePiece::OffsetWithColon => out.write_all(b"+00:00"),
            };
        }
    }

    fn write_fraction(&self, digits: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        let all = format!("{:09}", self.nanos);
        out.write_all(&all.as_bytes()[..digits.min(9)])
    }

    fn write_spec(&self, c: char, out: &mut Vec<u8>) -> std::io::Result<()> {
        let (y, mo, d) = (self.year, self.month, self.day);
        let (h, mi, sec) = (self.hour, self.minute, self.second);
        match c {
            'd' => write!(out, "{d:02}"),
            'F' => write!(out, "{y:04}-{mo:02}-{d:02}"),
            'H' => write!(out, "{h:02}"),
            'm' => write!(out, "{mo:02}"),
            'M' => write!(out, "{mi:02}"),
            's' => write!(out, "{}", self.epoch),
            'S' => write!(out, "{sec:02}"),
            'T' => write!(out, "{h:02}:{mi:02}:{sec:02}"),
            'y' => write!(out, "{:02}", y.rem_euclid(100)),
            'Y' => write!(out, "{y}"),
            'z' => out.write_all(b"+0000"),
            'Z' => out.write_all(b"UTC"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "formatter_tests.rs"]
mod tests;
