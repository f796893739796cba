//! VirtualService HTTP rules (`http[]`): action conflicts, the weighted destinations and their
//! header operations.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CorsPolicy, Delegate, HttpDirectResponse, HttpFaultInjection, HttpMatchRequest,
    HttpMirrorPolicy, HttpRedirect, HttpRetry, HttpRewrite, RouteContext, check_mirror_percentage,
    check_route_duration, check_weights,
};
use crate::de::null_default;
use crate::duration::Duration;
use crate::networking::common::{Destination, Headers, Percent};
use crate::validation::{FieldError, Path, Validate};

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
    /// The same deprecated field under its proto name, which Istio's schema also lists.
    #[serde(
        default,
        rename = "mirror_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_percent_snake: Option<u32>,
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
    /// The deprecated integer mirror share, under either of its names (`mirrorPercent` first).
    pub fn mirror_percent_value(&self) -> Option<u32> {
        self.mirror_percent.or(self.mirror_percent_snake)
    }

    /// Istio's `validateHTTPRoute`.
    pub(super) fn validate_with(
        &self,
        ctx: &RouteContext<'_>,
        path: &Path,
        errors: &mut Vec<FieldError>,
    ) {
        self.validate_conflicts(ctx.delegate, path, errors);
        let mp = path.field("match");
        for (i, m) in self.r#match.iter().enumerate() {
            m.validate_with(ctx, &mp.index(i), errors);
        }
        self.headers.validate(&path.field("headers"), errors);
        self.cors_policy.validate(&path.field("corsPolicy"), errors);
        self.fault.validate(&path.field("fault"), errors);
        for (field, value) in [
            ("mirrorPercent", self.mirror_percent),
            ("mirror_percent", self.mirror_percent_snake),
        ] {
            if let Some(mp) = value
                && mp > 100
            {
                path.field(field).push(
                    errors,
                    format!("mirror_percent must have a max value of 100 (it has {mp})"),
                );
            }
        }
        check_mirror_percentage(
            self.mirror_percentage.as_ref(),
            &path.field("mirrorPercentage"),
            errors,
        );
        self.mirror.validate(&path.field("mirror"), errors);
        let mip = path.field("mirrors");
        for (i, m) in self.mirrors.iter().enumerate() {
            m.validate(&mip.index(i), errors);
        }
        self.redirect.validate(&path.field("redirect"), errors);
        self.direct_response
            .validate(&path.field("directResponse"), errors);
        self.retries.validate(&path.field("retries"), errors);
        self.rewrite.validate(&path.field("rewrite"), errors);
        self.validate_authority_rewrite(path, errors);
        validate_http_destinations(&self.route, &path.field("route"), errors);
        check_route_duration(&path.field("timeout"), errors, &self.timeout);
    }

    /// Istio's `validateHTTPRouteConflict`: which actions a rule may combine. A root rule
    /// (with `delegate`) may have neither `route` nor `redirect`, and nothing else is checked.
    fn validate_conflicts(&self, delegate_vs: bool, path: &Path, errors: &mut Vec<FieldError>) {
        let has_route = !self.route.is_empty();
        if !delegate_vs && self.delegate.is_some() {
            if self.redirect.is_some() {
                path.field("redirect").push(
                    errors,
                    "root HTTP route must not specify redirect when delegate is set",
                );
            }
            if has_route {
                path.field("route").push(
                    errors,
                    "root HTTP route must not specify route when delegate is set",
                );
            }
            return;
        }
        if delegate_vs && self.delegate.is_some() {
            path.field("delegate")
                .push(errors, "delegate HTTP route cannot contain delegate");
        }
        let action = if self.redirect.is_some() {
            "redirect"
        } else if self.direct_response.is_some() {
            "directResponse"
        } else {
            if !has_route {
                path.field("route")
                    .push(errors, "HTTP route, redirect or directResponse is required");
            }
            ""
        };
        if !action.is_empty() {
            let conflicts = [
                ("route", has_route),
                ("fault", self.fault.is_some()),
                ("rewrite", self.rewrite.is_some()),
                (
                    "directResponse",
                    action == "redirect" && self.direct_response.is_some(),
                ),
            ];
            for (field, present) in conflicts {
                if present {
                    path.field(field).push(
                        errors,
                        format!("HTTP route cannot contain both {field} and {action}"),
                    );
                }
            }
        }
        if self.mirror.is_some() && !self.mirrors.is_empty() {
            path.field("mirrors")
                .push(errors, "HTTP route cannot contain both mirror and mirrors");
        }
    }

    /// Istio's `validateAuthorityRewrite`: the authority is rewritten in one place only
    /// (`rewrite.authority`, or one `:authority`/`host` header in `set` or `add`).
    fn validate_authority_rewrite(&self, path: &Path, errors: &mut Vec<FieldError>) {
        let mut current = self
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.clone())
            .unwrap_or_default();
        let Some(req) = self.headers.as_ref().and_then(|h| h.request.as_ref()) else {
            return;
        };
        let authority =
            |k: &&String| k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host");
        for (field, map) in [("set", &req.set), ("add", &req.add)] {
            for (k, v) in map.iter().filter(|(k, _)| authority(k)) {
                if !current.is_empty() {
                    path.field("headers").field("request").field(field).key(k).push(
                        errors,
                        format!(
                            "authority header cannot be set multiple times: have \"{current}\", attempting to set \"{v}\""
                        ),
                    );
                    return;
                }
                current = v.clone();
            }
        }
    }
}

/// Istio's `validateHTTPRouteDestinations`: each destination, its header operations, and the
/// weights.
fn validate_http_destinations(
    dests: &[HttpRouteDestination],
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    for (i, d) in dests.iter().enumerate() {
        let p = path.index(i);
        d.destination.validate(&p.field("destination"), errors);
        d.headers.validate(&p.field("headers"), errors);
    }
    check_weights(dests.iter().map(|d| d.weight), path, errors);
}

/// A destination with a weight and per-destination header operations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request.
    #[serde(default)]
    pub destination: Destination,
    /// Relative share of traffic (not negative; the weights of a rule need not sum to 100).
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
            "spec.http[0].route",
            "both route and redirect",
        );
        assert_err(
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, directResponse: {status: 200}}]",
            "spec.http[0].directResponse",
            "both directResponse and redirect",
        );
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 503}, route: [{destination: {host: a}}]}]",
            "spec.http[0].route",
            "both route and directResponse",
        );
        assert_err(
            "hosts: [a]\nhttp: [{directResponse: {status: 503}, rewrite: {uri: /x}}]",
            "spec.http[0].rewrite",
            "both rewrite and directResponse",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror: {host: b}, mirrors: [{destination: {host: c}}]}]",
            "spec.http[0].mirrors",
            "both mirror and mirrors",
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
        // Istio no longer refuses regex matches in delegates; they conflict with the root's
        // matches when merged instead.
        assert_ok("http: [{match: [{uri: {regex: a.*}}], route: [{destination: {host: a}}]}]");
        // A root rule may combine delegate with a direct response (Istio only refuses route
        // and redirect).
        assert_ok("hosts: [a]\nhttp: [{delegate: {name: b}, directResponse: {status: 200}}]");
        // Istio does not check the delegate's name.
        assert_ok("hosts: [a]\nhttp: [{delegate: {name: ''}}]");
    }

    #[test]
    fn weights_are_relative() {
        // Istio's rule: weights need not sum to 100, none negative, not all 0.
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 80}, {destination: {host: b}, weight: 10}]}]",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 1}, {destination: {host: b}}]}]",
        );
        assert_ok("hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 101}]}]");
        assert_ok("hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 0}]}]");
        let errs = errors_of(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 0}, {destination: {host: b}}]}]",
        );
        assert_eq!(paths(&errs), ["spec.http[0].route"]);
        assert_eq!(
            errs[0].to_string(),
            "spec.http[0].route: total destination weight = 0"
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: -5}, {destination: {host: b}, weight: 105}]}]",
            "spec.http[0].route[0].weight",
            "weight -5 < 0",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 2147483647}, {destination: {host: b}, weight: 2147483647}, {destination: {host: c}, weight: 2}]}]",
            "spec.http[0].route",
            "more than a proxy can split",
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
            "must be a valid duration greater than 1ms",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], rewrite: {authority: x}, headers: {request: {set: {host: y}}}}]",
            "spec.http[0].headers.request.set[host]",
            "authority header cannot be set multiple times: have \"x\", attempting to set \"y\"",
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
        // A route and a destination may set the authority either way.
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], headers: {request: {set: {':authority': b}}}}]",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, headers: {request: {set: {Host: b}, add: {X-Upper: c}}}}]}]",
        );
        assert_ok(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, headers: {request: {set: {':authority': b}}}}]}]",
        );
        assert_err(
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, headers: {request: {set: {':path': b}}}}]}]",
            "spec.http[0].route[0].headers.request.set[:path]",
            "cannot have \":\" prefix",
        );
    }
}
