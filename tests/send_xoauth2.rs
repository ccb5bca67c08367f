//! `invitegate send --smtp-auth xoauth2`: SMTP AUTH with an app-only token from Entra (the
//! local token endpoint of tests/send_support), against aiosmtpd taking only XOAUTH2
//! (tests/data/send/xoauth2_server.py).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod send_support;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use send_support::{
    CLIENT_ID, Campaign, GraphServer, SECRET, TENANT, data, recipients, run, stderr,
};

const MAILBOX: &str = "campaign@contoso.com";

/// aiosmtpd taking AUTH XOAUTH2 with `MAILBOX` and one of `tokens`; killed when dropped.
struct Xoauth2Server {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    out: PathBuf,
}

impl Xoauth2Server {
    fn start(dir: &Path, tokens: &[&str]) -> Self {
        let out = dir.join("xoauth2-received.jsonl");
        let mut command = Command::new("python3");
        command
            .arg(data("xoauth2_server.py"))
            .arg("--out")
            .arg(&out)
            .args(["--user", MAILBOX]);
        for token in tokens {
            command.args(["--token", token]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.strip_prefix("PORT ").unwrap().trim().parse().unwrap();
        Self {
            child,
            _stdin: stdin,
            port,
            out,
        }
    }

    /// (recipient, user, token) of each message received.
    fn received(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["to"][0].as_str().unwrap().to_owned(),
                    v["user"].as_str().unwrap().to_owned(),
                    v["token"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Xoauth2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(
    campaign: &Campaign,
    tokens: &GraphServer,
    smtp: &Xoauth2Server,
    extra: &[&str],
) -> Command {
    let mut command = campaign.base();
    command
        .args(["--from", "invites@contoso.com"])
        .args(["--smtp", &format!("smtp://127.0.0.1:{}", smtp.port)])
        .args(["--smtp-tls", "none", "--smtp-auth", "xoauth2"])
        .args(["--smtp-username", MAILBOX])
        .args(["--oauth-authority", &tokens.url()])
        .env("INVITEGATE_OAUTH_TENANT", TENANT)
        .env("INVITEGATE_OAUTH_CLIENT_ID", CLIENT_ID)
        .env("INVITEGATE_OAUTH_CLIENT_SECRET", SECRET)
        .args(extra);
    command
}

#[test]
fn smtp_logs_in_with_an_outlook_token_and_renews_it_before_it_lapses() {
    let campaign = Campaign::new(&recipients(4));
    let tokens = GraphServer::start();
    tokens.state().expires_in = 2;
    let smtp = Xoauth2Server::start(campaign.dir.path(), &["tok-1", "tok-2", "tok-3"]);
    let output = run(command(
        &campaign,
        &tokens,
        &smtp,
        &["--rate", "1/s", "--concurrency", "1"],
    ));
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let received = smtp.received();
    assert_eq!(received.len(), 4, "{received:?}");
    assert!(received.iter().all(|(_, user, _)| user == MAILBOX));
    let used: std::collections::BTreeSet<&str> = received
        .iter()
        .map(|(_, _, token)| token.as_str())
        .collect();
    assert!(
        used.len() >= 2,
        "a new token before the first lapsed: {used:?}"
    );
    let state = tokens.state();
    assert_eq!(
        state.token_requests[0]["scope"],
        "https://outlook.office365.com/.default"
    );
    for token in state.issued.keys() {
        assert!(!err.contains(token.as_str()));
    }
    assert!(!err.contains(SECRET));
}

#[test]
fn the_scope_can_be_changed_and_a_refused_token_stops_before_any_row() {
    let campaign = Campaign::new(&recipients(2));
    let tokens = GraphServer::start();
    // The server takes no token Entra gave: the login fails before any message.
    let smtp = Xoauth2Server::start(campaign.dir.path(), &["another-token"]);
    let output = run(command(
        &campaign,
        &tokens,
        &smtp,
        &[
            "--rate",
            "off",
            "--smtp-oauth-scope",
            "https://example.test/.default",
        ],
    ));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot connect and log in"), "{err}");
    assert!(!err.contains("tok-1"), "{err}");
    assert!(smtp.received().is_empty());
    assert_eq!(
        tokens.state().token_requests[0]["scope"],
        "https://example.test/.default"
    );
    assert_eq!(
        tokens.state().token_requests.len(),
        2,
        "renewed once, then refused"
    );
    // XOAUTH2 logs in as a mailbox, with a token, not a password.
    let mut with_password = command(&campaign, &tokens, &smtp, &[]);
    with_password.env("INVITEGATE_SMTP_PASSWORD", "hunter2-password");
    let output = run(with_password);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a password"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_token_refused_at_login_is_renewed_once() {
    let campaign = Campaign::new(&recipients(2));
    let tokens = GraphServer::start();
    // As if the first token had been revoked: only the second logs in.
    let smtp = Xoauth2Server::start(campaign.dir.path(), &["tok-2"]);
    let output = run(command(&campaign, &tokens, &smtp, &["--rate", "off"]));
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let received = smtp.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|(_, _, token)| token == "tok-2"));
    assert_eq!(tokens.state().token_requests.len(), 2, "renewed once");
}
