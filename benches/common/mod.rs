//! Shared by the criterion benches: reading criterion's own estimates back to print ratios
//! against a baseline measured in the same run.

// Each bench uses the helpers it needs.
#![allow(dead_code)]

pub mod endpoints;
pub mod floor;

use std::path::PathBuf;
use std::time::SystemTime;

/// This run of a bench: estimates are read only if criterion wrote them after it began, so a
/// ratio never pairs a figure of today's run with one left on disk by an earlier run (of
/// another build, or filtered out of this one).
pub struct Run {
    started: SystemTime,
}

impl Run {
    /// Call first thing in the bench's `main`, before any benchmark runs.
    pub fn start() -> Self {
        Self {
            started: SystemTime::now(),
        }
    }

    /// The median time in nanoseconds of one benchmark's samples, from criterion's estimates
    /// file, or `None` when this run did not measure it (filtered out, or the file is an
    /// earlier run's).
    ///
    /// The median rather than the mean: on a shared machine a few samples are slowed by other
    /// work, and the mean follows them while the median does not.
    pub fn median_ns(&self, group: &str, function: &str) -> Option<f64> {
        let path = estimates_path(group, function);
        let written = std::fs::metadata(&path).ok()?.modified().ok()?;
        if written < self.started {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.get("median")?.get("point_estimate")?.as_f64()
    }

    /// Prints `name: X ns, Y.YY x baseline` for each benchmark of a group against its
    /// baseline, both measured in this run.
    pub fn print_ratios(&self, group: &str, baseline: &str, functions: &[&str]) {
        let Some(base) = self.median_ns(group, baseline) else {
            println!("ratios: {group}/{baseline} was not measured in this run (filtered out?)");
            return;
        };
        println!(
            "\nratios of medians against {group}/{baseline} ({base:.1} ns), measured in this run:"
        );
        for function in functions {
            match self.median_ns(group, function) {
                Some(ns) => println!("  {function:<32} {ns:>9.1} ns  {:>6.2} x", ns / base),
                None => println!("  {function:<32} (not measured in this run)"),
            }
        }
    }
}

/// Where criterion writes its estimates for `group/function`.
fn estimates_path(group: &str, function: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target
        .join("criterion")
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json")
}

/// Nanoseconds a call of `f`, over `calls` calls.
fn time_calls<F: FnMut()>(calls: u64, f: &mut F) -> f64 {
    let started = std::time::Instant::now();
    for _ in 0..calls {
        f();
    }
    started.elapsed().as_secs_f64() * 1e9 / calls as f64
}

/// Paired rounds: a baseline and a candidate timed back to back, `rounds` times (the order
/// swapped every other round), each round's ratio of the candidate's time a call to the
/// baseline's. On a shared machine a slow phase weighs on both halves of a round alike, which
/// criterion's one-after-the-other estimates cannot promise; the median of the rounds' ratios
/// is what the README reports beside criterion's figures.
pub struct Paired {
    /// Each round's candidate time a call over the baseline's, sorted.
    pub ratios: Vec<f64>,
    /// The median over the rounds of the baseline's time a call, in nanoseconds.
    pub baseline_ns: f64,
    /// The same for the candidate.
    pub candidate_ns: f64,
}

impl Paired {
    /// Runs `rounds` rounds of `baseline_calls` calls of `baseline` and `candidate_calls` calls
    /// of `candidate`, after one round of warm-up.
    pub fn measure<B: FnMut(), C: FnMut()>(
        rounds: usize,
        (baseline_calls, mut baseline): (u64, B),
        (candidate_calls, mut candidate): (u64, C),
    ) -> Self {
        time_calls(baseline_calls, &mut baseline);
        time_calls(candidate_calls, &mut candidate);
        let mut ratios = Vec::with_capacity(rounds);
        let mut baseline_times = Vec::with_capacity(rounds);
        let mut candidate_times = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let (b, c) = if round % 2 == 0 {
                let b = time_calls(baseline_calls, &mut baseline);
                (b, time_calls(candidate_calls, &mut candidate))
            } else {
                let c = time_calls(candidate_calls, &mut candidate);
                (time_calls(baseline_calls, &mut baseline), c)
            };
            ratios.push(c / b);
            baseline_times.push(b);
            candidate_times.push(c);
        }
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let baseline_ns = median(&mut baseline_times);
        let candidate_ns = median(&mut candidate_times);
        median(&mut ratios);
        Self {
            ratios,
            baseline_ns,
            candidate_ns,
        }
    }

    /// The median of the rounds' ratios.
    pub fn median(&self) -> f64 {
        self.ratios[self.ratios.len() / 2]
    }

    /// The ratios of the rounds at the first and third quartiles.
    pub fn quartiles(&self) -> (f64, f64) {
        let n = self.ratios.len();
        (self.ratios[n / 4], self.ratios[(3 * n) / 4])
    }
}
