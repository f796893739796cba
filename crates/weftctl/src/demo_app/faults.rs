//! Misbehaviour on demand: which failures `demo-app` injects into a request (reset, hang,
//! failure status, delay, slow body), from its flags or, for `echo`, the request's query.
//!
//! The flags ([`Faults`]) make a fraction of all requests misbehave, so a whole Deployment
//! fails without its clients asking; `echo`'s query parameters ([`Overrides`]) decide for one
//! request and take precedence over the flags. Every ratio is its own independent draw per
//! request, made in this order, the first two ending the request:
//!
//! 1. reset (`--reset-ratio`, `reset=0|1`): no answer; the connection (HTTP/1) or the stream
//!    (HTTP/2) is reset;
//! 2. hang (`--hang-ratio`, `hang=0|1`): no answer until the client goes away;
//! 3. fail (`--fail-ratio`, overridden by `status=N`): answer `--fail-status`;
//! 4. delay (`--delay-ratio`, `delay_ms=N`): wait before answering (failure or not);
//! 5. slow body (`--slow-body-ms`, `slow_body_ms=N`): every answer's body dribbles out.
//!
//! So with `--reset-ratio r --hang-ratio h --fail-ratio f`, a request is reset with
//! probability r, hangs with (1-r)·h and fails with (1-r)(1-h)·f.

use std::time::Duration;

use http::StatusCode;
use parking_lot::Mutex;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// The faults `demo-app`'s flags inject, into every role; each also reads the environment
/// variable of the same name (`--fail-ratio`: `DEMO_FAIL_RATIO`).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct Faults {
    /// Answer `--fail-status` (without running the role) to this fraction of requests
    /// (0 to 1).
    #[arg(long, value_name = "F", env = "DEMO_FAIL_RATIO", default_value = "0", value_parser = parse_ratio)]
    pub fail_ratio: f64,
    /// The status `--fail-ratio` answers (400 to 599).
    #[arg(long, value_name = "N", env = "DEMO_FAIL_STATUS", default_value = "503", value_parser = parse_fail_status)]
    pub fail_status: StatusCode,
    /// Reset this fraction of requests (0 to 1) instead of answering: on HTTP/1 the
    /// connection is closed with a TCP RST, on HTTP/2 the stream is reset (RST_STREAM
    /// INTERNAL_ERROR) and the connection lives on.
    #[arg(long, value_name = "F", env = "DEMO_RESET_RATIO", default_value = "0", value_parser = parse_ratio)]
    pub reset_ratio: f64,
    /// Never answer this fraction of requests (0 to 1): each is held until its client goes
    /// away.
    #[arg(long, value_name = "F", env = "DEMO_HANG_RATIO", default_value = "0", value_parser = parse_ratio)]
    pub hang_ratio: f64,
    /// Wait `--delay-ms` before answering this fraction of requests (0 to 1).
    #[arg(long, value_name = "F", env = "DEMO_DELAY_RATIO", default_value = "0", value_parser = parse_ratio)]
    pub delay_ratio: f64,
    /// How long `--delay-ratio` waits, in milliseconds.
    #[arg(long, value_name = "N", env = "DEMO_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Send every answer's body in 4 chunks, this many milliseconds apart (the headers and
    /// the first chunk at once); 0 sends it whole.
    #[arg(long, value_name = "N", env = "DEMO_SLOW_BODY_MS", default_value_t = 0)]
    pub slow_body_ms: u64,
    /// Seed the draws, so a run's sequence of faults can be repeated (default: random).
    #[arg(long, value_name = "N", env = "DEMO_FAULT_SEED")]
    pub fault_seed: Option<u64>,
}

impl Default for Faults {
    /// No faults.
    fn default() -> Self {
        Faults {
            fail_ratio: 0.0,
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
            reset_ratio: 0.0,
            hang_ratio: 0.0,
            delay_ratio: 0.0,
            delay_ms: 0,
            slow_body_ms: 0,
            fault_seed: None,
        }
    }
}

impl Faults {
    /// What the flags cannot say one by one: a delay ratio needs a delay.
    pub fn check(&self) -> Result<(), String> {
        if self.delay_ratio > 0.0 && self.delay_ms == 0 {
            return Err(format!(
                "--delay-ratio {} needs --delay-ms N (more than 0)",
                self.delay_ratio
            ));
        }
        Ok(())
    }
}

/// A fraction of requests: a number within [0, 1].
pub fn parse_ratio(value: &str) -> Result<f64, String> {
    let ratio: f64 = value
        .trim()
        .parse()
        .map_err(|_| "not a number: expected a ratio within [0, 1], e.g. 0.25".to_owned())?;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!("{ratio} is not within [0, 1]"));
    }
    Ok(ratio)
}

/// A failure's status: 400 to 599.
pub fn parse_fail_status(value: &str) -> Result<StatusCode, String> {
    match value.trim().parse::<u16>() {
        Ok(code @ 400..=599) => StatusCode::from_u16(code).map_err(|e| e.to_string()),
        _ => Err("expected an HTTP error status, 400 to 599".to_owned()),
    }
}

/// What one `echo` request asks for in its query, overriding the flags for it; `None`
/// leaves the decision to the flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `reset=1` resets this request, `reset=0` spares it.
    pub reset: Option<bool>,
    /// `hang=1` holds this request unanswered, `hang=0` spares it.
    pub hang: Option<bool>,
    /// `status=N`: answer N (any valid code), never `--fail-status`.
    pub status: Option<StatusCode>,
    /// `delay_ms=N`: wait N ms (0: not at all).
    pub delay: Option<Duration>,
    /// `slow_body_ms=N`: the body in chunks N ms apart (0: whole).
    pub slow_body: Option<Duration>,
}

impl Overrides {
    /// Reads a query string; values it cannot read are ignored, as if absent.
    pub fn from_query(query: &str) -> Self {
        let mut ask = Overrides::default();
        for (key, value) in super::query_pairs(query) {
            match key {
                "reset" => ask.reset = switch(value).or(ask.reset),
                "hang" => ask.hang = switch(value).or(ask.hang),
                "status" => {
                    if let Some(code) = value
                        .parse()
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                    {
                        ask.status = Some(code);
                    }
                }
                "delay_ms" => ask.delay = millis(value).or(ask.delay),
                "slow_body_ms" => ask.slow_body = millis(value).or(ask.slow_body),
                _ => {}
            }
        }
        ask
    }
}

/// `1`, `true` or nothing (`?reset`) switch a fault on; `0` or `false` off.
fn switch(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn millis(value: &str) -> Option<Duration> {
    value.parse().ok().map(Duration::from_millis)
}

/// What happens to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Reset instead of answering.
    pub reset: bool,
    /// Never answer.
    pub hang: bool,
    /// Answer this failure instead of running the role.
    pub fail: Option<StatusCode>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Send the body in chunks this far apart.
    pub slow_body: Option<Duration>,
}

/// Draws each request's [`Plan`] from the flags, one random number generator for all
/// connections (seeded by `--fault-seed` when given).
pub struct Injector {
    faults: Faults,
    rng: Mutex<StdRng>,
}

impl Injector {
    pub fn new(faults: Faults) -> Self {
        let rng = match faults.fault_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Injector {
            faults,
            rng: Mutex::new(rng),
        }
    }

    /// The plan of one request: `ask` where it says, else a draw per ratio, in the order of
    /// the module's documentation. A ratio of 0 draws nothing.
    pub fn plan(&self, ask: &Overrides) -> Plan {
        let faults = &self.faults;
        let mut rng = self.rng.lock();
        let mut draw = |ratio: f64| ratio > 0.0 && rng.random::<f64>() < ratio;
        if ask.reset.unwrap_or_else(|| draw(faults.reset_ratio)) {
            return Plan {
                reset: true,
                ..Plan::default()
            };
        }
        if ask.hang.unwrap_or_else(|| draw(faults.hang_ratio)) {
            return Plan {
                hang: true,
                ..Plan::default()
            };
        }
        let fail = match ask.status {
            Some(_) => None,
            None => draw(faults.fail_ratio).then_some(faults.fail_status),
        };
        let delay = match ask.delay {
            Some(delay) => delay,
            None if draw(faults.delay_ratio) => Duration::from_millis(faults.delay_ms),
            None => Duration::ZERO,
        };
        let slow_body = ask
            .slow_body
            .unwrap_or(Duration::from_millis(faults.slow_body_ms));
        Plan {
            reset: false,
            hang: false,
            fail,
            delay: (!delay.is_zero()).then_some(delay),
            slow_body: (!slow_body.is_zero()).then_some(slow_body),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        faults: Faults,
    }

    fn seeded(faults: Faults) -> Injector {
        Injector::new(Faults {
            fault_seed: Some(42),
            ..faults
        })
    }

    #[test]
    fn ratios_must_be_within_zero_and_one() {
        for good in ["0", "1", "0.25", " 0.5", "1.0"] {
            assert!(parse_ratio(good).is_ok(), "{good}");
        }
        for bad in ["-0.1", "1.5", "NaN", "inf", "half", ""] {
            assert!(parse_ratio(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fail_status_is_an_error_status() {
        assert_eq!(parse_fail_status("429"), Ok(StatusCode::TOO_MANY_REQUESTS));
        for bad in ["200", "399", "600", "abc", "-503"] {
            assert!(parse_fail_status(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_ratio_is_refused_naming_its_flag() {
        for flag in [
            "--fail-ratio",
            "--reset-ratio",
            "--hang-ratio",
            "--delay-ratio",
        ] {
            let err = Cli::try_parse_from(["t", flag, "1.5"])
                .expect_err("1.5 is no ratio")
                .to_string();
            assert!(err.contains(flag) && err.contains("[0, 1]"), "{err}");
        }
        let err = Cli::try_parse_from(["t", "--fail-status", "200"])
            .expect_err("200 is no failure")
            .to_string();
        assert!(err.contains("--fail-status"), "{err}");
    }

    #[test]
    fn flags_parse_and_default_to_no_faults() {
        let cli = Cli::try_parse_from([
            "t",
            "--fail-ratio",
            "0.3",
            "--fail-status",
            "429",
            "--reset-ratio",
            "0.1",
            "--hang-ratio",
            "0.2",
            "--delay-ratio",
            "0.5",
            "--delay-ms",
            "250",
            "--slow-body-ms",
            "40",
            "--fault-seed",
            "7",
        ])
        .unwrap();
        assert_eq!(
            cli.faults,
            Faults {
                fail_ratio: 0.3,
                fail_status: StatusCode::TOO_MANY_REQUESTS,
                reset_ratio: 0.1,
                hang_ratio: 0.2,
                delay_ratio: 0.5,
                delay_ms: 250,
                slow_body_ms: 40,
                fault_seed: Some(7),
            }
        );
        // Defaults (assuming no DEMO_* variable is set in the test's environment).
        if !std::env::vars().any(|(name, _)| name.starts_with("DEMO_")) {
            assert_eq!(
                Cli::try_parse_from(["t"]).unwrap().faults,
                Faults::default()
            );
        }
    }

    #[test]
    fn every_flag_reads_its_environment_variable() {
        let command = Cli::command();
        let env: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let env = arg.get_env()?.to_str()?;
                Some((long.to_owned(), env.to_owned()))
            })
            .collect();
        for (long, var) in [
            ("fail-ratio", "DEMO_FAIL_RATIO"),
            ("fail-status", "DEMO_FAIL_STATUS"),
            ("reset-ratio", "DEMO_RESET_RATIO"),
            ("hang-ratio", "DEMO_HANG_RATIO"),
            ("delay-ratio", "DEMO_DELAY_RATIO"),
            ("delay-ms", "DEMO_DELAY_MS"),
            ("slow-body-ms", "DEMO_SLOW_BODY_MS"),
            ("fault-seed", "DEMO_FAULT_SEED"),
        ] {
            assert!(
                env.contains(&(long.to_owned(), var.to_owned())),
                "{long}: {env:?}"
            );
        }
    }

    #[test]
    fn a_delay_ratio_needs_a_delay() {
        let faults = Faults {
            delay_ratio: 0.5,
            ..Faults::default()
        };
        let err = faults.check().expect_err("no delay given");
        assert!(err.contains("--delay-ms"), "{err}");
        assert!(
            Faults {
                delay_ms: 10,
                ..faults
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn the_query_overrides_per_request() {
        assert_eq!(
            Overrides::from_query("reset=1&hang=0&status=418&delay_ms=20&slow_body_ms=5&x=y"),
            Overrides {
                reset: Some(true),
                hang: Some(false),
                status: Some(StatusCode::IM_A_TEAPOT),
                delay: Some(Duration::from_millis(20)),
                slow_body: Some(Duration::from_millis(5)),
            }
        );
        assert_eq!(
            Overrides::from_query("hang&reset=false"),
            Overrides {
                reset: Some(false),
                hang: Some(true),
                ..Overrides::default()
            }
        );
        // What cannot be read is ignored.
        assert_eq!(
            Overrides::from_query("reset=maybe&status=99999&delay_ms=-1&slow_body_ms=x"),
            Overrides::default()
        );
    }

    #[test]
    fn no_flags_no_faults() {
        let injector = Injector::new(Faults::default());
        for _ in 0..100 {
            assert_eq!(injector.plan(&Overrides::default()), Plan::default());
        }
    }

    #[test]
    fn reset_comes_first_then_hang_then_fail_and_delay() {
        let all = Faults {
            fail_ratio: 1.0,
            reset_ratio: 1.0,
            hang_ratio: 1.0,
            delay_ratio: 1.0,
            delay_ms: 30,
            slow_body_ms: 10,
            ..Faults::default()
        };
        let none = Overrides::default();
        let plan = seeded(all.clone()).plan(&none);
        assert_eq!(
            plan,
            Plan {
                reset: true,
                ..Plan::default()
            }
        );
        let no_reset = Faults {
            reset_ratio: 0.0,
            ..all.clone()
        };
        assert_eq!(
            seeded(no_reset.clone()).plan(&none),
            Plan {
                hang: true,
                ..Plan::default()
            }
        );
        let answering = Faults {
            hang_ratio: 0.0,
            ..no_reset
        };
        assert_eq!(
            seeded(answering).plan(&none),
            Plan {
                fail: Some(StatusCode::SERVICE_UNAVAILABLE),
                delay: Some(Duration::from_millis(30)),
                slow_body: Some(Duration::from_millis(10)),
                ..Plan::default()
            }
        );
        // The query overrides every flag.
        let ask = Overrides::from_query("reset=0&hang=0&status=200&delay_ms=0&slow_body_ms=0");
        assert_eq!(seeded(all.clone()).plan(&ask), Plan::default());
        let ask = Overrides::from_query("reset=1");
        assert!(seeded(Faults::default()).plan(&ask).reset);
        let ask = Overrides::from_query("hang=1&delay_ms=5&slow_body_ms=7");
        assert!(seeded(Faults::default()).plan(&ask).hang);
        let ask = Overrides::from_query("delay_ms=5&slow_body_ms=7");
        assert_eq!(
            seeded(Faults::default()).plan(&ask),
            Plan {
                delay: Some(Duration::from_millis(5)),
                slow_body: Some(Duration::from_millis(7)),
                ..Plan::default()
            }
        );
    }

    #[test]
    fn ratios_are_independent_draws() {
        let injector = seeded(Faults {
            reset_ratio: 0.5,
            fail_ratio: 0.5,
            delay_ratio: 0.4,
            delay_ms: 1,
            ..Faults::default()
        });
        let n = 20_000;
        let (mut reset, mut fail, mut delay, mut fail_and_delay) = (0, 0, 0, 0);
        for _ in 0..n {
            let plan = injector.plan(&Overrides::default());
            reset += usize::from(plan.reset);
            fail += usize::from(plan.fail.is_some());
            delay += usize::from(plan.delay.is_some());
            fail_and_delay += usize::from(plan.fail.is_some() && plan.delay.is_some());
        }
        let share = |count: usize| count as f64 / n as f64;
        // reset 0.5; fail (1-0.5)·0.5; delay (1-0.5)·0.4; both 0.5·0.5·0.4.
        assert!((share(reset) - 0.5).abs() < 0.02, "reset {reset}");
        assert!((share(fail) - 0.25).abs() < 0.02, "fail {fail}");
        assert!((share(delay) - 0.2).abs() < 0.02, "delay {delay}");
        assert!(
            (share(fail_and_delay) - 0.1).abs() < 0.02,
            "both {fail_and_delay}"
        );
    }

    #[test]
    fn a_seed_repeats_the_draws() {
        let faults = Faults {
            fail_ratio: 0.5,
            fault_seed: Some(9),
            ..Faults::default()
        };
        let run = || {
            let injector = Injector::new(faults.clone());
            (0..64)
                .map(|_| injector.plan(&Overrides::default()).fail.is_some())
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.contains(&true) && first.contains(&false));
    }
}
