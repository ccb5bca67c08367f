//! Shared by the criterion benches: reading criterion's own estimates back to print ratios
//! against a baseline measured in the same run.

// Each bench uses the helpers it needs.
#![allow(dead_code)]

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

/// The mean time in nanoseconds of one benchmark, from criterion's estimates file.
pub fn mean_ns(group: &str, function: &str) -> Option<f64> {
    let text = std::fs::read_to_string(estimates_path(group, function)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("mean")?.get("point_estimate")?.as_f64()
}

/// Prints `name: X ns, Y.YY x baseline` for each benchmark of a group against its baseline.
pub fn print_ratios(group: &str, baseline: &str, functions: &[&str]) {
    let Some(base) = mean_ns(group, baseline) else {
        println!("ratios: no estimate for {group}/{baseline} (was it filtered out?)");
        return;
    };
    println!("\nratios against {group}/{baseline} ({base:.1} ns), measured in this run:");
    for function in functions {
        match mean_ns(group, function) {
            Some(ns) => println!("  {function:<32} {ns:>9.1} ns  {:>6.2} x", ns / base),
            None => println!("  {function:<32} (not run)"),
        }
    }
}
