//! RBAC permissions (what is accessed) and principals (who accesses), and how each matches a request.
//!
//! ```text
//!  Permission: any │ and/or/not │ header │ url_path │ uri_template │ destination_ip/port/port_range
//!              │ metadata │ requested_server_name
//!  Principal:  any │ and/or/not │ authenticated (mTLS peer) │ source_ip/direct_remote_ip/remote_ip
//!              │ header │ url_path │ metadata
//!  HTTP-only kinds (header, url_path, uri_template, metadata) never match a network evaluation.
//! ```

use std::net::IpAddr;

use super::{Facts, MetadataMatch, UriTemplate};
use crate::config::{HeaderMatch, StringMatch};

/// What a request accesses (Envoy `Permission`).
#[derive(Debug)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    /// A request header or `:authority`/`:method`/`:path`/`:scheme` (multiple values joined with `,`).
    Header(HeaderMatch),
    /// The path without query.
    UrlPath(StringMatch),
    UriTemplate(UriTemplate),
    DestinationIp(Cidr),
    DestinationPort(u16),
    /// `[start, end)`.
    DestinationPortRange {
        start: u16,
        end: u32,
    },
    Metadata(MetadataMatch),
    /// The TLS SNI (empty without one).
    RequestedServerName(StringMatch),
}

/// Who accesses (Envoy `Principal`).
#[derive(Debug)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// An mTLS peer; with a matcher, one whose principal (SPIFFE id) matches it.
    Authenticated(Option<StringMatch>),
    /// The connection's peer.
    SourceIp(Cidr),
    DirectRemoteIp(Cidr),
    /// The request's remote address: the peer too (forwarded addresses are not trusted).
    RemoteIp(Cidr),
    Header(HeaderMatch),
    UrlPath(StringMatch),
    Metadata(MetadataMatch),
}

/// An address range (`CidrRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Permission {
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::And(all) => all.iter().all(|p| p.matches(f)),
            Self::Or(any) => any.iter().any(|p| p.matches(f)),
            Self::Not(p) => !p.matches(f),
            Self::Header(h) => f.request.is_some_and(|r| h.matches(&r)),
            Self::UrlPath(m) => f.request.is_some_and(|r| m.matches(r.path)),
            Self::UriTemplate(t) => f.request.is_some_and(|r| t.matches(r.path)),
            Self::DestinationIp(c) => c.contains(f.conn.local.ip()),
            Self::DestinationPort(p) => f.conn.local.port() == *p,
            Self::DestinationPortRange { start, end } => {
                let port = f.conn.local.port();
                *start <= port && u32::from(port) < *end
            }
            Self::Metadata(m) => f.request.is_some() && m.matches(f.authn),
            Self::RequestedServerName(m) => m.matches(f.conn.sni.unwrap_or("")),
        }
    }
}

impl Principal {
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::And(all) => all.iter().all(|p| p.matches(f)),
            Self::Or(any) => any.iter().any(|p| p.matches(f)),
            Self::Not(p) => !p.matches(f),
            Self::Authenticated(m) => match (f.conn.principal, m) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(principal), Some(m)) => m.matches(principal),
            },
            Self::SourceIp(c) | Self::DirectRemoteIp(c) | Self::RemoteIp(c) => {
                c.contains(f.remote_ip())
            }
            Self::Header(h) => f.request.is_some_and(|r| h.matches(&r)),
            Self::UrlPath(m) => f.request.is_some_and(|r| m.matches(r.path)),
            Self::Metadata(m) => f.request.is_some() && m.matches(f.authn),
        }
    }
}

impl Cidr {
    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.len)
            }
            _ => false,
        }
    }
}

/// Whether the first `len` of `bits` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, bits: u32, len: u8) -> bool {
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (a >> shift) == (b >> shift)
}
