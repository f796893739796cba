//! The capture as iptables rules: pure, from [`Capture`] to `iptables-restore` input for one
//! address family. Chains and order follow Istio's `istio-iptables`, so the rules read the
//! same to anyone who has debugged an Istio pod.
//!
//! ```text
//!  nat PREROUTING ─tcp─► ISTIO_INBOUND: excluded interfaces, tunnel and excluded ports RETURN
//!                                      └─► ISTIO_IN_REDIRECT ─► REDIRECT :15006
//!  nat OUTPUT ─tcp─► ISTIO_OUTPUT: excluded interfaces/ports RETURN; 127.0.0.6 (the proxy's
//!                    inbound source) RETURN; the proxy's uid/gid: to itself over lo ─►
//!                    ISTIO_IN_REDIRECT, else RETURN; others over lo RETURN; TCP DNS ─► :15053;
//!                    127.0.0.1 RETURN; included ports, excluded then included ranges
//!                    └─► ISTIO_REDIRECT ─► REDIRECT :15001
//!  nat OUTPUT ─udp─► ISTIO_OUTPUT_DNS: the proxy's own RETURN; to a resolver :53 ─► :15053
//!  raw OUTPUT/PREROUTING ─udp─► ISTIO_CT_*: conntrack zones keep the app↔proxy and
//!                    proxy↔resolver halves of a DNS exchange apart
//! ```

use std::fmt::Write as _;
use std::net::IpAddr;

use super::config::{Capture, Cidr, Selection};

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn has(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == (self == Self::V4)
    }

    fn localhost(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.1/32",
            Self::V6 => "::1/128",
        }
    }

    /// The source address the proxy uses towards the app (Istio's `127.0.0.6`).
    fn inbound_passthrough(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.6/32",
            Self::V6 => "::6/128",
        }
    }
}

/// Every chain the capture creates, by table: what `--cleanup` removes.
pub const CHAINS: [(&str, &[&str]); 2] = [
    (
        "nat",
        &[
            "ISTIO_INBOUND",
            "ISTIO_IN_REDIRECT",
            "ISTIO_OUTPUT",
            "ISTIO_REDIRECT",
            "ISTIO_OUTPUT_DNS",
        ],
    ),
    ("raw", &["ISTIO_CT_OUTPUT", "ISTIO_CT_PREROUTING"]),
];

/// One table's part of the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub chains: Vec<&'static str>,
    /// `-A CHAIN …` lines.
    pub rules: Vec<String>,
}

/// The rules of one family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

impl Ruleset {
    /// `iptables-restore --noflush` input: declaring a chain flushes it, so the capture's
    /// chains are rebuilt whole (the jumps into them are removed first: see `iptables.rs`).
    pub fn restore_input(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            let _ = writeln!(out, "*{}", table.name);
            for chain in &table.chains {
                let _ = writeln!(out, ":{chain} - [0:0]");
            }
            for rule in &table.rules {
                let _ = writeln!(out, "{rule}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

fn owners(c: &Capture) -> impl Iterator<Item = (&'static str, u32)> + '_ {
    c.proxy_uids
        .iter()
        .map(|u| ("--uid-owner", *u))
        .chain(c.proxy_gids.iter().map(|g| ("--gid-owner", *g)))
}

fn in_family(family: Family, cidrs: &[Cidr]) -> impl Iterator<Item = &Cidr> {
    cidrs.iter().filter(move |c| family.has(c.addr))
}

/// The rules for `family`.
pub fn ruleset(c: &Capture, family: Family) -> Ruleset {
    let mut nat = Table {
        name: "nat",
        chains: vec![
            "ISTIO_INBOUND",
            "ISTIO_IN_REDIRECT",
            "ISTIO_OUTPUT",
            "ISTIO_REDIRECT",
        ],
        rules: Vec::new(),
    };
    let r = &mut nat.rules;
    let inbound = c.include_inbound_ports != Selection::Only(Vec::new());
    r.push(format!(
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        c.inbound_port
    ));
    r.push(format!(
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        c.outbound_port
    ));

    // Inbound.
    if inbound {
        r.push("-A PREROUTING -p tcp -j ISTIO_INBOUND".into());
        for iface in &c.exclude_interfaces {
            r.push(format!("-A ISTIO_INBOUND -i {iface} -j RETURN"));
        }
        r.push(format!(
            "-A ISTIO_INBOUND -p tcp --dport {} -j RETURN",
            c.tunnel_port
        ));
        match &c.include_inbound_ports {
            Selection::All => {
                for port in &c.exclude_inbound_ports {
                    r.push(format!("-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN"));
                }
                r.push("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT".into());
            }
            Selection::Only(ports) => {
                for port in ports {
                    r.push(format!(
                        "-A ISTIO_INBOUND -p tcp --dport {port} -j ISTIO_IN_REDIRECT"
                    ));
                }
            }
        }
    }

    // Outbound.
    r.push("-A OUTPUT -p tcp -j ISTIO_OUTPUT".into());
    for iface in &c.exclude_interfaces {
        r.push(format!("-A ISTIO_OUTPUT -o {iface} -j RETURN"));
    }
    for port in &c.exclude_outbound_ports {
        r.push(format!("-A ISTIO_OUTPUT -p tcp --dport {port} -j RETURN"));
    }
    r.push(format!(
        "-A ISTIO_OUTPUT -s {} -o lo -j RETURN",
        family.inbound_passthrough()
    ));
    let localhost = family.localhost();
    for (owner, id) in owners(c) {
        // The proxy calling the pod's own address (an app reaching its own Service): that
        // is inbound traffic, captured as such.
        if inbound {
            r.push(format!(
                "-A ISTIO_OUTPUT ! -d {localhost} -o lo -p tcp ! --dport {} -m owner {owner} {id} -j ISTIO_IN_REDIRECT",
                c.tunnel_port
            ));
        }
        r.push(format!(
            "-A ISTIO_OUTPUT -o lo -m owner ! {owner} {id} -j RETURN"
        ));
        r.push(format!("-A ISTIO_OUTPUT -m owner {owner} {id} -j RETURN"));
    }
    let dns = c
        .dns
        .as_ref()
        .filter(|d| d.servers != Selection::Only(Vec::new()));
    let servers: Vec<Option<String>> = match dns.map(|d| &d.servers) {
        None => Vec::new(),
        Some(Selection::All) => vec![None],
        Some(Selection::Only(list)) => list
            .iter()
            .filter(|ip| family.has(**ip))
            .map(|ip| Some(ip.to_string()))
            .collect(),
    };
    let to = |server: &Option<String>, flag: &str| {
        server
            .as_ref()
            .map(|s| format!(" {flag} {s}"))
            .unwrap_or_default()
    };
    if let Some(d) = dns {
        for server in &servers {
            r.push(format!(
                "-A ISTIO_OUTPUT -p tcp --dport 53{} -j REDIRECT --to-ports {}",
                to(server, "-d"),
                d.port
            ));
        }
    }
    r.push(format!("-A ISTIO_OUTPUT -d {localhost} -j RETURN"));
    for port in &c.include_outbound_ports {
        r.push(format!(
            "-A ISTIO_OUTPUT -p tcp --dport {port} -j ISTIO_REDIRECT"
        ));
    }
    for cidr in in_family(family, &c.exclude_outbound) {
        r.push(format!("-A ISTIO_OUTPUT -d {cidr} -j RETURN"));
    }
    match &c.include_outbound {
        Selection::All => r.push("-A ISTIO_OUTPUT -j ISTIO_REDIRECT".into()),
        Selection::Only(list) => {
            for cidr in in_family(family, list) {
                r.push(format!("-A ISTIO_OUTPUT -d {cidr} -j ISTIO_REDIRECT"));
            }
        }
    }

    let mut tables = vec![nat];
    if let (Some(d), false) = (dns, servers.is_empty()) {
        // UDP DNS to the resolvers goes to the proxy, except the proxy's own queries.
        let nat = &mut tables[0];
        nat.chains.push("ISTIO_OUTPUT_DNS");
        nat.rules
            .push("-A OUTPUT -p udp -j ISTIO_OUTPUT_DNS".into());
        for (owner, id) in owners(c) {
            nat.rules.push(format!(
                "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner {owner} {id} -j RETURN"
            ));
        }
        for server in &servers {
            nat.rules.push(format!(
                "-A ISTIO_OUTPUT_DNS -p udp --dport 53{} -j REDIRECT --to-ports {}",
                to(server, "-d"),
                d.port
            ));
        }
        // Conntrack zones: the proxy's queries to the resolvers and their answers in zone 1,
        // the app's queries to the proxy and its answers in zone 2, so entries of the two
        // halves never match each other.
        let mut raw = Table {
            name: "raw",
            chains: vec!["ISTIO_CT_OUTPUT", "ISTIO_CT_PREROUTING"],
            rules: vec![
                "-A OUTPUT -p udp -j ISTIO_CT_OUTPUT".into(),
                "-A PREROUTING -p udp -j ISTIO_CT_PREROUTING".into(),
            ],
        };
        for (owner, id) in owners(c) {
            for (port, zone) in [("--dport 53", 1), (&*format!("--sport {}", d.port), 2)] {
                raw.rules.push(format!(
                    "-A ISTIO_CT_OUTPUT -p udp {port} -m owner {owner} {id} -j CT --zone {zone}"
                ));
                raw.rules.push(format!(
                    "-A ISTIO_CT_OUTPUT -p udp {port} -m owner {owner} {id} -j RETURN"
                ));
            }
        }
        for server in &servers {
            raw.rules.push(format!(
                "-A ISTIO_CT_OUTPUT -p udp --dport 53{} -j CT --zone 2",
                to(server, "-d")
            ));
            raw.rules.push(format!(
                "-A ISTIO_CT_PREROUTING -p udp --sport 53{} -j CT --zone 1",
                to(server, "-s")
            ));
        }
        tables.push(raw);
    }
    Ruleset { tables }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
