//! The key ring: parsing its text form and holding each key's prepared HMAC state.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use crate::code::{TAG_BYTES, hex};
pub use crate::error::MIN_KEY_BYTES;
use crate::error::{Error, KeyProblem};

/// HMAC-SHA256 with its key already absorbed.
pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The fixed prefix of every MAC input: `invitegate-v1` and a zero byte.
pub const MAC_DOMAIN: &[u8] = b"invitegate-v1\0";

/// Standard alphabet; padding may be present or not, as operators paste both.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One key: its id and its prepared HMAC state.
///
/// The raw key bytes are not kept: they are zeroized as soon as the HMAC state is derived, and
/// the state itself (key-equivalent) is zeroized on drop by `hmac`'s `zeroize` feature.
#[derive(Clone)]
struct Key {
    id: u8,
    mac: HmacSha256,
}

/// The secret state of invitegate: keys by id, the first one signing.
///
/// `Debug` lists key ids only.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
    /// Position in `keys` for each key id, so verification finds the key in one step.
    by_id: [Option<u8>; 256],
}

impl KeyRing {
    /// Parses the spec's text form: entries `KID:BASE64` separated by newlines or commas,
    /// blank lines and lines starting with `#` ignored, each id at most once, the first entry
    /// signing.
    ///
    /// # Errors
    ///
    /// [`Error::KeyRingEntry`] naming the first wrong entry and why; [`Error::EmptyKeyRing`]
    /// when no entry remains. Neither carries key material.
    pub fn parse(text: &str) -> Result<Self, Error> {
        // A byte order mark, as some editors write, is not part of the first entry.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut keys = Vec::new();
        let mut by_id = [None; 256];
        let mut first_entry = [0usize; 256];
        let entries = text
            .lines()
            .filter(|line| !line.trim_ascii_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim_ascii)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let problem = |problem| Error::KeyRingEntry {
                entry: number,
                problem,
            };
            let (id, key) = parse_entry(entry).map_err(problem)?;
            let slot = usize::from(id);
            if by_id[slot].is_some() {
                return Err(problem(KeyProblem::DuplicateKeyId {
                    key_id: id,
                    first_entry: first_entry[slot],
                }));
            }
            // A ring holds at most 256 keys (ids are unique bytes), so the index fits a u8.
            by_id[slot] = u8::try_from(keys.len()).ok();
            first_entry[slot] = number;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(Error::EmptyKeyRing);
        }
        Ok(Self { keys, by_id })
    }

    /// A ring of one key made from raw bytes, e.g. fresh from a random source.
    ///
    /// # Errors
    ///
    /// [`Error::KeyRingEntry`] when the key is shorter than [`MIN_KEY_BYTES`].
    pub fn from_key(id: u8, key: &[u8]) -> Result<Self, Error> {
        let key = prepare(id, key).map_err(|problem| Error::KeyRingEntry { entry: 1, problem })?;
        let mut by_id = [None; 256];
        by_id[usize::from(id)] = Some(0);
        Ok(Self {
            keys: vec![key],
            by_id,
        })
    }

    /// The id of the signing key (the first entry).
    #[must_use]
    pub fn signing_key_id(&self) -> u8 {
        self.keys.first().map_or(0, |k| k.id)
    }

    /// Every key id, signing key first.
    pub fn key_ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    /// Whether the ring holds a key with this id.
    #[must_use]
    pub fn contains(&self, id: u8) -> bool {
        self.by_id[usize::from(id)].is_some()
    }

    /// The prepared HMAC state of the signing key.
    pub(crate) fn signing_mac(&self) -> (u8, &HmacSha256) {
        // `parse` and `from_key` refuse an empty ring, so there is always a first key; the
        // fallback arm is unreachable but keeps this free of a panic path.
        match self.keys.first() {
            Some(key) => (key.id, &key.mac),
            None => unreachable_ring(),
        }
    }

    /// The prepared HMAC state of key `id`, if the ring holds it.
    pub(crate) fn mac(&self, id: u8) -> Option<&HmacSha256> {
        let index = self.by_id[usize::from(id)]?;
        self.keys.get(usize::from(index)).map(|k| &k.mac)
    }
}

#[cold]
fn unreachable_ring() -> ! {
    unreachable!("a KeyRing always holds at least one key")
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_key_id", &self.signing_key_id())
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Parses one `KID:BASE64` entry.
fn parse_entry(entry: &str) -> Result<(u8, Key), KeyProblem> {
    let (id, key) = entry.split_once(':').ok_or(KeyProblem::MissingColon)?;
    let id = id.trim_ascii();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyProblem::BadKeyId);
    }
    let id: u8 = id.parse().map_err(|_| KeyProblem::BadKeyId)?;
    let bytes = Zeroizing::new(
        BASE64
            .decode(key.trim_ascii())
            .map_err(|_| KeyProblem::BadBase64 { key_id: id })?,
    );
    Ok((id, prepare(id, &bytes)?))
}

/// Checks the key length and absorbs the key into an HMAC state.
fn prepare(id: u8, bytes: &[u8]) -> Result<Key, KeyProblem> {
    if bytes.len() < MIN_KEY_BYTES {
        return Err(KeyProblem::TooShort {
            key_id: id,
            len: bytes.len(),
        });
    }
    // HMAC accepts keys of any length; the length was checked above.
    let mac = HmacSha256::new_from_slice(bytes).map_err(|_| KeyProblem::TooShort {
        key_id: id,
        len: bytes.len(),
    })?;
    Ok(Key { id, mac })
}

/// Encodes key bytes for a ring entry: `ID:BASE64` with padding.
#[must_use]
pub fn format_entry(id: u8, key: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(format!("{id}:{}", BASE64.encode(key)))
}

/// Runs the HMAC for one header and audience, returning the first nine bytes.
pub(crate) fn tag(mac: &HmacSha256, header: &[u8], audience: &str) -> [u8; TAG_BYTES] {
    let mut mac = mac.clone();
    mac.update(MAC_DOMAIN);
    mac.update(header);
    mac.update(audience.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&full[..TAG_BYTES]);
    tag
}

/// The message whose MAC is a key's fingerprint. It cannot be the start of a code's MAC input,
/// which begins with [`MAC_DOMAIN`].
const FINGERPRINT_MESSAGE: &[u8] = b"invitegate key fingerprint v1";

impl KeyRing {
    /// A short public name for key `id`, the same wherever the key is: the first eight bytes
    /// of the key's HMAC over a fixed message, in hex groups (`3f2a91c0-77de0b12`). It tells
    /// whether two servers hold the same key without showing the key.
    #[must_use]
    pub fn fingerprint(&self, id: u8) -> Option<String> {
        let mut mac = self.mac(id)?.clone();
        mac.update(FINGERPRINT_MESSAGE);
        let full = mac.finalize().into_bytes();
        let hex = hex(full.get(..8).unwrap_or_default());
        let (left, right) = hex.split_at(8);
        Some(format!("{left}-{right}"))
    }
}

/// The role of a key in a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The first entry: it signs new codes (and verifies).
    Signing,
    /// Any other entry: it only verifies.
    VerifyOnly,
}

impl Role {
    /// `signing` or `verify-only`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Signing => "signing",
            Self::VerifyOnly => "verify-only",
        }
    }
}

/// One line of a ring file: kept as it was (a comment or a blank line), or its entries.
enum RingLine {
    Verbatim(String),
    Entries(Vec<(u8, Zeroizing<String>)>),
}

/// The text of a key ring file, edited entry by entry for rotation; comments and blank lines
/// are kept. The spec's rule does the rest: the first entry signs, every entry verifies. So a
/// staged key is appended, promoting moves an entry first, retiring removes one.
///
/// `Debug` shows key ids only.
pub struct RingText {
    lines: Vec<RingLine>,
}

impl fmt::Debug for RingText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingText")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl RingText {
    /// Reads a ring file's text; it must be a valid ring.
    ///
    /// # Errors
    ///
    /// As [`KeyRing::parse`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        KeyRing::parse(text)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for line in text.lines() {
            let entries: Vec<&str> = line
                .split(',')
                .map(str::trim_ascii)
                .filter(|entry| !entry.is_empty())
                .collect();
            if line.trim_ascii_start().starts_with('#') || entries.is_empty() {
                lines.push(RingLine::Verbatim(line.to_owned()));
                continue;
            }
            let mut parsed = Vec::with_capacity(entries.len());
            for entry in entries {
                // Parsed above as a whole, so each entry parses.
                let (id, _) = parse_entry(entry)
                    .map_err(|problem| Error::KeyRingEntry { entry: 0, problem })?;
                parsed.push((id, Zeroizing::new(entry.to_owned())));
            }
            lines.push(RingLine::Entries(parsed));
        }
        Ok(Self { lines })
    }

    /// A ring with no entries yet, for a new file.
    #[must_use]
    pub fn empty() -> Self {
        Self { lines: Vec::new() }
    }

    /// Every key id, in order: the signing key first.
    #[must_use]
    pub fn key_ids(&self) -> Vec<u8> {
        self.lines
            .iter()
            .flat_map(|line| match line {
                RingLine::Entries(entries) => entries.iter().map(|(id, _)| *id).collect(),
                RingLine::Verbatim(_) => Vec::new(),
            })
            .collect()
    }

    /// Every key id with its role.
    #[must_use]
    pub fn roles(&self) -> Vec<(u8, Role)> {
        self.key_ids()
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    id,
                    if i == 0 {
                        Role::Signing
                    } else {
                        Role::VerifyOnly
                    },
                )
            })
            .collect()
    }

    /// Adds key `id` as the signing key, the old ones still verifying.
    ///
    /// # Errors
    ///
    /// [`Error::KeyRingEntry`] when the id is taken or the key too short.
    pub fn add_signing(&mut self, id: u8, key: &[u8]) -> Result<(), Error> {
        let entry = self.new_entry(id, key)?;
        self.insert_first(id, entry);
        Ok(())
    }

    /// Adds key `id` at the end: it verifies but does not sign until promoted.
    ///
    /// # Errors
    ///
    /// As [`RingText::add_signing`].
    pub fn stage(&mut self, id: u8, key: &[u8]) -> Result<(), Error> {
        let entry = self.new_entry(id, key)?;
        self.lines.push(RingLine::Entries(vec![(id, entry)]));
        Ok(())
    }

    /// Makes key `id` the signing key; the former one keeps verifying.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownKeyId`] when the ring has no key `id`.
    pub fn promote(&mut self, id: u8) -> Result<(), Error> {
        let entry = self.remove(id)?;
        self.insert_first(id, entry);
        Ok(())
    }

    /// Removes key `id`: codes it signed no longer verify.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownKeyId`] when the ring has no key `id`; [`Error::RetireSigningKey`] when
    /// it is the signing key (promote another first; a ring always keeps one).
    pub fn retire(&mut self, id: u8) -> Result<(), Error> {
        if self.key_ids().first() == Some(&id) {
            return Err(Error::RetireSigningKey { key_id: id });
        }
        self.remove(id).map(drop)
    }

    /// The file's new text.
    #[must_use]
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        for line in &self.lines {
            match line {
                RingLine::Verbatim(line) => text.push_str(line),
                RingLine::Entries(entries) => {
                    for (i, (_, entry)) in entries.iter().enumerate() {
                        if i > 0 {
                            text.push_str(", ");
                        }
                        text.push_str(entry);
                    }
                }
            }
            text.push('\n');
        }
        text
    }

    fn new_entry(&self, id: u8, key: &[u8]) -> Result<Zeroizing<String>, Error> {
        if let Some(first_entry) = self.key_ids().iter().position(|&used| used == id) {
            return Err(Error::KeyRingEntry {
                entry: self.key_ids().len() + 1,
                problem: KeyProblem::DuplicateKeyId {
                    key_id: id,
                    first_entry: first_entry + 1,
                },
            });
        }
        prepare(id, key).map_err(|problem| Error::KeyRingEntry {
            entry: self.key_ids().len() + 1,
            problem,
        })?;
        Ok(format_entry(id, key))
    }

    fn insert_first(&mut self, id: u8, entry: Zeroizing<String>) {
        let at = self
            .lines
            .iter()
            .position(|line| matches!(line, RingLine::Entries(_)))
            .unwrap_or(self.lines.len());
        self.lines.insert(at, RingLine::Entries(vec![(id, entry)]));
    }

    fn remove(&mut self, id: u8) -> Result<Zeroizing<String>, Error> {
        for (index, line) in self.lines.iter_mut().enumerate() {
            let RingLine::Entries(entries) = line else {
                continue;
            };
            if let Some(at) = entries.iter().position(|(used, _)| *used == id) {
                let (_, entry) = entries.remove(at);
                if entries.is_empty() {
                    self.lines.remove(index);
                }
                return Ok(entry);
            }
        }
        Err(Error::UnknownKeyId { key_id: id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn errors_name_the_entry_and_never_the_key() {
        let short = "AAECAwQFBgcICQoLDA0ODw=="; // 16 bytes
        let text = format!("7:{KEY_A}\n5:{short}");
        let err = KeyRing::parse(&text).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry 2: key 5 is 16 bytes; keys need at least 32"
        );
        assert!(!err.to_string().contains(short));
    }

    #[test]
    fn comments_commas_and_padding() {
        let unpadded = KEY_A.trim_end_matches('=');
        let text = format!("# rotated 2026-11\n\n  9:{unpadded} , 7:{KEY_A}\r\n");
        let ring = KeyRing::parse(&text).unwrap();
        assert_eq!(ring.signing_key_id(), 9);
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), [9, 7]);
        assert!(ring.contains(7) && !ring.contains(8));
        let debug = format!("{ring:?}");
        assert!(!debug.contains("AAEC"), "{debug}");
    }

    #[test]
    fn refusals() {
        let cases = [
            (String::new(), "the key ring has no keys"),
            ("# only a comment".to_owned(), "the key ring has no keys"),
            (KEY_A.to_owned(), "entry 1: expected KID:BASE64"),
            (format!("256:{KEY_A}"), "entry 1: the key id is not"),
            (format!("+7:{KEY_A}"), "entry 1: the key id is not"),
            (
                "7:not base64!".to_owned(),
                "entry 1: key 7 is not valid standard base64",
            ),
            (
                format!("7:{KEY_A},7:{KEY_A}"),
                "entry 2: key id 7 appears twice (first in entry 1)",
            ),
        ];
        for (text, expected) in cases {
            let err = KeyRing::parse(&text).map(|_| ()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn rotation_edits_keep_comments_and_the_first_entry_signs() {
        let key_b = [9u8; 32];
        let text = format!("\u{feff}# production\n7:{KEY_A}\n");
        let mut ring = RingText::parse(&text).unwrap();
        ring.stage(8, &key_b).unwrap();
        assert_eq!(ring.roles(), [(7, Role::Signing), (8, Role::VerifyOnly)]);
        let staged = KeyRing::parse(&ring.to_text()).unwrap();
        assert_eq!(staged.signing_key_id(), 7);
        ring.promote(8).unwrap();
        let text = ring.to_text();
        assert!(text.starts_with("# production\n8:"), "{}", text.as_str());
        assert_eq!(KeyRing::parse(&text).unwrap().signing_key_id(), 8);
        assert_eq!(ring.retire(8), Err(Error::RetireSigningKey { key_id: 8 }));
        assert_eq!(ring.retire(5), Err(Error::UnknownKeyId { key_id: 5 }));
        assert!(ring.stage(8, &key_b).is_err(), "an id once only");
        ring.retire(7).unwrap();
        assert_eq!(ring.key_ids(), [8]);
        assert!(
            !format!("{ring:?}").contains("CQkJ"),
            "no key bytes in Debug"
        );
    }

    #[test]
    fn fingerprints_name_keys_without_showing_them() {
        let one = KeyRing::parse(&format!("7:{KEY_A}")).unwrap();
        let two = KeyRing::parse(&format!("9:{},7:{KEY_A}", BASE64.encode([1u8; 32]))).unwrap();
        let fingerprint = one.fingerprint(7).unwrap();
        assert_eq!(fingerprint.len(), 17);
        assert_eq!(
            two.fingerprint(7).unwrap(),
            fingerprint,
            "the same key anywhere"
        );
        assert_ne!(two.fingerprint(9).unwrap(), fingerprint);
        assert_eq!(one.fingerprint(9), None);
    }
}
