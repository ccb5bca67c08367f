//! Where the verifier's parts come from: the key ring (a file, or text from the environment),
//! the deny list and the messages file. The CLI commands and the server read them through this
//! one module, at start and at every reload, so a file is judged the same way everywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::decision::Verifier;
use crate::messages::Messages;
use crate::{DenyList, KeyRing, VerifyOptions};

/// Environment variable holding the key ring text (entries separated by commas or newlines).
pub const KEYS_ENV: &str = "INVITEGATE_KEYS";
/// Environment variable holding the path of a key ring file.
pub const KEYS_FILE_ENV: &str = "INVITEGATE_KEYS_FILE";
/// Longest leeway allowed: a longer one extends every code's life.
pub const MAX_LEEWAY_SECS: u64 = 3600;

const HOW_TO_MAKE_ONE: &str =
    "make one with `invitegate keygen --add-to keys.txt` and pass `--keys-file keys.txt`";

/// Why a part of the verifier could not be read: the setting to fix and what is wrong. The
/// message never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// The flag or variable the operator changes to fix it (`--keys-file`, `--deny-list`, ...).
    pub setting: &'static str,
    /// What is wrong, with the file it concerns.
    pub message: String,
}

impl SourceError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting,
            message: message.into(),
        }
    }
}

/// Where the key ring comes from.
#[derive(Clone)]
pub enum RingSource {
    /// A key ring file, named by the setting given (`--keys-file` or `INVITEGATE_KEYS_FILE`).
    File(PathBuf, &'static str),
    /// Key ring text taken from `INVITEGATE_KEYS`.
    Text(Zeroizing<String>),
}

impl std::fmt::Debug for RingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path, setting) => f.debug_tuple("File").field(path).field(setting).finish(),
            Self::Text(_) => f.write_str("Text(..)"),
        }
    }
}

/// The ring source chosen from a `--keys-file` flag and the environment, and a warning when
/// the choice was ambiguous.
#[derive(Debug, Clone)]
pub struct RingChoice {
    /// The source to read.
    pub source: RingSource,
    /// Set when both `INVITEGATE_KEYS_FILE` and `INVITEGATE_KEYS` are set.
    pub warning: Option<String>,
}

impl RingSource {
    /// `--keys-file` if given, else `INVITEGATE_KEYS_FILE`, else `INVITEGATE_KEYS`.
    ///
    /// # Errors
    ///
    /// [`SourceError`] when none is set.
    pub fn choose(keys_file: Option<&Path>) -> Result<RingChoice, SourceError> {
        if let Some(path) = keys_file {
            return Ok(RingChoice {
                source: Self::File(path.to_owned(), "--keys-file"),
                warning: None,
            });
        }
        let file = std::env::var_os(KEYS_FILE_ENV).filter(|v| !v.is_empty());
        let text = std::env::var(KEYS_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(Zeroizing::new);
        match (file, text) {
            (Some(path), text) => Ok(RingChoice {
                warning: text.map(|_| {
                    format!(
                        "both {KEYS_FILE_ENV} and {KEYS_ENV} are set; using {KEYS_FILE_ENV} ({}), \
                         as documented; unset one",
                        Path::new(&path).display()
                    )
                }),
                source: Self::File(PathBuf::from(path), KEYS_FILE_ENV),
            }),
            (None, Some(text)) => Ok(RingChoice {
                source: Self::Text(text),
                warning: None,
            }),
            (None, None) => Err(SourceError::new(
                KEYS_FILE_ENV,
                format!(
                    "no key ring: give --keys-file PATH or set {KEYS_FILE_ENV} or {KEYS_ENV}; \
                     {HOW_TO_MAKE_ONE}"
                ),
            )),
        }
    }

    /// The file read, if the ring comes from one.
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path, _) => Some(path),
            Self::Text(_) => None,
        }
    }

    /// Reads and parses the ring.
    ///
    /// # Errors
    ///
    /// [`SourceError`] naming the file (or variable) and the entry at fault.
    pub fn load(&self) -> Result<KeyRing, SourceError> {
        match self {
            Self::File(path, "--keys-file") => read_ring_file(path),
            Self::File(path, setting) => read_ring_file(path).map_err(|mut e| {
                e.message = format!("{setting}: {}", e.message);
                e.setting = setting;
                e
            }),
            Self::Text(text) => KeyRing::parse(text)
                .map_err(|e| SourceError::new(KEYS_ENV, format!("parsing {KEYS_ENV}: {e}"))),
        }
    }
}

/// Reads and parses a key ring file, never echoing its content.
///
/// # Errors
///
/// [`SourceError`] naming the file and what is wrong.
pub fn read_ring_file(path: &Path) -> Result<KeyRing, SourceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(err) if looks_like_a_key(path) => {
            // The "path" is probably a key pasted in place of a path: do not print it.
            return Err(SourceError::new(
                "--keys-file",
                format!(
                    "the keys file path looks like a key entry, not a path ({}); keys never go \
                     on the command line: put them in a file or in {KEYS_ENV}",
                    err.kind()
                ),
            ));
        }
        Err(err) => {
            return Err(SourceError::new(
                "--keys-file",
                format!("reading keys file {}: {err}", path.display()),
            ));
        }
    };
    KeyRing::parse(&text).map_err(|e| {
        SourceError::new(
            "--keys-file",
            format!("reading keys file {}: {e}", path.display()),
        )
    })
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

/// Whether a key ring or private key file can be read by other users (always `false` off
/// Unix): by everyone, or by a group, except a file that root owns and gives to one of the
/// server's own groups. That is how an administrator lets a service read a secret
/// (`root:invitegate`, mode 0640), and how Kubernetes mounts a Secret for a pod with an
/// `fsGroup`: the kubelet always makes the files readable by that group.
#[must_use]
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path)
            .is_ok_and(|meta| others_may_read(meta.mode(), meta.uid(), meta.gid(), &own_groups()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// [`readable_by_others`] for a file of `mode`, owned by `uid` and `gid`, read by a process in
/// `groups`.
#[cfg(unix)]
fn others_may_read(mode: u32, uid: u32, gid: u32, groups: &[u32]) -> bool {
    if mode & 0o007 != 0 {
        return true;
    }
    mode & 0o070 != 0 && !(uid == 0 && groups.contains(&gid))
}

/// The groups this process is in, effective and supplementary, as Linux's
/// `/proc/self/status` lists them; none where it cannot be read (then any group access
/// counts as others').
#[cfg(unix)]
fn own_groups() -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(ids) = line.strip_prefix("Gid:") {
            // Real, effective, saved and file system group ids: the effective one decides.
            groups.extend(
                ids.split_whitespace()
                    .nth(1)
                    .and_then(|id| id.parse::<u32>().ok()),
            );
        } else if let Some(ids) = line.strip_prefix("Groups:") {
            groups.extend(
                ids.split_whitespace()
                    .filter_map(|id| id.parse::<u32>().ok()),
            );
        }
    }
    groups
}

/// Reads a deny list file; a byte order mark at its start is skipped.
///
/// # Errors
///
/// [`SourceError`] naming the file and the line at fault.
pub fn read_deny_list(path: &Path) -> Result<DenyList, SourceError> {
    let fail = |e: &dyn std::fmt::Display| {
        SourceError::new(
            "--deny-list",
            format!("reading deny list {}: {e}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    DenyList::parse(text).map_err(|e| fail(&e))
}

/// Reads a messages file (JSON, by locale).
///
/// # Errors
///
/// [`SourceError`] naming the file and what is wrong.
pub fn read_messages(path: &Path) -> Result<Messages, SourceError> {
    let fail = |e: &dyn std::fmt::Display| {
        SourceError::new(
            "--messages",
            format!("reading messages file {}: {e}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
    Messages::from_json(&text).map_err(|e| fail(&e))
}

/// Everything a [`Verifier`] is read from: at start, and again at each reload.
#[derive(Debug, Clone)]
pub struct VerifierSource {
    /// The key ring.
    pub ring: RingSource,
    /// Revoked codes, if any.
    pub deny_list: Option<PathBuf>,
    /// Messages by locale, over the built-in English.
    pub messages: Option<PathBuf>,
    /// Time after expiry during which a code still verifies.
    pub leeway: Duration,
}

impl VerifierSource {
    /// Reads every part and prepares a verifier.
    ///
    /// # Errors
    ///
    /// The first [`SourceError`] met; [`VerifierSource::load_all`] gives every one.
    pub fn load(&self) -> Result<Verifier, SourceError> {
        self.load_all().map_err(|problems| {
            problems.into_iter().next().unwrap_or_else(|| {
                SourceError::new("--keys-file", "the verifier could not be read")
            })
        })
    }

    /// Reads every part, and reports every part that fails, not only the first.
    ///
    /// # Errors
    ///
    /// One [`SourceError`] per part that cannot be read (never an empty list).
    pub fn load_all(&self) -> Result<Verifier, Vec<SourceError>> {
        let mut problems = Vec::new();
        if self.leeway > Duration::from_secs(MAX_LEEWAY_SECS) {
            problems.push(SourceError::new(
                "--leeway",
                format!(
                    "--leeway is at most {MAX_LEEWAY_SECS} seconds; a longer one extends every \
                     code's life"
                ),
            ));
        }
        let ring = self.ring.load().map_err(|e| problems.push(e)).ok();
        let deny_list = match &self.deny_list {
            Some(path) => read_deny_list(path).map_err(|e| problems.push(e)).ok(),
            None => Some(DenyList::new()),
        };
        let messages = match &self.messages {
            Some(path) => read_messages(path).map_err(|e| problems.push(e)).ok(),
            None => Some(Messages::english()),
        };
        match (ring, deny_list, messages) {
            (Some(ring), Some(deny_list), Some(messages)) if problems.is_empty() => Ok(Verifier {
                ring,
                options: VerifyOptions {
                    leeway: self.leeway,
                    deny_list,
                },
                messages,
            }),
            _ => Err(problems),
        }
    }

    /// The files whose change calls for a reload.
    #[must_use]
    pub fn files(&self) -> Vec<PathBuf> {
        [
            self.ring.file(),
            self.deny_list.as_deref(),
            self.messages.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(Path::to_path_buf)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn group_access_is_others_unless_root_gives_the_file_to_our_group() {
        let ours = [1000, 65532];
        // Only the owner, or everyone.
        assert!(!others_may_read(0o100600, 1000, 1000, &ours));
        assert!(others_may_read(0o100604, 1000, 1000, &ours));
        assert!(others_may_read(0o100644, 0, 65532, &ours));
        // A Kubernetes Secret with fsGroup: root's, given to the pod's group.
        assert!(!others_may_read(0o100440, 0, 65532, &ours));
        assert!(!others_may_read(0o100640, 0, 1000, &ours));
        // A group the server is not in, or a file a user gave to their group.
        assert!(others_may_read(0o100640, 0, 100, &ours));
        assert!(others_may_read(0o100640, 1000, 1000, &ours));
        // Not knowing our groups, any group access counts.
        assert!(others_may_read(0o100440, 0, 65532, &[]));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_groups_include_the_effective_one() {
        use std::os::unix::fs::MetadataExt as _;
        // A new file takes the creating process's effective group.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap_or_else(|e| panic!("{e}"));
        let gid = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .gid();
        assert!(own_groups().contains(&gid), "{gid} in {:?}", own_groups());
    }
}
