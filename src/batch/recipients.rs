//! Reading the recipients CSV as admins have it: `,`, `;` or tab between fields, an Excel
//! header such as `E-mail Address`, a UTF-8 byte order mark, or Windows-1252 text.
//!
//! Text is either valid UTF-8, decoded to it from the encoding given, or refused with the line
//! that is not: never passed on as mojibake. The UTF-8 check of data rows is left to the row
//! minter ([`super::RowMinter`]), which runs on every core.

use std::io::{self, Read};

use encoding_rs::Encoding;

use crate::{Error, Kind};

/// The header names taken for the email column, as compared: lower case, accents dropped,
/// runs of spaces and underscores one space, surrounding blanks trimmed (see `header_key`).
///
/// Besides the English ones, the email column of Outlook's contact export in German, French,
/// Italian and Dutch (`E-Mail-Adresse`, `Adresse de messagerie`, `Indirizzo posta
/// elettronica`, `E-mailadres`; Spanish Outlook writes `E-mail Address`), and the names people
/// give that column in those languages and in Spanish. Second and third addresses (`E-Mail 2:
/// Adresse`) are not taken: the first is the one to invite.
pub const EMAIL_HEADERS: &[&str] = &[
    "email",
    "e-mail",
    "email address",
    "e-mail address",
    "mail",
    // German
    "e-mail-adresse",
    "e-mail adresse",
    "email-adresse",
    // French
    "adresse de messagerie",
    "adresse e-mail",
    "adresse email",
    "adresse electronique",
    "courriel",
    // Spanish
    "direccion de correo electronico",
    "correo electronico",
    "correo",
    // Italian
    "indirizzo posta elettronica",
    "indirizzo di posta elettronica",
    "indirizzo e-mail",
    "indirizzo email",
    "posta elettronica",
    // Dutch
    "e-mailadres",
    "emailadres",
];

/// The longest header line read to detect the delimiter: a header is a few hundred bytes.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The delimiters detected: the first of these that the header line holds most of.
const DETECTED_DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// How to read the recipients file.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The field delimiter; `None` detects `,`, `;` or tab from the header line.
    pub delimiter: Option<u8>,
    /// The header of the email column; `None` takes a common one (see [`EMAIL_HEADERS`]).
    pub email_column: Option<String>,
    /// The text encoding; `None` requires UTF-8 (a byte order mark is skipped).
    pub encoding: Option<&'static Encoding>,
}

/// Where the columns the minter reads sit in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// The column holding the email address (email codes) or the domain (domain codes).
    pub audience: usize,
    /// [`Kind::Email`] or [`Kind::Domain`] (a row may widen it to domain+subdomains).
    pub kind: Kind,
    /// For domain codes, the email column of the person the code goes to, if any.
    pub recipient: Option<usize>,
    /// The optional `subdomains` column (yes/no).
    pub subdomains: Option<usize>,
    /// The optional `expires_at` column (RFC 3339).
    pub expires_at: Option<usize>,
    /// How many fields the header has; a row with another count is refused.
    pub len: usize,
}

/// A header field as compared: blanks trimmed, a byte order mark dropped, lower case, accents
/// dropped (`Dirección` is `direccion`), runs of spaces and underscores made one space.
fn header_key(field: &[u8]) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    let field = field.strip_prefix("\u{feff}".as_bytes()).unwrap_or(field);
    let text: String = String::from_utf8_lossy(field)
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase();
    text.split(|c: char| c.is_whitespace() || c == '_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Columns {
    /// Finds the columns in a header row.
    ///
    /// # Errors
    ///
    /// [`Error::Batch`] when the header lacks an email or domain column, names the column
    /// asked for nowhere, has several email-like columns, or already has a column the output
    /// adds.
    pub fn find(header: &csv::ByteRecord, email_column: Option<&str>) -> Result<Self, Error> {
        let keys: Vec<String> = header.iter().map(header_key).collect();
        // A header as the file has it, for messages (`keys` are folded to compare).
        let shown = |h: &[u8]| {
            format!(
                "`{}`",
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
            )
        };
        let names = || header.iter().map(shown).collect::<Vec<_>>().join(", ");
        let position = |name: &str| keys.iter().position(|key| key == name);
        for added in ["code", "kind"] {
            if position(added).is_some() {
                return Err(batch(format!(
                    "the input already has a `{added}` column, which the output adds"
                )));
            }
        }
        let email = match email_column {
            Some(asked) => {
                let wanted = header_key(asked.as_bytes());
                Some(position(&wanted).ok_or_else(|| {
                    batch(format!(
                        "--email-column: the header has no `{}` column; it has {}",
                        asked.trim(),
                        names()
                    ))
                })?)
            }
            None => {
                let found: Vec<usize> = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, key)| EMAIL_HEADERS.contains(&key.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                if found.len() > 1 {
                    return Err(batch(format!(
                        "several columns could hold the email address ({}); name one with \
                         --email-column",
                        found
                            .iter()
                            .filter_map(|&i| header.get(i))
                            .map(shown)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                found.first().copied()
            }
        };
        let (audience, kind, recipient) = match (position("domain"), email) {
            (Some(domain), recipient) => (domain, Kind::Domain, recipient),
            (None, Some(email)) => (email, Kind::Email, None),
            (None, None) => {
                return Err(batch(format!(
                    "the header row needs an `email` or a `domain` column (or name the email \
                     column with --email-column); it has {}",
                    names()
                )));
            }
        };
        Ok(Self {
            audience,
            kind,
            recipient,
            subdomains: position("subdomains"),
            expires_at: position("expires_at").or_else(|| position("expires at")),
            len: header.len(),
        })
    }
}

/// The recipients file: its header, its columns, and its data rows one at a time.
pub struct Recipients<R: Read> {
    reader: csv::Reader<Source<R>>,
    header: csv::ByteRecord,
    columns: Columns,
    dialect: Dialect,
}

/// How a CSV file is written, for a file written back for the same people and tools (a
/// rejects file to fix and feed in again, a mail-merge file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The field delimiter.
    pub delimiter: u8,
    /// Whether the file starts with a UTF-8 byte order mark, as the input did.
    pub bom: bool,
    /// The legacy encoding the input was read in (`--encoding windows-1252`), if not UTF-8: a
    /// rejects file is written back in it, so that the same command reads it again.
    pub encoding: Option<&'static Encoding>,
}

impl Default for Dialect {
    fn default() -> Self {
        Self {
            delimiter: b',',
            bom: false,
            encoding: None,
        }
    }
}

impl<R: Read> std::fmt::Debug for Recipients<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipients")
            .field("columns", &self.columns)
            .field("delimiter", &char::from(self.dialect.delimiter))
            .finish_non_exhaustive()
    }
}

impl<R: Read> Recipients<R> {
    /// Reads the header row: decodes, skips a byte order mark, detects the delimiter unless
    /// given, and finds the columns.
    ///
    /// # Errors
    ///
    /// [`Error::NotUtf8`] when the header is not UTF-8 (and no encoding was given),
    /// [`Error::Io`] when reading fails, and as [`Columns::find`].
    pub fn open(input: R, options: &ReadOptions) -> Result<Self, Error> {
        let mut input = match options.encoding {
            Some(encoding) => Decoded::Decoding(Decoder::new(input, encoding)),
            None => Decoded::Plain(input),
        };
        let first = first_line(&mut input).map_err(|err| Error::io("reading input", &err))?;
        let (first, bom) = match first.strip_prefix("\u{feff}".as_bytes()) {
            Some(rest) => (rest.to_vec(), true),
            None => (first, false),
        };
        // Written back in the input's encoding where one can be written (windows-1252, ...);
        // UTF-16 cannot, and becomes UTF-8 with the mark that input had as UTF-16.
        let legacy = options
            .encoding
            .filter(|&encoding| encoding != encoding_rs::UTF_8);
        let encoding = legacy
            .map(Encoding::output_encoding)
            .filter(|&encoding| encoding != encoding_rs::UTF_8);
        let bom = bom || (legacy.is_some() && encoding.is_none());
        let delimiter = options
            .delimiter
            .unwrap_or_else(|| detect_delimiter(&first));
        let source = Source::new(first, input);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(source);
        let header = reader.byte_headers().map_err(csv_error)?.clone();
        if std::str::from_utf8(header.as_slice()).is_err() {
            return Err(Error::NotUtf8 { line: 1 });
        }
        let columns = Columns::find(&header, options.email_column.as_deref())?;
        Ok(Self {
            reader,
            header,
            columns,
            dialect: Dialect {
                delimiter,
                bom,
                encoding,
            },
        })
    }

    /// The header row as read.
    #[must_use]
    pub fn header(&self) -> &csv::ByteRecord {
        &self.header
    }

    /// Where the columns are.
    #[must_use]
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The field delimiter in use, given or detected.
    #[must_use]
    pub fn delimiter(&self) -> u8 {
        self.dialect.delimiter
    }

    /// The input's delimiter and byte order mark, for a file written back.
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Reads the next data row into `record`, with the line it starts on; `false` at the end
    /// of the input. Rows whose cells are all empty are skipped. The row is not checked here:
    /// [`super::RowMinter::mint`] does that.
    ///
    /// # Errors
    ///
    /// [`Error::Batch`] or [`Error::Io`] when the input cannot be read as CSV.
    pub fn read_row(&mut self, record: &mut csv::ByteRecord) -> Result<bool, Error> {
        loop {
            let more = self.reader.read_byte_record(record).map_err(csv_error)?;
            if let Some(mut position) = record.position().cloned() {
                position.set_line(self.reader.get_mut().line_at(position.byte()));
                record.set_position(Some(position));
            }
            // A row of empty cells (`;;`) is how a spreadsheet writes a blank row: skipped
            // like a blank line.
            let blank = record.iter().all(|field| field.trim_ascii().is_empty());
            if !more || !blank {
                return Ok(more);
            }
        }
    }
}

/// The first line, up to and including its line break, read a byte at a time through a
/// small buffer so that nothing after it is consumed. Quoted line breaks are inside the line.
fn first_line(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    let mut quoted = false;
    let mut byte = [0u8; 1];
    while line.len() < MAX_HEADER_BYTES {
        if input.read(&mut byte)? == 0 {
            break;
        }
        let [b] = byte;
        line.push(b);
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            _ => {}
        }
    }
    Ok(line)
}

/// The delimiter the header line holds most of, outside quotes; `,` when it holds none.
fn detect_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; DETECTED_DELIMITERS.len()];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            for (count, &delimiter) in counts.iter_mut().zip(&DETECTED_DELIMITERS) {
                if b == delimiter {
                    *count += 1;
                }
            }
        }
    }
    let mut best = (0usize, b',');
    for (&count, &delimiter) in counts.iter().zip(&DETECTED_DELIMITERS) {
        if count > best.0 {
            best = (count, delimiter);
        }
    }
    best.1
}

/// The header line already read, then the rest of the input; counts lines as it goes.
///
/// The csv crate numbers a record by the line feeds it has parsed when it starts parsing the
/// record, which is before the LF of a CR LF line end and before any blank lines it skips: in
/// a file with Windows line ends, as Excel writes them, every row after the first would be
/// numbered one line too low. Here a record's line is one more than the line feeds before its
/// first byte.
struct Source<R> {
    head: io::Cursor<Vec<u8>>,
    rest: Decoded<R>,
    /// Bytes handed to the CSV reader so far.
    offset: u64,
    /// Offsets of the CRs and LFs handed over but not yet behind a record's first byte, and
    /// whether each is a LF. Only what the CSV reader holds in its buffer is ever here.
    line_ends: std::collections::VecDeque<(u64, bool)>,
    /// Line ends behind the last record's first byte.
    lines_before: u64,
}

impl<R> Source<R> {
    fn new(head: Vec<u8>, rest: Decoded<R>) -> Self {
        Self {
            head: io::Cursor::new(head),
            rest,
            offset: 0,
            line_ends: std::collections::VecDeque::new(),
            lines_before: 0,
        }
    }

    /// The line of the record whose parse started at byte `start` (never less than the last
    /// call's): the line ends from `start` on, up to the record's first byte, are blank lines
    /// and the rest of the previous line's end.
    fn line_at(&mut self, start: u64) -> u64 {
        let mut first = start;
        while let Some(&(at, line_feed)) = self.line_ends.front() {
            if at > first {
                break;
            }
            if at >= start {
                first = at + 1;
            }
            self.line_ends.pop_front();
            // A CR ends a line unless a LF follows it (CR LF is one line end): old Mac files
            // end lines with CR alone. The byte after it was read with this record.
            let ends_line = line_feed
                || self
                    .line_ends
                    .front()
                    .is_none_or(|&(next, is_lf)| !(is_lf && next == at + 1));
            self.lines_before += u64::from(ends_line);
        }
        self.lines_before + 1
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.head.read(buf)?;
        if n == 0 {
            n = self.rest.read(buf)?;
        }
        let read = buf.get(..n).unwrap_or_default();
        for i in memchr::memchr2_iter(b'\n', b'\r', read) {
            let line_feed = read.get(i) == Some(&b'\n');
            self.line_ends
                .push_back((self.offset + i as u64, line_feed));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The input as UTF-8: as it is, or decoded.
enum Decoded<R> {
    Plain(R),
    Decoding(Decoder<R>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(input) => input.read(buf),
            Self::Decoding(decoder) => decoder.read(buf),
        }
    }
}

/// Bytes of undecoded input read at a time.
const DECODE_CHUNK: usize = 16 * 1024;

/// A reader that decodes its input from a legacy encoding to UTF-8 as it goes.
struct Decoder<R> {
    input: R,
    decoder: encoding_rs::Decoder,
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    ended: bool,
    out: Vec<u8>,
    out_start: usize,
}

impl<R: Read> Decoder<R> {
    fn new(input: R, encoding: &'static Encoding) -> Self {
        Self {
            input,
            // A byte order mark, if any, wins over the encoding given, as browsers do.
            decoder: encoding.new_decoder(),
            raw: vec![0; DECODE_CHUNK],
            raw_start: 0,
            raw_end: 0,
            ended: false,
            out: Vec::with_capacity(DECODE_CHUNK * 3 + 16),
            out_start: 0,
        }
    }

    /// Decodes more input into `out`; `false` once everything was decoded.
    fn refill(&mut self) -> io::Result<bool> {
        self.out.clear();
        self.out_start = 0;
        while self.out.is_empty() {
            if self.raw_start == self.raw_end {
                if self.ended {
                    return Ok(false);
                }
                self.raw_start = 0;
                self.raw_end = self.input.read(&mut self.raw)?;
                self.ended = self.raw_end == 0;
            }
            let raw = self
                .raw
                .get(self.raw_start..self.raw_end)
                .unwrap_or_default();
            let room = self
                .decoder
                .max_utf8_buffer_length(raw.len())
                .unwrap_or(DECODE_CHUNK * 3 + 16);
            self.out.resize(room, 0);
            let (_, read, written, _) = self.decoder.decode_to_utf8(raw, &mut self.out, self.ended);
            self.raw_start += read;
            self.out.truncate(written);
            if self.ended && self.raw_start == self.raw_end && self.out.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_start == self.out.len() && !self.refill()? {
            return Ok(0);
        }
        let pending = self.out.get(self.out_start..).unwrap_or_default();
        let n = pending.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), pending.get(..n)) {
            to.copy_from_slice(from);
        }
        self.out_start += n;
        Ok(n)
    }
}

fn batch(reason: String) -> Error {
    Error::Batch { reason }
}

/// A CSV error as the library's error, keeping an I/O error's kind.
pub(crate) fn csv_error(err: csv::Error) -> Error {
    let line = err.position().map(csv::Position::line);
    if let csv::ErrorKind::Io(io) = err.kind() {
        return Error::io("reading input", io);
    }
    let reason = match line {
        Some(line) => format!("CSV line {line}: {err}"),
        None => format!("CSV: {err}"),
    };
    Error::Batch { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open<'a>(text: &'a [u8], options: &ReadOptions) -> Result<Recipients<&'a [u8]>, Error> {
        Recipients::open(text, options)
    }

    #[test]
    fn delimiters_are_detected_outside_quotes() {
        assert_eq!(detect_delimiter(b"name,email\n"), b',');
        assert_eq!(detect_delimiter(b"Name;E-mail Address\r\n"), b';');
        assert_eq!(detect_delimiter(b"\"a;b;c\",email\n"), b',');
        assert_eq!(detect_delimiter(b"name\temail\n"), b'\t');
        assert_eq!(detect_delimiter(b"email\n"), b',');
    }

    #[test]
    fn excel_headers_are_found() {
        let options = ReadOptions::default();
        for header in [
            "Email",
            "E-mail Address",
            "\u{feff}email",
            "EMAIL_ADDRESS",
            " Mail ",
            "E-Mail-Adresse",
            "Adresse de messagerie",
            "Dirección de correo electrónico",
            "DIRECCION DE CORREO ELECTRONICO",
            "Indirizzo posta elettronica",
            "E-mailadres",
        ] {
            let text = format!("First Name;{header};Team\nA;a@contoso.com;x\n");
            let recipients = open(text.as_bytes(), &options).unwrap();
            assert_eq!(recipients.columns().audience, 1, "{header}");
            assert_eq!(recipients.delimiter(), b';');
        }
        let two = open(b"email,e-mail\n", &options).unwrap_err().to_string();
        assert!(two.contains("--email-column"), "{two}");
        // Outlook's second address is not an email column: the first is taken alone.
        let second = open(
            "Name;E-Mail-Adresse;E-Mail 2: Adresse\n".as_bytes(),
            &options,
        )
        .unwrap();
        assert_eq!(second.columns().audience, 1);
        let named = ReadOptions {
            email_column: Some("Courriel".to_owned()),
            ..ReadOptions::default()
        };
        let recipients = open(b"Nom,Courriel\n", &named).unwrap();
        assert_eq!(recipients.columns().audience, 1);
        let missing = open(b"Nom,Adresse\n", &named).unwrap_err().to_string();
        assert!(
            missing.contains("no `Courriel` column; it has `Nom`, `Adresse`"),
            "{missing}"
        );
    }

    #[test]
    fn windows_1252_is_decoded_or_refused() {
        let text = b"name,email\nZo\xeb,zoe@contoso.com\n";
        let plain = open(b"Zo\xeb,email\n", &ReadOptions::default()).unwrap_err();
        assert_eq!(plain, Error::NotUtf8 { line: 1 });
        let options = ReadOptions {
            encoding: Some(encoding_rs::WINDOWS_1252),
            ..ReadOptions::default()
        };
        let mut recipients = open(text, &options).unwrap();
        let mut record = csv::ByteRecord::new();
        assert!(recipients.read_row(&mut record).unwrap());
        assert_eq!(record.get(0), Some("Zoë".as_bytes()));
        assert!(!recipients.read_row(&mut record).unwrap());
    }

    #[test]
    fn the_decoder_streams_across_chunks() {
        let mut text = Vec::from(&b"name,email\n"[..]);
        for i in 0..5000 {
            text.extend_from_slice(format!("Ren\u{e9}{i},r{i}@contoso.com\n").as_bytes());
        }
        // The same text in Windows-1252: é is one byte.
        let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode(std::str::from_utf8(&text).unwrap());
        let options = ReadOptions {
            encoding: Some(encoding_rs::WINDOWS_1252),
            ..ReadOptions::default()
        };
        let mut recipients = open(&cp1252, &options).unwrap();
        let mut record = csv::ByteRecord::new();
        let mut rows = 0;
        while recipients.read_row(&mut record).unwrap() {
            assert_eq!(record.get(0), Some(format!("Ren\u{e9}{rows}").as_bytes()));
            rows += 1;
        }
        assert_eq!(rows, 5000);
    }

    #[test]
    fn rows_are_numbered_by_their_line_whatever_the_line_ends() {
        // Excel's CR LF, plain LF, old Mac CR, a quoted line break inside a cell, and a blank
        // line.
        for text in [
            &b"name;email\rA;a@x.com\rB;b@x.com\r\"C\rc\";c@x.com\r;\rD;d@x.com\r"[..],
            &b"\xef\xbb\xbfname;email\r\nA;a@x.com\r\nB;b@x.com\r\n\"C\r\nc\";c@x.com\r\n\r\nD;d@x.com\r\n"[..],
            b"name;email\nA;a@x.com\nB;b@x.com\n\"C\nc\";c@x.com\n;\nD;d@x.com",
        ] {
            let mut recipients = open(text, &ReadOptions::default()).unwrap();
            let mut record = csv::ByteRecord::new();
            let mut lines = Vec::new();
            while recipients.read_row(&mut record).unwrap() {
                lines.push((record[1].to_vec(), record.position().unwrap().line()));
            }
            let expected: Vec<(Vec<u8>, u64)> = [("a", 2), ("b", 3), ("c", 4), ("d", 7)]
                .iter()
                .map(|&(who, line)| (format!("{who}@x.com").into_bytes(), line))
                .collect();
            assert_eq!(lines, expected, "{}", String::from_utf8_lossy(text));
        }
    }
}
