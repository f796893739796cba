use serde_json::json;

use super::*;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const NDS: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

fn synced(type_url: &str, short: &str) -> serde_json::Value {
    json!({
        "type_url": type_url, "type": short,
        "sent_version": "v1", "sent_nonce": "1", "sent_ago_ms": 5000,
        "acked_version": "v1", "acked_nonce": "1", "acked_ago_ms": 4900,
        "nack": null, "last_nack": null,
        "wildcard": true, "resource_names": [], "resource_count": 3,
    })
}

fn ty(value: serde_json::Value) -> SynczType {
    serde_json::from_value(value).expect("a syncz type")
}

#[test]
fn acked_what_was_sent_is_synced() {
    let t = ty(synced(CDS, "CDS"));
    assert_eq!(decide(&t), Sync::Synced);
    assert_eq!(decide(&t).summary(60), "SYNCED");
}

#[test]
fn nothing_sent_is_not_sent() {
    let t = ty(json!({"type_url": CDS, "sent_version": ""}));
    assert_eq!(decide(&t), Sync::NotSent);
    assert_eq!(decide(&t).summary(60), "NOT SENT");
}

#[test]
fn a_nack_of_the_version_sent_is_stale_with_the_proxys_message_and_its_age() {
    let mut value = synced(RDS, "RDS");
    value["sent_version"] = json!("v2");
    value["sent_nonce"] = json!("2");
    value["nack"] =
        json!({"version": "v2", "message": "route 0: regex parse error", "ago_ms": 12_000});
    let sync = decide(&ty(value));
    assert_eq!(sync.status(), "STALE");
    assert_eq!(
        sync.summary(60),
        "STALE (12s ago; NACK: route 0: regex parse error)"
    );
    assert_eq!(sync.summary(10), "STALE (12s ago; NACK: route 0:…)");
}

#[test]
fn a_version_sent_after_a_nack_waits_for_its_ack() {
    let mut value = synced(RDS, "RDS");
    value["sent_version"] = json!("v3");
    value["sent_nonce"] = json!("3");
    value["sent_ago_ms"] = json!(3_000);
    value["nack"] = json!({"version": "v2", "message": "bad", "ago_ms": 12_000});
    let sync = decide(&ty(value));
    assert_eq!(
        sync,
        Sync::Waiting {
            sent_ago_ms: Some(3_000)
        }
    );
    assert_eq!(sync.summary(60), "STALE (sent 3s ago, no ACK)");
}

#[test]
fn a_version_acked_before_and_sent_again_waits_for_the_ack_of_the_new_push() {
    // v1 ACKed (nonce 1), v2 rejected (nonce 2), the fix restores v1's content: v1 again
    // at nonce 3. The proxy runs v1, but has not answered the fix yet.
    let mut value = synced(RDS, "RDS");
    value["sent_nonce"] = json!("3");
    value["sent_ago_ms"] = json!(2);
    value["nack"] = json!({"version": "v2", "message": "bad", "ago_ms": 120});
    assert_eq!(
        decide(&ty(value.clone())),
        Sync::Waiting {
            sent_ago_ms: Some(2)
        }
    );
    // A request on the rejected push's nonce carries the older version: not synced either.
    let mut on_rejected = value.clone();
    on_rejected["sent_version"] = json!("v2");
    on_rejected["sent_nonce"] = json!("2");
    on_rejected["acked_nonce"] = json!("2");
    assert!(matches!(
        decide(&ty(on_rejected)),
        Sync::Rejected(SynczNack { ref version, .. }) if version == "v2"
    ));
    // Its ACK answers nonce 3.
    value["acked_nonce"] = json!("3");
    value["nack"] = json!(null);
    assert_eq!(decide(&ty(value.clone())), Sync::Synced);
    // A controller that does not report the ACKed nonce: the versions decide.
    value.as_object_mut().expect("object").remove("acked_nonce");
    value["sent_nonce"] = json!("3");
    assert_eq!(decide(&ty(value)), Sync::Synced);
}

#[test]
fn a_past_nack_does_not_make_a_synced_type_stale() {
    let mut value = synced(CDS, "CDS");
    value["last_nack"] = json!("version v0: cluster x: bad");
    assert_eq!(decide(&ty(value)), Sync::Synced);
}

#[test]
fn controllers_without_the_nack_field_are_read_from_last_nack() {
    // A controller from before `nack` and the ages: only `last_nack`.
    let old = json!({
        "type_url": RDS, "sent_version": "v2", "sent_nonce": "4",
        "acked_version": "v1", "last_nack": "version v2: route 0: regex parse error",
        "wildcard": false, "resource_names": ["outbound"], "resource_count": 1,
    });
    let t = ty(old.clone());
    assert_eq!(t.short(), "RDS");
    assert_eq!(
        decide(&t).summary(60),
        "STALE (NACK: route 0: regex parse error)"
    );
    // The NACK of an older version does not explain the wait for this one.
    let mut older = old;
    older["last_nack"] = json!("version v1: no");
    assert_eq!(decide(&ty(older)).summary(60), "STALE (no ACK)");
    // With the field present and null, `last_nack` is history only.
    let mut new = synced(RDS, "RDS");
    new["sent_version"] = json!("v2");
    new["sent_nonce"] = json!("2");
    new["last_nack"] = json!("version v2: old news");
    assert!(matches!(decide(&ty(new)), Sync::Waiting { .. }));
}

#[test]
fn names_are_pod_dot_namespace_of_istio_node_ids() {
    assert_eq!(
        proxy_name("sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local"),
        "reviews-v1-abc.bookinfo"
    );
    assert_eq!(proxy_name("my-proxy"), "my-proxy");
}

fn report() -> Report {
    let controller = ControllerReport {
        name: "127.0.0.1:15014".into(),
        address: "http://127.0.0.1:15014/debug/syncz".into(),
        version: Some("0.1.0".into()),
        error: None,
    };
    let mut stale = synced(RDS, "RDS");
    stale["sent_version"] = json!("v2");
    stale["sent_nonce"] = json!("2");
    stale["nack"] = json!({
        "version": "v2",
        "message": "route config \"outbound\": virtual host \"reviews.default.svc.cluster.local:9080\": route 0: match.safe_regex: regex parse error",
        "ago_ms": 65_000,
    });
    let proxies: Vec<SynczProxy> = serde_json::from_value(json!([
        {"id": "sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local",
         "connected_for_secs": 70, "types": [synced(CDS, "CDS"), stale]},
        {"id": "sidecar~10.0.0.1~client.default~default.svc.cluster.local",
         "connected_for_secs": 80, "types": [synced(CDS, "CDS"), synced(RDS, "RDS"), synced(NDS, "NDS")]},
    ]))
    .expect("proxies");
    Report {
        proxies: proxies
            .into_iter()
            .map(|p| ProxyReport::new(p, &controller))
            .collect(),
        controllers: vec![controller],
    }
}

#[test]
fn the_table_has_a_row_per_proxy_and_a_column_per_type() {
    assert_eq!(
        render_table(&report()),
        "NAME                CDS     LDS       EDS       RDS                                                                                   NDS       CONTROLLER       VERSION\n\
         reviews-v1.default  SYNCED  NOT SENT  NOT SENT  STALE (1m5s ago; NACK: route config \"outbound\": virtual host \"reviews.default.svc.…)  NOT SENT  127.0.0.1:15014  0.1.0\n\
         client.default      SYNCED  NOT SENT  NOT SENT  SYNCED                                                                                SYNCED    127.0.0.1:15014  0.1.0\n"
    );
}

#[test]
fn the_detail_shows_every_type_and_the_whole_nack() {
    let report = report();
    let detail = render_detail(&report.proxies[0]);
    assert_eq!(
        detail,
        "Proxy:       reviews-v1.default\n\
         Node ID:     sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local\n\
         Controller:  127.0.0.1:15014 (version 0.1.0)\n\
         Connected:   1m10s ago\n\
         \n\
         TYPE  STATUS  SENT VERSION  SENT    ACKED VERSION  ACKED   RESOURCES\n\
         CDS   SYNCED  v1            5s ago  v1             4s ago  3\n\
         RDS   STALE   v2            5s ago  v1             4s ago  3\n\
         \n\
         RDS: version v2 rejected 1m5s ago:\n  \
         route config \"outbound\": virtual host \"reviews.default.svc.cluster.local:9080\": route 0: match.safe_regex: regex parse error\n"
    );
}

#[test]
fn the_json_document_says_status_and_reason_per_type() {
    let value: serde_json::Value =
        serde_json::from_str(&table::document(Output::Json, &report()).expect("json"))
            .expect("valid json");
    let rds = &value["proxies"][0]["types"][1];
    assert_eq!(rds["type"], "RDS");
    assert_eq!(rds["status"], "STALE");
    assert_eq!(rds["nack"]["version"], "v2");
    assert!(
        rds["summary"]
            .as_str()
            .is_some_and(|s| s.ends_with("regex parse error)")),
        "{rds}"
    );
    assert_eq!(value["proxies"][1]["types"][0]["status"], "SYNCED");
    assert_eq!(value["controllers"][0]["version"], "0.1.0");
    assert!(value["proxies"][0]["types"][1].get("sync").is_none());
}

#[test]
fn proxies_are_selected_by_id_name_or_a_unique_pod_name() {
    let report = report();
    let ids = |wanted: &str| -> Vec<String> {
        select(&report.proxies, wanted)
            .into_iter()
            .map(|p| p.name.clone())
            .collect()
    };
    assert_eq!(ids("client.default"), ["client.default"]);
    assert_eq!(
        ids("sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local"),
        ["reviews-v1.default"]
    );
    assert_eq!(ids("reviews-v1"), ["reviews-v1.default"]);
    assert!(ids("reviews").is_empty());
}
