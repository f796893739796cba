//! Command-line flags and environment variables of `weft-controller`, all in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Weft's control plane: reads Istio configuration and serves Envoy xDS (ADS) to proxies.
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-controller", version, about, long_about = None)]
pub struct Args {
    /// Directory of Istio YAML files (`*.yaml`, `*.yml`, not recursive) to serve (local mode).
    #[arg(long, env = "WEFT_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: PathBuf,

    /// Address of the ADS gRPC server (plaintext, Istio's port 15010).
    #[arg(long, env = "WEFT_XDS_ADDRESS", default_value = "0.0.0.0:15010")]
    pub xds_address: SocketAddr,

    /// Address of the debug HTTP server (`/ready`, `/debug/syncz`, `/debug/configz`).
    #[arg(long, env = "WEFT_DEBUG_ADDRESS", default_value = "127.0.0.1:15014")]
    pub debug_address: SocketAddr,

    /// Cluster DNS domain used to resolve short host names (`reviews` → `reviews.<ns>.svc.<domain>`).
    #[arg(long, env = "WEFT_DOMAIN", default_value = "cluster.local")]
    pub domain: String,

    /// How long to wait for more file changes before reloading the config directory,
    /// e.g. `100ms`, `1s`.
    #[arg(long, env = "WEFT_DEBOUNCE", default_value = "100ms", value_parser = parse_duration)]
    pub debounce: Duration,

    /// Log filter in `tracing_subscriber::EnvFilter` syntax (`info`, `weft_controller=debug`, …).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    pub log: String,
}

/// Parses a duration such as `100ms`, `2s`, `1m` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 100ms, 2s, 1m"))?;
    let seconds = match unit.trim() {
        "" | "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "us" | "µs" => value / 1_000_000.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s or m"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn defaults() {
        let args =
            Args::try_parse_from(["weft-controller", "--config-dir", "/tmp/x"]).expect("parses");
        assert_eq!(args.xds_address.port(), 15010);
        assert_eq!(args.debug_address.to_string(), "127.0.0.1:15014");
        assert_eq!(args.domain, "cluster.local");
        assert_eq!(args.debounce, Duration::from_millis(100));
    }
}
