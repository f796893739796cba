//! Tests of the outlier detector, with instants built from one base `Instant`.

use super::*;
use std::time::Duration;

/// One base instant; every test time is `at(seconds)` after it.
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn at(&self, secs: u64) -> Instant {
        self.0 + Duration::from_secs(secs)
    }
}

fn config_5xx(n: u32) -> Config {
    Config {
        consecutive_5xx: Some(n),
        ..Config::default()
    }
}

/// A detector over `n` fresh hosts, tagged 0..n.
fn cluster(config: Config, n: usize) -> (Detector<usize>, Vec<Arc<Host<usize>>>) {
    let hosts: Vec<_> = (0..n).map(|i| Arc::new(Host::with_tag(i))).collect();
    let detector = Detector::new(config);
    detector.set_hosts(hosts.iter().cloned());
    (detector, hosts)
}

/// Records `outcome` `times` times; returns the ejections made.
fn repeat(
    d: &Detector<usize>,
    h: &Host<usize>,
    outcome: Outcome,
    times: usize,
    now: Instant,
) -> Vec<Ejection> {
    (0..times)
        .filter_map(|_| d.record(h, outcome, now))
        .collect()
}

#[test]
fn five_consecutive_500s_eject_at_once() {
    let clock = Clock::new();
    let (d, hosts) = cluster(config_5xx(5), 10);
    let h = &hosts[0];
    assert!(repeat(&d, h, Outcome::Status(500), 4, clock.at(0)).is_empty());
    assert!(!h.is_ejected());
    assert_eq!(h.consecutive().errors_5xx, 4);
    let ejection = d.record(h, Outcome::Status(500), clock.at(1));
    assert_eq!(
        ejection,
        Some(Ejection {
            kind: EjectionKind::Consecutive5xx,
            consecutive: 5,
            duration: Duration::from_secs(30),
            times_ejected: 1,
            ejected_hosts: 1,
            total_hosts: 10,
        })
    );
    assert!(h.is_ejected());
    assert_eq!(
        h.consecutive().errors_5xx,
        0,
        "the counter restarts after a detection"
    );
    assert_eq!(
        d.counts(),
        HostCounts {
            total: 10,
            ejected: 1
        }
    );
    assert!((d.healthy_fraction() - 0.9).abs() < 1e-9);
    let stats = d.stats();
    assert_eq!(stats.ejections_enforced_total, 1);
    assert_eq!(stats.ejections_enforced_consecutive_5xx, 1);
    assert_eq!(stats.ejections_detected_consecutive_5xx, 1);
    // More failures of an ejected host do not eject it again.
    assert!(repeat(&d, h, Outcome::Status(500), 12, clock.at(2)).is_empty());
    assert_eq!(d.stats().ejections_enforced_total, 1);
}

#[test]
fn a_success_in_between_resets_the_count() {
    let now = Clock::new().at(0);
    let (d, hosts) = cluster(config_5xx(5), 10);
    let h = &hosts[0];
    repeat(&d, h, Outcome::Status(500), 4, now);
    d.record(h, Outcome::Status(200), now);
    assert_eq!(h.consecutive().errors_5xx, 0);
    assert!(repeat(&d, h, Outcome::Status(503), 4, now).is_empty());
    // 4xx is not an error either.
    d.record(h, Outcome::Status(404), now);
    assert!(repeat(&d, h, Outcome::Status(500), 4, now).is_empty());
    assert!(!h.is_ejected());
    assert_eq!(repeat(&d, h, Outcome::Status(500), 1, now).len(), 1);
}

#[test]
fn gateway_errors_are_502_503_504_only() {
    let now = Clock::new().at(0);
    let config = Config {
        consecutive_gateway_failure: Some(3),
        ..Config::default()
    };
    let (d, hosts) = cluster(config, 10);
    let h = &hosts[0];
    // 500s are 5xx but not gateway errors, and the 5xx detector is off.
    assert!(repeat(&d, h, Outcome::Status(500), 10, now).is_empty());
    repeat(&d, h, Outcome::Status(502), 2, now);
    // A non-gateway 5xx resets the gateway count.
    d.record(h, Outcome::Status(500), now);
    assert_eq!(h.consecutive().gateway_failures, 0);
    d.record(h, Outcome::Status(502), now);
    d.record(h, Outcome::Status(503), now);
    let ejection = d
        .record(h, Outcome::Status(504), now)
        .expect("third gateway error");
    assert_eq!(ejection.kind, EjectionKind::ConsecutiveGatewayFailure);
    assert_eq!(ejection.consecutive, 3);
}

#[test]
fn gateway_detector_runs_before_5xx_as_in_envoy() {
    let now = Clock::new().at(0);
    let config = Config {
        consecutive_5xx: Some(3),
        consecutive_gateway_failure: Some(3),
        ..Config::default()
    };
    let (d, hosts) = cluster(config, 10);
    let ejections = repeat(&d, &hosts[0], Outcome::Status(503), 3, now);
    assert_eq!(ejections.len(), 1);
    assert_eq!(ejections[0].kind, EjectionKind::ConsecutiveGatewayFailure);
    let stats = d.stats();
    assert_eq!(stats.ejections_detected_consecutive_gateway_failure, 1);
    // The 5xx threshold was reached by an ejected host: ignored.
    assert_eq!(stats.ejections_detected_consecutive_5xx, 0);
}

#[test]
fn local_origin_failures_count_as_5xx_and_gateway_unless_split() {
    let now = Clock::new().at(0);
    let config = Config {
        consecutive_5xx: Some(3),
        consecutive_gateway_failure: Some(5),
        consecutive_local_origin_failure: Some(1),
        ..Config::default()
    };
    let (d, hosts) = cluster(config, 10);
    let h = &hosts[0];
    d.record(h, Outcome::LocalOriginFailure, now);
    assert_eq!(
        h.consecutive(),
        Consecutive {
            errors_5xx: 1,
            gateway_failures: 1,
            local_origin_failures: 0
        }
    );
    // A connect success is not a result without the split: the count goes on.
    d.record(h, Outcome::ConnectSuccess, now);
    d.record(h, Outcome::Status(500), now);
    let ejection = d
        .record(h, Outcome::LocalOriginFailure, now)
        .expect("third failure");
    assert_eq!(ejection.kind, EjectionKind::Consecutive5xx);

    // A final local-origin success (TCP) resets both counters.
    let h = &hosts[1];
    repeat(&d, h, Outcome::LocalOriginFailure, 2, now);
    d.record(h, Outcome::LocalOriginSuccess, now);
    assert_eq!(h.consecutive(), Consecutive::default());
}

#[test]
fn split_local_origin_failures_have_their_own_counter() {
    let now = Clock::new().at(0);
    let config = Config {
        consecutive_5xx: Some(3),
        consecutive_local_origin_failure: Some(3),
        split_external_local_origin_errors: true,
        max_ejection_percent: 100,
        ..Config::default()
    };
    let (d, hosts) = cluster(config, 10);
    let h = &hosts[0];
    repeat(&d, h, Outcome::LocalOriginFailure, 2, now);
    repeat(&d, h, Outcome::Status(500), 2, now);
    assert_eq!(
        h.consecutive(),
        Consecutive {
            errors_5xx: 2,
            gateway_failures: 0,
            local_origin_failures: 2
        }
    );
    // Responses do not reset the local-origin count; a connect success does.
    d.record(h, Outcome::Status(200), now);
    assert_eq!(h.consecutive().local_origin_failures, 2);
    d.record(h, Outcome::ConnectSuccess, now);
    assert_eq!(h.consecutive().local_origin_failures, 0);
    assert!(repeat(&d, h, Outcome::LocalOriginFailure, 2, now).is_empty());
    let ejection = d
        .record(h, Outcome::LocalOriginFailure, now)
        .expect("third");
    assert_eq!(ejection.kind, EjectionKind::ConsecutiveLocalOriginFailure);

    // 5xx still eject through their own detector.
    let ejections = repeat(&d, &hosts[1], Outcome::Status(500), 3, now);
    assert_eq!(ejections.len(), 1);
    assert_eq!(ejections[0].kind, EjectionKind::Consecutive5xx);

    // Without its own threshold, a split local-origin failure ejects nothing.
    let config = Config {
        consecutive_5xx: Some(1),
        split_external_local_origin_errors: true,
        ..Config::default()
    };
    let (d, hosts) = cluster(config, 10);
    assert!(repeat(&d, &hosts[0], Outcome::LocalOriginFailure, 20, now).is_empty());
}

#[test]
fn ejection_lasts_base_time_and_ends_at_the_next_sweep() {
    let clock = Clock::new();
    let (d, hosts) = cluster(config_5xx(5), 10);
    let h = &hosts[3];
    repeat(&d, h, Outcome::Status(500), 5, clock.at(0));
    assert!(h.is_ejected());
    assert!(d.sweep(clock.at(10)).is_empty());
    assert!(d.sweep(clock.at(20)).is_empty());
    assert!(d.sweep(clock.at(29)).is_empty());
    let back = d.sweep(clock.at(30));
    assert_eq!(back.len(), 1);
    assert_eq!(*back[0].tag(), 3);
    assert!(!h.is_ejected());
    assert_eq!(h.consecutive(), Consecutive::default());
    assert_eq!(d.counts().ejected, 0);
    let status = d.host_status(h).expect("member");
    assert_eq!(status.returned_at, Some(clock.at(30)));
    assert_eq!(status.times_ejected, 1);
}

#[test]
fn second_ejection_lasts_twice_as_long_and_the_multiplier_decays() {
    let clock = Clock::new();
    let (d, hosts) = cluster(config_5xx(5), 10);
    let h = &hosts[0];
    repeat(&d, h, Outcome::Status(500), 5, clock.at(0));
    assert_eq!(d.sweep(clock.at(30)).len(), 1);
    // Fails again before the next sweep: 2 × 30 s.
    let ejection = repeat(&d, h, Outcome::Status(502), 5, clock.at(31));
    assert_eq!(ejection[0].duration, Duration::from_secs(60));
    assert_eq!(ejection[0].times_ejected, 2);
    assert!(d.sweep(clock.at(40)).is_empty());
    assert!(d.sweep(clock.at(90)).is_empty(), "59 s of 60");
    assert_eq!(d.sweep(clock.at(100)).len(), 1);
    assert_eq!(d.host_status(h).map(|s| s.multiplier), Some(2));
    // Healthy sweeps, each an interval after the return, bring it down to 0.
    d.sweep(clock.at(105));
    assert_eq!(
        d.host_status(h).map(|s| s.multiplier),
        Some(2),
        "back < interval"
    );
    d.sweep(clock.at(110));
    assert_eq!(d.host_status(h).map(|s| s.multiplier), Some(1));
    d.sweep(clock.at(120));
    d.sweep(clock.at(130));
    assert_eq!(d.host_status(h).map(|s| s.multiplier), Some(0));
    let ejection = repeat(&d, h, Outcome::Status(500), 5, clock.at(131));
    assert_eq!(ejection[0].duration, Duration::from_secs(30));
    assert_eq!(ejection[0].times_ejected, 3);
}

#[test]
fn max_ejection_time_caps_the_growth() {
    let clock = Clock::new();
    let config = Config {
        max_ejection_time: Duration::from_secs(60),
        ..config_5xx(1)
    };
    let (d, hosts) = cluster(config, 10);
    let h = &hosts[0];
    let mut durations = Vec::new();
    let mut t = 0;
    for _ in 0..6 {
        let ejection = d
            .record(h, Outcome::Status(500), clock.at(t))
            .expect("ejects");
        durations.push(ejection.duration.as_secs());
        t += ejection.duration.as_secs();
        assert_eq!(d.sweep(clock.at(t)).len(), 1);
    }
    assert_eq!(durations, [30, 60, 60, 60, 60, 60]);
    // Envoy stops the multiplier once base × multiplier reaches max + base.
    assert_eq!(d.host_status(h).map(|s| s.multiplier), Some(3));

    // A max below the base is taken as the base.
    let config = Config {
        max_ejection_time: Duration::from_secs(1),
        ..config_5xx(1)
    };
    assert_eq!(config.ejection_time(4), Duration::from_secs(30));
}

#[test]
fn max_ejection_percent_limits_ejections() {
    let now = Clock::new().at(0);
    let (d, hosts) = cluster(config_5xx(5), 10);
    for h in &hosts[..3] {
        repeat(&d, h, Outcome::Status(500), 5, now);
    }
    assert_eq!(hosts.iter().filter(|h| h.is_ejected()).count(), 1);
    assert!(hosts[0].is_ejected());
    assert_eq!(
        d.counts(),
        HostCounts {
            total: 10,
            ejected: 1
        }
    );
    assert_eq!(d.stats().ejections_overflow, 2);
    assert_eq!(d.stats().ejections_detected_consecutive_5xx, 3);
    // A refused detection restarts the count: 4 more failures do not try again.
    assert_eq!(hosts[1].consecutive().errors_5xx, 0);
    repeat(&d, &hosts[1], Outcome::Status(500), 4, now);
    assert_eq!(d.stats().ejections_overflow, 2);

    let config = Config {
        max_ejection_percent: 50,
        ..config_5xx(1)
    };
    let (d, hosts) = cluster(config, 4);
    for h in &hosts {
        d.record(h, Outcome::Status(500), now);
    }
    assert_eq!(d.counts().ejected, 2);
}

#[test]
fn small_clusters_eject_only_with_always_eject_one_host() {
    let now = Clock::new().at(0);
    // Envoy since 1.31: 100 × 1 / 3 = 33 % > 10 %, so nothing is ejected by default.
    let (d, hosts) = cluster(config_5xx(5), 3);
    for h in &hosts {
        repeat(&d, h, Outcome::Status(500), 5, now);
    }
    assert_eq!(d.counts().ejected, 0);
    assert_eq!(d.stats().ejections_overflow, 3);

    let config = Config {
        always_eject_one_host: true,
        ..config_5xx(5)
    };
    let (d, hosts) = cluster(config, 3);
    for h in &hosts {
        repeat(&d, h, Outcome::Status(500), 5, now);
    }
    assert_eq!(d.counts().ejected, 1);
    assert!(hosts[0].is_ejected());
}

#[test]
fn host_set_changes_keep_kept_hosts_and_forget_removed_ones() {
    let clock = Clock::new();
    let config = Config {
        max_ejection_percent: 50,
        ..config_5xx(5)
    };
    let (d, hosts) = cluster(config, 3);
    let [a, b, c] = [&hosts[0], &hosts[1], &hosts[2]];
    repeat(&d, a, Outcome::Status(500), 5, clock.at(0));
    repeat(&d, b, Outcome::Status(500), 3, clock.at(0));
    let new = Arc::new(Host::with_tag(3));
    d.set_hosts([Arc::clone(a), Arc::clone(b), Arc::clone(&new)]);
    assert!(a.is_ejected(), "kept hosts keep their ejection");
    assert_eq!(b.consecutive().errors_5xx, 3, "and their counters");
    assert_eq!(
        d.counts(),
        HostCounts {
            total: 3,
            ejected: 1
        }
    );
    assert_eq!(d.host_status(c), None);

    // Removing the ejected host frees its share: the ejected count does not leak.
    d.set_hosts([Arc::clone(b), Arc::clone(&new), Arc::clone(b)]);
    assert_eq!(
        d.counts(),
        HostCounts {
            total: 2,
            ejected: 0
        }
    );
    assert!(!a.is_ejected());
    assert_eq!(d.host_status(a), None);
    // Outcomes for a host no longer in the set never eject it.
    assert!(repeat(&d, a, Outcome::Status(500), 10, clock.at(1)).is_empty());
    // b's earlier failures still count: two more make five.
    assert_eq!(repeat(&d, b, Outcome::Status(500), 2, clock.at(1)).len(), 1);
    assert_eq!(
        d.counts(),
        HostCounts {
            total: 2,
            ejected: 1
        }
    );

    // A removed host that comes back starts fresh: no old multiplier.
    d.set_hosts([Arc::clone(a), Arc::clone(c), Arc::clone(&new)]);
    assert!(!b.is_ejected(), "b left while ejected");
    let status = d.host_status(a).expect("member again");
    assert_eq!(status, HostStatus::default());
    let ejection = repeat(&d, a, Outcome::Status(500), 5, clock.at(2));
    assert_eq!(ejection[0].times_ejected, 1);
    assert_eq!(ejection[0].duration, Duration::from_secs(30));
    d.set_hosts(Vec::new());
    assert_eq!(d.counts(), HostCounts::default());
    assert_eq!(d.healthy_fraction(), 0.0);
}

#[test]
fn default_config_never_ejects() {
    let now = Clock::new().at(0);
    assert!(!Config::default().is_enabled());
    let (d, hosts) = cluster(Config::default(), 1);
    assert!(repeat(&d, &hosts[0], Outcome::Status(503), 100, now).is_empty());
    assert!(repeat(&d, &hosts[0], Outcome::LocalOriginFailure, 100, now).is_empty());
    let zero = Config {
        consecutive_5xx: Some(0),
        ..Config::default()
    };
    assert!(!zero.is_enabled());
}

/// A small deterministic generator for the concurrent test (SplitMix64).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn concurrent_recording_stays_consistent() {
    let clock = Clock::new();
    let config = Config {
        consecutive_5xx: Some(3),
        consecutive_gateway_failure: Some(2),
        max_ejection_percent: 50,
        base_ejection_time: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        ..Config::default()
    };
    let (d, hosts) = cluster(config, 16);
    let (d, hosts) = (Arc::new(d), Arc::new(hosts));
    let workers: Vec<_> = (0..8u64)
        .map(|seed| {
            let (d, hosts) = (Arc::clone(&d), Arc::clone(&hosts));
            let base = clock.0;
            std::thread::spawn(move || {
                let mut rng = seed + 1;
                let mut ejections = 0;
                for i in 0..20_000u64 {
                    let host = &hosts[(next(&mut rng) % 16) as usize];
                    let outcome = match next(&mut rng) % 4 {
                        0 => Outcome::Status(200),
                        1 => Outcome::Status(500),
                        2 => Outcome::Status(503),
                        _ => Outcome::LocalOriginFailure,
                    };
                    let now = base + Duration::from_millis(i);
                    if d.record(host, outcome, now).is_some() {
                        ejections += 1;
                    }
                    if seed == 0 && i % 500 == 0 {
                        d.sweep(now);
                    }
                    if seed == 1 && i % 5_000 == 0 {
                        d.set_hosts(hosts.iter().cloned());
                    }
                    assert!(d.counts().ejected <= 8, "never over 50 %");
                }
                ejections
            })
        })
        .collect();
    let ejections: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("no panic"))
        .sum();
    assert!(ejections > 0);
    assert_eq!(d.stats().ejections_enforced_total, ejections);
    let flagged = hosts.iter().filter(|h| h.is_ejected()).count();
    assert_eq!(d.counts().ejected, flagged);
    assert!(flagged <= 8);
    // Long after, every host is back.
    d.sweep(clock.at(3600));
    assert_eq!(
        d.counts(),
        HostCounts {
            total: 16,
            ejected: 0
        }
    );
    assert!(hosts.iter().all(|h| !h.is_ejected()));
}

#[test]
fn the_generation_moves_with_every_ejection_and_return() {
    let clock = Clock::new();
    let config = Config {
        max_ejection_percent: 100,
        ..config_5xx(2)
    };
    let (d, hosts) = cluster(config, 4);
    let start = d.generation();
    // Failures below the threshold change no health.
    d.record(&hosts[0], Outcome::Status(500), clock.at(0));
    assert_eq!(d.generation(), start);
    d.record(&hosts[0], Outcome::Status(500), clock.at(0));
    let ejected = d.generation();
    assert_ne!(ejected, start, "an ejection moves it");
    // A sweep that returns no host leaves it.
    d.sweep(clock.at(1));
    assert_eq!(d.generation(), ejected);
    let before_return = d.generation();
    assert_eq!(d.sweep(clock.at(31)).len(), 1);
    assert_ne!(d.generation(), before_return, "a return moves it");
    let before_set = d.generation();
    d.set_hosts(hosts[1..].iter().cloned());
    assert_ne!(d.generation(), before_set, "a new host set moves it");
}
