//! Cost of the code operations against one bare HMAC-SHA256 with prepared key state over the
//! same message, measured in the same run.
//!
//! `cargo bench --bench codes` prints criterion's figures, then each one's ratio to the
//! baseline, then the target's ratios again from paired rounds (baseline and operation timed
//! back to back, median of the rounds), which a busy machine skews less. Target: verifying a
//! valid email code costs at most 1.5 times the baseline.
//!
//! A second group bounds what one address can cost: a domain+subdomains code verified for
//! the cheapest address, for the dearest one DNS allows (253 octets of 127 one-letter labels,
//! 126 candidate audiences), and for 64 KiB domains (ASCII, and CJK) that normalization
//! refuses; it prints the others as ratios of the first.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use hmac::{KeyInit, Mac};
use invitegate::{Audience, Code, Expiry, KeyRing, UnixTime, VerifyOptions, mint, verify};

mod common;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const GROUP: &str = "codes";

/// What the `codes` group measures, built once for criterion and once for the paired rounds.
struct Fixture {
    ring: KeyRing,
    options: VerifyOptions,
    now: UnixTime,
    expiry: Expiry,
    alice: Audience<'static>,
    email_code: String,
    subdomain_code: String,
    /// The baseline's HMAC key state, prepared once as verification prepares it.
    prepared: hmac::Hmac<sha2::Sha256>,
    header: [u8; 6],
}

impl Fixture {
    fn new() -> Self {
        let ring = KeyRing::parse(&format!("7:{KEY}")).expect("ring");
        let expiry = Expiry::from_unix(1_893_456_000);
        let alice = Audience::email("alice@contoso.com").expect("audience");
        let email_code = mint(&ring, &alice, expiry).to_string();
        let subdomains = Audience::domain_and_subdomains("contoso.com").expect("audience");
        let subdomain_code = mint(&ring, &subdomains, expiry).to_string();
        let key =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, KEY).expect("key");
        let prepared = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key length");
        let header = *Code::parse(&email_code).expect("code").header_bytes();
        Self {
            ring,
            options: VerifyOptions::default(),
            // As the server passes it: Unix seconds read from the system clock.
            now: UnixTime::from_unix(1_790_000_000),
            expiry,
            alice,
            email_code,
            subdomain_code,
            prepared,
            header,
        }
    }

    /// The baseline: HMAC-SHA256 over the message verification computes for alice's code.
    fn hmac_baseline(&self) -> impl Sized {
        let mut mac = self.prepared.clone();
        mac.update(invitegate::MAC_DOMAIN);
        mac.update(black_box(&self.header));
        mac.update(black_box(b"alice@contoso.com"));
        mac.finalize().into_bytes()
    }

    fn verify(&self, code: &str, email: &str) -> impl Sized {
        verify(
            &self.ring,
            black_box(code),
            black_box(email),
            self.now,
            &self.options,
        )
    }
}

fn codes(c: &mut Criterion) {
    let f = Fixture::new();
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("hmac_baseline", |b| b.iter(|| f.hmac_baseline()));
    group.bench_function("verify_valid_email", |b| {
        b.iter(|| f.verify(&f.email_code, "alice@contoso.com"))
    });
    group.bench_function("verify_not_valid", |b| {
        b.iter(|| f.verify(&f.email_code, "mallory@contoso.com"))
    });
    group.bench_function("verify_subdomains_4_labels", |b| {
        b.iter(|| f.verify(&f.subdomain_code, "bob@eu.sales.contoso.com"))
    });
    group.bench_function("mint_email", |b| {
        b.iter(|| mint(&f.ring, black_box(&f.alice), f.expiry))
    });
    group.bench_function("parse", |b| {
        b.iter(|| Code::parse(black_box(&f.email_code)))
    });
    group.finish();
}

/// The target's ratio again, in paired rounds (see `common::Paired`): 41 rounds of 20,000 calls
/// of the baseline and of each operation, a few milliseconds each.
fn paired_rounds() {
    const ROUNDS: usize = 41;
    const CALLS: u64 = 20_000;
    let f = Fixture::new();
    println!(
        "\npaired rounds against {GROUP}/hmac_baseline ({ROUNDS} rounds of {CALLS} calls each, \
         measured in this run): median ratio [quartiles]"
    );
    let operations: [(&str, &dyn Fn()); 3] = [
        ("verify_valid_email", &|| {
            black_box(f.verify(&f.email_code, "alice@contoso.com"));
        }),
        ("verify_not_valid", &|| {
            black_box(f.verify(&f.email_code, "mallory@contoso.com"));
        }),
        ("mint_email", &|| {
            black_box(mint(&f.ring, black_box(&f.alice), f.expiry));
        }),
    ];
    for (name, operation) in operations {
        let paired = common::Paired::measure(
            ROUNDS,
            (CALLS, || {
                black_box(f.hmac_baseline());
            }),
            (CALLS, operation),
        );
        let (low, high) = paired.quartiles();
        println!(
            "  {name:<32} {:>7.1} ns against {:>6.1} ns  {:>5.2} x  [{low:.2}-{high:.2}]",
            paired.candidate_ns,
            paired.baseline_ns,
            paired.median()
        );
    }
}

const DNS_GROUP: &str = "dns_bounds";

fn dns_bounds(c: &mut Criterion) {
    let ring = KeyRing::parse(&format!("7:{KEY}")).expect("ring");
    let options = VerifyOptions::default();
    let now = UnixTime::from_unix(1_790_000_000);
    let expiry = Expiry::from_unix(1_893_456_000);
    let code_for = |domain: &str| {
        let audience = Audience::domain_and_subdomains(domain).expect("audience");
        mint(&ring, &audience, expiry).to_string()
    };
    let contoso = code_for("contoso.com");
    // The dearest accepted address: the most labels DNS allows, matched only by the last
    // candidate, so every one of the 126 is tried.
    let last_two = code_for("y.z");
    let worst = format!("a@{}y.z", "x.".repeat(125));
    assert_eq!(worst.len() - 2, 253);
    // What a hostile client sent before names were bounded: 32,000 labels and more.
    let rejected = format!("a@{}contoso.com", "a.".repeat(32_763));
    assert!(rejected.len() > 64 * 1024);
    // The same size in labels of 1000 distinct CJK characters, which UTS #46 would validate
    // and Punycode-encode at quadratic cost if nothing bounded them first.
    let cjk: String = (0..1000)
        .filter_map(|i| char::from_u32(0x4E00 + i))
        .collect();
    let rejected_idn = format!("a@{}", vec![cjk; 22].join("."));
    assert!(rejected_idn.len() > 64 * 1024);
    let cases = [
        ("best_a_at_contoso", &contoso, "a@contoso.com", "valid"),
        (
            "worst_accepted_126_candidates",
            &last_two,
            worst.as_str(),
            "valid",
        ),
        (
            "rejected_64_kib_domain",
            &contoso,
            rejected.as_str(),
            "not-valid",
        ),
        (
            "rejected_64_kib_idn_domain",
            &contoso,
            rejected_idn.as_str(),
            "not-valid",
        ),
    ];
    let mut group = c.benchmark_group(DNS_GROUP);
    for (name, code, email, outcome) in cases {
        // Measure what the name says, not a typo in the set-up.
        assert_eq!(verify(&ring, code, email, now, &options).name(), outcome);
        group.bench_function(name, |b| {
            b.iter(|| verify(&ring, black_box(code), black_box(email), now, &options))
        });
    }
    group.finish();
}

criterion_group!(benches, codes, dns_bounds);

fn main() {
    let run = common::Run::start();
    benches();
    Criterion::default().configure_from_args().final_summary();
    run.print_ratios(
        GROUP,
        "hmac_baseline",
        &[
            "verify_valid_email",
            "verify_not_valid",
            "verify_subdomains_4_labels",
            "mint_email",
            "parse",
        ],
    );
    run.print_ratios(
        DNS_GROUP,
        "best_a_at_contoso",
        &[
            "worst_accepted_126_candidates",
            "rejected_64_kib_domain",
            "rejected_64_kib_idn_domain",
        ],
    );
    if run.median_ns(GROUP, "hmac_baseline").is_some() {
        paired_rounds();
    }
}
