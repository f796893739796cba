use super::*;
use crate::authz::Cidr;
use crate::config::{
    FilterChain, Inspectors, Listener, Network, TcpCluster, TcpProxy, TransportProtocol,
};

fn chain(name: &str, matcher: ChainMatch) -> FilterChain {
    FilterChain {
        name: name.into(),
        matcher,
        tls: None,
        network: Network::Tcp(TcpProxy {
            peer_exchange: false,
            access_logs: Vec::new().into(),
            rbac: Vec::new(),
            clusters: vec![TcpCluster {
                name: name.into(),
                weight: 1,
            }],
            idle_timeout: None,
            stats: None,
        }),
    }
}

fn port(p: u16) -> ChainMatch {
    ChainMatch {
        destination_port: Some(p),
        ..ChainMatch::default()
    }
}

fn cidr(s: &str) -> Cidr {
    let (addr, len) = s.split_once('/').unwrap();
    Cidr {
        addr: addr.parse().unwrap(),
        len: len.parse().unwrap(),
    }
}

fn listener(chains: Vec<FilterChain>, default: bool) -> Listener {
    let mut chains = chains;
    if default {
        chains.push(chain("default", ChainMatch::default()));
    }
    Listener {
        name: "virtualOutbound".into(),
        address: "0.0.0.0:15001".parse().unwrap(),
        original_dst: true,
        inspectors: Inspectors {
            tls: true,
            http: true,
            timeout: None,
            continue_on_timeout: true,
        },
        chains,
        has_default_chain: default,
        mtls: None,
        direction: Default::default(),
    }
}

fn pick(l: &Listener, dst: &str, seen: &Seen) -> Option<String> {
    let c = candidates(l, dst.parse().unwrap());
    choose(l, &c, seen).map(|i| l.chains[i].name.clone())
}

#[test]
fn port_then_longest_prefix_then_default() {
    let l = listener(
        vec![
            chain("http-9080", port(9080)),
            chain(
                "mysql",
                ChainMatch {
                    prefix_ranges: vec![cidr("10.96.0.10/32")],
                    ..port(3306)
                },
            ),
            chain(
                "wide-3306",
                ChainMatch {
                    prefix_ranges: vec![cidr("10.96.0.0/16")],
                    ..port(3306)
                },
            ),
            chain(
                "any-port-subnet",
                ChainMatch {
                    prefix_ranges: vec![cidr("192.168.0.0/16")],
                    ..ChainMatch::default()
                },
            ),
        ],
        true,
    );
    let none = Seen::default();
    assert_eq!(
        pick(&l, "10.1.2.3:9080", &none).as_deref(),
        Some("http-9080")
    );
    assert_eq!(pick(&l, "10.96.0.10:3306", &none).as_deref(), Some("mysql"));
    assert_eq!(
        pick(&l, "10.96.7.7:3306", &none).as_deref(),
        Some("wide-3306")
    );
    // Port 3306 has chains: a destination outside their ranges does not fall back to the
    // port-less chains (Envoy does not backtrack), it takes the default chain.
    assert_eq!(
        pick(&l, "192.168.1.1:3306", &none).as_deref(),
        Some("default")
    );
    assert_eq!(
        pick(&l, "192.168.1.1:80", &none).as_deref(),
        Some("any-port-subnet")
    );
    assert_eq!(pick(&l, "8.8.8.8:53", &none).as_deref(), Some("default"));
    // No inspection is needed to tell these apart (a server-first protocol is not delayed).
    let c = candidates(&l, "10.96.0.10:3306".parse().unwrap());
    assert!(!needs_inspection(&l, &c));
}

#[test]
fn transport_and_application_protocols_split_a_port() {
    let tls = |app: &[&str]| ChainMatch {
        transport_protocol: Some(TransportProtocol::Tls),
        application_protocols: app.iter().map(|s| s.to_string()).collect(),
        ..port(8080)
    };
    let raw = |app: &[&str]| ChainMatch {
        transport_protocol: Some(TransportProtocol::RawBuffer),
        application_protocols: app.iter().map(|s| s.to_string()).collect(),
        ..port(8080)
    };
    let l = listener(
        vec![
            chain(
                "tls-http",
                tls(&["istio-http/1.0", "istio-http/1.1", "istio-h2"]),
            ),
            chain("tls-tcp", tls(&[])),
            chain("raw-http", raw(&["http/1.0", "http/1.1", "h2c"])),
            chain("raw-tcp", raw(&[])),
        ],
        false,
    );
    let c = candidates(&l, "10.0.0.1:8080".parse().unwrap());
    assert!(needs_inspection(&l, &c));
    let seen = |t, app: &[&str]| Seen {
        transport: Some(t),
        application_protocols: app.iter().map(|s| s.to_string()).collect(),
        ..Seen::default()
    };
    let at = "10.0.0.1:8080";
    use TransportProtocol::{RawBuffer, Tls};
    assert_eq!(
        pick(&l, at, &seen(Tls, &["istio-http/1.1", "istio", "http/1.1"])).as_deref(),
        Some("tls-http")
    );
    assert_eq!(
        pick(&l, at, &seen(Tls, &["istio-peer-exchange", "istio"])).as_deref(),
        Some("tls-tcp")
    );
    assert_eq!(
        pick(&l, at, &seen(RawBuffer, &["h2c"])).as_deref(),
        Some("raw-http")
    );
    assert_eq!(
        pick(&l, at, &seen(RawBuffer, &[])).as_deref(),
        Some("raw-tcp")
    );
    // A detection timeout leaves plaintext without protocol: opaque TCP.
    let timed_out = Seen {
        timed_out: true,
        ..seen(RawBuffer, &[])
    };
    assert_eq!(pick(&l, at, &timed_out).as_deref(), Some("raw-tcp"));
}

#[test]
fn strict_refuses_plaintext_and_server_names_prefer_exact() {
    let strict = listener(
        vec![chain(
            "mtls",
            ChainMatch {
                transport_protocol: Some(TransportProtocol::Tls),
                ..port(9080)
            },
        )],
        false,
    );
    let raw = Seen {
        transport: Some(TransportProtocol::RawBuffer),
        ..Seen::default()
    };
    assert_eq!(pick(&strict, "10.0.0.1:9080", &raw), None);

    let sni = |names: &[&str]| ChainMatch {
        server_names: names.iter().map(|s| s.to_string()).collect(),
        ..port(443)
    };
    let l = listener(
        vec![
            chain("wild", sni(&["*.example.com"])),
            chain("wilder", sni(&["*.com"])),
            chain("exact", sni(&["api.example.com"])),
            chain("no-name", port(443)),
        ],
        false,
    );
    let hello = |name: &str| Seen {
        transport: Some(TransportProtocol::Tls),
        sni: Some(name.into()),
        ..Seen::default()
    };
    assert_eq!(
        pick(&l, "1.2.3.4:443", &hello("api.example.com")).as_deref(),
        Some("exact")
    );
    assert_eq!(
        pick(&l, "1.2.3.4:443", &hello("www.example.com")).as_deref(),
        Some("wild")
    );
    assert_eq!(
        pick(&l, "1.2.3.4:443", &hello("a.org")).as_deref(),
        Some("no-name")
    );
}

#[test]
fn server_names_follow_envoy_wildcards() {
    assert_eq!(
        server_name_score("a.example.com", "a.example.com"),
        Some(usize::MAX)
    );
    // `*.` matches one label or more, never the bare suffix.
    assert!(server_name_score("*.example.com", "a.example.com").is_some());
    assert!(server_name_score("*.example.com", "a.b.example.com").is_some());
    assert_eq!(server_name_score("*.example.com", "example.com"), None);
    assert_eq!(server_name_score("*.example.com", ".example.com"), None);
    assert_eq!(server_name_score("*.example.com", "aexample.com"), None);
    // The longer suffix is the more specific.
    assert!(
        server_name_score("*.b.example.com", "a.b.example.com")
            > server_name_score("*.example.com", "a.b.example.com")
    );
    // Only a leading `*.` is a wildcard: others are names like any other.
    assert_eq!(server_name_score("*", "a.example.com"), None);
    assert_eq!(server_name_score("*w.example.com", "ww.example.com"), None);

    // A TLS route's chains: SNI sets, a wildcard, and the port's chain without names for
    // other names and for connections that are not TLS.
    let tls = |names: &[&str]| ChainMatch {
        server_names: names.iter().map(|s| s.to_string()).collect(),
        transport_protocol: Some(TransportProtocol::Tls),
        prefix_ranges: vec![cidr("10.96.0.40/32")],
        ..port(9443)
    };
    let l = listener(
        vec![
            chain("v1", tls(&["v1.echo.test", "echo.test"])),
            chain("v2", tls(&["*.echo.test"])),
            chain(
                "default",
                ChainMatch {
                    prefix_ranges: vec![cidr("10.96.0.40/32")],
                    ..port(9443)
                },
            ),
        ],
        false,
    );
    let at = "10.96.0.40:9443";
    let hello = |name: Option<&str>| Seen {
        transport: Some(TransportProtocol::Tls),
        sni: name.map(String::from),
        ..Seen::default()
    };
    let c = candidates(&l, at.parse().unwrap());
    assert!(needs_inspection(&l, &c));
    assert_eq!(
        pick(&l, at, &hello(Some("v1.echo.test"))).as_deref(),
        Some("v1")
    );
    assert_eq!(
        pick(&l, at, &hello(Some("echo.test"))).as_deref(),
        Some("v1")
    );
    assert_eq!(
        pick(&l, at, &hello(Some("v2.echo.test"))).as_deref(),
        Some("v2")
    );
    assert_eq!(
        pick(&l, at, &hello(Some("a.b.echo.test"))).as_deref(),
        Some("v2")
    );
    assert_eq!(
        pick(&l, at, &hello(Some("other.test"))).as_deref(),
        Some("default")
    );
    assert_eq!(pick(&l, at, &hello(None)).as_deref(), Some("default"));
    let plaintext = Seen {
        transport: Some(TransportProtocol::RawBuffer),
        ..Seen::default()
    };
    assert_eq!(pick(&l, at, &plaintext).as_deref(), Some("default"));
}
