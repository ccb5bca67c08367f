//! Everyday inputs: spreadsheets as Excel writes them, dates for expiry, flags that cannot
//! take effect, byte order marks, both key variables, and the free-mail list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn batch(dir: &std::path::Path, extra: &[&str], input: &[u8]) -> std::process::Output {
    run_with_stdin(
        invitegate(dir)
            .args(["batch", "--keys-file", "keys.txt", "--expires-in", "30d"])
            .args(extra),
        input,
    )
}

fn rows(output: &[u8]) -> Vec<csv::StringRecord> {
    rows_with(output, b',')
}

fn rows_with(output: &[u8], delimiter: u8) -> Vec<csv::StringRecord> {
    let output = output.strip_prefix("\u{feff}".as_bytes()).unwrap_or(output);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(output);
    reader.records().map(Result::unwrap).collect()
}

/// Outlook's contact export in other languages, as Excel saves it: semicolons, a byte order
/// mark, CRLF. The email column is found by its header without --email-column.
#[test]
fn outlook_exports_in_european_languages_are_read() {
    let dir = with_keys();
    for (header, address) in [
        ("Vorname;Nachname;E-Mail-Adresse;Firma", "anna@contoso.de"),
        (
            "Prénom;Nom;Adresse de messagerie;Société",
            "anne@contoso.fr",
        ),
        (
            "Nombre;Apellidos;Dirección de correo electrónico;Organización",
            "ana@contoso.es",
        ),
        (
            "Nombre;Apellidos;Correo electrónico;Organización",
            "ana@contoso.es",
        ),
        (
            "Nome;Cognome;Indirizzo posta elettronica;Società",
            "anna@contoso.it",
        ),
        ("Nome;Cognome;Indirizzo e-mail;Società", "anna@contoso.it"),
        ("Voornaam;Achternaam;E-mailadres;Bedrijf", "anne@contoso.nl"),
        ("Prénom;Nom;Courriel;Société", "anne@contoso.ca"),
    ] {
        let input = format!("\u{feff}{header}\r\nAnne;Martin;{address};Contoso\r\n");
        let out = batch(dir.path(), &["-"], input.as_bytes());
        assert_eq!(status(&out), 0, "{header}: {}", stderr(&out));
        let merged = rows_with(&out.stdout, OUTPUT_DELIMITER);
        assert_eq!(merged.len(), 2, "{header}");
        assert_eq!(&merged[1][2], address, "{header}");
        assert_eq!(&merged[1][5], "email", "{header}");
        let ok = run(invitegate(dir.path()).args([
            "verify",
            "--keys-file",
            "keys.txt",
            "--email",
            address,
            &merged[1][4],
        ]));
        assert_eq!(status(&ok), 0, "{header}: {}", stdout(&ok));
    }
    // A second address column beside the first is not taken for it.
    let out = batch(
        dir.path(),
        &["-"],
        "Vorname;E-Mail-Adresse;E-Mail 2: Adresse\r\nA;a@contoso.de;b@contoso.de\r\n".as_bytes(),
    );
    assert_eq!(status(&out), 0, "{}", stderr(&out));
}

/// The delimiter of `batch`'s output for a semicolon input: the input's.
const OUTPUT_DELIMITER: u8 = b';';

#[test]
fn excel_semicolons_headers_and_bom_are_read() {
    let dir = with_keys();
    let input = "\u{feff}First Name;E-mail Address;Team\r\nAlice;alice@contoso.com;red\r\n\
                 Bob;bob@contoso.com;blue\r\n";
    let out = batch(dir.path(), &["-"], input.as_bytes());
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    // Written back as Excel wrote it: the mark, then `;` between fields.
    assert!(out.stdout.starts_with("\u{feff}First Name;".as_bytes()));
    let merged = rows_with(&out.stdout, b';');
    assert_eq!(
        merged[0],
        vec![
            "First Name",
            "E-mail Address",
            "Team",
            "code",
            "kind",
            "expires_at"
        ]
    );
    assert_eq!(merged.len(), 3);
    assert_eq!(&merged[1][1], "alice@contoso.com");
    let ok = run(invitegate(dir.path()).args([
        "verify",
        "--keys-file",
        "keys.txt",
        "--email",
        "alice@contoso.com",
        &merged[1][3],
    ]));
    assert_eq!(status(&ok), 0, "{}", stdout(&ok));

    for (header, extra) in [
        ("name\temail\n", &[][..]),
        (
            "Name|Courriel\n",
            &["--delimiter", "|", "--email-column", "courriel"][..],
        ),
        ("Name;EMAIL\n", &[][..]),
        ("Name,Mail\n", &[][..]),
    ] {
        let delimiter = header
            .chars()
            .find(|c| ['\t', '|', ';', ','].contains(c))
            .unwrap();
        let input = format!("{header}Carol{delimiter}carol@contoso.com\n");
        let out = batch(dir.path(), &[extra, &["-"]].concat(), input.as_bytes());
        assert_eq!(status(&out), 0, "{header:?}: {}", stderr(&out));
        // The output keeps the input's delimiter.
        let merged = rows_with(&out.stdout, delimiter as u8);
        assert_eq!(merged.len(), 2, "{header:?}");
        assert_eq!(&merged[1][1], "carol@contoso.com", "{header:?}");
    }
    // Unless told otherwise.
    let out = batch(
        dir.path(),
        &["--output-delimiter", ",", "--no-bom", "-"],
        "\u{feff}Name;EMAIL\r\nCarol;carol@contoso.com\r\n".as_bytes(),
    );
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        out.stdout.starts_with(b"Name,EMAIL,code,"),
        "{}",
        stdout(&out)
    );
    let named_nowhere = batch(
        dir.path(),
        &["--email-column", "Courriel", "-"],
        b"email\nx@y.com\n",
    );
    assert_eq!(status(&named_nowhere), 2);
    assert!(
        stderr(&named_nowhere).contains("--email-column"),
        "{}",
        stderr(&named_nowhere)
    );
}

#[test]
fn windows_1252_is_decoded_when_named_and_refused_otherwise() {
    let dir = with_keys();
    let input = b"name,email\nAlice,alice@contoso.com\nZo\xeb,zoe@contoso.com\n";
    let refused = batch(dir.path(), &["-"], input);
    assert_eq!(status(&refused), 2);
    let err = stderr(&refused);
    assert!(err.contains("line 3 is not valid UTF-8"), "{err}");
    assert!(err.contains("--encoding windows-1252"), "{err}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains('\u{fffd}'));

    let decoded = batch(
        dir.path(),
        &["--encoding", "windows-1252", "--bom", "-"],
        input,
    );
    assert_eq!(status(&decoded), 0, "{}", stderr(&decoded));
    assert!(decoded.stdout.starts_with("\u{feff}name,email,".as_bytes()));
    let text = String::from_utf8(decoded.stdout).unwrap();
    assert!(text.contains("\nZoë,zoe@contoso.com,"), "{text}");
    // Without a mark in, none out; the rejects file is written back in the input's encoding,
    // so that the same command reads it again.
    let input = b"name;email\nZo\xeb;zoe-at-contoso.com\nAlice;alice@contoso.com\n";
    let skipped = batch(
        dir.path(),
        &[
            "--encoding",
            "windows-1252",
            "--skip-invalid",
            "--rejects",
            "bad.csv",
            "-",
        ],
        input,
    );
    assert_eq!(status(&skipped), 0, "{}", stderr(&skipped));
    assert!(skipped.stdout.starts_with(b"name;email;code;"));
    let rejects = std::fs::read(dir.path().join("bad.csv")).unwrap();
    assert!(
        rejects.starts_with(b"name;email;error\nZo\xeb;zoe-at-contoso.com;"),
        "{}",
        String::from_utf8_lossy(&rejects)
    );
    let again = batch(
        dir.path(),
        &[
            "--encoding",
            "windows-1252",
            "--skip-invalid",
            "--rejects",
            "bad2.csv",
            "bad.csv",
        ],
        b"",
    );
    assert_eq!(status(&again), 0, "{}", stderr(&again));
    let again = std::fs::read(dir.path().join("bad2.csv")).unwrap();
    assert!(
        again.starts_with(b"name;email;error;error\nZo\xeb;"),
        "{again:?}"
    );
    let unknown = batch(dir.path(), &["--encoding", "klingon", "-"], input);
    assert_eq!(status(&unknown), 2);
    assert!(
        stderr(&unknown).contains("--encoding klingon"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn formula_cells_are_neutralised_unless_raw() {
    let dir = with_keys();
    let input = "name,email,note\n=HYPERLINK(\"http://evil\"),a@contoso.com,+1\n\
                 @SUM(A1),b@contoso.com,-2\n";
    let out = batch(dir.path(), &["-"], input.as_bytes());
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let safe = rows(&out.stdout);
    assert_eq!(&safe[1][0], "'=HYPERLINK(\"http://evil\")");
    assert_eq!(&safe[1][2], "'+1");
    assert_eq!(&safe[2][0], "'@SUM(A1)");
    assert_eq!(&safe[2][2], "'-2");
    let raw = batch(dir.path(), &["--raw-cells", "-"], input.as_bytes());
    let raw = rows(&raw.stdout);
    assert_eq!(&raw[1][0], "=HYPERLINK(\"http://evil\")");
    assert_eq!(&raw[2][2], "-2");
}

#[test]
fn duplicates_are_reported_and_minted_once() {
    let dir = with_keys();
    let input = "name,email\nAlice,alice@contoso.com\nBob,bob@contoso.com\nAlice again,ALICE@contoso.com \n";
    let out = batch(dir.path(), &["-"], input.as_bytes());
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 4: the same recipient as line 2"),
        "{err}"
    );
    assert!(
        err.contains("3 rows read, 2 codes minted, 0 rows rejected, 1 duplicate left out"),
        "{err}"
    );
    assert_eq!(rows(&out.stdout).len(), 3);
    let allowed = batch(dir.path(), &["--allow-duplicates", "-"], input.as_bytes());
    assert_eq!(status(&allowed), 0);
    assert_eq!(rows(&allowed.stdout).len(), 4);
}

fn mint_expiry(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    run(invitegate(dir)
        .args([
            "mint",
            "--keys-file",
            "keys.txt",
            "--email",
            "a@contoso.com",
            "--json",
        ])
        .args(extra))
}

#[test]
fn expires_at_takes_a_date_as_the_end_of_that_day() {
    let dir = with_keys();
    for (extra, expected) in [
        (&["--expires-at", "2099-01-01"][..], "2099-01-01T23:59:59Z"),
        (
            &["--expires-at", "2099-07-01", "--tz", "Europe/Paris"][..],
            "2099-07-01T21:59:59Z",
        ),
        (
            &["--expires-at", "2099-01-01", "--tz", "Europe/Paris"][..],
            "2099-01-01T22:59:59Z",
        ),
        (
            &["--expires-at", "2099-01-01", "--tz", "-05:00"][..],
            "2099-01-02T04:59:59Z",
        ),
        (
            &["--expires-at", "2099-01-01T12:00:00+01:00"][..],
            "2099-01-01T11:00:00Z",
        ),
    ] {
        let out = mint_expiry(dir.path(), extra);
        assert_eq!(status(&out), 0, "{extra:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["expires_at"], expected, "{extra:?}");
    }
    for (extra, names) in [
        (
            &[
                "--expires-at",
                "2099-01-01T12:00:00Z",
                "--tz",
                "Europe/Paris",
            ][..],
            "--tz",
        ),
        (&["--expires-in", "1d", "--tz", "Europe/Paris"][..], "--tz"),
        (
            &["--expires-at", "2099-01-01", "--tz", "Mars/Olympus"][..],
            "--tz Mars/Olympus",
        ),
        (&["--expires-at", "01/02/2099"][..], "--expires-at"),
    ] {
        let out = mint_expiry(dir.path(), extra);
        assert_eq!(status(&out), 2, "{extra:?}");
        assert!(stderr(&out).contains(names), "{extra:?}: {}", stderr(&out));
    }
}

#[test]
fn ineffective_flags_are_usage_errors_that_name_the_flag() {
    let dir = with_keys();
    std::fs::write(dir.path().join("in.csv"), "email\na@contoso.com\n").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "mint",
                "--keys-file",
                "keys.txt",
                "--email",
                "a@contoso.com",
                "--subdomains",
                "--expires-in",
                "1d",
            ],
            "--subdomains",
        ),
        (
            &[
                "batch",
                "--keys-file",
                "keys.txt",
                "--expires-in",
                "1d",
                "--rejects",
                "bad.csv",
                "in.csv",
            ],
            "--rejects",
        ),
        (
            &[
                "batch",
                "--keys-file",
                "keys.txt",
                "--expires-in",
                "1d",
                "--delimiter",
                "ab",
                "in.csv",
            ],
            "--delimiter",
        ),
    ];
    for (args, flag) in cases {
        let out = run(invitegate(dir.path()).args(args));
        assert_eq!(status(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    assert!(!dir.path().join("bad.csv").exists());
}

#[test]
fn byte_order_marks_in_rings_and_deny_lists_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.txt"), format!("\u{feff}{KEY_7}\r\n")).unwrap();
    set_mode(&dir.path().join("keys.txt"), 0o600);
    std::fs::write(
        dir.path().join("deny.txt"),
        format!("\u{feff}{ALICE_CODE}\r\n"),
    )
    .unwrap();
    let out = run(invitegate(dir.path()).args([
        "verify",
        "--keys-file",
        "keys.txt",
        "--deny-list",
        "deny.txt",
        "--email",
        "alice@contoso.com",
        "--at",
        BEFORE_2030,
        ALICE_CODE,
    ]));
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("revoked: "), "{}", stdout(&out));
    let add = run(invitegate(dir.path()).args(["keygen", "--add-to", "keys.txt", "--stage"]));
    assert_eq!(status(&add), 0, "{}", stderr(&add));
}

#[test]
fn both_key_variables_use_the_file_with_a_warning() {
    let dir = with_keys();
    let out = run(invitegate(dir.path())
        .args([
            "verify",
            "--email",
            "alice@contoso.com",
            "--at",
            BEFORE_2030,
            ALICE_CODE,
        ])
        .env("INVITEGATE_KEYS_FILE", "keys.txt")
        .env("INVITEGATE_KEYS", KEY_8));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("valid: "));
    let err = stderr(&out);
    assert!(
        err.contains("warning: both INVITEGATE_KEYS_FILE and INVITEGATE_KEYS are set; using INVITEGATE_KEYS_FILE"),
        "{err}"
    );
}

#[test]
fn the_free_mail_list_covers_country_domains_and_shared_tenants() {
    let dir = with_keys();
    for args in [
        &["--domain", "hotmail.fr"][..],
        &["--domain", "outlook.fr"],
        &["--domain", "hotmail.co.uk"],
        &["--domain", "yahoo.fr"],
        &["--domain", "gmx.at"],
        &["--domain", "onmicrosoft.com"],
        &["--domain", "onmicrosoft.com", "--subdomains"],
    ] {
        let out = run(invitegate(dir.path())
            .args(["mint", "--keys-file", "keys.txt", "--expires-in", "1d"])
            .args(args));
        assert_eq!(status(&out), 2, "{args:?}");
        assert!(
            stderr(&out).contains("refusing a domain code"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let tenant = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--expires-in",
        "1d",
        "--domain",
        "contoso.onmicrosoft.com",
    ]));
    assert_eq!(status(&tenant), 0, "{}", stderr(&tenant));
}

/// What Excel writes, CR LF line ends and `;;` blank rows, is reported by the line a person
/// sees in a text editor; a cell holding two addresses is refused, as `send` would refuse it.
#[test]
fn rows_are_reported_by_their_line_and_blank_rows_skipped() {
    let dir = with_keys();
    let input = "\u{feff}Name;E-mail\r\nAlice;alice@contoso.com\r\n;\r\n\r\n\
                 Both;bob@contoso.com,carol@contoso.com\r\nAlice again;alice@contoso.com\r\n";
    let out = batch(dir.path(), &["-"], input.as_bytes());
    let err = stderr(&out);
    assert_eq!(status(&out), 1, "{err}");
    assert!(
        err.contains("line 5: invalid email address: it holds `,`, `;`, `@`"),
        "{err}"
    );
    assert!(
        err.contains("line 6: the same recipient as line 2"),
        "{err}"
    );
    assert!(
        err.contains("3 rows read, 1 code minted, 1 row rejected, 1 duplicate left out"),
        "{err}"
    );
    // The rejects file is written as the input was, so that the same Excel opens it to fix:
    // its byte order mark and its semicolons.
    let out = batch(
        dir.path(),
        &["--skip-invalid", "--rejects", "rejects.csv", "-"],
        input.as_bytes(),
    );
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let rejects = std::fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    assert!(
        rejects.starts_with(
            "\u{feff}Name;E-mail;error\nBoth;bob@contoso.com,carol@contoso.com;\"line 5: invalid"
        ),
        "{rejects:?}"
    );
}

#[test]
fn durations_need_a_unit_and_no_months_or_years() {
    let dir = with_keys();
    let mint = |duration: &str| {
        run(invitegate(dir.path()).args([
            "mint",
            "--keys-file",
            "keys.txt",
            "--email",
            "alice@contoso.com",
            "--expires-in",
            duration,
        ]))
    };
    let bare = mint("14");
    assert_eq!(status(&bare), 2);
    assert!(
        stderr(&bare).contains("give a unit: 14d (days)"),
        "{}",
        stderr(&bare)
    );
    for varying in ["1y", "1M", "2months"] {
        let out = mint(varying);
        assert_eq!(status(&out), 2, "{varying}");
        assert!(
            stderr(&out).contains("months and years vary"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(status(&mint("2w 3d")), 0);
    let named = run(invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--email",
        "Alice <alice@contoso.com>",
        "--expires-in",
        "1d",
    ]));
    assert_eq!(status(&named), 2);
    assert!(
        stderr(&named).contains("give the bare address, without a name or angle brackets"),
        "{}",
        stderr(&named)
    );
}

#[test]
fn a_header_without_an_address_column_is_shown_as_written() {
    let dir = with_keys();
    let out = batch(
        dir.path(),
        &["-"],
        "Nom;Coordonnées\r\nA;a@x.com\r\n".as_bytes(),
    );
    assert_eq!(status(&out), 2);
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).starts_with("invitegate: nothing was written to standard output: ")
            && stderr(&out).contains("it has `Nom`, `Coordonnées`"),
        "{}",
        stderr(&out)
    );
}
