//! Ring hash ("ketama"): weighted virtual nodes on a 64-bit circle, sized so that a host keeps
//! its points when other hosts come and go.
//!
//! # Sizing: Weft's rule, not Envoy's
//!
//! Envoy sizes the ring after `minimum_ring_size` alone: the ring always holds about that many
//! points, so a host's share of them, and its number of points, depends on how many hosts there
//! are. Rebuilt after one of ten hosts leaves, each of the nine others gets a ninth more points,
//! which take arcs from their neighbours: 16–20 % of keys move instead of the leaver's 10 %.
//!
//! Weft sizes the ring per unit of weight instead, with the total weight rounded down to a power
//! of two:
//!
//! ```text
//!  W = sum of the hosts' weights         B = largest power of two ≤ W
//!  points(host) = weight × ceil(min / B)          when B ≤ minimum_ring_size
//!               = ceil(weight × min / B)          when B > minimum_ring_size
//!  point i of a host = xxh64("<key>_<i>"), i = 0 .. points(host) − 1
//!
//!  10 hosts of weight 1, min 1024: B = 8, 128 points each, 1280 on the ring
//!   9 or 11 hosts:                 B = 8, still 128 each: only the leaver's (joiner's) keys move
//!   7 hosts:                       B = 4, 256 each: every host gains points, about half the
//!                                  keys move (a bucket boundary, crossed once per doubling)
//! ```
//!
//! A host's point count depends only on its own weight and on `B`, and point `i` of a host is
//! always the same hash, so a rebuild within the same bucket leaves every surviving host's points
//! where they were: only the keys of the host that left move (to the next point's host), or only
//! the keys the new host's points capture. The ring holds between `minimum_ring_size` and about
//! twice it (`W / B < 2`), one point per host at least (so more when hosts outnumber
//! `minimum_ring_size`). Weights are used as given (not divided by their common factor): hosts of
//! weight 100 land in the bucket of their total weight like any other, and the second rule keeps
//! large weights from growing the ring.
//!
//! Should that exceed `maximum_ring_size`, the ring is scaled down uniformly to exactly that many
//! points: host `k` ends at point `ceil((w₀ + … + w_k) × max / W)` of a running sum, so
//! fractional shares are spread in the caller's order (and a host may get no point at all when
//! the hosts far outnumber the maximum). A capped ring loses the stability above: every host's
//! count then depends on every weight.
//!
//! The price: a Weft ring differs from an Envoy ring over the same hosts point for point, so a
//! key may land on another host than Envoy would pick. Weft's proxies only need to agree with each
//! other (they all build the same ring from the same hosts), not with Envoy; key movement on
//! churn, which breaks session affinity and cold-starts caches, is what matters, and it is
//! bounded by the leaver's share except at a bucket boundary.

use std::fmt;

use xxhash_rust::xxh64::xxh64;

use super::{HashError, RING_SIZE_LIMIT, TableStats, check_hosts, walk};

/// A consistent-hash ring over weighted hosts, sized by Weft's rule (the documentation of
/// the `hash::ring` module gives its reasons): a host of weight `w` gets `w × ceil(min / B)` points, `B`
/// being the total weight rounded down to a power of two (`ceil(w × min / B)`, at least one,
/// once `B` exceeds `min`), unless the ring would exceed `maximum_ring_size`. Point `i` of a host is the xxHash64 (seed 0) of `"<key>_<i>"`. A hash
/// picks the host of the first point at or after it, wrapping around to the first point.
///
/// Rebuilt after a host leaves or joins, the other hosts keep every point as long as the total
/// weight stays in the same power-of-two bucket, so only the leaver's (or joiner's) keys move.
/// Skipping an unusable host with [`pick_where`](Self::pick_where) moves only its keys, always.
#[derive(Clone, Default)]
pub struct Ring {
    /// The points, ascending.
    points: Vec<u64>,
    /// The host position of each point.
    hosts: Vec<u32>,
    host_count: usize,
    present_hosts: usize,
    stats: TableStats,
}

/// Checks ring sizes as Envoy does: both in `1..=8M`, minimum not above maximum.
pub(super) fn validate_sizes(
    minimum_ring_size: u64,
    maximum_ring_size: u64,
) -> Result<(), HashError> {
    for (field, value) in [
        ("minimum_ring_size", minimum_ring_size),
        ("maximum_ring_size", maximum_ring_size),
    ] {
        if !(1..=RING_SIZE_LIMIT).contains(&value) {
            return Err(HashError::OutOfRange {
                field,
                value,
                min: 1,
                max: RING_SIZE_LIMIT,
            });
        }
    }
    if minimum_ring_size > maximum_ring_size {
        return Err(HashError::RingSizeBoundsInverted {
            minimum_ring_size,
            maximum_ring_size,
        });
    }
    Ok(())
}

/// The number of points of each host, in the order of `weights` (all at least 1), by the rule
/// of the module documentation. The counts sum to at most `maximum` (at least 1). Exact integer
/// arithmetic: every proxy computes the same counts.
fn point_counts(weights: &[u32], minimum: u64, maximum: u64) -> Vec<u64> {
    // Below 2³² hosts of weight below 2³², and sizes below 2²⁴: no product overflows u128.
    let total: u128 = weights.iter().map(|&weight| u128::from(weight)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let bucket = 1u128 << (u128::BITS - 1 - total.leading_zeros());
    let min = u128::from(minimum);
    let max = u128::from(maximum);
    let points = |weight: u32| {
        let weight = u128::from(weight);
        if bucket <= min {
            weight * min.div_ceil(bucket)
        } else {
            (weight * min).div_ceil(bucket)
        }
    };
    let uncapped: u128 = weights.iter().map(|&weight| points(weight)).sum();
    // Each count is at most the ring's size, at most `maximum`, so it fits a u64.
    let narrow = |count: u128| u64::try_from(count).unwrap_or(u64::MAX);
    if uncapped <= max {
        return weights
            .iter()
            .map(|&weight| narrow(points(weight)))
            .collect();
    }
    // Capped: running sums of the weights scaled to exactly `maximum` points.
    let mut sum = 0u128;
    let mut end = 0u128;
    weights
        .iter()
        .map(|&weight| {
            let start = end;
            sum += u128::from(weight);
            end = (sum * max).div_ceil(total);
            narrow(end - start)
        })
        .collect()
}

impl Ring {
    /// Builds the ring over `hosts`, `(key, weight)` pairs. The key is hashed as given. The
    /// caller's order matters only for a ring capped at `maximum_ring_size`, where hosts get
    /// fractional shares of points.
    ///
    /// Errors: a size outside `1..=8M`, `minimum_ring_size > maximum_ring_size`, a zero weight,
    /// more than [`MAX_HOSTS`](super::MAX_HOSTS) hosts. An empty host list gives an empty ring.
    pub fn new<K: AsRef<str>>(
        hosts: &[(K, u32)],
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    ) -> Result<Self, HashError> {
        validate_sizes(minimum_ring_size, maximum_ring_size)?;
        check_hosts(hosts)?;
        let weights: Vec<u32> = hosts.iter().map(|&(_, weight)| weight).collect();
        let counts = point_counts(&weights, minimum_ring_size, maximum_ring_size);
        // At most `maximum_ring_size` (8M) points.
        let size: u64 = counts.iter().sum();
        let mut entries: Vec<(u64, u32)> =
            Vec::with_capacity(usize::try_from(size).unwrap_or_default());
        let mut key = Vec::new();
        for ((index, (name, _)), &count) in (0u32..).zip(hosts).zip(&counts) {
            key.clear();
            key.extend_from_slice(name.as_ref().as_bytes());
            key.push(b'_');
            let prefix = key.len();
            for point in 0..count {
                key.truncate(prefix);
                push_decimal(&mut key, point);
                entries.push((xxh64(&key, 0), index));
            }
        }
        // Ties between equal points (vanishingly rare) go to the lower host position.
        entries.sort_unstable();
        let (stats, present_hosts) = TableStats::from_counts(entries.len(), &counts);
        let (points, hosts_of_points) = entries.into_iter().unzip();
        Ok(Self {
            points,
            hosts: hosts_of_points,
            host_count: hosts.len(),
            present_hosts,
            stats,
        })
    }

    /// The position of the host `hash` maps to: the first point at or after `hash`, wrapping.
    /// `None` when the ring is empty. O(log points).
    #[must_use]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        self.slot(hash).and_then(|slot| self.host_at(slot))
    }

    /// Like [`pick`](Self::pick), but walks the ring on (as Envoy's retries step along it) past
    /// the hosts `usable` refuses, until one is accepted; see
    /// [`HashTable::pick_where`](super::HashTable::pick_where).
    pub fn pick_where(&self, hash: u64, usable: impl FnMut(usize) -> bool) -> Option<usize> {
        let start = self.slot(hash)?;
        walk(
            start,
            self.points.len(),
            self.host_count,
            self.present_hosts,
            |slot| self.host_at(slot),
            usable,
        )
    }

    /// Points on the ring.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no points (it was built without hosts).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The number of hosts the ring was built from.
    #[must_use]
    pub fn host_count(&self) -> usize {
        self.host_count
    }

    /// Size of the ring and the fewest and most points a host got.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// The index of the first point at or after `hash`, wrapping to 0.
    fn slot(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let slot = self.points.partition_point(|&point| point < hash);
        Some(if slot == self.points.len() { 0 } else { slot })
    }

    fn host_at(&self, slot: usize) -> Option<usize> {
        self.hosts.get(slot).map(|&host| host as usize)
    }
}

/// A summary: a ring can hold millions of points.
impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("host_count", &self.host_count)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Appends `n` in decimal, as Envoy prints the point number.
fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(digit) = digits.get_mut(at) {
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    buf.extend_from_slice(digits.get(at..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::key_hash;

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:8080"), 1)).collect()
    }

    #[test]
    fn decimal_point_numbers() {
        for n in [0, 7, 10, 103, 8_388_607, u64::MAX] {
            let mut buf = b"k_".to_vec();
            push_decimal(&mut buf, n);
            assert_eq!(buf, format!("k_{n}").into_bytes());
        }
    }

    #[test]
    fn points_are_xxhash_of_key_underscore_number() {
        let ring = Ring::new(&[("10.0.0.1:80", 1)], 4, 4).expect("valid ring");
        let mut expected: Vec<u64> = (0..4)
            .map(|i| key_hash(format!("10.0.0.1:80_{i}").as_bytes()))
            .collect();
        expected.sort_unstable();
        assert_eq!(ring.points, expected);
        assert!(ring.hosts.iter().all(|&host| host == 0));
    }

    /// Points per host position.
    fn per_host(ring: &Ring) -> Vec<usize> {
        let mut counts = vec![0; ring.host_count()];
        for &host in &ring.hosts {
            if let Some(count) = counts.get_mut(host as usize) {
                *count += 1;
            }
        }
        counts
    }

    #[test]
    fn points_per_host_follow_the_power_of_two_bucket() {
        // (hosts, minimum, points per host): B = hosts rounded down to a power of two.
        let cases = [
            (1, 1024, 1024),
            (2, 1024, 512),
            (7, 1024, 256),
            (8, 1024, 128),
            (9, 1024, 128),
            (10, 1024, 128),
            (15, 1024, 128),
            (16, 1024, 64),
            (10, 65536, 8192),
            // More hosts than the minimum: one point each.
            (2000, 1024, 1),
            (5000, 1024, 1),
            // A minimum that is no power of two: whole points per unit, rounded up.
            (16, 1000, 63),
        ];
        for (n, min, points) in cases {
            let ring = Ring::new(&hosts(n), min, RING_SIZE_LIMIT).expect("valid ring");
            assert_eq!(ring.len(), n * points, "{n} hosts, minimum {min}");
            assert_eq!(ring.stats().min_entries_per_host, points as u64);
            assert_eq!(ring.stats().max_entries_per_host, points as u64);
        }
    }

    #[test]
    fn ring_holds_between_the_minimum_and_about_twice_it() {
        for min in [1, 7, 100, 1000, 1024, 4096] {
            for n in (1..=70).chain([255, 256, 257, 1023, 1024, 1025, 3000]) {
                let ring = Ring::new(&hosts(n), min, RING_SIZE_LIMIT).expect("valid ring");
                let len = ring.len() as u64;
                let n = n as u64;
                assert!(len >= min.max(n), "{n} hosts, minimum {min}: {len}");
                // W·ceil(min/B) < 2B·(min/B + 1), or W·min/B + n below 2·min + n.
                assert!(len < 2 * min + 2 * n, "{n} hosts, minimum {min}: {len}");
                if min.is_power_of_two() && n <= min {
                    assert!(len < 2 * min, "{n} hosts, minimum {min}: {len}");
                }
            }
        }
    }

    #[test]
    fn hosts_keep_their_points_within_a_bucket() {
        let points_of = |ring: &Ring, all: &[(String, u32)]| {
            let mut by_host: Vec<(String, u64)> = ring
                .points
                .iter()
                .zip(&ring.hosts)
                .filter_map(|(&point, &host)| {
                    all.get(host as usize).map(|(key, _)| (key.clone(), point))
                })
                .collect();
            by_host.sort_unstable();
            by_host
        };
        let ten = hosts(10);
        let base = points_of(
            &Ring::new(&ten, 1024, RING_SIZE_LIMIT).expect("valid"),
            &ten,
        );
        let gone = ten.get(4).map(|(key, _)| key.clone()).unwrap_or_default();
        let nine: Vec<(String, u32)> = ten.iter().filter(|(k, _)| *k != gone).cloned().collect();
        let after = points_of(
            &Ring::new(&nine, 1024, RING_SIZE_LIMIT).expect("valid"),
            &nine,
        );
        let kept: Vec<(String, u64)> = base.iter().filter(|(k, _)| *k != gone).cloned().collect();
        assert_eq!(after, kept);

        let eleven = hosts(11);
        let grown = points_of(
            &Ring::new(&eleven, 1024, RING_SIZE_LIMIT).expect("valid"),
            &eleven,
        );
        let new = eleven
            .get(10)
            .map(|(key, _)| key.clone())
            .unwrap_or_default();
        let old: Vec<(String, u64)> = grown.iter().filter(|(k, _)| *k != new).cloned().collect();
        assert_eq!(old, base);

        // Crossing a bucket (8 → 7 hosts) doubles every host's points; the first half stays.
        let eight = hosts(8);
        let seven = hosts(7);
        let before = points_of(
            &Ring::new(&eight, 1024, RING_SIZE_LIMIT).expect("valid"),
            &eight,
        );
        let after = points_of(
            &Ring::new(&seven, 1024, RING_SIZE_LIMIT).expect("valid"),
            &seven,
        );
        assert_eq!(after.len(), 7 * 256);
        let survivors = before
            .iter()
            .filter(|(k, _)| seven.iter().any(|(s, _)| s == k));
        assert_eq!(survivors.clone().count(), 7 * 128);
        for point in survivors {
            assert!(after.binary_search(point).is_ok(), "{point:?}");
        }
    }

    #[test]
    fn weights_scale_points() {
        // Weights 1, 2, 3: W = 6, B = 4, 256 points per unit of weight.
        let ring =
            Ring::new(&[("a", 1), ("b", 2), ("c", 3)], 1024, RING_SIZE_LIMIT).expect("valid ring");
        assert_eq!(per_host(&ring), [256, 512, 768]);
        assert_eq!(ring.stats().min_entries_per_host, 256);
        assert_eq!(ring.stats().max_entries_per_host, 768);
        // A minimum that is no power of two keeps exact ratios: 16 hosts, B = 16, 63 per unit.
        let mut hosts = hosts(15);
        hosts.push(("heavy".to_owned(), 2));
        let ring = Ring::new(&hosts, 1000, RING_SIZE_LIMIT).expect("valid ring");
        assert_eq!(per_host(&ring).last().copied(), Some(126));
    }

    #[test]
    fn large_weights_do_not_grow_the_ring() {
        // W = 10⁷, B = 2²³ > 1024: ceil(10⁶ × 1024 / 2²³) = 123 points each.
        let ring = Ring::new(&vec![("h", 1_000_000); 10], 1024, RING_SIZE_LIMIT).expect("valid");
        assert_eq!(ring.len(), 1230);
        let heavy: Vec<(String, u32)> = (0..10).map(|i| (format!("h{i}"), u32::MAX)).collect();
        let ring = Ring::new(&heavy, 1024, RING_SIZE_LIMIT).expect("valid ring");
        assert_eq!(ring.len(), 1280);
        // Weights with a common factor behave like their quotients.
        let hundreds: Vec<(String, u32)> = (0..10).map(|i| (format!("h{i}"), 100)).collect();
        let ring = Ring::new(&hundreds, 1024, RING_SIZE_LIMIT).expect("valid ring");
        assert_eq!(per_host(&ring), [200; 10]);
    }

    #[test]
    fn capped_rings_scale_down_uniformly() {
        // 4 hosts of 2 points would need 8 > 6: 1.5 each, spread by running sums 2, 1, 2, 1.
        let ring = Ring::new(&hosts(4), 6, 6).expect("valid ring");
        assert_eq!(per_host(&ring), [2, 1, 2, 1]);
        // Weights 1, 2, 3 would need 900 points: scaled to 600, exact.
        let ring = Ring::new(&[("a", 1), ("b", 2), ("c", 3)], 600, 600).expect("valid ring");
        assert_eq!(per_host(&ring), [100, 200, 300]);
        // Far more hosts than the maximum: exactly the maximum, some hosts without points.
        let ring = Ring::new(&hosts(3000), 1024, 1024).expect("valid ring");
        assert_eq!(ring.len(), 1024);
        assert_eq!(ring.stats().min_entries_per_host, 0);
        assert_eq!(ring.stats().max_entries_per_host, 1);
        assert_eq!(ring.present_hosts, 1024);
        assert_eq!(ring.pick_where(7, |_| false), None);
    }

    #[test]
    fn lookup_takes_first_point_at_or_after_and_wraps() {
        let ring = Ring::new(&hosts(3), 30, 30).expect("valid ring");
        let first = ring.points.first().copied().expect("points");
        let last = ring.points.last().copied().expect("points");
        let host_of = |slot: usize| ring.hosts.get(slot).map(|&h| h as usize);
        // Exactly on a point, just past it, below the first, past the last.
        for (slot, &point) in ring.points.iter().enumerate() {
            assert_eq!(ring.pick(point), host_of(slot));
            let next = if slot + 1 == ring.len() { 0 } else { slot + 1 };
            if point < u64::MAX {
                assert_eq!(ring.pick(point + 1), host_of(next));
            }
        }
        assert_eq!(ring.pick(0), host_of(0));
        assert_eq!(ring.pick(first.saturating_sub(1)), host_of(0));
        if last < u64::MAX {
            assert_eq!(ring.pick(u64::MAX), host_of(0));
        }
    }

    #[test]
    fn empty_ring_picks_nothing() {
        let ring = Ring::new::<&str>(&[], 1024, RING_SIZE_LIMIT).expect("valid ring");
        assert!(ring.is_empty());
        assert_eq!(ring.pick(42), None);
        assert_eq!(ring.pick_where(42, |_| true), None);
        assert_eq!(ring.stats(), TableStats::default());
    }

    #[test]
    fn fallback_walks_the_ring_to_the_next_distinct_host() {
        let ring = Ring::new(&hosts(5), 1024, RING_SIZE_LIMIT).expect("valid ring");
        for key in 0..2000u64 {
            let hash = key_hash(&key.to_le_bytes());
            let chosen = ring.pick(hash).expect("hosts");
            assert_eq!(ring.pick_where(hash, |_| true), Some(chosen));
            // The fallback is the next other host clockwise.
            let start = ring.slot(hash).expect("points");
            let expected = (1..ring.len())
                .filter_map(|step| ring.host_at((start + step) % ring.len()))
                .find(|&host| host != chosen);
            assert_eq!(ring.pick_where(hash, |host| host != chosen), expected);
        }
    }

    #[test]
    fn sizes_rejected() {
        let cases = [
            (0, 1024, "minimum_ring_size"),
            (RING_SIZE_LIMIT + 1, RING_SIZE_LIMIT, "minimum_ring_size"),
            (1024, 0, "maximum_ring_size"),
            (1024, RING_SIZE_LIMIT + 1, "maximum_ring_size"),
            (2048, 1024, "minimum_ring_size"),
        ];
        for (min, max, field) in cases {
            let err = Ring::new(&hosts(3), min, max).expect_err("invalid sizes");
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
        let err = Ring::new(&hosts(3), 2048, 1024).expect_err("inverted");
        assert_eq!(
            err,
            HashError::RingSizeBoundsInverted {
                minimum_ring_size: 2048,
                maximum_ring_size: 1024
            }
        );
        assert!(err.to_string().contains("maximum_ring_size"), "{err}");
    }

    #[test]
    fn zero_weight_rejected() {
        let err = Ring::new(&[("a", 1), ("b", 0)], 1024, RING_SIZE_LIMIT).expect_err("zero weight");
        assert_eq!(err, HashError::ZeroWeight { host: 1 });
        assert_eq!(err.field(), "weight");
        assert_eq!(
            err.to_string(),
            "weight of host 1 is 0: weights must be at least 1"
        );
    }

    #[test]
    fn extreme_weights_stay_within_the_maximum() {
        // W = 2³² = B > 1024: the light host gets its one point, the heavy one 1024.
        let ring = Ring::new(&[("a", 1), ("b", u32::MAX)], 1024, 4096).expect("valid ring");
        assert_eq!(ring.len(), 1025);
        assert_eq!(ring.host_count(), 2);
        assert_eq!(ring.stats().max_entries_per_host, 1024);
        assert_eq!(ring.stats().min_entries_per_host, 1);
        // Capped below that, the light host's share rounds up to one point of 16.
        let ring = Ring::new(&[("a", 1), ("b", u32::MAX)], 16, 16).expect("valid ring");
        assert_eq!(per_host(&ring), [1, 15]);
        assert!(ring.pick(123).is_some());
        assert_eq!(ring.pick_where(123, |_| false), None);
    }
}
