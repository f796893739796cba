//! Weft's fuzzing harness for plain `cargo test` on stable Rust: it replays a seed corpus, then
//! mutates the seeds for a time and iteration budget, runs each input under a per-input time
//! limit, and saves any failing input so that it can join the corpus.
//!
//! ```text
//!  seeds: crates/fuzz/corpus/<target>/** (committed) + what the test adds (Istio samples, …)
//!    │ 1. replay every seed unchanged
//!    ▼ 2. until WEFT_FUZZ_SECONDS / WEFT_FUZZ_ITERATIONS: input = mutate(rng(seed, i), seeds)
//!  worker thread: check(input) ─► Ok | Err(reason) | panic | no answer within the time limit
//!    └─ failure: input saved to crates/fuzz/failures/<target>/, message names the seed to replay
//! ```
//!
//! A target is one test: build a [`Fuzz`], add seeds, and [`Fuzz::run`] it with a mutator
//! (usually a mix of [`raw`], [`json`] and [`proto`] mutations) and a check that returns
//! `Err(reason)` for a wrong result. Each input gets its own random generator derived from the
//! run's seed and the iteration number, so `WEFT_FUZZ_SEED` replays a run exactly.
//!
//! Environment (all optional): `WEFT_FUZZ_SECONDS` (mutation time per target; the target's
//! default is a few seconds), `WEFT_FUZZ_ITERATIONS` (cap on mutated inputs), `WEFT_FUZZ_SEED`
//! (decimal or `0x` hex; random by default), `WEFT_FUZZ_TIMEOUT_MS` (per input, default 3000),
//! `WEFT_FUZZ_MAX_INPUT` (bytes, default 65536), `WEFT_FUZZ_MAX_RSS_MB` (peak resident memory of
//! the test process, default 1024).

pub mod corpus;
pub mod json;
pub mod proto;
pub mod raw;
mod runner;
mod tally;

pub use corpus::Seed;
pub use runner::{Fuzz, Settings, Summary};
pub use tally::Tally;

/// The random generator handed to mutators: portable and fast, so a seed means the same
/// inputs on every machine.
pub type Rng = rand::rngs::Xoshiro256PlusPlus;

pub use rand::RngExt;
