//! A dry run and a test run are the real command plus one flag: every flag of the real run
//! is taken, the ones such a run does not use are named in one note, and a dry run asks for
//! no token and opens no connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod send_support;

use send_support::{Campaign, GraphServer, SmtpServer, data, recipients, run, stderr, stdout};

/// Every flag a real Graph campaign might carry.
const GRAPH_FLAGS: &[&str] = &[
    "--rate",
    "20/min",
    "--concurrency",
    "2",
    "--rejects",
    "refused.csv",
    "--skip-invalid",
    "--skip-uncertain",
    "--retry-rejected",
    "--journal",
    "campaign.journal",
    "--sign-up-url",
    "https://contoso.example/signup",
];

fn eml_files(campaign: &Campaign, dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(campaign.path(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    files
}

#[test]
fn a_dry_run_is_the_real_graph_command_plus_one_flag_and_asks_for_no_token() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    let mut command = campaign.graph(&server, GRAPH_FLAGS);
    command
        .arg("--oauth-client-certificate")
        .arg(data("oauth-client.pem"))
        .env_remove("INVITEGATE_OAUTH_CLIENT_SECRET")
        .args(["--dry-run", "preview"]);
    let output = run(command);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    for flag in [
        "--graph-url",
        "--oauth-authority",
        "--oauth-client-certificate",
        "--rate",
        "--concurrency",
        "--rejects",
        "--skip-invalid",
    ] {
        assert!(notes[0].contains(flag), "{flag}: {err}");
    }
    // Flags a dry run uses are not named.
    for flag in ["--journal", "--skip-uncertain", "--sign-up-url"] {
        assert!(!notes[0].contains(flag), "{flag}: {err}");
    }
    assert_eq!(eml_files(&campaign, "preview").len(), 3);
    let state = server.state();
    assert!(state.token_requests.is_empty() && state.requests.is_empty());
    assert!(!campaign.path("campaign.journal").exists());
    assert!(!campaign.path("refused.csv").exists());
}

#[test]
fn a_dry_run_of_the_smtp_command_opens_no_connection() {
    let campaign = Campaign::new(&recipients(2));
    // A port nobody listens on: a connection would fail the run.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut command = campaign.base();
    command
        .args(["--from", "invites@contoso.com"])
        .args(["--smtp", &format!("smtp://127.0.0.1:{port}")])
        .args(["--smtp-username", "campaign", "--smtp-timeout", "5"])
        .env("INVITEGATE_SMTP_PASSWORD", "hunter2-password")
        .args(["--dry-run", "preview"]);
    let output = run(command);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains("note: a dry run does not use --smtp, --smtp-username, --smtp-timeout;"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(eml_files(&campaign, "preview").len(), 2);
}

#[test]
fn a_test_run_is_the_real_command_plus_to_one_and_marks_each_message() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    let mut flags = GRAPH_FLAGS.to_vec();
    flags.retain(|f| *f != "20/min");
    flags.retain(|f| *f != "--rate");
    let mut command = campaign.graph(&server, &flags);
    command.args([
        "--rate",
        "off",
        "--to-one",
        "admin@contoso.com",
        "--limit",
        "2",
    ]);
    let output = run(command);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains(
            "note: a test run to one mailbox does not use --journal, --rejects, \
             --skip-uncertain, --retry-rejected; they are ignored"
        ),
        "{err}"
    );
    let state = server.state();
    assert_eq!(state.accepted.len(), 2, "--limit 2");
    let mut subjects: Vec<String> = Vec::new();
    for (_, mail) in &state.accepted {
        assert_eq!(send_support::recipient(mail), "admin@contoso.com");
        subjects.push(mail["message"]["subject"].as_str().unwrap().to_owned());
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "[test: to p0@contoso.com] Your invitation code",
            "[test: to p1@contoso.com] Your invitation code"
        ]
    );
    drop(state);
    // The campaign is untouched: no journal, no rejects file; the real run sends every row.
    assert!(!campaign.path("campaign.journal").exists());
    assert!(!campaign.path("recipients.csv.journal").exists());
    assert!(!campaign.path("refused.csv").exists());
    let output = campaign.run_graph(&server, &["--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.state().accepted.len(), 5);
}

#[test]
fn a_dry_run_with_to_one_and_limit_writes_the_test_messages() {
    let campaign = Campaign::new(&recipients(4));
    let smtp = SmtpServer::start(campaign.dir.path());
    let mut command = campaign.smtp(&smtp, &["--to-one", "admin@contoso.com"]);
    command.args(["--limit", "2", "--dry-run", "preview"]);
    let output = run(command);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert_eq!(
        eml_files(&campaign, "preview"),
        ["000002-p0@contoso.com.eml", "000003-p1@contoso.com.eml"]
    );
    let eml = std::fs::read_to_string(campaign.path("preview/000002-p0@contoso.com.eml")).unwrap();
    assert!(
        eml.contains("To: admin@contoso.com") && eml.contains("[test: to p0@contoso.com]"),
        "{eml}"
    );
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(smtp.recipients().is_empty());
}

#[test]
fn limit_sends_the_first_rows_and_the_same_command_the_next() {
    let campaign = Campaign::new(&recipients(5));
    let smtp = SmtpServer::start(campaign.dir.path());
    let output = run(campaign.smtp(
        &smtp,
        &["--rate", "off", "--concurrency", "1", "--limit", "2"],
    ));
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("3 left for a later run (--limit)"), "{err}");
    assert_eq!(smtp.recipients(), ["p0@contoso.com", "p1@contoso.com"]);
    let output = run(campaign.smtp(
        &smtp,
        &["--rate", "off", "--concurrency", "1", "--limit", "2"],
    ));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run(campaign.smtp(&smtp, &["--rate", "off", "--concurrency", "1"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        smtp.recipients(),
        [
            "p0@contoso.com",
            "p1@contoso.com",
            "p2@contoso.com",
            "p3@contoso.com",
            "p4@contoso.com"
        ]
    );
}

/// `--tz` sets the zone of `expires.human` and of the `date` filter, with an `--expires-at`
/// date (whose end of day it also means) or alone.
#[test]
fn expiry_dates_in_messages_follow_tz() {
    let campaign = Campaign::new(&recipients(1));
    std::fs::write(
        campaign.path("dates.txt"),
        "human: {{ expires.human }}\nfiltered: {{ expires | date(\"%d.%m.%Y %H:%M\") }}\n\
         instant: {{ expires.rfc3339 }}\n",
    )
    .unwrap();
    let send = |expiry: &[&str], folder: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_invitegate"));
        command
            .current_dir(campaign.dir.path())
            .env_remove("INVITEGATE_SMTP_URL")
            .args(["send", "recipients.csv", "--keys-file", "keys.txt"])
            .args([
                "--text-template",
                "dates.txt",
                "--from",
                "invites@contoso.com",
            ])
            .args(expiry)
            .args(["--dry-run", folder]);
        let output = run(command);
        assert!(output.status.success(), "{}", stderr(&output));
        let file = eml_files(&campaign, folder).remove(0);
        std::fs::read_to_string(campaign.path(folder).join(file)).unwrap()
    };
    let paris = send(
        &["--expires-at", "2027-01-01", "--tz", "Europe/Paris"],
        "paris",
    );
    for line in [
        "human: 1 January 2027, 23:59 CET",
        "filtered: 01.01.2027 23:59",
        "instant: 2027-01-01T22:59:59Z",
    ] {
        assert!(paris.contains(line), "{line}: {paris}");
    }
    let berlin = send(&["--expires-in", "30d", "--tz", "Europe/Berlin"], "berlin");
    assert!(
        berlin.contains(" CET\r\n") || berlin.contains(" CEST\r\n"),
        "{berlin}"
    );
    let utc = send(&["--expires-at", "2027-01-01"], "utc");
    assert!(utc.contains("human: 1 January 2027, 23:59 UTC"), "{utc}");
}
