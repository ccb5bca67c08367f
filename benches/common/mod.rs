//! Shared by the criterion benches: reading criterion's own estimates back to print ratios
//! against a baseline measured in the same run.

// Each bench uses the helpers it needs.
#![allow(dead_code)]

pub mod endpoints;

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
