//! Loading the key ring from a file or the environment, and `invitegate keygen`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use invitegate::KeyRing;
use invitegate::keys::format_entry;
use zeroize::Zeroizing;

use super::{KeySource, Status};

/// Environment variable holding the key ring text (entries separated by commas or newlines).
pub const KEYS_ENV: &str = "INVITEGATE_KEYS";
/// Environment variable holding the path of a key ring file.
pub const KEYS_FILE_ENV: &str = "INVITEGATE_KEYS_FILE";
/// Bytes of a generated key: the HMAC-SHA256 output size.
const GENERATED_KEY_BYTES: usize = 32;

const HOW_TO_MAKE_ONE: &str =
    "make one with `invitegate keygen --add-to keys.txt` and pass `--keys-file keys.txt`";

/// Loads the ring: `--keys-file`, else `INVITEGATE_KEYS_FILE`, else `INVITEGATE_KEYS`.
pub fn load(source: &KeySource) -> anyhow::Result<KeyRing> {
    if let Some(path) = &source.keys_file {
        return read_file(path);
    }
    let file = std::env::var_os(KEYS_FILE_ENV).filter(|v| !v.is_empty());
    let text = std::env::var(KEYS_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    match (file, text) {
        (Some(_), Some(_)) => bail!("both {KEYS_FILE_ENV} and {KEYS_ENV} are set; set only one"),
        (Some(path), None) => read_file(Path::new(&path)).context(KEYS_FILE_ENV),
        (None, Some(text)) => {
            let text = Zeroizing::new(text);
            KeyRing::parse(&text).with_context(|| format!("parsing {KEYS_ENV}"))
        }
        (None, None) => bail!(
            "no key ring: give --keys-file PATH or set {KEYS_FILE_ENV} or {KEYS_ENV}; {HOW_TO_MAKE_ONE}"
        ),
    }
}

/// Reads and parses a key ring file, never echoing its content.
pub fn read_file(path: &Path) -> anyhow::Result<KeyRing> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(err) if looks_like_a_key(path) => {
            // The "path" is probably a key pasted in place of a path: do not print it.
            bail!(
                "the keys file path looks like a key entry, not a path ({}); keys never go on \
                 the command line: put them in a file or in {KEYS_ENV}",
                err.kind()
            )
        }
        Err(err) => {
            return Err(err).with_context(|| format!("reading keys file {}", path.display()));
        }
    };
    let ring =
        KeyRing::parse(&text).with_context(|| format!("reading keys file {}", path.display()))?;
    warn_if_readable_by_others(path);
    Ok(ring)
}

/// Whether a would-be path has the shape `KID:BASE64` of a key entry.
fn looks_like_a_key(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && key.len() >= 40
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).map(|meta| meta.permissions().mode());
    if mode.is_ok_and(|mode| mode & 0o077 != 0) {
        eprintln!(
            "invitegate: warning: keys file {} is readable by other users; chmod 600 it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key id, 0-255. Default: 1, or with --add-to the next id the file does not use.
    #[arg(long, value_name = "N")]
    id: Option<u8>,
    /// Put the new entry first in this keys file (created with mode 0600), so it signs while
    /// the older keys still verify. Prints no key.
    #[arg(long, value_name = "FILE")]
    add_to: Option<PathBuf>,
}

/// `invitegate keygen`.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<Status> {
    let mut key = Zeroizing::new([0u8; GENERATED_KEY_BYTES]);
    getrandom::fill(key.as_mut_slice())
        .map_err(|err| anyhow::anyhow!("the operating system's random source failed: {err}"))?;
    let Some(path) = &args.add_to else {
        let entry = format_entry(args.id.unwrap_or(1), key.as_slice());
        println!("{}", entry.as_str());
        return Ok(Status::Success);
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(Zeroizing::new(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("reading keys file {}", path.display()));
        }
    };
    let ring = existing
        .as_ref()
        .map(|text| KeyRing::parse(text))
        .transpose()
        .with_context(|| format!("reading keys file {}", path.display()))?;
    let used: Vec<u8> = ring.iter().flat_map(KeyRing::key_ids).collect();
    let id = match args.id {
        Some(id) if used.contains(&id) => bail!(
            "key id {id} is already in {}; pick another with --id",
            path.display()
        ),
        Some(id) => id,
        None => next_free_id(&used)
            .with_context(|| format!("{} already uses all 256 key ids", path.display()))?,
    };
    let entry = format_entry(id, key.as_slice());
    let mut text = Zeroizing::new(format!("{}\n", entry.as_str()));
    if let Some(old) = &existing {
        text.push_str(old);
    }
    write_private(path, text.as_bytes(), existing.is_some())
        .with_context(|| format!("writing keys file {}", path.display()))?;
    let others = used
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if others.is_empty() {
        println!("created {} with key {id}", path.display());
    } else {
        println!(
            "added key {id} to {}: it signs new codes; keys {others} still verify",
            path.display()
        );
    }
    Ok(Status::Success)
}

/// The id after the largest used one, wrapping, that is not used yet.
fn next_free_id(used: &[u8]) -> Option<u8> {
    let start = used.iter().max().map_or(1, |max| max.wrapping_add(1));
    (0..=255u8)
        .map(|step| start.wrapping_add(step))
        .find(|id| !used.contains(id))
}

/// Writes through a temporary file in the same folder and renames it over `path`, so a crash
/// leaves either the old ring or the new one. New files are mode 0600; existing files keep
/// their permissions.
fn write_private(path: &Path, bytes: &[u8], exists: bool) -> anyhow::Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile_in(folder)?;
    temp.1.write_all(bytes)?;
    temp.1.sync_all()?;
    if exists {
        let permissions = std::fs::metadata(path)?.permissions();
        std::fs::set_permissions(&temp.0, permissions)?;
    }
    std::fs::rename(&temp.0, path)?;
    Ok(())
}

/// A new file, mode 0600 on Unix, next to where the ring goes.
fn tempfile_in(folder: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    for attempt in 0..16u32 {
        let candidate = folder.join(format!(
            ".invitegate-keys.{}.{attempt}.tmp",
            std::process::id()
        ));
        match options.open(&candidate) {
            Ok(file) => return Ok((candidate, file)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.into()),
        }
    }
    bail!("could not create a temporary file in {}", folder.display())
}
