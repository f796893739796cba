use serde_json::json;

use super::*;

/// A reviews sidecar's `/config_dump` in local mode, trimmed to what the tables read, plus a
/// captured-mode chain and a TCP chain.
fn dump() -> ConfigDump {
    serde_json::from_value(json!({
        "active_clusters": [
            {"name": "inbound|9080||", "type": "STATIC", "warm": true, "outlier_detection": false,
             "lb_policy": "ROUND_ROBIN", "endpoints": [{"address": "127.0.77.11:9080", "weight": 1, "ejected": false}]},
            {"name": "outbound|9080|v1|reviews.default.svc.cluster.local",
             "type": "EDS(outbound|9080|v1|reviews.default.svc.cluster.local)", "warm": true,
             "outlier_detection": true, "lb_policy": "LEAST_REQUEST",
             "endpoints": [{"address": "127.0.10.11:15006", "weight": 1, "ejected": false}]},
            {"name": "outbound|9080||reviews.default.svc.cluster.local",
             "type": "EDS(outbound|9080||reviews.default.svc.cluster.local)", "warm": true,
             "outlier_detection": true, "lb_policy": "LEAST_REQUEST",
             "endpoints": [
                {"address": "127.0.10.12:15006", "weight": 1, "ejected": true},
                {"address": "127.0.10.11:15006", "weight": 1, "ejected": false}]},
            {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "warm": true, "endpoints": []}
        ],
        "active_listeners": [
            {"name": "virtualInbound", "address": "127.0.77.11:15006", "original_dst": false, "chains": [
                {"name": "", "tls": true, "network": {"routes": "inbound|9080"},
                 "match": {"application_protocols": [], "destination_port": null, "prefix_ranges": [],
                           "server_names": [], "transport_protocol": "Tls"}},
                {"name": "", "tls": false, "network": {"routes": "inbound|9080"},
                 "match": {"application_protocols": [], "destination_port": null, "prefix_ranges": [],
                           "server_names": [], "transport_protocol": "RawBuffer"}}]},
            {"name": "virtualOutbound", "address": "[::]:15001", "original_dst": true, "chains": [
                {"name": "", "tls": false, "network": {"tcp_proxy": "outbound|3306||db.default.svc.cluster.local"},
                 "match": {"application_protocols": ["h2", "http/1.1"], "destination_port": 3306,
                           "prefix_ranges": ["10.96.0.5/32"], "server_names": ["db"], "transport_protocol": null}},
                {"name": "", "tls": false, "network": {"routes": "outbound"},
                 "match": {"application_protocols": [], "destination_port": null, "prefix_ranges": [],
                           "server_names": [], "transport_protocol": null}}]}
        ],
        "route_tables": [
            {"name": "inbound|9080", "pending_update": null, "virtual_hosts": [
                {"name": "inbound|http|9080", "domains": ["*"], "routes": [
                    {"name": "default", "match": "prefix /", "headers": 0, "query_parameters": 0,
                     "action": {"cluster": "inbound|9080||"}}]}]},
            {"name": "outbound", "pending_update": null, "virtual_hosts": [
                {"name": "reviews.default.svc.cluster.local:9080",
                 "domains": ["reviews.default.svc.cluster.local:9080", "reviews:9080", "reviews"],
                 "routes": [
                    {"name": "", "match": "path /exact", "headers": 1, "query_parameters": 2, "action": {}},
                    {"name": "", "match": "regex /v[0-9]+", "headers": 0, "query_parameters": 0, "action": {}},
                    {"name": "", "match": "path_separated_prefix /api", "headers": 0, "query_parameters": 0, "action": {}},
                    {"name": "", "match": "prefix /", "headers": 0, "query_parameters": 0, "action": {}}]}]}
        ],
        "listeners": {"version": "a"}, "ready": true
    }))
    .expect("a config dump")
}

fn policies() -> Policies {
    Policies::from_configz(&json!({
        "services": [{
            "hostname": "reviews.default.svc.cluster.local",
            "virtualService": "VirtualService default/reviews",
            "destinationRule": "DestinationRule default/reviews-dr",
        }]
    }))
}

#[test]
fn listeners_show_a_row_per_chain_with_its_match_and_destination() {
    assert_eq!(
        listeners_table(&listener_rows(&dump())),
        "LISTENER         ADDRESS      PORT   MATCH                                               TLS  DESTINATION\n\
         virtualInbound   127.0.77.11  15006  Trans: tls                                          yes  Route: inbound|9080\n\
         virtualInbound   127.0.77.11  15006  Trans: raw_buffer                                   no   Route: inbound|9080\n\
         virtualOutbound  ::           15001  Addr: 10.96.0.5/32:3306; SNI: db; App: h2,http/1.1  no   Cluster: outbound|3306||db.default.svc.cluster.local\n\
         virtualOutbound  ::           15001  ALL                                                 no   Route: outbound\n"
    );
}

#[test]
fn routes_show_domains_match_and_the_virtual_service_of_their_host() {
    assert_eq!(
        routes_table(&route_rows(&dump(), Some(&policies()))),
        "NAME          VHOST NAME                              DOMAINS                                         MATCH                                  VIRTUAL SERVICE\n\
         inbound|9080  inbound|http|9080                       *                                               /*                                     -\n\
         outbound      reviews.default.svc.cluster.local:9080  reviews.default.svc.cluster.local:9080 +2 more  /exact + 1 header, 2 query parameters  reviews.default\n\
         outbound      reviews.default.svc.cluster.local:9080  reviews.default.svc.cluster.local:9080 +2 more  regex /v[0-9]+                         reviews.default\n\
         outbound      reviews.default.svc.cluster.local:9080  reviews.default.svc.cluster.local:9080 +2 more  /api (path prefix)                     reviews.default\n\
         outbound      reviews.default.svc.cluster.local:9080  reviews.default.svc.cluster.local:9080 +2 more  /*                                     reviews.default\n"
    );
}

#[test]
fn without_the_controller_the_policy_columns_are_left_out() {
    let routes = route_rows(&dump(), None);
    assert!(!routes_table(&routes).contains("VIRTUAL SERVICE"));
    let json = serde_json::to_value(&routes).expect("json");
    assert!(json[1].get("virtual_service").is_none(), "{json}");
    let clusters = cluster_rows(&dump(), None);
    assert!(!clusters_table(&clusters).contains("DESTINATION RULE"));
    // Asked, and the host has none: null.
    let json =
        serde_json::to_value(cluster_rows(&dump(), Some(&Policies::default()))).expect("json");
    assert!(json[1]["destination_rule"].is_null());
    assert!(json[1].get("destination_rule").is_some());
}

#[test]
fn clusters_take_their_istio_names_apart() {
    assert_eq!(
        clusters_table(&cluster_rows(&dump(), Some(&policies()))),
        "SERVICE FQDN                       PORT  SUBSET  DIRECTION  TYPE          DESTINATION RULE\n\
         -                                  9080  -       inbound    STATIC        -\n\
         reviews.default.svc.cluster.local  9080  v1      outbound   EDS           reviews-dr.default\n\
         reviews.default.svc.cluster.local  9080  -       outbound   EDS           reviews-dr.default\n\
         PassthroughCluster                 -     -       -          ORIGINAL_DST  -\n"
    );
}

#[test]
fn endpoints_show_outlier_ejections_as_failed() {
    assert_eq!(
        endpoints_table(&endpoint_rows(&dump())),
        "ENDPOINT           STATUS   OUTLIER CHECK  CLUSTER\n\
         127.0.10.11:15006  HEALTHY  OK             outbound|9080|v1|reviews.default.svc.cluster.local\n\
         127.0.10.11:15006  HEALTHY  OK             outbound|9080||reviews.default.svc.cluster.local\n\
         127.0.10.12:15006  HEALTHY  FAILED         outbound|9080||reviews.default.svc.cluster.local\n\
         127.0.77.11:9080   HEALTHY  OK             inbound|9080||\n"
    );
}

#[test]
fn secrets_show_the_certificate_and_roots_with_their_validity() {
    let certs: Certs = serde_json::from_value(json!({
        "identity": "spiffe://cluster.local/ns/default/sa/reviews",
        "certificate": {"serial": "3a9f", "not_before": 1_796_300_000, "not_after": 1_796_386_400,
                        "subject": "", "san": ["spiffe://cluster.local/ns/default/sa/reviews"],
                        "expires_in_seconds": 40_000, "chain_length": 2},
        "roots": [
            {"serial": "01", "not_before": 1_700_000_000, "not_after": 2_015_000_000},
            {"serial": "02", "not_before": 1_600_000_000, "not_after": 1_700_000_000}],
        "issued": 1, "last_error": null
    }))
    .expect("certs");
    let report = secret_report(certs, 1_796_343_515);
    assert_eq!(
        secret_table(&report),
        "RESOURCE NAME  TYPE        STATUS   VALID CERT  SERIAL NUMBER  NOT AFTER             NOT BEFORE\n\
         default        Cert Chain  ACTIVE   true        3a9f           2026-12-04T12:13:20Z  2026-12-03T12:13:20Z\n\
         ROOTCA         CA          ACTIVE   true        01             2033-11-07T18:13:20Z  2023-11-14T22:13:20Z\n\
         ROOTCA         CA          EXPIRED  false       02             2023-11-14T22:13:20Z  2020-09-13T12:26:40Z\n\
         \n\
         Identity: spiffe://cluster.local/ns/default/sa/reviews\n"
    );
}

#[test]
fn a_proxy_without_identity_says_why() {
    let certs: Certs = serde_json::from_value(json!({
        "identity": null,
        "reason": "no --ca-address: the proxy has no workload identity"
    }))
    .expect("certs");
    assert_eq!(
        secret_table(&secret_report(certs, 0)),
        "No secrets: no --ca-address: the proxy has no workload identity\n"
    );
    let waiting: Certs = serde_json::from_value(json!({
        "identity": "spiffe://cluster.local/ns/default/sa/client", "certificate": null,
        "roots": [], "last_error": "CA at https://10.0.0.1:15012: connection refused"
    }))
    .expect("certs");
    let text = secret_table(&secret_report(waiting, 0));
    assert!(
        text.contains("default        Cert Chain  WAITING"),
        "{text}"
    );
    assert!(
        text.ends_with("Last error: CA at https://10.0.0.1:15012: connection refused\n"),
        "{text}"
    );
}

#[test]
fn proxies_name_their_pod() {
    let pod = |proxy: &str| pod_of(proxy, "default");
    assert_eq!(
        pod("reviews-v1-abc.bookinfo"),
        ("reviews-v1-abc".into(), "bookinfo".into())
    );
    assert_eq!(
        pod("reviews-v1-abc"),
        ("reviews-v1-abc".into(), "default".into())
    );
    assert_eq!(
        pod("sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local"),
        ("reviews-v1-abc".into(), "bookinfo".into())
    );
    assert_eq!(pod("web.v1.prod"), ("web.v1".into(), "prod".into()));
}
