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
use invitegate::send::oauth::{
    self, ClientCertificate, ClientSecret, Credential, OAuthSettings, parse_url,
};
use invitegate::send::transport::graph;
use invitegate::send::{
    Campaign, Ending, Event, ExpiryAsked, GraphSettings, GraphTransport, Retry, RowOutcome,
    SendOptions, SmtpPassword, SmtpSettings, SmtpTransport, Stop, TemplateSource, Templates,
    TlsMode, Transport, campaign, journal::rfc3339,
};
use lettre::message::Mailbox;
use time::OffsetDateTime;

use super::batch::{ReadArgs, RowMintArgs};
use super::output::{Named, Rejects, Sink, count};
use super::{KeySource, Status, keys};

/// The password's environment variable; it has no flag, so it stays out of shell history.
const PASSWORD_ENV: &str = "INVITEGATE_SMTP_PASSWORD";

/// The client secret's environment variable; like the password, it has no flag.
const CLIENT_SECRET_ENV: &str = "INVITEGATE_OAUTH_CLIENT_SECRET";

/// The most connections asked for: providers cap them at a handful, and each costs a TLS
/// handshake and a login.
const MAX_CONCURRENCY: usize = 64;

/// Messages in flight unless --concurrency says otherwise.
const DEFAULT_CONCURRENCY: usize = 4;

/// Seconds a message's exchange may take unless --smtp-timeout says otherwise.
const DEFAULT_SMTP_TIMEOUT: u64 = 60;

/// The pace over SMTP unless --rate says otherwise.
const DEFAULT_SMTP_RATE: &str = "10/s";

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
        .or(args.graph_sender.as_deref())
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
    // The provider's limits are the defaults; an explicit --rate wins.
    let rate = match (&args.rate, &args.graph_sender) {
        (Some(text), _) => invitegate::send::Rate::parse(text)?,
        (None, Some(_)) => Some(graph::DEFAULT_RATE),
        (None, None) => invitegate::send::Rate::parse(DEFAULT_SMTP_RATE)?,
    };
    let mut concurrency = args.concurrency;
    if args.graph_sender.is_some() && concurrency > graph::MAX_CONCURRENCY {
        eprintln!(
            "invitegate: note: --concurrency {concurrency} lowered to {}: Exchange Online takes \
             at most {} requests at once for one mailbox",
            graph::MAX_CONCURRENCY,
            graph::MAX_CONCURRENCY
        );
        concurrency = graph::MAX_CONCURRENCY;
    }
    let options = SendOptions {
        mint: args.mint.mint_options(now)?,
        read: args.read.read_options()?,
        from,
        to_one,
        sign_up_url: args.sign_up_url.clone(),
        concurrency,
        rate,
        skip_uncertain: args.skip_uncertain,
        retry_rejected: args.retry_rejected,
        retry: Retry {
            first_delay: Duration::from_millis(args.retry_delay_ms),
            ..Retry::default()
        },
        limit: args.limit,
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
    let xoauth2 = args.smtp_auth.as_deref() == Some("xoauth2");
    if xoauth2 {
        if password.is_some() {
            bail!(
                "--smtp-auth xoauth2 logs in with a token, not a password: unset {PASSWORD_ENV} \
                 or drop --smtp-password-file"
            );
        }
        // The user logs in with a token: no password credentials.
    } else if args.smtp_auth.is_some() && args.smtp_username.is_none() {
        bail!("--smtp-auth password needs --smtp-username");
    }
    settings.credentials = match (&args.smtp_username, password) {
        _ if xoauth2 => None,
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

/// The app's OAuth client credentials, for a token with `scope`.
fn oauth_settings(args: &SendArgs, scope: String) -> anyhow::Result<OAuthSettings> {
    let tenant = args
        .oauth_tenant
        .clone()
        .filter(|t| !t.trim().is_empty())
        .context("no tenant: set INVITEGATE_OAUTH_TENANT (the tenant ID or a domain of it)")?;
    let client_id = args
        .oauth_client_id
        .clone()
        .filter(|t| !t.trim().is_empty())
        .context("no app: set INVITEGATE_OAUTH_CLIENT_ID (the app registration's client ID)")?;
    let secret = match &args.oauth_client_secret_file {
        Some(path) => {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("reading --oauth-client-secret-file {}", path.display())
                })?);
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        None => std::env::var(CLIENT_SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let credential = match (&args.oauth_client_certificate, secret) {
        (Some(path), None) => {
            let pem = zeroize::Zeroizing::new(std::fs::read(path).with_context(|| {
                format!("reading --oauth-client-certificate {}", path.display())
            })?);
            Credential::Certificate(ClientCertificate::from_pem(&pem)?)
        }
        (None, Some(secret)) => Credential::Secret(ClientSecret::new(secret)?),
        (Some(_), Some(_)) => bail!(
            "both a client secret ({CLIENT_SECRET_ENV}) and --oauth-client-certificate: give one"
        ),
        (None, None) => bail!(
            "no app credential: give --oauth-client-certificate FILE (a PEM certificate and its \
             key), or a client secret in {CLIENT_SECRET_ENV} or --oauth-client-secret-file"
        ),
    };
    Ok(OAuthSettings {
        authority: parse_url("--oauth-authority", &args.oauth_authority)?,
        tenant: tenant.trim().to_owned(),
        client_id: client_id.trim().to_owned(),
        credential,
        scope,
    })
}

/// Names, in one note, the flags given that a dry run or a test run does not use: such a run
/// is the real command plus one flag, so they are ignored, not refused.
fn note_unused(args: &SendArgs) {
    let (mode, unused) = if args.dry_run.is_some() {
        let mut unused = Vec::new();
        for (given, flag) in [
            (args.smtp.is_some(), "--smtp"),
            (args.smtp_username.is_some(), "--smtp-username"),
            (args.smtp_password_file.is_some(), "--smtp-password-file"),
            (args.smtp_auth.is_some(), "--smtp-auth"),
            (
                args.smtp_oauth_scope != oauth::OUTLOOK_SCOPE,
                "--smtp-oauth-scope",
            ),
            (args.smtp_tls.is_some(), "--smtp-tls"),
            (args.smtp_timeout != DEFAULT_SMTP_TIMEOUT, "--smtp-timeout"),
            (args.smtp_ca_file.is_some(), "--smtp-ca-file"),
            (args.graph_url != graph::DEFAULT_GRAPH_URL, "--graph-url"),
            (args.oauth_tenant.is_some(), "--oauth-tenant"),
            (args.oauth_client_id.is_some(), "--oauth-client-id"),
            (
                args.oauth_client_secret_file.is_some(),
                "--oauth-client-secret-file",
            ),
            (
                args.oauth_client_certificate.is_some(),
                "--oauth-client-certificate",
            ),
            (
                args.oauth_authority != oauth::DEFAULT_AUTHORITY,
                "--oauth-authority",
            ),
            (args.concurrency != DEFAULT_CONCURRENCY, "--concurrency"),
            (args.rate.is_some(), "--rate"),
            (args.rejects.is_some(), "--rejects"),
            (args.skip_invalid, "--skip-invalid"),
        ] {
            if given {
                unused.push(flag);
            }
        }
        ("a dry run", unused)
    } else if args.to_one.is_some() {
        let mut unused = Vec::new();
        for (given, flag) in [
            (args.journal.is_some(), "--journal"),
            (args.rejects.is_some(), "--rejects"),
            (args.skip_uncertain, "--skip-uncertain"),
            (args.retry_rejected, "--retry-rejected"),
        ] {
            if given {
                unused.push(flag);
            }
        }
        ("a test run to one mailbox", unused)
    } else {
        return;
    };
    if !unused.is_empty() {
        eprintln!(
            "invitegate: note: {mode} does not use {}; {} ignored",
            unused.join(", "),
            if unused.len() == 1 {
                "it is"
            } else {
                "they are"
            }
        );
    }
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
    let ending = Ending::of(&counts, summary.as_ref(), &journal_path)?;
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
                "the sender's sending quota is used up ({reply}); run the same command again \
                 once it renews"
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

/// Prints what the library says while the journal is opened and the rows checked.
fn say(event: &Event<'_>) {
    match event {
        Event::Resuming {
            journal,
            expires_at,
        } => eprintln!(
            "invitegate: resuming the campaign in {} (codes expire at {})",
            journal.display(),
            campaign::expiry_text(*expires_at)
        ),
        Event::ExpiryKept { asked_in } => eprintln!(
            "invitegate: note: --expires-in {asked_in} is not applied: a resumed campaign keeps \
             its codes' expiry (another expiry needs a new campaign: another --journal)"
        ),
        Event::Invalid { line, reason } => eprintln!("invitegate: line {line}: {reason}"),
        Event::LeftOut(outcome) => {
            if let Some(why) = outcome.left_out() {
                eprintln!("invitegate: {why}");
            }
        }
        Event::SendingAgain { line, to, code } => eprintln!(
            "invitegate: line {line}: {to} (code fingerprint {code}) was handed over by an \
             earlier run with no reply recorded; sending it again (--skip-uncertain leaves it)"
        ),
        Event::NoLongerInFile { to, line } => eprintln!(
            "invitegate: note: {to} (line {line} when an earlier run sent it a message) is no \
             longer in the recipients file"
        ),
        _ => {}
    }
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
        ("--oauth-client-secret-file", &args.oauth_client_secret_file),
        ("--oauth-client-certificate", &args.oauth_client_certificate),
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
