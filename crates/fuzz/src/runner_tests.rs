//! Tests of the fuzz loop itself: replay, budgets, and that a panic, a wrong result or a hang
//! fails the run with the input saved.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::Mutex;

use super::*;

fn settings(iterations: u64) -> Settings {
    Settings {
        seconds: 60.0,
        iterations: Some(iterations),
        seed: 42,
        timeout: Duration::from_millis(500),
        max_input: 8,
        max_rss_mib: 1 << 20,
    }
}

fn target(name: &str, iterations: u64) -> Fuzz {
    let mut fuzz = Fuzz::new(name).settings(settings(iterations));
    fuzz.seed("one", b"abc".to_vec());
    fuzz.seed("two", b"xyz".to_vec());
    fuzz
}

fn failure(result: std::thread::Result<Summary>) -> String {
    let payload = result.expect_err("the run must fail");
    panic_message(payload.as_ref())
}

#[test]
fn replays_seeds_then_runs_the_budget_of_capped_inputs() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let summary = target("selftest-budget", 20).run(
        |rng, seeds| {
            let mut input = seeds[0].bytes.clone();
            input.extend(std::iter::repeat_n(b'-', crate::raw::below(rng, 20)));
            input
        },
        move |input| {
            log.lock().push(input.to_vec());
            Ok(())
        },
    );
    assert_eq!(
        (summary.replayed, summary.iterations, summary.seed),
        (2, 20, 42)
    );
    let seen = seen.lock();
    assert_eq!(seen.len(), 22);
    assert_eq!(&seen[..2], [b"abc".to_vec(), b"xyz".to_vec()]);
    assert!(seen[2..].iter().all(|i| i.len() <= 8), "inputs are capped");
}

#[test]
fn the_same_seed_gives_the_same_inputs() {
    let inputs = || {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        target("selftest-seed", 30).run(
            |rng, seeds| {
                let mut input = seeds[1].bytes.clone();
                crate::raw::mutate(rng, &mut input, seeds);
                input
            },
            move |input| {
                log.lock().push(input.to_vec());
                Ok(())
            },
        );
        seen.lock().clone()
    };
    assert_eq!(inputs(), inputs());
}

#[test]
fn a_panic_fails_the_run_and_saves_the_input() {
    let result = catch_unwind(AssertUnwindSafe(|| {
        target("selftest-panic", 100).run(
            |_, _| b"boom".to_vec(),
            |input| {
                assert_ne!(input, b"boom", "the check panics");
                Ok(())
            },
        )
    }));
    let message = failure(result);
    assert!(
        message.contains("selftest-panic failed on mutated input 0 (seed 0x2a)"),
        "{message}"
    );
    assert!(message.contains("panic: assertion"), "{message}");
    assert!(
        message.contains("WEFT_FUZZ_SEED=0x2a WEFT_FUZZ_ITERATIONS=1"),
        "{message}"
    );
    let saved = failure_dir_file("selftest-panic", &message);
    assert_eq!(std::fs::read(saved).expect("saved input"), b"boom");
}

#[test]
fn a_wrong_result_of_a_seed_names_the_seed() {
    let result = catch_unwind(AssertUnwindSafe(|| {
        target("selftest-seed-fails", 10).run(
            |_, _| Vec::new(),
            |input| match input {
                b"xyz" => Err("xyz is wrong".to_string()),
                _ => Ok(()),
            },
        )
    }));
    let message = failure(result);
    assert!(message.contains("failed on seed two"), "{message}");
    assert!(message.contains("xyz is wrong"), "{message}");
}

#[test]
fn a_hang_fails_the_run() {
    let (never, blocked) = std::sync::mpsc::channel::<()>();
    let result = catch_unwind(AssertUnwindSafe(move || {
        target("selftest-hang", 10).run(
            |_, _| b"hang".to_vec(),
            move |input| {
                if input == b"hang" {
                    // Nothing is ever sent: this blocks for good.
                    let _ = blocked.recv();
                    let _ = &never;
                }
                Ok(())
            },
        )
    }));
    let message = failure(result);
    assert!(message.contains("hang: no result after 500ms"), "{message}");
}

#[test]
fn settings_parse_seeds() {
    assert_eq!(parse_seed("0x2a"), Some(42));
    assert_eq!(parse_seed(" 42 "), Some(42));
    assert_eq!(parse_seed("x"), None);
    assert_ne!(mix(1, 0), mix(1, 1));
}

/// The saved file named in a failure message.
fn failure_dir_file(target: &str, message: &str) -> PathBuf {
    let dir = crate::corpus::failure_dir(target);
    let shown = dir.display().to_string();
    let start = message
        .find(&shown)
        .expect("the message names the saved file");
    let rest = &message[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    PathBuf::from(&rest[..end])
}
