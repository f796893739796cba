//! The HCM's `http_filters` → the filters a listener runs before routing, converted once.
//!
//! ```text
//!  [envoy.filters.http.jwt_authn (at most one)] [envoy.filters.http.rbac]* [envoy.filters.http.local_ratelimit]*
//!     JwtAuthentication ─► authn::JwtAuthn      RBAC ─► authz::Rbac      LocalRateLimit ─► local_ratelimit.rs
//!  [envoy.filters.http.cors] [envoy.filters.http.fault]
//!     Cors (empty) ─► routes' CORS policies apply    HTTPFault ─► the listener's fault step (routes' own override it)
//!  [istio.stats] (anywhere before the router) PluginConfig ─► stats.rs: the listener's Istio metrics
//!  envoy.filters.http.router (last; no settings)
//!  in the order given; anything else (or disabled, or ECDS-discovered) is rejected naming it
//! ```

use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use std::sync::Arc;

use super::fault::Fault;
use super::local_ratelimit::LocalRateLimit;
use super::stats::STATS_FILTER;
use super::{ROUTER_FILTER, ROUTER_TYPE, Reason, invalid};
use crate::authn::JwtAuthn;
use crate::authz::Rbac;
use crate::metrics::view::Stats;
use weft_xds::contract::{
    CORS as CORS_FILTER, CORS_TYPE_URL as CORS_TYPE, FAULT as FAULT_FILTER,
    FAULT_TYPE_URL as FAULT_TYPE, LOCAL_RATELIMIT as LOCAL_RATELIMIT_FILTER,
    LOCAL_RATELIMIT_TYPE_URL as LOCAL_RATELIMIT_TYPE,
};

// Names shared with the controller: weft-xds's contract module.
pub use weft_xds::contract::{
    JWT_AUTHN as JWT_AUTHN_FILTER, JWT_AUTHN_TYPE_URL as JWT_AUTHN_TYPE,
    NETWORK_RBAC as NETWORK_RBAC_FILTER, NETWORK_RBAC_TYPE_URL as NETWORK_RBAC_TYPE,
    RBAC as RBAC_FILTER, RBAC_TYPE_URL as RBAC_TYPE,
};

/// One HTTP filter that runs before the router.
#[derive(Debug)]
pub enum HttpFilter {
    Jwt(Box<JwtAuthn>),
    Rbac(Rbac),
    LocalRateLimit(Box<LocalRateLimit>),
}

/// The HCM's filters as the data path runs them.
#[derive(Debug, Default)]
pub(super) struct Filters {
    /// Run before routing, in order.
    pub before_routing: Vec<HttpFilter>,
    /// The fault filter: present (with its own, usually empty, default) or not. It runs after
    /// routing, in the route-policy step, since its faults are the route's.
    pub fault: Option<Fault>,
    /// The CORS filter is present: routes' CORS policies apply (in the route-policy step,
    /// before the faults, as Istio orders the filters).
    pub cors: bool,
    /// Istio's stats filter: requests are recorded in Istio's metrics with these settings
    /// (none: not recorded). Where it stands in the list does not matter: a request is
    /// recorded when its response ends.
    pub stats: Option<Arc<Stats>>,
}

/// Converts the HCM's filter list; the router must be last, the fault filter after the
/// filters that run before routing.
pub(super) fn http_filters(filters: Vec<hcm::HttpFilter>) -> Result<Filters, Reason> {
    let count = filters.len();
    let mut out = Vec::with_capacity(count.saturating_sub(1));
    let mut fault: Option<Fault> = None;
    let mut cors = false;
    let mut stats = None;
    for (i, f) in filters.into_iter().enumerate() {
        let field = format!("http_filters[{i}]");
        let type_url = match &f.config_type {
            Some(hcm::http_filter::ConfigType::TypedConfig(any)) => Some(any.type_url.as_str()),
            Some(hcm::http_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(Reason::Unsupported(format!("{field}.config_discovery")));
            }
            None => None,
        };
        let is = |name: &str, url: &str| type_url.map_or(f.name == name, |t| t == url);
        if is(ROUTER_FILTER, ROUTER_TYPE) {
            if i + 1 != count {
                return Err(invalid(
                    field,
                    "envoy.filters.http.router must be the last filter",
                ));
            }
            if f.disabled {
                return Err(invalid(field, "the router filter cannot be disabled"));
            }
            if let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type
                && !any.value.is_empty()
            {
                return Err(Reason::Unsupported("router filter settings".into()));
            }
            return Ok(Filters {
                before_routing: out,
                fault,
                cors,
                stats,
            });
        }
        let stats_config = match &f.config_type {
            Some(hcm::http_filter::ConfigType::TypedConfig(any)) => super::stats::is_stats(any),
            _ => f.name == STATS_FILTER,
        };
        if stats_config {
            if stats.is_some() {
                return Err(invalid(
                    field,
                    "at most one istio.stats filter is supported",
                ));
            }
            if f.disabled {
                return Err(Reason::Unsupported(format!(
                    "{field}.disabled (istio.stats)"
                )));
            }
            let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                return Err(invalid(
                    format!("{field}.typed_config"),
                    "istio.stats needs its config",
                ));
            };
            stats = Some(
                super::stats::stats(any)
                    .map_err(|r| r.within(&format!("{field} ({STATS_FILTER})")))?,
            );
            continue;
        }
        let jwt = is(JWT_AUTHN_FILTER, JWT_AUTHN_TYPE);
        let rbac = is(RBAC_FILTER, RBAC_TYPE);
        let local_ratelimit = is(LOCAL_RATELIMIT_FILTER, LOCAL_RATELIMIT_TYPE);
        if is(CORS_FILTER, CORS_TYPE) {
            if cors {
                return Err(invalid(
                    field,
                    "at most one envoy.filters.http.cors filter is supported",
                ));
            }
            if fault.is_some() {
                return Err(invalid(
                    field,
                    "envoy.filters.http.cors must come before envoy.filters.http.fault",
                ));
            }
            if f.disabled {
                return Err(Reason::Unsupported(format!("{field}.disabled (cors)")));
            }
            // `Cors` has no settings the proxy honours beyond the routes' policies.
            if let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type
                && !any.value.is_empty()
            {
                return Err(Reason::Unsupported(format!(
                    "{field} ({}) filter-level settings",
                    f.name
                )));
            }
            cors = true;
            continue;
        }
        if is(FAULT_FILTER, FAULT_TYPE) {
            if fault.is_some() {
                return Err(invalid(
                    field,
                    "at most one envoy.filters.http.fault filter is supported",
                ));
            }
            if f.disabled {
                return Err(Reason::Unsupported(format!("{field}.disabled (fault)")));
            }
            let config = match &f.config_type {
                Some(hcm::http_filter::ConfigType::TypedConfig(any)) => {
                    decode::<envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault>(
                        any,
                        &format!("{field} ({})", f.name),
                    )?
                }
                _ => Default::default(),
            };
            fault = Some(Fault::try_from(config).map_err(|r| r.within(&field))?);
            continue;
        }
        if fault.is_some() || cors {
            return Err(invalid(
                field,
                "filters that run before routing (jwt_authn, rbac, local_ratelimit) must come before the fault filter (and the cors filter)",
            ));
        }
        if !jwt && !rbac && !local_ratelimit {
            return Err(Reason::Unsupported(match type_url {
                Some(t) => format!("{field} {:?} ({t})", f.name),
                None => format!("{field} {:?}", f.name),
            }));
        }
        if f.disabled {
            return Err(Reason::Unsupported(format!(
                "{field}.disabled ({}: per-route filter config is not supported)",
                f.name
            )));
        }
        let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = f.config_type else {
            return Err(invalid(
                format!("{field}.typed_config"),
                format!("{} needs its config", f.name),
            ));
        };
        let at = format!("{field} ({})", f.name);
        if jwt {
            if out.iter().any(|f| matches!(f, HttpFilter::Jwt(_))) {
                return Err(invalid(
                    field,
                    "at most one envoy.filters.http.jwt_authn filter is supported",
                ));
            }
            let config: JwtAuthentication = decode(&any, &at)?;
            out.push(HttpFilter::Jwt(Box::new(
                JwtAuthn::try_from(config).map_err(|r| r.within(&at))?,
            )));
        } else if local_ratelimit {
            let config: envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit =
                decode(&any, &at)?;
            out.push(HttpFilter::LocalRateLimit(Box::new(
                LocalRateLimit::convert(config, &any.value).map_err(|r| r.within(&at))?,
            )));
        } else {
            let config: http_rbac::Rbac = decode(&any, &at)?;
            out.push(HttpFilter::Rbac(
                Rbac::try_from(config).map_err(|r| r.within(&at))?,
            ));
        }
    }
    Err(Reason::Missing(
        "http_filters: envoy.filters.http.router (last)",
    ))
}

fn decode<M: Message + Default>(any: &Any, at: &str) -> Result<M, Reason> {
    M::decode(any.value.as_slice()).map_err(|e| Reason::Decode {
        type_url: any.type_url.clone(),
        error: format!("{at}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::envoy::config::rbac::v3::rbac::Action as A;
    use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
    use envoy_types::pb::google::protobuf::Any;
    use prost::{Message, Name};

    use super::{HttpFilter, http_filters};
    use crate::authz::test_support::{any_id, any_perm, http_rbac, policy};
    use crate::authz::{Action, Rbac};

    fn filter<M: Message + Name>(name: &str, config: &M) -> hcm::HttpFilter {
        hcm::HttpFilter {
            name: name.into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(Any {
                type_url: M::type_url(),
                value: config.encode_to_vec(),
            })),
            ..Default::default()
        }
    }

    fn router() -> hcm::HttpFilter {
        hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            ..Default::default()
        }
    }

    fn rbac(action: A) -> hcm::HttpFilter {
        filter(
            "envoy.filters.http.rbac",
            &http_rbac(
                action,
                vec![("p", policy(vec![any_perm()], vec![any_id()]))],
            ),
        )
    }

    fn jwt() -> hcm::HttpFilter {
        let provider = jwt::JwtProvider {
            issuer: "https://issuer.example".into(),
            jwks_source_specifier: Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(
                core::DataSource {
                    specifier: Some(core::data_source::Specifier::InlineString(
                        r#"{"keys":[]}"#.into(),
                    )),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        filter(
            "envoy.filters.http.jwt_authn",
            &jwt::JwtAuthentication {
                providers: [("origins-0".to_string(), provider)].into_iter().collect(),
                ..Default::default()
            },
        )
    }

    fn reject(filters: Vec<hcm::HttpFilter>) -> String {
        http_filters(filters)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn type_urls_match_envoy_types() {
        assert_eq!(http_rbac::Rbac::type_url(), super::RBAC_TYPE);
        assert_eq!(net_rbac::Rbac::type_url(), super::NETWORK_RBAC_TYPE);
        assert_eq!(jwt::JwtAuthentication::type_url(), super::JWT_AUTHN_TYPE);
    }

    #[test]
    fn accepts_istiods_filter_list_in_order() {
        let filters = http_filters(vec![
            jwt(),
            rbac(A::Deny),
            rbac(A::Allow),
            rbac(A::Log),
            router(),
        ])
        .expect("accepted");
        assert!(filters.fault.is_none());
        let kinds: Vec<Option<Action>> = filters
            .before_routing
            .iter()
            .map(|f| match f {
                HttpFilter::Jwt(_) | HttpFilter::LocalRateLimit(_) => None,
                HttpFilter::Rbac(Rbac { action, .. }) => Some(*action),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                None,
                Some(Action::Deny),
                Some(Action::Allow),
                Some(Action::Log)
            ]
        );
        assert!(
            http_filters(vec![router()])
                .expect("accepted")
                .before_routing
                .is_empty()
        );
    }

    #[test]
    fn the_fault_filter_comes_after_the_ones_before_routing() {
        let fault = filter(
            "envoy.filters.http.fault",
            &envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault::default(),
        );
        let filters =
            http_filters(vec![rbac(A::Allow), fault.clone(), router()]).expect("accepted");
        assert_eq!(filters.before_routing.len(), 1);
        assert!(filters.fault.as_ref().is_some_and(|f| f.is_empty()));
        assert!(
            reject(vec![fault.clone(), rbac(A::Allow), router()])
                .contains("before the fault filter")
        );
        assert!(reject(vec![fault.clone(), fault, router()]).contains("at most one"));
    }

    #[test]
    fn the_cors_filter_comes_before_the_fault_filter_without_settings() {
        use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
        use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
        let cors = || filter("envoy.filters.http.cors", &Cors::default());
        let fault = || filter("envoy.filters.http.fault", &HttpFault::default());
        let filters = http_filters(vec![rbac(A::Deny), cors(), fault(), router()]).unwrap();
        assert!(filters.cors && filters.fault.is_some());
        assert!(!http_filters(vec![router()]).unwrap().cors);
        assert!(reject(vec![fault(), cors(), router()]).contains("must come before"));
        assert!(reject(vec![cors(), cors(), router()]).contains("at most one"));
        assert!(reject(vec![cors(), rbac(A::Deny), router()]).contains("must come before"));
        let mut disabled = cors();
        disabled.disabled = true;
        assert!(reject(vec![disabled, router()]).contains("disabled"));
    }

    #[test]
    fn rejects_other_filters_and_bad_lists_naming_them() {
        let lua = hcm::HttpFilter {
            name: "envoy.filters.http.lua".into(),
            ..Default::default()
        };
        assert!(reject(vec![lua, router()]).contains("http_filters[0] \"envoy.filters.http.lua\""));
        assert!(reject(vec![router(), rbac(A::Deny)]).contains("must be the last filter"));
        assert!(reject(vec![rbac(A::Deny)]).contains("envoy.filters.http.router"));
        assert!(reject(vec![]).contains("envoy.filters.http.router"));
        assert!(reject(vec![jwt(), jwt(), router()]).contains("at most one"));
        let mut disabled = rbac(A::Allow);
        disabled.disabled = true;
        assert!(reject(vec![disabled, router()]).contains("http_filters[0].disabled"));
        let no_config = hcm::HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            ..Default::default()
        };
        assert!(reject(vec![no_config, router()]).contains("http_filters[0].typed_config"));
        let ecds = hcm::HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            config_type: Some(hcm::http_filter::ConfigType::ConfigDiscovery(
                Default::default(),
            )),
            ..Default::default()
        };
        assert!(reject(vec![ecds, router()]).contains("config_discovery"));
        // A bad RBAC config is named by filter and field.
        let mut shadow = http_rbac(
            A::Deny,
            vec![("p", policy(vec![any_perm()], vec![any_id()]))],
        );
        shadow.shadow_rules = shadow.rules.clone();
        let e = reject(vec![
            rbac(A::Deny),
            filter("envoy.filters.http.rbac", &shadow),
            router(),
        ]);
        assert!(
            e.contains("http_filters[1] (envoy.filters.http.rbac).shadow_rules"),
            "{e}"
        );
        let garbage = hcm::HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(Any {
                type_url: super::RBAC_TYPE.into(),
                value: vec![0xff, 0xff],
            })),
            ..Default::default()
        };
        assert!(reject(vec![garbage, router()]).contains("cannot decode"));
    }
}
