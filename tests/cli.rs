//! The built `invitegate` binary, run in a temporary directory: every subcommand, every exit
//! status, every key source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::{
    ALICE_CODE, BEFORE_2030, KEY_7, invitegate, run, run_with_stdin, status, stderr, stdout,
    with_keys,
};

const KEY_7_BASE64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn verify_exit_codes_and_lines() {
    let dir = with_keys();
    let verify = |email: &str, code: &str| {
        run(invitegate(dir.path()).args([
            "verify",
            "--keys-file",
            "keys.txt",
            "--at",
            BEFORE_2030,
            "--email",
            email,
            code,
        ]))
    };
    let valid = verify("Alice@Contoso.com", ALICE_CODE);
    assert_eq!(status(&valid), 0, "{}", stderr(&valid));
    assert_eq!(
        stdout(&valid).trim(),
        "valid: email code for alice@contoso.com, key 7, expires 2030-01-01T00:00:00Z"
    );
    // Past its expiry but within the leeway (60 s): still valid, and the line says why.
    let late = run(invitegate(dir.path()).args([
        "verify",
        "--keys-file",
        "keys.txt",
        "--at",
        "2030-01-01T00:00:30Z",
        "--email",
        "alice@contoso.com",
        ALICE_CODE,
    ]));
    assert_eq!(status(&late), 0, "{}", stderr(&late));
    assert!(
        stdout(&late)
            .trim()
            .ends_with("expires 2030-01-01T00:00:00Z (expired 30 s ago, within the leeway)"),
        "{}",
        stdout(&late)
    );
    let cases = [
        ("mallory@contoso.com", ALICE_CODE, "not-valid: "),
        (
            "alice@contoso.com",
            "243Q1-PYRG0-DVPFF-Z9H9F-NDX60",
            "mistyped: ",
        ),
        ("alice@contoso.com", "243Q1-PYRG0", "malformed: "),
        (
            "alice@contoso.com",
            "243Q1-UYRG0-DVPFF-Z9H9F-NDX66",
            "malformed: ",
        ),
    ];
    for (email, code, prefix) in cases {
        let out = verify(email, code);
        assert_eq!(status(&out), 1, "{email} {code}");
        assert!(
            stdout(&out).starts_with(prefix),
            "{email} {code}: {}",
            stdout(&out)
        );
    }
    let expired = run(invitegate(dir.path()).args([
        "verify",
        "--keys-file",
        "keys.txt",
        "--at",
        "2030-01-01T00:01:00Z",
        "--email",
        "alice@contoso.com",
        ALICE_CODE,
    ]));
    assert_eq!(status(&expired), 1);
    assert!(
        stdout(&expired).contains("expired 2030-01-01T00:00:00Z"),
        "{}",
        stdout(&expired)
    );
}

#[test]
fn verify_json_uses_the_spec_names() {
    let dir = with_keys();
    std::fs::write(
        dir.path().join("deny.txt"),
        format!("# revoked\n{}\n", ALICE_CODE.to_lowercase()),
    )
    .unwrap();
    let cases: [(&[&str], &str, i32); 4] = [
        (&["--email", "alice@contoso.com", ALICE_CODE], "valid", 0),
        (&["--email", "eve@contoso.com", ALICE_CODE], "not-valid", 1),
        (
            &[
                "--email",
                "alice@contoso.com",
                "--deny-list",
                "deny.txt",
                ALICE_CODE,
            ],
            "revoked",
            1,
        ),
        (
            &["--email", "alice@contoso.com", "nonsense!"],
            "malformed",
            1,
        ),
    ];
    for (args, outcome, code) in cases {
        let out = run(invitegate(dir.path())
            .args([
                "verify",
                "--json",
                "--keys-file",
                "keys.txt",
                "--at",
                BEFORE_2030,
            ])
            .args(args));
        assert_eq!(status(&out), code, "{args:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["outcome"], outcome, "{args:?}");
    }
}

#[test]
fn keys_come_from_each_source() {
    let dir = with_keys();
    let args = [
        "verify",
        "--at",
        BEFORE_2030,
        "--email",
        "alice@contoso.com",
        ALICE_CODE,
    ];
    let from_flag = run(invitegate(dir.path())
        .args(["verify", "--keys-file", "keys.txt"])
        .args(&args[1..]));
    assert_eq!(status(&from_flag), 0, "{}", stderr(&from_flag));
    let from_file_env = run(invitegate(dir.path())
        .env("INVITEGATE_KEYS_FILE", "keys.txt")
        .args(args));
    assert_eq!(status(&from_file_env), 0, "{}", stderr(&from_file_env));
    // Azure app settings hold no newlines: entries separated by commas.
    let ring = format!(
        "{},{KEY_7}",
        "9:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKiw=="
    );
    let from_env = run(invitegate(dir.path())
        .env("INVITEGATE_KEYS", &ring)
        .args(args));
    assert_eq!(status(&from_env), 0, "{}", stderr(&from_env));

    // Both variables: the documented precedence (the file), with a warning.
    let both = run(invitegate(dir.path())
        .env("INVITEGATE_KEYS", KEY_7)
        .env("INVITEGATE_KEYS_FILE", "keys.txt")
        .args(args));
    assert_eq!(status(&both), 0, "{}", stderr(&both));
    assert!(
        stderr(&both).contains("using INVITEGATE_KEYS_FILE"),
        "{}",
        stderr(&both)
    );
    let none = run(invitegate(dir.path()).args(args));
    assert_eq!(status(&none), 2);
    assert!(
        stderr(&none).contains("invitegate keygen"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn a_key_on_the_command_line_is_impossible() {
    let dir = with_keys();
    for flag in ["--keys", "--key", "--keyring"] {
        let out = run(invitegate(dir.path()).args([
            "mint",
            flag,
            KEY_7,
            "--email",
            "a@contoso.com",
            "--expires-in",
            "1d",
        ]));
        assert_eq!(status(&out), 2, "{flag}");
    }
    // A key pasted where a path goes is refused without echoing it.
    let out = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        KEY_7,
        "--email",
        "a@contoso.com",
        "--expires-in",
        "1d",
    ]));
    assert_eq!(status(&out), 2);
    assert!(!stderr(&out).contains(KEY_7_BASE64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("looks like a key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_key_files_say_which_entry_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let short = "AAECAwQFBgcICQoLDA0ODw==";
    std::fs::write(dir.path().join("keys.txt"), format!("{KEY_7}\n5:{short}\n")).unwrap();
    let out = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--email",
        "a@contoso.com",
        "--expires-in",
        "1d",
    ]));
    assert_eq!(status(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "reading keys file keys.txt: entry 2: key 5 is 16 bytes; keys need at least 32"
        ),
        "{err}"
    );
    assert!(!err.contains(short) && !err.contains(KEY_7_BASE64), "{err}");
    let missing = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "nope.txt",
        "--email",
        "a@contoso.com",
        "--expires-in",
        "1d",
    ]));
    assert_eq!(status(&missing), 2);
    assert!(
        stderr(&missing).contains("reading keys file nope.txt"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn keygen_mint_verify_round_trip_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(invitegate(dir.path()).args(["keygen", "--add-to", "ring.txt"]));
    assert_eq!(status(&first), 0, "{}", stderr(&first));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("ring.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mint = |email: &str| {
        let out = run(invitegate(dir.path()).args([
            "mint",
            "--keys-file",
            "ring.txt",
            "--email",
            email,
            "--expires-in",
            "2w",
        ]));
        assert_eq!(status(&out), 0, "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let verify = |email: &str, code: &str| {
        status(&run(invitegate(dir.path()).args([
            "verify",
            "--keys-file",
            "ring.txt",
            "--email",
            email,
            code,
        ])))
    };
    let old_code = mint("alice@contoso.com");
    assert_eq!(verify("alice@contoso.com", &old_code), 0);

    // Rotation: the new key signs, the old one still verifies; the key is not printed.
    let second = run(invitegate(dir.path()).args(["keygen", "--add-to", "ring.txt"]));
    assert_eq!(status(&second), 0);
    assert!(
        stdout(&second).contains("key 1 still verifies"),
        "{}",
        stdout(&second)
    );
    let ring = std::fs::read_to_string(dir.path().join("ring.txt")).unwrap();
    let new_key = ring.lines().next().unwrap().split_once(':').unwrap().1;
    assert!(!stdout(&second).contains(new_key));
    let new_code = mint("bob@contoso.com");
    assert_ne!(
        &new_code[..5],
        &old_code[..5],
        "key id changes the first group"
    );
    assert_eq!(verify("bob@contoso.com", &new_code), 0);
    assert_eq!(verify("alice@contoso.com", &old_code), 0);
    assert_eq!(verify("bob@contoso.com", &old_code), 1);

    let taken = run(invitegate(dir.path()).args(["keygen", "--add-to", "ring.txt", "--id", "2"]));
    assert_eq!(status(&taken), 2);
    assert!(
        stderr(&taken).contains("key id 2 is already in ring.txt"),
        "{}",
        stderr(&taken)
    );

    let printed = run(invitegate(dir.path()).args(["keygen", "--id", "42"]));
    assert_eq!(status(&printed), 0);
    let entry = stdout(&printed);
    let (id, key) = entry.trim().split_once(':').unwrap();
    assert_eq!(id, "42");
    assert_eq!(key.len(), 44, "32 bytes in padded base64");
}

#[test]
fn mint_json_and_refusals() {
    let dir = with_keys();
    let out = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--email",
        "  Alice@Contoso.COM ",
        "--expires-at",
        "2030-01-01T00:00:00Z",
        "--json",
    ]));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["code"], ALICE_CODE);
    assert_eq!(json["kind"], "email");
    assert_eq!(json["audience"], "alice@contoso.com");
    assert_eq!(json["key_id"], 7);
    assert_eq!(json["expires_at"], "2030-01-01T00:00:00Z");

    let refusals: [&[&str]; 7] = [
        &["--domain", "gmail.com", "--expires-in", "1d"],
        &["--domain", "co.uk", "--subdomains", "--expires-in", "1d"],
        &["--domain", "com", "--expires-in", "1d"],
        &[
            "--email",
            "a@contoso.com",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ],
        &[
            "--email",
            "a@contoso.com",
            "--expires-at",
            "2200-01-01T00:00:00Z",
        ],
        &["--email", "a@contoso.com", "--expires-at", "tomorrow"],
        &["--email", "not-an-email", "--expires-in", "1d"],
    ];
    for args in refusals {
        let out = run(invitegate(dir.path())
            .args(["mint", "--keys-file", "keys.txt"])
            .args(args));
        assert_eq!(status(&out), 2, "{args:?}");
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let allowed = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--domain",
        "gmail.com",
        "--allow-public-domain",
        "--expires-in",
        "30m",
    ]));
    assert_eq!(status(&allowed), 0, "{}", stderr(&allowed));
    let usage =
        run(invitegate(dir.path()).args(["mint", "--keys-file", "keys.txt", "--email", "a@b.com"]));
    assert_eq!(status(&usage), 2, "an expiry is required");
}

#[test]
fn inspect_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(invitegate(dir.path()).args(["inspect", "243q1 pyrg0 dvpff z9h9f ndx66"]));
    assert_eq!(status(&out), 0);
    let text = stdout(&out);
    // What the logs and send journals name the code by, recomputed from its definition.
    let fingerprint = format!("fingerprint:  {}", support::code_fingerprint(ALICE_CODE));
    for expected in [
        "canonical:    243Q1-PYRG0-DVPFF-Z9H9F-NDX66",
        fingerprint.as_str(),
        "check symbol: ok",
        "kind:         email",
        "key id:       7",
        "2030-01-01T00:00:00Z",
        "nothing here is authenticated",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let typo =
        run(invitegate(dir.path()).args(["inspect", "--json", "243Q1-PYRG0-DVPFF-Z9H9F-NDX60"]));
    assert_eq!(status(&typo), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&typo)).unwrap();
    assert_eq!(json["check_symbol_ok"], false);
    assert_eq!(json["key_id"], 7);
    assert_eq!(json["authenticated"], false);
    assert!(
        json.get("canonical").is_none(),
        "no canonical form for a mistyped code: {json}"
    );
    let junk = run(invitegate(dir.path()).args(["inspect", "hello"]));
    assert_eq!(status(&junk), 1);
    let piped = run_with_stdin(
        invitegate(dir.path()).args(["inspect", "-"]),
        format!("{ALICE_CODE}\n"),
    );
    assert_eq!(status(&piped), 0, "{}", stderr(&piped));
}

const RECIPIENTS: &str = "name,email,team\n\
Alice,alice@contoso.com,red\n\
Bob,not-an-email,blue\n\
\"Carol, Jr\",Carol@Fabrikam.com,green\n\
Dan\n";

#[test]
fn batch_fails_on_bad_rows_without_skip_invalid() {
    let dir = with_keys();
    std::fs::write(dir.path().join("in.csv"), RECIPIENTS).unwrap();
    let out = run(invitegate(dir.path()).args([
        "batch",
        "--keys-file",
        "keys.txt",
        "--expires-in",
        "30d",
        "in.csv",
        "-o",
        "out.csv",
    ]));
    assert_eq!(status(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("line 3: invalid email address"), "{err}");
    assert!(
        err.contains("line 5: it has a different number of fields"),
        "{err}"
    );
    assert!(
        err.contains("4 rows read, 2 codes minted, 2 rows rejected"),
        "{err}"
    );
    // An output lacking rows would look complete: none is written.
    assert!(err.contains("no output was written"), "{err}");
    assert!(!dir.path().join("out.csv").exists());
}

#[test]
fn batch_sets_bad_rows_aside_with_skip_invalid_over_stdin_and_stdout() {
    let dir = with_keys();
    let out = run_with_stdin(
        invitegate(dir.path()).args([
            "batch",
            "--keys-file",
            "keys.txt",
            "--expires-in",
            "30d",
            "--skip-invalid",
            "--rejects",
            "bad.csv",
            "-",
        ]),
        RECIPIENTS,
    );
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    check_merge(&stdout(&out), dir.path());
    let rejects = std::fs::read_to_string(dir.path().join("bad.csv")).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(rejects.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["name", "email", "team", "error"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], "Bob");
    assert!(rows[0][3].starts_with("line 3: "), "{:?}", rows[0]);
    assert_eq!(&rows[1][0], "Dan");
    // --skip-invalid without --rejects would lose rows: refused.
    let usage = run(invitegate(dir.path()).args([
        "batch",
        "--keys-file",
        "keys.txt",
        "--expires-in",
        "1d",
        "--skip-invalid",
        "-",
    ]));
    assert_eq!(status(&usage), 2);
}

/// The mail-merge output: input columns in order, then code, kind, expires_at; and the codes
/// verify for the right people.
fn check_merge(text: &str, dir: &Path) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["name", "email", "team", "code", "kind", "expires_at"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], "Alice");
    assert_eq!(&rows[1][0], "Carol, Jr");
    assert_eq!(
        &rows[1][1], "Carol@Fabrikam.com",
        "passed through unchanged"
    );
    for row in &rows {
        assert_eq!(&row[4], "email");
        let ok = run(invitegate(dir).args([
            "verify",
            "--keys-file",
            "keys.txt",
            "--email",
            &row[1],
            &row[3],
        ]));
        assert_eq!(status(&ok), 0, "{row:?}");
        assert!(
            time::OffsetDateTime::parse(&row[5], &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }
}

#[test]
fn batch_domain_rows_with_per_row_columns() {
    let dir = with_keys();
    let input = "domain,email,subdomains,expires_at\n\
fabrikam.com,admin@fabrikam.com,yes,2029-03-01T00:00:00Z\n\
contoso.com,it@contoso.com,,\n\
gmail.com,x@example.com,no,\n\
contoso.com,it@contoso.com,maybe,\n\
contoso.com,it@contoso.com,no,2001-01-01T00:00:00Z\n";
    let out = run_with_stdin(
        invitegate(dir.path()).args([
            "batch",
            "--keys-file",
            "keys.txt",
            "--expires-at",
            "2029-01-01T00:00:00Z",
            "-",
        ]),
        input,
    );
    assert_eq!(status(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("line 4: refusing a domain code for gmail.com"),
        "{err}"
    );
    assert!(
        err.contains("line 5: `subdomains` must be yes or no"),
        "{err}"
    );
    assert!(
        err.contains("line 6: the expiry 2001-01-01T00:00:00Z is not in the future"),
        "{err}"
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "domain",
            "email",
            "subdomains",
            "code",
            "kind",
            "expires_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0][4], &rows[0][5]),
        ("domain+subdomains", "2029-03-01T00:00:00Z")
    );
    assert_eq!(
        (&rows[1][4], &rows[1][5]),
        ("domain", "2029-01-01T00:00:00Z")
    );
    let ok = run(invitegate(dir.path()).args([
        "verify",
        "--keys-file",
        "keys.txt",
        "--email",
        "x@eu.fabrikam.com",
        &rows[0][3],
    ]));
    assert_eq!(status(&ok), 0);
    let missing_column = run_with_stdin(
        invitegate(dir.path()).args([
            "batch",
            "--keys-file",
            "keys.txt",
            "--expires-in",
            "1d",
            "-",
        ]),
        "name\nx\n",
    );
    assert_eq!(status(&missing_column), 2);
    assert!(
        stderr(&missing_column).contains("`email` or a `domain` column"),
        "{}",
        stderr(&missing_column)
    );
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let top = run(invitegate(dir.path()).arg("--help"));
    assert_eq!(status(&top), 0);
    assert!(
        stdout(&top).contains("Exit status: 0 success"),
        "{}",
        stdout(&top)
    );
    for sub in ["keygen", "mint", "batch", "verify", "inspect"] {
        let out = run(invitegate(dir.path()).args([sub, "--help"]));
        assert_eq!(status(&out), 0, "{sub}");
        assert!(
            stdout(&out).contains("invitegate "),
            "{sub} help has an example"
        );
    }
    let unknown = run(invitegate(dir.path()).arg("frobnicate"));
    assert_eq!(status(&unknown), 2);
}
