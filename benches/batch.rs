//! Batch minting throughput against bare minting, measured in the same run.
//!
//! `cargo bench --bench batch` prints both, then the batch rate as a fraction of the mint
//! rate. Target: at least 0.5.
//!
//! The batch is 100,000 rows, so that it measures the steady state of a large batch (the
//! issue's case is a million rows) rather than starting and stopping the minting threads.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use invitegate::batch::{BatchOptions, MergeOptions, MintOptions, ReadOptions, RowEvent};
use invitegate::{Audience, Expiry, KeyRing, mint};
use time::OffsetDateTime;

mod common;

const GROUP: &str = "batch";
const ROWS: u64 = 100_000;

fn recipients() -> Vec<u8> {
    let mut text = String::from("first_name,last_name,email,department\n");
    for i in 0..ROWS {
        text.push_str(&format!(
            "Person{i},Surname{i},person.{i}@contoso.com,Sales\n"
        ));
    }
    text.into_bytes()
}

/// What both measurements use: the key ring, the input and the command's default options.
struct Fixture {
    ring: KeyRing,
    expiry: Expiry,
    alice: Audience<'static>,
    input: Vec<u8>,
    options: BatchOptions,
}

impl Fixture {
    fn new() -> Self {
        let expiry = Expiry::from_unix(1_893_456_000);
        Self {
            ring: KeyRing::parse("7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap(),
            expiry,
            alice: Audience::email("alice@contoso.com").unwrap(),
            input: recipients(),
            // The command's defaults: delimiter detected, formula cells neutralised, duplicate
            // recipients detected.
            options: BatchOptions {
                mint: MintOptions {
                    default_expiry: Some(expiry),
                    now: OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
                    allow_public_domains: false,
                },
                read: ReadOptions::default(),
                merge: MergeOptions::default(),
                allow_duplicates: false,
            },
        }
    }

    fn mint(&self) -> impl Sized {
        mint(&self.ring, black_box(&self.alice), self.expiry)
    }

    /// The whole batch into `output`.
    fn batch(&self, output: &mut Vec<u8>) {
        output.clear();
        let summary = invitegate::batch::run(
            &self.ring,
            self.input.as_slice(),
            &mut *output,
            &self.options,
            |e| {
                black_box(matches!(e, RowEvent::Minted));
            },
        )
        .unwrap();
        assert_eq!(summary.minted, ROWS);
    }
}

fn batch(c: &mut Criterion) {
    let f = Fixture::new();
    let mut output = Vec::with_capacity(f.input.len() * 2);

    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(1));
    group.bench_function("mint_email", |b| b.iter(|| f.mint()));
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(20);
    group.bench_function("batch_100k_rows", |b| b.iter(|| f.batch(&mut output)));
    group.finish();
}

criterion_group!(benches, batch);

fn main() {
    let run = common::Run::start();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let (Some(mint_ns), Some(batch_ns)) = (
        run.median_ns(GROUP, "mint_email"),
        run.median_ns(GROUP, "batch_100k_rows"),
    ) else {
        println!("ratios: run both benchmarks to compare them");
        return;
    };
    let per_row = batch_ns / ROWS as f64;
    println!("\nbatch against bare mint, measured in this run:");
    println!(
        "  mint_email            {mint_ns:>9.1} ns  {:>12.0} codes/s",
        1e9 / mint_ns
    );
    println!(
        "  batch, per row        {per_row:>9.1} ns  {:>12.0} rows/s",
        1e9 / per_row
    );
    println!("  batch rate / mint rate  {:.2}", mint_ns / per_row);
    paired_rounds();
}

/// The target's ratio again in paired rounds (see `common::Paired`): each round mints 100,000
/// codes bare and runs the 100,000-row batch, back to back.
fn paired_rounds() {
    const ROUNDS: usize = 11;
    let f = Fixture::new();
    let mut output = Vec::with_capacity(f.input.len() * 2);
    let paired = common::Paired::measure(
        ROUNDS,
        (ROWS, || {
            black_box(f.mint());
        }),
        (1, || f.batch(&mut output)),
    );
    // A round's ratio is the batch's time over one mint's: rows a second over mints a second
    // is its inverse times the rows.
    let rate = |ratio: f64| ROWS as f64 / ratio;
    let (low, high) = paired.quartiles();
    println!(
        "\npaired rounds ({ROUNDS} rounds of 100,000 bare mints and one 100,000-row batch, \
         measured in this run): batch rate / mint rate {:.2} [quartiles {:.2}-{:.2}], \
         {:.0} rows/s against {:.0} codes/s",
        rate(paired.median()),
        rate(high),
        rate(low),
        1e9 * ROWS as f64 / paired.candidate_ns,
        1e9 / paired.baseline_ns
    );
}
