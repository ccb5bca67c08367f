//! Cost of the code operations against one bare HMAC-SHA256 with prepared key state over the
//! same message, measured in the same run.
//!
//! `cargo bench --bench codes` prints criterion's figures, then each one's ratio to the
//! baseline. Target: verifying a valid email code costs at most 1.5 times the baseline.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use hmac::{KeyInit, Mac};
use invitegate::{Audience, Code, Expiry, KeyRing, UnixTime, VerifyOptions, mint, verify};

mod common;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const GROUP: &str = "codes";

fn codes(c: &mut Criterion) {
    let ring = KeyRing::parse(&format!("7:{KEY}")).expect("ring");
    let options = VerifyOptions::default();
    // As the server passes it: Unix seconds read from the system clock.
    let now = UnixTime::from_unix(1_790_000_000);
    let expiry = Expiry::from_unix(1_893_456_000);
    let alice = Audience::email("alice@contoso.com").expect("audience");
    let email_code = mint(&ring, &alice, expiry).to_string();
    let subdomains = Audience::domain_and_subdomains("contoso.com").expect("audience");
    let subdomain_code = mint(&ring, &subdomains, expiry).to_string();

    // The baseline: HMAC-SHA256 over the message verification computes for alice's code.
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, KEY).expect("key");
    let prepared = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key length");
    let header = *Code::parse(&email_code).expect("code").header_bytes();

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("hmac_baseline", |b| {
        b.iter(|| {
            let mut mac = prepared.clone();
            mac.update(invitegate::MAC_DOMAIN);
            mac.update(black_box(&header));
            mac.update(black_box(b"alice@contoso.com"));
            mac.finalize().into_bytes()
        })
    });
    group.bench_function("verify_valid_email", |b| {
        b.iter(|| {
            verify(
                &ring,
                black_box(&email_code),
                black_box("alice@contoso.com"),
                now,
                &options,
            )
        })
    });
    group.bench_function("verify_not_valid", |b| {
        b.iter(|| {
            verify(
                &ring,
                black_box(&email_code),
                black_box("mallory@contoso.com"),
                now,
                &options,
            )
        })
    });
    group.bench_function("verify_subdomains_4_labels", |b| {
        b.iter(|| {
            verify(
                &ring,
                black_box(&subdomain_code),
                black_box("bob@eu.sales.contoso.com"),
                now,
                &options,
            )
        })
    });
    group.bench_function("mint_email", |b| {
        b.iter(|| mint(&ring, black_box(&alice), expiry))
    });
    group.bench_function("parse", |b| b.iter(|| Code::parse(black_box(&email_code))));
    group.finish();
}

criterion_group!(benches, codes);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    common::print_ratios(
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
}
