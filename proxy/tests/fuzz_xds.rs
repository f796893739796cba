//! Fuzz targets: arbitrary Envoy resources → the proxy's `TryFrom` conversions (and, for route
//! configurations and load assignments, a `ConfigStore` applying them as an xDS response).
//!
//! Seeds: what the controller generates (`crates/fuzz/corpus/xds-<type>/ctl-*.pb`, written by
//! `cargo run -p weft-controller --example fuzz_xds_seeds`) and the resources the other proxy
//! tests build (`tests/common`, including an inbound listener with istiod's jwt_authn and RBAC
//! filters, so their configs are mutated inside the listener's `Any` payloads). Inputs are the seeds' protobuf encodings mutated field by
//! field (nested messages and `Any` payloads included), sometimes byte-wise. Checked: no panic
//! or hang; a message that decodes is either accepted or rejected with an error whose path is
//! set and whose reason names the field, of a size proportionate to the input; the store's NACK
//! is never empty. Every type must see both outcomes during the run.
//!
//! Listeners and clusters go through `TryFrom` only: applying them would bind the fuzzed
//! addresses or start DNS lookups of the fuzzed host names.
//!
//! Default budget 1 s per type; a long run:
//! `WEFT_FUZZ_SECONDS=600 cargo test --release -p weft-proxy --test fuzz_xds`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::authz;
use common::*;
use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use weft_fuzz::proto::Corpus;
use weft_fuzz::{Fuzz, Tally};
use weft_proxy::ConfigStore;
use weft_proxy::config::{Assignment, ClusterConfig, ConfigError, Listener, Reason, RouteConfig};
use weft_xds::type_url;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn fuzz_listener() {
    let seeds = vec![
        listener("outbound", addr("127.0.0.1:15001"), "outbound"),
        listener("inbound", addr("[::1]:15006"), "inbound|9080"),
        // istiod's authorization filters: jwt_authn, RBAC DENY/ALLOW/LOG, router.
        authz::listener_with_filters(
            "virtualInbound",
            addr("127.0.0.1:15006"),
            "inbound|9080",
            authz::inbound_filters(&authz::jwks()),
        ),
    ];
    fuzz::<lds::Listener, Listener>("xds-listener", seeds, None);
}

#[test]
fn fuzz_route_configuration() {
    let mut header_match = prefix("/api");
    header_match.headers = vec![rt::HeaderMatcher {
        name: "x-user".into(),
        invert_match: true,
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
        ..Default::default()
    }];
    let seeds = vec![route_config(
        "outbound",
        vec![
            vhost(
                "reviews:9080",
                &["reviews:9080", "reviews"],
                vec![
                    weighted(header_match, &[("v1", 90), ("v2", 10)]),
                    to_cluster(prefix("/"), "v1", Some(Duration::from_millis(1500))),
                ],
            ),
            vhost("all", &["*"], vec![to_cluster(prefix("/"), "v3", None)]),
        ],
    )];
    fuzz::<rt::RouteConfiguration, RouteConfig>("xds-route", seeds, Some(type_url::ROUTE));
}

#[test]
fn fuzz_cluster() {
    let seeds = vec![
        cluster("outbound|9080||reviews", false),
        cluster("outbound|9080||ratings", true),
        cluster_with_idle_timeout("outbound|80||a", true, Duration::from_secs(30)),
        dns_cluster(
            "outbound|443||api",
            "api.example.com",
            443,
            Duration::from_secs(60),
        ),
    ];
    fuzz::<cds::Cluster, ClusterConfig>("xds-cluster", seeds, None);
}

#[test]
fn fuzz_cluster_load_assignment() {
    let seeds = vec![endpoints(
        "outbound|9080||reviews",
        &[addr("127.0.0.1:9080"), addr("[::1]:9081")],
    )];
    fuzz::<eds::ClusterLoadAssignment, Assignment>("xds-endpoint", seeds, Some(type_url::ENDPOINT));
}

/// Fuzzes `TryFrom<E> for D` from the seeds of `target` plus `extra`; with `store_type`, every
/// input is also applied to a `ConfigStore` as a one-resource response of that type.
fn fuzz<E, D>(target: &str, extra: Vec<Any>, store_type: Option<&'static str>)
where
    E: Message + Default + 'static,
    D: TryFrom<E, Error = ConfigError>,
{
    let mut fuzz = Fuzz::new(target).default_seconds(1.0);
    assert!(
        fuzz.seeds().iter().any(|s| s.name.contains("/ctl-")),
        "{target}: no controller-generated seed; run `cargo run -p weft-controller --example fuzz_xds_seeds`"
    );
    for (i, any) in extra.into_iter().enumerate() {
        fuzz.seed(format!("tests/common {i}"), any.value);
    }
    for seed in fuzz.seeds() {
        if let Err(err) = E::decode(seed.bytes.as_slice()) {
            panic!("{target}: seed {} does not decode: {err}", seed.name);
        }
    }
    let corpus = Corpus::new(fuzz.seeds());
    assert_eq!(
        corpus.len(),
        fuzz.seeds().len(),
        "every seed parses as protobuf"
    );

    let outcomes = Tally::new();
    let seen = outcomes.clone();
    let mut store = store_type.map(StoreCheck::new);
    let summary = fuzz.run(
        move |rng, seeds| corpus.mutate(rng, seeds),
        move |input| {
            let outcome = convert::<E, D>(input)?;
            if let Some(store) = &mut store {
                store.apply(input)?;
            }
            let what = match outcome {
                Some(true) => "accepted",
                Some(false) => "rejected",
                None => "undecodable",
            };
            seen.add(what, 1);
            Ok(())
        },
    );
    println!("{target}: {outcomes:?}");
    assert!(
        outcomes.count("accepted") > 0 && outcomes.count("rejected") > 0,
        "{target}: {outcomes:?} in {} inputs: the mutations must reach both outcomes",
        summary.iterations
    );
}

/// `Some(accepted)` for a message that decodes, `None` for one that does not; `Err` for a
/// rejection that does not say which field is wrong.
fn convert<E, D>(input: &[u8]) -> Result<Option<bool>, String>
where
    E: Message + Default,
    D: TryFrom<E, Error = ConfigError>,
{
    let Ok(message) = E::decode(input) else {
        return Ok(None);
    };
    let err = match D::try_from(message) {
        Ok(_) => return Ok(Some(true)),
        Err(err) => err,
    };
    let text = err.to_string();
    if err.path.trim().is_empty() {
        return Err(format!("rejected with an empty path: {text}"));
    }
    let field = match &err.reason {
        Reason::Missing(field) => field.to_string(),
        Reason::Unsupported(what) => what.clone(),
        Reason::UnsupportedValue { field, .. } => field.to_string(),
        Reason::Invalid { field, reason } if !reason.trim().is_empty() => field.clone(),
        Reason::Invalid { .. } => String::new(),
        Reason::Regex { field, .. } => field.clone(),
        Reason::Decode { type_url, .. } => type_url.clone(),
        Reason::Duplicate => return Err(format!("a conversion reported a duplicate: {text}")),
    };
    if field.trim().is_empty() {
        return Err(format!(
            "rejected without naming the field: {text} ({err:?})"
        ));
    }
    if text.len() > 16 * input.len() + 4096 {
        return Err(format!(
            "a {}-byte error for a {}-byte input",
            text.len(),
            input.len()
        ));
    }
    Ok(Some(false))
}

/// A `ConfigStore` (on its own current-thread runtime, created on the worker thread) that
/// every input is applied to.
struct StoreCheck {
    type_url: &'static str,
    state: Option<(tokio::runtime::Runtime, ConfigStore)>,
    version: u64,
}

impl StoreCheck {
    fn new(type_url: &'static str) -> Self {
        Self {
            type_url,
            state: None,
            version: 0,
        }
    }

    fn apply(&mut self, input: &[u8]) -> Result<(), String> {
        if self.state.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build a runtime: {e}"))?;
            let store = {
                let _entered = runtime.enter();
                ConfigStore::new()
            };
            self.state = Some((runtime, store));
        }
        let Some((runtime, store)) = &mut self.state else {
            return Err("no store".to_string());
        };
        self.version += 1;
        let _entered = runtime.enter();
        let resource = Any {
            type_url: self.type_url.to_string(),
            value: input.to_vec(),
        };
        match store.apply_response(self.type_url, &format!("v{}", self.version), vec![resource]) {
            Ok(()) => Ok(()),
            Err(nack) if nack.trim().is_empty() => {
                Err("the store NACKed with an empty message".into())
            }
            Err(nack) if nack.len() > 16 * input.len() + 4096 => Err(format!(
                "a {}-byte NACK for a {}-byte input",
                nack.len(),
                input.len()
            )),
            Err(_) => Ok(()),
        }
    }
}
