//! The invitation code format: 15 bytes, their Crockford base32 text and the check symbol.
//!
//! Pure: no I/O, no clock, no keys. See `docs/CODE-FORMAT.md` for the normative description.

use std::fmt;

use crate::error::Error;
pub use crate::expiry::{Expiry, UnixTime};

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

/// A parsed invitation code: structurally sound (version 1, kind 1-3, check symbol right), not
/// yet authenticated.
///
/// Only [`Code::parse`] and [`crate::verify::mint`] make one. `Display` gives the canonical form;
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
        let read = read_symbols(text.as_bytes())?;
        if !read.check_symbol_ok {
            return Err(Error::MistypedCode);
        }
        Self::checked(read.bytes)
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

    /// A short, non-secret label that tells codes apart in logs and send journals: ten hex
    /// digits (40 bits) of SHA-256 over the code's fifteen bytes. `invitegate inspect` shows
    /// it for a code in hand, so a log line or journal record can be matched to the code
    /// without holding it. It does not narrow the tag usefully: each label is shared by
    /// 2^32 of the 2^72 tags, and only the key tells which is right.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        String::from_utf8_lossy(&self.fingerprint_digits()).into_owned()
    }

    /// [`Code::fingerprint`]'s ten lower-case hex digits, without allocating (for the log line
    /// of every request).
    #[must_use]
    pub fn fingerprint_digits(&self) -> [u8; 10] {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(self.bytes);
        let mut digits = [0u8; 10];
        for (pair, &byte) in digits.chunks_exact_mut(2).zip(hash.iter()) {
            pair.copy_from_slice(&hex_pair(byte));
        }
        digits
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
        let Read {
            bytes,
            check_symbol_ok,
        } = read_symbols(text.as_bytes())?;
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
const DISPLAY_POSITIONS: [usize; SYMBOLS] = {
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

/// What the 25 symbols of a code's text say.
struct Read {
    /// The 15 bytes the first 24 symbols encode.
    bytes: [u8; CODE_BYTES],
    /// Whether the 25th symbol is the check symbol of the first 24.
    check_symbol_ok: bool,
}

/// Reads exactly 25 symbols, skipping separators: the bytes they encode and whether the check
/// symbol is right.
fn read_symbols(text: &[u8]) -> Result<Read, Error> {
    if let Some(read) = read_in_place(text) {
        return Ok(read);
    }
    let values = gather(text)?;
    // `gather` returns symbol values only, so `decode` finds nothing to refuse.
    decode(|i| values[i]).ok_or(STRANGER)
}

/// Text in the display form (five groups of five, one separator between groups), as codes are
/// sent out and pasted back: each symbol is read from where it must be, in one pass with
/// nothing carried from byte to byte but sums. `None` for any other shape and for a stranger,
/// so that [`gather`] reads it the long way and says what is wrong.
fn read_in_place(text: &[u8]) -> Option<Read> {
    let display = <&[u8; DISPLAY_LEN]>::try_from(text).ok()?;
    let split = [5, 11, 17, 23]
        .iter()
        .all(|&gap| SYMBOL_VALUE[usize::from(display[gap])] == SEPARATOR);
    if !split {
        return None;
    }
    decode(|i| SYMBOL_VALUE[usize::from(display[DISPLAY_POSITIONS[i]])])
}

/// Decodes symbol values `value(0)` to `value(24)`: packs the first 24, most significant first,
/// into 15 bytes, and checks the 25th against their Luhn mod 32 sum. `None` as soon as a value
/// is 32 or more (not a symbol's), which only values looked up without checking can be.
///
/// Three independent groups of eight symbols make five bytes each; checking each group as it
/// is read keeps only a few values live at a time. Done here rather than through a base32
/// crate because the check symbol needs the values anyway and this keeps reading free of
/// allocation. The tests check it against the `base32` crate.
#[inline(always)]
fn decode(value: impl Fn(usize) -> u8) -> Option<Read> {
    let mut luhn = Luhn::default();
    let mut bytes = [0u8; CODE_BYTES];
    for (group, out) in bytes.chunks_exact_mut(5).enumerate() {
        let mut bits = 0u64;
        let mut seen = 0u8;
        for i in (group * 8..group * 8 + 8).step_by(2) {
            let (plain, doubled) = (value(i), value(i + 1));
            seen |= plain | doubled;
            luhn.add(plain, doubled);
            bits = (bits << 10) | u64::from(plain) << 5 | u64::from(doubled);
        }
        if seen >= 32 {
            return None;
        }
        let [_, _, _, be @ ..] = bits.to_be_bytes();
        out.copy_from_slice(&be);
    }
    let check = value(DATA_SYMBOLS);
    if check >= 32 {
        return None;
    }
    Some(Read {
        bytes,
        check_symbol_ok: check == luhn.check(),
    })
}

/// The error for text with a character that is neither a symbol nor a separator.
const STRANGER: Error = Error::MalformedCode {
    reason: "it holds a character outside the code alphabet",
};

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
        return Err(STRANGER);
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

/// A running Luhn mod 32 sum over 24 symbol values, taken in (plain, doubled) pairs from the
/// left: right to left the weights are 2, 1, 2, 1, ..., so with an even count the doubled
/// values are those at odd positions from the left.
#[derive(Default)]
struct Luhn {
    plain: u32,
    doubled: u32,
    carries: u32,
}

impl Luhn {
    /// Adds one pair of values below 32.
    #[inline(always)]
    fn add(&mut self, plain: u8, doubled: u8) {
        self.plain += u32::from(plain);
        self.doubled += u32::from(doubled);
        // Doubling `v` gives `2v`, whose base-32 digits sum to `2v - 31` from 16 up: the same
        // as `2v + 1` modulo 32.
        self.carries += u32::from(doubled >> 4);
    }

    /// The check value: what brings the sum to a multiple of 32.
    fn check(&self) -> u8 {
        let sum = self.plain + 2 * self.doubled + self.carries;
        ((32 - sum % 32) % 32) as u8
    }
}

/// The check symbol's value for 24 data symbol values.
fn check_symbol(values: &[u8; DATA_SYMBOLS]) -> u8 {
    let mut luhn = Luhn::default();
    for pair in values.chunks_exact(2) {
        if let [plain, doubled] = *pair {
            luhn.add(plain, doubled);
        }
    }
    luhn.check()
}

/// A byte's two lower-case hex digits.
fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0xF)],
    ]
}

/// Bytes as lower-case hex digits, two a byte: how fingerprints and digests are shown.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        for digit in hex_pair(byte) {
            text.push(char::from(digit));
        }
    }
    text
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
        let in_a_row = format!("{text}{check}");
        let display = Code { bytes }.to_string();
        let scattered = format!(" {}\t{} ", &in_a_row[..3], &in_a_row[3..]).to_lowercase();
        // The display form takes the in-place path, the other two the long way round.
        for spelling in [in_a_row, display, scattered] {
            let read = read_symbols(spelling.as_bytes());
            assert!(
                matches!(read, Ok(Read { bytes: b, check_symbol_ok: true }) if b == bytes),
                "{spelling}"
            );
        }
    }

    #[test]
    fn both_paths_agree_on_every_check_symbol() {
        let display = Code {
            bytes: core::array::from_fn(|i| (i as u8).wrapping_mul(91) ^ 0x3C),
        }
        .to_string();
        for symbol in ALPHABET.iter().map(|&b| b as char) {
            let mut text = display.clone();
            text.replace_range(DISPLAY_LEN - 1.., &symbol.to_string());
            let fast = read_in_place(text.as_bytes()).map(|r| (r.bytes, r.check_symbol_ok));
            let values = gather(text.as_bytes()).expect("25 symbols");
            let slow = decode(|i| values[i]).expect("symbol values");
            assert_eq!(fast, Some((slow.bytes, slow.check_symbol_ok)), "{symbol}");
            assert_eq!(slow.check_symbol_ok, text == display, "{symbol}");
        }
        // A stranger anywhere in the display shape leaves it to the long way.
        for position in (0..DISPLAY_LEN).filter(|p| p % 6 != 5) {
            let mut text = display.clone().into_bytes();
            text[position] = b'U';
            assert!(read_in_place(&text).is_none(), "{position}");
            assert_eq!(read_symbols(&text).map(|_| ()), Err(STRANGER), "{position}");
        }
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
