//! Layer 0's local rate limits (`envoy.filters.http.local_ratelimit`): token buckets a request
//! must take a token from before it is routed, per proxy.
//!
//! ```text
//!  request ─► each rate_limits entry: its actions ─► a descriptor [(key, value)…] │ none
//!          ─► the first configured descriptor it matches (value "" = any: the bucket of that
//!             value, at most max_dynamic_descriptors kept, least recently used evicted)
//!          ─► the default bucket (token_bucket), always or when no descriptor matched
//!          ─► a token from each, in that order ─► on to the next filter
//!                                    └─ none left ─► ProxyError::RateLimited (429 local_rate_limited,
//!                                                    x-envoy-ratelimited, flag RL)
//! ```
//!
//! A bucket starts full and gets `tokens_per_fill` tokens every `fill_interval` (at most
//! `max_tokens`), counted from when it was made; the fills due are added when a request comes.
//! Time is `tokio::time::Instant`, so paused-time tests drive it. Written by hand: the
//! rate-limiting crates (`governor`, …) read their own clock, which tokio's paused time does not
//! move. Each bucket has its own lock (`parking_lot`), held for a few instructions; the buckets
//! of a filter are built once per config and kept across pushes that do not change it
//! ([`crate::config::local_ratelimit`]).

use std::borrow::Cow;
use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::router::{RequestView, header_value};
use crate::config::local_ratelimit::{Action, BucketSpec, Descriptor, LocalRateLimit};
use crate::error::ProxyError;

/// The run-time state of one filter: its default bucket and one per configured descriptor.
#[derive(Debug)]
pub struct Buckets {
    default: Option<TokenBucket>,
    descriptors: Vec<DescriptorBuckets>,
}

#[derive(Debug)]
enum DescriptorBuckets {
    /// Every request of the descriptor takes from one bucket.
    One(TokenBucket),
    /// A bucket per value of the wildcard entries.
    PerValue(KeyedBuckets),
}

impl Buckets {
    /// Full buckets for a filter's settings.
    pub fn new(default: Option<BucketSpec>, descriptors: &[Descriptor], max_dynamic: u32) -> Self {
        let now = Instant::now();
        Buckets {
            default: default.map(|spec| TokenBucket::new(spec, now)),
            descriptors: descriptors
                .iter()
                .map(|d| {
                    if d.is_dynamic() {
                        DescriptorBuckets::PerValue(KeyedBuckets::new(d.bucket, max_dynamic))
                    } else {
                        DescriptorBuckets::One(TokenBucket::new(d.bucket, now))
                    }
                })
                .collect(),
        }
    }
}

/// Tokens and when they were last filled.
#[derive(Debug, Clone, Copy)]
struct BucketState {
    tokens: u32,
    filled: Instant,
}

impl BucketState {
    fn full(spec: &BucketSpec, now: Instant) -> Self {
        BucketState {
            tokens: spec.max_tokens,
            filled: now,
        }
    }

    /// Adds the fills due at `now`, then takes a token if there is one.
    fn take(&mut self, spec: &BucketSpec, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.filled);
        let interval = spec.fill_interval.as_nanos().max(1);
        let fills = elapsed.as_nanos() / interval;
        if fills > 0 {
            let tokens = u128::from(self.tokens) + fills * u128::from(spec.tokens_per_fill);
            self.tokens =
                u32::try_from(tokens.min(u128::from(spec.max_tokens))).unwrap_or(u32::MAX);
            // Keep the phase: the next fill is one interval after the last one due.
            let rest = u64::try_from(elapsed.as_nanos() % interval).unwrap_or(0);
            self.filled = now - std::time::Duration::from_nanos(rest);
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// One token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    spec: BucketSpec,
    state: Mutex<BucketState>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(spec: BucketSpec, now: Instant) -> Self {
        TokenBucket {
            spec,
            state: Mutex::new(BucketState::full(&spec, now)),
        }
    }

    /// Takes a token at `now`; `false` when none is left.
    pub fn try_take(&self, now: Instant) -> bool {
        self.state.lock().take(&self.spec, now)
    }
}

/// A bucket per key, at most `max` of them: a new key beyond it evicts the least recently
/// used one (found by a scan, only when a new key arrives at the bound).
#[derive(Debug)]
pub struct KeyedBuckets {
    spec: BucketSpec,
    max: usize,
    state: Mutex<Keyed>,
}

#[derive(Debug, Default)]
struct Keyed {
    /// Bumped on every use: an entry's stamp says when it was used last.
    clock: u64,
    buckets: HashMap<Box<str>, (BucketState, u64)>,
}

impl KeyedBuckets {
    /// No bucket yet; at most `max` (at least 1).
    pub fn new(spec: BucketSpec, max: u32) -> Self {
        KeyedBuckets {
            spec,
            max: usize::try_from(max.max(1)).unwrap_or(usize::MAX),
            state: Mutex::new(Keyed::default()),
        }
    }

    /// Takes a token from `key`'s bucket (a full new one if it has none) at `now`.
    pub fn try_take(&self, key: &str, now: Instant) -> bool {
        let mut state = self.state.lock();
        state.clock += 1;
        let stamp = state.clock;
        if let Some((bucket, used)) = state.buckets.get_mut(key) {
            *used = stamp;
            return bucket.take(&self.spec, now);
        }
        if state.buckets.len() >= self.max
            && let Some(oldest) = (state.buckets.iter())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            state.buckets.remove(&oldest);
        }
        let mut bucket = BucketState::full(&self.spec, now);
        let taken = bucket.take(&self.spec, now);
        state.buckets.insert(key.into(), (bucket, stamp));
        taken
    }

    /// How many keys have a bucket.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().buckets.len()
    }
}

/// The descriptor `actions` make for `req`: `None` when an action gives none (or all give no
/// entry).
fn descriptor<'a>(
    actions: &'a [Action],
    req: &RequestView<'a>,
) -> Option<Vec<(&'a str, Cow<'a, str>)>> {
    let mut entries = Vec::with_capacity(actions.len());
    for action in actions {
        match action {
            Action::GenericKey { key, value } => {
                entries.push((key.as_str(), Cow::Borrowed(value.as_str())))
            }
            Action::HeaderValueMatch {
                key,
                value,
                expect_match,
                headers,
            } => {
                if headers.iter().all(|h| h.matches(req)) != *expect_match {
                    return None;
                }
                entries.push((key.as_str(), Cow::Borrowed(value.as_str())));
            }
            Action::RequestHeaders {
                header,
                key,
                skip_if_absent,
            } => match header_value(req.headers, header) {
                Some(v) => entries.push((key.as_str(), v)),
                None if *skip_if_absent => {}
                None => return None,
            },
        }
    }
    (!entries.is_empty()).then_some(entries)
}

/// Whether `wanted` matches the request's `entries` in full (a `None` value: any value).
fn full_match(wanted: &Descriptor, entries: &[(&str, Cow<'_, str>)]) -> bool {
    wanted.entries.len() == entries.len()
        && wanted
            .entries
            .iter()
            .zip(entries)
            .all(|((k, v), (key, value))| k == key && v.as_deref().is_none_or(|v| v == value))
}

/// The per-value bucket key: the values of the wildcard entries.
fn dynamic_key(wanted: &Descriptor, entries: &[(&str, Cow<'_, str>)]) -> String {
    let mut key = String::new();
    for ((_, v), (_, value)) in wanted.entries.iter().zip(entries) {
        if v.is_none() {
            key.push_str(value);
            key.push('\0');
        }
    }
    key
}

/// Checks `req` against one filter: `Ok` when every bucket it falls in gave a token.
pub(super) fn check(limit: &LocalRateLimit, req: &RequestView<'_>) -> Result<(), ProxyError> {
    if !limit.enforced {
        return Ok(());
    }
    let now = Instant::now();
    let mut matched = false;
    for actions in &limit.rate_limits {
        let Some(entries) = descriptor(actions, req) else {
            continue;
        };
        let Some(i) = limit
            .descriptors
            .iter()
            .position(|d| full_match(d, &entries))
        else {
            continue;
        };
        matched = true;
        let allowed = match &limit.buckets.descriptors[i] {
            DescriptorBuckets::One(bucket) => bucket.try_take(now),
            DescriptorBuckets::PerValue(keyed) => {
                keyed.try_take(&dynamic_key(&limit.descriptors[i], &entries), now)
            }
        };
        if !allowed {
            return Err(refused(limit));
        }
    }
    if (limit.always_consume_default || !matched)
        && let Some(bucket) = &limit.buckets.default
        && !bucket.try_take(now)
    {
        return Err(refused(limit));
    }
    Ok(())
}

fn refused(limit: &LocalRateLimit) -> ProxyError {
    tracing::debug!(stat_prefix = %limit.stat_prefix, "local rate limit: no token left");
    ProxyError::RateLimited {
        status: limit.status,
        headers: limit.response_headers.clone(),
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
