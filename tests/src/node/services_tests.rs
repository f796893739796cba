//! Unit tests of the Service rules: what forwards where, and the iptables-restore inputs.

use serde_json::json;

use super::*;

fn service(namespace: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": ports},
    }))
    .expect("service")
}

fn slice(
    namespace: &str,
    service: &str,
    ports: serde_json::Value,
    endpoints: serde_json::Value,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-abc"), "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("endpoint slice")
}

fn addr(text: &str) -> SocketAddrV4 {
    text.parse().expect("address")
}

#[test]
fn ports_lead_to_ready_endpoints_on_the_target_port_of_their_name() {
    let services = [
        service(
            "shop",
            "web",
            "198.19.4.5",
            json!([{"name": "http", "port": 80, "targetPort": "web"},
                   {"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "sctp", "port": 9, "protocol": "SCTP"}]),
        ),
        // Headless and ExternalName: no ClusterIP, no rule.
        service("shop", "headless", "None", json!([{"port": 80}])),
        service("shop", "unready", "198.19.4.6", json!([{"port": 80}])),
    ];
    let slices = [
        slice(
            "shop",
            "web",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([
                {"addresses": ["198.18.3.7"], "conditions": {"ready": true}},
                {"addresses": ["198.18.3.2"]},
                {"addresses": ["198.18.3.9"], "conditions": {"ready": false}},
            ]),
        ),
        // Another namespace's Service of the same name.
        slice(
            "other",
            "web",
            json!([{"name": "http", "port": 1}]),
            json!([{"addresses": ["198.18.3.50"]}]),
        ),
        slice(
            "shop",
            "unready",
            json!([{"port": 80}]),
            json!([{"addresses": ["198.18.3.4"], "conditions": {"ready": false}}]),
        ),
    ];
    let forwards = forwards(&services, &slices, None);
    assert_eq!(
        forwards,
        [
            Forward {
                service: "shop/web:http".into(),
                cluster_ip: Ipv4Addr::new(198, 19, 4, 5),
                port: 80,
                protocol: Protocol::Tcp,
                endpoints: vec![addr("198.18.3.2:8080"), addr("198.18.3.7:8080")],
                pods_only: false,
            },
            Forward {
                service: "shop/web:dns".into(),
                cluster_ip: Ipv4Addr::new(198, 19, 4, 5),
                port: 53,
                protocol: Protocol::Udp,
                endpoints: vec![addr("198.18.3.2:5353"), addr("198.18.3.7:5353")],
                pods_only: false,
            },
            Forward {
                service: "shop/unready:".into(),
                cluster_ip: Ipv4Addr::new(198, 19, 4, 6),
                port: 80,
                protocol: Protocol::Tcp,
                endpoints: Vec::new(),
                pods_only: false,
            },
        ]
    );
}

#[test]
fn the_kubernetes_service_leads_to_the_api_server_from_the_pods_only() {
    let services = [service(
        "default",
        "kubernetes",
        "198.19.0.1",
        json!([{"name": "https", "port": 443, "targetPort": 6443}]),
    )];
    let forwards = forwards(&services, &[], Some(addr("127.0.0.1:38211")));
    assert_eq!(forwards.len(), 1);
    assert_eq!(forwards[0].endpoints, [addr("127.0.0.1:38211")]);
    assert!(forwards[0].pods_only);
    let input = chain_input(7, &forwards);
    assert_eq!(
        input,
        "*nat\n:WEFT-SVC-7 - [0:0]\n\
         -A WEFT-SVC-7 -i wtb7 -d 198.19.0.1/32 -p tcp -m tcp --dport 443 \
         -m comment --comment default/kubernetes:https -j DNAT --to-destination 127.0.0.1:38211\n\
         COMMIT\n"
    );
}

#[test]
fn endpoints_are_spread_evenly_and_services_without_any_get_no_rule() {
    let forward = |service: &str, endpoints: &[&str]| Forward {
        service: service.into(),
        cluster_ip: Ipv4Addr::new(198, 19, 0, 10),
        port: 80,
        protocol: Protocol::Tcp,
        endpoints: endpoints.iter().map(|e| addr(e)).collect(),
        pods_only: false,
    };
    let input = chain_input(
        3,
        &[
            forward(
                "a/web:",
                &["198.18.3.2:8080", "198.18.3.3:8080", "198.18.3.4:8080"],
            ),
            forward("a/empty:", &[]),
        ],
    );
    let rules: Vec<&str> = input.lines().filter(|l| l.starts_with("-A")).collect();
    assert_eq!(rules.len(), 3, "{input}");
    assert!(
        rules[0].contains("--probability 0.3333333333 -j DNAT --to-destination 198.18.3.2:8080"),
        "{input}"
    );
    assert!(
        rules[1].contains("--probability 0.5000000000 -j DNAT --to-destination 198.18.3.3:8080"),
        "{input}"
    );
    assert!(
        !rules[2].contains("statistic") && rules[2].ends_with("--to-destination 198.18.3.4:8080"),
        "{input}"
    );
}

#[test]
fn setup_jumps_from_the_bridge_and_the_host_and_masquerades_the_hairpin() {
    let input = setup_input(12);
    for expected in [
        "-A PREROUTING -i wtb12 -d 198.19.0.0/16 -j WEFT-SVC-12\n",
        "-A OUTPUT -d 198.19.0.0/16 -j WEFT-SVC-12\n",
        "-A WEFT-SVC-12-MASQ -s 198.18.12.0/24 -d 198.18.12.0/24 -m conntrack --ctstate DNAT -j MASQUERADE\n",
        "-I FORWARD -i wtb12 -j WEFT-SVC-12-FWD\n",
        // The host's packets to a ClusterIP no DNAT took never leave the machine.
        "-A OUTPUT -d 198.19.0.0/16 -j WEFT-SVC-12-FWD\n",
    ] {
        assert!(input.contains(expected), "{expected} in\n{input}");
    }
}

#[test]
fn removal_takes_this_networks_jumps_and_chains_and_nothing_else() {
    let saved = "# Generated by iptables-nft-save\n\
        *filter\n\
        :INPUT ACCEPT [0:0]\n\
        :FORWARD ACCEPT [0:0]\n\
        :WEFT-SVC-3-FWD - [0:0]\n\
        :WEFT-SVC-31-FWD - [0:0]\n\
        -A FORWARD -i wtb3 -j WEFT-SVC-3-FWD\n\
        -A FORWARD -i wtb31 -j WEFT-SVC-31-FWD\n\
        -A WEFT-SVC-3-FWD -o wtb3 -j ACCEPT\n\
        COMMIT\n\
        *nat\n\
        :PREROUTING ACCEPT [0:0]\n\
        :WEFT-SVC-3 - [0:0]\n\
        :WEFT-SVC-3-MASQ - [0:0]\n\
        :WEFT-SVC-31 - [0:0]\n\
        -A PREROUTING -d 198.19.0.0/16 -i wtb3 -j WEFT-SVC-3\n\
        -A PREROUTING -d 198.19.0.0/16 -i wtb31 -j WEFT-SVC-31\n\
        -A POSTROUTING -o wtb3 -j WEFT-SVC-3-MASQ\n\
        -A WEFT-SVC-3 -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment \"a/web:\" -j DNAT --to-destination 198.18.3.2:80\n\
        COMMIT\n\
        *mangle\n\
        :PREROUTING ACCEPT [0:0]\n\
        COMMIT\n";
    assert_eq!(
        removal_input(3, saved).as_deref(),
        Some(
            "*filter\n\
             -D FORWARD -i wtb3 -j WEFT-SVC-3-FWD\n\
             -F WEFT-SVC-3-FWD\n\
             -X WEFT-SVC-3-FWD\n\
             COMMIT\n\
             *nat\n\
             -D PREROUTING -d 198.19.0.0/16 -i wtb3 -j WEFT-SVC-3\n\
             -D POSTROUTING -o wtb3 -j WEFT-SVC-3-MASQ\n\
             -F WEFT-SVC-3\n\
             -F WEFT-SVC-3-MASQ\n\
             -X WEFT-SVC-3\n\
             -X WEFT-SVC-3-MASQ\n\
             COMMIT\n"
        )
    );
    assert_eq!(removal_input(4, saved), None);
}
