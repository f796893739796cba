//! Programs the rules: finds the iptables backend (nft or legacy) the node uses, removes an
//! earlier capture in one `iptables-restore` transaction, then loads the new rules in another.
//! The iptables tools do this well already; netlink by hand would buy nothing but risk.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::config::BackendChoice;
use super::rules::{CHAINS, Family, Ruleset};

/// Why the rules could not be programmed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error(
        "no iptables found: neither iptables-nft nor iptables-legacy (nor an iptables of the {0} backend) can be run"
    )]
    Missing(&'static str),
    #[error("`{command}` failed: {detail}")]
    Failed { command: String, detail: String },
}

/// An iptables implementation, and the program names it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub kind: &'static str,
    /// `iptables-nft`, `iptables-legacy`, or plain `iptables` when that is the backend's.
    base: String,
}

impl Backend {
    fn program(&self, family: Family, tool: &str) -> String {
        let name = match family {
            Family::V4 => self.base.clone(),
            Family::V6 => self.base.replacen("iptables", "ip6tables", 1),
        };
        // iptables-nft-save, iptables-save, ip6tables-legacy-restore, …
        match name.split_once('-') {
            Some((cmd, kind)) if !tool.is_empty() => format!("{cmd}-{kind}-{tool}"),
            _ if !tool.is_empty() => format!("{name}-{tool}"),
            _ => name,
        }
    }

    /// The rules of `table` as `iptables-save` prints them.
    fn save(&self, family: Family, table: &str) -> Result<String, IptablesError> {
        run(&self.program(family, "save"), &["-t", table], None)
    }

    /// Loads `input` with `iptables-restore --noflush`.
    fn restore(&self, family: Family, input: &str) -> Result<(), IptablesError> {
        run(
            &self.program(family, "restore"),
            &["--noflush"],
            Some(input),
        )
        .map(drop)
    }
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, IptablesError> {
    let command = format!("{program} {}", args.join(" "));
    let failed = |detail: String| IptablesError::Failed {
        command: command.clone(),
        detail,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Whether `program -V` runs and names `kind` (`nf_tables` or `legacy`).
fn speaks(program: &str, kind: &str) -> bool {
    run(program, &["-V"], None).is_ok_and(|v| v.contains(kind))
}

fn backend(kind: &'static str) -> Option<Backend> {
    let marker = if kind == "nft" { "nf_tables" } else { "legacy" };
    [format!("iptables-{kind}"), "iptables".to_string()]
        .into_iter()
        .find(|p| speaks(p, marker))
        .map(|base| Backend { kind, base })
}

/// How many rules `backend` holds in the tables the capture uses.
fn rule_count(backend: &Backend) -> usize {
    ["nat", "raw", "filter", "mangle"]
        .iter()
        .filter_map(|t| backend.save(Family::V4, t).ok())
        .map(|text| text.lines().filter(|l| l.starts_with("-A ")).count())
        .sum()
}

/// The backend to program: the one asked for, else the one that already holds rules (the
/// node's kube-proxy or CNI chose it), else nft where it exists, else legacy.
pub fn detect(choice: BackendChoice) -> Result<Backend, IptablesError> {
    match choice {
        BackendChoice::Nft => backend("nft").ok_or(IptablesError::Missing("nft")),
        BackendChoice::Legacy => backend("legacy").ok_or(IptablesError::Missing("legacy")),
        BackendChoice::Auto => {
            let (nft, legacy) = (backend("nft"), backend("legacy"));
            match (nft, legacy) {
                (Some(nft), Some(legacy)) => {
                    Ok(if rule_count(&legacy) > 0 && rule_count(&nft) == 0 {
                        legacy
                    } else {
                        nft
                    })
                }
                (Some(one), None) | (None, Some(one)) => Ok(one),
                (None, None) => Err(IptablesError::Missing("nft or legacy")),
            }
        }
    }
}

/// The `iptables-restore` input that removes a capture (jumps into its chains, then the
/// chains), from what `iptables-save` prints; `None` when there is none.
pub fn cleanup_input(saved: &[(&str, String)]) -> Option<String> {
    let mut out = String::new();
    for (table, text) in saved {
        let ours = CHAINS
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, chains)| *chains)
            .unwrap_or_default();
        let present: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(':')?.split_whitespace().next())
            .filter(|chain| ours.contains(chain))
            .collect();
        let jumps: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("-A "))
            .filter(|rule| {
                let chain = rule.split_whitespace().next().unwrap_or_default();
                !ours.contains(&chain)
                    && rule
                        .split_whitespace()
                        .skip_while(|w| *w != "-j")
                        .nth(1)
                        .is_some_and(|target| ours.contains(&target))
            })
            .map(|rule| format!("-D {rule}"))
            .collect();
        if present.is_empty() && jumps.is_empty() {
            continue;
        }
        out.push_str(&format!("*{table}\n"));
        for jump in jumps {
            out.push_str(&jump);
            out.push('\n');
        }
        for chain in &present {
            out.push_str(&format!("-F {chain}\n"));
        }
        for chain in &present {
            out.push_str(&format!("-X {chain}\n"));
        }
        out.push_str("COMMIT\n");
    }
    (!out.is_empty()).then_some(out)
}

/// Removes an earlier capture of `family`, if any.
pub fn cleanup(backend: &Backend, family: Family) -> Result<(), IptablesError> {
    let mut saved = Vec::new();
    for (table, _) in CHAINS {
        saved.push((table, backend.save(family, table)?));
    }
    match cleanup_input(&saved) {
        Some(input) => backend.restore(family, &input),
        None => Ok(()),
    }
}

/// Replaces any earlier capture of `family` with `rules`.
pub fn apply(backend: &Backend, family: Family, rules: &Ruleset) -> Result<(), IptablesError> {
    cleanup(backend, family)?;
    backend.restore(family, &rules.restore_input())
}
