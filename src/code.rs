//! The invitation code format: 15 bytes, their Crockford base32 text and the check symbol.
//!
//! Pure: no I/O, no clock, no keys. See `docs/CODE-FORMAT.md` for the normative description.

use std::fmt;

use time::OffsetDateTime;

use crate::Error;

/// Format version written in the high nibble of byte 0.
pub const VERSION: u8 = 1;
/// Length of a code in bytes.
pub const CODE_BYTES: usize = 15;
/// Length of the truncated HMAC-SHA256 tag in bytes.
pub const TAG_BYTES: usize = 9;
/// Length of the authenticated header (version/kind, key id, expiry).
pub const HEADER_BYTES: usize = CODE_BYTES - TAG_BYTES;
/// Data symbols: 120 bits in 5-bit symbols.
const DATA_SYMBOLS: usize = 24;
/// Data symbols plus the check symbol.
/// Data symbols plus the check symbol.
const SYMBOLS: usize = DATA_SYMBOLS + 1;
/// Length of the display form: 25 symbols and four dashes.
pub const DISPLAY_LEN: usize = SYMBOLS + 4;
/// Crockford's base32 alphabet, value order.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Marks a byte that is not a symbol in [`SYMBOL_VALUE`].
const NOT_A_SYMBOL: u8 = 0xFF;
/// Marks a byte that reading skips (white space and `-`).
const SEPARATOR: u8 = 0xFE;

/// Byte to symbol value, with the lenient reading of the spec: any case, `I`/`L` read as 1,
/// `O` as 0, separators skipped. Built at compile time so reading is one table look-up a byte.
static SYMBOL_VALUE: [u8; 256] = {
    let mut table = [NOT_A_SYMBOL; 256];
    let mut value = 0;
    while value < 32 {
        let upper = ALPHABET[value];
        table[upper as usize] = value as u8;
        table[upper.to_ascii_lowercase() as usize] = value as u8;
        value += 1;
    }
    table[b'I' as usize] = 1;
    table[b'i' as usize] = 1;
    table[b'L' as usize] = 1;
    table[b'l' as usize] = 1;
    table[b'O' as usize] = 0;
    table[b'o' as usize] = 0;
    table[b' ' as usize] = SEPARATOR;
    table[b'\t' as usize] = SEPARATOR;
    table[b'\n' as usize] = SEPARATOR;
    table[b'\r' as usize] = SEPARATOR;
    table[b'-' as usize] = SEPARATOR;
    table
};

/// What a code admits: one address, one domain, or a domain and its subdomains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Kind 1: one normalized email address.
    Email,
    /// Kind 2: every address whose domain equals the audience.
    Domain,
    /// Kind 3: every address whose domain equals the audience or ends in `.` + the audience.
    DomainAndSubdomains,
}

impl Kind {
    /// The kind's number in the low nibble of byte 0.
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Email => 1,
            Self::Domain => 2,
            Self::DomainAndSubdomains => 3,
        }
    }

    /// The kind for a low-nibble number, if it is one of 1, 2, 3.
    #[must_use]
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Self::Email),
            2 => Some(Self::Domain),
            3 => Some(Self::DomainAndSubdomains),
            _ => None,
        }
    }

    /// The spec's name: `email`, `domain` or `domain+subdomains`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Domain => "domain",
            Self::DomainAndSubdomains => "domain+subdomains",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The instant after which a code no longer admits anyone: whole seconds since the Unix epoch,
/// as the code's four-byte field holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(u32);

impl Expiry {
    /// The expiry at `seconds` since 1970-01-01T00:00:00Z.
    #[must_use]
    pub const fn from_unix(seconds: u32) -> Self {
        Self(seconds)
    }

    /// The expiry at a date and time, truncated to whole seconds.
    ///
    /// # Errors
    ///
    /// [`Error::ExpiryOutOfRange`] before 1970 or after 2106-02-07T06:28:15Z.
    pub fn from_datetime(at: OffsetDateTime) -> Result<Self, Error> {
        u32::try_from(at.unix_timestamp())
            .map(Self)
            .map_err(|_| Error::ExpiryOutOfRange)
    }

    /// This expiry, if it falls in a later second than `now`: what minting a code at `now`
    /// requires.
    ///
    /// # Errors
    ///
    /// [`Error::ExpiryNotInFuture`] when a code with it would be expired as soon as minted.
    pub fn after(self, now: OffsetDateTime) -> Result<Self, Error> {
        if i64::from(self.0) <= now.unix_timestamp() {
            return Err(Error::ExpiryNotInFuture { expiry: self });
        }
        Ok(self)
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn unix(self) -> u32 {
        self.0
    }

    /// The expiry as a UTC date and time.
    #[must_use]
    pub fn to_datetime(self) -> OffsetDateTime {
        // Every u32 second count is a valid OffsetDateTime (the type reaches year 9999).
        OffsetDateTime::from_unix_timestamp(i64::from(self.0)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Expiry {
    /// RFC 3339 in UTC, e.g. `2030-01-01T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// A parsed invitation code: structurally sound (version 1, kind 1-3, check symbol right), not
/// yet authenticated.
///
/// Only [`Code::parse`] and [`crate::mint`] make one. `Display` gives the canonical form;
/// `Debug` shows the header fields and [`Code::fingerprint`], never the whole code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code {
    bytes: [u8; CODE_BYTES],
}

impl Code {
    /// Reads a code as a person might type it.
    ///
    /// Spaces, tabs, line breaks and `-` are skipped anywhere; case is ignored; `I` and `L`
    /// read as `1`, `O` as `0`.
    ///
    /// # Errors
    ///
    /// In the spec's order: [`Error::MalformedCode`] if a character is outside the alphabet or
    /// the symbols are not exactly 25; [`Error::MistypedCode`] if the check symbol is wrong;
    /// [`Error::MalformedCode`] if the version is not 1 or the kind not 1-3.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::checked(read_symbols(text.as_bytes())?)
    }

    /// A code from bytes whose check symbol was right: version 1 and a known kind, or
    /// [`Error::MalformedCode`] (step 3 of the spec).
    fn checked(bytes: [u8; CODE_BYTES]) -> Result<Self, Error> {
        let code = Self { bytes };
        if code.version() != VERSION {
            return Err(Error::MalformedCode {
                reason: "unknown format version",
            });
        }
        if Kind::from_number(code.bytes[0] & 0x0F).is_none() {
            return Err(Error::MalformedCode {
                reason: "unknown audience kind",
            });
        }
        Ok(code)
    }

    /// Assembles a code from its fields; the caller computed `tag` for exactly this header.
    pub(crate) fn from_parts(header: [u8; HEADER_BYTES], tag: [u8; TAG_BYTES]) -> Self {
        let mut bytes = [0; CODE_BYTES];
        bytes[..HEADER_BYTES].copy_from_slice(&header);
        bytes[HEADER_BYTES..].copy_from_slice(&tag);
        Self { bytes }
    }

    /// The six header bytes for a kind, key id and expiry: exactly what the tag covers
    /// besides the audience.
    #[must_use]
    pub fn header(kind: Kind, key_id: u8, expiry: Expiry) -> [u8; HEADER_BYTES] {
        let [e0, e1, e2, e3] = expiry.unix().to_be_bytes();
        [(VERSION << 4) | kind.number(), key_id, e0, e1, e2, e3]
    }

    fn version(&self) -> u8 {
        self.bytes[0] >> 4
    }

    /// The audience kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        // `parse` and minting only make codes whose low nibble is a valid kind.
        Kind::from_number(self.bytes[0] & 0x0F).unwrap_or(Kind::Email)
    }

    /// The id of the key that signed the code.
    #[must_use]
    pub fn key_id(&self) -> u8 {
        self.bytes[1]
    }

    /// The expiry the code claims (authentic only once the tag verified).
    #[must_use]
    pub fn expiry(&self) -> Expiry {
        let [_, _, e0, e1, e2, e3, ..] = self.bytes;
        Expiry::from_unix(u32::from_be_bytes([e0, e1, e2, e3]))
    }

    /// The header bytes 0..6 that the tag covers.
    #[must_use]
    pub fn header_bytes(&self) -> &[u8; HEADER_BYTES] {
        self.bytes.first_chunk().unwrap_or(&[0; HEADER_BYTES])
    }

    /// The nine tag bytes.
    #[must_use]
    pub fn tag(&self) -> &[u8; TAG_BYTES] {
        self.bytes.last_chunk().unwrap_or(&[0; TAG_BYTES])
    }

    /// All fifteen bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; CODE_BYTES] {
        &self.bytes
    }

    /// A short, non-secret label for logs: the first two groups of the canonical form
    /// (`ABCDE-FGHJK`). They carry the header and two bits of the tag, so a log line can be
    /// matched to a code without the log holding the code.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let mut text = self.to_string();
        text.truncate(11);
        text
    }
}

/// What a code's text says before any key is involved; for `invitegate inspect`.
///
/// Nothing here is authenticated: anyone can write any header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspection {
    /// The format version in the high nibble of byte 0.
    pub version: u8,
    /// The kind, if the low nibble is 1, 2 or 3.
    pub kind: Option<Kind>,
    /// The key id byte.
    pub key_id: u8,
    /// The expiry field.
    pub expiry: Expiry,
    /// Whether the check symbol matches the other 24.
    pub check_symbol_ok: bool,
    /// The parsed code, when the check symbol, version and kind are all right.
    pub code: Option<Code>,
}

impl Inspection {
    /// Reads the header of a code's text whatever its check symbol says.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedCode`] when the text is not 25 symbols of the alphabet.
    pub fn of(text: &str) -> Result<Self, Error> {
        let [data @ .., check] = gather(text.as_bytes())?;
        let bytes = unpack(&data);
        let check_symbol_ok = check == check_symbol(&data);
        let seen = Code { bytes };
        Ok(Self {
            version: seen.version(),
            kind: Kind::from_number(bytes[0] & 0x0F),
            key_id: seen.key_id(),
            expiry: seen.expiry(),
            check_symbol_ok,
            code: check_symbol_ok.then(|| Code::checked(bytes).ok()).flatten(),
        })
    }
}

impl Code {
    /// The canonical form as bytes: 25 upper-case symbols in five groups of five joined by `-`.
    ///
    /// Written without allocating, for callers that format many codes (batch minting).
    #[must_use]
    pub fn display_bytes(&self) -> [u8; DISPLAY_LEN] {
        // Five bytes are exactly eight symbols: three independent 40-bit groups.
        let mut values = [0u8; DATA_SYMBOLS];
        for (group, out) in self.bytes.chunks_exact(5).zip(values.chunks_exact_mut(8)) {
            let bits = group.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            for (j, value) in out.iter_mut().enumerate() {
                *value = ((bits >> (35 - 5 * j)) & 0x1F) as u8;
            }
        }
        let check = check_symbol(&values);
        let mut out = [b'-'; DISPLAY_LEN];
        let symbols = values.iter().chain(std::iter::once(&check));
        for (&position, &value) in DISPLAY_POSITIONS.iter().zip(symbols) {
            // Positions are below DISPLAY_LEN and values below 32, by construction.
            if let (Some(slot), Some(&symbol)) =
                (out.get_mut(position), ALPHABET.get(usize::from(value)))
            {
                *slot = symbol;
            }
        }
        out
    }
}

/// Where symbol `i` goes in the display form: after `i / 5` dashes.
static DISPLAY_POSITIONS: [usize; SYMBOLS] = {
    let mut positions = [0; SYMBOLS];
    let mut i = 0;
    while i < SYMBOLS {
        positions[i] = i + i / 5;
        i += 1;
    }
    positions
};

impl fmt::Display for Code {
    /// The canonical form: 25 upper-case symbols in five groups of five joined by `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.display_bytes();
        // Every byte is from ALPHABET or `-`, which are ASCII.
        f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("kind", &self.kind())
            .field("key_id", &self.key_id())
            .field("expiry", &self.expiry().unix())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for Code {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

/// Reads exactly 25 symbols, skipping separators, checks the check symbol and returns the 15
/// bytes the first 24 encode.
fn read_symbols(text: &[u8]) -> Result<[u8; CODE_BYTES], Error> {
    let values = gather(text)?;
    let [data @ .., check] = values;
    if check != check_symbol(&data) {
        return Err(Error::MistypedCode);
    }
    Ok(unpack(&data))
}

/// Reads any spelling the spec allows: separators anywhere, exactly 25 symbols.
///
/// Branch-free a byte: every byte is written to the slot `count` (separators too, then
/// overwritten), slot 25 catches everything past the 25th symbol, and strangers are noted and
/// reported after the last byte. Request bodies are bounded before they reach here.
fn gather(text: &[u8]) -> Result<[u8; SYMBOLS], Error> {
    let mut slots = [0u8; SYMBOLS + 1];
    let mut count = 0usize;
    let mut stranger = false;
    for &byte in text {
        let value = SYMBOL_VALUE[usize::from(byte)];
        stranger |= value == NOT_A_SYMBOL;
        // `count.min(SYMBOLS)` is at most 25 and `slots` has 26 entries: never `None`.
        if let Some(slot) = slots.get_mut(count.min(SYMBOLS)) {
            *slot = value;
        }
        count += usize::from(value != SEPARATOR);
    }
    if stranger {
        return Err(Error::MalformedCode {
            reason: "it holds a character outside the code alphabet",
        });
    }
    match count.cmp(&SYMBOLS) {
        std::cmp::Ordering::Less => Err(Error::MalformedCode {
            reason: "it has fewer than 25 symbols",
        }),
        std::cmp::Ordering::Greater => Err(Error::MalformedCode {
            reason: "it has more than 25 symbols",
        }),
        std::cmp::Ordering::Equal => {
            let [values @ .., _] = slots;
            Ok(values)
        }
    }
}

/// Packs 24 five-bit values, most significant first, into 15 bytes.
///
/// Done here rather than through a base32 crate because reading already produced the values
/// (the check symbol needs them) and this keeps the hot path free of allocation. Two 60-bit
/// halves keep the dependency chains short. The tests check it against the `base32` crate.
fn unpack(values: &[u8; DATA_SYMBOLS]) -> [u8; CODE_BYTES] {
    let half = |part: &[u8]| part.iter().fold(0u64, |acc, &v| (acc << 5) | u64::from(v));
    let (high, low) = values.split_at(DATA_SYMBOLS / 2);
    let bits = (u128::from(half(high)) << 60) | u128::from(half(low));
    let wide = bits.to_be_bytes();
    let mut bytes = [0u8; CODE_BYTES];
    bytes.copy_from_slice(&wide[16 - CODE_BYTES..]);
    bytes
}

/// One symbol's contribution to the Luhn mod 32 sum.
const fn luhn_term(value: u8, doubled: bool) -> u32 {
    let p = (value as u32) << (doubled as u32);
    p / 32 + p % 32
}

/// `luhn_term(v, true)` for every symbol value, so the sum is one look-up a symbol.
static DOUBLED: [u8; 32] = {
    let mut table = [0u8; 32];
    let mut value = 0;
    while value < 32 {
        table[value] = luhn_term(value as u8, true) as u8;
        value += 1;
    }
    table
};

/// The check value for a Luhn mod 32 sum.
fn luhn_check(sum: u32) -> u8 {
    ((32 - sum % 32) % 32) as u8
}

/// Luhn mod 32 over the 24 data symbol values, right to left with weights 2, 1, 2, 1, ...
///
/// With exactly 24 values, the doubled positions counted from the right are the odd positions
/// counted from the left; written over a fixed-size array the sum vectorizes.
fn check_symbol(values: &[u8; DATA_SYMBOLS]) -> u8 {
    let mut sum = 0u32;
    for pair in values.chunks_exact(2) {
        if let [plain, doubled] = *pair {
            sum += u32::from(plain) + u32::from(DOUBLED[usize::from(doubled & 0x1F)]);
        }
    }
    luhn_check(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_matches_the_base32_crate() {
        let bytes: [u8; CODE_BYTES] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xA5);
        let text = base32::encode(base32::Alphabet::Crockford, &bytes);
        let mut values = [0u8; DATA_SYMBOLS];
        for (value, symbol) in values.iter_mut().zip(text.bytes()) {
            *value = SYMBOL_VALUE[usize::from(symbol)];
        }
        let check = ALPHABET[usize::from(check_symbol(&values))] as char;
        assert_eq!(read_symbols(format!("{text}{check}").as_bytes()), Ok(bytes));
    }

    #[test]
    fn check_symbol_of_zeros_is_zero() {
        assert_eq!(check_symbol(&[0; DATA_SYMBOLS]), 0);
        // One at the rightmost position has weight 2: sum 2, check 30.
        let mut values = [0; DATA_SYMBOLS];
        values[DATA_SYMBOLS - 1] = 1;
        assert_eq!(check_symbol(&values), 30);
    }
}
