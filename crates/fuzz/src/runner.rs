//! The fuzz loop: settings from the environment, seed replay, mutated inputs run on a worker
//! thread under a per-input time limit and a process memory ceiling, failures saved.

use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;

use crate::Rng;
use crate::corpus::{self, Seed};

/// Stack of the thread that runs the checks. Debug builds use several times the stack of
/// release builds, and the production threads (tokio workers) have 2 MiB in release: 8 MiB
/// here keeps a debug-only overflow from being reported while a real unbounded recursion
/// still overflows.
const WORKER_STACK: usize = 8 * 1024 * 1024;

/// How a run is bounded and seeded. See the crate documentation for the variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Wall time for mutated inputs (the seed replay comes on top).
    pub seconds: f64,
    /// At most this many mutated inputs.
    pub iterations: Option<u64>,
    /// The run's seed; input `i` is made by a generator seeded from `(seed, i)`.
    pub seed: u64,
    /// Longest time one input may take before the run fails as a hang.
    pub timeout: Duration,
    /// Mutated inputs are cut to this many bytes.
    pub max_input: usize,
    /// Peak resident memory of the whole test process allowed, in MiB (Linux only).
    pub max_rss_mib: u64,
}

impl Settings {
    /// The settings for a target whose default budget is `default_seconds` and, when no
    /// `WEFT_FUZZ_SECONDS` is given, at most `default_iterations` inputs.
    ///
    /// # Panics
    /// When a `WEFT_FUZZ_*` variable is set to something that does not parse (the message
    /// names the variable).
    pub fn from_env(default_seconds: f64, default_iterations: Option<u64>) -> Settings {
        let long_run = env::<f64>("WEFT_FUZZ_SECONDS");
        let iterations = env::<u64>("WEFT_FUZZ_ITERATIONS").or(match long_run {
            Some(_) => None,
            None => default_iterations,
        });
        let seed = match std::env::var("WEFT_FUZZ_SEED") {
            Ok(text) => parse_seed(&text).unwrap_or_else(|| {
                panic!("WEFT_FUZZ_SEED={text:?} is not a number (decimal or 0x hex)")
            }),
            Err(_) => fresh_seed(),
        };
        Settings {
            seconds: long_run.unwrap_or(default_seconds),
            iterations,
            seed,
            timeout: Duration::from_millis(env("WEFT_FUZZ_TIMEOUT_MS").unwrap_or(3000)),
            max_input: env("WEFT_FUZZ_MAX_INPUT").unwrap_or(64 * 1024),
            max_rss_mib: env("WEFT_FUZZ_MAX_RSS_MB").unwrap_or(1024),
        }
    }
}

fn env<T: FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => panic!(
            "{name}={text:?} is not a valid {}",
            std::any::type_name::<T>()
        ),
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(nanos, u64::from(std::process::id()))
}

/// SplitMix64 of `seed + i·φ`: independent generator seeds for consecutive iterations.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What one run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Seeds replayed unchanged.
    pub replayed: usize,
    /// Mutated inputs run.
    pub iterations: u64,
    /// Time for the whole run.
    pub elapsed: Duration,
    /// The slowest single input.
    pub slowest: Duration,
    /// The run's seed.
    pub seed: u64,
}

/// One fuzz target: a name (its corpus directory), its seeds and its default budget.
pub struct Fuzz {
    target: String,
    seeds: Vec<Seed>,
    default_seconds: f64,
    default_iterations: Option<u64>,
    settings: Option<Settings>,
}

impl Fuzz {
    /// A target named `target`, seeded with every file of `crates/fuzz/corpus/<target>/`.
    /// The default budget is 2 s.
    pub fn new(target: &str) -> Fuzz {
        Fuzz {
            target: target.to_string(),
            seeds: corpus::committed(target),
            default_seconds: 2.0,
            default_iterations: None,
            settings: None,
        }
    }

    /// Mutation time when `WEFT_FUZZ_SECONDS` is not set.
    pub fn default_seconds(mut self, seconds: f64) -> Fuzz {
        self.default_seconds = seconds;
        self
    }

    /// Cap on mutated inputs when neither `WEFT_FUZZ_SECONDS` nor `WEFT_FUZZ_ITERATIONS` is set
    /// (for targets whose inputs are expensive, such as connections).
    pub fn default_iterations(mut self, iterations: u64) -> Fuzz {
        self.default_iterations = Some(iterations);
        self
    }

    /// Fixed settings instead of the environment's (the harness's own tests).
    pub fn settings(mut self, settings: Settings) -> Fuzz {
        self.settings = Some(settings);
        self
    }

    /// Adds a seed (replayed unchanged, then mutated).
    pub fn seed(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.seeds.push(Seed {
            name: name.into(),
            bytes: bytes.into(),
        });
    }

    /// The seeds so far (committed corpus first).
    pub fn seeds(&self) -> &[Seed] {
        &self.seeds
    }

    /// Replays every seed, then runs `mutate`d inputs until the budget is spent. `check`
    /// runs on a worker thread and returns `Err(reason)` for a wrong result.
    ///
    /// # Panics
    /// On the first input whose check fails, panics, hangs or pushes the process's peak
    /// memory over the ceiling: the message names the target, seed and iteration, and the
    /// input is saved under `crates/fuzz/failures/<target>/`. Also when there is no seed.
    pub fn run<M, C>(self, mut mutate: M, check: C) -> Summary
    where
        M: FnMut(&mut Rng, &[Seed]) -> Vec<u8>,
        C: FnMut(&[u8]) -> Result<(), String> + Send + 'static,
    {
        assert!(
            !self.seeds.is_empty(),
            "fuzz target {}: no seeds (add files to {})",
            self.target,
            corpus::corpus_dir(&self.target).display()
        );
        let settings = self
            .settings
            .clone()
            .unwrap_or_else(|| Settings::from_env(self.default_seconds, self.default_iterations));
        let mut run = Run::start(&self.target, settings, check);
        let started = Instant::now();
        for seed in &self.seeds {
            run.exec(&Origin::Seed(&seed.name), seed.bytes.clone());
        }
        let mutating = Instant::now();
        let budget = Duration::from_secs_f64(run.settings.seconds.max(0.0));
        let mut i: u64 = 0;
        while mutating.elapsed() < budget && run.settings.iterations.is_none_or(|n| i < n) {
            let mut rng = Rng::seed_from_u64(mix(run.settings.seed, i));
            let mut input = mutate(&mut rng, &self.seeds);
            input.truncate(run.settings.max_input);
            run.check_memory_after_mutation(i);
            run.exec(&Origin::Mutation(i), input);
            i += 1;
        }
        let summary = Summary {
            replayed: self.seeds.len(),
            iterations: i,
            elapsed: started.elapsed(),
            slowest: run.slowest,
            seed: run.settings.seed,
        };
        let slowest_path = corpus::failure_dir(&self.target).join("slowest-input.bin");
        let _ = std::fs::write(&slowest_path, &run.slowest_input);
        println!(
            "weft-fuzz {}: {} seeds replayed, {} mutated inputs, {:.2?} in all, slowest input {:.2?} (saved to {}), seed {:#x}, peak RSS {} MiB",
            self.target,
            summary.replayed,
            summary.iterations,
            summary.elapsed,
            summary.slowest,
            slowest_path.display(),
            summary.seed,
            peak_rss_mib().unwrap_or(0),
        );
        summary
    }
}

enum Origin<'a> {
    Seed(&'a str),
    Mutation(u64),
}

enum Outcome {
    Pass,
    Fail(String),
    Panic(String),
}

/// The state of one run: the worker thread and the mirror of the current input.
struct Run {
    target: String,
    settings: Settings,
    inputs: mpsc::SyncSender<Vec<u8>>,
    outcomes: mpsc::Receiver<(Vec<u8>, Outcome)>,
    /// `failures/<target>/current-input.bin`: holds the input being run, so that it survives
    /// an abort (stack overflow, failed allocation) that ends the process.
    mirror: Option<File>,
    slowest: Duration,
    /// The slowest input so far (saved at the end, for performance work).
    slowest_input: Vec<u8>,
}

impl Run {
    fn start<C>(target: &str, settings: Settings, mut check: C) -> Run
    where
        C: FnMut(&[u8]) -> Result<(), String> + Send + 'static,
    {
        let (inputs, worker_inputs) = mpsc::sync_channel::<Vec<u8>>(1);
        let (worker_outcomes, outcomes) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name(format!("fuzz-{target}"))
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for input in worker_inputs {
                    let outcome = match catch_unwind(AssertUnwindSafe(|| check(&input))) {
                        Ok(Ok(())) => Outcome::Pass,
                        Ok(Err(reason)) => Outcome::Fail(reason),
                        Err(payload) => Outcome::Panic(panic_message(payload.as_ref())),
                    };
                    if worker_outcomes.send((input, outcome)).is_err() {
                        return;
                    }
                }
            });
        if let Err(err) = spawned {
            panic!("fuzz target {target}: cannot start the worker thread: {err}");
        }
        let mirror_path = corpus::failure_dir(target).join("current-input.bin");
        let mirror = std::fs::create_dir_all(corpus::failure_dir(target))
            .and_then(|()| File::create(&mirror_path))
            .ok();
        // Straight to the process's stderr (not captured by the test harness): if the process
        // aborts, this line is what is left to reproduce the run.
        let _ = writeln!(
            std::io::stderr(),
            "weft-fuzz {target}: seed {:#x}, {} s{} (the input being run is mirrored to {})",
            settings.seed,
            settings.seconds,
            settings
                .iterations
                .map_or(String::new(), |n| format!(" or {n} inputs")),
            mirror_path.display(),
        );
        Run {
            target: target.to_string(),
            settings,
            inputs,
            outcomes,
            mirror,
            slowest: Duration::ZERO,
            slowest_input: Vec::new(),
        }
    }

    fn exec(&mut self, origin: &Origin<'_>, input: Vec<u8>) {
        if let Some(file) = &mut self.mirror {
            let mirrored = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|_| file.write_all(&input));
            if mirrored.is_err() {
                self.mirror = None;
            }
        }
        let copy = input.clone();
        let started = Instant::now();
        if self.inputs.send(input).is_err() {
            self.fail(origin, &copy, "the worker thread is gone".to_string());
        }
        let (input, outcome) = match self.outcomes.recv_timeout(self.settings.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(
                origin,
                &copy,
                format!(
                    "hang: no result after {:?} (WEFT_FUZZ_TIMEOUT_MS)",
                    self.settings.timeout
                ),
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.fail(origin, &copy, "the worker thread is gone".to_string())
            }
        };
        let took = started.elapsed();
        if took > self.slowest {
            self.slowest = took;
            self.slowest_input.clone_from(&input);
        }
        match outcome {
            Outcome::Pass => {}
            Outcome::Fail(reason) => self.fail(origin, &input, reason),
            Outcome::Panic(message) => self.fail(origin, &input, format!("panic: {message}")),
        }
        if let Some(mib) = peak_rss_mib()
            && mib > self.settings.max_rss_mib
        {
            self.fail(
                origin,
                &input,
                format!(
                    "the test process's peak resident memory reached {mib} MiB (limit {} MiB, WEFT_FUZZ_MAX_RSS_MB): unbounded allocation?",
                    self.settings.max_rss_mib
                ),
            );
        }
    }

    /// The memory ceiling is for the code under test: a mutator that passes it is a bug of
    /// the harness or the target's mutator, reported as such.
    fn check_memory_after_mutation(&self, i: u64) {
        if let Some(mib) = peak_rss_mib()
            && mib > self.settings.max_rss_mib
        {
            panic!(
                "fuzz target {}: making mutated input {i} (seed {:#x}) took the process's peak memory to {mib} MiB: the mutator must bound its growth",
                self.target, self.settings.seed
            );
        }
    }

    fn fail(&self, origin: &Origin<'_>, input: &[u8], reason: String) -> ! {
        let (what, file_name, replay) = match origin {
            Origin::Seed(name) => (
                format!("seed {name}"),
                format!("seed-{:016x}.bin", fnv1a(input)),
                "it fails unchanged: every run replays it".to_string(),
            ),
            Origin::Mutation(i) => (
                format!("mutated input {i}"),
                format!("{:016x}.bin", fnv1a(input)),
                format!(
                    "replay the run with WEFT_FUZZ_SEED={:#x} WEFT_FUZZ_ITERATIONS={} WEFT_FUZZ_SECONDS=3600 and the same cargo test command",
                    self.settings.seed,
                    i + 1
                ),
            ),
        };
        let dir = corpus::failure_dir(&self.target);
        let path = dir.join(file_name);
        let saved = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, input))
            .map_or_else(
                |err| format!("could not be saved to {}: {err}", path.display()),
                |()| {
                    format!(
                        "saved to {} (move it into {} to keep it as a regression seed)",
                        path.display(),
                        corpus::corpus_dir(&self.target).display()
                    )
                },
            );
        let shown = &input[..input.len().min(512)];
        panic!(
            "fuzz target {target} failed on {what} (seed {seed:#x}): {reason}\n\
             input: {len} bytes, {saved}\n\
             {replay}\n\
             input{cut}: {text:?}",
            target = self.target,
            seed = self.settings.seed,
            len = input.len(),
            cut = if shown.len() < input.len() {
                " (first 512 bytes)"
            } else {
                ""
            },
            text = String::from_utf8_lossy(shown),
        );
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// FNV-1a: a stable name for a saved input.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The process's peak resident set size (`VmHWM`), where `/proc` has it.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Where a failing input goes (`crates/fuzz/failures/<target>/`, ignored by git).
pub(crate) fn failures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("failures")
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
