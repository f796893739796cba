//! The rules for combinations of `weft-proxy init` flags (as the injector derives them from
//! Istio's annotations), what bad flags are told, and what cleanup removes.

use std::net::IpAddr;

use clap::Parser;

use super::*;
use crate::capture::config::{FlagError, InitArgs};
use crate::capture::iptables::cleanup_input;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    init: InitArgs,
}

fn capture(flags: &[&str], resolvers: &[&str]) -> Result<Capture, FlagError> {
    let cli = Cli::try_parse_from(std::iter::once("init").chain(flags.iter().copied()))
        .expect("flags parse");
    let resolvers: Vec<IpAddr> = resolvers.iter().map(|r| r.parse().expect("ip")).collect();
    Capture::from_args(&cli.init, &resolvers)
}

fn nat(flags: &[&str], family: Family) -> Vec<String> {
    let c = capture(flags, &["198.18.1.254"]).expect("capture");
    ruleset(&c, family).tables[0].rules.clone()
}

#[test]
fn defaults_are_istios_rules() {
    let c = capture(&[], &[]).expect("defaults");
    let rules = ruleset(&c, Family::V4);
    assert_eq!(
        rules.restore_input(),
        "*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
"
    );
    let v6 = ruleset(&c, Family::V6).restore_input();
    assert!(
        v6.contains("-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN"),
        "{v6}"
    );
    assert!(v6.contains("-A ISTIO_OUTPUT -d ::1/128 -j RETURN"), "{v6}");
}

#[test]
fn outbound_ranges_split_by_family_and_exclusions_come_first() {
    // traffic.sidecar.istio.io/includeOutboundIPRanges and excludeOutboundIPRanges.
    let flags = [
        "-i",
        "10.96.0.0/12,fd00::/108",
        "-x",
        "10.96.0.10/32,169.254.169.254",
    ];
    let v4 = nat(&flags, Family::V4);
    let tail: Vec<&str> = v4.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "-A ISTIO_OUTPUT -d 10.96.0.10/32 -j RETURN",
            "-A ISTIO_OUTPUT -d 169.254.169.254/32 -j RETURN",
            "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
        ]
    );
    assert!(!v4.iter().any(|r| r == "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"));
    let v6 = nat(&flags, Family::V6);
    assert_eq!(
        v6.last().map(String::as_str),
        Some("-A ISTIO_OUTPUT -d fd00::/108 -j ISTIO_REDIRECT")
    );
    assert!(!v6.iter().any(|r| r.contains("10.96.")));

    // No outbound capture at all: `includeOutboundIPRanges: ""`.
    let none = nat(&["-i", ""], Family::V4);
    assert!(
        !none.iter().any(|r| r.ends_with("-j ISTIO_REDIRECT")),
        "{none:?}"
    );
}

#[test]
fn inbound_ports_listed_or_none() {
    // traffic.sidecar.istio.io/includeInboundPorts: "9080,9090".
    let listed = nat(&["-b", "9080,9090"], Family::V4);
    let inbound: Vec<&str> = listed
        .iter()
        .filter(|r| r.starts_with("-A ISTIO_INBOUND"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        inbound,
        [
            "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN",
            "-A ISTIO_INBOUND -p tcp --dport 9080 -j ISTIO_IN_REDIRECT",
            "-A ISTIO_INBOUND -p tcp --dport 9090 -j ISTIO_IN_REDIRECT",
        ]
    );
    // includeInboundPorts: "": nothing inbound is captured, and the proxy calling its own pod
    // is not turned into inbound traffic either.
    let none = nat(&["-b", ""], Family::V4);
    assert!(
        !none.iter().any(|r| r.contains("ISTIO_INBOUND")),
        "{none:?}"
    );
    assert!(
        !none.iter().any(|r| r.contains("-j ISTIO_IN_REDIRECT")),
        "{none:?}"
    );
    // excludeInboundPorts adds to the proxy's own ports.
    let excluded = nat(&["-d", "15090,15021,15020,8443"], Family::V4);
    assert!(excluded.contains(&"-A ISTIO_INBOUND -p tcp --dport 8443 -j RETURN".to_string()));
}

#[test]
fn outbound_ports_interfaces_and_ids() {
    let rules = nat(
        &[
            "-o",
            "3306,6379",
            "-q",
            "9999",
            "-c",
            "net1",
            "-u",
            "1337",
            "-g",
            "1338",
        ],
        Family::V4,
    );
    for expected in [
        "-A ISTIO_INBOUND -i net1 -j RETURN",
        "-A ISTIO_OUTPUT -o net1 -j RETURN",
        "-A ISTIO_OUTPUT -p tcp --dport 3306 -j RETURN",
        "-A ISTIO_OUTPUT -p tcp --dport 6379 -j RETURN",
        "-A ISTIO_OUTPUT -p tcp --dport 9999 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1338 -j RETURN",
    ] {
        assert!(
            rules.iter().any(|r| r == expected),
            "{expected} in {rules:#?}"
        );
    }
    // Excluded ports and interfaces come before anything that could capture them.
    let position = |needle: &str| rules.iter().position(|r| r == needle).expect(needle);
    assert!(
        position("-A ISTIO_OUTPUT -p tcp --dport 3306 -j RETURN")
            < position("-A ISTIO_OUTPUT -p tcp --dport 9999 -j ISTIO_REDIRECT")
    );
}

#[test]
fn dns_capture_to_the_resolvers_or_to_all() {
    let c = capture(&["--redirect-dns"], &["198.18.1.254", "fd00::a"]).expect("dns");
    let v4 = ruleset(&c, Family::V4);
    let text = v4.restore_input();
    for expected in [
        "-A ISTIO_OUTPUT -p tcp --dport 53 -d 198.18.1.254 -j REDIRECT --to-ports 15053",
        "-A OUTPUT -p udp -j ISTIO_OUTPUT_DNS",
        "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 198.18.1.254 -j REDIRECT --to-ports 15053",
        "*raw",
        "-A ISTIO_CT_OUTPUT -p udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1",
        "-A ISTIO_CT_OUTPUT -p udp --sport 15053 -m owner --uid-owner 1337 -j CT --zone 2",
        "-A ISTIO_CT_OUTPUT -p udp --dport 53 -d 198.18.1.254 -j CT --zone 2",
        "-A ISTIO_CT_PREROUTING -p udp --sport 53 -s 198.18.1.254 -j CT --zone 1",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    assert!(!text.contains("fd00::a"), "{text}");
    // The proxy's own TCP queries return before the DNS redirect.
    let rules = &v4.tables[0].rules;
    let at = |needle: &str| rules.iter().position(|r| r.contains(needle)).expect(needle);
    assert!(at("-m owner --uid-owner 1337 -j RETURN") < at("--dport 53 -d 198.18.1.254"));

    let all = capture(&["--redirect-dns", "--capture-all-dns"], &[]).expect("all");
    let text = ruleset(&all, Family::V4).restore_input();
    assert!(
        text.contains("-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-ports 15053"),
        "{text}"
    );
    // Asked to capture the resolvers' queries, with none found: nothing is captured.
    let none = capture(&["--redirect-dns"], &[]).expect("no resolvers");
    let text = ruleset(&none, Family::V4).restore_input();
    assert!(!text.contains("53"), "{text}");
}

#[test]
fn bad_flags_name_the_flag() {
    let err = |flags: &[&str]| capture(flags, &[]).expect_err("bad flags").to_string();
    assert_eq!(
        err(&["-i", "10.0.0.0/40"]),
        "--istio-service-cidr: \"10.0.0.0/40\": prefix length must be 0-32"
    );
    assert_eq!(
        err(&["-x", "ten.0.0.0/8"]),
        "--istio-service-exclude-cidr: \"ten.0.0.0/8\" is not an address or CIDR"
    );
    assert_eq!(
        err(&["-b", "80,http"]),
        "--istio-inbound-ports: \"http\" is not a port (1-65535)"
    );
    assert_eq!(
        err(&["-o", "0"]),
        "--istio-local-outbound-ports-exclude: \"0\" is not a port (1-65535)"
    );
    assert!(err(&["-m", "TPROXY"]).starts_with("--istio-inbound-interception-mode"));
    assert!(err(&["-u", ""]).starts_with("--proxy-uid: at least one user id"));
    assert!(err(&["-g", "wheel"]).starts_with("--proxy-gid"));
    assert!(err(&["-c", "eth0;reboot"]).starts_with("--istio-exclude-interfaces"));
}

#[test]
fn cleanup_removes_jumps_and_chains_and_nothing_else() {
    let saved = "*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
";
    assert_eq!(
        cleanup_input(&[("nat", saved.to_string()), ("raw", String::new())]).as_deref(),
        Some(
            "*nat
-D OUTPUT -p tcp -j ISTIO_OUTPUT
-F ISTIO_OUTPUT
-F ISTIO_REDIRECT
-X ISTIO_OUTPUT
-X ISTIO_REDIRECT
COMMIT
"
        )
    );
    assert_eq!(
        cleanup_input(&[("nat", "*nat\n-A PREROUTING -j KUBE-SERVICES\n".into())]),
        None
    );
}
