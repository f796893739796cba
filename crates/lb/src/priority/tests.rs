//! Tests of the priority load and locality weights, against Envoy's documented examples.

use super::*;

const F: u32 = DEFAULT_OVERPROVISIONING_FACTOR;

/// Levels from (total, healthy) pairs.
fn levels(counts: &[(u64, u64)]) -> Vec<LevelHealth> {
    counts
        .iter()
        .map(|&(t, h)| LevelHealth::new(t, h))
        .collect()
}

fn loads(counts: &[(u64, u64)]) -> Vec<u32> {
    PriorityLoad::compute(&levels(counts), F).loads().to_vec()
}

/// How many of the 100 points 0..100 go to each level.
fn picks(load: &PriorityLoad) -> Vec<u32> {
    let mut counts = vec![0; load.len()];
    for point in 0..100u64 {
        counts[load.pick(point)] += 1;
    }
    counts
}

#[test]
fn all_healthy_stays_in_p0() {
    let load = PriorityLoad::compute(&levels(&[(10, 10), (10, 10)]), F);
    assert_eq!(load.loads(), [100, 0]);
    assert_eq!(picks(&load), [100, 0]);
    assert!(!load.in_panic(0) && !load.total_panic());
}

#[test]
fn half_healthy_p0_spills_30_percent() {
    let load = PriorityLoad::compute(&levels(&[(10, 5), (4, 4)]), F);
    assert_eq!(load.loads(), [70, 30]);
    assert_eq!(picks(&load), [70, 30]);
    // Envoy maps the point as `point % 100 + 1` against the cumulative loads.
    assert_eq!(load.pick(69), 0);
    assert_eq!(load.pick(70), 1);
    assert_eq!(load.pick(170), 1);
    assert_eq!(load.pick(u64::MAX), 0, "u64::MAX % 100 = 15");
}

#[test]
fn envoy_documented_two_level_table() {
    // P0 healthy share → traffic to P0 / P1, P1 fully healthy.
    assert_eq!(loads(&[(100, 100), (10, 10)]), [100, 0]);
    assert_eq!(loads(&[(100, 72), (10, 10)]), [100, 0]);
    assert_eq!(loads(&[(100, 71), (10, 10)]), [99, 1]);
    assert_eq!(loads(&[(100, 50), (10, 10)]), [70, 30]);
    assert_eq!(loads(&[(100, 25), (10, 10)]), [35, 65]);
    assert_eq!(loads(&[(100, 0), (10, 10)]), [0, 100]);
}

#[test]
fn p0_down_goes_to_p1_and_comes_back() {
    assert_eq!(loads(&[(3, 0), (3, 3)]), [0, 100]);
    let load = PriorityLoad::compute(&levels(&[(3, 0), (3, 3)]), F);
    assert_eq!(picks(&load), [0, 100]);
    assert_eq!(loads(&[(3, 2), (3, 3)]), [93, 7], "140 × 2 / 3 = 93");
    assert_eq!(loads(&[(3, 3), (3, 3)]), [100, 0]);
}

#[test]
fn three_levels() {
    assert_eq!(loads(&[(4, 4), (4, 4), (4, 4)]), [100, 0, 0]);
    assert_eq!(loads(&[(100, 71), (100, 71), (10, 10)]), [99, 1, 0]);
    assert_eq!(loads(&[(100, 50), (100, 50), (10, 10)]), [70, 30, 0]);
    assert_eq!(loads(&[(100, 25), (100, 100), (10, 10)]), [35, 65, 0]);
    assert_eq!(loads(&[(100, 25), (100, 25), (10, 10)]), [35, 35, 30]);
    assert_eq!(loads(&[(4, 0), (4, 0), (4, 4)]), [0, 0, 100]);
}

#[test]
fn degraded_everywhere_is_normalized() {
    // Health 35 + 35 = 70 < 100: scaled up to 50 / 50.
    assert_eq!(loads(&[(100, 25), (100, 25)]), [50, 50]);
    // Health 20 and 30 (140 × 1 / 7, 140 × 3 / 14): 40 / 60, Envoy's own example.
    assert_eq!(loads(&[(7, 1), (14, 3)]), [40, 60]);
    // Health 35, 35, 28 (total 98): 35, 35, 28 and the 2 left over go to P0. (Envoy's docs
    // table shows 36 / 36 / 28; its code gives this.)
    assert_eq!(loads(&[(100, 25), (100, 25), (100, 20)]), [37, 35, 28]);
    // Nothing healthy anywhere, panic off: P0 takes the load (and has nothing to pick).
    assert_eq!(loads(&[(4, 0), (4, 0)]), [100, 0]);
}

#[test]
fn panic_per_level_and_total() {
    // Normalized total 100: no panic even with a weak P0.
    let load = PriorityLoad::compute_with_panic(&levels(&[(10, 2), (10, 10)]), F, 50);
    assert_eq!(load.loads(), [28, 72]);
    assert!(!load.in_panic(0) && !load.in_panic(1));

    // Total 84 + 14 = 98: P1 (10 % healthy) is in panic, P0 (60 %) is not.
    let load = PriorityLoad::compute_with_panic(&levels(&[(10, 6), (10, 1)]), F, 50);
    assert_eq!(load.loads(), [86, 14]);
    assert!(!load.in_panic(0));
    assert!(load.in_panic(1));
    assert!(!load.total_panic());

    // Both below 50 %: total panic, the load follows host counts.
    let load = PriorityLoad::compute_with_panic(&levels(&[(10, 2), (30, 12)]), F, 50);
    assert!(load.total_panic());
    assert_eq!(load.loads(), [25, 75]);
    // All down with panic on: total panic by host counts too.
    let load = PriorityLoad::compute_with_panic(&levels(&[(2, 0), (1, 0)]), F, 50);
    assert!(load.total_panic());
    assert_eq!(load.loads(), [67, 33]);
    // Panic threshold 0 never panics.
    let load = PriorityLoad::compute_with_panic(&levels(&[(10, 2), (30, 12)]), F, 0);
    assert!(!load.in_panic(0) && !load.total_panic());
}

#[test]
fn empty_inputs_never_fail() {
    for threshold in [0, 50, 200] {
        let load = PriorityLoad::compute_with_panic(&[], F, threshold);
        assert_eq!(load.loads(), [100]);
        assert_eq!(load.pick(12345), 0);
        let load = PriorityLoad::compute_with_panic(&levels(&[(0, 0), (0, 0)]), F, threshold);
        assert_eq!(load.loads(), [100, 0]);
    }
    assert_eq!(LevelHealth::new(0, 5).health(F), 0);
    assert_eq!(
        LevelHealth::new(2, 5).health(F),
        100,
        "healthy is capped at total"
    );
    assert_eq!(LevelHealth::new(u64::MAX, u64::MAX).health(u32::MAX), 100);
    let load = PriorityLoad::compute(&levels(&[(u64::MAX, 1), (u64::MAX, u64::MAX)]), 0);
    assert_eq!(load.loads(), [100, 0], "factor 0: no health anywhere");
    assert_eq!(load.load(7), 0);
    assert!(!load.in_panic(7));
}

/// Shares of `n` evenly spread points per locality.
fn locality_shares(weights: &LocalityWeights, n: u64) -> Vec<f64> {
    let mut counts = vec![0u64; weights.len()];
    for i in 0..n {
        let point = (u128::from(i) * (1u128 << 64) / u128::from(n)) as u64;
        if let Some(index) = weights.pick(point) {
            counts[index] += 1;
        }
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

fn locality(weight: u32, total: u64, healthy: u64) -> LocalityHealth {
    LocalityHealth {
        weight,
        total,
        healthy,
    }
}

#[test]
fn locality_weights_80_20_are_honored() {
    let weights = LocalityWeights::compute(&[locality(80, 4, 4), locality(20, 2, 2)], F);
    assert_eq!(weights.effective_weight(0), 80.0);
    assert_eq!(weights.effective_weight(1), 20.0);
    assert_eq!(weights.total_weight(), 100.0);
    let shares = locality_shares(&weights, 10_000);
    assert!((shares[0] - 0.8).abs() < 1e-3, "{shares:?}");
    assert!((shares[1] - 0.2).abs() < 1e-3, "{shares:?}");
    assert_eq!(weights.pick(0), Some(0));
    assert_eq!(weights.pick(u64::MAX), Some(1));
}

#[test]
fn locality_weights_shift_when_a_locality_loses_hosts() {
    // 80 % of A healthy: × 1.4 = 112 %, capped: no shift yet.
    let weights = LocalityWeights::compute(&[locality(80, 10, 8), locality(20, 5, 5)], F);
    assert_eq!(weights.effective_weight(0), 80.0);
    // Half of A healthy: availability 0.7, weight 56 against 20.
    let weights = LocalityWeights::compute(&[locality(80, 10, 5), locality(20, 5, 5)], F);
    assert!((weights.effective_weight(0) - 56.0).abs() < 1e-6);
    let shares = locality_shares(&weights, 10_000);
    assert!((shares[0] - 56.0 / 76.0).abs() < 1e-3, "{shares:?}");
    // A down: everything to B.
    let weights = LocalityWeights::compute(&[locality(80, 10, 0), locality(20, 5, 5)], F);
    assert_eq!(locality_shares(&weights, 1_000), [0.0, 1.0]);
    // Everything down, zero weights or no localities: no locality to pick.
    let down = LocalityWeights::compute(&[locality(80, 10, 0), locality(20, 5, 0)], F);
    assert_eq!(down.pick(42), None);
    let unweighted = LocalityWeights::compute(&[locality(0, 10, 10)], F);
    assert_eq!(unweighted.pick(42), None);
    assert_eq!(LocalityWeights::compute(&[], F).pick(42), None);
    assert_eq!(down.effective_weight(9), 0.0);
}

#[test]
fn zero_weight_localities_are_skipped_and_huge_values_do_not_overflow() {
    let weights = LocalityWeights::compute(
        &[
            locality(0, 3, 3),
            locality(5, 3, 3),
            locality(0, 3, 3),
            locality(5, 3, 3),
        ],
        F,
    );
    assert_eq!(locality_shares(&weights, 1_000), [0.0, 0.5, 0.0, 0.5]);
    let huge = LocalityWeights::compute(
        &[
            locality(u32::MAX, u64::MAX, u64::MAX),
            locality(u32::MAX, u64::MAX, u64::MAX / 2),
        ],
        u32::MAX,
    );
    assert_eq!(huge.pick(u64::MAX), Some(1));
    assert_eq!(huge.pick(0), Some(0));
}
