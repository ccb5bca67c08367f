//! The library's one error type.
//!
//! Messages are lowercase, say what is wrong and, where the caller can fix it, how. They never
//! carry key material, a password or a whole invitation code.
//!
//! The limits the messages quote are defined here, and the modules that enforce them re-export
//! them, so that this file imports nothing of the crate and every other module may import it.

/// Keys shorter than this are refused: HMAC-SHA256 wants at least its output size of entropy.
pub const MIN_KEY_BYTES: usize = 32;

/// The most octets DNS allows in a name, without the root's trailing dot (RFC 1035 section
/// 2.3.4 allows 255 on the wire: a length octet more per label and the root's zero).
pub const MAX_DOMAIN_OCTETS: usize = 253;

/// The most octets DNS allows in one label (RFC 1035 section 2.3.4): a label's length octet
/// keeps its two high bits for compression pointers.
pub const MAX_LABEL_OCTETS: usize = 63;

/// Everything that can go wrong in the library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not 25 symbols of the code alphabet, or names an unknown version or kind.
    #[error("not an invitation code: {reason}")]
    MalformedCode {
        /// What is wrong with it, without repeating the text.
        reason: &'static str,
    },
    /// The text reads as 25 symbols but the check symbol does not match: a typing mistake.
    #[error("the invitation code has a typo: its check symbol does not match")]
    MistypedCode,
    /// An email address that cannot be normalized.
    #[error("invalid email address: {reason}")]
    InvalidEmail {
        /// What is wrong with it, without repeating the address.
        reason: &'static str,
    },
    /// A domain that cannot be normalized.
    #[error("invalid domain: {reason}")]
    InvalidDomain {
        /// What is wrong with it, without repeating the domain.
        reason: &'static str,
    },
    /// A domain code was asked for a domain with a single label, such as `com`.
    #[error("a domain code needs at least two labels (contoso.com, not {domain})")]
    SingleLabelDomain {
        /// The normalized single-label domain.
        domain: String,
    },
    /// A domain code was asked for a public suffix or a free-mail provider.
    #[error(
        "refusing a domain code for {domain}: {reason}; pass --allow-public-domain if you really mean everyone"
    )]
    PublicDomain {
        /// The normalized domain.
        domain: String,
        /// Why it is public.
        reason: &'static str,
    },
    /// An expiry instant outside what the four-byte field can hold.
    #[error(
        "expiry must lie between 1970-01-01T00:00:00Z and 2106-02-07T06:28:15Z (unix seconds 0 to 4294967295)"
    )]
    ExpiryOutOfRange,
    /// A code would be minted already expired.
    #[error("the expiry {expiry} is not in the future")]
    ExpiryNotInFuture {
        /// The expiry asked for, in RFC 3339 (`2030-01-01T00:00:00Z`).
        expiry: String,
    },
    /// One entry of a key ring text is wrong.
    #[error("entry {entry}: {problem}")]
    KeyRingEntry {
        /// 1-based position of the entry among the non-blank, non-comment entries.
        entry: usize,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// The key ring text holds no entries.
    #[error("the key ring has no keys; make one with `invitegate keygen`")]
    EmptyKeyRing,
    /// A recipients file (of `batch` or `send`) could not be read or used (a bad row is not an
    /// error; it is reported).
    #[error("recipients file: {reason}")]
    Batch {
        /// What went wrong, with the CSV line where known.
        reason: String,
    },
    /// A messages file is not a JSON object of locales to message sets.
    #[error("messages file: {reason}")]
    Messages {
        /// What is wrong with it.
        reason: String,
    },
    /// One line of a deny list is not an invitation code.
    #[error("deny list line {line}: {reason}")]
    DenyListLine {
        /// 1-based line number.
        line: usize,
        /// Why the line is not a code, without repeating it.
        reason: String,
    },
    /// A server setting is wrong.
    #[error("{reason}")]
    Config {
        /// What is wrong, and how to put it right.
        reason: String,
    },
    /// Reading or writing a stream failed. The kind tells a closed pipe from a full disk.
    #[error("{context}: {message}")]
    Io {
        /// What was being done, such as `writing output`.
        context: &'static str,
        /// The operating system's kind of error.
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// A line of a text input is not UTF-8 and no other encoding was given.
    #[error(
        "line {line} is not valid UTF-8; save the file as \"CSV UTF-8\", or pass its encoding \
         (--encoding windows-1252 for a CSV saved by Excel)"
    )]
    NotUtf8 {
        /// 1-based line number.
        line: u64,
    },
    /// A key id that the key ring does not hold.
    #[error("the key ring has no key {key_id}; `invitegate keys list` shows its keys")]
    UnknownKeyId {
        /// The key id asked for.
        key_id: u8,
    },
    /// Retiring the signing key was asked: a ring always keeps one.
    #[error(
        "key {key_id} signs new codes and cannot be retired; promote another key first \
         (`invitegate keys promote KID`)"
    )]
    RetireSigningKey {
        /// The signing key's id.
        key_id: u8,
    },
    /// A domain longer in all than DNS allows once normalized.
    #[error(
        "domain is {}{octets} octets; DNS allows at most {max}",
        if *.exact { "" } else { "at least " },
        max = MAX_DOMAIN_OCTETS
    )]
    DomainTooLong {
        /// Its length in octets after normalization, without the dropped trailing dot.
        octets: usize,
        /// Whether `octets` is the length itself, or only a lower bound found before the
        /// expensive steps of normalization were spent on it.
        exact: bool,
    },
    /// A domain with a label longer than DNS allows once normalized.
    #[error(
        "domain label {label} is {}{octets} octets; DNS allows at most {max} a label",
        if *.exact { "" } else { "at least " },
        max = MAX_LABEL_OCTETS
    )]
    DomainLabelTooLong {
        /// 1-based position of the label, counted from the left.
        label: usize,
        /// Its length in octets after normalization.
        octets: usize,
        /// Whether `octets` is the length itself or only a lower bound.
        exact: bool,
    },
    /// An email template does not compile or render: reported before any email leaves.
    #[error("{template}:{line}:{column}: {reason}")]
    Template {
        /// The template's file, or the flag that gave it (`--subject`).
        template: String,
        /// 1-based line in the template.
        line: usize,
        /// 1-based column in the template (in characters).
        column: usize,
        /// What is wrong, as the template engine says it.
        reason: String,
    },
    /// A send journal cannot be read, or disagrees with the recipients file.
    #[error("journal {path}: {reason}")]
    Journal {
        /// The journal file.
        path: String,
        /// What is wrong, and how to put it right.
        reason: String,
    },
    /// The SMTP server is unreachable, refuses the settings, or went away during a run.
    #[error("smtp: {reason}")]
    Smtp {
        /// What the server or the connection said; never a password.
        reason: String,
    },
}

impl Error {
    /// An I/O error, keeping its kind.
    pub(crate) fn io(context: &'static str, err: &std::io::Error) -> Self {
        Self::Io {
            context,
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// Why one key ring entry was refused. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// No `:` between key id and key.
    #[error("expected KID:BASE64, e.g. 7:<44 base64 characters>")]
    MissingColon,
    /// The key id is not a decimal number from 0 to 255.
    #[error("the key id is not a whole number from 0 to 255")]
    BadKeyId,
    /// The key is not standard base64.
    #[error("key {key_id} is not valid standard base64")]
    BadBase64 {
        /// The entry's key id.
        key_id: u8,
    },
    /// The key is shorter than 32 bytes.
    #[error("key {key_id} is {len} bytes; keys need at least {min}", min = MIN_KEY_BYTES)]
    TooShort {
        /// The entry's key id.
        key_id: u8,
        /// How many bytes the key has.
        len: usize,
    },
    /// The key id was used by an earlier entry.
    #[error("key id {key_id} appears twice (first in entry {first_entry})")]
    DuplicateKeyId {
        /// The repeated key id.
        key_id: u8,
        /// The entry where it first appeared.
        first_entry: usize,
    },
}
