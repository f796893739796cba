//! `weft-proxy init`'s flags (Istio's `istio-iptables` names and short letters, so an
//! injector template written for Istio drives it unchanged) and the typed capture settings
//! they parse into, rejecting bad input with the flag's name.

use std::net::IpAddr;

use clap::{Args, ValueEnum};

/// Flags of `weft-proxy init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Port outbound TCP is redirected to (the proxy's outbound listener).
    #[arg(short = 'p', long = "envoy-port", default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port inbound TCP is redirected to (the proxy's inbound listener).
    #[arg(short = 'z', long = "inbound-capture-port", default_value_t = 15006)]
    pub inbound_port: u16,
    /// The proxy's user ids (comma-separated): their traffic is never captured.
    #[arg(short = 'u', long = "proxy-uid", default_value = "1337")]
    pub proxy_uid: String,
    /// The proxy's group ids (comma-separated); the user ids when empty.
    #[arg(short = 'g', long = "proxy-gid", default_value = "")]
    pub proxy_gid: String,
    /// How inbound traffic is captured; only REDIRECT is supported.
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        default_value = "REDIRECT"
    )]
    pub inbound_mode: String,
    /// Outbound destinations to capture: `*` or comma-separated CIDRs; empty captures none.
    #[arg(short = 'i', long = "istio-service-cidr", default_value = "*")]
    pub include_outbound_ranges: String,
    /// Outbound destinations never captured (comma-separated CIDRs).
    #[arg(short = 'x', long = "istio-service-exclude-cidr", default_value = "")]
    pub exclude_outbound_ranges: String,
    /// Inbound ports to capture: `*` or comma-separated ports; empty captures none.
    #[arg(short = 'b', long = "istio-inbound-ports", default_value = "*")]
    pub include_inbound_ports: String,
    /// Inbound ports never captured when capturing `*` (the proxy's own: metrics, health).
    #[arg(
        short = 'd',
        long = "istio-local-exclude-ports",
        default_value = "15090,15021,15020"
    )]
    pub exclude_inbound_ports: String,
    /// Outbound ports always captured, whatever the destination ranges say.
    #[arg(short = 'q', long = "istio-local-outbound-ports", default_value = "")]
    pub include_outbound_ports: String,
    /// Outbound ports never captured.
    #[arg(
        short = 'o',
        long = "istio-local-outbound-ports-exclude",
        default_value = ""
    )]
    pub exclude_outbound_ports: String,
    /// Interfaces whose traffic is never captured (comma-separated).
    #[arg(short = 'c', long = "istio-exclude-interfaces", default_value = "")]
    pub exclude_interfaces: String,
    /// The mesh's tunnel port, never captured inbound.
    #[arg(short = 'e', long = "inbound-tunnel-port", default_value_t = 15008)]
    pub tunnel_port: u16,
    /// Capture DNS (UDP and TCP port 53) to the proxy's DNS port.
    #[arg(long, env = "ISTIO_META_DNS_CAPTURE", default_value_t = false)]
    pub redirect_dns: bool,
    /// The proxy's DNS port.
    #[arg(long, default_value_t = 15053)]
    pub dns_port: u16,
    /// Capture DNS to any server, not only those in resolv.conf.
    #[arg(long, env = "ISTIO_META_DNS_CAPTURE_ALL", default_value_t = false)]
    pub capture_all_dns: bool,
    /// Where the pod's resolvers are listed (for DNS capture).
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: std::path::PathBuf,
    /// IPv6 rules too: `auto` when the pod has a global IPv6 address.
    #[arg(long, value_enum, default_value_t = Switch::Auto)]
    pub ipv6: Switch,
    /// The iptables backend: `auto` uses the one the host already has rules in.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub iptables_backend: BackendChoice,
    /// Print the rules instead of applying them.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the rules instead of adding them.
    #[arg(long)]
    pub cleanup: bool,
}

/// On, off, or decided from the pod's interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    Auto,
    True,
    False,
}

/// Which iptables implementation to program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Auto,
    Nft,
    Legacy,
}

/// A destination range, `addr/len` (a bare address is a host route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Everything or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    All,
    Only(Vec<T>),
}

/// The capture to program, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub tunnel_port: u16,
    pub proxy_uids: Vec<u32>,
    pub proxy_gids: Vec<u32>,
    pub include_outbound: Selection<Cidr>,
    pub exclude_outbound: Vec<Cidr>,
    pub include_inbound_ports: Selection<u16>,
    pub exclude_inbound_ports: Vec<u16>,
    pub include_outbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_interfaces: Vec<String>,
    /// DNS capture, when on.
    pub dns: Option<Dns>,
}

/// DNS capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub port: u16,
    /// The servers whose queries are captured: any (`--capture-all-dns`), or the pod's
    /// resolvers (none found: no DNS is captured).
    pub servers: Selection<IpAddr>,
}

/// A flag with a value `weft-proxy init` cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub reason: String,
}

fn bad(flag: &'static str, reason: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        reason: reason.into(),
    }
}

fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn ports(flag: &'static str, value: &str) -> Result<Vec<u16>, FlagError> {
    items(value)
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(flag, format!("{p:?} is not a port (1-65535)"))),
            Ok(port) => Ok(port),
        })
        .collect()
}

fn ids(flag: &'static str, value: &str) -> Result<Vec<u32>, FlagError> {
    items(value)
        .map(|id| {
            id.parse::<u32>()
                .map_err(|_| bad(flag, format!("{id:?} is not a numeric id")))
        })
        .collect()
}

fn cidrs(flag: &'static str, value: &str) -> Result<Vec<Cidr>, FlagError> {
    items(value)
        .map(|text| {
            let (addr, len) = text.split_once('/').unwrap_or((text, ""));
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| bad(flag, format!("{text:?} is not an address or CIDR")))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = if len.is_empty() {
                max
            } else {
                len.parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| bad(flag, format!("{text:?}: prefix length must be 0-{max}")))?
            };
            Ok(Cidr { addr, len })
        })
        .collect()
}

fn selection<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<Vec<T>, FlagError>,
) -> Result<Selection<T>, FlagError> {
    if value.trim() == "*" {
        Ok(Selection::All)
    } else {
        parse(value).map(Selection::Only)
    }
}

impl Capture {
    /// Checks the flags; `resolvers` are the pod's name servers (for DNS capture).
    pub fn from_args(args: &InitArgs, resolvers: &[IpAddr]) -> Result<Self, FlagError> {
        if !args.inbound_mode.eq_ignore_ascii_case("REDIRECT") {
            return Err(bad(
                "istio-inbound-interception-mode",
                format!("{:?} is not supported (only REDIRECT)", args.inbound_mode),
            ));
        }
        for (flag, port) in [
            ("envoy-port", args.outbound_port),
            ("inbound-capture-port", args.inbound_port),
            ("dns-port", args.dns_port),
        ] {
            if port == 0 {
                return Err(bad(flag, "0 is not a port"));
            }
        }
        let proxy_uids = ids("proxy-uid", &args.proxy_uid)?;
        if proxy_uids.is_empty() {
            return Err(bad(
                "proxy-uid",
                "at least one user id is needed, or the proxy's own traffic loops back into it",
            ));
        }
        let proxy_gids = match ids("proxy-gid", &args.proxy_gid)? {
            gids if gids.is_empty() => proxy_uids.clone(),
            gids => gids,
        };
        let exclude_interfaces = items(&args.exclude_interfaces)
            .map(|name| {
                if name.len() < 16
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
                {
                    Ok(name.to_string())
                } else {
                    Err(bad(
                        "istio-exclude-interfaces",
                        format!("{name:?} is not an interface name"),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            outbound_port: args.outbound_port,
            inbound_port: args.inbound_port,
            tunnel_port: args.tunnel_port,
            proxy_uids,
            proxy_gids,
            include_outbound: selection(&args.include_outbound_ranges, |v| {
                cidrs("istio-service-cidr", v)
            })?,
            exclude_outbound: cidrs("istio-service-exclude-cidr", &args.exclude_outbound_ranges)?,
            include_inbound_ports: selection(&args.include_inbound_ports, |v| {
                ports("istio-inbound-ports", v)
            })?,
            exclude_inbound_ports: ports("istio-local-exclude-ports", &args.exclude_inbound_ports)?,
            include_outbound_ports: ports(
                "istio-local-outbound-ports",
                &args.include_outbound_ports,
            )?,
            exclude_outbound_ports: ports(
                "istio-local-outbound-ports-exclude",
                &args.exclude_outbound_ports,
            )?,
            exclude_interfaces,
            dns: args.redirect_dns.then(|| Dns {
                port: args.dns_port,
                servers: if args.capture_all_dns {
                    Selection::All
                } else {
                    Selection::Only(resolvers.to_vec())
                },
            }),
        })
    }
}

/// The `nameserver` addresses of a resolv.conf.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next()?.parse().ok())
                .flatten()
        })
        .collect()
}
