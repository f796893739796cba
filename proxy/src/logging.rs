//! Log levels changed at run time (admin `/logging`): Envoy's logger names mapped onto the
//! proxy's `tracing` targets, applied by swapping the `EnvFilter` of a reloadable layer.
//!
//! ```text
//!  --log "info,weft_proxy::upstream=debug" ─► Levels (one level per logger, paths, the rest)
//!  POST /logging?level=debug | ?http=debug | ?paths=weft_proxy::upstream::pool:trace
//!     ─► Levels::apply (all checked first: nothing changes on a 400) ─► filter() ─► reload
//! ```
//!
//! A logger's level covers its targets (module paths) and what is under them; a more
//! specific target (another logger's, or a `paths` entry) wins, as in `EnvFilter`. `misc` is
//! the default for every target no logger names (other crates). `level=` sets every logger
//! and drops the `paths` entries, as Envoy's does.

use parking_lot::Mutex;
use tracing_subscriber::EnvFilter;

/// Envoy's logger names, and the `tracing` targets each covers.
pub const LOGGERS: &[(&str, &[&str])] = &[
    ("admin", &["weft_proxy::admin"]),
    ("config", &["weft_proxy::config", "weft_xds"]),
    (
        "connection",
        &["weft_proxy::listeners", "weft_proxy::tcp", "weft_net"],
    ),
    ("dns", &["weft_proxy::dns", "weft_dns"]),
    (
        "filter",
        &[
            "weft_proxy::http::filters",
            "weft_proxy::http::cors",
            "weft_proxy::http::fault",
            "weft_proxy::http::rate_limit",
            "weft_proxy::http::mirror",
        ],
    ),
    ("grpc", &["tonic"]),
    ("hc", &["weft_proxy::app_health"]),
    ("http", &["weft_proxy::http"]),
    ("http2", &["h2"]),
    ("jwt", &["weft_proxy::authn"]),
    ("main", &["weft_proxy"]),
    ("misc", &[]),
    ("pool", &["weft_proxy::upstream::pool"]),
    ("rbac", &["weft_proxy::authz"]),
    (
        "router",
        &[
            "weft_proxy::http::router",
            "weft_proxy::http::policy",
            "weft_proxy::http::retry",
        ],
    ),
    ("secret", &["weft_proxy::identity", "weft_identity"]),
    ("stats", &["weft_proxy::metrics"]),
    ("tls", &["weft_proxy::tls", "rustls"]),
    ("upstream", &["weft_proxy::upstream", "weft_lb"]),
];

/// The logger whose level is the default of every target no other logger names.
const DEFAULT_LOGGER: &str = "misc";

/// A log level, by Envoy's names (`warn` and `err` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    /// Envoy's `critical`: `tracing` has nothing above error, so it logs errors.
    Critical,
    Off,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" | "err" => Level::Error,
            "critical" => Level::Critical,
            "off" => Level::Off,
            _ => return None,
        })
    }

    /// Envoy's name, as `/logging` lists it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Off => "off",
        }
    }

    /// The level in an `EnvFilter` directive.
    fn directive(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warn",
            Level::Error | Level::Critical => "error",
            Level::Off => "off",
        }
    }
}

const LEVELS_HELP: &str = "trace, debug, info, warning, error, critical or off";

/// Why a log level change (or the `--log` filter) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("invalid level {level:?} for {what}: use {LEVELS_HELP}")]
    Level { what: String, level: String },
    #[error(
        "unknown logger {0:?}: GET /logging lists the loggers (or use paths=<module path>:<level>)"
    )]
    Logger(String),
    #[error(
        "paths entry {0:?}: expected <module path>:<level>, e.g. weft_proxy::upstream::pool:trace"
    )]
    Path(String),
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

/// The levels the proxy logs at: one per logger, plus module paths set on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels {
    /// By index in [`LOGGERS`].
    loggers: Vec<Level>,
    /// Module paths with their own level (`paths=`, or `--log` targets no logger names).
    paths: Vec<(String, Level)>,
    /// `--log` directives with span or field filters, kept as they were given.
    verbatim: Vec<String>,
}

impl Levels {
    /// The levels an `EnvFilter` string (`--log`) gives: each logger gets the level of its
    /// first target's most specific directive, as `EnvFilter` would.
    pub fn parse(spec: &str) -> Result<Levels, LogError> {
        EnvFilter::try_new(spec).map_err(|e| LogError::Filter(e.to_string()))?;
        // Without a bare level, `EnvFilter` logs nothing its directives do not name.
        let mut default = Level::Off;
        let mut targets: Vec<(String, Level)> = Vec::new();
        let mut verbatim = Vec::new();
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if directive.contains(['[', '{']) {
                verbatim.push(directive.to_string());
                continue;
            }
            let (target, level) = match directive.rsplit_once('=') {
                Some((t, l)) => (Some(t), l),
                // A bare target (`weft_proxy`) enables everything it covers, as in EnvFilter.
                None if Level::parse(directive).is_none() => (Some(directive), "trace"),
                None => (None, directive),
            };
            let level = Level::parse(level).ok_or_else(|| LogError::Level {
                what: format!("--log directive {directive:?}"),
                level: level.to_string(),
            })?;
            match target {
                None => default = level,
                Some(t) => {
                    targets.retain(|(old, _)| old != t);
                    targets.push((t.to_string(), level));
                }
            }
        }
        let level_of = |target: &str| {
            targets
                .iter()
                .filter(|(t, _)| covers(t, target))
                .max_by_key(|(t, _)| t.len())
                .map_or(default, |(_, l)| *l)
        };
        let loggers = LOGGERS
            .iter()
            .map(|(_, t)| t.first().map_or(default, |t| level_of(t)))
            .collect();
        let logger_targets: Vec<&str> = LOGGERS
            .iter()
            .flat_map(|(_, t)| t.iter().copied())
            .collect();
        targets.retain(|(t, _)| !logger_targets.contains(&t.as_str()));
        Ok(Levels {
            loggers,
            paths: targets,
            verbatim,
        })
    }

    /// The `EnvFilter` these levels make.
    pub fn filter(&self) -> Result<EnvFilter, LogError> {
        let spec = self.spec();
        EnvFilter::try_new(&spec).map_err(|e| LogError::Filter(format!("{spec:?}: {e}")))
    }

    /// The `EnvFilter` directives: the default, each logger's targets, paths, the rest.
    fn spec(&self) -> String {
        let mut directives = vec![self.level(DEFAULT_LOGGER).directive().to_string()];
        for ((_, targets), level) in LOGGERS.iter().zip(&self.loggers) {
            for target in *targets {
                directives.push(format!("{target}={}", level.directive()));
            }
        }
        for (path, level) in &self.paths {
            directives.push(format!("{path}={}", level.directive()));
        }
        directives.extend(self.verbatim.iter().cloned());
        directives.join(",")
    }

    /// The level of logger `name` (`Off` for a name that is none).
    pub fn level(&self, name: &str) -> Level {
        LOGGERS
            .iter()
            .position(|(n, _)| *n == name)
            .and_then(|i| self.loggers.get(i).copied())
            .unwrap_or(Level::Off)
    }

    /// Applies a `/logging` query's parameters, all or none.
    fn apply<'a>(
        &mut self,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), LogError> {
        let mut next = self.clone();
        for (key, value) in params {
            match key {
                "level" => {
                    let level = Level::parse(value).ok_or_else(|| LogError::Level {
                        what: "level=".into(),
                        level: value.to_string(),
                    })?;
                    next.loggers.iter_mut().for_each(|l| *l = level);
                    next.paths.clear();
                }
                "paths" => {
                    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                        let (path, level) = entry
                            .rsplit_once(':')
                            .filter(|(p, _)| is_module_path(p))
                            .ok_or_else(|| LogError::Path(entry.to_string()))?;
                        let level = Level::parse(level).ok_or_else(|| LogError::Level {
                            what: format!("paths entry {path:?}"),
                            level: level.to_string(),
                        })?;
                        next.paths.retain(|(p, _)| p != path);
                        next.paths.push((path.to_string(), level));
                    }
                }
                name => {
                    let i = LOGGERS
                        .iter()
                        .position(|(n, _)| *n == name)
                        .ok_or_else(|| LogError::Logger(name.to_string()))?;
                    let level = Level::parse(value).ok_or_else(|| LogError::Level {
                        what: format!("logger {name:?}"),
                        level: value.to_string(),
                    })?;
                    if let Some(slot) = next.loggers.get_mut(i) {
                        *slot = level;
                    }
                }
            }
        }
        *self = next;
        Ok(())
    }

    /// Envoy's `/logging` listing: `active loggers:` and each logger's level; then the paths.
    pub fn listing(&self) -> String {
        let mut text = String::from("active loggers:\n");
        for ((name, _), level) in LOGGERS.iter().zip(&self.loggers) {
            text.push_str(&format!("  {name}: {}\n", level.as_str()));
        }
        if !self.paths.is_empty() {
            text.push_str("paths:\n");
            for (path, level) in &self.paths {
                text.push_str(&format!("  {path}: {}\n", level.as_str()));
            }
        }
        text
    }
}

/// Whether directive target `target` covers events of `module` (itself or a module under it).
fn covers(target: &str, module: &str) -> bool {
    module
        .strip_prefix(target)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// A Rust module path (`weft_proxy::upstream::pool`): what a `paths` entry names.
fn is_module_path(text: &str) -> bool {
    !text.is_empty()
        && text.split("::").all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Swaps the filter of the proxy's log subscriber.
pub type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The proxy's log levels, and the way to change them.
pub struct LogControl {
    levels: Mutex<Levels>,
    initial: Levels,
    reload: Reload,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("levels", &*self.levels.lock())
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// Control of a subscriber that runs `initial`'s filter; `reload` installs a new one.
    pub fn new(initial: Levels, reload: Reload) -> Self {
        Self {
            levels: Mutex::new(initial.clone()),
            initial,
            reload,
        }
    }

    /// The current levels.
    pub fn levels(&self) -> Levels {
        self.levels.lock().clone()
    }

    /// Applies a `/logging` query (`reset` goes back to the `--log` levels first; a Weft
    /// extension). Nothing changes when any parameter is refused.
    pub fn update<'a>(
        &self,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Levels, LogError> {
        let mut levels = self.levels.lock();
        let mut next = levels.clone();
        let mut rest = Vec::new();
        for (key, value) in params {
            if key == "reset" {
                next = self.initial.clone();
            } else {
                rest.push((key, value));
            }
        }
        next.apply(rest)?;
        if next != *levels {
            (self.reload)(next.filter()?).map_err(LogError::Reload)?;
            tracing::info!(filter = %next.spec(), "log levels changed (admin /logging)");
            *levels = next;
        }
        Ok(levels.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn control() -> (LogControl, Arc<Mutex<Vec<String>>>) {
        let installed = Arc::new(Mutex::new(Vec::new()));
        let sink = installed.clone();
        let levels = Levels::parse("info").unwrap();
        let control = LogControl::new(
            levels,
            Box::new(move |filter| {
                sink.lock().push(filter.to_string());
                Ok(())
            }),
        );
        (control, installed)
    }

    #[test]
    fn a_plain_level_sets_every_logger() {
        let levels = Levels::parse("warn").unwrap();
        assert!(
            LOGGERS
                .iter()
                .all(|(n, _)| levels.level(n) == Level::Warning)
        );
        assert!(
            levels
                .listing()
                .starts_with("active loggers:\n  admin: warning\n")
        );
    }

    #[test]
    fn targets_in_log_set_the_loggers_under_them() {
        let levels =
            Levels::parse("weft_proxy=debug,weft_proxy::upstream::pool=trace,h2=off,info").unwrap();
        assert_eq!(levels.level("http"), Level::Debug, "under weft_proxy");
        assert_eq!(levels.level("main"), Level::Debug);
        assert_eq!(levels.level("pool"), Level::Trace);
        assert_eq!(levels.level("upstream"), Level::Debug);
        assert_eq!(levels.level("http2"), Level::Off);
        assert_eq!(levels.level("misc"), Level::Info);
        assert_eq!(levels.level("grpc"), Level::Info);
        let bare = Levels::parse("weft_proxy::upstream::balance,warn").unwrap();
        assert_eq!(bare.level("upstream"), Level::Warning);
        assert!(
            bare.listing()
                .contains("paths:\n  weft_proxy::upstream::balance: trace\n"),
            "a bare target is all of its levels: {}",
            bare.listing()
        );
        let other = Levels::parse("weft_proxy::upstream::balance=trace,info").unwrap();
        assert!(
            other
                .listing()
                .contains("paths:\n  weft_proxy::upstream::balance: trace\n")
        );
        assert!(
            other
                .spec()
                .ends_with("weft_proxy::upstream::balance=trace")
        );
    }

    #[test]
    fn one_logger_all_loggers_and_paths_change_the_filter() {
        let (control, installed) = control();
        let levels = control.update([("http", "debug")]).unwrap();
        assert_eq!(levels.level("http"), Level::Debug);
        assert_eq!(levels.level("router"), Level::Info);
        let filter = installed.lock().last().cloned().unwrap();
        assert!(filter.contains("weft_proxy::http=debug"), "{filter}");

        let levels = control
            .update([("paths", "weft_proxy::upstream::balance:trace")])
            .unwrap();
        assert!(
            levels
                .spec()
                .contains("weft_proxy::upstream::balance=trace")
        );

        let levels = control.update([("level", "warning")]).unwrap();
        assert!(
            LOGGERS
                .iter()
                .all(|(n, _)| levels.level(n) == Level::Warning)
        );
        assert!(
            !levels.listing().contains("paths:"),
            "level= drops the paths"
        );

        let levels = control.update([("reset", "")]).unwrap();
        assert_eq!(levels, Levels::parse("info").unwrap());
        assert_eq!(installed.lock().len(), 4);
    }

    #[test]
    fn refusals_name_the_problem_and_change_nothing() {
        let (control, installed) = control();
        let err = control
            .update([("http", "debug"), ("router", "loud")])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid level \"loud\" for logger \"router\": use trace, debug, info, warning, error, critical or off"
        );
        let err = control.update([("nope", "debug")]).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown logger \"nope\""),
            "{err}"
        );
        let err = control.update([("paths", "../x:debug")]).unwrap_err();
        assert!(matches!(err, LogError::Path(_)), "{err}");
        assert_eq!(control.levels().level("http"), Level::Info);
        assert!(installed.lock().is_empty());
        assert!(Levels::parse("weft_proxy=loud").is_err());
    }

    #[test]
    fn the_filter_enables_what_the_levels_say() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let mut levels = Levels::parse("info").unwrap();
        levels.apply([("upstream", "debug")]).unwrap();
        let subscriber = tracing_subscriber::registry().with(levels.filter().unwrap());
        tracing::subscriber::with_default(subscriber, || {
            assert!(
                tracing::enabled!(target: "weft_proxy::upstream::balance", tracing::Level::DEBUG)
            );
            assert!(!tracing::enabled!(target: "weft_proxy::http", tracing::Level::DEBUG));
            assert!(tracing::enabled!(target: "weft_proxy::http", tracing::Level::INFO));
        });
    }
}
