//! What a listener's `istio.stats` filter asks of Istio's metrics ([`Stats`]): which of them
//! are recorded, which labels each leaves out, and which it adds or replaces with the value of
//! a CEL expression over the request's (or connection's) attributes.
//!
//! ```text
//!  config/stats.rs: PluginConfig ─► Stats (shared by the listener's connections)
//!  a request ends ─► Stats::values(entry): each expression once ─► Dimensions (in its key)
//!  scrape ─► per metric: dropped? ─► the standard labels ─► minus removed ─► plus upserted
//!          ─► series whose labels became equal are summed (metrics/mod.rs)
//! ```
//!
//! A key holds its listener's `Stats`; keys of listeners with equal settings are one series.
//! The standard settings (no override) compare by pointer.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use crate::access_log::{Entry, filter::Expression};

/// Istio's standard metrics that the proxy records, in exposition order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Requests,
    Duration,
    RequestBytes,
    ResponseBytes,
    TcpOpened,
    TcpClosed,
    TcpSent,
    TcpReceived,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Self::Requests,
        Self::Duration,
        Self::RequestBytes,
        Self::ResponseBytes,
        Self::TcpOpened,
        Self::TcpClosed,
        Self::TcpSent,
        Self::TcpReceived,
    ];

    /// The stats filter's name (`MetricConfig.name`).
    pub fn config_name(self) -> &'static str {
        use weft_xds::stats as s;
        match self {
            Self::Requests => s::REQUESTS_TOTAL,
            Self::Duration => s::REQUEST_DURATION,
            Self::RequestBytes => s::REQUEST_BYTES,
            Self::ResponseBytes => s::RESPONSE_BYTES,
            Self::TcpOpened => s::TCP_OPENED,
            Self::TcpClosed => s::TCP_CLOSED,
            Self::TcpSent => s::TCP_SENT,
            Self::TcpReceived => s::TCP_RECEIVED,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One metric's settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MetricSettings {
    /// Not recorded.
    pub drop: bool,
    /// Label names left out.
    pub remove: Vec<String>,
    /// Labels added or replaced, sorted by name: (name, index into [`Stats::expressions`]).
    pub dimensions: Vec<(String, usize)>,
}

impl MetricSettings {
    /// The standard labels, unchanged.
    pub fn is_standard(&self) -> bool {
        self.remove.is_empty() && self.dimensions.is_empty()
    }
}

/// A listener's stats settings: per metric, and the value expressions they use.
#[derive(Debug)]
pub struct Stats {
    metrics: [MetricSettings; 8],
    /// Distinct expressions, evaluated once per request or connection.
    expressions: Vec<Expression>,
    hash: u64,
}

impl Stats {
    /// Settings from per-metric settings and the expressions their dimensions index.
    pub fn new(metrics: [MetricSettings; 8], expressions: Vec<Expression>) -> Self {
        let mut hasher = foldhash::fast::FixedState::default().build_hasher();
        metrics.hash(&mut hasher);
        for e in &expressions {
            e.source().hash(&mut hasher);
        }
        Self {
            metrics,
            expressions,
            hash: hasher.finish(),
        }
    }

    /// Every metric recorded with its standard labels (a filter without overrides).
    pub fn standard() -> Arc<Self> {
        static STANDARD: LazyLock<Arc<Stats>> =
            LazyLock::new(|| Arc::new(Stats::new(Default::default(), Vec::new())));
        STANDARD.clone()
    }

    pub fn metric(&self, metric: Metric) -> &MetricSettings {
        &self.metrics[metric.index()]
    }

    /// The source of the expression at `index` (a dimension's value).
    pub fn expression(&self, index: usize) -> Option<&str> {
        self.expressions.get(index).map(Expression::source)
    }

    /// Whether a request's attributes are needed (some label's value is an expression).
    pub fn needs_attributes(&self) -> bool {
        !self.expressions.is_empty()
    }

    /// The expressions' values for one request or connection. A value that cannot be made (a
    /// missing header, a type mismatch) is `unknown`, as in Istio.
    pub fn values(&self, entry: &Entry<'_>) -> Dimensions {
        Dimensions(Some(
            self.expressions
                .iter()
                .map(|e| {
                    e.evaluate(entry)
                        .map_or_else(|| Arc::from(super::labels::UNKNOWN), Arc::from)
                })
                .collect(),
        ))
    }
}

impl PartialEq for Stats {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
            || (self.hash == other.hash
                && self.metrics == other.metrics
                && self.expressions.len() == other.expressions.len()
                && self
                    .expressions
                    .iter()
                    .zip(&other.expressions)
                    .all(|(a, b)| a.source() == b.source()))
    }
}

impl Eq for Stats {}

impl Hash for Stats {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The values of a request's (or connection's) label expressions, by expression; none when
/// its listener has none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Dimensions(Option<Arc<[Arc<str>]>>);

impl Dimensions {
    pub fn get(&self, index: usize) -> &str {
        self.0
            .as_ref()
            .and_then(|v| v.get(index))
            .map_or(super::labels::UNKNOWN, |v| &**v)
    }
}

/// A series' labels for `metric` under `stats`: the standard ones less the removed, with the
/// upserted ones replaced in place or added at the end.
pub fn relabel<'a>(
    standard: &'a [(&'a str, std::borrow::Cow<'a, str>)],
    settings: &'a MetricSettings,
    dimensions: &'a Dimensions,
) -> Vec<(&'a str, std::borrow::Cow<'a, str>)> {
    use std::borrow::Cow;
    let mut labels: Vec<(&str, Cow<'a, str>)> = standard
        .iter()
        .filter(|(name, _)| !settings.remove.iter().any(|r| r == name))
        .map(|(name, value)| (*name, value.clone()))
        .collect();
    for (name, index) in &settings.dimensions {
        let value = Cow::Borrowed(dimensions.get(*index));
        match labels.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => labels.push((name.as_str(), value)),
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn relabel_removes_replaces_and_adds() {
        let standard = vec![
            ("reporter", Cow::Borrowed("source")),
            ("response_code", Cow::Borrowed("200")),
            ("destination_service", Cow::Borrowed("a.b.svc")),
        ];
        let settings = MetricSettings {
            drop: false,
            remove: vec!["response_code".into()],
            dimensions: vec![
                ("destination_service".into(), 0),
                ("request_method".into(), 1),
            ],
        };
        let dims = Dimensions(Some(Arc::from(vec![Arc::from("x"), Arc::from("GET")])));
        let labels = relabel(&standard, &settings, &dims);
        assert_eq!(
            labels,
            vec![
                ("reporter", Cow::Borrowed("source")),
                ("destination_service", Cow::Borrowed("x")),
                ("request_method", Cow::Borrowed("GET")),
            ]
        );
        // No values (a listener without expressions): `unknown`.
        let no_values = Dimensions::default();
        let none = relabel(&standard, &settings, &no_values);
        assert_eq!(none[1].1, "unknown");
    }

    #[test]
    fn equal_settings_are_one_key() {
        let a = Stats::new(Default::default(), Vec::new());
        assert_eq!(a, *Stats::standard());
        let mut dropped: [MetricSettings; 8] = Default::default();
        dropped[0].drop = true;
        assert_ne!(Stats::new(dropped, Vec::new()), *Stats::standard());
    }
}
