//! The one row minter: a recipients row in, a code or the reason why not out. `batch` runs it
//! on every core; a sender can run it row by row.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::recipients::Columns;
use crate::policy::check_audience;
use crate::{Audience, Code, Expiry, KeyRing, Kind, mint};

/// Settings that apply to every row minted.
#[derive(Debug, Clone)]
pub struct MintOptions {
    /// Expiry for rows whose `expires_at` is empty or absent.
    pub default_expiry: Option<Expiry>,
    /// The current instant: rows expiring at or before it are refused.
    pub now: OffsetDateTime,
    /// Mint domain codes for public suffixes and free-mail providers too.
    pub allow_public_domains: bool,
}

/// A row that got its code.
#[derive(Debug)]
pub struct Minted<'r> {
    /// The code.
    pub code: Code,
    /// Who or what it admits.
    pub audience: Audience<'r>,
    /// When it expires.
    pub expiry: Expiry,
    /// Who it goes to, to tell duplicate rows apart.
    pub recipient: RecipientKey,
}

/// Why a row got no code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowError {
    /// The row is wrong; the reason is a sentence fragment such as
    /// ``invalid email address: it has no `@` ``.
    Rejected(String),
    /// The row is not UTF-8: the whole file is in another encoding, so every row is suspect.
    NotUtf8,
}

/// Who a row's code goes to, as a keyed 128-bit digest: the kind, the normalized audience and,
/// for a domain code, the recipient's address. Two rows with the same key are duplicates.
///
/// A digest rather than the text keeps duplicate detection at 16 bytes a row; with 128 bits,
/// two different recipients colliding is not a practical concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientKey(u128);

impl Hash for RecipientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Only the low half: the key is already a uniform keyed digest.
        state.write_u64(self.0 as u64);
    }
}

/// Mints the code for one recipients row.
#[derive(Debug)]
pub struct RowMinter<'a> {
    ring: &'a KeyRing,
    columns: &'a Columns,
    options: &'a MintOptions,
    keys: [RandomState; 2],
}

impl<'a> RowMinter<'a> {
    /// A minter for rows laid out as `columns`.
    #[must_use]
    pub fn new(ring: &'a KeyRing, columns: &'a Columns, options: &'a MintOptions) -> Self {
        Self {
            ring,
            columns,
            options,
            keys: [RandomState::new(), RandomState::new()],
        }
    }

    /// A minter sharing this one's digest keys, so that recipient keys compare across them.
    #[must_use]
    pub fn sibling(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            ..*self
        }
    }

    /// Mints the code for `record`.
    ///
    /// # Errors
    ///
    /// [`RowError::NotUtf8`] when the row is not UTF-8 text, [`RowError::Rejected`] when its
    /// field count, address, domain, `subdomains` or expiry is wrong, or the domain is public.
    pub fn mint<'r>(&self, record: &'r csv::ByteRecord) -> Result<Minted<'r>, RowError> {
        if std::str::from_utf8(record.as_slice()).is_err() {
            return Err(RowError::NotUtf8);
        }
        if record.len() != self.columns.len {
            // A row with the wrong number of fields is that row's fault, not the file's.
            return Err(rejected(
                "it has a different number of fields than the header",
            ));
        }
        let columns = self.columns;
        let field = |index: Option<usize>| -> &'r str {
            let bytes = index.and_then(|i| record.get(i)).unwrap_or_default();
            // Checked above: the whole row is UTF-8, so each field is.
            std::str::from_utf8(bytes).map_or("", str::trim_ascii)
        };
        let target = field(Some(columns.audience));
        if target.is_empty() {
            let name = if columns.kind == Kind::Email {
                "email"
            } else {
                "domain"
            };
            return Err(RowError::Rejected(format!("the `{name}` field is empty")));
        }
        let kind = match (columns.kind, parse_yes_no(field(columns.subdomains))?) {
            (Kind::Domain, true) => Kind::DomainAndSubdomains,
            (Kind::Email, true) => return Err(rejected("`subdomains` is set on an email row")),
            (kind, _) => kind,
        };
        let audience = Audience::new(kind, target).map_err(rejected)?;
        check_audience(&audience, self.options.allow_public_domains).map_err(rejected)?;
        let expires_at = field(columns.expires_at);
        let expiry = if expires_at.is_empty() {
            self.options.default_expiry.ok_or_else(|| {
                rejected("no expiry: fill `expires_at` or give --expires-in or --expires-at")
            })?
        } else {
            let at = OffsetDateTime::parse(expires_at, &Rfc3339).map_err(|_| {
                rejected(
                    "`expires_at` is not an RFC 3339 date and time such as 2026-12-31T00:00:00Z",
                )
            })?;
            Expiry::from_datetime(at).map_err(rejected)?
        };
        let expiry = expiry.after(self.options.now).map_err(rejected)?;
        let recipient = self.recipient_key(&audience, field(columns.recipient));
        Ok(Minted {
            code: mint(self.ring, &audience, expiry),
            audience,
            expiry,
            recipient,
        })
    }

    fn recipient_key(&self, audience: &Audience<'_>, recipient: &str) -> RecipientKey {
        let [a, b] = self.keys.each_ref().map(|keys| {
            let mut hasher = keys.build_hasher();
            hasher.write_u8(audience.kind().number());
            hasher.write(audience.value().as_bytes());
            hasher.write_u8(0xff);
            for byte in recipient.bytes() {
                hasher.write_u8(byte.to_ascii_lowercase());
            }
            hasher.finish()
        });
        RecipientKey(u128::from(a) << 64 | u128::from(b))
    }
}

fn rejected(reason: impl ToString) -> RowError {
    RowError::Rejected(reason.to_string())
}

/// `subdomains` values: empty, no, false, 0, n mean no; yes, true, 1, y, x mean yes.
fn parse_yes_no(text: &str) -> Result<bool, RowError> {
    const NO: [&str; 5] = ["", "no", "false", "0", "n"];
    const YES: [&str; 5] = ["yes", "true", "1", "y", "x"];
    if NO.iter().any(|no| text.eq_ignore_ascii_case(no)) {
        Ok(false)
    } else if YES.iter().any(|yes| text.eq_ignore_ascii_case(yes)) {
        Ok(true)
    } else {
        Err(rejected("`subdomains` must be yes or no"))
    }
}

/// The recipients seen so far, each with the line it was first seen on.
#[derive(Debug, Default)]
pub struct Duplicates {
    seen: HashMap<RecipientKey, u64, PassThrough>,
}

impl Duplicates {
    /// No recipient seen yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `None` the first time a recipient is seen (it is then remembered with `line`); else
    /// the line where it was first seen.
    pub fn first_seen(&mut self, recipient: RecipientKey, line: u64) -> Option<u64> {
        match self.seen.entry(recipient) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                None
            }
        }
    }
}

/// Hashes a [`RecipientKey`] to itself: it is already a keyed digest.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> Self::Hasher {
        PassThroughHasher(0)
    }
}

#[derive(Debug)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
