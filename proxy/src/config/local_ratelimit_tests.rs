//! The local rate limit filter's conversion: what the controller sends is read whole, the rest
//! is rejected naming the field, and identical configs share their buckets.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue as PbHeaderValue, HeaderValueOption, RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::config::route::v3::rate_limit::action::{
    ActionSpecifier, GenericKey, RemoteAddress, RequestHeaders,
};
use envoy_types::pb::envoy::config::route::v3::{RateLimit, rate_limit};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    LocalRateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, HttpStatus, TokenBucket};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use prost::Message;

use super::*;

fn percent(numerator: u32) -> Option<RuntimeFractionalPercent> {
    Some(RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator,
            denominator: 0,
        }),
        runtime_key: String::new(),
    })
}

fn bucket(max: u32, millis: i32) -> Option<TokenBucket> {
    Some(TokenBucket {
        max_tokens: max,
        tokens_per_fill: Some(UInt32Value { value: max }),
        fill_interval: Some(PbDuration {
            seconds: 0,
            nanos: millis * 1_000_000,
        }),
    })
}

fn keyed() -> lrl::LocalRateLimit {
    let action = |a| rate_limit::Action {
        action_specifier: Some(a),
    };
    lrl::LocalRateLimit {
        stat_prefix: "rl".into(),
        status: Some(HttpStatus { code: 429 }),
        filter_enabled: percent(100),
        filter_enforced: percent(100),
        response_headers_to_add: vec![HeaderValueOption {
            header: Some(PbHeaderValue {
                key: "x-envoy-ratelimited".into(),
                value: "true".into(),
                ..Default::default()
            }),
            append_action: 2,
            ..Default::default()
        }],
        token_bucket: bucket(10, 1000),
        rate_limits: vec![RateLimit {
            actions: vec![
                action(ActionSpecifier::GenericKey(GenericKey {
                    descriptor_key: "weft.rule".into(),
                    descriptor_value: "r".into(),
                    ..Default::default()
                })),
                action(ActionSpecifier::RequestHeaders(RequestHeaders {
                    header_name: "x-user".into(),
                    descriptor_key: "x-user".into(),
                    skip_if_absent: true,
                })),
            ],
            ..Default::default()
        }],
        descriptors: vec![LocalRateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "weft.rule".into(),
                    value: "r".into(),
                },
                Entry {
                    key: "x-user".into(),
                    value: String::new(),
                },
            ],
            token_bucket: bucket(2, 500),
            shadow_mode: false,
        }],
        max_dynamic_descriptors: Some(UInt32Value { value: 7 }),
        ..Default::default()
    }
}

fn convert(c: lrl::LocalRateLimit) -> Result<LocalRateLimit, Reason> {
    let bytes = c.encode_to_vec();
    LocalRateLimit::convert(c, &bytes)
}

#[test]
fn reads_every_field_the_controller_sends() {
    let limit = convert(keyed()).expect("accepted");
    assert!(limit.enforced);
    assert_eq!(limit.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limit.response_headers[0].0, "x-envoy-ratelimited");
    assert!(!limit.response_headers[0].2, "overwrite");
    assert_eq!(
        limit.default_bucket,
        Some(BucketSpec {
            max_tokens: 10,
            tokens_per_fill: 10,
            fill_interval: Duration::from_secs(1)
        })
    );
    assert!(limit.always_consume_default);
    assert_eq!(limit.rate_limits[0].len(), 2);
    assert_eq!(
        limit.descriptors[0].entries,
        [
            ("weft.rule".to_string(), Some("r".to_string())),
            ("x-user".to_string(), None)
        ]
    );
    assert!(limit.descriptors[0].is_dynamic());
    assert_eq!(limit.max_dynamic, 7);
    // Envoy's defaults: 0 % enabled (the filter does nothing), 429.
    let inert = convert(lrl::LocalRateLimit {
        stat_prefix: "x".into(),
        ..Default::default()
    })
    .unwrap();
    assert!(!inert.enforced && inert.status == 429 && inert.default_bucket.is_none());
}

#[test]
fn identical_configs_share_their_buckets_within_a_registry() {
    let registry = BucketRegistry::default();
    let adopted = |config| {
        let mut limit = convert(config).unwrap();
        registry.adopt(&mut limit);
        limit
    };
    let a = adopted(keyed());
    let b = adopted(keyed());
    assert!(Arc::ptr_eq(&a.buckets, &b.buckets));
    let mut changed = keyed();
    changed.token_bucket = bucket(11, 1000);
    let c = adopted(changed);
    assert!(!Arc::ptr_eq(&a.buckets, &c.buckets));
    // Not adopted: its own new buckets.
    assert!(!Arc::ptr_eq(&a.buckets, &convert(keyed()).unwrap().buckets));
    // Once the old ones are gone: new buckets.
    drop((a, b));
    let d = adopted(keyed());
    assert_eq!(Arc::strong_count(&d.buckets), 1);
}

#[test]
fn rejects_what_it_cannot_apply_naming_the_field() {
    type Mutate = Box<dyn Fn(&mut lrl::LocalRateLimit)>;
    let cases: Vec<(Mutate, &str)> = vec![
        (
            Box::new(|c| c.descriptors[0].shadow_mode = true),
            "descriptors[0].shadow_mode",
        ),
        (
            Box::new(|c| c.token_bucket = bucket(1, 10)),
            "token_bucket.fill_interval",
        ),
        (
            Box::new(|c| c.descriptors[0].token_bucket = bucket(0, 100)),
            "descriptors[0].token_bucket.max_tokens",
        ),
        (
            Box::new(|c| c.filter_enforced = percent(50)),
            "filter_enforced",
        ),
        (
            Box::new(|c| c.rate_limits.clear()),
            "descriptors without rate_limits",
        ),
        (
            Box::new(|c| c.status = Some(HttpStatus { code: 200 })),
            "status.code",
        ),
        (
            Box::new(|c| c.local_rate_limit_per_downstream_connection = true),
            "local_rate_limit_per_downstream_connection",
        ),
        (Box::new(|c| c.stage = 1), "stage"),
        (
            Box::new(|c| c.enable_x_ratelimit_headers = 1),
            "enable_x_ratelimit_headers",
        ),
        (
            Box::new(|c| c.rate_limits[0].disable_key = "k".into()),
            "rate_limits[0].disable_key",
        ),
        (
            Box::new(|c| c.max_dynamic_descriptors = Some(UInt32Value { value: 0 })),
            "max_dynamic_descriptors",
        ),
        (
            Box::new(|c| {
                c.rate_limits[0].actions[0].action_specifier =
                    Some(ActionSpecifier::RemoteAddress(RemoteAddress {}));
            }),
            "rate_limits[0].actions[0]: action remote_address",
        ),
        (
            Box::new(|c| {
                c.response_headers_to_add[0].header.as_mut().unwrap().value = "%START_TIME%".into()
            }),
            "response_headers_to_add[0]",
        ),
        (Box::new(|c| c.stat_prefix.clear()), "stat_prefix"),
    ];
    for (mutate, want) in cases {
        let mut config = keyed();
        mutate(&mut config);
        let error = convert(config).expect_err(want).to_string();
        assert!(error.contains(want), "{want}: {error}");
    }
}
