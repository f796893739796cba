//! CORS (`envoy.filters.http.cors` with the route's `CorsPolicy`): preflights answered by the
//! proxy, allowed cross-origin responses marked; as Envoy's CORS filter.
//!
//! ```text
//!  request ─► no policy, or no Origin ─► Forward(None)          (not a CORS request)
//!          ─► origin not allowed ─► preflight and IGNORE ─► Reply 200, no CORS headers
//!                                 └─► otherwise Forward(None)   (FORWARD: the upstream decides)
//!          ─► OPTIONS + Access-Control-Request-Method ─► Reply 200: allow-origin (the Origin),
//!               allow-credentials, allow-methods, allow-headers, max-age
//!          ─► any other request ─► Forward(Some(origin)) ─► response: allow-origin,
//!               allow-credentials, expose-headers (after the route's header mutations)
//! ```

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{Either, Full};

use super::ProxyBody;
use crate::config::cors::Cors;

/// What the CORS step does with a request.
pub(super) enum Step {
    /// The proxy answers (a preflight).
    Reply(Box<Response<ProxyBody>>),
    /// The request goes on; with an allowed origin, its response gets the CORS headers.
    Forward(Option<HeaderValue>),
}

/// The CORS step on the request.
pub(super) fn on_request<B>(policy: &Cors, req: &Request<B>) -> Step {
    let Some(origin) = req.headers().get(header::ORIGIN).filter(|o| !o.is_empty()) else {
        return Step::Forward(None);
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| !m.is_empty());
    if !allowed(policy, origin) {
        if preflight && !policy.forward_not_matching_preflights {
            return Step::Reply(ok(HeaderMap::new()));
        }
        return Step::Forward(None);
    }
    if !preflight {
        return Step::Forward(Some(origin.clone()));
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let optional = [
        (header::ACCESS_CONTROL_ALLOW_METHODS, &policy.allow_methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, &policy.allow_headers),
        (header::ACCESS_CONTROL_MAX_AGE, &policy.max_age),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.insert(name, value.clone());
        }
    }
    Step::Reply(ok(headers))
}

/// The CORS headers of an allowed cross-origin request's response.
pub(super) fn on_response(policy: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(expose) = &policy.expose_headers {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
    }
}

/// Whether the origin is allowed: a matcher matches it, or matches `*` (Envoy).
fn allowed(policy: &Cors, origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    policy
        .allow_origins
        .iter()
        .any(|m| m.matches("*") || m.matches(origin))
}

fn ok(headers: HeaderMap) -> Box<Response<ProxyBody>> {
    let mut resp = Response::new(Either::Right(Full::default()));
    *resp.headers_mut() = headers;
    Box::new(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StringMatch, StringMatchKind};

    fn policy(forward: bool) -> Cors {
        Cors {
            allow_origins: vec![StringMatch {
                kind: StringMatchKind::Prefix("https://app.".into()),
                ignore_case: false,
            }],
            allow_methods: Some(HeaderValue::from_static("GET,POST")),
            allow_headers: Some(HeaderValue::from_static("x-custom")),
            expose_headers: Some(HeaderValue::from_static("x-trace")),
            max_age: Some(HeaderValue::from_static("600")),
            allow_credentials: true,
            forward_not_matching_preflights: forward,
        }
    }

    fn request(method: Method, origin: Option<&str>, preflight: bool) -> Request<()> {
        let mut req = Request::builder().method(method).uri("/");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if preflight {
            req = req.header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        req.body(()).unwrap()
    }

    #[test]
    fn an_allowed_preflight_is_answered_with_the_policy() {
        let Step::Reply(resp) = on_request(
            &policy(true),
            &request(Method::OPTIONS, Some("https://app.example"), true),
        ) else {
            panic!("a preflight is answered");
        };
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET,POST");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "x-custom");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(!h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    }

    #[test]
    fn other_requests_go_on_and_only_allowed_ones_are_marked() {
        let p = policy(true);
        // No Origin, a plain OPTIONS, an unknown origin: forwarded untouched.
        assert!(matches!(
            on_request(&p, &request(Method::GET, None, false)),
            Step::Forward(None)
        ));
        assert!(matches!(
            on_request(&p, &request(Method::OPTIONS, Some("https://evil"), true)),
            Step::Forward(None)
        ));
        let Step::Forward(Some(origin)) =
            on_request(&p, &request(Method::GET, Some("https://app.x"), false))
        else {
            panic!("an allowed actual request is marked");
        };
        let mut headers = HeaderMap::new();
        on_response(&p, &origin, &mut headers);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.x"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-trace");
        // IGNORE: an unmatched preflight is answered without CORS headers.
        let Step::Reply(resp) = on_request(
            &policy(false),
            &request(Method::OPTIONS, Some("https://evil"), true),
        ) else {
            panic!("IGNORE answers unmatched preflights");
        };
        assert!(resp.headers().is_empty());
        // A matcher that matches "*" allows every origin.
        let mut any = policy(true);
        any.allow_origins[0].kind = StringMatchKind::Exact("*".into());
        assert!(matches!(
            on_request(&any, &request(Method::GET, Some("https://x"), false)),
            Step::Forward(Some(_))
        ));
    }
}
