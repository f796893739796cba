use std::time::Duration;

use super::*;

/// 2016-04-15T20:17:00.310999999Z, Envoy's documentation example (a Friday).
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_460_751_420, 310_999_999)
}

fn no_env(_: &str) -> Option<String> {
    None
}

struct Request {
    headers: HeaderMap,
    response: HeaderMap,
    method: Method,
    uri: Uri,
}

impl Request {
    fn new() -> Request {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.append("x-multi", HeaderValue::from_static("first"));
        headers.append("x-multi", HeaderValue::from_static("second"));
        headers.insert("x-long", HeaderValue::from_static("abcdefghij"));
        headers.insert("host", HeaderValue::from_static("reviews:9080"));
        let mut response = HeaderMap::new();
        response.insert("x-served-by", HeaderValue::from_static("v2"));
        Request {
            headers,
            response,
            method: Method::POST,
            uri: Uri::from_static("/api/v1?x=1"),
        }
    }

    fn ctx(&self) -> FormatContext<'_> {
        FormatContext {
            downstream_remote: "10.0.0.1:5555".parse().unwrap(),
            downstream_local: "[::1]:15001".parse().unwrap(),
            protocol: Version::HTTP_11,
            request_method: Some(&self.method),
            request_uri: Some(&self.uri),
            request_headers: &self.headers,
            response_headers: None,
            upstream: None,
            start_time: start(),
            hostname: "pod-1",
        }
    }
}

/// Parses (with no environment) and renders in `ctx`; `None` renders as `<none>`.
fn render_in(value: &str, ctx: &FormatContext<'_>) -> String {
    let t =
        HeaderTemplate::parse_with_env(value, &no_env).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    match t.render(ctx) {
        Some(v) => String::from_utf8(v.as_bytes().to_vec()).unwrap(),
        None => "<none>".to_string(),
    }
}

fn render(value: &str) -> String {
    let r = Request::new();
    render_in(value, &r.ctx())
}

fn error(value: &str) -> FormatError {
    match HeaderTemplate::parse_with_env(value, &no_env) {
        Ok(t) => panic!("{value:?} should be refused, parsed as {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn literals_and_escapes_are_static() {
    for (value, want) in [
        ("foo", "foo"),
        ("100%%", "100%"),
        ("%%HOSTNAME%%", "%HOSTNAME%"),
        ("a %% b %%%%", "a % b %%"),
        ("tab\there", "tab\there"),
        ("héllo", "héllo"),
    ] {
        let t = HeaderTemplate::parse(value).unwrap();
        let fixed = t
            .as_static()
            .unwrap_or_else(|| panic!("{value:?} is static"));
        assert_eq!(fixed.as_bytes(), want.as_bytes(), "{value:?}");
        assert_eq!(render(value), want);
    }
    let empty = HeaderTemplate::parse("").unwrap();
    assert_eq!(empty.as_static(), Some(&HeaderValue::from_static("")));
    assert_eq!(render(""), "<none>", "an empty value renders as no header");
    assert!(
        HeaderTemplate::parse("%HOSTNAME%")
            .unwrap()
            .as_static()
            .is_none()
    );
}

#[test]
fn malformed_percent_sequences_are_refused_with_their_position() {
    for (value, position) in [
        ("abc%123", 3),
        ("100%", 3),
        ("%START_TIME%%", 12),
        ("%REQ(%", 0),
        ("%REQ(x)", 0),
        ("%REQ(x):%", 0),
        ("%REQ(x):12", 0),
        ("%hostname%", 0),
        ("%HOSTNAME", 0),
        ("%%%", 2),
        ("%:5%", 0),
        ("%%(%", 3),
        ("a %HOST NAME%", 2),
        ("%", 0),
    ] {
        assert_eq!(
            error(value),
            FormatError::Malformed {
                value: value.to_string(),
                position
            },
            "{value:?}"
        );
    }
    let msg = error("abc%123").to_string();
    assert!(msg.contains("write %% for a literal %"), "{msg}");
}

#[test]
fn unknown_commands_are_refused_naming_the_command_and_the_supported_ones() {
    for (value, command) in [
        ("%FOO%", "FOO"),
        ("x-%FOO%-y", "FOO"),
        (
            "%UPSTREAM_METADATA([\"ns\", \"key\"])%",
            "UPSTREAM_METADATA",
        ),
        ("%DYNAMIC_METADATA(ns:key):10%", "DYNAMIC_METADATA"),
        ("%PER_REQUEST_STATE(a.b)%", "PER_REQUEST_STATE"),
        ("%RESPONSE_FLAGS%", "RESPONSE_FLAGS"),
        ("%HOSTNAME%%FOO%", "FOO"),
    ] {
        assert_eq!(
            error(value),
            FormatError::Unsupported {
                command: command.to_string()
            },
            "{value:?}"
        );
    }
    let msg = error("%FOO%").to_string();
    assert!(
        msg.starts_with(
            "unsupported header formatter %FOO% (supported: DOWNSTREAM_REMOTE_ADDRESS, "
        ),
        "{msg}"
    );
    assert!(msg.ends_with("REQ, RESP, ENVIRONMENT)"), "{msg}");
}

#[test]
fn arguments_and_lengths_follow_envoys_rules() {
    for (value, reason) in [
        ("%HOSTNAME(x)%", "takes no argument"),
        ("%PROTOCOL:5%", "takes no argument and no :max-len"),
        ("%DOWNSTREAM_REMOTE_ADDRESS(a)%", "takes no argument"),
        ("%REQ%", "needs an argument, e.g. %REQ(x-header-name)%"),
        ("%REQ()%", "needs an argument"),
        ("%RESP:3%", "needs an argument"),
        (
            "%ENVIRONMENT%",
            "needs an argument, e.g. %ENVIRONMENT(POD_NAME)%",
        ),
        ("%START_TIME:3%", "takes no :max-len"),
        ("%REQ(a?b?c)%", "more than one alternative header"),
        ("%REQ(x):99999999999999999999999%", "too large"),
        (
            "%START_TIME(%Q)%",
            "unsupported START_TIME format specifier %Q",
        ),
        ("%START_TIME(%)%", "a trailing %"),
        ("%START_TIME(%E0S)%", "specifier %E0S"),
        ("%START_TIME(%a)%", "(supported: %% %d"),
    ] {
        let e = error(value);
        assert!(
            matches!(&e, FormatError::BadCommand { reason: r, .. } if r.contains(reason)),
            "{value:?}: {e}"
        );
    }
    assert_eq!(
        error("%REQ%").to_string(),
        "header formatter %REQ%: needs an argument, e.g. %REQ(x-header-name)%"
    );
    // An empty argument list is no argument, as in Envoy.
    assert_eq!(render("%HOSTNAME()%"), "pod-1");
    assert_eq!(render("%START_TIME()%"), "2016-04-15T20:17:00.310Z");
}

#[test]
fn control_characters_are_refused() {
    for value in ["a\nb", "a\rb", "a\u{0}b", "a\u{7f}b", "%REQ(a\nb)%"] {
        assert_eq!(
            error(value),
            FormatError::InvalidValue {
                value: value.to_string()
            }
        );
    }
}

#[test]
fn addresses() {
    let r = Request::new();
    let mut ctx = r.ctx();
    for (value, want) in [
        ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.0.1:5555"),
        ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.0.0.1"),
        ("%DOWNSTREAM_REMOTE_PORT%", "5555"),
        ("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", "10.0.0.1:5555"),
        (
            "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
            "10.0.0.1",
        ),
        ("%DOWNSTREAM_DIRECT_REMOTE_PORT%", "5555"),
        ("%DOWNSTREAM_LOCAL_ADDRESS%", "[::1]:15001"),
        ("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "::1"),
        ("%DOWNSTREAM_LOCAL_PORT%", "15001"),
        ("%UPSTREAM_REMOTE_ADDRESS%", "<none>"),
        ("up=%UPSTREAM_REMOTE_PORT%", "up="),
        (
            "client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%; via %HOSTNAME%",
            "client=10.0.0.1; via pod-1",
        ),
    ] {
        assert_eq!(render_in(value, &ctx), want, "{value:?}");
    }
    ctx.upstream = Some("[2001:db8::7]:9080".parse().unwrap());
    assert_eq!(
        render_in("%UPSTREAM_REMOTE_ADDRESS%", &ctx),
        "[2001:db8::7]:9080"
    );
    assert_eq!(
        render_in("%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", &ctx),
        "2001:db8::7"
    );
    assert_eq!(render_in("%UPSTREAM_REMOTE_PORT%", &ctx), "9080");
}

#[test]
fn protocol() {
    let r = Request::new();
    let mut ctx = r.ctx();
    for (version, want) in [
        (Version::HTTP_10, "HTTP/1.0"),
        (Version::HTTP_11, "HTTP/1.1"),
        (Version::HTTP_2, "HTTP/2"),
        (Version::HTTP_3, "HTTP/3"),
        (Version::HTTP_09, "<none>"),
    ] {
        ctx.protocol = version;
        assert_eq!(render_in("%PROTOCOL%", &ctx), want);
    }
}

#[test]
fn request_and_response_headers() {
    for (value, want) in [
        ("%REQ(x-user)%", "alice"),
        ("%REQ(X-User)%", "alice"),
        ("%REQ(x-multi)%", "first"),
        ("%REQ(x-long):4%", "abcd"),
        ("%REQ(x-long):0%", "<none>"),
        ("%REQ(x-long):100%", "abcdefghij"),
        ("%REQ(x-missing)%", "<none>"),
        ("user=%REQ(x-missing)%", "user="),
        ("%REQ(x-missing?x-user)%", "alice"),
        ("%REQ(x-user?x-long)%", "alice"),
        ("%REQ(x-missing?x-long):3%", "abc"),
        ("%REQ(?x-user)%", "alice"),
        ("%REQ(x-user?)%", "alice"),
        ("%REQ(:method)%", "POST"),
        ("%REQ(:METHOD)%", "POST"),
        ("%REQ(:path)%", "/api/v1?x=1"),
        ("%REQ(:authority)%", "reviews:9080"),
        ("%REQ(:scheme)%", "http"),
        ("%REQ(:status)%", "<none>"),
        ("%REQ(bad name)%", "<none>"),
        ("%REQ(é)%", "<none>"),
        ("%REQ(a)b)%", "<none>"),
        ("%RESP(x-served-by)%", "<none>"),
        ("[%REQ(x-user)%|%REQ(x-long):2%]", "[alice|ab]"),
    ] {
        assert_eq!(render(value), want, "{value:?}");
    }
    let r = Request::new();
    let mut ctx = r.ctx();
    ctx.response_headers = Some(&r.response);
    assert_eq!(render_in("%RESP(x-served-by)%", &ctx), "v2");
    assert_eq!(render_in("%RESP(x-none?x-served-by):1%", &ctx), "v");
    assert_eq!(render_in("%RESP(x-user)%", &ctx), "<none>");
    // The authority of an absolute-form or HTTP/2 URI wins over Host; no URI, no pseudo-headers.
    let uri = Uri::from_static("https://ratings.default:8443/r");
    ctx.request_uri = Some(&uri);
    assert_eq!(render_in("%REQ(:authority)%", &ctx), "ratings.default:8443");
    assert_eq!(render_in("%REQ(:scheme)%", &ctx), "https");
    ctx.request_uri = None;
    ctx.request_method = None;
    assert_eq!(render_in("%REQ(:authority)%", &ctx), "reviews:9080");
    assert_eq!(render_in("%REQ(:path)%%REQ(:method)%", &ctx), "<none>");
}

#[test]
fn start_time_default_and_formats() {
    for (value, want) in [
        ("%START_TIME%", "2016-04-15T20:17:00.310Z"),
        ("%START_TIME(%s.%3f)%", "1460751420.310"),
        ("%START_TIME(%s.%6f)%", "1460751420.310999"),
        ("%START_TIME(%s.%9f)%", "1460751420.310999999"),
        ("%START_TIME(%f)%", "310999999"),
        (
            "%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%",
            "2016/04/15T20:17:00+0000 1460751420",
        ),
        (
            "%START_TIME(%Y-%m-%dT%H:%M:%E3SZ)%",
            "2016-04-15T20:17:00.310Z",
        ),
        ("%START_TIME(%E1S|%E9S)%", "00.3|00.310999999"),
        (
            "%START_TIME(%y %F %T %Z %Ez)%",
            "16 2016-04-15 20:17:00 UTC +00:00",
        ),
        ("%START_TIME(100%% at %H)%", "100% at 20"),
        ("t=%START_TIME(%s)%;", "t=1460751420;"),
    ] {
        assert_eq!(render(value), want, "{value:?}");
    }
    let r = Request::new();
    let mut ctx = r.ctx();
    ctx.start_time = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(render_in("t=%START_TIME%", &ctx), "t=", "before the epoch");
}

#[test]
fn calendar_conversion() {
    for (secs, want) in [
        (0, "1970-01-01T00:00:00"),
        (951_825_600, "2000-02-29T12:00:00"),
        (946_684_799, "1999-12-31T23:59:59"),
        (1_735_689_599, "2024-12-31T23:59:59"),
        (4_107_542_400, "2100-03-01T00:00:00"),
    ] {
        let r = Request::new();
        let mut ctx = r.ctx();
        ctx.start_time = UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(render_in("%START_TIME(%FT%T)%", &ctx), want, "{secs}");
    }
}

#[test]
fn environment_is_read_once_at_parse_time() {
    let env = |name: &str| match name {
        "POD_NAME" => Some("reviews-v1-abc".to_string()),
        "BAD" => Some("a\nb".to_string()),
        _ => None,
    };
    let t = HeaderTemplate::parse_with_env("%ENVIRONMENT(POD_NAME)%/%ENVIRONMENT(NONE)%", &env)
        .unwrap();
    assert_eq!(
        t.as_static().map(HeaderValue::as_bytes),
        Some(&b"reviews-v1-abc/-"[..])
    );
    let t = HeaderTemplate::parse_with_env("%ENVIRONMENT(POD_NAME):7%", &env).unwrap();
    assert_eq!(
        t.as_static().map(HeaderValue::as_bytes),
        Some(&b"reviews"[..])
    );
    let t = HeaderTemplate::parse_with_env("%ENVIRONMENT(NONE):0%", &env).unwrap();
    assert_eq!(t.as_static().map(HeaderValue::as_bytes), Some(&b"-"[..]));
    // A value a header cannot carry: nothing is sent.
    let t = HeaderTemplate::parse_with_env("%ENVIRONMENT(BAD)%", &env).unwrap();
    assert!(t.as_static().is_none());
    let r = Request::new();
    assert!(t.render(&r.ctx()).is_none());
    // Mixed with per-request commands.
    let t = HeaderTemplate::parse_with_env("%ENVIRONMENT(POD_NAME)%@%HOSTNAME%", &env).unwrap();
    assert!(t.as_static().is_none());
    assert_eq!(
        t.render(&r.ctx()),
        Some(HeaderValue::from_static("reviews-v1-abc@pod-1"))
    );
    // The real environment: PATH is set wherever the tests run; this one is not.
    let t = HeaderTemplate::parse("%ENVIRONMENT(WEFT_SURELY_UNSET_VARIABLE_42)%").unwrap();
    assert_eq!(t.as_static(), Some(&HeaderValue::from_static("-")));
    assert!(HeaderTemplate::parse("%ENVIRONMENT(A=B)%").is_ok());
}

#[test]
fn every_listed_command_and_specifier_is_implemented() {
    for name in SUPPORTED {
        let bare = HeaderTemplate::parse_with_env(&format!("%{name}%"), &no_env);
        let with_arg = HeaderTemplate::parse_with_env(&format!("%{name}(x)%"), &no_env);
        assert!(
            bare.is_ok() || with_arg.is_ok(),
            "{name}: {bare:?} / {with_arg:?}"
        );
    }
    for spec in START_TIME_SPECIFIERS {
        let expanded: Vec<String> = match *spec {
            "%E1S..%E9S" => (1..=9).map(|n| format!("%E{n}S")).collect(),
            "%1f..%9f" => (1..=9).map(|n| format!("%{n}f")).collect(),
            s => vec![s.to_string()],
        };
        for s in expanded {
            let value = format!("%START_TIME({s})%");
            assert!(render(&value) != "<none>", "{value}");
        }
    }
}

#[test]
fn odd_input_never_panics() {
    let pieces = [
        "%",
        "%%",
        "(",
        ")",
        ":",
        "1",
        "?",
        "REQ",
        "START_TIME",
        "HOSTNAME",
        "é",
        "x",
        "E",
        "f",
        ":9",
        "%E",
        "\t",
        " ",
    ];
    let r = Request::new();
    let ctx = r.ctx();
    let mut n = 0;
    for a in pieces {
        for b in pieces {
            for c in pieces {
                for d in pieces {
                    let value = format!("{a}{b}{c}{d}");
                    if let Ok(t) = HeaderTemplate::parse_with_env(&value, &no_env) {
                        let _ = t.render(&ctx);
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 1000, "{n}");
}
