use weft_xds::nds::NameInfo;

use super::*;
use crate::xds::capture::testing::{capturing_proxy, mesh};

fn info(table: &NameTable, host: &str) -> NameInfo {
    table
        .table
        .get(host)
        .unwrap_or_else(|| panic!("{host} in {:?}", table.table.keys()))
        .clone()
}

#[test]
fn kubernetes_services_carry_cluster_ips_and_their_short_name() {
    let table = name_table(&mesh(""), &capturing_proxy());
    let reviews = info(&table, "reviews.default.svc.cluster.local");
    assert_eq!(reviews.ips, ["10.96.0.10"]);
    assert_eq!(reviews.registry, REGISTRY_KUBERNETES);
    assert_eq!(
        (reviews.shortname.as_str(), reviews.namespace.as_str()),
        ("reviews", "default")
    );
    // Dual-stack: every cluster IP.
    assert_eq!(
        info(&table, "legacy.default.svc.cluster.local").ips,
        ["10.96.0.30", "fd00::30"]
    );
}

#[test]
fn service_entries_carry_their_single_ip_addresses_only() {
    let table = name_table(&mesh(""), &capturing_proxy());
    // 240.240.1.0/24 is a CIDR block: not an answer.
    let db = info(&table, "db.example.com");
    assert_eq!(db.ips, ["240.240.0.1"]);
    assert_eq!(db.registry, REGISTRY_EXTERNAL);
    assert!(db.shortname.is_empty() && db.namespace.is_empty());
    assert_eq!(info(&table, "v6.example.com").ips, ["2001:db8::10"]);
    // No address (resolution DNS): forwarded, so not in the table.
    assert!(!table.table.contains_key("api.example.com"));
    assert!(!table.table.contains_key("details.other.svc.cluster.local"));
}

#[test]
fn wildcard_hosts_and_unspecified_addresses() {
    let model = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.example.com"]
  addresses: [240.240.9.9, 0.0.0.0]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
"#,
    );
    let table = name_table(&model, &capturing_proxy());
    assert_eq!(info(&table, "*.wild.example.com").ips, ["240.240.9.9"]);
}

#[test]
fn a_sidecar_scopes_the_table_as_it_scopes_the_config() {
    let model = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./reviews.default.svc.cluster.local"]}]
"#,
    );
    let table = name_table(&model, &capturing_proxy());
    let hosts: Vec<&str> = table.table.keys().map(String::as_str).collect();
    assert_eq!(hosts, ["reviews.default.svc.cluster.local"]);
}

#[test]
fn one_resource_through_the_generator() {
    let model = mesh("");
    let resources =
        crate::xds::generate(&model, &capturing_proxy(), weft_xds::type_url::NAME_TABLE);
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].body.type_url, weft_xds::type_url::NAME_TABLE);
    let decoded =
        <NameTable as prost::Message>::decode(resources[0].body.value.as_slice()).expect("decodes");
    assert_eq!(decoded, name_table(&model, &capturing_proxy()));
}
