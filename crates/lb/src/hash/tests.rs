//! Properties both tables must have: stable picks, balanced and weighted shares, little key
//! movement when hosts come and go, bounded fallback, checked parameters.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

const KEYS: usize = 100_000;

/// Hashes of random session-like keys, as the proxy would hash cookie values.
fn keys(seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..KEYS)
        .map(|_| key_hash(format!("session-{:016x}", rng.random::<u64>()).as_bytes()))
        .collect()
}

fn endpoint(i: usize) -> String {
    format!("10.44.{}.{}:8080", i / 250, i % 250 + 1)
}

fn hosts(n: usize) -> Vec<(String, u32)> {
    (0..n).map(|i| (endpoint(i), 1)).collect()
}

/// A table under test and what it must achieve with 10 equal hosts.
struct Case {
    name: &'static str,
    config: HashConfig,
    /// Largest relative deviation of a host's share of keys from the fair share.
    share_tolerance: f64,
    /// Largest fraction of keys that may move when the table is rebuilt with one of 10 hosts
    /// removed or an 11th added (the tenth of keys that must move, and the table's own churn):
    /// the project's acceptance criterion, 15 %.
    rebuild_moves: f64,
    /// Of these, the largest fraction of all keys that may move between hosts that stay (from
    /// a surviving host, or to another host than the new one).
    survivors_move: f64,
}

fn cases() -> [Case; 3] {
    [
        // 128 points per host (1280 in all): a host's share has a relative deviation of about
        // 1/√128 ≈ 9%, so the worst of 10 hosts stays within 3σ.
        //
        // 9, 10 and 11 hosts are in the same power-of-two bucket (8): every host keeps its
        // points on rebuild, so no key moves between surviving hosts.
        Case {
            name: "ring 1024",
            config: HashConfig::default(),
            share_tolerance: 0.30,
            rebuild_moves: 0.15,
            survivors_move: 0.0,
        },
        // 8192 points per host: 1/√8192 ≈ 1.1% per host, plus the keys' own sampling noise.
        Case {
            name: "ring 65536",
            config: HashConfig::Ring {
                minimum_ring_size: 65536,
                maximum_ring_size: DEFAULT_MAXIMUM_RING_SIZE,
            },
            share_tolerance: 0.05,
            rebuild_moves: 0.15,
            survivors_move: 0.0,
        },
        // Slot counts differ by at most one; the tolerance is the keys' sampling noise (3σ).
        // A rebuild hands a few slots of surviving hosts to others.
        Case {
            name: "maglev 65537",
            config: HashConfig::maglev(),
            share_tolerance: 0.03,
            rebuild_moves: 0.15,
            survivors_move: 0.02,
        },
    ]
}

fn build(hosts: &[(String, u32)], config: &HashConfig) -> HashTable {
    HashTable::build(hosts, config).expect("valid table")
}

/// Keys per host position.
fn shares(table: &HashTable, keys: &[u64]) -> Vec<usize> {
    let mut shares = vec![0; table.host_count()];
    for &hash in keys {
        if let Some(share) = table.pick(hash).and_then(|host| shares.get_mut(host)) {
            *share += 1;
        }
    }
    shares
}

/// The host key each hash lands on.
fn placement<'a>(table: &HashTable, hosts: &'a [(String, u32)], keys: &[u64]) -> Vec<&'a str> {
    keys.iter()
        .map(|&hash| {
            table
                .pick(hash)
                .and_then(|host| hosts.get(host))
                .map_or("", |(key, _)| key.as_str())
        })
        .collect()
}

/// Fraction of keys whose host changed.
fn moved(before: &[&str], after: &[&str]) -> f64 {
    let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
    moved as f64 / before.len() as f64
}

#[test]
fn key_hash_is_xxhash64_seed_0() {
    // The reference test vectors of XXH64 with seed 0.
    assert_eq!(key_hash(b""), 0xef46_db37_51d8_e999);
    assert_eq!(key_hash(b"a"), 0xd24e_c4f1_a98c_6e5b);
    assert_ne!(key_hash(b"10.0.0.1"), key_hash(b"10.0.0.2"));
}

#[test]
fn same_key_same_host() {
    let hosts = hosts(10);
    let keys = keys(1);
    for Case { name, config, .. } in cases() {
        let table = build(&hosts, &config);
        let rebuilt = build(&hosts, &config);
        for &hash in &keys {
            let host = table.pick(hash);
            assert!(host.is_some(), "{name}");
            assert_eq!(table.pick(hash), host, "{name}");
            assert_eq!(rebuilt.pick(hash), host, "{name}: rebuilt table");
            assert_eq!(table.pick_where(hash, |_| true), host, "{name}");
        }
    }
}

#[test]
fn equal_hosts_get_equal_shares() {
    let hosts = hosts(10);
    let keys = keys(2);
    let fair = KEYS as f64 / 10.0;
    for Case {
        name,
        config,
        share_tolerance: tolerance,
        ..
    } in cases()
    {
        let shares = shares(&build(&hosts, &config), &keys);
        let worst = shares
            .iter()
            .map(|&share| (share as f64 - fair).abs() / fair)
            .fold(0.0, f64::max);
        eprintln!(
            "{name}: keys per host {shares:?}, worst deviation {:.1}%",
            worst * 100.0
        );
        assert!(worst <= tolerance, "{name}: {shares:?} deviates {worst:.3}");
    }
}

#[test]
fn weights_are_respected() {
    let mut hosts = hosts(10);
    if let Some(host) = hosts.get_mut(3) {
        host.1 = 2;
    }
    let keys = keys(3);
    for Case {
        name,
        config,
        share_tolerance: tolerance,
        ..
    } in cases()
    {
        let shares = shares(&build(&hosts, &config), &keys);
        let heavy = shares.get(3).copied().unwrap_or(0) as f64;
        let others = (shares.iter().sum::<usize>() as f64 - heavy) / 9.0;
        let ratio = heavy / others;
        eprintln!("{name}: weight-2 host gets {ratio:.3}× a weight-1 host's keys");
        assert!(
            (ratio - 2.0).abs() <= 2.0 * tolerance,
            "{name}: ratio {ratio:.3}"
        );
        // Expected share 2/11 of the keys.
        let share = heavy / KEYS as f64;
        assert!(
            (share - 2.0 / 11.0).abs() <= 2.0 / 11.0 * tolerance,
            "{name}: {share:.4}"
        );
    }
}

/// Every host list with one of `all` left out, with the key of the one left out.
fn without_one(all: &[(String, u32)]) -> impl Iterator<Item = (&str, Vec<(String, u32)>)> {
    all.iter().enumerate().map(move |(removed, (gone, _))| {
        let rest = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, host)| host.clone())
            .collect();
        (gone.as_str(), rest)
    })
}

/// Fraction of all keys that moved although their host was not the removed one.
fn moved_from_survivors(before: &[&str], after: &[&str], gone: &str) -> f64 {
    let moved = before
        .iter()
        .zip(after)
        .filter(|&(&b, &a)| b != gone && b != a)
        .count();
    moved as f64 / before.len() as f64
}

#[test]
fn unusable_host_moves_only_its_own_keys() {
    // The proxy skips ejected or unhealthy hosts with `pick_where` instead of rebuilding: only
    // the keys of the skipped host move, wherever it sits.
    let all = hosts(10);
    let keys = keys(4);
    for Case { name, config, .. } in cases() {
        let table = build(&all, &config);
        let before = placement(&table, &all, &keys);
        let mut worst: f64 = 0.0;
        for (skipped, (gone, _)) in all.iter().enumerate() {
            let after: Vec<&str> = keys
                .iter()
                .map(|&hash| {
                    table
                        .pick_where(hash, |host| host != skipped)
                        .and_then(|host| all.get(host))
                        .map_or("", |(key, _)| key.as_str())
                })
                .collect();
            assert!(after.iter().all(|&host| host != gone), "{name}");
            assert_eq!(moved_from_survivors(&before, &after, gone), 0.0, "{name}");
            worst = worst.max(moved(&before, &after));
        }
        eprintln!(
            "{name}: skipping 1 of 10 hosts moves at most {:.2}% of keys",
            worst * 100.0
        );
        assert!(worst <= 0.15, "{name}: {worst:.4} of keys moved");
    }
}

#[test]
fn removing_a_host_moves_few_keys() {
    let all = hosts(10);
    let keys = keys(4);
    for Case {
        name,
        config,
        rebuild_moves,
        survivors_move,
        ..
    } in cases()
    {
        let before = placement(&build(&all, &config), &all, &keys);
        let mut worst: f64 = 0.0;
        let mut worst_survivors: f64 = 0.0;
        for (gone, fewer) in without_one(&all) {
            let after = placement(&build(&fewer, &config), &fewer, &keys);
            worst = worst.max(moved(&before, &after));
            worst_survivors = worst_survivors.max(moved_from_survivors(&before, &after, gone));
        }
        eprintln!(
            "{name}: rebuilding without 1 of 10 hosts moves at most {:.2}% of keys, {:.2}% \
             from surviving hosts",
            worst * 100.0,
            worst_survivors * 100.0
        );
        assert!(worst <= rebuild_moves, "{name}: {worst:.4} of keys moved");
        assert!(
            worst_survivors <= survivors_move,
            "{name}: {worst_survivors:.4}"
        );
    }
}

#[test]
fn adding_a_host_moves_few_keys() {
    let all = hosts(11);
    let ten = all.get(..10).unwrap_or_default();
    let keys = keys(5);
    for Case {
        name,
        config,
        rebuild_moves,
        survivors_move,
        ..
    } in cases()
    {
        let before = placement(&build(ten, &config), ten, &keys);
        let after = placement(&build(&all, &config), &all, &keys);
        let moved = moved(&before, &after);
        let new = endpoint(10);
        let to_new = after.iter().filter(|&&host| host == new).count() as f64 / KEYS as f64;
        let elsewhere = before
            .iter()
            .zip(&after)
            .filter(|&(&b, &a)| b != a && a != new)
            .count() as f64
            / KEYS as f64;
        eprintln!(
            "{name}: adding an 11th host moves {:.2}% of keys ({:.2}% to the new host)",
            moved * 100.0,
            to_new * 100.0
        );
        assert!(moved <= rebuild_moves, "{name}: {moved:.4} of keys moved");
        assert!(to_new >= 0.06, "{name}: the new host got {to_new:.4}");
        assert!(
            elsewhere <= survivors_move,
            "{name}: {elsewhere:.4} moved between old hosts"
        );
    }
}

/// Fraction of keys moved when rebuilding over `from` hosts without the last, and when
/// rebuilding over `from - 1` hosts with one added.
fn churn(config: &HashConfig, from: usize, keys: &[u64]) -> (f64, f64) {
    let all = hosts(from);
    let fewer = all.get(..from - 1).unwrap_or_default();
    let many = placement(&build(&all, config), &all, keys);
    let few = placement(&build(fewer, config), fewer, keys);
    (moved(&many, &few), moved(&few, &many))
}

#[test]
fn crossing_a_ring_bucket_moves_more_keys() {
    // Rings double every host's points when the host count falls below a power of two
    // (8 → 7: B = 8 → 4), so about half of the keys change hands once per halving, instead of a
    // little on every change as Envoy's rings do. Within a bucket (9 → 8) nothing extra moves.
    let keys = keys(7);
    for Case { name, config, .. } in cases() {
        let (within, _) = churn(&config, 9, &keys);
        let (removed, added) = churn(&config, 8, &keys);
        let (removed_16, added_16) = churn(&config, 16, &keys);
        eprintln!(
            "{name}: 9 → 8 hosts moves {:.2}% of keys; 8 → 7 {:.2}%, 7 → 8 {:.2}%; \
             16 → 15 {:.2}%, 15 → 16 {:.2}%",
            within * 100.0,
            removed * 100.0,
            added * 100.0,
            removed_16 * 100.0,
            added_16 * 100.0
        );
        assert!(within <= 0.15, "{name}: {within:.4}");
        for moved in [removed, added, removed_16, added_16] {
            assert!(moved <= 0.65, "{name}: {moved:.4} of keys moved");
        }
    }
}

#[test]
fn fallback_skips_unusable_hosts_and_ends() {
    let hosts = hosts(10);
    let keys = keys(6);
    for Case { name, config, .. } in cases() {
        let table = build(&hosts, &config);
        let down = |host: usize| host.is_multiple_of(3);
        let mut spread = vec![0usize; hosts.len()];
        for &hash in keys.iter().take(20_000) {
            let first = table.pick(hash).expect("hosts");
            let mut asked = Vec::new();
            let chosen = table.pick_where(hash, |host| {
                asked.push(host);
                !down(host)
            });
            let chosen = chosen.expect("usable hosts remain");
            assert!(!down(chosen), "{name}");
            if !down(first) {
                assert_eq!(chosen, first, "{name}: a usable first pick is kept");
            }
            // Each host asked once, and the same answer every time.
            let mut distinct = asked.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), asked.len(), "{name}: {asked:?}");
            assert_eq!(
                table.pick_where(hash, |host| !down(host)),
                Some(chosen),
                "{name}"
            );
            if down(first)
                && let Some(count) = spread.get_mut(chosen)
            {
                *count += 1;
            }
        }
        // The keys of unusable hosts spread over all usable ones.
        let usable: Vec<usize> = (0..hosts.len()).filter(|&h| !down(h)).collect();
        assert!(
            usable
                .iter()
                .all(|&h| spread.get(h).is_some_and(|&c| c > 0)),
            "{name}: {spread:?}"
        );

        // None usable: every host asked exactly once, then None.
        for &hash in keys.iter().take(100) {
            let mut asked = 0;
            let none = table.pick_where(hash, |_| {
                asked += 1;
                false
            });
            assert_eq!(none, None, "{name}");
            assert_eq!(asked, hosts.len(), "{name}");
        }
    }
}

#[test]
fn fallback_with_many_hosts_is_bounded() {
    // Beyond the hosts a walk remembers exactly, it still ends after one lap.
    let hosts = hosts(5000);
    for config in [
        HashConfig::default(),
        HashConfig::Maglev { table_size: 10007 },
    ] {
        let table = build(&hosts, &config);
        let mut asked = 0usize;
        assert_eq!(
            table.pick_where(99, |_| {
                asked += 1;
                false
            }),
            None
        );
        assert!(
            asked >= 5000 && asked as u64 <= table.stats().entries,
            "{asked}"
        );
        // The last host is still found.
        assert_eq!(table.pick_where(99, |host| host == 4999), Some(4999));
    }
}

#[test]
fn empty_tables_pick_nothing() {
    for Case { name, config, .. } in cases() {
        let table = HashTable::build::<String>(&[], &config).expect("valid table");
        assert_eq!(table.host_count(), 0, "{name}");
        assert_eq!(table.pick(0), None, "{name}");
        assert_eq!(table.pick(u64::MAX), None, "{name}");
        assert_eq!(table.pick_where(1, |_| true), None, "{name}");
        assert_eq!(table.stats().entries, 0, "{name}");
    }
}

#[test]
fn debug_output_is_a_summary() {
    for Case { name, config, .. } in cases() {
        let table = build(&hosts(10), &config);
        let debug = format!("{table:?}");
        assert!(debug.contains("host_count: 10"), "{name}: {debug}");
        assert!(debug.len() < 300, "{name}: {debug}");
    }
}

#[test]
fn single_host_takes_every_key() {
    for Case { name, config, .. } in cases() {
        let table = build(&hosts(1), &config);
        for hash in [0, 1, 1 << 63, u64::MAX] {
            assert_eq!(table.pick(hash), Some(0), "{name}");
        }
        assert_eq!(table.pick_where(5, |_| false), None, "{name}");
    }
}

#[test]
fn invalid_configs_name_their_field() {
    let cases = [
        (
            HashConfig::Ring {
                minimum_ring_size: 0,
                maximum_ring_size: 1024,
            },
            "minimum_ring_size",
        ),
        (
            HashConfig::Ring {
                minimum_ring_size: 1024,
                maximum_ring_size: RING_SIZE_LIMIT + 1,
            },
            "maximum_ring_size",
        ),
        (
            HashConfig::Ring {
                minimum_ring_size: 4096,
                maximum_ring_size: 1024,
            },
            "minimum_ring_size",
        ),
        (HashConfig::Maglev { table_size: 65536 }, "table_size"),
        (
            HashConfig::Maglev {
                table_size: MAX_TABLE_SIZE + 2,
            },
            "table_size",
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().expect_err("invalid config");
        assert_eq!(err.field(), field, "{config:?}");
        assert!(err.to_string().contains(field), "{err}");
        let built = HashTable::build(&hosts(2), &config).expect_err("invalid config");
        assert_eq!(built, err);
    }
    assert!(HashConfig::default().validate().is_ok());
    assert!(HashConfig::maglev().validate().is_ok());

    let zero = [("10.0.0.1:80", 1), ("10.0.0.2:80", 0)];
    for config in [HashConfig::default(), HashConfig::maglev()] {
        let err = HashTable::build(&zero, &config).expect_err("zero weight");
        assert_eq!(err, HashError::ZeroWeight { host: 1 });
        assert_eq!(err.field(), "weight");
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.to_string().contains("weight of host 1"));
    }
}
