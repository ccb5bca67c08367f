//! Cost of checking an Entra bearer token: a repeated token (answered from the cache) against
//! SHA-256 of the token alone (what keyed the cache before its keyed 64-bit hash), and a new
//! token each time (RSA verification), in the same run.
//!
//! `cargo bench --bench entra_auth`. Target: the cached check costs well under a microsecond
//! or two, so the Entra route with one repeated token keeps at least 0.80 of a bare route's
//! throughput.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group};
use futures_util::FutureExt as _;
use invitegate::server::auth::dev_token::claims;
use invitegate::server::auth::{BearerAuth, BearerConfig, DevSigner, JwksSource};
use sha2::Digest as _;

mod common;

const GROUP: &str = "entra_auth";
const ISSUER: &str = "https://contoso.ciamlogin.com/00000000-0000-0000-0000-000000000000/v2.0";
const AUDIENCE: &str = "6b1b6b3e-1c1d-4a8e-9d40-3f4a2b9c8d7e";

fn entra_auth(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let signer = DevSigner::generate().unwrap();
    let now = SystemTime::now();
    let start = |capacity| {
        let mut config = BearerConfig::new(
            ISSUER.to_owned(),
            vec![AUDIENCE.to_owned()],
            JwksSource::Inline(signer.jwks_json()),
        );
        config.cache_capacity = capacity;
        runtime.block_on(BearerAuth::start(config)).unwrap()
    };
    // About the size of Entra's tokens (1.2 KiB): the claims it adds beyond the dev signer's.
    let token = |jti: &str| {
        let mut claims = claims(ISSUER, AUDIENCE, now, Duration::from_secs(3600));
        let object = claims.as_object_mut().unwrap();
        object.insert("aio".into(), "k2BgYFjz8f7/tW1q+x4mQ5dS9rG".repeat(6).into());
        object.insert(
            "rh".into(),
            "0.AXkAm5n3pZ8yQkqH1QJ7tQe9gAAAAAAAAAAAAAAAAAAAAAB5AAA.".into(),
        );
        object.insert("uti".into(), jti.into());
        format!("Bearer {}", signer.sign(&signer.header(), &claims))
    };
    let repeated = token("uti-repeated");
    let (first, second) = (token("uti-first"), token("uti-second"));
    println!("token length: {} bytes", repeated.len() - "Bearer ".len());

    let cached = start(4096);
    let uncached = start(1);
    let check = |auth: &BearerAuth, header: &str| {
        auth.check(Some(black_box(header.as_bytes())), now)
            .now_or_never()
            .expect("a token with a known key needs no fetch")
    };
    assert_eq!(check(&cached, &repeated), Ok(()));

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("sha256_token", |b| {
        b.iter(|| sha2::Sha256::digest(black_box(repeated.as_bytes())))
    });
    group.bench_function("check_cached", |b| b.iter(|| check(&cached, &repeated)));
    // With room for one token, alternating two tokens misses every time: full verification.
    let mut which = false;
    group.bench_function("check_uncached", |b| {
        b.iter(|| {
            which = !which;
            check(&uncached, if which { &first } else { &second })
        })
    });
    group.finish();
}

criterion_group!(benches, entra_auth);

fn main() {
    let run = common::Run::start();
    benches();
    Criterion::default().configure_from_args().final_summary();
    run.print_ratios(GROUP, "sha256_token", &["check_cached", "check_uncached"]);
}
