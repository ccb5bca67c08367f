//! Flags into the library's settings: the campaign's options, the SMTP server, the OAuth
//! client credentials, and the note on flags a dry run or a test run does not use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use invitegate::send::http::parse_url;
use invitegate::send::oauth::{self, ClientCertificate, ClientSecret, Credential, OAuthSettings};
use invitegate::send::transport::graph;
use invitegate::send::{
    Retry, SendOptions, SmtpPassword, SmtpSettings, TemplateSource, Templates, TlsMode,
};
use lettre::message::Mailbox;
use time::OffsetDateTime;

use super::SendArgs;
use crate::cli::keys;
use crate::cli::output::{Named, check_distinct};

/// The password's environment variable; it has no flag, so it stays out of shell history.
const PASSWORD_ENV: &str = "INVITEGATE_SMTP_PASSWORD";

/// The client secret's environment variable; like the password, it has no flag.
const CLIENT_SECRET_ENV: &str = "INVITEGATE_OAUTH_CLIENT_SECRET";

/// The most connections asked for: providers cap them at a handful, and each costs a TLS
/// handshake and a login.
const MAX_CONCURRENCY: usize = 64;

/// Messages in flight unless --concurrency says otherwise.
pub(super) const DEFAULT_CONCURRENCY: usize = 4;

/// Seconds a message's exchange may take unless --smtp-timeout says otherwise.
pub(super) const DEFAULT_SMTP_TIMEOUT: u64 = 60;

/// The pace over SMTP unless --rate says otherwise.
const DEFAULT_SMTP_RATE: &str = "10/s";

fn read_template(path: &Path) -> anyhow::Result<TemplateSource> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading template {}", path.display()))?;
    Ok(TemplateSource::new(path.display().to_string(), text))
}

/// The settings common to a dry run and a real one.
pub(super) struct Plan {
    pub(super) options: SendOptions,
    pub(super) templates: Templates,
    pub(super) ring: invitegate::KeyRing,
    pub(super) now: OffsetDateTime,
}

pub(super) fn plan(args: &SendArgs) -> anyhow::Result<Plan> {
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
    let mut templates = Templates::new(
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
    if let Some(name) = &args.mint.expiry.tz {
        templates.set_time_zone(super::super::codes::time_zone(name)?);
    }
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
        mint: args.mint.send_mint_options(now)?,
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
pub(super) fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading input {}", path.display()))
}

pub(super) fn smtp_settings(args: &SendArgs) -> anyhow::Result<SmtpSettings> {
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

/// The app's OAuth client credentials, for a token with `scope`.
pub(super) fn oauth_settings(args: &SendArgs, scope: String) -> anyhow::Result<OAuthSettings> {
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
pub(super) fn note_unused(args: &SendArgs) {
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

/// Refuses a journal or rejects file that is an input (the recipients file, the keys, a
/// template, the password file) or the other: by device and inode, as `batch` does.
pub(super) fn check_files(
    args: &SendArgs,
    journal: Option<&PathBuf>,
    rejects: &Path,
) -> anyhow::Result<()> {
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
    check_distinct(&inputs, &outputs)
}
