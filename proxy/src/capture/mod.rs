//! Transparent capture: `weft-proxy init`, run in the pod's network namespace before the app
//! (the injected init container), makes the kernel send the pod's TCP traffic through the
//! proxy, as Istio's `istio-iptables` does: outbound to 15001, inbound to 15006, DNS to 15053
//! when asked, except the proxy's own traffic (uid/gid 1337) and what the flags exclude.
//!
//! ```text
//!  flags (config.rs) ─► Capture ─► rules.rs: iptables-restore text per family
//!        ─► --dry-run: printed   ─► else iptables.rs: backend detected, old capture
//!                                   removed, new one loaded (--cleanup: only removed)
//! ```

pub mod config;
pub mod iptables;
pub mod rules;

use std::net::IpAddr;

pub use config::InitArgs;
use config::{Capture, FlagError, Switch, nameservers};
use iptables::IptablesError;
use rules::{Family, ruleset};

/// Why `weft-proxy init` failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Iptables(#[from] IptablesError),
}

/// Whether the pod has a global IPv6 address (`/proc/net/if_inet6`, scope 00, not `lo`).
fn has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|text| {
        text.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 6 && fields[3] == "00" && fields[5] != "lo"
        })
    })
}

/// What the flags ask for, as the families' rules (IPv4 always; IPv6 when on).
pub fn plan(args: &InitArgs) -> Result<Vec<(Family, rules::Ruleset)>, CaptureError> {
    let resolvers: Vec<IpAddr> = if args.redirect_dns && !args.capture_all_dns {
        let text =
            std::fs::read_to_string(&args.resolv_conf).map_err(|source| CaptureError::Read {
                path: args.resolv_conf.display().to_string(),
                source,
            })?;
        nameservers(&text)
    } else {
        Vec::new()
    };
    let capture = Capture::from_args(args, &resolvers)?;
    let ipv6 = match args.ipv6 {
        Switch::True => true,
        Switch::False => false,
        Switch::Auto => has_ipv6(),
    };
    let mut families = vec![(Family::V4, ruleset(&capture, Family::V4))];
    if ipv6 {
        families.push((Family::V6, ruleset(&capture, Family::V6)));
    }
    Ok(families)
}

/// `weft-proxy init`: prints the rules, then (unless `--dry-run`) programs them, or with
/// `--cleanup` removes them.
pub fn run(args: &InitArgs) -> Result<(), CaptureError> {
    if args.cleanup {
        let backend = iptables::detect(args.iptables_backend)?;
        for family in [Family::V4, Family::V6] {
            if family == Family::V4 || has_ipv6() || args.ipv6 == Switch::True {
                iptables::cleanup(&backend, family)?;
            }
        }
        println!("capture removed ({} backend)", backend.kind);
        return Ok(());
    }
    let families = plan(args)?;
    for (family, rules) in &families {
        println!("# {family:?} rules\n{}", rules.restore_input());
    }
    if args.dry_run {
        return Ok(());
    }
    let backend = iptables::detect(args.iptables_backend)?;
    for (family, rules) in &families {
        iptables::apply(&backend, *family, rules)?;
    }
    println!("capture programmed ({} backend)", backend.kind);
    Ok(())
}
