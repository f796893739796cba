//! VirtualService HTTP rules (`http[]`): action conflicts, the weighted destinations and their
//! header operations.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CorsPolicy, Delegate, HttpDirectResponse, HttpFaultInjection, HttpMatchRequest,
    HttpMirrorPolicy, HttpRedirect, HttpRetry, HttpRewrite, RouteContext, check_weight,
    check_weight_sum,
};
use crate::de::null_default;
use crate::duration::Duration;
use crate::networking::common::{Destination, Headers, Percent};
use crate::validation::{FieldError, Path, Validate, check_duration};

/// One HTTP routing rule: match conditions and an action (route, redirect, direct response or delegate).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name (for logs and stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions, OR-ed; empty matches everything.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Respond directly instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand the route over to another (delegate) VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite URI/authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Mirror traffic to several destinations.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer form of `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// Share of traffic mirrored by `mirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// CORS policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

impl HttpRoute {
    pub(super) fn validate_with(
        &self,
        ctx: &RouteContext,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        let root = !ctx.delegate && self.delegate.is_some();
        // Action conflicts.
        if root {
            if self.redirect.is_some() {
                path.field("redirect").push(
                    errors,
                    "root HTTP route must not specify redirect when delegate is set",
                );
            }
            if !self.route.is_empty() {
                path.field("route").push(
                    errors,
                    "root HTTP route must not specify route when delegate is set",
                );
            }
            if self.direct_response.is_some() {
                path.field("directResponse").push(
                    errors,
                    "root HTTP route must not specify directResponse when delegate is set",
                );
            }
        } else {
            if ctx.delegate && self.delegate.is_some() {
                path.field("delegate")
                    .push(errors, "delegate HTTP route cannot contain delegate");
            }
            let has_route = !self.route.is_empty();
            match (&self.redirect, &self.direct_response) {
                (Some(_), Some(_)) => path.field("directResponse").push(
                    errors,
                    "HTTP route cannot contain both redirect and directResponse",
                ),
                (Some(_), None) => {
                    if has_route {
                        path.field("redirect")
                            .push(errors, "HTTP route cannot contain both route and redirect");
                    }
                    if self.fault.is_some() {
                        path.field("fault")
                            .push(errors, "HTTP route cannot contain both fault and redirect");
                    }
                    if self.rewrite.is_some() {
                        path.field("rewrite").push(
                            errors,
                            "HTTP route rule cannot contain both rewrite and redirect",
                        );
                    }
                }
                (None, Some(_)) => {
                    if has_route {
                        path.field("directResponse").push(
                            errors,
                            "HTTP route cannot contain both route and directResponse",
                        );
                    }
                    if self.fault.is_some() {
                        path.field("fault").push(
                            errors,
                            "HTTP route cannot contain both fault and directResponse",
                        );
                    }
                }
                (None, None) => {
                    if !has_route {
                        path.field("route")
                            .push(errors, "HTTP route, redirect or directResponse is required");
                    }
                }
            }
        }

        // Matches.
        let mp = path.field("match");
        let mut names = BTreeSet::new();
        for (i, m) in self.r#match.iter().enumerate() {
            let p = mp.index(i);
            m.validate_with(ctx, root || ctx.delegate, &p, errors);
            if let Some(n) = m.name.as_deref().filter(|n| !n.is_empty())
                && !names.insert(n)
            {
                p.field("name")
                    .push(errors, format!("duplicate match name {n:?}"));
            }
        }

        self.headers.validate(&path.field("headers"), errors);
        self.cors_policy.validate(&path.field("corsPolicy"), errors);
        self.fault.validate(&path.field("fault"), errors);
        if let Some(mp) = self.mirror_percent
            && mp > 100
        {
            path.field("mirrorPercent").push(
                errors,
                format!("mirrorPercent must have a max value of 100 (it has {mp})"),
            );
        }
        self.mirror_percentage
            .validate(&path.field("mirrorPercentage"), errors);
        self.mirror.validate(&path.field("mirror"), errors);
        let mip = path.field("mirrors");
        for (i, m) in self.mirrors.iter().enumerate() {
            m.validate(&mip.index(i), errors);
        }
        self.redirect.validate(&path.field("redirect"), errors);
        self.direct_response
            .validate(&path.field("directResponse"), errors);
        self.delegate.validate(&path.field("delegate"), errors);
        self.retries.validate(&path.field("retries"), errors);
        self.rewrite.validate(&path.field("rewrite"), errors);
        self.validate_authority_rewrite(path, errors);
        validate_http_destinations(&self.route, &path.field("route"), errors);
        check_duration(&path.field("timeout"), errors, &self.timeout);
    }

    fn validate_authority_rewrite(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let mut sources = 0;
        if self
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.as_ref())
            .is_some_and(|a| !a.is_empty())
        {
            sources += 1;
        }
        if let Some(req) = self.headers.as_ref().and_then(|h| h.request.as_ref()) {
            sources += req
                .set
                .keys()
                .chain(req.add.keys())
                .filter(|k| k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host"))
                .count();
        }
        if sources > 1 {
            path.field("headers")
                .push(errors, "authority header cannot be set multiple times");
        }
    }
}

fn validate_http_destinations(
    dests: &[HttpRouteDestination],
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let p = path.index(i);
        d.destination.validate(&p.field("destination"), errors);
        if let Some(h) = &d.headers {
            h.validate_for_destination(&p.field("headers"), errors);
        }
        check_weight(d.weight, &p.field("weight"), errors);
        total += i64::from(d.weight.unwrap_or(0));
    }
    check_weight_sum(dests.len(), total, path, errors);
}

/// A destination with a weight and per-destination header operations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request.
    #[serde(default)]
    pub destination: Destination,
    /// Share of traffic (0..=100); may be omitted when there is a single destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Header manipulation for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_err, assert_ok, errors_of, paths};

    #[test]
    fn action_conflicts() {
        assert_err(
            "hosts: [a]\nhttp: [{name: x}]",
            "spec.http[0].route",
            "HTTP route, redirect or directResponse is required",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, route: [{destination: {host: a}}]}]",
            "spec.http[0].redirect",
            "both route and redirect",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, directResponse: {status: 200}}]",
            "spec.http[0].directResponse",
            "both redirect and directResponse",
        );
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 503}, route: [{destination: {host: a}}]}]",
            "spec.http[0].directResponse",
            "both route and directResponse",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, rewrite: {uri: /y}}]",
            "spec.http[0].rewrite",
            "rewrite and redirect",
        );
    }

    #[test]
    fn delegation() {
        assert_ok("hosts: [a]\nhttp: [{delegate: {name: b, namespace: ns}}]");
        assert_err(
            "hosts: [a]\nhttp: [{delegate: {name: b}, route: [{destination: {host: a}}]}]",
            "spec.http[0].route",
            "root HTTP route must not specify route",
        );
        assert_err(
            "http: [{delegate: {name: b}}]",
            "spec.http[0].delegate",
            "delegate HTTP route cannot contain delegate",
        );
        assert_err(
            "http: [{match: [{uri: {regex: a.*}}], route: [{destination: {host: a}}]}]",
            "spec.http[0].match[0].uri",
            "does not support regex match for delegating",
        );
    }

    #[test]
    fn weights() {
        let y = "
hosts: [a]
http:
- route: [{destination: {host: a}}]
- route:
  - destination: {host: a, subset: v1}
    weight: 80
  - destination: {host: a, subset: v2}
    weight: 10
";
        let errs = errors_of(y);
        assert_eq!(paths(&errs), ["spec.http[1].route"]);
        assert_eq!(errs[0].message, "weights must sum to 100, got 90");
        assert_eq!(
            errs[0].to_string(),
            "spec.http[1].route: weights must sum to 100, got 90"
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 25}, {destination: {host: b}, weight: 75}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: -5}, {destination: {host: b}, weight: 105}]}]",
            "spec.http[0].route[0].weight",
            "< 0",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 101}]}]",
            "spec.http[0].route[0].weight",
            "> 100",
        );
    }

    #[test]
    fn destinations() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: ''}}]}]",
            "spec.http[0].route[0].destination.host",
            "required",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: V_1}}]}]",
            "spec.http[0].route[0].destination.subset",
            "subset name is invalid",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a, port: {number: 70000}}}]}]",
            "spec.http[0].route[0].destination.port.number",
            "1..65535",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror: {host: '*'}}]",
            "spec.http[0].mirror.host",
            "invalid destination host",
        );
    }

    #[test]
    fn timeout_and_authority() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], timeout: 0.5ms}]",
            "spec.http[0].timeout",
            "at least 1ms",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], rewrite: {authority: x}, headers: {request: {set: {host: y}}}}]",
            "spec.http[0].headers",
            "authority header cannot be set multiple times",
        );
    }

    #[test]
    fn header_values_use_supported_formatters_only() {
        // Route level and per destination, request and response, set and add.
        let errs = errors_of(
            "hosts: [a]
http:
- headers:
    request:
      set: {x-client: '%FOO%', x-ok: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'}
      add: {x-start: '%START_TIME(%Q)%'}
    response:
      set: {x-pct: '50%'}
      add: {x-req: '%REQ(x-a?x-b?x-c)%'}
  route:
  - destination: {host: a}
    headers:
      request: {set: {x-meta: '%UPSTREAM_METADATA([\"a\", \"b\"])%'}, add: {x-ok: '%REQ(:authority):10%'}}
      response: {set: {x-ok: '100%% %RESP(x-served-by)%'}, add: {x-env: '%ENVIRONMENT%'}}
",
        );
        assert_eq!(
            paths(&errs),
            [
                "spec.http[0].headers.request.set[x-client]",
                "spec.http[0].headers.request.add[x-start]",
                "spec.http[0].headers.response.set[x-pct]",
                "spec.http[0].headers.response.add[x-req]",
                "spec.http[0].route[0].headers.request.set[x-meta]",
                "spec.http[0].route[0].headers.response.add[x-env]",
            ]
        );
        let first = errs[0].to_string();
        assert!(
            first.starts_with(
                "spec.http[0].headers.request.set[x-client]: unsupported header formatter %FOO% \
                 (supported: DOWNSTREAM_REMOTE_ADDRESS, "
            ),
            "{first}"
        );
        assert!(
            errs[2]
                .message
                .contains("malformed header formatter at byte 2")
        );
        assert!(errs[4].message.contains("%UPSTREAM_METADATA%"));
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], headers: {request: {set: {x-via: '%HOSTNAME% %PROTOCOL% 100%%'}}}}]",
        );
    }

    #[test]
    fn header_names() {
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], headers: {request: {set: {'x client': v}}}}]",
            "spec.http[0].headers.request.set[x client]",
            "not a valid HTTP header name",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], headers: {response: {remove: ['a:b']}}}]",
            "spec.http[0].headers.response.remove[0]",
            "not a valid HTTP header name",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], headers: {response: {set: {host: v}}}}]",
            "spec.http[0].headers.response.set[host]",
            "cannot set Host header",
        );
        // A route may set the authority either way; a destination only through `host` (as Istio).
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], headers: {request: {set: {':authority': b}}}}]",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, headers: {request: {set: {Host: b}, add: {X-Upper: c}}}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, headers: {request: {set: {':authority': b}}}}]}]",
            "spec.http[0].route[0].headers.request.set[:authority]",
            "cannot have \":\" prefix",
        );
    }
}
