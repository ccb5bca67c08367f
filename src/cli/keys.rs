//! The key ring from a file or the environment; `invitegate keygen`; `invitegate keys` (list,
//! promote, retire) for rotation.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use invitegate::KeyRing;
use invitegate::fsutil::{FileId, Privacy};
use invitegate::keys::{RingText, format_entry};
use serde_json::json;
use zeroize::Zeroizing;

use super::output::{self, Sink};
use super::{KeySource, Status};

use invitegate::source::RingSource;
pub use invitegate::source::{KEYS_ENV, KEYS_FILE_ENV};
/// Bytes of a generated key: the HMAC-SHA256 output size.
const GENERATED_KEY_BYTES: usize = 32;
/// Attempts to lock a ring file that another process keeps replacing; each replacement is one
/// finished edit, so this bounds waiting behind that many others.
const LOCK_ATTEMPTS: usize = 1000;

impl KeySource {
    /// The key ring file that [`load`] reads, if the ring comes from a file: `--keys-file`,
    /// else `INVITEGATE_KEYS_FILE`. For the same-file checks.
    pub fn file(&self) -> Option<PathBuf> {
        self.keys_file.clone().or_else(|| {
            std::env::var_os(KEYS_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// The library's ring source for these flags and the environment; a warning when both
    /// variables are set is printed here.
    pub fn ring_source(&self) -> anyhow::Result<RingSource> {
        let choice = RingSource::choose(self.keys_file.as_deref())?;
        if let Some(warning) = &choice.warning {
            eprintln!("invitegate: warning: {warning}");
        }
        Ok(choice.source)
    }
}

/// Loads the ring: `--keys-file`, else `INVITEGATE_KEYS_FILE`, else `INVITEGATE_KEYS`, with a
/// warning when both variables are set.
pub fn load(source: &KeySource) -> anyhow::Result<KeyRing> {
    let ring_source = source.ring_source()?;
    let ring = ring_source.load()?;
    if let Some(path) = ring_source.file() {
        warn_if_readable_by_others(path);
    }
    Ok(ring)
}

fn warn_if_readable_by_others(path: &Path) {
    if invitegate::source::readable_by_others(path) {
        eprintln!(
            "invitegate: warning: keys file {} is readable by other users; chmod 600 it",
            path.display()
        );
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key id, 0-255. Default: 1, or with --add-to the next id the file does not use.
    #[arg(long, value_name = "N")]
    id: Option<u8>,
    /// Put the new entry first in this keys file (created with mode 0600), so it signs at once
    /// while the older keys still verify. Prints no key. The file is locked while it is
    /// rewritten; a symbolic link is followed and its target replaced.
    #[arg(long, value_name = "FILE")]
    add_to: Option<PathBuf>,
    /// With --add-to: append the key as verify-only, to promote later with
    /// `invitegate keys promote ID` once every server holds it.
    #[arg(long)]
    stage: bool,
}

/// `invitegate keygen`.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<Status> {
    let mut key = Zeroizing::new([0u8; GENERATED_KEY_BYTES]);
    getrandom::fill(key.as_mut_slice())
        .map_err(|err| anyhow::anyhow!("the operating system's random source failed: {err}"))?;
    let Some(path) = &args.add_to else {
        if args.stage {
            bail!("--stage applies only with --add-to FILE: it appends to a key ring file");
        }
        let entry = format_entry(args.id.unwrap_or(1), key.as_slice());
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", entry.as_str())?;
        stdout.flush()?;
        return Ok(Status::Success);
    };
    let (id, others, target) = edit_ring(path, |ring| {
        let used = ring.key_ids();
        let id = match args.id {
            Some(id) if used.contains(&id) => bail!(
                "key id {id} is already in {}; pick another with --id",
                path.display()
            ),
            Some(id) => id,
            None => next_free_id(&used)
                .with_context(|| format!("{} already uses all 256 key ids", path.display()))?,
        };
        if args.stage {
            ring.stage(id, key.as_slice())?;
        } else {
            ring.add_signing(id, key.as_slice())?;
        }
        Ok((id, used))
    })
    .map(|((id, used), target)| (id, used, target))?;
    let still = match others.as_slice() {
        [one] => format!("key {one} still verifies"),
        _ => format!(
            "keys {} still verify",
            others
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let shown = target.display();
    let message = if others.is_empty() {
        format!("created {shown} with key {id}")
    } else if args.stage {
        format!(
            "staged key {id} in {shown}: it verifies but does not sign; once every server \
             holds it, `invitegate keys promote {id}`"
        )
    } else {
        format!(
            "added key {id} to {shown}: it signs new codes now (servers without it refuse \
             them; --stage avoids that); {still}"
        )
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{message}")?;
    stdout.flush()?;
    Ok(Status::Success)
}

/// The id after the largest used one, wrapping, that is not used yet.
fn next_free_id(used: &[u8]) -> Option<u8> {
    let start = used.iter().max().map_or(1, |max| max.wrapping_add(1));
    (0..=255u8)
        .map(|step| start.wrapping_add(step))
        .find(|id| !used.contains(id))
}

/// Edits the ring file at `path` under an exclusive lock: reads it (a missing or empty file is
/// an empty ring), applies `edit`, and replaces it atomically. A symbolic link is followed and
/// its target replaced. Returns what `edit` returned and the file written.
fn edit_ring<T>(
    path: &Path,
    edit: impl FnOnce(&mut RingText) -> anyhow::Result<T>,
) -> anyhow::Result<(T, PathBuf)> {
    let target = ring_target(path)?;
    let shown = || format!("keys file {}", target.display());
    output::remove_unfinished_files_on_interrupt();
    let (file, text) = lock_ring(&target).with_context(shown)?;
    let blank = text.trim_start_matches('\u{feff}').trim().is_empty();
    let mut ring = if blank {
        RingText::empty()
    } else {
        RingText::parse(&text).with_context(|| format!("reading {}", shown()))?
    };
    let result = edit(&mut ring)?;
    let mut sink = Sink::create("keys file", &target, Privacy::Private)?;
    sink.write_all(ring.to_text().as_bytes())
        .with_context(|| format!("writing {}", shown()))?;
    keep_permissions(&file, &sink, blank);
    sink.commit()?;
    // The lock is released only once the new ring is in place.
    drop(file);
    Ok((result, target))
}

/// Where a ring edit writes: the path, or the target of a symbolic link.
fn ring_target(path: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => path.canonicalize().with_context(|| {
            format!(
                "keys file {} is a symbolic link to a file that does not exist",
                path.display()
            )
        }),
        _ => Ok(path.to_owned()),
    }
}

/// Opens (creating it, mode 0600, if missing) and locks the ring file, and reads it. Retries
/// when another process replaced the file while this one waited for the lock: the lock is on
/// the file that was there, and the new one must be read.
fn lock_ring(target: &Path) -> anyhow::Result<(std::fs::File, Zeroizing<String>)> {
    use fs4::fs_std::FileExt as _;
    for _ in 0..LOCK_ATTEMPTS {
        let mut file = invitegate::fsutil::private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .context("opening")?;
        file.lock_exclusive().context("locking")?;
        let locked = FileId::of_file(&file).context("examining")?;
        if FileId::of_path(target).ok() != Some(locked) {
            continue;
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).context("reading")?;
        return Ok((file, text));
    }
    bail!("the file keeps changing while waiting for its lock; try again")
}

/// The new ring keeps the old file's permissions (0600 for a new file).
fn keep_permissions(old: &std::fs::File, sink: &Sink, new_file: bool) {
    let (Ok(meta), Some(temp)) = (old.metadata(), sink.temp_path()) else {
        return;
    };
    if !new_file {
        let _ = std::fs::set_permissions(temp, meta.permissions());
    }
}

/// `invitegate keys`: the ring's keys and their roles, and rotation.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Show each key's id, role (signing or verify-only) and fingerprint; never key bytes.
    List {
        #[command(flatten)]
        keys: KeySource,
        /// Print a JSON array of {"key_id","role","fingerprint"}.
        #[arg(long)]
        json: bool,
    },
    /// Make a key the signing key (first entry); the former one keeps verifying.
    Promote {
        #[command(flatten)]
        keys: KeySource,
        /// The key id to promote.
        #[arg(value_name = "KID")]
        id: u8,
    },
    /// Remove a key: codes it signed stop verifying. The signing key cannot be retired.
    Retire {
        #[command(flatten)]
        keys: KeySource,
        /// The key id to remove.
        #[arg(value_name = "KID")]
        id: u8,
    },
}

/// `invitegate keys ...`.
pub fn keys(args: &KeysArgs) -> anyhow::Result<Status> {
    match &args.command {
        KeysCommand::List { keys, json } => list(keys, *json),
        KeysCommand::Promote { keys, id } => {
            let path = ring_file(keys, "promote")?;
            let (former, target) = edit_ring(&path, |ring| {
                let former = ring.key_ids().first().copied();
                ring.promote(*id)?;
                Ok(former)
            })?;
            let rest = match former {
                Some(former) if former != *id => format!("; key {former} still verifies"),
                _ => " (it already was)".to_owned(),
            };
            say(&format!(
                "key {id} now signs new codes in {}{rest}",
                target.display()
            ))
        }
        KeysCommand::Retire { keys, id } => {
            let path = ring_file(keys, "retire")?;
            let ((), target) = edit_ring(&path, |ring| Ok(ring.retire(*id)?))?;
            say(&format!(
                "retired key {id} from {}: codes it signed no longer verify here",
                target.display()
            ))
        }
    }
}

/// The ring file a rotation edits; the environment's ring text cannot be edited.
fn ring_file(keys: &KeySource, verb: &str) -> anyhow::Result<PathBuf> {
    keys.file().with_context(|| {
        format!(
            "keys {verb} edits a key ring file: give --keys-file PATH or set {KEYS_FILE_ENV} \
             ({KEYS_ENV} lives in the environment: edit it where it is set)"
        )
    })
}

fn say(line: &str) -> anyhow::Result<Status> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(Status::Success)
}

/// `invitegate keys list`.
fn list(keys: &KeySource, as_json: bool) -> anyhow::Result<Status> {
    let ring = load(keys)?;
    let rows: Vec<(u8, &str, String)> = ring
        .key_ids()
        .enumerate()
        .map(|(i, id)| {
            let role = if i == 0 { "signing" } else { "verify-only" };
            (id, role, ring.fingerprint(id).unwrap_or_default())
        })
        .collect();
    let mut stdout = std::io::stdout().lock();
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|(id, role, fingerprint)| {
                json!({ "key_id": id, "role": role, "fingerprint": fingerprint })
            })
            .collect();
        writeln!(stdout, "{}", serde_json::Value::Array(items))?;
    } else {
        writeln!(stdout, "{:<6} {:<12} fingerprint", "key", "role")?;
        for (id, role, fingerprint) in &rows {
            writeln!(stdout, "{id:<6} {role:<12} {fingerprint}")?;
        }
    }
    stdout.flush()?;
    Ok(Status::Success)
}
