//! Consistent hashing of request keys onto endpoints: a ring hash and Maglev, configured as
//! Envoy's `RING_HASH` and `MAGLEV` are (Istio's DestinationRule
//! `trafficPolicy.loadBalancer.consistentHash`). Maglev tables are built as Envoy builds them;
//! rings use Envoy's points (`xxh64("<key>_<i>")`) but Weft's own sizing, which keeps hosts'
//! points in place when other hosts come and go (see [`Ring`]). Weft's proxies agree with each
//! other on every key; they need not agree with Envoy.
//!
//! The proxy hashes the request's key (a header value, a cookie, the source IP, a query
//! parameter) with [`key_hash`] and asks a table for a host; hosts are `(key, weight)` pairs
//! whose key is the endpoint's address as Envoy prints it (`10.0.0.1:8080`, `[fd00::1]:8080`).
//!
//! ```text
//!  Ring hash (ketama)                             Maglev
//!  a host of weight w puts w×ceil(min/B) points   a prime number of slots; hosts take turns (as
//!  on a 64-bit circle (B: total weight rounded    often as their weight allows) claiming the
//!  down to a power of two),                       next free slot of their own permutation:
//!  point i = xxh64("<key>_<i>")                     offset = xxh64(key, 0) mod size
//!                                                   skip   = xxh64(key, 1) mod (size−1) + 1
//!  0 ──●───●──●────●───●──●──────●──► 2⁶⁴−1         slot j = offset + j·skip mod size
//!      A   B  A    C   B  C      A
//!         ▲                                       slot: 0 1 2 3 4 5 6
//!    h ───┘ first point ≥ h (wraps to the first)  host: B A C A B C A   pick: table[h mod size]
//!  pick: binary search, O(log points)
//!
//!  host skipped (pick_where): only its keys       host skipped: only its keys move, to the
//!  move, to the next points' hosts                next slots' hosts
//!  rebuilt without it: the others keep their      rebuilt without it: its slots go to the others
//!  points while B stays, so only its keys move;   and a few other slots change hands (well
//!  when B halves, about half of the keys move     under 1% of keys for 10 hosts, 65537 slots)
//! ```
//!
//! Both tables index the caller's host slice: `pick` returns the position of the chosen host in
//! the slice the table was built from. Picking never allocates. When the chosen host is
//! unusable (ejected, already tried), [`HashTable::pick_where`] walks on from the same position
//! to the next distinct hosts, so every proxy that sees the same unusable hosts sends a key to the
//! same fallback.

mod maglev;
mod ring;
#[cfg(test)]
mod tests;

pub use maglev::Maglev;
pub use ring::Ring;

use std::fmt;

/// Envoy's default `ring_hash_lb_config.minimum_ring_size` (Istio's `minimumRingSize`).
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
/// Envoy's default `ring_hash_lb_config.maximum_ring_size`.
pub const DEFAULT_MAXIMUM_RING_SIZE: u64 = RING_SIZE_LIMIT;
/// The largest `minimum_ring_size` and `maximum_ring_size` Envoy accepts (8M points).
pub const RING_SIZE_LIMIT: u64 = 8 * 1024 * 1024;
/// Envoy's default `maglev_lb_config.table_size` (Istio's `maglev.tableSize`), a prime.
pub const DEFAULT_TABLE_SIZE: u64 = 65537;
/// The largest Maglev `table_size` Envoy accepts, a prime.
pub const MAX_TABLE_SIZE: u64 = 5_000_011;
/// The most hosts a table can index (host positions are stored as `u32`, one value reserved).
pub const MAX_HOSTS: usize = u32::MAX as usize - 1;

/// The hash of a request key, as Envoy computes it for hash policies: xxHash64 with seed 0 over
/// exactly the given bytes (a header value, a cookie value, the source IP printed as text, a
/// query parameter value). Feed the result to [`HashTable::pick`].
#[must_use]
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

/// Which table to build and its size parameters, as configured by a cluster's `lb_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashConfig {
    /// A ring hash configured by Envoy's `ring_hash_lb_config` (sized by Weft's rule, see
    /// [`Ring`]).
    Ring {
        /// Fewest points on the ring (Envoy's default 1024); more points, finer weights.
        minimum_ring_size: u64,
        /// Most points on the ring (Envoy's default and limit 8M).
        maximum_ring_size: u64,
    },
    /// Envoy's `MAGLEV` with its `maglev_lb_config`.
    Maglev {
        /// Number of slots, a prime (Envoy's default 65537).
        table_size: u64,
    },
}

impl Default for HashConfig {
    /// A ring hash with Envoy's default sizes (Istio's `consistentHash` without `maglev`).
    fn default() -> Self {
        Self::Ring {
            minimum_ring_size: DEFAULT_MINIMUM_RING_SIZE,
            maximum_ring_size: DEFAULT_MAXIMUM_RING_SIZE,
        }
    }
}

impl HashConfig {
    /// Maglev with Envoy's default table size.
    #[must_use]
    pub const fn maglev() -> Self {
        Self::Maglev {
            table_size: DEFAULT_TABLE_SIZE,
        }
    }

    /// Checks the size parameters as Envoy does when it accepts a cluster, before any host is
    /// known; [`HashTable::build`] checks them again.
    pub fn validate(&self) -> Result<(), HashError> {
        match *self {
            Self::Ring {
                minimum_ring_size,
                maximum_ring_size,
            } => ring::validate_sizes(minimum_ring_size, maximum_ring_size),
            Self::Maglev { table_size } => maglev::validate_table_size(table_size),
        }
    }
}

/// A consistent-hash table over a set of weighted hosts: a [`Ring`] or a [`Maglev`] table.
#[derive(Debug, Clone)]
pub enum HashTable {
    /// A ring hash.
    Ring(Ring),
    /// Envoy's Maglev.
    Maglev(Maglev),
}

impl HashTable {
    /// Builds the table `config` asks for over `hosts`, `(key, weight)` pairs; see [`Ring::new`]
    /// and [`Maglev::new`].
    pub fn build<K: AsRef<str>>(
        hosts: &[(K, u32)],
        config: &HashConfig,
    ) -> Result<Self, HashError> {
        match *config {
            HashConfig::Ring {
                minimum_ring_size,
                maximum_ring_size,
            } => Ring::new(hosts, minimum_ring_size, maximum_ring_size).map(Self::Ring),
            HashConfig::Maglev { table_size } => Maglev::new(hosts, table_size).map(Self::Maglev),
        }
    }

    /// The position in the host slice of the host `hash` maps to; `None` when there are no hosts.
    #[must_use]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        match self {
            Self::Ring(ring) => ring.pick(hash),
            Self::Maglev(maglev) => maglev.pick(hash),
        }
    }

    /// Like [`pick`](Self::pick), but when `usable` refuses the host, walks on to the next
    /// distinct hosts in the table's order until one is usable; `None` when none is.
    ///
    /// Deterministic: the same hash and the same refusals give the same host. With at most
    /// 4096 hosts `usable` is called at most once per host and the walk stops once every host
    /// in the table was refused; with more, a host may be asked again, and the walk is bounded
    /// by one lap of the table (its number of points or slots). Never allocates.
    pub fn pick_where(&self, hash: u64, usable: impl FnMut(usize) -> bool) -> Option<usize> {
        match self {
            Self::Ring(ring) => ring.pick_where(hash, usable),
            Self::Maglev(maglev) => maglev.pick_where(hash, usable),
        }
    }

    /// The number of hosts the table was built from.
    #[must_use]
    pub fn host_count(&self) -> usize {
        match self {
            Self::Ring(ring) => ring.host_count(),
            Self::Maglev(maglev) => maglev.host_count(),
        }
    }

    /// Size and balance of the table (Envoy's `ring_hash_lb.*` / `maglev_lb.*` gauges).
    #[must_use]
    pub fn stats(&self) -> TableStats {
        match self {
            Self::Ring(ring) => ring.stats(),
            Self::Maglev(maglev) => maglev.stats(),
        }
    }
}

/// How a table came out: how many entries it has and how evenly hosts got them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    /// Points on the ring, or slots of the Maglev table (0 without hosts).
    pub entries: u64,
    /// Entries of the host with the fewest (0 when some host got none: a too small table).
    pub min_entries_per_host: u64,
    /// Entries of the host with the most.
    pub max_entries_per_host: u64,
}

impl TableStats {
    /// The stats of a table whose hosts got `counts` entries each, and how many hosts got any.
    fn from_counts(entries: usize, counts: &[u64]) -> (Self, usize) {
        let stats = Self {
            entries: entries as u64,
            min_entries_per_host: counts.iter().copied().min().unwrap_or(0),
            max_entries_per_host: counts.iter().copied().max().unwrap_or(0),
        };
        (stats, counts.iter().filter(|&&count| count > 0).count())
    }
}

/// A table or configuration refused, naming the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashError {
    /// A host has weight 0 (Envoy's endpoint weights are at least 1).
    ZeroWeight {
        /// Position of the host in the slice.
        host: usize,
    },
    /// More hosts than [`MAX_HOSTS`].
    TooManyHosts {
        /// How many were given.
        count: usize,
    },
    /// A size outside the range Envoy accepts.
    OutOfRange {
        /// Envoy's name of the parameter (`minimum_ring_size`, `maximum_ring_size`, `table_size`).
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
    },
    /// `minimum_ring_size` is greater than `maximum_ring_size`.
    RingSizeBoundsInverted {
        /// The minimum given.
        minimum_ring_size: u64,
        /// The maximum given.
        maximum_ring_size: u64,
    },
    /// The Maglev `table_size` is not a prime.
    TableSizeNotPrime {
        /// The size given.
        table_size: u64,
    },
}

impl HashError {
    /// The name of the parameter at fault: `weight`, `hosts`, `minimum_ring_size`,
    /// `maximum_ring_size` or `table_size`.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::ZeroWeight { .. } => "weight",
            Self::TooManyHosts { .. } => "hosts",
            Self::OutOfRange { field, .. } => field,
            Self::RingSizeBoundsInverted { .. } => "minimum_ring_size",
            Self::TableSizeNotPrime { .. } => "table_size",
        }
    }
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroWeight { host } => {
                write!(f, "weight of host {host} is 0: weights must be at least 1")
            }
            Self::TooManyHosts { count } => {
                write!(
                    f,
                    "hosts: {count} hosts, more than the {MAX_HOSTS} a table can index"
                )
            }
            Self::OutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "{field} {value} is out of range: must be in {min}..={max}"
            ),
            Self::RingSizeBoundsInverted {
                minimum_ring_size,
                maximum_ring_size,
            } => write!(
                f,
                "minimum_ring_size ({minimum_ring_size}) is greater than maximum_ring_size \
                 ({maximum_ring_size})"
            ),
            Self::TableSizeNotPrime { table_size } => {
                write!(
                    f,
                    "table_size {table_size} is not prime: Maglev needs a prime table size"
                )
            }
        }
    }
}

impl std::error::Error for HashError {}

/// Refuses more hosts than a table can index and zero weights.
fn check_hosts<K>(hosts: &[(K, u32)]) -> Result<(), HashError> {
    if hosts.len() > MAX_HOSTS {
        return Err(HashError::TooManyHosts { count: hosts.len() });
    }
    if let Some(host) = hosts.iter().position(|&(_, weight)| weight == 0) {
        return Err(HashError::ZeroWeight { host });
    }
    Ok(())
}

/// Envoy's normalized weights: each host's weight over the sum of all weights.
fn normalized_weights<K>(hosts: &[(K, u32)]) -> Result<Vec<f64>, HashError> {
    check_hosts(hosts)?;
    // At most MAX_HOSTS weights below 2³², so the sum stays below 2⁶⁴.
    let sum: u64 = hosts.iter().map(|&(_, weight)| u64::from(weight)).sum();
    let sum = sum as f64;
    Ok(hosts
        .iter()
        .map(|&(_, weight)| f64::from(weight) / sum)
        .collect())
}

/// Host positions already refused during a [`walk`], without allocating: a bit set for the
/// first [`TRACKED_HOSTS`] positions, and the last refused one beyond.
struct Refused {
    bits: [u64; TRACKED_HOSTS / 64],
    distinct: usize,
    last_untracked: Option<usize>,
}

/// Hosts whose refusals a walk remembers exactly.
const TRACKED_HOSTS: usize = 4096;

impl Refused {
    fn new() -> Self {
        Self {
            bits: [0; TRACKED_HOSTS / 64],
            distinct: 0,
            last_untracked: None,
        }
    }

    fn contains(&self, host: usize) -> bool {
        match self.bits.get(host / 64) {
            Some(word) => word & (1 << (host % 64)) != 0,
            None => self.last_untracked == Some(host),
        }
    }

    fn insert(&mut self, host: usize) {
        match self.bits.get_mut(host / 64) {
            Some(word) => {
                let bit = 1 << (host % 64);
                if *word & bit == 0 {
                    *word |= bit;
                    self.distinct += 1;
                }
            }
            None => self.last_untracked = Some(host),
        }
    }
}

/// The fallback walk both tables share: from `start`, the slots `start, start+1, …` (wrapping,
/// one lap at most) are offered in turn, each host once where it can be remembered, until
/// `usable` accepts one. `present_hosts` is how many distinct hosts the table holds, so the walk
/// can stop as soon as all of them were refused.
fn walk(
    start: usize,
    len: usize,
    host_count: usize,
    present_hosts: usize,
    host_at: impl Fn(usize) -> Option<usize>,
    mut usable: impl FnMut(usize) -> bool,
) -> Option<usize> {
    if start >= len {
        return None;
    }
    // The common case first: the hashed host is usable, no bookkeeping.
    let first = host_at(start);
    if let Some(host) = first
        && usable(host)
    {
        return Some(host);
    }
    let mut refused = Refused::new();
    if let Some(host) = first {
        refused.insert(host);
    }
    let exact = host_count <= TRACKED_HOSTS;
    for step in 1..len {
        if exact && refused.distinct >= present_hosts {
            return None;
        }
        let Some(host) = host_at((start + step) % len) else {
            continue;
        };
        if refused.contains(host) {
            continue;
        }
        if usable(host) {
            return Some(host);
        }
        refused.insert(host);
    }
    None
}

/// Whether `n` is prime (trial division; sizes here are at most a few million).
fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let mut divisor = 5;
    while divisor <= n / divisor {
        if n.is_multiple_of(divisor) || n.is_multiple_of(divisor + 2) {
            return false;
        }
        divisor += 6;
    }
    true
}
