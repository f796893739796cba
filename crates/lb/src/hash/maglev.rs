//! Envoy's Maglev: a prime-sized lookup table filled from per-host permutations.

use std::fmt;

use xxhash_rust::xxh64::xxh64;

use super::{HashError, MAX_TABLE_SIZE, TableStats, is_prime, normalized_weights, walk};

/// A Maglev lookup table built as Envoy's `MAGLEV` load balancer builds it (Eisenbud et al.,
/// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016, with Envoy's
/// weighting).
///
/// Hosts are ordered by key (so the table does not depend on the caller's order). Host `h` has
/// the permutation `offset + j × skip (mod size)` with `offset = xxh64(key, 0) mod size` and
/// `skip = xxh64(key, 1) mod (size − 1) + 1`. Hosts take turns claiming the next free slot of
/// their permutation until the table is full; a host of `1/k` the heaviest weight takes a turn
/// every `k`-th round. A hash picks `table[hash mod size]`.
#[derive(Clone)]
pub struct Maglev {
    slots: Slots,
    table_size: u64,
    host_count: usize,
    present_hosts: usize,
    stats: TableStats,
}

/// The table's host positions, two bytes each when the hosts allow (Envoy's compact table
/// saves memory the same way); the largest value marks an unfilled slot.
#[derive(Clone)]
enum Slots {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

/// An unfilled slot while building.
const EMPTY: u32 = u32::MAX;

/// Checks a Maglev table size as Envoy does: a prime no larger than [`MAX_TABLE_SIZE`].
pub(super) fn validate_table_size(table_size: u64) -> Result<(), HashError> {
    if table_size > MAX_TABLE_SIZE {
        return Err(HashError::OutOfRange {
            field: "table_size",
            value: table_size,
            min: 2,
            max: MAX_TABLE_SIZE,
        });
    }
    if !is_prime(table_size) {
        return Err(HashError::TableSizeNotPrime { table_size });
    }
    Ok(())
}

/// A host's state while the table fills.
struct Builder {
    host: u32,
    /// The next slot of its permutation.
    position: u64,
    skip: u64,
    weight: f64,
    /// The weight sum its next turn waits for.
    target: f64,
}

impl Maglev {
    /// Builds the table over `hosts`, `(key, weight)` pairs. The key is hashed as given.
    ///
    /// Errors: `table_size` not prime or above [`MAX_TABLE_SIZE`], a zero weight. An empty host
    /// list gives an empty table.
    pub fn new<K: AsRef<str>>(hosts: &[(K, u32)], table_size: u64) -> Result<Self, HashError> {
        validate_table_size(table_size)?;
        let weights = normalized_weights(hosts)?;
        let Some(max_weight) = weights.iter().copied().reduce(f64::max) else {
            return Ok(Self {
                slots: Slots::Narrow(Box::default()),
                table_size,
                host_count: 0,
                present_hosts: 0,
                stats: TableStats::default(),
            });
        };
        let key = |host: u32| {
            hosts
                .get(host as usize)
                .map(|(key, _)| key.as_ref().as_bytes())
        };
        // Envoy sorts hosts by key so that the table does not depend on their order.
        let mut order: Vec<u32> = (0u32..).take(hosts.len()).collect();
        order.sort_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));
        let mut builders: Vec<Builder> = order
            .into_iter()
            .map(|host| {
                let key = key(host).unwrap_or_default();
                Builder {
                    host,
                    position: xxh64(key, 0) % table_size,
                    skip: xxh64(key, 1) % (table_size - 1) + 1,
                    weight: weights.get(host as usize).copied().unwrap_or(0.0),
                    target: 0.0,
                }
            })
            .collect();

        // At most 5M slots (validated), so the cast is exact.
        let size = table_size as usize;
        let mut table = vec![EMPTY; size];
        let mut counts = vec![0u64; hosts.len()];
        let mut filled = 0;
        // The heaviest host takes a turn every round (its target trails the round by one weight,
        // far more than f64 rounding), so `size` rounds fill the table.
        'fill: for round in 1..=table_size {
            for builder in &mut builders {
                if filled == size {
                    break 'fill;
                }
                if round as f64 * builder.weight < builder.target {
                    continue;
                }
                builder.target += max_weight;
                // The permutation visits every slot within `size` steps (size prime,
                // 0 < skip < size), and a free slot exists.
                for _ in 0..size {
                    let slot = builder.position as usize;
                    builder.position = (builder.position + builder.skip) % table_size;
                    if let Some(cell) = table.get_mut(slot)
                        && *cell == EMPTY
                    {
                        *cell = builder.host;
                        if let Some(count) = counts.get_mut(builder.host as usize) {
                            *count += 1;
                        }
                        filled += 1;
                        break;
                    }
                }
            }
        }

        let (stats, present_hosts) = TableStats::from_counts(size, &counts);
        let slots = if hosts.len() < usize::from(u16::MAX) {
            Slots::Narrow(
                table
                    .iter()
                    .map(|&host| u16::try_from(host).unwrap_or(u16::MAX))
                    .collect(),
            )
        } else {
            Slots::Wide(table.into_boxed_slice())
        };
        Ok(Self {
            slots,
            table_size,
            host_count: hosts.len(),
            present_hosts,
            stats,
        })
    }

    /// The position of the host `hash` maps to: `table[hash mod size]`. `None` when the table
    /// is empty. O(1).
    #[must_use]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        self.slot(hash).and_then(|slot| self.host_at(slot))
    }

    /// Like [`pick`](Self::pick), but when `usable` refuses the host, offers the hosts of the
    /// following slots (which hold hosts in weighted, pseudo-random order) until one is
    /// accepted; see [`HashTable::pick_where`](super::HashTable::pick_where).
    pub fn pick_where(&self, hash: u64, usable: impl FnMut(usize) -> bool) -> Option<usize> {
        let start = self.slot(hash)?;
        walk(
            start,
            self.len(),
            self.host_count,
            self.present_hosts,
            |slot| self.host_at(slot),
            usable,
        )
    }

    /// Slots in the table: `table_size`, or 0 when built without hosts.
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.slots {
            Slots::Narrow(slots) => slots.len(),
            Slots::Wide(slots) => slots.len(),
        }
    }

    /// Whether the table has no slots (it was built without hosts).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured table size.
    #[must_use]
    pub fn table_size(&self) -> u64 {
        self.table_size
    }

    /// The number of hosts the table was built from.
    #[must_use]
    pub fn host_count(&self) -> usize {
        self.host_count
    }

    /// Size of the table and the fewest and most slots a host got.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    fn slot(&self, hash: u64) -> Option<usize> {
        let len = self.len() as u64;
        // The remainder is below the length, a usize.
        (len > 0).then(|| (hash % len) as usize)
    }

    fn host_at(&self, slot: usize) -> Option<usize> {
        match &self.slots {
            Slots::Narrow(slots) => slots
                .get(slot)
                .filter(|&&host| host != u16::MAX)
                .map(|&host| usize::from(host)),
            Slots::Wide(slots) => slots
                .get(slot)
                .filter(|&&host| host != EMPTY)
                .map(|&host| host as usize),
        }
    }
}

/// A summary: a table can hold millions of slots.
impl fmt::Debug for Maglev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maglev")
            .field("table_size", &self.table_size)
            .field("host_count", &self.host_count)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{DEFAULT_TABLE_SIZE, key_hash};

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:8080"), 1)).collect()
    }

    fn table(maglev: &Maglev) -> Vec<Option<usize>> {
        (0..maglev.len()).map(|slot| maglev.host_at(slot)).collect()
    }

    /// Envoy's construction written out literally (permutation `(offset + skip × next) mod
    /// size`, hosts sorted by key), as an oracle for the incremental one.
    fn reference(hosts: &[(&str, u32)], size: u64) -> Vec<Option<usize>> {
        let sum: u64 = hosts.iter().map(|&(_, w)| u64::from(w)).sum();
        let max = hosts.iter().map(|&(_, w)| w).max().unwrap_or(1) as f64 / sum as f64;
        let mut sorted: Vec<usize> = (0..hosts.len()).collect();
        sorted.sort_by_key(|&h| hosts[h].0);
        // (host, offset, skip, next, weight, target)
        let mut entries: Vec<(usize, u64, u64, u64, f64, f64)> = sorted
            .into_iter()
            .map(|h| {
                let key = hosts[h].0.as_bytes();
                let weight = f64::from(hosts[h].1) / sum as f64;
                (
                    h,
                    xxh64(key, 0) % size,
                    xxh64(key, 1) % (size - 1) + 1,
                    0,
                    weight,
                    0.0,
                )
            })
            .collect();
        let mut table = vec![None; size as usize];
        let mut index = 0;
        let mut iteration = 1u32;
        while index < size {
            for entry in entries.iter_mut() {
                if index == size {
                    break;
                }
                if f64::from(iteration) * entry.4 < entry.5 {
                    continue;
                }
                entry.5 += max;
                let mut c = (entry.1 + entry.2 * entry.3) % size;
                while table[c as usize].is_some() {
                    entry.3 += 1;
                    c = (entry.1 + entry.2 * entry.3) % size;
                }
                table[c as usize] = Some(entry.0);
                entry.3 += 1;
                index += 1;
            }
            iteration += 1;
        }
        table
    }

    #[test]
    fn matches_envoys_construction() {
        let cases: [(&[(&str, u32)], u64); 4] = [
            (
                &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1), ("10.0.0.3:80", 1)],
                7,
            ),
            (&[("b:1", 3), ("a:1", 1), ("c:1", 2)], 101),
            (&[("10.1.2.3:9080", 1), ("10.1.2.4:9080", 5)], 65537),
            (&[("x", 1), ("y", 1), ("z", 1), ("w", 1), ("v", 1)], 3),
        ];
        for (hosts, size) in cases {
            let maglev = Maglev::new(hosts, size).expect("valid table");
            assert_eq!(
                table(&maglev),
                reference(hosts, size),
                "{hosts:?} size {size}"
            );
        }
    }

    #[test]
    fn table_is_full_and_equal_hosts_share_it_evenly() {
        let maglev = Maglev::new(&hosts(10), DEFAULT_TABLE_SIZE).expect("valid table");
        assert_eq!(maglev.len(), 65537);
        assert!(table(&maglev).iter().all(Option::is_some));
        let stats = maglev.stats();
        assert_eq!(stats.entries, 65537);
        assert_eq!(
            (stats.min_entries_per_host, stats.max_entries_per_host),
            (6553, 6554)
        );
    }

    #[test]
    fn weights_share_slots() {
        let maglev = Maglev::new(&[("a", 1), ("b", 2)], DEFAULT_TABLE_SIZE).expect("valid table");
        let a = table(&maglev).iter().filter(|&&h| h == Some(0)).count();
        let b = table(&maglev).iter().filter(|&&h| h == Some(1)).count();
        assert_eq!(a + b, 65537);
        assert!(b.abs_diff(2 * a) <= 3, "a {a}, b {b}");
    }

    #[test]
    fn host_order_does_not_matter() {
        let forward = hosts(7);
        let mut backward = forward.clone();
        backward.reverse();
        let forward_table = Maglev::new(&forward, 1009).expect("valid table");
        let backward_table = Maglev::new(&backward, 1009).expect("valid table");
        for key in 0..5000u64 {
            let hash = key_hash(&key.to_be_bytes());
            let f = forward_table.pick(hash).map(|h| &forward[h].0);
            let b = backward_table.pick(hash).map(|h| &backward[h].0);
            assert_eq!(f, b);
        }
    }

    #[test]
    fn wide_table_for_many_hosts() {
        let many = hosts(70_000);
        let maglev = Maglev::new(&many, 131_071).expect("valid table");
        assert!(matches!(maglev.slots, Slots::Wide(_)));
        assert!(table(&maglev).iter().all(Option::is_some));
        let narrow = Maglev::new(&many[..1000], 131_071).expect("valid table");
        assert!(matches!(narrow.slots, Slots::Narrow(_)));
        assert!(narrow.pick(1).is_some_and(|h| h < 1000));
    }

    #[test]
    fn more_hosts_than_slots() {
        let maglev = Maglev::new(&hosts(20), 7).expect("valid table");
        assert!(table(&maglev).iter().all(Option::is_some));
        assert_eq!(maglev.stats().min_entries_per_host, 0);
        assert_eq!(maglev.stats().max_entries_per_host, 1);
        // Only the 7 hosts in the table are offered; refusing them all ends the walk.
        let mut offered = Vec::new();
        let none = maglev.pick_where(12345, |h| {
            offered.push(h);
            false
        });
        assert_eq!(none, None);
        assert_eq!(offered.len(), 7);
    }

    #[test]
    fn fallback_takes_the_next_slots_host() {
        let maglev = Maglev::new(&hosts(5), 1009).expect("valid table");
        for key in 0..2000u64 {
            let hash = key_hash(&key.to_le_bytes());
            let chosen = maglev.pick(hash).expect("hosts");
            assert_eq!(maglev.pick_where(hash, |_| true), Some(chosen));
            let start = (hash % 1009) as usize;
            let expected = (1..1009)
                .filter_map(|step| maglev.host_at((start + step) % 1009))
                .find(|&h| h != chosen);
            assert_eq!(maglev.pick_where(hash, |h| h != chosen), expected);
        }
    }

    #[test]
    fn empty_table_picks_nothing() {
        let maglev = Maglev::new::<&str>(&[], DEFAULT_TABLE_SIZE).expect("valid table");
        assert!(maglev.is_empty());
        assert_eq!(maglev.table_size(), DEFAULT_TABLE_SIZE);
        assert_eq!(maglev.pick(7), None);
        assert_eq!(maglev.pick_where(7, |_| true), None);
    }

    #[test]
    fn table_sizes_checked() {
        for size in [0, 1, 4, 9, 1024, 65536, 65535, 5_000_009] {
            let err = Maglev::new(&hosts(3), size).expect_err("not prime");
            assert_eq!(err, HashError::TableSizeNotPrime { table_size: size });
            assert_eq!(err.field(), "table_size");
            assert!(err.to_string().contains("table_size"), "{err}");
            assert!(err.to_string().contains("not prime"), "{err}");
        }
        let err = Maglev::new(&hosts(3), 5_000_077).expect_err("too large");
        assert!(
            matches!(
                err,
                HashError::OutOfRange {
                    field: "table_size",
                    ..
                }
            ),
            "{err}"
        );
        for size in [2, 3, 7, 1009, DEFAULT_TABLE_SIZE, 131_071] {
            assert!(Maglev::new(&hosts(3), size).is_ok(), "{size}");
        }
        assert!(is_prime(MAX_TABLE_SIZE));
        let err = Maglev::new(&[("a", 0)], DEFAULT_TABLE_SIZE).expect_err("zero weight");
        assert_eq!(err.field(), "weight");
    }
}
