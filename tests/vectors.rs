//! The shared specification vectors (`tests/data/test-vectors.json`), the exhaustive checks
//! that the format's check symbol and tag promise, and the code and key fingerprints recomputed
//! from their definitions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{code_fingerprint, key_fingerprint};

use invitegate::{
    Audience, Code, EmailAddress, Error, Expiry, KeyRing, Kind, Outcome, VerifyOptions, mint,
    verify,
};
use serde::Deserialize;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Deserialize)]
struct Vectors {
    keyring: String,
    mint: Vec<MintCase>,
    verify: Vec<VerifyCase>,
}

#[derive(Deserialize)]
struct MintCase {
    kind: String,
    input: String,
    normalized: String,
    expires: u32,
    key_id: u8,
    code: String,
}

#[derive(Deserialize)]
struct VerifyCase {
    code: String,
    email: String,
    now: i64,
    leeway: u64,
    outcome: String,
}

fn vectors() -> Vectors {
    let text = include_str!("data/test-vectors.json");
    serde_json::from_str(text).expect("test-vectors.json parses")
}

/// The vectors' ring with `key_id` moved first, so that it signs.
fn ring_signing_with(keyring: &str, key_id: u8) -> KeyRing {
    let prefix = format!("{key_id}:");
    let (first, rest): (Vec<&str>, Vec<&str>) =
        keyring.lines().partition(|line| line.starts_with(&prefix));
    assert_eq!(first.len(), 1, "the vectors' ring holds key {key_id}");
    KeyRing::parse(&[first, rest].concat().join("\n")).expect("the vectors' ring parses")
}

fn kind_named(name: &str) -> Kind {
    match name {
        "email" => Kind::Email,
        "domain" => Kind::Domain,
        "domain+subdomains" => Kind::DomainAndSubdomains,
        other => panic!("unknown kind {other} in vectors"),
    }
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("instant in range")
}

#[test]
fn every_mint_vector_reproduces() {
    let v = vectors();
    assert!(!v.mint.is_empty());
    for (i, case) in v.mint.iter().enumerate() {
        let name = format!(
            "mint case {i} ({} {:?}, key {})",
            case.kind, case.input, case.key_id
        );
        let ring = ring_signing_with(&v.keyring, case.key_id);
        let audience = Audience::new(kind_named(&case.kind), &case.input)
            .unwrap_or_else(|e| panic!("{name}: audience refused: {e}"));
        assert_eq!(audience.value(), case.normalized, "{name}: normalization");
        let code = mint(&ring, &audience, Expiry::from_unix(case.expires));
        assert_eq!(code.to_string(), case.code, "{name}: code");
        let parsed = Code::parse(&case.code).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed, code, "{name}: parse of the display form");
        assert_eq!(parsed.key_id(), case.key_id, "{name}: key id");
        assert_eq!(parsed.expiry().unix(), case.expires, "{name}: expiry");
        assert_eq!(parsed.kind(), kind_named(&case.kind), "{name}: kind");
    }
}

#[test]
fn every_verify_vector_reproduces() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("the vectors' ring parses");
    assert!(!v.verify.is_empty());
    for (i, case) in v.verify.iter().enumerate() {
        let options = VerifyOptions {
            leeway: Duration::from_secs(case.leeway),
            ..VerifyOptions::default()
        };
        let outcome = verify(&ring, &case.code, &case.email, at(case.now), &options);
        assert_eq!(
            outcome.name(),
            case.outcome,
            "verify case {i}: {:?} for {:?} at {} (leeway {})",
            case.code,
            case.email,
            case.now,
            case.leeway
        );
    }
}

/// The vectors hold every case the spec's section 4 names, so a stale copy of the file fails
/// here rather than passing on the cases it still has.
#[test]
fn the_vectors_cover_dns_limits_and_final_sigma() {
    let v = vectors();
    let final_sigma = v
        .mint
        .iter()
        .find(|case| case.normalized.contains('ς'))
        .expect("a mint vector lower-cases a final capital sigma");
    assert_eq!(final_sigma.kind, "email");
    assert_eq!(
        EmailAddress::parse(&final_sigma.input).map(|a| a.as_str().to_owned()),
        Ok(final_sigma.normalized.clone())
    );
    let admitted = v
        .verify
        .iter()
        .filter(|case| case.email == final_sigma.normalized && case.outcome == "valid")
        .count();
    assert_eq!(
        admitted, 1,
        "a verify vector admits the lower-cased address"
    );

    // Emails whose domain breaks a DNS limit: refused by normalization, so `not-valid` before
    // any MAC. One breaks the label limit, one the whole-name limit.
    let mut label = 0;
    let mut whole = 0;
    for case in &v.verify {
        match EmailAddress::parse(&case.email) {
            Err(Error::DomainLabelTooLong { octets, .. }) => {
                assert!(octets > 63);
                assert_eq!(case.outcome, "not-valid", "{:?}", case.email);
                label += 1;
            }
            Err(Error::DomainTooLong { octets, .. }) => {
                assert!(octets > 253);
                assert_eq!(case.outcome, "not-valid", "{:?}", case.email);
                whole += 1;
            }
            Ok(_) | Err(Error::InvalidEmail { .. }) => {}
            Err(other) => panic!("{:?}: {other}", case.email),
        }
    }
    assert!(label >= 1 && whole >= 1, "label {label}, whole {whole}");
}

/// Display form of arbitrary bytes, computed independently of the library: base32 crate for
/// the data symbols and the spec's Luhn mod 32 written out again here.
fn display(bytes: &[u8; 15]) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let data = base32::encode(base32::Alphabet::Crockford, bytes);
    let mut sum = 0u32;
    for (i, symbol) in data.bytes().rev().enumerate() {
        let value = ALPHABET
            .iter()
            .position(|&a| a == symbol)
            .expect("alphabet") as u32;
        let p = value * if i % 2 == 0 { 2 } else { 1 };
        sum += p / 32 + p % 32;
    }
    let check = ALPHABET[((32 - sum % 32) % 32) as usize] as char;
    format!("{data}{check}")
}

const ALICE_CODE: &str = "243Q1-PYRG0-DVPFF-Z9H9F-NDX66";
const NOW: i64 = 1_790_000_000;

#[test]
fn independent_display_matches_the_vectors() {
    let code = Code::parse(ALICE_CODE).expect("vector parses");
    assert_eq!(display(code.as_bytes()), ALICE_CODE.replace('-', ""));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let options = VerifyOptions::default();
    let original = *Code::parse(ALICE_CODE).expect("vector parses").as_bytes();
    assert!(verify(&ring, ALICE_CODE, "alice@contoso.com", at(NOW), &options).is_valid());
    for bit in 0..120 {
        let mut bytes = original;
        bytes[bit / 8] ^= 0x80 >> (bit % 8);
        let outcome = verify(
            &ring,
            &display(&bytes),
            "alice@contoso.com",
            at(NOW),
            &options,
        );
        assert!(
            matches!(outcome, Outcome::NotValid | Outcome::Malformed),
            "bit {bit}: {outcome:?}"
        );
    }
}

#[test]
fn every_single_symbol_substitution_reads_as_mistyped() {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let options = VerifyOptions::default();
    let symbols: Vec<u8> = ALICE_CODE.bytes().filter(|&b| b != b'-').collect();
    assert_eq!(symbols.len(), 25);
    for position in 0..25 {
        for &other in ALPHABET.iter().filter(|&&s| s != symbols[position]) {
            let mut typed = symbols.clone();
            typed[position] = other;
            let typed = String::from_utf8(typed).expect("ascii");
            let outcome = verify(&ring, &typed, "alice@contoso.com", at(NOW), &options);
            assert_eq!(
                outcome,
                Outcome::Mistyped,
                "position {position} -> {}",
                other as char
            );
        }
    }
}

#[test]
fn lenient_reading_accepts_lookalikes_and_separators() {
    // The vector's first group is 243Q1: `1` may be typed as I, i, L or l.
    for typed in ["243QI", "243Qi", "243QL", "243Ql"] {
        let text = ALICE_CODE.replacen("243Q1", typed, 1);
        assert_eq!(
            Code::parse(&text).map(|c| c.to_string()).as_deref(),
            Ok(ALICE_CODE)
        );
    }
    // `0` may be typed as O or o.
    let text = ALICE_CODE.replace("PYRG0", "PYRGo");
    assert_eq!(
        Code::parse(&text).map(|c| c.to_string()).as_deref(),
        Ok(ALICE_CODE)
    );
    let text = format!("\t{}\r\n", ALICE_CODE.replace('-', " - "));
    assert_eq!(
        Code::parse(&text).map(|c| c.to_string()).as_deref(),
        Ok(ALICE_CODE)
    );
}

#[test]
fn strict_reading_refuses_everything_else() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let options = VerifyOptions::default();
    let malformed = [
        "",
        "-----",
        &ALICE_CODE.replace('Q', "U"),
        &ALICE_CODE.replace('-', "_"),
        &ALICE_CODE.replace('-', "."),
        &format!("{ALICE_CODE}0"),
        &format!("{ALICE_CODE}\u{a0}"),
        &ALICE_CODE.replace('2', "\u{ff12}"),
        &ALICE_CODE.replace("-", "\u{2013}"),
    ];
    for text in malformed {
        let outcome = verify(&ring, text, "alice@contoso.com", at(NOW), &options);
        assert_eq!(outcome, Outcome::Malformed, "{text:?}");
    }
}

#[test]
fn unknown_version_or_kind_is_malformed_after_the_check_symbol() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let options = VerifyOptions::default();
    let original = *Code::parse(ALICE_CODE).expect("vector parses").as_bytes();
    for first in [0x00, 0x10, 0x14, 0x1F, 0x21, 0x01, 0xF1] {
        let mut bytes = original;
        bytes[0] = first;
        let outcome = verify(
            &ring,
            &display(&bytes),
            "alice@contoso.com",
            at(NOW),
            &options,
        );
        assert_eq!(outcome, Outcome::Malformed, "byte 0 = {first:#04x}");
    }
}

#[test]
fn unknown_key_id_is_not_valid_and_no_other_key_is_tried() {
    let v = vectors();
    // A ring without key 7 but with key 200: the vector signed by 7 must not verify, even
    // though the ring has other keys.
    let only_200 = v
        .keyring
        .lines()
        .filter(|l| l.starts_with("200:"))
        .collect::<String>();
    let ring = KeyRing::parse(&only_200).expect("ring");
    let outcome = verify(
        &ring,
        ALICE_CODE,
        "alice@contoso.com",
        at(NOW),
        &VerifyOptions::default(),
    );
    assert_eq!(outcome, Outcome::NotValid);
    // A ring holding key 7's id with key 200's bytes: the tag does not match.
    let swapped = only_200.replacen("200:", "7:", 1);
    let ring = KeyRing::parse(&swapped).expect("ring");
    let outcome = verify(
        &ring,
        ALICE_CODE,
        "alice@contoso.com",
        at(NOW),
        &VerifyOptions::default(),
    );
    assert_eq!(outcome, Outcome::NotValid);
}

#[test]
fn deny_list_revokes_and_reports_after_the_tag() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let deny_list =
        invitegate::DenyList::parse(&format!("# revoked\n\n{}\n", ALICE_CODE.to_lowercase()))
            .expect("deny list parses");
    let options = VerifyOptions {
        deny_list,
        ..VerifyOptions::default()
    };
    let revoked = verify(&ring, ALICE_CODE, "alice@contoso.com", at(NOW), &options);
    assert!(matches!(revoked, Outcome::Revoked(_)), "{revoked:?}");
    // The tag is checked first: the wrong person hears not-valid, not revoked.
    let other = verify(&ring, ALICE_CODE, "mallory@contoso.com", at(NOW), &options);
    assert_eq!(other, Outcome::NotValid);
    // Revocation is checked before expiry.
    let late = verify(
        &ring,
        ALICE_CODE,
        "alice@contoso.com",
        at(4_000_000_000),
        &options,
    );
    assert!(matches!(late, Outcome::Revoked(_)), "{late:?}");
    let bad = invitegate::DenyList::parse("ok\n")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(bad.starts_with("deny list line 1: "), "{bad}");
}

#[test]
fn expired_reports_the_authentic_expiry() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let outcome = verify(
        &ring,
        ALICE_CODE,
        "alice@contoso.com",
        at(1_893_456_060),
        &VerifyOptions::default(),
    );
    let Outcome::Expired(grant) = outcome else {
        panic!("expected expired, got {outcome:?}")
    };
    assert_eq!(grant.expiry.unix(), 1_893_456_000);
    assert_eq!(grant.expiry.to_string(), "2030-01-01T00:00:00Z");
    assert_eq!(grant.key_id, 7);
    assert_eq!(grant.audience.value(), "alice@contoso.com");
}

#[test]
fn subdomain_grant_names_the_matched_audience() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("ring");
    let outcome = verify(
        &ring,
        "2C3PP-DQCG0-16VQP-KWXQJ-ANZBP",
        "Anyone@EU.Sales.Contoso.com",
        at(NOW),
        &VerifyOptions::default(),
    );
    let Outcome::Valid(grant) = outcome else {
        panic!("expected valid, got {outcome:?}")
    };
    assert_eq!(grant.kind(), Kind::DomainAndSubdomains);
    assert_eq!(grant.audience.value(), "contoso.com");
    // A code for contoso.com never admits a sibling that merely ends in the same letters.
    for email in [
        "x@notcontoso.com",
        "x@contoso.com.evil.com",
        "x@com",
        "x@contoso.co",
    ] {
        let outcome = verify(
            &ring,
            "2C3PP-DQCG0-16VQP-KWXQJ-ANZBP",
            email,
            at(NOW),
            &VerifyOptions::default(),
        );
        assert_eq!(outcome, Outcome::NotValid, "{email}");
    }
}

#[test]
fn debug_never_shows_a_whole_code() {
    let code = Code::parse(ALICE_CODE).expect("vector parses");
    let debug = format!("{code:?}");
    assert!(
        !debug.contains(ALICE_CODE) && !debug.contains(&ALICE_CODE.replace('-', "")),
        "{debug}"
    );
    // Debug names the code by its fingerprint, recomputed here from its definition.
    let fingerprint = code_fingerprint(ALICE_CODE);
    assert!(debug.contains(&fingerprint), "{debug}");
}

// ---- fingerprints, recomputed from their definitions ----

/// The vectors' ring as (key id, key bytes), decoded with the `base64` crate.
fn ring_entries(keyring: &str) -> Vec<(u8, Vec<u8>)> {
    use base64::Engine as _;
    keyring
        .lines()
        .map(|line| {
            let (id, key) = line.split_once(':').expect("KID:BASE64");
            let key = base64::engine::general_purpose::STANDARD
                .decode(key)
                .expect("base64");
            (id.parse().expect("key id"), key)
        })
        .collect()
}

#[test]
fn code_fingerprints_are_sha256_of_the_bytes() {
    let v = vectors();
    for case in &v.mint {
        let code = Code::parse(&case.code).expect("vector parses");
        assert_eq!(
            code.fingerprint(),
            code_fingerprint(&case.code),
            "{}",
            case.code
        );
    }
    // Two codes that differ in one tag bit have different fingerprints.
    let mut bytes = *Code::parse(ALICE_CODE).expect("vector parses").as_bytes();
    bytes[14] ^= 1;
    let flipped = display(&bytes);
    assert_ne!(code_fingerprint(&flipped), code_fingerprint(ALICE_CODE));
    assert_eq!(
        Code::parse(&flipped).expect("valid text").fingerprint(),
        code_fingerprint(&flipped)
    );
}

#[test]
fn key_fingerprints_are_the_documented_hmac() {
    let v = vectors();
    let ring = KeyRing::parse(&v.keyring).expect("the vectors' ring parses");
    let entries = ring_entries(&v.keyring);
    assert_eq!(entries.len(), 2);
    for (id, key) in &entries {
        assert_eq!(
            ring.fingerprint(*id),
            Some(key_fingerprint(key)),
            "key {id}"
        );
    }
    assert_ne!(
        key_fingerprint(&entries[0].1),
        key_fingerprint(&entries[1].1)
    );
}

/// What a person reads: `inspect` and `keys list` print the same recomputed fingerprints.
#[test]
fn the_cli_shows_the_recomputed_fingerprints() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let out = support::run(support::invitegate(dir.path()).args(["inspect", "--json", ALICE_CODE]));
    assert_eq!(support::status(&out), 0, "{}", support::stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&support::stdout(&out)).unwrap();
    assert_eq!(
        json["fingerprint"],
        code_fingerprint(ALICE_CODE).as_str(),
        "{json}"
    );

    let out = support::run(
        support::invitegate(dir.path())
            .args(["keys", "list", "--json"])
            .env("INVITEGATE_KEYS", v.keyring.replace('\n', ",")),
    );
    assert_eq!(support::status(&out), 0, "{}", support::stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&support::stdout(&out)).unwrap();
    let expected: Vec<serde_json::Value> = ring_entries(&v.keyring)
        .iter()
        .map(|(id, key)| serde_json::json!([id, key_fingerprint(key)]))
        .collect();
    let shown: Vec<serde_json::Value> = json
        .as_array()
        .expect("an array")
        .iter()
        .map(|row| serde_json::json!([row["key_id"], row["fingerprint"]]))
        .collect();
    assert_eq!(shown, expected);
}
