//! Shared by the criterion benches: reading criterion's own estimates back to print ratios
//! against a baseline measured in the same run.

// Each bench uses the helpers it needs.
#![allow(dead_code)]

pub mod endpoints;

use std::path::PathBuf;

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

/// The median time in nanoseconds of one benchmark's samples, from criterion's estimates file.
///
/// The median rather than the mean: on a shared machine a few samples are slowed by other
/// work, and the mean follows them while the median does not.
pub fn median_ns(group: &str, function: &str) -> Option<f64> {
    let text = std::fs::read_to_string(estimates_path(group, function)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

/// Prints `name: X ns, Y.YY x baseline` for each benchmark of a group against its baseline.
pub fn print_ratios(group: &str, baseline: &str, functions: &[&str]) {
    let Some(base) = median_ns(group, baseline) else {
        println!("ratios: no estimate for {group}/{baseline} (was it filtered out?)");
        return;
    };
    println!(
        "\nratios of medians against {group}/{baseline} ({base:.1} ns), measured in this run:"
    );
    for function in functions {
        match median_ns(group, function) {
            Some(ns) => println!("  {function:<32} {ns:>9.1} ns  {:>6.2} x", ns / base),
            None => println!("  {function:<32} (not run)"),
        }
    }
}
