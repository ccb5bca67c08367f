//! `invitegate send` against a real SMTP server: Python's aiosmtpd, started per test on a free
//! loopback port with the handler in tests/data/send/smtp_server.py (tests/support/smtp.rs
//! installs aiosmtpd under the target folder when the machine's Python lacks it). Every process
//! a test starts is waited for with a deadline and killed past it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/python.rs"]
mod python;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use invitegate::{KeyRing, UnixTime, VerifyOptions, verify};
use smtp::{PASSWORD, Received, Server, data, quoted_printable_decode};
use support::{DEADLINE, mode, output_within, wait_with_output_within, wait_within};

const KEYS: &str = "5:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";

/// A campaign folder: keys, recipients, a text template.
struct Campaign {
    dir: tempfile::TempDir,
    /// The expiry flag and its value the runs give (`--expires-in 14d` unless set).
    expiry: std::cell::Cell<[&'static str; 2]>,
}

impl Campaign {
    fn new(recipients: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.txt");
        std::fs::write(&keys, KEYS).unwrap();
        support::set_mode(&keys, 0o600);
        std::fs::write(dir.path().join("recipients.csv"), recipients).unwrap();
        std::fs::write(
            dir.path().join("invite.txt"),
            "Hello {{ first_name }},\nCODE: {{ code }}\nvalid until {{ expires }} ({{ expires_human }})\n",
        )
        .unwrap();
        Self {
            dir,
            expiry: std::cell::Cell::new(["--expires-in", "14d"]),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `invitegate send` with the campaign's files and the given flags, TLS through the test
    /// CA.
    fn command(&self, server: &Server, extra: &[&str]) -> Command {
        let mut command = Command::new(support::binary());
        command
            .current_dir(self.dir.path())
            .args(["send", "recipients.csv", "--keys-file", "keys.txt"])
            .args(self.expiry.get())
            .args(["--from", "Contoso Invitations <invites@contoso.com>"])
            .args(["--text-template", "invite.txt", "--retry-delay-ms", "50"])
            .arg("--smtp")
            .arg(server.url())
            .env_remove("INVITEGATE_SMTP_PASSWORD")
            .env_remove("INVITEGATE_SMTP_USERNAME")
            .env("INVITEGATE_SMTP_CA_FILE", data("ca.pem"))
            .stdin(Stdio::null())
            .args(extra);
        command
    }

    fn run(&self, server: &Server, extra: &[&str]) -> Output {
        output_within(&mut self.command(server, extra), DEADLINE)
    }

    fn run_tls(&self, server: &Server, extra: &[&str]) -> Output {
        output_within(
            self.command(server, extra)
                .args(["--smtp-username", "campaign"])
                .env("INVITEGATE_SMTP_PASSWORD", PASSWORD),
            DEADLINE,
        )
    }

    /// The records of the journal at its default place.
    fn journal(&self) -> Vec<serde_json::Value> {
        read_journal(&self.path("recipients.csv.journal"))
    }

    /// Waits until the journal at its default place satisfies `done`, and returns it.
    fn wait_for_journal(
        &self,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let journal = self.journal();
            if done(&journal) {
                return journal;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the journal did not get there within {DEADLINE:?}: {journal:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A journal's records; none when there is no journal. A record still being written (no line
/// end yet) is left for the next read.
fn read_journal(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `command` run by `sh` with umask 000: a file the program makes without choosing its mode is
/// then readable and writable by everyone, so a check for 0600 can fail.
fn with_umask_000(command: &Command) -> Command {
    let mut wrapped = Command::new("sh");
    wrapped
        .args(["-c", "umask 000 && exec \"$@\"", "sh"])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// A `send` run in the background whose standard error is read line by line as it comes: to
/// signal it at a known point.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The lines read so far.
    err: Vec<String>,
}

impl Running {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            err: Vec::new(),
        }
    }

    /// Waits for a line of standard error that is `line`.
    fn wait_for_line(&mut self, line: &str) {
        let start = Instant::now();
        while !self.err.iter().any(|l| l == line) {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(next) => self.err.push(next),
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "no line {line:?} on standard error; there was: {:?}",
                        self.err
                    );
                }
            }
        }
    }

    /// Sends `signal` (`INT`, `TERM`, `HUP`) to the run.
    fn signal(&self, signal: &str) {
        let kill = output_within(
            Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]),
            DEADLINE,
        );
        assert!(kill.status.success(), "kill -{signal}: {kill:?}");
    }

    /// Waits at most `deadline` for the run to end; its exit status and whole standard error.
    fn finish_within(mut self, deadline: Duration) -> (ExitStatus, String) {
        let status = wait_within(&mut self.child, deadline);
        // The pipe closed with the process: the reader ends.
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.err.push(line);
        }
        (status, self.err.join("\n"))
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The summary line a run ends with, without its `invitegate: send: ` prefix.
fn summary(err: &str) -> &str {
    err.lines()
        .find_map(|l| l.strip_prefix("invitegate: send: "))
        .unwrap_or_else(|| panic!("no summary line: {err}"))
}

fn recipients(n: usize) -> String {
    let mut text = String::from("First Name,email,team\n");
    for i in 0..n {
        text.push_str(&format!("P{i},p{i}@contoso.com,t{}\n", i % 3));
    }
    text
}

fn ring() -> KeyRing {
    KeyRing::parse(KEYS).unwrap()
}

fn assert_verifies(message: &Received) {
    let code = message.code();
    let now = UnixTime::from_unix(time::OffsetDateTime::now_utc().unix_timestamp());
    let outcome = verify(
        &ring(),
        &code,
        &message.to[0],
        now,
        &VerifyOptions::default(),
    );
    assert!(outcome.is_valid(), "{code} for {:?}: {outcome}", message.to);
}

#[test]
fn every_row_arrives_once_over_starttls_with_auth_and_a_code_that_verifies() {
    let campaign = Campaign::new(&recipients(12));
    let server = Server::start_tls(campaign.dir.path(), &[]);
    let output = campaign.run_tls(&server, &["--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), 12, "{}", stderr(&output));
    for message in &received {
        assert!(message.tls && message.auth, "{message:?}");
        assert_eq!(message.to.len(), 1);
        assert!(
            message
                .data
                .contains("From: \"Contoso Invitations\" <invites@contoso.com>"),
            "{}",
            message.data
        );
        assert!(message.data.contains(&format!("To: {}", message.to[0])));
    }
    let once: HashMap<String, usize> = (0..12).map(|i| (format!("p{i}@contoso.com"), 1)).collect();
    assert_eq!(arrivals(&received), once);
    // The journal has the campaign, then handed + sent for each row, and no whole code.
    let journal = campaign.journal();
    assert_eq!(journal.len(), 1 + 2 * 12, "{journal:?}");
    assert_eq!(journal[0]["event"], "campaign");
    assert_eq!(lines_last(&journal, "sent"), (2..14).collect::<Vec<u64>>());
    let handed = journal.iter().filter(|r| r["event"] == "handed").count();
    assert_eq!(handed, 12, "{journal:?}");
    let text = std::fs::read_to_string(campaign.path("recipients.csv.journal")).unwrap();
    for message in &received {
        assert!(
            !text.contains(&message.code()),
            "the journal holds a whole code"
        );
    }
    assert!(!text.contains(PASSWORD) && !stderr(&output).contains(PASSWORD));
    assert_eq!(
        summary(&stderr(&output)),
        "12 sent, 0 rejected, 0 deferred, 0 retried, 0 skipped as already sent, 0 uncertain \
         (0 sent again), 0 refused earlier, 0 invalid, 0 duplicates"
    );

    // Running it again sends nothing more.
    let again = campaign.run_tls(&server, &["--rate", "off"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(server.received().len(), 12);
    assert_eq!(
        summary(&stderr(&again)),
        "0 to send, 12 already sent, 0 uncertain, 0 refused earlier, 0 invalid, 0 duplicates"
    );
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_stops_before_any_row() {
    let campaign = Campaign::new(&recipients(2));
    let server = Server::start_tls(campaign.dir.path(), &[]);
    let output = output_within(
        campaign
            .command(&server, &[])
            .args(["--smtp-username", "campaign"])
            .env("INVITEGATE_SMTP_PASSWORD", "wrong"),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot connect and log in"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("wrong"), "{}", stderr(&output));
    // Without the test CA, the self-signed certificate is refused: verification stays on.
    let output = output_within(
        campaign
            .command(&server, &[])
            .env_remove("INVITEGATE_SMTP_CA_FILE")
            .args(["--smtp-username", "campaign"])
            .env("INVITEGATE_SMTP_PASSWORD", PASSWORD),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );
    assert!(server.received().is_empty());
}

#[test]
fn starttls_is_required_unless_turned_off_with_a_warning() {
    let campaign = Campaign::new(&recipients(2));
    let plain = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&plain, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "STARTTLS is not supported on this server (the server offers no STARTTLS: use smtps://"
        ),
        "{}",
        stderr(&output)
    );
    assert!(plain.received().is_empty());
    let output = campaign.run(&plain, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("warning: --smtp-tls none"),
        "{}",
        stderr(&output)
    );
    assert_eq!(plain.received().len(), 2);
}

#[test]
fn text_and_html_go_as_multipart_alternative() {
    let campaign = Campaign::new("First Name,email\n<Zoë>,zoe@contoso.com\n");
    std::fs::write(
        campaign.path("invite.html"),
        "<p>Hello {{ first_name }}</p><p>CODE: {{ code }}</p><a href=\"{{ sign_up_url }}\">x</a>",
    )
    .unwrap();
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(
        &server,
        &[
            "--smtp-tls",
            "none",
            "--html-template",
            "invite.html",
            "--sign-up-url",
            "https://contoso.example/signup",
            "--subject",
            "Welcome {{ first_name }}",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), 1);
    let data = &received[0].data;
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("text/plain"), "{data}");
    assert!(data.contains("text/html"), "{data}");
    // The HTML part escapes the cell; the text part keeps it.
    assert!(data.contains("&lt;Zo"), "{data}");
    // A link stays readable in the source: `/` needs no escaping in HTML.
    assert!(
        quoted_printable_decode(data).contains("href=\"https://contoso.example/signup\""),
        "{data}"
    );
    // The subject is encoded by the mail library (RFC 2047): "Welcome <Zoë>".
    assert!(
        data.contains("Subject: Welcome =?utf-8?b?PFpvw6s+?="),
        "{data}"
    );
    assert_verifies(&received[0]);
}

#[test]
fn a_550_goes_to_rejects_and_a_451_is_retried() {
    let campaign = Campaign::new(&recipients(5));
    let server = Server::start(
        campaign.dir.path(),
        &[
            "--reject",
            "p1@contoso.com",
            "--tempfail-once",
            "p3@contoso.com",
        ],
    );
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let received = server.received();
    let mut to: Vec<&str> = received.iter().map(|m| m.to[0].as_str()).collect();
    to.sort_unstable();
    assert_eq!(
        to,
        [
            "p0@contoso.com",
            "p2@contoso.com",
            "p3@contoso.com",
            "p4@contoso.com"
        ]
    );
    let rejects = std::fs::read_to_string(campaign.path("recipients.csv.rejects.csv")).unwrap();
    // Laid out like batch's: the header with an `error` column, then the row as it was read.
    assert_eq!(
        rejects,
        "First Name,email,team,error\nP1,p1@contoso.com,t1,line 3: permanent error (550): \
         5.1.1 <p1@contoso.com>: mailbox unavailable\n"
    );
    assert_eq!(
        summary(&stderr(&output)),
        "4 sent, 1 rejected, 0 deferred, 1 retried, 0 skipped as already sent, 0 uncertain \
         (0 sent again), 0 refused earlier, 0 invalid, 0 duplicates"
    );
}

#[test]
fn a_template_error_sends_nothing_and_says_where() {
    let campaign = Campaign::new(&recipients(3));
    std::fs::write(
        campaign.path("invite.txt"),
        "Hello,\nyour code: {{ cdoe }}\n",
    )
    .unwrap();
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-tls", "none"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("invite.txt:2:15:"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("undefined"), "{}", stderr(&output));
    assert!(server.received().is_empty());
    // Nothing is recorded but the campaign: the next run starts over.
    let journal = campaign.journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["event"], "campaign");

    // A template that fails for one row only names that row, and still nothing goes.
    std::fs::write(
        campaign.path("invite.txt"),
        "CODE: {{ code }}\n{% if team == \"t2\" %}{{ row[\"Team Name\"] }}{% endif %}\n",
    )
    .unwrap();
    let output = campaign.run(&server, &["--smtp-tls", "none"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "invite.txt:2:25: undefined value: no column has the header \"Team Name\" (there \
             are: First Name, email, team) (for the row on line 4 of the recipients file)"
        ),
        "{err}"
    );
    assert!(server.received().is_empty());
    let journal = campaign.journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["event"], "campaign");
}

#[test]
fn invalid_rows_stop_the_run_unless_skipped() {
    let campaign = Campaign::new("First Name,email\nA,a@contoso.com\nB,not-an-address\n");
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-tls", "none"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nothing was sent"),
        "{}",
        stderr(&output)
    );
    assert!(server.received().is_empty());
    // Every valid row sent, the invalid one set aside as asked: success, as batch's.
    let output = campaign.run(&server, &["--smtp-tls", "none", "--skip-invalid"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, ["a@contoso.com"]);
    assert_eq!(
        std::fs::read_to_string(campaign.path("recipients.csv.rejects.csv")).unwrap(),
        "First Name,email,error\nB,not-an-address,line 3: invalid email address: it has no `@`\n"
    );
}

#[test]
fn a_dry_run_writes_eml_files_and_sends_nothing() {
    let campaign = Campaign::new(&recipients(3));
    // A fixed expiry: the lines printed are known to the letter.
    campaign.expiry.set(["--expires-at", "2030-01-01"]);
    let server = Server::start(campaign.dir.path(), &[]);
    let output = output_within(
        &mut with_umask_000(&campaign.command(&server, &["--dry-run", "out"])),
        DEADLINE,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let expected: String = [(2, "p0"), (3, "p1"), (4, "p2")]
        .iter()
        .map(|(line, to)| {
            format!(
                "line {line}: to {to}@contoso.com: \"Your invitation code\" (key 5, expires \
                 2030-01-01T23:59:59Z) -> out/00000{line}-{to}@contoso.com.eml\n"
            )
        })
        .collect();
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    let mut files: Vec<_> = std::fs::read_dir(campaign.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "000002-p0@contoso.com.eml",
            "000003-p1@contoso.com.eml",
            "000004-p2@contoso.com.eml"
        ]
    );
    let eml = std::fs::read_to_string(campaign.path("out/000002-p0@contoso.com.eml")).unwrap();
    assert!(
        eml.contains("To: p0@contoso.com")
            && eml.contains("Subject: ")
            && eml.contains("MIME-Version: 1.0\r\n")
            && eml.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{eml}"
    );
    // Each file holds a working code: its owner's to read, no one else's.
    for file in &files {
        assert_eq!(mode(&campaign.path("out").join(file)), 0o600, "{file}");
    }
    assert!(server.received().is_empty());
    assert!(!campaign.path("recipients.csv.journal").exists());

    // Messages of two runs are not mixed in one folder.
    let again = campaign.run(&server, &["--dry-run", "out"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("the folder already holds messages"),
        "{}",
        stderr(&again)
    );
    // After a run, a dry run says why each row is left out.
    std::fs::write(
        campaign.path("recipients.csv"),
        format!("{}P9,P0@contoso.com,t9\n", recipients(3)),
    )
    .unwrap();
    let sent = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert_eq!(sent.status.code(), Some(1), "{}", stderr(&sent));
    let rejects = std::fs::read_to_string(campaign.path("recipients.csv.rejects.csv")).unwrap();
    assert!(
        rejects.contains("P9,P0@contoso.com,t9,line 5: the same recipient as line 2"),
        "{rejects}"
    );
    let preview = campaign.run(&server, &["--dry-run", "preview"]);
    let err = stderr(&preview);
    assert!(
        err.contains("line 2: p0@contoso.com was sent a message by an earlier run; left out")
            && err.contains("line 5: the same recipient as line 2; left out"),
        "{err}"
    );
}

#[test]
fn to_one_sends_every_message_to_one_mailbox_and_keeps_no_journal() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(
        &server,
        &[
            "--smtp-tls",
            "none",
            "--rate",
            "off",
            "--to-one",
            "admin@contoso.com",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|m| m.to == ["admin@contoso.com"]));
    assert!(!campaign.path("recipients.csv.journal").exists());
}

#[test]
fn a_changed_row_under_a_journal_is_an_error() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The same address with other cells: the message it got said something else.
    let changed = recipients(3).replace("P1,p1@", "Paula,p1@");
    std::fs::write(campaign.path("recipients.csv"), changed).unwrap();
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the row for p1@contoso.com (line 3) changed since a message went to"),
        "{err}"
    );
    assert_eq!(server.received().len(), 3);
}

#[test]
fn rows_added_moved_or_readdressed_between_runs_send_to_nobody_twice() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // A row inserted at the top moves every other down a line; another's address is
    // corrected; the rows are reordered.
    let text = "First Name,email,team\nNew,new@contoso.com,t9\nP2,p2@contoso.com,t2\n\
                P1,q1@contoso.com,t1\nP0,p0@contoso.com,t0\n";
    std::fs::write(campaign.path("recipients.csv"), text).unwrap();
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let mut to: Vec<String> = server.received().iter().map(|m| m.to[0].clone()).collect();
    to.sort_unstable();
    assert_eq!(
        to,
        [
            "new@contoso.com",
            "p0@contoso.com",
            "p1@contoso.com",
            "p2@contoso.com",
            "q1@contoso.com"
        ]
    );
    assert_eq!(
        summary(&err),
        "2 sent, 0 rejected, 0 deferred, 0 retried, 2 skipped as already sent, 0 uncertain \
         (0 sent again), 0 refused earlier, 0 invalid, 0 duplicates"
    );
    assert!(
        err.contains(
            "note: p1@contoso.com (line 3 when an earlier run sent it a message) is no longer in \
             the recipients file"
        ),
        "{err}"
    );
}

#[test]
fn killed_halfway_then_resumed_delivers_every_row_with_few_duplicates() {
    const ROWS: usize = 40;
    const CONCURRENCY: usize = 4;
    let campaign = Campaign::new(&recipients(ROWS));
    let server = Server::start(campaign.dir.path(), &["--delay", "0.05"]);
    let mut child = campaign
        .command(
            &server,
            &["--smtp-tls", "none", "--rate", "40/s", "--concurrency", "4"],
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for(ROWS / 3);
    child.kill().unwrap(); // SIGKILL
    wait_within(&mut child, DEADLINE);
    let before = server.received().len();
    assert!(before < ROWS, "killed too late to test anything");
    let journal = campaign.journal();
    let uncertain = lines_last(&journal, "handed");
    // Messages were in flight when the process died (40/s against 50 ms a message).
    assert!(
        !uncertain.is_empty() && uncertain.len() <= CONCURRENCY,
        "{uncertain:?}"
    );
    eprintln!("killed after {before} messages; uncertain lines: {uncertain:?}");

    // Resumed later (a second on, so that a relative --expires-in would give another
    // instant): the expiry must not move.
    std::thread::sleep(Duration::from_millis(1100));
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let expires_at = journal[0]["expires_at"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "invitegate: resuming the campaign in recipients.csv.journal (codes expire at \
             {expires_at})"
        )),
        "{err}"
    );
    for line in &uncertain {
        assert!(
            err.contains(&format!(
                "invitegate: line {line}: p{}@contoso.com (code fingerprint ",
                line - 2
            )),
            "uncertain line {line} not listed: {err}"
        );
    }
    // Every row arrived; once, but for the uncertain ones, sent again, which may have arrived
    // before the kill too.
    let received = server.received();
    let count = arrivals(&received);
    for i in 0..ROWS {
        let line = i as u64 + 2;
        let n = count.get(&format!("p{i}@contoso.com")).copied();
        let expected = if uncertain.contains(&line) {
            [Some(1), Some(2)].as_slice()
        } else {
            [Some(1)].as_slice()
        };
        assert!(expected.contains(&n), "line {line}: {n:?}, {uncertain:?}");
    }
    // One expiry instant for the whole campaign, in both runs.
    let journal = campaign.journal();
    let expiries = campaign_journal_expiries(&journal);
    assert_eq!(expiries, [expires_at].into(), "{expiries:?}");
    // A duplicate carries the same code as the first message: codes are deterministic.
    let mut codes: HashMap<&str, String> = HashMap::new();
    for message in &received {
        let code = message.code();
        if let Some(first) = codes.insert(message.to[0].as_str(), code.clone()) {
            assert_eq!(first, code);
        }
    }
}

fn campaign_journal_expiries(journal: &[serde_json::Value]) -> std::collections::BTreeSet<&str> {
    journal
        .iter()
        .filter_map(|r| r["expires_at"].as_str())
        .collect()
}

#[test]
fn the_password_never_comes_from_a_flag_or_the_url() {
    let campaign = Campaign::new(&recipients(1));
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-password", "x"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unexpected argument '--smtp-password'"),
        "{}",
        stderr(&output)
    );
    let output = output_within(
        Command::new(support::binary())
            .current_dir(campaign.dir.path())
            .args([
                "send",
                "recipients.csv",
                "--keys-file",
                "keys.txt",
                "--expires-in",
                "1d",
            ])
            .args([
                "--from",
                "a@contoso.com",
                "--smtp",
                "smtp://u:hunter2@127.0.0.1:1",
            ])
            .stdin(Stdio::null()),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("INVITEGATE_SMTP_PASSWORD"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
}

/// The lines whose last journal record is `event`.
fn lines_last(journal: &[serde_json::Value], event: &str) -> Vec<u64> {
    let mut last: HashMap<u64, &str> = HashMap::new();
    for record in journal.iter().skip(1) {
        last.insert(
            record["line"].as_u64().unwrap(),
            record["event"].as_str().unwrap(),
        );
    }
    let mut lines: Vec<u64> = last
        .into_iter()
        .filter(|(_, e)| *e == event)
        .map(|(l, _)| l)
        .collect();
    lines.sort_unstable();
    lines
}

/// Each recipient's count of messages received.
fn arrivals(received: &[Received]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for message in received {
        assert_verifies(message);
        *count.entry(message.to[0].clone()).or_default() += 1;
    }
    count
}

#[test]
fn smtps_with_auth_login_delivers_over_implicit_tls() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start_tls(
        campaign.dir.path(),
        &["--implicit-tls", "--auth-mechanism", "LOGIN"],
    );
    assert!(server.url().starts_with("smtps://"));
    let output = campaign.run_tls(&server, &["--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), 3, "{}", stderr(&output));
    for message in &received {
        assert!(message.tls && message.auth, "{message:?}");
        assert_eq!(message.mechanisms, ["LOGIN"], "{message:?}");
    }
}

#[test]
fn a_mailbox_that_stays_busy_is_deferred_and_the_run_goes_on() {
    let campaign = Campaign::new(&recipients(6));
    let server = Server::start(
        campaign.dir.path(),
        &["--tempfail-always", "p2@contoso.com"],
    );
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let count = arrivals(&server.received());
    assert_eq!(count.len(), 5, "{count:?}");
    assert!(!count.contains_key("p2@contoso.com"));
    assert!(
        err.contains("p2@contoso.com deferred: transient error (450)")
            && err.contains("run the same command again later to send it"),
        "{err}"
    );
    assert_eq!(
        summary(&err),
        "5 sent, 0 rejected, 1 deferred, 4 retried, 0 skipped as already sent, 0 uncertain \
         (0 sent again), 0 refused earlier, 0 invalid, 0 duplicates"
    );
    // Not the recipient's fault for good: no rejects file, and the journal says deferred.
    assert!(!campaign.path("recipients.csv.rejects.csv").exists());
    assert_eq!(lines_last(&campaign.journal(), "deferred"), [4]);

    // Later the mailbox takes mail: the same command sends that row only.
    drop(server);
    let server = Server::start(campaign.dir.path(), &[]);
    campaign.expiry.set(["--expires-in", "7d"]);
    let again = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("note: --expires-in 7days is not applied: a resumed campaign"),
        "{}",
        stderr(&again)
    );
    let received = server.received();
    assert_eq!(received.len(), 1, "{}", stderr(&again));
    assert_eq!(received[0].to, ["p2@contoso.com"]);
}

#[test]
fn a_server_refusing_the_sender_stops_the_run_and_rejects_no_row() {
    let campaign = Campaign::new(&recipients(20));
    let server = Server::start(
        campaign.dir.path(),
        &[
            "--mail-from-reply",
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        ],
    );
    let output = campaign.run(
        &server,
        &["--smtp-tls", "none", "--rate", "off", "--concurrency", "2"],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("messages in a row, none accepted between, for reasons not the recipients'")
            && err.contains("5.7.60")
            && err.contains("to resume, run the same command again"),
        "{err}"
    );
    assert!(server.received().is_empty());
    // The sender's problem is not the recipients': no row is marked refused for good.
    assert!(!campaign.path("recipients.csv.rejects.csv").exists());
    let journal = campaign.journal();
    assert!(lines_last(&journal, "rejected").is_empty());
    let deferred = lines_last(&journal, "deferred").len();
    assert!((5..=5 + 2).contains(&deferred), "{deferred} deferred");

    // With the account put right, the same command sends every row.
    drop(server);
    let server = Server::start(campaign.dir.path(), &[]);
    let again = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let count = arrivals(&server.received());
    assert_eq!(count.len(), 20);
    assert!(count.values().all(|&n| n == 1), "{count:?}");
}

#[test]
fn losing_the_server_stops_the_run_and_the_same_command_sends_the_rest() {
    const ROWS: usize = 30;
    const CONCURRENCY: usize = 4;
    let campaign = Campaign::new(&recipients(ROWS));
    let server = Server::start(campaign.dir.path(), &["--delay", "0.02"]);
    let args = ["--smtp-tls", "none", "--rate", "30/s", "--concurrency", "4"];
    let child = campaign
        .command(&server, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for(ROWS / 4);
    // The server dies: every connection breaks, none opens again.
    let first = server.stop();
    let output = wait_with_output_within(child, DEADLINE);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("stopped: the server is gone")
            && err.contains("to resume, run the same command again"),
        "{err}"
    );
    let uncertain = lines_last(&campaign.journal(), "handed");
    assert!(uncertain.len() <= CONCURRENCY, "{uncertain:?}");

    // The server is back (on another port here): the same command sends the rest.
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut received = first;
    received.extend(server.received());
    let count = arrivals(&received);
    assert_eq!(count.len(), ROWS, "{count:?}");
    let duplicates = received.len() - ROWS;
    assert!(
        duplicates <= uncertain.len(),
        "{duplicates} duplicates, {uncertain:?}"
    );
}

#[test]
fn a_refused_row_is_not_sent_again_unless_changed_or_asked() {
    let campaign = Campaign::new(&recipients(4));
    let none = ["--smtp-tls", "none", "--rate", "off"];
    let server = Server::start(
        campaign.dir.path(),
        &["--reject", "p1@contoso.com", "--reject", "p2@contoso.com"],
    );
    let output = campaign.run(&server, &none);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(server.received().len(), 2);

    // Run again: the refused rows are left out and stay in the rejects file.
    drop(server);
    let server = Server::start(campaign.dir.path(), &[]);
    let again = campaign.run(&server, &none);
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(server.received().is_empty(), "{err}");
    for (line, to) in [(3, "p1@contoso.com"), (4, "p2@contoso.com")] {
        assert!(
            err.contains(&format!(
                "invitegate: line {line}: {to} was refused by the server in an earlier run; left \
                 out (correct the row, or pass --retry-rejected)"
            )),
            "{err}"
        );
    }
    let rejects = std::fs::read_to_string(campaign.path("recipients.csv.rejects.csv")).unwrap();
    assert_eq!(
        rejects,
        "First Name,email,team,error\n\
         P1,p1@contoso.com,t1,line 3: refused by the server in an earlier run: permanent \
         error (550): 5.1.1 <p1@contoso.com>: mailbox unavailable\n\
         P2,p2@contoso.com,t2,line 4: refused by the server in an earlier run: permanent \
         error (550): 5.1.1 <p2@contoso.com>: mailbox unavailable\n"
    );

    // A row whose cells changed (its owner's name corrected) is sent again; the other stays
    // left out.
    let changed = recipients(4).replace("P1,p1@", "Paula,p1@");
    std::fs::write(campaign.path("recipients.csv"), changed).unwrap();
    let corrected = campaign.run(&server, &none);
    let err = stderr(&corrected);
    assert_eq!(corrected.status.code(), Some(1), "{err}");
    let received = server.received();
    assert_eq!(received.len(), 1, "{err}");
    assert_eq!(received[0].to, ["p1@contoso.com"]);
    assert!(
        quoted_printable_decode(&received[0].data).contains("Hello Paula,"),
        "{}",
        received[0].data
    );
    assert_eq!(
        summary(&err),
        "1 sent, 0 rejected, 0 deferred, 0 retried, 2 skipped as already sent, 0 uncertain \
         (0 sent again), 1 refused earlier, 0 invalid, 0 duplicates"
    );

    // Asked to: the unchanged one goes too.
    let retried = campaign.run(&server, &[&none[..], &["--retry-rejected"]].concat());
    assert!(retried.status.success(), "{}", stderr(&retried));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].to, ["p2@contoso.com"]);
    assert!(!campaign.path("recipients.csv.rejects.csv").exists());
}

/// What a run says as soon as a signal reaches it.
const STOPPING: &str = "invitegate: stopping: no new message is taken; those in flight finish \
                        (signal again to stop at once)";

#[test]
fn ctrl_c_sigterm_and_sighup_stop_a_run_finishing_the_messages_in_flight() {
    // Ctrl-C; what `docker stop`, systemd and `timeout` send; a closed terminal.
    for (signal, number) in [("INT", 2), ("TERM", 15), ("HUP", 1)] {
        let campaign = Campaign::new(&recipients(40));
        let server = Server::start(campaign.dir.path(), &["--delay", "0.2"]);
        let mut run = Running::spawn(&mut campaign.command(
            &server,
            &["--smtp-tls", "none", "--rate", "off", "--concurrency", "4"],
        ));
        server.wait_for(4);
        run.signal(signal);
        run.wait_for_line(STOPPING);
        let (status, err) = run.finish_within(DEADLINE);
        assert_eq!(status.code(), Some(128 + number), "SIG{signal}: {err}");
        assert!(
            err.contains(
                "invitegate: stopped: interrupted; the journal recipients.csv.journal is up to \
                 date; to resume, run the same command again"
            ),
            "SIG{signal}: {err}"
        );
        // The messages in flight finished and have their replies: none is left uncertain.
        let journal = campaign.journal();
        assert!(lines_last(&journal, "handed").is_empty(), "{journal:?}");
        let sent = lines_last(&journal, "sent").len();
        assert_eq!(sent, server.received().len());
        assert!(sent < 40, "SIG{signal} stopped too late to test anything");
    }
}

#[test]
fn a_second_signal_stops_at_once_leaving_the_messages_in_flight_uncertain() {
    const CONCURRENCY: usize = 4;
    let campaign = Campaign::new(&recipients(20));
    // The server holds each message a minute before it answers: a run that waited for the
    // messages in flight would outlast the wait below many times over.
    let server = Server::start(campaign.dir.path(), &["--delay", "60"]);
    let mut run = Running::spawn(&mut campaign.command(
        &server,
        &["--smtp-tls", "none", "--rate", "off", "--concurrency", "4"],
    ));
    // One message in flight on each connection, none answered.
    campaign.wait_for_journal(|j| lines_last(j, "handed").len() == CONCURRENCY);
    run.signal("INT");
    run.wait_for_line(STOPPING);
    // The run listens for a second signal only once it has printed that line: a signal in
    // between would be taken for the first one again.
    std::thread::sleep(Duration::from_millis(200));
    // Another signal than the first: the exit status says which one stopped the run.
    run.signal("TERM");
    let (status, err) = run.finish_within(Duration::from_secs(20));
    assert_eq!(status.code(), Some(128 + 15), "{err}");
    assert!(
        err.ends_with(
            "invitegate: stopped at once; messages in flight are left uncertain in the journal"
        ),
        "{err}"
    );
    // The four messages in flight never got a reply: their rows are uncertain.
    assert_eq!(lines_last(&campaign.journal(), "handed"), [2, 3, 4, 5]);
    assert!(server.received().is_empty());
}

#[test]
fn an_uncertain_row_is_sent_again_unless_skip_uncertain() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // As a crash leaves it: line 3 handed to the server, its reply never recorded.
    let path = campaign.path("recipients.csv.journal");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !(l.contains("\"event\":\"sent\"") && l.contains("\"line\":3,")))
        .collect();
    assert_eq!(kept.len(), text.lines().count() - 1);
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let skipped = campaign.run(
        &server,
        &["--smtp-tls", "none", "--rate", "off", "--skip-uncertain"],
    );
    let err = stderr(&skipped);
    assert!(skipped.status.success(), "{err}");
    assert!(
        err.contains("line 3: p1@contoso.com (code fingerprint ")
            && err.contains("may have been sent by an earlier run; left alone (--skip-uncertain)"),
        "{err}"
    );
    assert_eq!(server.received().len(), 3);
    let again = campaign.run(&server, &["--smtp-tls", "none", "--rate", "off"]);
    let err = stderr(&again);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("1 uncertain (1 sent again)"), "{err}");
    let received = server.received();
    assert_eq!(received.len(), 4);
    assert_eq!(received[3].to, ["p1@contoso.com"]);
}

#[test]
fn settings_come_from_the_environment_and_the_password_from_a_file() {
    let campaign = Campaign::new(&recipients(2));
    let server = Server::start_tls(campaign.dir.path(), &[]);
    std::fs::write(campaign.path("smtp-password"), format!("{PASSWORD}\n")).unwrap();
    let output = output_within(
        Command::new(support::binary())
            .current_dir(campaign.dir.path())
            .args(["send", "recipients.csv", "--keys-file", "keys.txt"])
            .args(["--expires-in", "14d", "--rate", "off"])
            .args(["--smtp-password-file", "smtp-password"])
            .env("INVITEGATE_SMTP_URL", server.url())
            .env(
                "INVITEGATE_SMTP_FROM",
                "Contoso Invitations <invites@contoso.com>",
            )
            .env("INVITEGATE_SMTP_USERNAME", "campaign")
            .env("INVITEGATE_SMTP_CA_FILE", data("ca.pem"))
            .env_remove("INVITEGATE_SMTP_PASSWORD")
            .stdin(Stdio::null()),
        DEADLINE,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| m.tls && m.auth));
    assert!(
        received[0]
            .data
            .contains("From: \"Contoso Invitations\" <invites@contoso.com>")
    );
}

#[test]
fn a_paced_message_is_dated_when_it_leaves_not_when_it_was_prepared() {
    const ROWS: usize = 15;
    let campaign = Campaign::new(&recipients(ROWS));
    let server = Server::start(campaign.dir.path(), &[]);
    // Five seconds of sending; every row is prepared in the first moments.
    let output = campaign.run(
        &server,
        &["--smtp-tls", "none", "--rate", "3/s", "--concurrency", "1"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let received = server.received();
    assert_eq!(received.len(), ROWS);
    for message in &received {
        let date = message
            .data
            .lines()
            .find_map(|line| line.strip_prefix("Date: "))
            .expect("a Date header");
        let date = time::OffsetDateTime::parse(
            date.trim(),
            &time::format_description::well_known::Rfc2822,
        )
        .unwrap();
        let late = message.received_at - date.unix_timestamp() as f64;
        // Two seconds of slack, and the header's whole seconds.
        assert!(
            (-1.0..3.0).contains(&late),
            "dated {late:.1} s before it arrived"
        );
    }
}

#[test]
fn a_server_that_stops_answering_is_timed_out_not_waited_for() {
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in silent.incoming() {
            held.push(socket);
        }
    });
    let campaign = Campaign::new(&recipients(3));
    // A run that waited for the server would be killed past this, failing the test.
    let output = output_within(
        Command::new(support::binary())
            .current_dir(campaign.dir.path())
            .args(["send", "recipients.csv", "--keys-file", "keys.txt"])
            .args(["--expires-in", "14d", "--from", "invites@contoso.com"])
            .args(["--smtp", &format!("smtp://127.0.0.1:{port}")])
            .args(["--smtp-tls", "none", "--smtp-timeout", "1"])
            .stdin(Stdio::null()),
        Duration::from_secs(20),
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port} does not answer")),
        "{err}"
    );

    // A server that stalls mid-run: the stalled message is timed out, tried again on a new
    // connection, and the run stops with the row uncertain.
    let server = Server::start(campaign.dir.path(), &["--stall-after", "1"]);
    let output = campaign.run(
        &server,
        &[
            "--smtp-tls",
            "none",
            "--rate",
            "off",
            "--concurrency",
            "1",
            "--smtp-timeout",
            "1",
        ],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "no answer from {} within 1 s",
            server.url().trim_start_matches("smtp://")
        )) && err.contains("stopped: the server is gone"),
        "{err}"
    );
    assert_eq!(server.received().len(), 1);
    assert_eq!(lines_last(&campaign.journal(), "handed"), [3]);
}

#[test]
fn a_connection_broken_after_the_message_leaves_the_row_uncertain() {
    let campaign = Campaign::new(&recipients(2));
    let server = Server::start(campaign.dir.path(), &["--hang-up-after-data"]);
    let output = campaign.run(
        &server,
        &["--smtp-tls", "none", "--rate", "off", "--concurrency", "1"],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    // The server took it at each of the five attempts, but no reply came: not known to be
    // sent or not.
    let received = server.received();
    assert_eq!(received.len(), 5);
    assert!(received.iter().all(|m| m.to == ["p0@contoso.com"]));
    assert!(err.contains("may or may not have gone"), "{err}");
    assert_eq!(lines_last(&campaign.journal(), "handed"), [2]);
}

#[test]
fn the_rejects_file_is_checked_before_sending_and_removed_when_stale() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start(campaign.dir.path(), &["--reject", "p1@contoso.com"]);
    let none = ["--smtp-tls", "none", "--rate", "off"];
    // The input itself, or a folder that is not there: refused before any message.
    for (rejects, says) in [
        ("recipients.csv", "is the same file as"),
        ("missing/rejects.csv", "--rejects missing/rejects.csv"),
    ] {
        let output = campaign.run(&server, &[&none[..], &["--rejects", rejects]].concat());
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(server.received().is_empty(), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(campaign.path("recipients.csv")).unwrap(),
        recipients(3)
    );
    let output = campaign.run(&server, &none);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let rejects = campaign.path("recipients.csv.rejects.csv");
    assert!(
        std::fs::read_to_string(&rejects)
            .unwrap()
            .contains("line 3: permanent error (550)")
    );
    // Once the refused row is sent, the old rejects file would mislead: it goes.
    drop(server);
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(&server, &[&none[..], &["--retry-rejected"]].concat());
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("no row is refused now"), "{err}");
    assert!(!rejects.exists());
}

#[test]
fn rate_spaces_the_messages_as_the_server_receives_them() {
    const ROWS: usize = 8;
    // 4/s: a message every 250 ms at most, whatever the concurrency.
    const INTERVAL: f64 = 0.250;
    // What the way from the pacer to the server (a journal sync, the SMTP exchange, a busy
    // machine's scheduling) can shift one message against the next. Only a lower bound is
    // checked: how fast the messages go is not this test's business.
    const SLACK: f64 = 0.100;
    let campaign = Campaign::new(&recipients(ROWS));
    let server = Server::start(campaign.dir.path(), &[]);
    let output = campaign.run(
        &server,
        &["--smtp-tls", "none", "--rate", "4/s", "--concurrency", "4"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let mut times: Vec<f64> = server.received().iter().map(|m| m.received_at).collect();
    assert_eq!(times.len(), ROWS);
    times.sort_by(f64::total_cmp);
    let gaps: Vec<f64> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // No two messages closer than the interval allows...
    assert!(
        gaps.iter().all(|&gap| gap >= INTERVAL - SLACK),
        "gaps (s): {gaps:?}"
    );
    // ... nor all of them: the slack is not taken again and again.
    let span = times[ROWS - 1] - times[0];
    assert!(
        span >= (ROWS - 1) as f64 * INTERVAL - SLACK,
        "{ROWS} messages over {span:.3} s; gaps (s): {gaps:?}"
    );
}

#[test]
fn the_journal_and_the_rejects_file_are_0600_whatever_the_umask() {
    let campaign = Campaign::new(&recipients(3));
    let server = Server::start(campaign.dir.path(), &["--reject", "p1@contoso.com"]);
    let output = output_within(
        &mut with_umask_000(&campaign.command(&server, &["--smtp-tls", "none", "--rate", "off"])),
        DEADLINE,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(server.received().len(), 2);
    // Each holds the campaign's recipients; the journal, the codes' fingerprints too.
    assert_eq!(mode(&campaign.path("recipients.csv.journal")), 0o600);
    assert_eq!(mode(&campaign.path("recipients.csv.rejects.csv")), 0o600);
}

#[test]
fn journal_puts_the_journal_there_and_a_resume_with_the_same_flag_reads_it() {
    let campaign = Campaign::new(&recipients(3));
    std::fs::create_dir(campaign.path("state")).unwrap();
    let flags = [
        "--smtp-tls",
        "none",
        "--rate",
        "off",
        "--journal",
        "state/campaign.journal",
    ];
    let server = Server::start(
        campaign.dir.path(),
        &["--tempfail-always", "p1@contoso.com"],
    );
    let output = campaign.run(&server, &flags);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(server.received().len(), 2);
    let journal = read_journal(&campaign.path("state/campaign.journal"));
    assert_eq!(journal[0]["event"], "campaign");
    assert_eq!(lines_last(&journal, "sent"), [2, 4]);
    assert_eq!(lines_last(&journal, "deferred"), [3]);
    assert!(!campaign.path("recipients.csv.journal").exists());

    // The mailbox takes mail again: the same command reads that journal and sends the row it
    // left, only.
    drop(server);
    let server = Server::start(campaign.dir.path(), &[]);
    let again = campaign.run(&server, &flags);
    let err = stderr(&again);
    assert!(again.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "invitegate: resuming the campaign in state/campaign.journal (codes expire at {})",
            journal[0]["expires_at"].as_str().unwrap()
        )),
        "{err}"
    );
    let received = server.received();
    assert_eq!(received.len(), 1, "{err}");
    assert_eq!(received[0].to, ["p1@contoso.com"]);
    assert_eq!(
        lines_last(
            &read_journal(&campaign.path("state/campaign.journal")),
            "sent"
        ),
        [2, 3, 4]
    );
    assert!(!campaign.path("recipients.csv.journal").exists());
}

#[test]
fn a_different_expires_at_on_resume_is_refused_and_the_same_one_resumes() {
    let campaign = Campaign::new(&recipients(3));
    let none = ["--smtp-tls", "none", "--rate", "off"];
    campaign.expiry.set(["--expires-at", "2030-01-01"]);
    let server = Server::start(
        campaign.dir.path(),
        &["--tempfail-always", "p1@contoso.com"],
    );
    let output = campaign.run(&server, &none);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(server.received().len(), 2);
    drop(server);

    // Another instant: refused before any message, the campaign's own named.
    let server = Server::start(campaign.dir.path(), &[]);
    campaign.expiry.set(["--expires-at", "2031-01-01"]);
    let refused = campaign.run(&server, &none);
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "invitegate: --expires-at differs from the campaign's expiry in \
             recipients.csv.journal (2030-01-01T23:59:59Z); drop the flag to resume, or start a \
             new campaign with another --journal"
        ),
        "{err}"
    );
    assert!(server.received().is_empty());

    // The campaign's own: it resumes, and the row left gets a code of that expiry.
    campaign.expiry.set(["--expires-at", "2030-01-01"]);
    let resumed = campaign.run(&server, &none);
    let err = stderr(&resumed);
    assert!(resumed.status.success(), "{err}");
    assert!(
        err.contains(
            "invitegate: resuming the campaign in recipients.csv.journal (codes expire at \
             2030-01-01T23:59:59Z)"
        ),
        "{err}"
    );
    let received = server.received();
    assert_eq!(received.len(), 1, "{err}");
    assert_eq!(received[0].to, ["p1@contoso.com"]);
    assert!(
        quoted_printable_decode(&received[0].data).contains("valid until 2030-01-01T23:59:59Z"),
        "{}",
        received[0].data
    );
    assert_verifies(&received[0]);
}
