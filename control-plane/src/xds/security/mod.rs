//! The inbound listener's security filters: RequestAuthentication → JWT validation
//! ([`jwt`]), AuthorizationPolicy → RBAC ([`authz`]). Pure functions of `(Model, Proxy)`;
//! `listeners.rs` puts them before the router:
//!
//! ```text
//! virtualInbound HCM http_filters: [jwt_authn?] [rbac DENY?] [rbac ALLOW?] [rbac LOG?] router
//! capture shape, inbound TCP chains: [network rbac DENY?] [ALLOW?] [LOG?] tcp_proxy   (tcp)
//! ```

pub mod authz;
pub mod jwt;
pub mod tcp;
mod wire;

#[cfg(test)]
mod expect;

use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use super::Proxy;
use crate::model::Model;

/// The security filters of `proxy`'s inbound connection manager, in order (router excluded).
pub fn inbound_http_filters(model: &Model, proxy: &Proxy) -> Vec<HttpFilter> {
    let mut filters: Vec<HttpFilter> = jwt::jwt_filter(model, proxy).into_iter().collect();
    filters.extend(authz::rbac_filters(model, proxy));
    filters
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::listener::v3::filter;
    use envoy_types::pb::envoy::config::rbac::v3::rbac;
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, http_filter,
    };
    use prost::Message;

    use super::*;
    use crate::testing::model_from_yaml;
    use crate::xds::listeners::{VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, listeners};

    const EVERY_KIND: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: foo}
spec: {action: AUDIT, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: foo}
spec: {rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec: {action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec: {jwtRules: [{issuer: "iss", jwks: '{"keys":[]}'}]}
"#;

    /// (filter name, RBAC action if an RBAC filter) of each HCM filter of a listener.
    fn http_filters(
        listener: &envoy_types::pb::envoy::config::listener::v3::Listener,
    ) -> Vec<(String, Option<i32>)> {
        let Some(filter::ConfigType::TypedConfig(any)) =
            &listener.filter_chains[0].filters[0].config_type
        else {
            panic!("typed config expected");
        };
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("decodes");
        hcm.http_filters
            .iter()
            .map(|f| {
                let action = match &f.config_type {
                    Some(http_filter::ConfigType::TypedConfig(any))
                        if f.name == "envoy.filters.http.rbac" =>
                    {
                        Rbac::decode(any.value.as_slice())
                            .ok()
                            .and_then(|rbac| rbac.rules)
                            .map(|rules| rules.action)
                    }
                    _ => None,
                };
                (f.name.clone(), action)
            })
            .collect()
    }

    #[test]
    fn inbound_gets_jwt_then_deny_allow_log_then_router_and_outbound_fault_then_router() {
        let model = model_from_yaml(EVERY_KIND);
        let mut proxy = Proxy::sidecar("foo");
        proxy.app_port = Some(9080);
        let all = listeners(&model, &proxy);
        let inbound = all
            .iter()
            .find(|l| l.name == VIRTUAL_INBOUND)
            .expect("inbound");
        let outbound = all
            .iter()
            .find(|l| l.name == VIRTUAL_OUTBOUND)
            .expect("outbound");
        let rbac =
            |action: rbac::Action| ("envoy.filters.http.rbac".to_string(), Some(action as i32));
        assert_eq!(
            http_filters(inbound),
            [
                ("envoy.filters.http.jwt_authn".to_string(), None),
                rbac(rbac::Action::Deny),
                rbac(rbac::Action::Allow),
                rbac(rbac::Action::Log),
                (weft_xds::stats::STATS_FILTER.to_string(), None),
                ("envoy.filters.http.router".to_string(), None),
            ]
        );
        let fault_then_router = [
            ("envoy.filters.http.cors".to_string(), None),
            ("envoy.filters.http.fault".to_string(), None),
            (weft_xds::stats::STATS_FILTER.to_string(), None),
            ("envoy.filters.http.router".to_string(), None),
        ];
        assert_eq!(http_filters(outbound), fault_then_router);
        // A workload no policy selects: the stats filter and the router inbound (and the fault filter outbound).
        let mut elsewhere = Proxy::sidecar("bar");
        elsewhere.app_port = Some(9080);
        for listener in listeners(&model, &elsewhere) {
            if listener.name == VIRTUAL_OUTBOUND {
                assert_eq!(http_filters(&listener), fault_then_router);
            } else {
                assert_eq!(
                    http_filters(&listener),
                    [
                        (weft_xds::stats::STATS_FILTER.to_string(), None),
                        ("envoy.filters.http.router".to_string(), None)
                    ]
                );
            }
        }
        // The same model gives the same listener bytes (maps are encoded in key order).
        let again = listeners(&model_from_yaml(EVERY_KIND), &proxy);
        assert_eq!(all, again);
    }
}
