//! `invitegate send`: mint a code per recipients row and email it, resumably.
//!
//! Everything that can be checked is checked before the first email: flags, templates, every
//! row, the journal against the file, and the server's TLS and login. Then rows go out
//! through the library's [`invitegate::send::deliver`], and a summary says what happened.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use invitegate::fsutil::Privacy;
use invitegate::send::{
    Campaign, Event, Journal, JournalState, Retry, RowOutcome, SendOptions, SmtpPassword,
    SmtpSettings, Stop, TemplateSource, Templates, TlsMode,
    journal::{RowRecord, RowStatus, recipient_key, rfc3339},
};
use lettre::message::Mailbox;
use time::OffsetDateTime;

use super::batch::{ReadArgs, RowMintArgs};
use super::output::{Named, Rejects, Sink, count};
use super::{KeySource, Status, keys};

/// The password's environment variable; it has no flag, so it stays out of shell history.
const PASSWORD_ENV: &str = "INVITEGATE_SMTP_PASSWORD";

/// The most connections asked for: providers cap them at a handful, and each costs a TLS
/// handshake and a login.
const MAX_CONCURRENCY: usize = 64;

/// How often a plain progress line is printed when standard error is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

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
    /// The SMTP user; the password comes from INVITEGATE_SMTP_PASSWORD or
    /// --smtp-password-file, never from a flag.
    #[arg(long, env = "INVITEGATE_SMTP_USERNAME", value_name = "USER")]
    smtp_username: Option<String>,
    /// A file holding the SMTP password (its first line).
    #[arg(long, value_name = "FILE")]
    smtp_password_file: Option<PathBuf>,
    /// `none` sends in plain text (a warning says so); `opportunistic` uses STARTTLS only
    /// when offered. Default: as the URL says (STARTTLS required for smtp://).
    #[arg(long, value_name = "MODE", value_parser = ["required", "opportunistic", "none"])]
    smtp_tls: Option<String>,
    /// Seconds a message's exchange with the server may take (connecting and logging in
    /// included) before the attempt counts as a broken connection and is retried.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
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
    /// Write each message as FOLDER/LINE-ADDRESS.eml and send nothing.
    #[arg(
        long,
        value_name = "FOLDER",
        conflicts_with_all = ["smtp_tls", "smtp_timeout", "concurrency", "rate", "rejects"]
    )]
    dry_run: Option<PathBuf>,
    /// Send every message to this one mailbox (a test run; no journal is kept).
    #[arg(
        long,
        value_name = "ADDRESS",
        conflicts_with_all = ["journal", "skip_uncertain", "retry_rejected"]
    )]
    to_one: Option<String>,
    /// The journal that makes the run resumable. Default: INPUT.journal beside the input.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Where refused rows go, with an `error` column. Default: INPUT.rejects.csv.
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Messages in flight at once (SMTP connections).
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// At most this many messages: 10/s, 600/min, 3000/h, or off. A paced run syncs the
    /// journal to disk before each message; `off` syncs it every second.
    #[arg(long, default_value = "10/s", value_name = "RATE")]
    rate: String,
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

fn read_template(path: &Path) -> anyhow::Result<TemplateSource> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading template {}", path.display()))?;
    Ok(TemplateSource::new(path.display().to_string(), text))
}

/// The settings common to a dry run and a real one.
struct Plan {
    options: SendOptions,
    templates: Templates,
    ring: invitegate::KeyRing,
    now: OffsetDateTime,
}

fn plan(args: &SendArgs) -> anyhow::Result<Plan> {
    if !(1..=MAX_CONCURRENCY).contains(&args.concurrency) {
        bail!("--concurrency takes 1 to {MAX_CONCURRENCY}");
    }
    let from = args
        .from
        .as_deref()
        .context("no sender: give --from 'Name <address>' or set INVITEGATE_SMTP_FROM")?;
    let from: Mailbox = from.parse().with_context(|| {
        format!("--from {from:?}: not a mailbox such as 'Contoso <invites@contoso.com>'")
    })?;
    let to_one = match &args.to_one {
        Some(text) => Some(
            text.parse::<Mailbox>()
                .with_context(|| format!("--to-one {text:?}: not an email address"))?,
        ),
        None => None,
    };
    let templates = Templates::new(
        args.subject
            .as_ref()
            .map(|s| TemplateSource::new("--subject", s.clone())),
        args.text_template
            .as_deref()
            .map(read_template)
            .transpose()?,
        args.html_template
            .as_deref()
            .map(read_template)
            .transpose()?,
    )?;
    let now = OffsetDateTime::now_utc();
    let options = SendOptions {
        mint: args.mint.mint_options(now)?,
        read: args.read.read_options()?,
        from,
        to_one,
        sign_up_url: args.sign_up_url.clone(),
        concurrency: args.concurrency,
        rate: invitegate::send::Rate::parse(&args.rate)?,
        skip_uncertain: args.skip_uncertain,
        retry_rejected: args.retry_rejected,
        retry: Retry {
            first_delay: Duration::from_millis(args.retry_delay_ms),
            ..Retry::default()
        },
    };
    let ring = keys::load(&args.keys)?;
    Ok(Plan {
        options,
        templates,
        ring,
        now,
    })
}

/// The recipients file, read once: the check of every row, the run and the rejects file
/// then see the same rows even if the file changes meanwhile.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading input {}", path.display()))
}

fn smtp_settings(args: &SendArgs) -> anyhow::Result<SmtpSettings> {
    let url = args
        .smtp
        .as_deref()
        .context("no server: give --smtp smtp://HOST:587 or set INVITEGATE_SMTP_URL")?;
    let mut settings = SmtpSettings::from_url(url)?;
    match args.smtp_tls.as_deref() {
        Some(mode @ ("opportunistic" | "none")) if settings.tls == TlsMode::Implicit => {
            bail!("--smtp-tls {mode} does not apply to smtps://, which is always TLS")
        }
        Some("none") => settings.tls = TlsMode::None,
        Some("opportunistic") => settings.tls = TlsMode::Opportunistic,
        Some("required") if settings.tls == TlsMode::Opportunistic => {
            settings.tls = TlsMode::Required;
        }
        _ => {}
    }
    match settings.tls {
        TlsMode::None => eprintln!(
            "invitegate: warning: --smtp-tls none: messages, codes and the password cross the \
             network in plain text"
        ),
        TlsMode::Opportunistic => eprintln!(
            "invitegate: warning: tls=opportunistic: if the server offers no STARTTLS, \
             messages, codes and the password cross the network in plain text"
        ),
        TlsMode::Required | TlsMode::Implicit => {}
    }
    let password = match &args.smtp_password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --smtp-password-file {}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        None => std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()),
    };
    settings.credentials = match (&args.smtp_username, password) {
        (Some(user), Some(password)) => Some((user.clone(), SmtpPassword::new(password))),
        (Some(_), None) => bail!(
            "--smtp-username is set but no password: set {PASSWORD_ENV} or give \
             --smtp-password-file"
        ),
        (None, Some(_)) => bail!("a password is set but no user: give --smtp-username"),
        (None, None) => None,
    };
    if let Some(path) = &args.smtp_ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading --smtp-ca-file {}", path.display()))?;
        settings.ca_pem = Some(pem);
    }
    settings.pool_size = u32::try_from(args.concurrency).unwrap_or(4);
    if args.smtp_timeout == 0 {
        bail!("--smtp-timeout takes at least 1 second");
    }
    settings.timeout = Duration::from_secs(args.smtp_timeout);
    Ok(settings)
}

/// `invitegate send`.
pub fn send(args: &SendArgs) -> anyhow::Result<Status> {
    let mut plan = plan(args)?;
    if let Some(dir) = &args.dry_run {
        return dry_run(args, &plan, dir);
    }
    let settings = smtp_settings(args)?;
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
    let rejects_path = args.rejects_path();
    check_files(
        args,
        scratch.is_none().then_some(&journal_path),
        &rejects_path,
    )?;
    // Made now, beside where it goes: a rejects file that cannot be written stops the run
    // before any message, not after all of them.
    let rejects_sink = Sink::create("--rejects", &rejects_path, Privacy::Private)?;
    let asked = plan.options.mint.default_expiry;
    let (journal, state) = Journal::open(&journal_path, asked, plan.now)?;
    if state.resumed {
        if args.mint.expiry.expires_at.is_some() && asked != state.expires_at {
            bail!(
                "--expires-at differs from the campaign's expiry in {} ({}); drop the flag to \
                 resume, or start a new campaign with another --journal",
                journal_path.display(),
                state.expires_at.map_or("none".to_owned(), rfc3339)
            );
        }
        // A relative expiry asked again a little later differs by that little: said only when
        // the difference is worth saying.
        let apart = match (asked, state.expires_at) {
            (Some(asked), Some(kept)) => {
                (i64::from(asked.unix()) - i64::from(kept.unix())).abs() > 24 * 3600
            }
            _ => false,
        };
        if let Some(asked_in) = &args.mint.expiry.expires_in
            && apart
        {
            eprintln!(
                "invitegate: note: --expires-in {asked_in} is not applied: a resumed campaign \
                 keeps its codes' expiry (another expiry needs a new campaign: another \
                 --journal)"
            );
        }
        plan.options.mint.default_expiry = state.expires_at;
        eprintln!(
            "invitegate: resuming the campaign in {} (codes expire at {})",
            journal_path.display(),
            state
                .expires_at
                .map_or("each row's expires_at".to_owned(), rfc3339)
        );
    }
    let journal = Arc::new(journal);
    let input = read_input(&args.input)?;
    let check = check_rows(&input, &plan, &state, &journal_path)?;
    if check.invalid > 0 && !args.skip_invalid {
        eprintln!(
            "invitegate: {} wrong; nothing was sent: fix them, or pass --skip-invalid to send \
             the others and set these aside in the rejects file",
            count(check.invalid, "row")
        );
        return Ok(Status::NotVerified);
    }
    let mut rejects = check.rejects;
    let mut summary_line = format!(
        "{} to send, {} already sent, {} uncertain, {} refused earlier, {} invalid, {}",
        check.ready,
        check.already_sent,
        check.uncertain,
        check.rejected_earlier,
        check.invalid,
        count(check.duplicates, "duplicate")
    );
    let mut status = if rejects.is_empty() && check.rejected_earlier == 0 {
        Status::Success
    } else {
        Status::NotVerified
    };
    if check.ready > 0 {
        let progress = Progress::new(check.ready);
        let signalled = std::cell::Cell::new(None);
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
        let campaign = Campaign {
            ring: &plan.ring,
            templates: &plan.templates,
            options: &plan.options,
            journal: &state,
            journal_path: &journal_path,
        };
        let summary = invitegate::send::deliver(
            &campaign,
            input.as_slice(),
            &journal,
            &settings,
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
                _ => {}
            },
        )?;
        progress.finish();
        summary_line = format!(
            "{} sent, {} rejected, {} deferred, {} retried, {} skipped as already sent, {} \
             uncertain ({} sent again), {} refused earlier, {} invalid, {}",
            summary.sent,
            summary.rejected,
            // Rows given up without a byte sent are journalled deferred, and counted so.
            summary.deferred + summary.gave_up - summary.uncertain,
            summary.retried,
            check.already_sent,
            check.uncertain + summary.uncertain,
            summary.resent_uncertain,
            check.rejected_earlier,
            check.invalid,
            count(check.duplicates, "duplicate")
        );
        if summary.rejected > 0 || summary.deferred > 0 {
            status = Status::NotVerified;
        }
        if let Some(stop) = &summary.stopped {
            write_rejects(&input, rejects_sink, &plan, &rejects)?;
            eprintln!("invitegate: send: {summary_line}");
            let why = match stop {
                Stop::Interrupted => "interrupted".to_owned(),
                Stop::ServerLost(reply) => format!("the server is gone ({reply})"),
                Stop::ServerRefuses(rows, reply) => format!(
                    "the server refused or put off {rows} messages in a row, none accepted \
                     between, for reasons not the recipients' (last: {reply}); check the \
                     login, the sender and the account's sending limits, or try again later"
                ),
            };
            eprintln!(
                "invitegate: stopped: {why}; the journal {} is up to date; to resume, run \
                 the same command again:\n  {}",
                journal_path.display(),
                resume_command()
            );
            return Ok(match stop {
                Stop::Interrupted => Status::Signalled(signalled.get().unwrap_or(2)),
                Stop::ServerLost(_) | Stop::ServerRefuses(..) => Status::Error,
            });
        }
        let ended = summary.sent + summary.rejected + summary.deferred + summary.gave_up;
        if ended != check.ready {
            bail!(
                "{} of {} rows to send were accounted for; see the journal {}",
                ended,
                check.ready,
                journal_path.display()
            );
        }
        if summary.deferred > 0 {
            eprintln!(
                "invitegate: {} deferred by the server; run the same command again later to \
                 send {}:\n  {}",
                count(summary.deferred, "row"),
                if summary.deferred == 1 { "it" } else { "them" },
                resume_command()
            );
        }
    }
    write_rejects(&input, rejects_sink, &plan, &rejects)?;
    eprintln!("invitegate: send: {summary_line}");
    Ok(status)
}

/// What the check of every row found.
struct Check {
    ready: u64,
    already_sent: u64,
    uncertain: u64,
    rejected_earlier: u64,
    invalid: u64,
    duplicates: u64,
    rejects: Vec<(csv::ByteRecord, String)>,
}

fn check_rows(
    input: &[u8],
    plan: &Plan,
    state: &JournalState,
    journal_path: &Path,
) -> anyhow::Result<Check> {
    let mut check = Check {
        ready: 0,
        already_sent: 0,
        uncertain: 0,
        rejected_earlier: 0,
        invalid: 0,
        duplicates: 0,
        rejects: Vec::new(),
    };
    let campaign = Campaign {
        ring: &plan.ring,
        templates: &plan.templates,
        options: &plan.options,
        journal: state,
        journal_path,
    };
    // The journal's recipients this file still names.
    let mut named = std::collections::HashSet::new();
    invitegate::send::scan(&campaign, input, |outcome| {
        // Each row left out is named; rows already sent are only counted (a resumed run of a
        // large campaign has thousands).
        if !matches!(outcome, RowOutcome::AlreadySent { .. })
            && let Some(why) = left_out(&outcome)
        {
            eprintln!("invitegate: {why}");
        }
        match outcome {
            RowOutcome::Ready { prepared, again } => {
                named.insert(recipient_key(prepared.to.as_ref()));
                check.ready += 1;
                if again {
                    check.uncertain += 1;
                    eprintln!(
                        "invitegate: line {}: {} (code fingerprint {}) was handed to the server by an \
                             earlier run with no reply recorded; sending it again \
                             (--skip-uncertain leaves it)",
                        prepared.line, prepared.to, prepared.fingerprint
                    );
                }
            }
            RowOutcome::AlreadySent { to, .. } => {
                named.insert(recipient_key(&to));
                check.already_sent += 1;
            }
            RowOutcome::SkippedUncertain { to, .. } => {
                named.insert(recipient_key(&to));
                check.uncertain += 1;
            }
            RowOutcome::RejectedEarlier {
                line,
                to,
                reply,
                record,
            } => {
                named.insert(recipient_key(&to));
                check.rejected_earlier += 1;
                check.rejects.push((
                    record,
                    format!("line {line}: refused by the server in an earlier run: {reply}"),
                ));
            }
            RowOutcome::Invalid {
                line,
                reason,
                record,
            } => {
                check.invalid += 1;
                eprintln!("invitegate: line {line}: {reason}");
                check
                    .rejects
                    .push((record, format!("line {line}: {reason}")));
            }
            RowOutcome::Duplicate {
                line,
                first,
                record,
            } => {
                check.duplicates += 1;
                check.rejects.push((
                    record,
                    format!("line {line}: the same recipient as line {first}: left out"),
                ));
            }
            _ => {}
        }
        true
    })?;
    // Rows are known by their address: a row whose address was changed is a new recipient,
    // and the address it had is no longer in the file. Said, so that an edit is not silent.
    let mut gone: Vec<&RowRecord> = state
        .rows
        .iter()
        .filter(|(key, seen)| {
            matches!(seen.status, RowStatus::Sent | RowStatus::Uncertain) && !named.contains(*key)
        })
        .map(|(_, seen)| seen)
        .collect();
    gone.sort_by_key(|seen| seen.line);
    for seen in gone {
        eprintln!(
            "invitegate: note: {} (line {} when an earlier run sent it a message) is no longer \
             in the recipients file",
            seen.to, seen.line
        );
    }
    Ok(check)
}

/// Why a row that is valid is left out of a run, in the words a run and a dry run share;
/// `None` for a row that is sent or invalid.
fn left_out(outcome: &RowOutcome) -> Option<String> {
    Some(match outcome {
        RowOutcome::AlreadySent { line, to } => {
            format!("line {line}: {to} was sent a message by an earlier run; left out")
        }
        RowOutcome::SkippedUncertain { line, to, code } => format!(
            "line {line}: {to} (code fingerprint {code}) may have been sent by an earlier run; \
             left alone (--skip-uncertain)"
        ),
        RowOutcome::RejectedEarlier { line, to, .. } => format!(
            "line {line}: {to} was refused by the server in an earlier run; left out (correct \
             the row, or pass --retry-rejected)"
        ),
        RowOutcome::Duplicate { line, first, .. } => {
            format!("line {line}: the same recipient as line {first}; left out")
        }
        _ => return None,
    })
}

fn dry_run(args: &SendArgs, plan: &Plan, dir: &Path) -> anyhow::Result<Status> {
    // Messages of two runs mixed in one folder cannot be told apart.
    if let Ok(entries) = std::fs::read_dir(dir)
        && let Some(old) = entries
            .filter_map(Result::ok)
            .find(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
    {
        bail!(
            "--dry-run {}: the folder already holds messages ({}); give a new or empty folder",
            dir.display(),
            old.file_name().to_string_lossy()
        );
    }
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| beside(&args.input, ".journal"));
    let mut options = plan.options.clone();
    let mut state = JournalState::default();
    if journal_path.exists() {
        let read = Journal::peek(&journal_path)?;
        if read.expires_at.is_some() {
            options.mint.default_expiry = read.expires_at;
        }
        state = read;
    }
    let (mut ready, mut skipped, mut invalid) = (0u64, 0u64, 0u64);
    let campaign = Campaign {
        ring: &plan.ring,
        templates: &plan.templates,
        options: &options,
        journal: &state,
        journal_path: &journal_path,
    };
    invitegate::send::dry_run(
        &campaign,
        read_input(&args.input)?.as_slice(),
        dir,
        |outcome, path| match outcome {
            RowOutcome::Ready { prepared, .. } => {
                ready += 1;
                let subject = prepared
                    .message
                    .headers()
                    .get_raw("Subject")
                    .unwrap_or_default()
                    .to_owned();
                let to = options
                    .to_one
                    .as_ref()
                    .map_or_else(|| prepared.to.to_string(), |m| m.email.to_string());
                println!(
                    "line {}: to {to}: {subject:?} (key {}, expires {}) -> {}",
                    prepared.line,
                    prepared.key_id,
                    rfc3339(prepared.expiry),
                    path.map_or_else(String::new, |p| p.display().to_string())
                );
            }
            RowOutcome::Invalid { line, reason, .. } => {
                invalid += 1;
                eprintln!("invitegate: line {line}: {reason}");
            }
            other => {
                skipped += 1;
                if let Some(why) = left_out(other) {
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

/// Refuses a journal or rejects file that is an input (the recipients file, the keys, a
/// template, the password file) or the other: by device and inode, as `batch` does.
fn check_files(args: &SendArgs, journal: Option<&PathBuf>, rejects: &Path) -> anyhow::Result<()> {
    let mut inputs = vec![Named::path("the input", &args.input)?];
    if let Some(path) = args.keys.file() {
        inputs.push(Named::path("the keys file", &path)?);
    }
    for (label, path) in [
        ("--text-template", &args.text_template),
        ("--html-template", &args.html_template),
        ("--smtp-password-file", &args.smtp_password_file),
        ("--smtp-ca-file", &args.smtp_ca_file),
    ] {
        if let Some(path) = path {
            inputs.push(Named::path(label, path)?);
        }
    }
    let mut outputs = vec![Named::path("--rejects", rejects)?];
    if let Some(path) = journal {
        outputs.push(Named::path("--journal", path)?);
    }
    super::output::check_distinct(&inputs, &outputs)
}

fn write_rejects(
    input: &[u8],
    sink: Sink,
    plan: &Plan,
    rejects: &[(csv::ByteRecord, String)],
) -> anyhow::Result<()> {
    let path = sink.target().map(Path::to_owned).unwrap_or_default();
    if rejects.is_empty() {
        // Nothing refused now: a rejects file of an earlier run of this campaign would list
        // rows that have since gone. Only a rejects file is removed: its header ends with
        // the `error` column.
        let ours = std::fs::read(&path).is_ok_and(|text| {
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            first.trim_ascii_end().ends_with(b"error")
        });
        if ours && std::fs::remove_file(&path).is_ok() {
            eprintln!(
                "invitegate: removed {}: no row is refused now",
                path.display()
            );
        }
        return Ok(());
    }
    // The header and dialect as the rows were read, for a rejects file laid out like batch's.
    let reader = invitegate::batch::Recipients::open(input, &plan.options.read)?;
    let (header, dialect) = (reader.header(), reader.dialect());
    let mut writer = Rejects::new(sink, false);
    for (record, error) in rejects {
        writer
            .write(dialect, header, record, error)
            .context("writing the rejects file")?;
    }
    writer
        .finish()?
        .commit()
        .context("writing the rejects file")?;
    eprintln!("invitegate: refused rows are in {}", path.display());
    Ok(())
}

/// Completes with the number of the first of SIGINT (Ctrl-C), SIGTERM (`docker stop`,
/// systemd, `timeout`) and SIGHUP (a closed terminal) to arrive: each stops a run as Ctrl-C
/// does. Never completes if no handler can be installed.
async fn stop_signal() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut streams = Vec::new();
        for (kind, number) in [
            (SignalKind::interrupt(), 2),
            (SignalKind::terminate(), 15),
            (SignalKind::hangup(), 1),
        ] {
            if let Ok(stream) = signal(kind) {
                streams.push((stream, number));
            }
        }
        if streams.is_empty() {
            std::future::pending::<()>().await;
        }
        std::future::poll_fn(|cx| {
            for (stream, number) in &mut streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*number);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        2
    }
}

/// This process's command line, quoted for a POSIX shell.
fn resume_command() -> String {
    std::env::args()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
            {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A progress bar on a terminal, else a plain line every few seconds.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::cell::Cell<u64>,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {human_pos}/{human_len} messages  {per_sec}  eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total,
            done: std::cell::Cell::new(0),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    fn inc(&self) {
        self.done.set(self.done.get() + 1);
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last.get().elapsed() >= PROGRESS_EVERY => {
                self.last.set(Instant::now());
                eprintln!(
                    "invitegate: {}/{} messages done",
                    self.done.get(),
                    self.total
                );
            }
            None => {}
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("invitegate: {line}")),
            None => eprintln!("invitegate: {line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
