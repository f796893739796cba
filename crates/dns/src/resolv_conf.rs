//! The pod's `/etc/resolv.conf`: the upstream servers queries are forwarded to, and the
//! search domains resolvers append (which the name table takes off again).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};

use crate::table::normalize;

/// The port of every `nameserver` (resolv.conf cannot name another).
pub const DNS_PORT: u16 = 53;

/// glibc's default `ndots`, and the most it accepts.
const DEFAULT_NDOTS: u8 = 1;
const MAX_NDOTS: u8 = 15;

/// What the proxy uses of a resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Upstream servers in file order (port 53).
    pub nameservers: Vec<SocketAddr>,
    /// Search domains in file order, lowercase, without trailing dot (`search`, or the
    /// older `domain`; the last of those lines wins, as in glibc).
    pub search: Vec<String>,
    /// `options ndots:N` (1 when absent, at most 15).
    pub ndots: u8,
}

/// Why a resolv.conf cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolvConfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "resolv.conf names no usable nameserver, so queries for names outside the mesh \
         cannot be forwarded{}",
        ignored_list(.ignored)
    )]
    NoNameserver {
        /// `nameserver` values that are not IP addresses.
        ignored: Vec<String>,
    },
}

fn ignored_list(ignored: &[String]) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!(" (not IP addresses: {})", ignored.join(", "))
    }
}

impl ResolvConf {
    /// Reads and parses the file at `path` (e.g. `/etc/resolv.conf`).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ResolvConfError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ResolvConfError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses resolv.conf text. Comments (`#` or `;`) and unknown lines and options are
    /// ignored; a `nameserver` that is not an IP address is skipped (as glibc does) and
    /// logged. Fails when no nameserver is left.
    pub fn parse(text: &str) -> Result<Self, ResolvConfError> {
        let mut nameservers = Vec::new();
        let mut ignored = Vec::new();
        let mut search = Vec::new();
        let mut ndots = DEFAULT_NDOTS;
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let Some(value) = words.next() else { continue };
                    match parse_nameserver(value) {
                        Some(server) => nameservers.push(server),
                        None => {
                            tracing::warn!(
                                nameserver = value,
                                "resolv.conf: not an IP address, skipped"
                            );
                            ignored.push(value.to_owned());
                        }
                    }
                }
                Some("search") | Some("domain") => {
                    search = words
                        .map(normalize)
                        .filter(|domain| !domain.is_empty())
                        .collect();
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:")
                            && let Ok(n) = n.parse::<u32>()
                        {
                            ndots = u8::try_from(n.min(u32::from(MAX_NDOTS))).unwrap_or(MAX_NDOTS);
                        }
                    }
                }
                _ => {}
            }
        }
        if nameservers.is_empty() {
            return Err(ResolvConfError::NoNameserver { ignored });
        }
        Ok(Self {
            nameservers,
            search,
            ndots,
        })
    }
}

/// An IPv4 or IPv6 address. An IPv6 zone is kept when numeric (`fe80::1%2`); a named one
/// (`fe80::1%eth0`) cannot be turned into an interface index here and is dropped, so such
/// a link-local server may be unreachable.
fn parse_nameserver(value: &str) -> Option<SocketAddr> {
    let (address, zone) = match value.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (value, None),
    };
    match address.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if zone.is_none() => Some(SocketAddr::new(v4.into(), DNS_PORT)),
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let scope = zone.and_then(|zone| zone.parse().ok()).unwrap_or(0);
            Some(SocketAddrV6::new(v6, DNS_PORT, 0, scope).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_kubernetes_resolv_conf() {
        let conf = ResolvConf::parse(
            "# written by the kubelet\n\
             search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\n\
             options ndots:5\n",
        )
        .expect("valid");
        assert_eq!(
            conf,
            ResolvConf {
                nameservers: vec![addr("10.96.0.10:53")],
                search: vec![
                    "default.svc.cluster.local".to_owned(),
                    "svc.cluster.local".to_owned(),
                    "cluster.local".to_owned()
                ],
                ndots: 5,
            }
        );
    }

    #[test]
    fn ipv6_servers_comments_options_and_unknown_lines() {
        let conf = ResolvConf::parse(
            "; comment\n\
             nameserver 10.0.0.1 # inline comment\n\
             \tnameserver   fd00::53\n\
             nameserver fe80::1%eth0\n\
             nameserver fe80::2%3\n\
             nameserver 10.0.0.2%eth0\n\
             sortlist 130.155.160.0/255.255.240.0\n\
             options rotate timeout:1 ndots:99 attempts:2\n\
             search Corp.Example.COM. .\n\
             lookup file bind\n",
        )
        .expect("valid");
        assert_eq!(
            conf.nameservers,
            vec![
                addr("10.0.0.1:53"),
                addr("[fd00::53]:53"),
                addr("[fe80::1]:53"),
                addr("[fe80::2%3]:53"),
            ]
        );
        assert_eq!(conf.search, vec!["corp.example.com".to_owned()]);
        assert_eq!(conf.ndots, 15, "capped as glibc does");
    }

    #[test]
    fn the_last_search_or_domain_line_wins_and_ndots_defaults_to_one() {
        let conf = ResolvConf::parse("search a.com b.com\ndomain c.com\nnameserver 1.1.1.1\n")
            .expect("valid");
        assert_eq!(conf.search, vec!["c.com".to_owned()]);
        assert_eq!(conf.ndots, 1);
        let conf = ResolvConf::parse("nameserver 1.1.1.1\noptions ndots:x\n").expect("valid");
        assert!(conf.search.is_empty());
        assert_eq!(conf.ndots, 1, "an invalid ndots is ignored");
    }

    #[test]
    fn a_file_without_a_usable_nameserver_is_an_error_saying_why() {
        let err = ResolvConf::parse("search cluster.local\n# nameserver 1.1.1.1\nnameserver\n")
            .expect_err("no nameserver");
        assert_eq!(
            err.to_string(),
            "resolv.conf names no usable nameserver, so queries for names outside the mesh \
             cannot be forwarded"
        );
        let err = ResolvConf::parse("nameserver dns.example.com\n").expect_err("not an address");
        assert!(
            err.to_string()
                .ends_with("(not IP addresses: dns.example.com)"),
            "{err}"
        );
    }

    #[test]
    fn read_names_the_file_it_cannot_read() {
        let err = ResolvConf::read("/nonexistent/resolv.conf").expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/resolv.conf: "),
            "{err}"
        );
    }
}
