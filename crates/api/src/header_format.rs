//! Envoy header-value formatters (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%REQ(x-a?x-b):10%`, `100%%`):
//! the commands Weft's proxy implements, and the check VirtualService header values get.
//!
//! Istio passes `headers.request/response.set/add` values to Envoy unchanged, where `%COMMAND%`
//! sequences are "custom request/response header" formatters and `%%` is a literal `%`. A value
//! using a command the proxy does not implement would make every proxy NACK the whole route
//! configuration, so such values are refused here, with the field path, before they are served.
//!
//! The grammar is Envoy's substitution-format grammar: a `%` that does not start `%%` opens
//! `%NAME%`, `%NAME(arg)%`, `%NAME:len%` or `%NAME(arg):len%` (NAME in `A-Z0-9_`; the argument
//! ends at the first `)` followed by `%` or `:digits%`).

/// The header formatter commands Weft's proxy implements (Envoy semantics).
///
/// This list mirrors `proxy/src/config/formatter.rs::SUPPORTED` (`weft-api` cannot depend on
/// the proxy); the controller ↔ proxy contract test checks the two lists against each other.
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

/// The `strftime` specifiers the proxy accepts in `%START_TIME(...)%` (`%E1S..%E9S` and
/// `%1f..%9f` stand for the nine forms each).
///
/// This list mirrors `proxy/src/config/formatter.rs::START_TIME_SPECIFIERS`; the controller ↔
/// proxy contract test checks the two lists against each other.
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

/// The supported commands that take an argument (all others take neither an argument nor a
/// `:max-len`).
const WITH_ARGUMENT: &[&str] = &["START_TIME", "REQ", "RESP", "ENVIRONMENT"];

/// Checks a header value as the proxy will parse it: no control characters (tab aside), every
/// `%` either `%%` or a well-formed command from [`SUPPORTED`] used with the arguments it takes.
/// The messages are the proxy's.
pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
        return Err(format!(
            "header value {value:?} contains a control character"
        ));
    }
    let mut at = 0;
    while let Some(offset) = value[at..].find('%') {
        let start = at + offset;
        let rest = &value[start..];
        if rest.starts_with("%%") {
            at = start + 2;
            continue;
        }
        let Some(command) = match_command(rest) else {
            return Err(format!(
                "malformed header formatter at byte {start} of {value:?}: expected %COMMAND%, \
                 %COMMAND(arg)% or %COMMAND(arg):max-len% (COMMAND in A-Z, 0-9, _); write %% \
                 for a literal %"
            ));
        };
        command.check()?;
        at = start + command.len;
    }
    Ok(())
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
    fn bad(&self, reason: impl std::fmt::Display) -> String {
        format!("header formatter %{}%: {reason}", self.name)
    }

    fn check(&self) -> Result<(), String> {
        let arg = self.arg.filter(|a| !a.is_empty());
        if SUPPORTED.contains(&self.name) && !WITH_ARGUMENT.contains(&self.name) {
            if arg.is_some() || self.max_len.is_some() {
                return Err(self.bad("takes no argument and no :max-len"));
            }
            return Ok(());
        }
        let example = match self.name {
            "START_TIME" => {
                if self.max_len.is_some() {
                    return Err(self.bad("takes no :max-len"));
                }
                return arg.map_or(Ok(()), |f| check_time_format(f).map_err(|r| self.bad(r)));
            }
            "REQ" | "RESP" => "x-header-name",
            "ENVIRONMENT" => "POD_NAME",
            _ => {
                return Err(format!(
                    "unsupported header formatter %{}% (supported: {})",
                    self.name,
                    SUPPORTED.join(", ")
                ));
            }
        };
        let Some(arg) = arg else {
            return Err(self.bad(format!(
                "needs an argument, e.g. %{}({example})%",
                self.name
            )));
        };
        if let Some(d) = self.max_len
            && d.parse::<usize>().is_err()
        {
            return Err(self.bad(format!("max length {d} is too large")));
        }
        if self.name != "ENVIRONMENT" && arg.split('?').count() > 2 {
            return Err(self.bad(format!(
                "more than one alternative header in {arg:?} (use main?alternative)"
            )));
        }
        Ok(())
    }
}

/// Checks a `START_TIME` format against [`START_TIME_SPECIFIERS`].
fn check_time_format(format: &str) -> Result<(), String> {
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        let spec = &rest[i + 1..];
        let used = match spec.as_bytes() {
            [b'%' | b'f', ..] => 1,
            [b'1'..=b'9', b'f', ..] | [b'E', b'z', ..] => 2,
            [b'E', b'1'..=b'9', b'S', ..] => 3,
            [c, ..] if b"dFHmMsSTyYzZ".contains(c) => 1,
            _ => {
                let shown = match spec.chars().next() {
                    None => "a trailing %".to_string(),
                    Some('E') => format!("%{}", spec.chars().take(3).collect::<String>()),
                    Some(c) => format!("%{c}"),
                };
                return Err(format!(
                    "unsupported START_TIME format specifier {shown} (supported: {})",
                    START_TIME_SPECIFIERS.join(" ")
                ));
            }
        };
        rest = &spec[used..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(value: &str) -> String {
        match check_header_value(value) {
            Ok(()) => panic!("{value:?} should be refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_what_the_proxy_implements() {
        for ok in [
            "",
            "plain",
            "100%%",
            "%%HOSTNAME%%",
            "tab\there",
            "héllo",
            "%HOSTNAME%",
            "%HOSTNAME()%",
            "prefix %HOSTNAME% suffix",
            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %DOWNSTREAM_LOCAL_PORT%",
            "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%%UPSTREAM_REMOTE_PORT%",
            "%PROTOCOL%",
            "%START_TIME%",
            "%START_TIME(%s.%3f)%",
            "%START_TIME(%Y-%m-%dT%H:%M:%E3SZ)%",
            "%START_TIME(100%% at %H)%",
            "%REQ(x-user)%",
            "%REQ(:authority)%",
            "%REQ(x-a?x-b):10%",
            "%REQ(a)b)%",
            "%RESP(x-served-by)%",
            "%ENVIRONMENT(POD_NAME):8%",
        ] {
            assert_eq!(check_header_value(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn refuses_unsupported_commands_naming_the_supported_ones() {
        let msg = err("%FOO%");
        assert!(
            msg.starts_with(
                "unsupported header formatter %FOO% (supported: DOWNSTREAM_REMOTE_ADDRESS, "
            ),
            "{msg}"
        );
        assert!(msg.ends_with("REQ, RESP, ENVIRONMENT)"), "{msg}");
        for (value, command) in [
            ("x-%FOO%-y", "%FOO%"),
            (
                "%UPSTREAM_METADATA([\"ns\", \"key\"])%",
                "%UPSTREAM_METADATA%",
            ),
            ("%DYNAMIC_METADATA(ns:key):10%", "%DYNAMIC_METADATA%"),
            ("%PER_REQUEST_STATE(a.b)%", "%PER_REQUEST_STATE%"),
            ("%HOSTNAME%%RESPONSE_FLAGS%", "%RESPONSE_FLAGS%"),
        ] {
            let msg = err(value);
            assert!(
                msg.starts_with(&format!("unsupported header formatter {command} ")),
                "{value:?}: {msg}"
            );
        }
    }

    #[test]
    fn refuses_malformed_percent_sequences() {
        for (value, at) in [
            ("abc%123", 3),
            ("100%", 3),
            ("%START_TIME%%", 12),
            ("%REQ(%", 0),
            ("%REQ(x)", 0),
            ("%REQ(x):%", 0),
            ("%hostname%", 0),
            ("%HOSTNAME", 0),
            ("%%%", 2),
            ("%", 0),
        ] {
            let msg = err(value);
            assert!(
                msg.starts_with(&format!("malformed header formatter at byte {at} of ")),
                "{value:?}: {msg}"
            );
            assert!(msg.ends_with("write %% for a literal %"), "{msg}");
        }
    }

    #[test]
    fn refuses_wrong_arguments() {
        for (value, reason) in [
            (
                "%HOSTNAME(x)%",
                "header formatter %HOSTNAME%: takes no argument",
            ),
            ("%PROTOCOL:5%", "takes no argument and no :max-len"),
            (
                "%REQ%",
                "header formatter %REQ%: needs an argument, e.g. %REQ(x-header-name)%",
            ),
            ("%RESP():3%", "needs an argument"),
            ("%ENVIRONMENT%", "e.g. %ENVIRONMENT(POD_NAME)%"),
            ("%START_TIME:3%", "takes no :max-len"),
            ("%REQ(a?b?c)%", "more than one alternative header"),
            ("%REQ(x):99999999999999999999999%", "too large"),
            (
                "%START_TIME(%Q)%",
                "unsupported START_TIME format specifier %Q (supported: %% %d",
            ),
            ("%START_TIME(%)%", "a trailing %"),
            ("%START_TIME(%E0S)%", "specifier %E0S"),
            ("a\nb", "contains a control character"),
            ("a\u{7f}", "contains a control character"),
        ] {
            let msg = err(value);
            assert!(msg.contains(reason), "{value:?}: {msg}");
        }
    }

    #[test]
    fn every_listed_specifier_is_accepted() {
        for spec in START_TIME_SPECIFIERS {
            let expanded: Vec<String> = match *spec {
                "%E1S..%E9S" => (1..=9).map(|n| format!("%E{n}S")).collect(),
                "%1f..%9f" => (1..=9).map(|n| format!("%{n}f")).collect(),
                s => vec![s.to_string()],
            };
            for s in expanded {
                assert_eq!(check_time_format(&s), Ok(()), "{s}");
            }
        }
        for name in SUPPORTED {
            let bare = check_header_value(&format!("%{name}%"));
            let with_arg = check_header_value(&format!("%{name}(x)%"));
            assert!(bare.is_ok() || with_arg.is_ok(), "{name}");
        }
    }
}
