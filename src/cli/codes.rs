//! `invitegate mint`, `verify` and `inspect`.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{ArgGroup, Args};
use invitegate::policy::check_audience;
use invitegate::{Audience, Code, DenyList, Expiry, Inspection, Kind, Outcome, VerifyOptions};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::output::{self, Named};
use super::{KeySource, Status, keys};

/// The largest leeway accepted: clock skew is seconds, not hours; more would quietly extend
/// every code's life.
pub use invitegate::source::MAX_LEEWAY_SECS;

/// When a code expires: relative to now, or at an instant or the end of a day.
#[derive(Debug, Args)]
pub struct ExpiryArgs {
    /// Valid for this long from now: 30m, 12h, 14d, 2w, ...
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at", value_parser = parse_expires_in)]
    pub expires_in: Option<humantime::Duration>,
    /// Valid until the end of this day (2027-01-01: 23:59:59 UTC, or in --tz), or until this
    /// RFC 3339 instant (2027-01-01T12:00:00Z).
    #[arg(long, value_name = "DATE|RFC3339")]
    pub expires_at: Option<String>,
    /// With a date in --expires-at: the time zone whose end of day is meant, an IANA name
    /// (Europe/Paris) or an offset (+02:00). Default UTC. With send, also the zone of
    /// expires.human and of the date filter in templates.
    #[arg(long, value_name = "ZONE", allow_hyphen_values = true)]
    pub tz: Option<String>,
}

impl ExpiryArgs {
    /// The expiry the flags ask for, if any; refused when not in the future or out of range.
    pub fn resolve(&self, now: OffsetDateTime) -> anyhow::Result<Option<Expiry>> {
        if self.tz.is_some() && self.expires_at.is_none() {
            bail!(
                "--tz applies only to a date in --expires-at (--expires-at 2027-01-01 --tz Europe/Paris)"
            );
        }
        self.resolve_any_zone(now)
    }

    /// As [`ExpiryArgs::resolve`], with `--tz` allowed alone: `send` also writes dates in it.
    pub fn resolve_any_zone(&self, now: OffsetDateTime) -> anyhow::Result<Option<Expiry>> {
        let at = match (&self.expires_in, &self.expires_at) {
            (Some(duration), _) => {
                let duration = time::Duration::try_from(Duration::from(*duration))
                    .context("--expires-in is too long")?;
                now.checked_add(duration)
                    .context("--expires-in is too long")?
            }
            (None, Some(text)) => parse_expires_at(text, self.tz.as_deref())?,
            (None, None) => return Ok(None),
        };
        Ok(Some(Expiry::from_datetime(at)?.after(now)?))
    }
}

/// `--expires-in`: a duration with units from seconds to weeks. A bare number and months or
/// years (whose length varies: humantime takes a month as 30.44 days) are refused with what
/// to write instead.
fn parse_expires_in(text: &str) -> Result<humantime::Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "give a unit: {text}d (days), {text}h, {text}m, {text}w"
        ));
    }
    let units = text
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .filter(|unit| !unit.is_empty());
    for unit in units {
        if unit == "M" || unit == "y" || unit.starts_with("month") || unit.starts_with("year") {
            return Err(format!(
                "months and years vary in length ({unit:?}): give days (365d), or a date with \
                 --expires-at"
            ));
        }
    }
    text.parse::<humantime::Duration>()
        .map_err(|err| format!("{err} (for example 30m, 12h, 14d, 2w)"))
}

/// `--expires-at`: an RFC 3339 instant, or a date meaning the last second of that day in `tz`
/// (UTC when `None`).
pub fn parse_expires_at(text: &str, tz: Option<&str>) -> anyhow::Result<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        if tz.is_some() {
            bail!("--tz applies only to a date in --expires-at; {text} carries its own offset");
        }
        return Ok(at);
    }
    let Ok(date) = text.parse::<jiff::civil::Date>() else {
        bail!(
            "--expires-at takes a date (2027-01-01, meaning the end of that day) or an RFC 3339 \
             date and time (2027-01-01T12:00:00Z)"
        );
    };
    if text.len() != "2027-01-01".len() {
        bail!("--expires-at takes a date as YYYY-MM-DD, such as 2027-01-01");
    }
    let zone = match tz {
        None => jiff::tz::TimeZone::UTC,
        Some(name) => time_zone(name)?,
    };
    let end = date
        .at(23, 59, 59, 0)
        .to_zoned(zone)
        .map_err(|_| anyhow::anyhow!("--expires-at {text}: the end of that day is out of range"))?;
    OffsetDateTime::from_unix_timestamp(end.timestamp().as_second())
        .map_err(|_| anyhow::anyhow!("--expires-at {text}: the end of that day is out of range"))
}

/// A `--tz` value: an IANA time zone name or a fixed offset such as `+02:00`.
pub fn time_zone(name: &str) -> anyhow::Result<jiff::tz::TimeZone> {
    let fixed = name
        .strip_prefix('+')
        .map(|rest| (1i32, rest))
        .or_else(|| name.strip_prefix('-').map(|rest| (-1i32, rest)));
    if let Some((sign, rest)) = fixed {
        let parsed = rest
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<i32>().ok()?, m.parse::<i32>().ok()?)))
            .filter(|&(h, m)| rest.len() == 5 && h <= 14 && m < 60);
        let Some((hours, minutes)) = parsed else {
            bail!("--tz {name}: write an offset as +HH:MM, such as +02:00");
        };
        let seconds = sign * (hours * 3600 + minutes * 60);
        let offset = jiff::tz::Offset::from_seconds(seconds)
            .map_err(|_| anyhow::anyhow!("--tz {name}: the offset is out of range"))?;
        return Ok(jiff::tz::TimeZone::fixed(offset));
    }
    jiff::tz::TimeZone::get(name).map_err(|_| {
        anyhow::anyhow!(
            "--tz {name}: not a known time zone; give an IANA name such as Europe/Paris or an \
             offset such as +02:00"
        )
    })
}

/// Parses an RFC 3339 instant from a flag.
pub fn parse_instant(text: &str, flag: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
        anyhow::anyhow!("{flag} takes an RFC 3339 date and time such as 2026-12-31T00:00:00Z")
    })
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("audience").required(true).args(["email", "domain"])))]
#[command(group(ArgGroup::new("expiry").required(true).args(["expires_in", "expires_at"])))]
pub struct MintArgs {
    #[command(flatten)]
    keys: KeySource,
    /// Mint for this email address.
    #[arg(long, value_name = "ADDRESS")]
    email: Option<String>,
    /// Mint for every address in this domain.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// With --domain: admit its subdomains too.
    #[arg(long)]
    subdomains: bool,
    /// Allow domain codes for public suffixes and free-mail providers (gmail.com, co.uk).
    #[arg(long)]
    allow_public_domain: bool,
    #[command(flatten)]
    expiry: ExpiryArgs,
    /// Print {"code","kind","audience","key_id","expires_at"} instead of the code alone.
    #[arg(long)]
    json: bool,
}

/// `invitegate mint`.
pub fn mint(args: &MintArgs) -> anyhow::Result<Status> {
    let now = OffsetDateTime::now_utc();
    if args.subdomains && args.domain.is_none() {
        bail!("--subdomains applies only to --domain: an email code admits one address");
    }
    let audience = match (&args.email, &args.domain) {
        (Some(email), _) => Audience::email(email)?,
        (None, Some(domain)) if args.subdomains => Audience::domain_and_subdomains(domain)?,
        (None, Some(domain)) => Audience::domain(domain)?,
        (None, None) => bail!("give --email or --domain"),
    };
    check_audience(&audience, args.allow_public_domain)?;
    let Some(expiry) = args.expiry.resolve(now)? else {
        bail!("give --expires-in or --expires-at");
    };
    let inputs: Vec<Named> = args
        .keys
        .file()
        .map(|path| Named::path("--keys-file", &path))
        .transpose()?
        .into_iter()
        .collect();
    output::check_stdout_against(&inputs)?;
    let ring = keys::load(&args.keys)?;
    let code = invitegate::mint(&ring, &audience, expiry);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = json!({
            "code": code.to_string(),
            "kind": audience.kind().name(),
            "audience": audience.value(),
            "key_id": code.key_id(),
            "expires_at": expiry.to_string(),
        });
        writeln!(stdout, "{out}")?;
    } else {
        writeln!(stdout, "{code}")?;
    }
    stdout.flush()?;
    Ok(Status::Success)
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    keys: KeySource,
    /// The email address the person signs up with.
    #[arg(long, value_name = "ADDRESS")]
    email: String,
    /// Verify as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Seconds after expiry during which a code still verifies (clock skew), at most 3600.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    leeway: u64,
    /// Revoked codes, one a line, written in any form `verify` accepts.
    #[arg(long, value_name = "FILE")]
    deny_list: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// The code as typed; `-` reads it from standard input.
    #[arg(value_name = "CODE")]
    code: String,
}

/// `invitegate verify`.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<Status> {
    if args.leeway > MAX_LEEWAY_SECS {
        bail!(
            "--leeway is at most {MAX_LEEWAY_SECS} seconds; a longer one extends every code's life"
        );
    }
    let now = match &args.at {
        Some(text) => parse_instant(text, "--at")?,
        None => OffsetDateTime::now_utc(),
    };
    let deny_list = match &args.deny_list {
        Some(path) => load_deny_list(path)?,
        None => DenyList::new(),
    };
    let mut inputs = Vec::new();
    if let Some(path) = args.keys.file() {
        inputs.push(Named::path("--keys-file", &path)?);
    }
    if let Some(path) = &args.deny_list {
        inputs.push(Named::path("--deny-list", path)?);
    }
    output::check_stdout_against(&inputs)?;
    let text = read_code_argument(&args.code)?;
    let ring = keys::load(&args.keys)?;
    let options = VerifyOptions {
        leeway: Duration::from_secs(args.leeway),
        deny_list,
    };
    let mut stdout = std::io::stdout().lock();
    let code = Code::parse(&text);
    if let Ok(code) = &code
        && !ring.contains(code.key_id())
    {
        // Before the MAC: the verifier cannot check this code at all. The connector answers
        // `not-valid` (the spec's step 4); here an admin needs to tell a rotation mistake
        // from a wrong address.
        let held = ring.key_ids().map(|id| id.to_string()).collect::<Vec<_>>();
        if args.json {
            let out = json!({ "outcome": "unknown-key", "key_id": code.key_id() });
            writeln!(stdout, "{out}")?;
        } else {
            writeln!(
                stdout,
                "unknown-key: the code was signed with key {}, which this key ring does not \
                 hold (it holds {}); add that key, or check the rotation",
                code.key_id(),
                held.join(", ")
            )?;
        }
        stdout.flush()?;
        return Ok(Status::NotVerified);
    }
    let (outcome, detail) = match code {
        Ok(code) => (
            invitegate::verify_code(&ring, &code, &args.email, now, &options),
            None,
        ),
        Err(err) => (Outcome::unreadable(&err), Some(err.to_string())),
    };
    if args.json {
        writeln!(stdout, "{}", outcome_json(&outcome))?;
    } else {
        writeln!(stdout, "{}", outcome_line(&outcome, detail.as_deref(), now))?;
    }
    stdout.flush()?;
    Ok(if outcome.is_valid() {
        Status::Success
    } else {
        Status::NotVerified
    })
}

/// Reads a deny list file; a byte order mark at its start is skipped.
pub fn load_deny_list(path: &std::path::Path) -> anyhow::Result<DenyList> {
    Ok(invitegate::source::read_deny_list(path)?)
}

/// The CODE argument, or standard input for `-`.
fn read_code_argument(code: &str) -> anyhow::Result<String> {
    if code != "-" {
        return Ok(code.to_owned());
    }
    let mut text = String::new();
    // A code is 29 characters; a little room for line breaks, and no more.
    std::io::stdin()
        .take(256)
        .read_to_string(&mut text)
        .context("reading the code from standard input")?;
    Ok(text)
}

/// One human line for an outcome.
fn outcome_line(outcome: &Outcome<'_>, detail: Option<&str>, now: OffsetDateTime) -> String {
    let name = outcome.name();
    match outcome {
        Outcome::Valid(g) => {
            let ago = now.unix_timestamp() - i64::from(g.expiry.unix());
            let leeway = if ago > 0 {
                format!(" (expired {ago} s ago, within the leeway)")
            } else {
                String::new()
            };
            format!(
                "{name}: {} code for {}, key {}, expires {}{leeway}",
                g.kind(),
                g.audience,
                g.key_id,
                g.expiry
            )
        }
        Outcome::Expired(g) => format!(
            "{name}: {} code for {}, key {}, expired {}",
            g.kind(),
            g.audience,
            g.key_id,
            g.expiry
        ),
        Outcome::Revoked(g) => format!(
            "{name}: {} code for {}, key {}, is on the deny list",
            g.kind(),
            g.audience,
            g.key_id
        ),
        Outcome::NotValid => format!("{name}: not a valid code for this email address"),
        Outcome::Mistyped => {
            format!("{name}: the check symbol does not match; check the code for a typo")
        }
        Outcome::Malformed => format!("{name}: {}", detail.unwrap_or("not an invitation code")),
    }
}

/// The JSON form of an outcome, with the spec's outcome names.
fn outcome_json(outcome: &Outcome<'_>) -> serde_json::Value {
    match outcome.grant() {
        Some(g) => json!({
            "outcome": outcome.name(),
            "kind": g.kind().name(),
            "audience": g.audience.value(),
            "key_id": g.key_id,
            "expires_at": g.expiry.to_string(),
        }),
        None => json!({ "outcome": outcome.name() }),
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print the fields as JSON.
    #[arg(long)]
    json: bool,
    /// The code as typed; `-` reads it from standard input.
    #[arg(value_name = "CODE")]
    code: String,
}

const NOT_AUTHENTICATED: &str = "nothing here is authenticated: anyone can write any of these \
    fields; only `invitegate verify` with the key ring says whether the code is valid";

/// `invitegate inspect`.
pub fn inspect(args: &InspectArgs) -> anyhow::Result<Status> {
    let text = read_code_argument(&args.code)?;
    let now = OffsetDateTime::now_utc();
    let mut stdout = std::io::stdout().lock();
    let seen = match Inspection::of(&text) {
        Ok(seen) => seen,
        Err(err) => {
            if args.json {
                let out = json!({ "readable": false, "error": err.to_string() });
                writeln!(stdout, "{out}")?;
            } else {
                writeln!(stdout, "not readable: {err}")?;
            }
            stdout.flush()?;
            return Ok(Status::NotVerified);
        }
    };
    let past = i64::from(seen.expiry.unix()) <= now.unix_timestamp();
    let kind = seen.kind.map(Kind::name);
    let canonical = seen.code.map(|c| c.to_string());
    if args.json {
        let mut out = json!({
            "readable": true,
            "check_symbol_ok": seen.check_symbol_ok,
            "version": seen.version,
            "key_id": seen.key_id,
            "expires_at": seen.expiry.to_string(),
            "expired": past,
            "authenticated": false,
        });
        // Fields that are unknown are left out rather than written as null.
        if let Some(kind) = kind {
            out["kind"] = json!(kind);
        }
        if let Some(canonical) = &canonical {
            out["canonical"] = json!(canonical);
        }
        if let Some(code) = &seen.code {
            out["fingerprint"] = json!(code.fingerprint());
        }
        writeln!(stdout, "{out}")?;
    } else {
        let check = if seen.check_symbol_ok {
            "ok"
        } else {
            "wrong: the code has a typo"
        };
        let version = if seen.version == invitegate::code::VERSION {
            seen.version.to_string()
        } else {
            format!("{} (unknown)", seen.version)
        };
        let when = if past { "in the past" } else { "in the future" };
        writeln!(
            stdout,
            "canonical:    {}",
            canonical.as_deref().unwrap_or("-")
        )?;
        writeln!(
            stdout,
            "fingerprint:  {}",
            seen.code
                .map_or_else(|| "-".to_owned(), |c| c.fingerprint())
        )?;
        writeln!(stdout, "check symbol: {check}")?;
        writeln!(stdout, "version:      {version}")?;
        writeln!(stdout, "kind:         {}", kind.unwrap_or("unknown"))?;
        writeln!(stdout, "key id:       {}", seen.key_id)?;
        writeln!(stdout, "expires:      {} ({when})", seen.expiry)?;
        writeln!(stdout, "warning: {NOT_AUTHENTICATED}")?;
    }
    stdout.flush()?;
    Ok(if seen.code.is_some() {
        Status::Success
    } else {
        Status::NotVerified
    })
}
