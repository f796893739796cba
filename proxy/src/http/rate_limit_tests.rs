//! The token bucket's fills and the per-value buckets' bound, on tokio's paused clock.

use std::time::Duration;

use super::*;

const SPEC: BucketSpec = BucketSpec {
    max_tokens: 3,
    tokens_per_fill: 2,
    fill_interval: Duration::from_secs(1),
};

#[tokio::test(start_paused = true)]
async fn a_bucket_starts_full_and_fills_every_interval_up_to_its_size() {
    let bucket = TokenBucket::new(SPEC, Instant::now());
    let take = |n: usize| (0..n).filter(|_| bucket.try_take(Instant::now())).count();
    assert_eq!(take(5), 3);
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(take(1), 0, "no fill before the interval");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(take(5), 2, "tokens_per_fill after one interval");
    // 2.5 intervals later: two fills (capped at max_tokens), and the phase is kept.
    tokio::time::advance(Duration::from_millis(2500)).await;
    assert_eq!(take(5), 3);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        take(5),
        2,
        "the next fill is one interval after the last one due"
    );
}

#[tokio::test(start_paused = true)]
async fn per_value_buckets_are_separate_and_bounded_least_recently_used_first() {
    let keyed = KeyedBuckets::new(SPEC, 2);
    let now = Instant::now();
    for _ in 0..3 {
        assert!(keyed.try_take("alice", now));
    }
    assert!(!keyed.try_take("alice", now));
    assert!(keyed.try_take("bob", now), "bob has his own bucket");
    // alice was used after bob's first use: a third key evicts bob.
    assert!(!keyed.try_take("alice", now));
    assert!(keyed.try_take("carol", now));
    assert_eq!(keyed.len(), 2);
    assert!(
        !keyed.try_take("alice", now),
        "alice kept her (empty) bucket"
    );
    for _ in 0..3 {
        assert!(
            keyed.try_take("bob", now),
            "bob's bucket was evicted: a full new one"
        );
    }
}
