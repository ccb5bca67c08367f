//! Key rotation from the command line: locked, atomic ring edits; staged, promoted and retired
//! keys; fingerprints; and `unknown-key` for a code whose key the ring lacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;

use support::*;

fn ids(text: &str) -> Vec<u8> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(|entry| entry.trim().split_once(':').unwrap().0.parse().unwrap())
        .collect()
}

#[test]
fn concurrent_keygens_lose_no_key() {
    const RUNS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..RUNS)
        .map(|_| {
            KillOnDrop(
                invitegate(dir.path())
                    .args(["keygen", "--add-to", "keys.txt"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Each is killed if the test fails before it is waited for.
    for mut child in children {
        let out = output_of(&mut child, DEADLINE);
        assert_eq!(status(&out), 0, "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    let mut found = ids(&text);
    assert_eq!(found.len(), RUNS, "{text}");
    found.sort_unstable();
    found.dedup();
    assert_eq!(found.len(), RUNS, "every key id once");
    assert_eq!(mode(&dir.path().join("keys.txt")), 0o600);
    assert_eq!(names(dir.path()), ["keys.txt"], "no temporary file left");
}

#[test]
fn add_to_follows_a_symbolic_link_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    let real = dir.path().join("secrets/ring-2026.txt");
    std::fs::write(&real, format!("# production ring\n{KEY_7}\n")).unwrap();
    set_mode(&real, 0o640);
    std::os::unix::fs::symlink("secrets/ring-2026.txt", dir.path().join("keys.txt")).unwrap();
    let out = run(invitegate(dir.path()).args(["keygen", "--add-to", "keys.txt"]));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let link = std::fs::symlink_metadata(dir.path().join("keys.txt")).unwrap();
    assert!(link.file_type().is_symlink(), "the link is still a link");
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.starts_with("# production ring\n8:"), "{text}");
    assert_eq!(ids(&text), [8, 7]);
    assert_eq!(mode(&real), 0o640, "the ring keeps its permissions");
}

/// Mints for alice and returns the key id that signed.
fn signing_key(dir: &std::path::Path) -> u64 {
    let out = run(invitegate(dir).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--email",
        "alice@contoso.com",
        "--expires-in",
        "1d",
        "--json",
    ]));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    json["key_id"].as_u64().unwrap()
}

#[test]
fn stage_promote_retire() {
    let dir = with_keys();
    let staged = run(invitegate(dir.path()).args(["keygen", "--add-to", "keys.txt", "--stage"]));
    assert_eq!(status(&staged), 0, "{}", stderr(&staged));
    assert!(
        stdout(&staged).contains("staged key 8"),
        "{}",
        stdout(&staged)
    );
    assert_eq!(signing_key(dir.path()), 7, "a staged key does not sign");
    let ring = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    assert_eq!(ids(&ring), [7, 8]);

    let list = run(invitegate(dir.path()).args(["keys", "list", "--keys-file", "keys.txt"]));
    assert_eq!(status(&list), 0, "{}", stderr(&list));
    let text = stdout(&list);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("7      signing      "), "{text}");
    assert!(lines[2].starts_with("8      verify-only  "), "{text}");
    let secret = ring.lines().nth(1).unwrap().split_once(':').unwrap().1;
    assert!(!text.contains(&secret[..12]), "no key bytes in the listing");
    assert!(!text.contains(&KEY_7[2..14]));

    let promoted =
        run(invitegate(dir.path()).args(["keys", "promote", "8", "--keys-file", "keys.txt"]));
    assert_eq!(status(&promoted), 0, "{}", stderr(&promoted));
    assert_eq!(signing_key(dir.path()), 8);

    // The former signing key still verifies until retired; the signing key cannot be.
    let verify_alice = || {
        run(invitegate(dir.path()).args([
            "verify",
            "--keys-file",
            "keys.txt",
            "--email",
            "alice@contoso.com",
            "--at",
            BEFORE_2030,
            ALICE_CODE,
        ]))
    };
    assert_eq!(status(&verify_alice()), 0);
    let refused =
        run(invitegate(dir.path()).args(["keys", "retire", "8", "--keys-file", "keys.txt"]));
    assert_eq!(status(&refused), 2);
    assert!(
        stderr(&refused).contains("promote another key first"),
        "{}",
        stderr(&refused)
    );
    let unknown =
        run(invitegate(dir.path()).args(["keys", "retire", "9", "--keys-file", "keys.txt"]));
    assert_eq!(status(&unknown), 2);
    assert!(
        stderr(&unknown).contains("has no key 9"),
        "{}",
        stderr(&unknown)
    );
    let retired =
        run(invitegate(dir.path()).args(["keys", "retire", "7", "--keys-file", "keys.txt"]));
    assert_eq!(status(&retired), 0, "{}", stderr(&retired));
    let ring = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    assert_eq!(ids(&ring), [8]);
    assert_eq!(mode(&dir.path().join("keys.txt")), 0o600);
    let after = verify_alice();
    assert_eq!(status(&after), 1);
    assert!(
        stdout(&after).starts_with("unknown-key: "),
        "{}",
        stdout(&after)
    );

    // A ring in the environment is listed, but cannot be edited.
    let env = run(invitegate(dir.path())
        .args(["keys", "list", "--json"])
        .env("INVITEGATE_KEYS", format!("{KEY_7},{KEY_8}")));
    assert_eq!(status(&env), 0, "{}", stderr(&env));
    let json: serde_json::Value = serde_json::from_str(&stdout(&env)).unwrap();
    assert_eq!(json[0]["key_id"], 7);
    assert_eq!(json[0]["role"], "signing");
    assert_eq!(json[1]["role"], "verify-only");
    let fingerprint = json[0]["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint, key_fingerprint(&key_bytes(KEY_7)));
    assert_eq!(
        json[1]["fingerprint"].as_str().unwrap(),
        key_fingerprint(&key_bytes(KEY_8))
    );
    // The same key has the same fingerprint wherever it is.
    std::fs::write(dir.path().join("seven.txt"), format!("{KEY_7}\n")).unwrap();
    set_mode(&dir.path().join("seven.txt"), 0o600);
    let file = run(invitegate(dir.path()).args(["keys", "list", "--keys-file", "seven.txt"]));
    assert!(stdout(&file).contains(fingerprint), "{}", stdout(&file));
    let edit = run(invitegate(dir.path())
        .args(["keys", "promote", "8"])
        .env("INVITEGATE_KEYS", format!("{KEY_7},{KEY_8}")));
    assert_eq!(status(&edit), 2);
    assert!(
        stderr(&edit).contains("edits a key ring file"),
        "{}",
        stderr(&edit)
    );
}

#[test]
fn stage_needs_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(invitegate(dir.path()).args(["keygen", "--stage"]));
    assert_eq!(status(&out), 2);
    assert!(stderr(&out).contains("--stage"), "{}", stderr(&out));
}

#[test]
fn a_code_from_an_unknown_key_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.txt"), format!("{KEY_8}\n")).unwrap();
    set_mode(&dir.path().join("keys.txt"), 0o600);
    let verify = |json: bool| {
        let mut command = invitegate(dir.path());
        command.args([
            "verify",
            "--keys-file",
            "keys.txt",
            "--email",
            "alice@contoso.com",
            "--at",
            BEFORE_2030,
            ALICE_CODE,
        ]);
        if json {
            command.arg("--json");
        }
        run(&mut command)
    };
    let out = verify(false);
    assert_eq!(status(&out), 1);
    assert_eq!(
        stdout(&out).trim(),
        "unknown-key: the code was signed with key 7, which this key ring does not hold (it \
         holds 8); add that key, or check the rotation"
    );
    let out = verify(true);
    assert_eq!(status(&out), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["outcome"], "unknown-key");
    assert_eq!(json["key_id"], 7);
    // A wrong address with a known key is still `not-valid`.
    std::fs::write(dir.path().join("keys.txt"), format!("{KEY_8}\n{KEY_7}\n")).unwrap();
    let out = run(invitegate(dir.path()).args([
        "verify",
        "--keys-file",
        "keys.txt",
        "--email",
        "bob@contoso.com",
        ALICE_CODE,
    ]));
    assert_eq!(status(&out), 1);
    assert!(stdout(&out).starts_with("not-valid: "), "{}", stdout(&out));
}

/// The bytes of a `ID:BASE64` key ring entry, decoded with the `base64` crate.
fn key_bytes(entry: &str) -> Vec<u8> {
    use base64::Engine as _;
    let (_, key) = entry.split_once(':').unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap()
}
