//! `invitegate send`: mint a code per recipients row and email it, resumably, over SMTP or
//! Microsoft Graph.
//!
//! The flags become the library's settings (`settings`); the library checks every row, then
//! [`invitegate::send::deliver`] sends them through the chosen transport; this module prints
//! what it reports (`report`) and turns how the run ended into an exit status.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use invitegate::fsutil::Privacy;
use invitegate::send::http::parse_url;
use invitegate::send::oauth;
use invitegate::send::transport::graph;
use invitegate::send::{
    Campaign, Ending, Event, ExpiryAsked, GraphSettings, GraphTransport, RowOutcome, SmtpTransport,
    Stop, Transport, campaign, journal::rfc3339,
};

use super::batch::{ReadArgs, RowMintArgs};
use super::output::{Sink, count};
use super::{KeySource, Status};
use report::{Progress, resume_command, say, stop_signal, write_rejects};
use settings::{
    DEFAULT_CONCURRENCY, DEFAULT_SMTP_TIMEOUT, Plan, check_files, note_unused, oauth_settings,
    plan, read_input, smtp_settings,
};

mod report;
mod settings;

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    keys: KeySource,
    #[command(flatten)]
    mint: RowMintArgs,
    #[command(flatten)]
    read: ReadArgs,
    /// The sender, as `Name <address>` or an address.
    #[arg(long, env = "INVITEGATE_SMTP_FROM", value_name = "MAILBOX")]
    from: Option<String>,
    /// The server: smtp://HOST[:587] (STARTTLS required), smtp://HOST?tls=opportunistic,
    /// smtps://HOST[:465] (implicit TLS).
    #[arg(long, env = "INVITEGATE_SMTP_URL", value_name = "URL")]
    smtp: Option<String>,
    /// Send through Microsoft Graph from this mailbox (sendMail with an app-only token)
    /// instead of SMTP.
    #[arg(
        long,
        env = "INVITEGATE_GRAPH_SENDER",
        value_name = "ADDRESS",
        conflicts_with = "smtp"
    )]
    graph_sender: Option<String>,
    /// Microsoft Graph's URL.
    #[arg(long, default_value = graph::DEFAULT_GRAPH_URL, value_name = "URL")]
    graph_url: String,
    /// The tenant that issues the app's tokens: its ID or a domain of it.
    #[arg(long, env = "INVITEGATE_OAUTH_TENANT", value_name = "TENANT")]
    oauth_tenant: Option<String>,
    /// The app's client ID (Entra app registration).
    #[arg(long, env = "INVITEGATE_OAUTH_CLIENT_ID", value_name = "ID")]
    oauth_client_id: Option<String>,
    /// A file holding the app's client secret (its first line); else
    /// INVITEGATE_OAUTH_CLIENT_SECRET. Never a flag value.
    #[arg(long, value_name = "FILE", conflicts_with = "oauth_client_certificate")]
    oauth_client_secret_file: Option<PathBuf>,
    /// A PEM file with the app's certificate and its private key: each token request
    /// carries an assertion it signed (Microsoft's recommendation over a secret).
    #[arg(long, value_name = "FILE")]
    oauth_client_certificate: Option<PathBuf>,
    /// The token service.
    #[arg(long, default_value = oauth::DEFAULT_AUTHORITY, value_name = "URL")]
    oauth_authority: String,
    /// The SMTP user; the password comes from INVITEGATE_SMTP_PASSWORD or
    /// --smtp-password-file, never from a flag.
    #[arg(long, env = "INVITEGATE_SMTP_USERNAME", value_name = "USER")]
    smtp_username: Option<String>,
    /// A file holding the SMTP password (its first line).
    #[arg(long, value_name = "FILE")]
    smtp_password_file: Option<PathBuf>,
    /// How to log in: `password` (AUTH PLAIN or LOGIN), or `xoauth2` with an app-only
    /// token from Entra for --smtp-username's mailbox (Exchange Online).
    #[arg(long, value_name = "MODE", value_parser = ["password", "xoauth2"])]
    smtp_auth: Option<String>,
    /// The scope of the XOAUTH2 token.
    #[arg(long, default_value = oauth::OUTLOOK_SCOPE, value_name = "SCOPE")]
    smtp_oauth_scope: String,
    /// `none` sends in plain text (a warning says so); `opportunistic` uses STARTTLS only
    /// when offered. Default: as the URL says (STARTTLS required for smtp://).
    #[arg(long, value_name = "MODE", value_parser = ["required", "opportunistic", "none"])]
    smtp_tls: Option<String>,
    /// Seconds a message's exchange with the server may take (connecting and logging in
    /// included) before the attempt counts as a broken connection and is retried.
    #[arg(long, default_value_t = DEFAULT_SMTP_TIMEOUT, value_name = "SECONDS")]
    smtp_timeout: u64,
    /// A PEM file of CA certificates to trust besides the usual web roots (a private CA).
    #[arg(long, env = "INVITEGATE_SMTP_CA_FILE", value_name = "FILE")]
    smtp_ca_file: Option<PathBuf>,
    /// The subject template. Default: "Your invitation code".
    #[arg(long, value_name = "TEMPLATE")]
    subject: Option<String>,
    /// The text body template (minijinja). Default: a short invitation with the code.
    #[arg(long, value_name = "FILE")]
    text_template: Option<PathBuf>,
    /// An HTML body template; with it, messages are multipart/alternative.
    #[arg(long, value_name = "FILE")]
    html_template: Option<PathBuf>,
    /// The sign-up page, as `sign_up_url` in templates.
    #[arg(long, value_name = "URL")]
    sign_up_url: Option<String>,
    /// Write each message as FOLDER/LINE-ADDRESS.eml and send nothing: the real command
    /// plus this flag (flags a dry run does not use are named, not refused).
    #[arg(long, value_name = "FOLDER")]
    dry_run: Option<PathBuf>,
    /// Send every message to this one mailbox, its subject naming the real recipient (a
    /// test run: no journal, no rejects file). The real command plus this flag.
    #[arg(long, value_name = "ADDRESS")]
    to_one: Option<String>,
    /// The journal that makes the run resumable. Default: INPUT.journal beside the input.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Where refused rows go, with an `error` column. Default: INPUT.rejects.csv.
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Messages in flight at once (SMTP connections; with Graph, at most 4, Exchange
    /// Online's limit for one mailbox).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N")]
    concurrency: usize,
    /// At most this many messages: 10/s, 600/min, 3000/h, or off. Default: 10/s over SMTP,
    /// 30/min with Graph (Exchange Online's limit for one mailbox). A paced run syncs the
    /// journal to disk before each message; `off` syncs it every second.
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Send only the first N rows still to send; the others wait for a later run (the
    /// same command). With --to-one, N test messages.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Send the good rows and set bad rows aside in the rejects file instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Leave rows an interrupted run handed to the server without a recorded reply unsent
    /// (by default they are sent again: better twice than never).
    #[arg(long)]
    skip_uncertain: bool,
    /// Send again rows the server refused for good (5xx) in an earlier run, though they have
    /// not changed (by default they are left out; a changed row is sent).
    #[arg(long)]
    retry_rejected: bool,
    /// The first wait before retrying a temporary failure, in milliseconds.
    #[arg(long, default_value_t = 1000, hide = true)]
    retry_delay_ms: u64,
    /// Recipients CSV, as for `batch`.
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

impl SendArgs {
    /// The rejects file: `--rejects`, or INPUT.rejects.csv.
    fn rejects_path(&self) -> PathBuf {
        self.rejects
            .clone()
            .unwrap_or_else(|| beside(&self.input, ".rejects.csv"))
    }
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// `invitegate send`.
pub fn send(args: &SendArgs) -> anyhow::Result<Status> {
    let mut plan = plan(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    note_unused(args);
    if let Some(dir) = &args.dry_run {
        return dry_run(args, &mut plan, dir);
    }
    if let Some(sender) = &args.graph_sender {
        let settings = GraphSettings {
            graph_url: parse_url("--graph-url", &args.graph_url)?,
            sender: sender.trim().to_owned(),
        };
        let oauth = oauth_settings(args, settings.scope())?;
        let transport = Arc::new(GraphTransport::new(settings, oauth)?);
        return runtime.block_on(run(args, plan, &transport));
    }
    let settings = smtp_settings(args)?;
    let xoauth2 = match args.smtp_auth.as_deref() {
        Some("xoauth2") => {
            let user = args
                .smtp_username
                .clone()
                .context("--smtp-auth xoauth2 logs in as a mailbox: give --smtp-username")?;
            Some((user, oauth_settings(args, args.smtp_oauth_scope.clone())?))
        }
        _ => None,
    };
    // The pool runs a task of its own: it is built and dropped inside the runtime.
    runtime.block_on(async {
        let transport = Arc::new(match xoauth2 {
            Some((user, oauth)) => SmtpTransport::with_xoauth2(settings, user, oauth)?,
            None => SmtpTransport::new(settings)?,
        });
        run(args, plan, &transport).await
    })
}

/// A real run (or a test run to one mailbox) through `transport`.
async fn run<T: Transport>(
    args: &SendArgs,
    mut plan: Plan,
    transport: &Arc<T>,
) -> anyhow::Result<Status> {
    // A test run to one mailbox must not mark the campaign's rows as sent.
    let scratch = match args.to_one {
        Some(_) => Some(tempfile::tempdir().context("creating a scratch journal")?),
        None => None,
    };
    let journal_path = match (&scratch, &args.journal) {
        (Some(dir), _) => dir.path().join("journal"),
        (None, Some(path)) => path.clone(),
        (None, None) => beside(&args.input, ".journal"),
    };
    // Nor touch its rejects file: a test run's refusals are said, not kept.
    let rejects_path = match &scratch {
        Some(dir) => dir.path().join("rejects.csv"),
        None => args.rejects_path(),
    };
    check_files(
        args,
        scratch.is_none().then_some(&journal_path),
        &rejects_path,
    )?;
    // Made now, beside where it goes: a rejects file that cannot be written stops the run
    // before any message, not after all of them.
    let rejects_sink = Sink::create("--rejects", &rejects_path, Privacy::Private)?;
    let asked = match (&args.mint.expiry.expires_at, &args.mint.expiry.expires_in) {
        (Some(_), _) => ExpiryAsked::At,
        (None, Some(text)) => ExpiryAsked::In(text.to_string()),
        (None, None) => ExpiryAsked::None,
    };
    let (journal, state) = campaign::open_journal(
        &journal_path,
        &mut plan.options,
        &asked,
        plan.now,
        |event| say(&event),
    )?;
    let journal = Arc::new(journal);
    let input = read_input(&args.input)?;
    let campaign = Campaign {
        ring: &plan.ring,
        templates: &plan.templates,
        options: &plan.options,
        journal: &state,
        journal_path: &journal_path,
    };
    let checked = campaign::check(&campaign, &input, |event| say(&event))?;
    let counts = checked.counts.clone();
    if counts.invalid > 0 && !args.skip_invalid {
        eprintln!(
            "invitegate: {} wrong; nothing was sent: fix them, or pass --skip-invalid to send \
             the others and set these aside in the rejects file",
            count(counts.invalid, "row")
        );
        return Ok(Status::NotVerified);
    }
    let mut rejects = checked.rejects;
    let mut summary_line = format!(
        "{} to send, {} already sent, {} uncertain, {} refused earlier, {} invalid, {}",
        counts.ready,
        counts.already_sent,
        counts.uncertain,
        counts.rejected_earlier,
        counts.invalid,
        count(counts.duplicates, "duplicate")
    );
    let mut summary = None;
    let signalled = std::cell::Cell::new(None);
    if counts.ready > 0 {
        transport.check().await?;
        let progress = Progress::new(counts.ready);
        let shutdown = async {
            signalled.set(Some(stop_signal().await));
            eprintln!(
                "invitegate: stopping: no new message is taken; those in flight finish (signal \
                 again to stop at once)"
            );
            // A second signal does not wait for the messages in flight: their rows stay
            // `handed` in the journal, and the next run lists them.
            tokio::spawn(async {
                let signal = stop_signal().await;
                eprintln!(
                    "invitegate: stopped at once; messages in flight are left uncertain in the \
                     journal"
                );
                std::process::exit(128 + signal);
            });
        };
        let delivered = invitegate::send::deliver(
            checked.ready,
            &journal,
            transport,
            &plan.options,
            shutdown,
            |event| match event {
                Event::Sent { .. } => progress.inc(),
                Event::Rejected {
                    line,
                    to,
                    reply,
                    record,
                } => {
                    progress.say(&format!("line {line}: {to} refused: {reply}"));
                    rejects.push((record.clone(), format!("line {line}: {reply}")));
                    progress.inc();
                }
                Event::Deferred { line, to, reply } => {
                    progress.say(&format!("line {line}: {to} deferred: {reply}"));
                    progress.inc();
                }
                Event::GaveUp {
                    line,
                    to,
                    reply,
                    uncertain,
                } => {
                    let outcome = if uncertain {
                        "may or may not have gone"
                    } else {
                        "not sent"
                    };
                    progress.say(&format!("line {line}: {to} {outcome}: {reply}"));
                }
                Event::Throttled {
                    line,
                    to,
                    reply,
                    wait,
                } => progress.say(&format!(
                    "line {line}: {to}: {} asks to slow down ({reply}); waiting {} s",
                    transport.name(),
                    wait.as_secs_f64()
                )),
                _ => {}
            },
        )
        .await?;
        progress.finish();
        summary_line = format!(
            "{} sent, {} rejected, {} deferred, {} retried, {} skipped as already sent, {} \
             uncertain ({} sent again), {} refused earlier, {} invalid, {}",
            delivered.sent,
            delivered.rejected,
            // Rows given up without a byte sent are journalled deferred, and counted so.
            delivered.deferred + delivered.gave_up - delivered.uncertain,
            delivered.retried,
            counts.already_sent,
            counts.uncertain + delivered.uncertain,
            delivered.resent_uncertain,
            counts.rejected_earlier,
            counts.invalid,
            count(counts.duplicates, "duplicate")
        );
        summary = Some(delivered);
    }
    if counts.held > 0 {
        summary_line.push_str(&format!(", {} left for a later run (--limit)", counts.held));
    }
    let ending = Ending::of_run(&counts, summary.as_ref(), &journal_path, args.skip_invalid)?;
    if scratch.is_none() {
        write_rejects(&input, rejects_sink, &plan, &rejects)?;
    }
    eprintln!("invitegate: send: {summary_line}");
    if let Some(stop) = summary.as_ref().and_then(|s| s.stopped.as_ref()) {
        let name = transport.name();
        let why = match stop {
            Stop::Interrupted => "interrupted".to_owned(),
            Stop::ServerLost(reply) => format!("{name} is gone ({reply})"),
            Stop::ServerRefuses(rows, reply) => format!(
                "{name} refused or put off {rows} messages in a row, none accepted between, \
                 for reasons not the recipients' (last: {reply}); check the login, the sender \
                 and the account's sending limits, or try again later"
            ),
            Stop::Fatal(reply) => format!("{name} refuses this campaign: {reply}"),
            Stop::Quota(reply) => format!(
                "the sender's sending quota is used up for now ({reply}); the rest goes once it \
                 renews"
            ),
            _ => "stopped".to_owned(),
        };
        eprintln!(
            "invitegate: stopped: {why}; the journal {} is up to date; to resume, run the same \
             command again:\n  {}",
            journal_path.display(),
            resume_command()
        );
    } else if let Some(delivered) = &summary
        && delivered.deferred > 0
    {
        eprintln!(
            "invitegate: {} deferred by {}; run the same command again later to send {}:\n  {}",
            count(delivered.deferred, "row"),
            transport.name(),
            if delivered.deferred == 1 {
                "it"
            } else {
                "them"
            },
            resume_command()
        );
    }
    Ok(match ending {
        Ending::Done => Status::Success,
        Ending::Interrupted => Status::Signalled(signalled.get().unwrap_or(2)),
        Ending::Failed => Status::Error,
        _ => Status::NotVerified,
    })
}

fn dry_run(args: &SendArgs, plan: &mut Plan, dir: &Path) -> anyhow::Result<Status> {
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| beside(&args.input, ".journal"));
    let state = invitegate::send::dry_run::peek_journal(&journal_path, &mut plan.options)?;
    let options = &plan.options;
    let (mut ready, mut skipped, mut invalid) = (0u64, 0u64, 0u64);
    let campaign = Campaign {
        ring: &plan.ring,
        templates: &plan.templates,
        options,
        journal: &state,
        journal_path: &journal_path,
    };
    invitegate::send::dry_run::write(
        &campaign,
        read_input(&args.input)?.as_slice(),
        dir,
        |outcome, path| match (outcome, path) {
            (RowOutcome::Ready { prepared, .. }, Some(path)) => {
                ready += 1;
                println!(
                    "line {}: to {}: {:?} (key {}, expires {}) -> {}",
                    prepared.line,
                    prepared.mail.to.email,
                    prepared.mail.subject,
                    prepared.key_id,
                    rfc3339(prepared.expiry),
                    path.display()
                );
            }
            (RowOutcome::Ready { .. }, None) => skipped += 1,
            (RowOutcome::Invalid { line, reason, .. }, _) => {
                invalid += 1;
                eprintln!("invitegate: line {line}: {reason}");
            }
            (other, _) => {
                skipped += 1;
                if let Some(why) = other.left_out() {
                    eprintln!("invitegate: {why}");
                }
            }
        },
    )?;
    eprintln!(
        "invitegate: dry run: {} written to {}, {} left out, {invalid} invalid; nothing was \
         sent",
        count(ready, "message"),
        dir.display(),
        count(skipped, "row")
    );
    Ok(if invalid > 0 {
        Status::NotVerified
    } else {
        Status::Success
    })
}
