//! `weftctl proxy-config log <proxy> [--level http:debug,router:warning] [--reset]`: a proxy's
//! log levels, read and changed through its admin port's `/logging` (Envoy's endpoint, as
//! istioctl's `proxy-config log` uses it).

use std::time::Duration;

use crate::remote::{self, KubeArgs};

use super::ConfigError;

#[derive(clap::Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub target: super::Target,
    /// Levels to set: `<level>` for every logger, or `<logger>:<level>` for one, comma
    /// separated (e.g. `http:debug,router:warning`). Levels: trace, debug, info, warning,
    /// error, critical, off. Without it (and `--reset`) the levels are only shown.
    #[arg(long, value_name = "LEVELS")]
    pub level: Option<String>,
    /// Put every logger back at the level the proxy started with (its `--log`), before
    /// `--level` is applied.
    #[arg(long)]
    pub reset: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// How long to wait for each answer.
    #[arg(long, default_value = "10s", value_parser = remote::parse_timeout)]
    pub timeout: Duration,
}

/// The `/logging` path for `--level` and `--reset`; `None` when nothing is to change.
pub fn logging_path(level: Option<&str>, reset: bool) -> Result<Option<String>, ConfigError> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if reset {
        query.append_pair("reset", "");
    }
    let mut any = reset;
    for entry in level
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (logger, level) = match entry.split_once(':') {
            Some((logger, level)) => (logger.trim(), level.trim()),
            None => ("level", entry),
        };
        if logger.is_empty() || level.is_empty() {
            return Err(ConfigError::BadLevel(entry.to_string()));
        }
        query.append_pair(logger, level);
        any = true;
    }
    Ok(any.then(|| format!("/logging?{}", query.finish())))
}

/// Shows, or changes then shows, the proxy's log levels.
pub async fn run(args: &LogArgs) -> Result<(), ConfigError> {
    let admin = args.target.admin(&args.kube).await?;
    let body = match logging_path(args.level.as_deref(), args.reset)? {
        Some(path) => admin.post(&path, args.timeout).await?,
        None => admin.get("/logging", args.timeout).await?,
    };
    print!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_become_one_query_reset_first() {
        assert_eq!(logging_path(None, false).unwrap(), None);
        assert_eq!(
            logging_path(Some("http:debug, router:warning"), false).unwrap(),
            Some("/logging?http=debug&router=warning".to_string())
        );
        assert_eq!(
            logging_path(Some("debug"), true).unwrap(),
            Some("/logging?reset=&level=debug".to_string())
        );
        assert_eq!(
            logging_path(None, true).unwrap(),
            Some("/logging?reset=".to_string())
        );
        let err = logging_path(Some("http:"), false).unwrap_err();
        assert!(err.to_string().contains("\"http:\""), "{err}");
    }
}
