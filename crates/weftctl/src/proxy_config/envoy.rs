//! Reads Envoy's admin JSON, as weft-proxy serves it (and Envoy does): `/config_dump`
//! (`envoy.admin.v3.ConfigDump`: listeners, route configurations, clusters as proto3 JSON)
//! and `/clusters?format=json` (endpoints with weight and outlier verdict), into the
//! [`ConfigDump`] the tables are made from.

use serde_json::Value;

use super::tables::{
    ConfigDump, DumpChain, DumpCluster, DumpEndpoint, DumpListener, DumpMatch, DumpRoute,
    DumpRouteTable, DumpVirtualHost,
};

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// The configs of `dump` whose `@type` ends with `.{kind}`.
fn configs<'a>(dump: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.rsplit('.').next() == Some(kind))
        })
}

fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn strings(value: &Value) -> Vec<String> {
    items(value)
        .filter_map(|v| v.as_str())
        .map(str::to_string)
        .collect()
}

/// A proto3 JSON number: a number, or (64-bit) a string.
fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn type_of(any: &Value) -> &str {
    any["@type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// `ip:port` (`[ip]:port` for IPv6) of an `Address`.
fn address(address: &Value) -> String {
    let sa = &address["socket_address"];
    let ip = sa["address"].as_str().unwrap_or_default();
    let port = number(&sa["port_value"]).unwrap_or(0);
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

impl ConfigDump {
    /// The tables' view of an Envoy `ConfigDump` and, when given, `/clusters?format=json`
    /// (each cluster's endpoints).
    pub fn from_envoy(dump: &Value, clusters: Option<&Value>) -> ConfigDump {
        let mut out = ConfigDump::default();
        for config in configs(dump, "ListenersConfigDump") {
            for dynamic in items(&config["dynamic_listeners"]) {
                let listener = &dynamic["active_state"]["listener"];
                if listener.is_object() {
                    out.active_listeners.push(listener_of(listener));
                }
            }
        }
        for config in configs(dump, "RoutesConfigDump") {
            for dynamic in items(&config["dynamic_route_configs"]) {
                let rc = &dynamic["route_config"];
                if rc.is_object() {
                    out.route_tables.push(route_table_of(rc));
                }
            }
        }
        let endpoints = clusters.map(endpoints_by_cluster).unwrap_or_default();
        for config in configs(dump, "ClustersConfigDump") {
            for (field, warm) in [
                ("dynamic_active_clusters", true),
                ("static_clusters", true),
                ("dynamic_warming_clusters", false),
            ] {
                for dynamic in items(&config[field]) {
                    let c = &dynamic["cluster"];
                    if !c.is_object() {
                        continue;
                    }
                    let name = string(&c["name"]);
                    let kind = c["type"].as_str().unwrap_or("STATIC");
                    out.active_clusters.push(DumpCluster {
                        endpoints: endpoints
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, e)| e.clone())
                            .unwrap_or_default(),
                        name,
                        kind: kind.to_string(),
                        warm,
                        outlier_detection: c["outlier_detection"].is_object(),
                        lb_policy: c["lb_policy"].as_str().unwrap_or("ROUND_ROBIN").to_string(),
                    });
                }
            }
        }
        if clusters.is_some() && out.active_clusters.is_empty() {
            // `/clusters` alone (the endpoints table): its clusters, with their endpoints.
            out.active_clusters = endpoints
                .into_iter()
                .map(|(name, endpoints)| DumpCluster {
                    name,
                    endpoints,
                    warm: true,
                    ..Default::default()
                })
                .collect();
        }
        out
    }
}

fn listener_of(listener: &Value) -> DumpListener {
    let mut chains: Vec<DumpChain> = items(&listener["filter_chains"]).map(chain_of).collect();
    if listener["default_filter_chain"].is_object() {
        chains.push(chain_of(&listener["default_filter_chain"]));
    }
    DumpListener {
        name: string(&listener["name"]),
        address: address(&listener["address"]),
        chains,
    }
}

fn chain_of(chain: &Value) -> DumpChain {
    let m = &chain["filter_chain_match"];
    let matcher = DumpMatch {
        destination_port: number(&m["destination_port"]).and_then(|p| u32::try_from(p).ok()),
        prefix_ranges: items(&m["prefix_ranges"])
            .map(|r| {
                format!(
                    "{}/{}",
                    r["address_prefix"].as_str().unwrap_or_default(),
                    number(&r["prefix_len"]).unwrap_or(0)
                )
            })
            .collect(),
        server_names: strings(&m["server_names"]),
        transport_protocol: m["transport_protocol"].as_str().map(str::to_string),
        application_protocols: strings(&m["application_protocols"]),
    };
    let tls = type_of(&chain["transport_socket"]["typed_config"]).ends_with("DownstreamTlsContext");
    let mut network = Value::Null;
    for filter in items(&chain["filters"]) {
        let config = &filter["typed_config"];
        match type_of(config) {
            HCM => {
                let routes = match config["rds"]["route_config_name"].as_str() {
                    Some(name) => name.to_string(),
                    None => format!("inline:{}", string(&config["route_config"]["name"])),
                };
                network = serde_json::json!({ "routes": routes });
            }
            TCP_PROXY => {
                let cluster = match config["cluster"].as_str() {
                    Some(c) => c.to_string(),
                    None => items(&config["weighted_clusters"]["clusters"])
                        .map(|c| string(&c["name"]))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                network = serde_json::json!({ "tcp_proxy": cluster });
            }
            _ => {}
        }
    }
    DumpChain {
        matcher,
        tls,
        network,
    }
}

fn route_table_of(rc: &Value) -> DumpRouteTable {
    DumpRouteTable {
        name: string(&rc["name"]),
        virtual_hosts: items(&rc["virtual_hosts"])
            .map(|vh| DumpVirtualHost {
                name: string(&vh["name"]),
                domains: strings(&vh["domains"]),
                routes: items(&vh["routes"]).map(route_of).collect(),
            })
            .collect(),
    }
}

fn route_of(route: &Value) -> DumpRoute {
    let m = &route["match"];
    let matcher = [
        ("prefix", &m["prefix"]),
        ("path", &m["path"]),
        ("regex", &m["safe_regex"]["regex"]),
        ("path_separated_prefix", &m["path_separated_prefix"]),
    ]
    .into_iter()
    .find_map(|(kind, v)| v.as_str().map(|v| format!("{kind} {v}")))
    .unwrap_or_else(|| "prefix ".to_string());
    DumpRoute {
        name: string(&route["name"]),
        matcher,
        headers: items(&m["headers"]).count(),
        query_parameters: items(&m["query_parameters"]).count(),
    }
}

/// Each cluster's endpoints, from `/clusters?format=json` (`cluster_statuses`).
fn endpoints_by_cluster(clusters: &Value) -> Vec<(String, Vec<DumpEndpoint>)> {
    items(&clusters["cluster_statuses"])
        .map(|c| {
            let endpoints = items(&c["host_statuses"])
                .map(|h| DumpEndpoint {
                    address: address(&h["address"]),
                    weight: number(&h["weight"])
                        .and_then(|w| u32::try_from(w).ok())
                        .unwrap_or(1),
                    ejected: h["health_status"]["failed_outlier_check"]
                        .as_bool()
                        .unwrap_or(false),
                })
                .collect();
            (string(&c["name"]), endpoints)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envoys_dump_and_clusters_become_the_tables_view() {
        let dump = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "version_info": "3",
             "dynamic_active_clusters": [{"version_info": "3", "cluster": {
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": "outbound|9080||reviews.default.svc.cluster.local", "type": "EDS",
                "lb_policy": "LEAST_REQUEST", "outlier_detection": {"consecutive_5xx": 5}}}],
             "dynamic_warming_clusters": [{"cluster": {"name": "inbound|9080||"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "dynamic_listeners": [{"name": "virtualOutbound", "active_state": {"listener": {
                "name": "virtualOutbound",
                "address": {"socket_address": {"address": "::", "port_value": 15001}},
                "filter_chains": [{
                    "filter_chain_match": {"destination_port": 3306,
                        "prefix_ranges": [{"address_prefix": "10.96.0.5", "prefix_len": 32}],
                        "transport_protocol": "tls"},
                    "transport_socket": {"typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"}},
                    "filters": [{"typed_config": {"@type": format!("type.googleapis.com/{TCP_PROXY}"), "cluster": "db"}}]}],
                "default_filter_chain": {"filters": [{"typed_config": {
                    "@type": format!("type.googleapis.com/{HCM}"), "rds": {"route_config_name": "outbound"}}}]}}},
              "error_state": {"details": "x"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [{"route_config": {"name": "outbound", "virtual_hosts": [
                {"name": "reviews:9080", "domains": ["reviews"], "routes": [
                    {"name": "r", "match": {"safe_regex": {"regex": "/a.*"}, "headers": [{}]}},
                    {"match": {"prefix": "/"}}]}]}}]}
        ]});
        let clusters = json!({"cluster_statuses": [{
            "name": "outbound|9080||reviews.default.svc.cluster.local",
            "host_statuses": [
                {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 9080}},
                 "weight": 2, "health_status": {"failed_outlier_check": true}}]}]});
        let view = ConfigDump::from_envoy(&dump, Some(&clusters));
        let l = &view.active_listeners[0];
        assert_eq!(l.address, "[::]:15001");
        assert_eq!(l.chains.len(), 2);
        assert!(l.chains[0].tls);
        assert_eq!(l.chains[0].matcher.destination_port, Some(3306));
        assert_eq!(l.chains[0].matcher.prefix_ranges, ["10.96.0.5/32"]);
        assert_eq!(l.chains[0].network["tcp_proxy"], "db");
        assert_eq!(l.chains[1].network["routes"], "outbound");
        let r = &view.route_tables[0].virtual_hosts[0].routes;
        assert_eq!((r[0].matcher.as_str(), r[0].headers), ("regex /a.*", 1));
        assert_eq!(r[1].matcher, "prefix /");
        let c = &view.active_clusters;
        assert_eq!(
            (c[0].kind.as_str(), c[0].warm, c[0].outlier_detection),
            ("EDS", true, true)
        );
        assert_eq!(c[0].endpoints[0].address, "10.0.0.1:9080");
        assert_eq!(c[0].endpoints[0].weight, 2);
        assert!(c[0].endpoints[0].ejected);
        assert_eq!(
            (c[1].kind.as_str(), c[1].warm, c[1].lb_policy.as_str()),
            ("STATIC", false, "ROUND_ROBIN")
        );

        let only = ConfigDump::from_envoy(&json!({}), Some(&clusters));
        assert_eq!(only.active_clusters[0].endpoints.len(), 1);
    }
}
