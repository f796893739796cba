//! Istio's standard metrics, under Istio's names and labels, so that Istio's dashboards, Kiali
//! and alerts read Weft's proxies unchanged (`:15090/stats/prometheus`, and the admin port's).
//!
//! ```text
//!  http/mod.rs handle ─► http.rs: Started ─► Outcome ─► Recorded body ─► HttpKey ─┐
//!  tcp.rs proxy ─────────────────────────────► tcp.rs: TcpKey ─► Counted io ────────┤
//!                                                                                    ▼
//!  Table (one per kind): labels ─► Arc<series> (atomics); a connection caches the last one
//!  scrape ─► Collector: each series with the local workload's labels and the key's, then its
//!    listener's stats settings (view.rs): dropped metrics left out, labels removed or
//!    upserted, series made equal summed
//!  exchange.rs: x-envoy-peer-metadata(-id) both ways: the peer's workload labels
//!  tcp_exchange.rs: the same metadata in a frame before opaque TCP (ALPN istio-peer-exchange)
//! ```
//!
//! Label values are bounded: workloads, services, codes and flags; never paths or raw
//! authorities. A peer's metadata comes from the network, so the number of series is capped:
//! past the cap, a new series is folded into its `unknown`-peer twin (counted in
//! `weft_metric_series_overflow_total`).

pub mod exchange;
pub mod health;
pub mod histogram;
pub mod http;
pub mod labels;
pub mod tcp;
pub mod tcp_exchange;
pub mod view;

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

pub use self::http::{ConnMetrics, HttpKey, HttpSeries, Outcome, Recorded, Started};
pub use self::labels::{Peer, Reporter, Secured, Security, Service, ServiceLabels, WorkloadLabels};
pub use self::tcp::{Counted, TcpKey, TcpSeries};
use labels::{UNKNOWN, or_unknown};
use view::{Dimensions, Metric, Stats};

/// The default cap on series per kind (HTTP, TCP).
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Who this proxy is and how it records, from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether requests and connections are recorded (and peer metadata exchanged).
    pub enabled: bool,
    pub local: WorkloadLabels,
    /// The pod's name (the metadata's `NAME`).
    pub pod: String,
    pub node_id: String,
    pub trust_domain: String,
    /// Series per kind before new ones fold into their `unknown`-peer twin.
    pub max_series: usize,
}

/// The proxy's Istio metrics: who it is, and every series recorded.
#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    local: WorkloadLabels,
    /// This proxy's SPIFFE identity (shown when it spoke mutual TLS).
    local_principal: String,
    trust_domain: String,
    own: exchange::OwnHeaders,
    /// This proxy's TCP metadata exchange frame.
    own_frame: bytes::Bytes,
    http: Table<HttpKey, HttpSeries>,
    tcp: Table<TcpKey, TcpSeries>,
}

impl Metrics {
    pub fn new(settings: Settings) -> Self {
        let local_principal = format!(
            "spiffe://{}/ns/{}/sa/{}",
            settings.trust_domain, settings.local.namespace, settings.local.service_account
        );
        Self {
            enabled: settings.enabled,
            own: exchange::OwnHeaders::new(&settings.node_id, &settings.pod, &settings.local),
            own_frame: tcp_exchange::encode(
                &settings.node_id,
                exchange::own_metadata(&settings.pod, &settings.local),
            ),
            local: settings.local,
            local_principal,
            trust_domain: settings.trust_domain,
            http: Table::new(settings.max_series),
            tcp: Table::new(settings.max_series),
        }
    }

    /// Metrics that record nothing (tests, and `--istio-metrics=false`).
    pub fn disabled() -> Self {
        Self::new(Settings {
            enabled: false,
            local: WorkloadLabels::default(),
            pod: String::new(),
            node_id: String::new(),
            trust_domain: String::new(),
            max_series: 0,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// This proxy's TCP metadata exchange frame (written whatever `enabled` says: a peer that
    /// negotiated the exchange expects one).
    pub fn own_frame(&self) -> &bytes::Bytes {
        &self.own_frame
    }

    /// The series of a TCP connection's labels; `None` when metrics are off.
    pub fn tcp_series(&self, key: TcpKey) -> Option<Arc<TcpSeries>> {
        self.enabled.then(|| self.tcp.get(&key))
    }

    /// Adds the metrics to `registry` (which must have no prefix: the names are Istio's).
    pub fn register(self: &Arc<Self>, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(Exposition(self.clone())));
    }

    /// The labels of a series, in Istio's order: the reporter, the source's, the destination's,
    /// then the request's.
    fn labels<'a>(&'a self, side: Sides<'a>, tail: &mut Vec<(&'static str, Cow<'a, str>)>) {
        let local = &self.local;
        let peer = side.peer.labels();
        let local_principal = if side.mtls {
            self.local_principal.as_str()
        } else {
            UNKNOWN
        };
        let peer_principal = side.peer_principal.map_or(UNKNOWN, |p| &**p);
        let (source, destination, source_principal, destination_principal) = match side.reporter {
            Reporter::Source => (local, peer, local_principal, peer_principal),
            Reporter::Destination => (peer, local, peer_principal, local_principal),
        };
        let service = side.service.labels();
        let v = |s: &'a str| Cow::Borrowed(or_unknown(s));
        tail.extend([
            ("reporter", Cow::Borrowed(side.reporter.as_str())),
            ("source_workload", v(&source.workload)),
            ("source_canonical_service", v(&source.canonical_service)),
            ("source_canonical_revision", v(&source.canonical_revision)),
            ("source_workload_namespace", v(&source.namespace)),
            ("source_principal", v(source_principal)),
            ("source_app", v(&source.app)),
            ("source_version", v(&source.version)),
            ("source_cluster", v(&source.cluster)),
            ("destination_workload", v(&destination.workload)),
            ("destination_workload_namespace", v(&destination.namespace)),
            ("destination_principal", v(destination_principal)),
            ("destination_app", v(&destination.app)),
            ("destination_version", v(&destination.version)),
            ("destination_service", v(&service.host)),
            (
                "destination_canonical_service",
                v(&destination.canonical_service),
            ),
            (
                "destination_canonical_revision",
                v(&destination.canonical_revision),
            ),
            ("destination_service_name", v(&service.name)),
            ("destination_service_namespace", v(&service.namespace)),
            ("destination_cluster", v(&destination.cluster)),
        ]);
    }
}

/// The parts of a key that say who is at each end.
struct Sides<'a> {
    reporter: Reporter,
    peer: &'a Peer,
    peer_principal: Option<&'a Arc<str>>,
    mtls: bool,
    service: &'a Service,
}

/// The side labels of both kinds of key, written once.
macro_rules! sides {
    ($($key:ty),+) => {$(
        impl $key {
            fn sides(&self) -> Sides<'_> {
                Sides {
                    reporter: self.reporter,
                    peer: &self.peer,
                    peer_principal: self.peer_principal.as_ref(),
                    mtls: self.mtls,
                    service: &self.service,
                }
            }
        }

        impl Fold for $key {
            fn folded(&self) -> Self {
                Self {
                    peer: Peer::unknown(),
                    peer_principal: None,
                    dimensions: Dimensions::default(),
                    ..self.clone()
                }
            }
        }

        impl Keyed for $key {
            fn stats(&self) -> (&Stats, &Dimensions) {
                (&self.stats, &self.dimensions)
            }
        }
    )+};
}

sides!(HttpKey, TcpKey);

/// Series by labels, capped (see the module doc).
#[derive(Debug)]
struct Table<K, S> {
    map: RwLock<HashMap<K, Arc<S>, foldhash::fast::RandomState>>,
    max: usize,
    overflow: AtomicU64,
}

/// A key's `unknown`-peer twin, where it goes when the table is full.
trait Fold {
    fn folded(&self) -> Self;
}

impl<K: Hash + Eq + Clone + Fold, S: Default> Table<K, S> {
    fn new(max: usize) -> Self {
        Self {
            map: RwLock::default(),
            max,
            overflow: AtomicU64::new(0),
        }
    }

    fn get(&self, key: &K) -> Arc<S> {
        if let Some(series) = self.map.read().get(key) {
            return series.clone();
        }
        let mut map = self.map.write();
        if let Some(series) = map.get(key) {
            return series.clone();
        }
        if map.len() >= self.max {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return map.entry(key.folded()).or_default().clone();
        }
        map.entry(key.clone()).or_default().clone()
    }

    fn snapshot(&self) -> Vec<(K, Arc<S>)> {
        self.map
            .read()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

/// The scrape-time view of [`Metrics`].
#[derive(Debug)]
struct Exposition(Arc<Metrics>);

/// One series' labels, in order.
type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// What a key's listener asked of the metrics (its `istio.stats` settings), and the values of
/// its label expressions.
trait Keyed {
    fn stats(&self) -> (&Stats, &Dimensions);
}

/// A value that adds up when two series become one (their labels made equal by the settings).
trait Merge {
    fn merge(&mut self, other: Self);
}

impl Merge for u64 {
    fn merge(&mut self, other: Self) {
        *self += other;
    }
}

/// A histogram's `(sum, count, per-bucket counts)`; the buckets are the same for all.
impl Merge for (f64, u64, Vec<(f64, u64)>) {
    fn merge(&mut self, other: Self) {
        self.0 += other.0;
        self.1 += other.1;
        for (mine, theirs) in self.2.iter_mut().zip(other.2) {
            mine.1 += theirs.1;
        }
    }
}

/// One family's rows: each series' labels for `metric` under its listener's settings (dropped
/// series left out). With `merge`, rows whose labels came out equal are summed (labels
/// removed, replaced, or two listeners' settings that differ elsewhere).
fn family<'a, K: Keyed, S, V: Merge>(
    series: &'a [(K, Arc<S>)],
    base: &'a [Labels<'a>],
    metric: Metric,
    merge: bool,
    value: impl Fn(&S) -> V,
) -> Vec<(Cow<'a, Labels<'a>>, V)> {
    let mut rows: Vec<(Cow<'a, Labels<'a>>, V)> = Vec::with_capacity(series.len());
    let mut seen: HashMap<Labels<'a>, usize> = HashMap::new();
    for ((key, s), labels) in series.iter().zip(base) {
        let (stats, dimensions) = key.stats();
        let settings = stats.metric(metric);
        if settings.drop {
            continue;
        }
        let labels = if settings.is_standard() {
            Cow::Borrowed(labels)
        } else {
            Cow::Owned(view::relabel(labels, settings, dimensions))
        };
        let v = value(s);
        if !merge {
            rows.push((labels, v));
            continue;
        }
        match seen.get(&*labels) {
            Some(&i) => rows[i].1.merge(v),
            None => {
                seen.insert(labels.clone().into_owned(), rows.len());
                rows.push((labels, v));
            }
        }
    }
    rows
}

/// Whether some key's listener changed the standard settings (then series may merge).
fn customized<K: Keyed, S>(series: &[(K, Arc<S>)]) -> bool {
    let standard = Stats::standard();
    series
        .iter()
        .any(|(k, _)| !std::ptr::eq(k.stats().0, &*standard))
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &*self.0;
        let http = m.http.snapshot();
        let tcp = m.tcp.snapshot();
        let http_labels: Vec<Labels<'_>> = http
            .iter()
            .map(|(key, _)| {
                let mut labels = Vec::with_capacity(25);
                m.labels(key.sides(), &mut labels);
                let protocol = if key.grpc { "grpc" } else { "http" };
                labels.extend([
                    ("request_protocol", Cow::Borrowed(protocol)),
                    ("response_code", Cow::Owned(key.code.to_string())),
                    (
                        "grpc_response_status",
                        key.grpc_status
                            .map_or(Cow::Borrowed(""), |s| Cow::Owned(s.to_string())),
                    ),
                    ("response_flags", flags(key.flags)),
                    (
                        "connection_security_policy",
                        Cow::Borrowed(key.security.as_str()),
                    ),
                ]);
                labels
            })
            .collect();
        let tcp_labels: Vec<Labels<'_>> = tcp
            .iter()
            .map(|(key, _)| {
                let mut labels = Vec::with_capacity(23);
                m.labels(key.sides(), &mut labels);
                labels.extend([
                    ("request_protocol", Cow::Borrowed("tcp")),
                    ("response_flags", flags(key.flags)),
                    (
                        "connection_security_policy",
                        Cow::Borrowed(key.security.as_str()),
                    ),
                ]);
                labels
            })
            .collect();
        let merge_http = customized(&http);
        let merge_tcp = customized(&tcp);

        let counter = |encoder: &mut DescriptorEncoder<'_>,
                       name: &str,
                       help: &str,
                       rows: Vec<(Cow<'_, Labels<'_>>, u64)>|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, value) in rows {
                ConstCounter::new(value).encode(family.encode_family(&*labels)?)?;
            }
            Ok(())
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "istio_requests",
            "Requests handled by this proxy (Istio's standard metric)",
            family(&http, &http_labels, Metric::Requests, merge_http, |s| {
                load(&s.requests)
            }),
        )?;
        type Pick = fn(&HttpSeries) -> (f64, u64, Vec<(f64, u64)>);
        let histograms: [(&str, &str, Metric, Pick); 3] = [
            (
                "istio_request_duration_milliseconds",
                "Request durations in milliseconds, from the request's first byte to the response's last",
                Metric::Duration,
                |s| s.duration.snapshot(),
            ),
            (
                "istio_request_bytes",
                "Request sizes: header and body bytes",
                Metric::RequestBytes,
                |s| s.request_bytes.snapshot(),
            ),
            (
                "istio_response_bytes",
                "Response sizes: header and body bytes",
                Metric::ResponseBytes,
                |s| s.response_bytes.snapshot(),
            ),
        ];
        for (name, help, metric, pick) in histograms {
            let mut encoded = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (labels, (sum, count, buckets)) in
                family(&http, &http_labels, metric, merge_http, pick)
            {
                encoded
                    .encode_family(&*labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        type TcpPick = fn(&TcpSeries) -> &AtomicU64;
        let tcp_counters: [(&str, &str, Metric, TcpPick); 4] = [
            (
                "istio_tcp_sent_bytes",
                "Bytes sent to the downstream peer of TCP connections",
                Metric::TcpSent,
                |s| &s.sent,
            ),
            (
                "istio_tcp_received_bytes",
                "Bytes received from the downstream peer of TCP connections",
                Metric::TcpReceived,
                |s| &s.received,
            ),
            (
                "istio_tcp_connections_opened",
                "TCP connections opened",
                Metric::TcpOpened,
                |s| &s.opened,
            ),
            (
                "istio_tcp_connections_closed",
                "TCP connections closed",
                Metric::TcpClosed,
                |s| &s.closed,
            ),
        ];
        for (name, help, metric, pick) in tcp_counters {
            counter(
                &mut encoder,
                name,
                help,
                family(&tcp, &tcp_labels, metric, merge_tcp, |s| load(pick(s))),
            )?;
        }
        let overflow = encoder.encode_descriptor(
            "weft_metric_series_overflow",
            "Requests and connections recorded under an unknown peer because the series cap (--max-metric-series) was reached",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(load(&m.http.overflow) + load(&m.tcp.overflow)).encode(overflow)
    }
}

/// Envoy's `%RESPONSE_FLAGS%`: `-` for none.
fn flags(flags: crate::error::ResponseFlags) -> Cow<'static, str> {
    if flags.is_empty() {
        Cow::Borrowed("-")
    } else {
        Cow::Owned(flags.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ResponseFlags;

    fn key(peer: &str, code: u16) -> HttpKey {
        HttpKey {
            reporter: Reporter::Destination,
            peer: Peer::new(WorkloadLabels {
                workload: peer.to_string(),
                ..Default::default()
            }),
            peer_principal: Some(Arc::from(format!("spiffe://td/ns/x/sa/{peer}"))),
            mtls: true,
            service: Service::unknown(),
            grpc: false,
            code,
            grpc_status: None,
            flags: ResponseFlags::NONE,
            security: Security::MutualTls,
            stats: Stats::standard(),
            dimensions: Dimensions::default(),
        }
    }

    #[test]
    fn past_the_cap_new_peers_fold_into_the_unknown_peer() {
        let table: Table<HttpKey, HttpSeries> = Table::new(2);
        let a = table.get(&key("a", 200));
        assert!(
            Arc::ptr_eq(&a, &table.get(&key("a", 200))),
            "one series per key"
        );
        table.get(&key("b", 200));
        // Full: a third peer lands in its unknown twin, which the cap does not stop.
        let c = table.get(&key("c", 200));
        let d = table.get(&key("d", 200));
        assert!(
            Arc::ptr_eq(&c, &d),
            "both folded into the same unknown-peer series"
        );
        assert_eq!(table.overflow.load(Ordering::Relaxed), 2);
        let keys: Vec<HttpKey> = table.snapshot().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&key("a", 200).folded()));
        // A known series is still found when the table is full.
        assert!(Arc::ptr_eq(&a, &table.get(&key("a", 200))));
    }

    #[test]
    fn exposition_has_istios_names_and_labels() {
        let metrics = Arc::new(Metrics::new(Settings {
            enabled: true,
            local: WorkloadLabels::from_pod(
                "reviews-v1",
                "default",
                &[("app".to_string(), "reviews".to_string())]
                    .into_iter()
                    .collect(),
                "Kubernetes",
                "reviews",
            ),
            pod: "reviews-v1-abc".into(),
            node_id: "id".into(),
            trust_domain: "cluster.local".into(),
            max_series: 10,
        }));
        let series = metrics.http.get(&key("client", 503));
        series.requests.fetch_add(3, Ordering::Relaxed);
        series.duration.observe(1500);
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("istio_requests_total");
        assert!(line.ends_with(" 3"), "{line}");
        for label in [
            r#"reporter="destination""#,
            r#"source_workload="client""#,
            r#"source_principal="spiffe://td/ns/x/sa/client""#,
            r#"destination_workload="reviews-v1""#,
            r#"destination_principal="spiffe://cluster.local/ns/default/sa/reviews""#,
            r#"destination_app="reviews""#,
            r#"destination_version="unknown""#,
            r#"destination_canonical_revision="latest""#,
            r#"destination_service="unknown""#,
            r#"response_code="503""#,
            r#"grpc_response_status="""#,
            r#"response_flags="-""#,
            r#"connection_security_policy="mutual_tls""#,
        ] {
            assert!(line.contains(label), "{label} missing in {line}");
        }
        assert_eq!(line.matches("=\"").count(), 25, "Istio's 25 labels: {line}");
        assert!(
            text.contains("istio_request_duration_milliseconds_sum{"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE istio_tcp_connections_opened counter"),
            "{text}"
        );
        assert!(
            text.contains("weft_metric_series_overflow_total 0"),
            "{text}"
        );
    }
}
