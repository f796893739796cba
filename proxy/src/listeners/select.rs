//! Filter chain matching, in Envoy's order: each level keeps the most specific chains that
//! match and goes on with them only (no backtracking to a less specific branch); a connection
//! no chain takes goes to the default chain, or is closed.
//!
//! ```text
//!  destination port (exact │ none) ─► destination IP (longest prefix │ none)
//!    [these two need no bytes: candidates()]
//!  ─► server name (exact │ longest `*.` suffix │ none) ─► transport protocol (equal │ none)
//!  ─► application protocol (any in common │ none) ─► first left │ default chain │ close
//!    [these read what inspect.rs saw: choose()]
//! ```
//!
//! A listener has a handful of chains per destination port, and this runs once per
//! connection (never per request), so a scan is cheaper than maintaining an index.

use std::net::SocketAddr;

use super::inspect::Seen;
use crate::config::{ChainMatch, Listener};

/// The chains (by index) that match the connection's destination.
pub fn candidates(listener: &Listener, destination: SocketAddr) -> Vec<usize> {
    let matched = listener.chains.len() - usize::from(listener.has_default_chain);
    let chains = || {
        listener.chains[..matched]
            .iter()
            .enumerate()
            .map(|(i, c)| (i, &c.matcher))
    };
    let port = destination.port();
    let by_port: Vec<(usize, &ChainMatch)> =
        if chains().any(|(_, m)| m.destination_port == Some(port)) {
            chains()
                .filter(|(_, m)| m.destination_port == Some(port))
                .collect()
        } else {
            chains()
                .filter(|(_, m)| m.destination_port.is_none())
                .collect()
        };
    let ip = destination.ip();
    let longest = |m: &ChainMatch| {
        m.prefix_ranges
            .iter()
            .filter(|c| c.contains(ip))
            .map(|c| c.len)
            .max()
    };
    let best = by_port.iter().filter_map(|(_, m)| longest(m)).max();
    by_port
        .into_iter()
        .filter(|(_, m)| match best {
            Some(best) => longest(m) == Some(best),
            None => m.prefix_ranges.is_empty(),
        })
        .map(|(i, _)| i)
        .collect()
}

/// Whether telling `candidates` apart needs the connection's first bytes.
pub fn needs_inspection(listener: &Listener, candidates: &[usize]) -> bool {
    candidates
        .iter()
        .any(|&i| listener.chains[i].matcher.needs_inspection())
}

/// The chain the connection takes, from the candidates and what inspection saw.
pub fn choose(listener: &Listener, candidates: &[usize], seen: &Seen) -> Option<usize> {
    let matcher = |i: &usize| &listener.chains[*i].matcher;
    // Server names: exact beats the longest wildcard; chains without names otherwise.
    let sni = seen.sni.as_deref();
    let name_score = |m: &ChainMatch| -> Option<usize> {
        let sni = sni?;
        m.server_names
            .iter()
            .filter_map(|n| server_name_score(n, sni))
            .max()
    };
    let best = candidates
        .iter()
        .filter_map(|i| name_score(matcher(i)))
        .max();
    let level: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|i| match best {
            Some(best) => name_score(matcher(i)) == Some(best),
            None => matcher(i).server_names.is_empty(),
        })
        .collect();
    // Transport protocol.
    let exact: Vec<usize> = level
        .iter()
        .copied()
        .filter(|i| seen.transport.is_some() && matcher(i).transport_protocol == seen.transport)
        .collect();
    let level: Vec<usize> = if exact.is_empty() {
        level
            .into_iter()
            .filter(|i| matcher(i).transport_protocol.is_none())
            .collect()
    } else {
        exact
    };
    // Application protocols.
    let offered = |m: &ChainMatch| {
        m.application_protocols
            .iter()
            .any(|p| seen.application_protocols.iter().any(|s| s == p))
    };
    let exact = level.iter().copied().find(|i| offered(matcher(i)));
    exact
        .or_else(|| {
            level
                .iter()
                .copied()
                .find(|i| matcher(i).application_protocols.is_empty())
        })
        .or_else(|| listener.default_chain())
}

/// How specifically `name` (a chain's server name, lowercase) matches `sni`, as Envoy: an exact
/// name beats every wildcard; `*.example.com` matches one or more labels before
/// `.example.com` (not `example.com` itself), and a longer suffix beats a shorter one. Only a
/// leading `*.` is a wildcard: Envoy takes any other name (`*`, `*w.example.com`) literally.
fn server_name_score(name: &str, sni: &str) -> Option<usize> {
    if name == sni {
        return Some(usize::MAX);
    }
    let suffix = name.strip_prefix('*')?;
    // At least one character before the suffix: `*.example.com` does not match `.example.com`.
    (suffix.starts_with('.') && sni.len() > suffix.len() && sni.ends_with(suffix))
        .then_some(suffix.len())
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
