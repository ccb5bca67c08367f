//! Batch minting: a recipients CSV in, a mail-merge CSV out, one row at a time.
//!
//! Input has a header row. A `domain` column makes every row a domain code (an `email` column
//! beside it is then the recipient and passes through); otherwise an `email` column makes every
//! row an email code. Optional per-row columns: `subdomains` (yes/no) and `expires_at`
//! (RFC 3339). Every input column passes through in order, except `expires_at`, which comes
//! back normalized among the added columns `code`, `kind`, `expires_at`.

use std::io::{Read, Write};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::policy::check_audience;
use crate::{Audience, Error, Expiry, KeyRing, Kind, mint};

/// Settings that apply to every row.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Expiry for rows whose `expires_at` is empty or absent.
    pub default_expiry: Option<Expiry>,
    /// The current instant: rows expiring at or before it are refused.
    pub now: OffsetDateTime,
    /// Mint domain codes for public suffixes and free-mail providers too.
    pub allow_public_domains: bool,
}

/// What happened to one data row.
#[derive(Debug)]
pub enum RowEvent<'a> {
    /// A code was minted and the row written.
    Minted,
    /// The row was refused and not written.
    Rejected(Rejection<'a>),
}

/// A refused row: where it was, why, and its fields as read.
#[derive(Debug)]
pub struct Rejection<'a> {
    /// 1-based line of the input where the row starts.
    pub line: u64,
    /// Why, in a sentence fragment such as `invalid email address: it has no `@``.
    pub reason: String,
    /// The input fields, to write to a rejects file.
    pub record: &'a csv::ByteRecord,
    /// The input header row, for the rejects file's own header.
    pub header: &'a csv::ByteRecord,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Data rows read (the header not counted).
    pub rows: u64,
    /// Codes minted and rows written.
    pub minted: u64,
    /// Rows refused.
    pub rejected: u64,
}

/// Where the columns the batch reads sit in the header.
struct Columns {
    audience: usize,
    kind: Kind,
    subdomains: Option<usize>,
    expires_at: Option<usize>,
}

impl Columns {
    fn find(header: &csv::ByteRecord) -> Result<Self, Error> {
        let position = |name: &str| {
            header.iter().position(|field| {
                let field = field.strip_prefix("\u{feff}".as_bytes()).unwrap_or(field);
                field.trim_ascii().eq_ignore_ascii_case(name.as_bytes())
            })
        };
        for added in ["code", "kind"] {
            if position(added).is_some() {
                return Err(Error::Batch {
                    reason: format!(
                        "the input already has a `{added}` column, which the output adds"
                    ),
                });
            }
        }
        let (audience, kind) = match (position("domain"), position("email")) {
            (Some(domain), _) => (domain, Kind::Domain),
            (None, Some(email)) => (email, Kind::Email),
            (None, None) => {
                return Err(Error::Batch {
                    reason: "the header row needs an `email` or a `domain` column".to_owned(),
                });
            }
        };
        Ok(Self {
            audience,
            kind,
            subdomains: position("subdomains"),
            expires_at: position("expires_at"),
        })
    }

    /// Fills `out` with the output row: input fields but `expires_at`, then the added ones.
    fn output_row(&self, record: &csv::ByteRecord, added: [&[u8]; 3], out: &mut csv::ByteRecord) {
        out.clear();
        for (i, field) in record.iter().enumerate() {
            if Some(i) != self.expires_at {
                out.push_field(field);
            }
        }
        for field in added {
            out.push_field(field);
        }
    }
}

/// The last expiry formatted, so rows sharing one (the usual case) format it once.
#[derive(Default)]
struct ExpiryText {
    expiry: Option<Expiry>,
    text: String,
}

impl ExpiryText {
    fn get(&mut self, expiry: Expiry) -> &str {
        if self.expiry != Some(expiry) {
            self.text = expiry.to_string();
            self.expiry = Some(expiry);
        }
        &self.text
    }
}

/// Reads the recipients CSV from `input` and writes the mail-merge CSV to `output`, calling
/// `on_row` once a data row. Memory does not grow with the number of rows.
///
/// # Errors
///
/// [`Error::Batch`] when the header lacks the needed column or reading or writing fails. A bad
/// row is not an error: it is reported through `on_row` and counted.
pub fn run<R: Read, W: Write>(
    ring: &KeyRing,
    input: R,
    output: W,
    options: &BatchOptions,
    mut on_row: impl FnMut(RowEvent<'_>),
) -> Result<Summary, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let mut writer = csv::Writer::from_writer(output);
    let header = reader.byte_headers().map_err(csv_error)?.clone();
    let columns = Columns::find(&header)?;
    let mut out = csv::ByteRecord::new();
    let added: [&[u8]; 3] = [b"code", b"kind", b"expires_at"];
    columns.output_row(&header, added, &mut out);
    writer.write_byte_record(&out).map_err(csv_error)?;

    let mut summary = Summary::default();
    let mut record = csv::ByteRecord::new();
    let mut expiry_text = ExpiryText::default();
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        summary.rows += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let minted = if record.len() == header.len() {
            mint_row(ring, &columns, &record, options)
        } else {
            // A row with the wrong number of fields is that row's fault, not the file's.
            Err("it has a different number of fields than the header".to_owned())
        };
        match minted {
            Ok((code, kind, expiry)) => {
                let added = [
                    &code.display_bytes()[..],
                    kind.name().as_bytes(),
                    expiry_text.get(expiry).as_bytes(),
                ];
                columns.output_row(&record, added, &mut out);
                writer.write_byte_record(&out).map_err(csv_error)?;
                summary.minted += 1;
                on_row(RowEvent::Minted);
            }
            Err(reason) => {
                summary.rejected += 1;
                on_row(RowEvent::Rejected(Rejection {
                    line,
                    reason,
                    record: &record,
                    header: &header,
                }));
            }
        }
    }
    writer.flush().map_err(|err| Error::Batch {
        reason: format!("writing output: {err}"),
    })?;
    Ok(summary)
}

/// Mints the code for one row, or says why not.
fn mint_row(
    ring: &KeyRing,
    columns: &Columns,
    record: &csv::ByteRecord,
    options: &BatchOptions,
) -> Result<(crate::Code, Kind, Expiry), String> {
    let field = |index: Option<usize>| -> Result<&str, String> {
        let bytes = index.and_then(|i| record.get(i)).unwrap_or_default();
        std::str::from_utf8(bytes)
            .map(str::trim_ascii)
            .map_err(|_| "a field is not valid UTF-8".to_owned())
    };
    let target = field(Some(columns.audience))?;
    if target.is_empty() {
        let name = if columns.kind == Kind::Email {
            "email"
        } else {
            "domain"
        };
        return Err(format!("the `{name}` field is empty"));
    }
    let kind = match (columns.kind, parse_yes_no(field(columns.subdomains)?)?) {
        (Kind::Domain, true) => Kind::DomainAndSubdomains,
        (Kind::Email, true) => return Err("`subdomains` is set on an email row".to_owned()),
        (kind, _) => kind,
    };
    let audience = Audience::new(kind, target).map_err(|err| err.to_string())?;
    check_audience(&audience, options.allow_public_domains).map_err(|err| err.to_string())?;
    let expires_at = field(columns.expires_at)?;
    let expiry = if expires_at.is_empty() {
        options.default_expiry.ok_or_else(|| {
            "no expiry: fill `expires_at` or give --expires-in or --expires-at".to_owned()
        })?
    } else {
        let at = OffsetDateTime::parse(expires_at, &Rfc3339).map_err(|_| {
            "`expires_at` is not an RFC 3339 date and time such as 2026-12-31T00:00:00Z".to_owned()
        })?;
        Expiry::from_datetime(at).map_err(|err| err.to_string())?
    };
    let expiry = expiry.after(options.now).map_err(|err| err.to_string())?;
    Ok((mint(ring, &audience, expiry), kind, expiry))
}

/// `subdomains` values: empty, no, false, 0, n mean no; yes, true, 1, y, x mean yes.
fn parse_yes_no(text: &str) -> Result<bool, String> {
    const NO: [&str; 5] = ["", "no", "false", "0", "n"];
    const YES: [&str; 5] = ["yes", "true", "1", "y", "x"];
    if NO.iter().any(|no| text.eq_ignore_ascii_case(no)) {
        Ok(false)
    } else if YES.iter().any(|yes| text.eq_ignore_ascii_case(yes)) {
        Ok(true)
    } else {
        Err("`subdomains` must be yes or no".to_owned())
    }
}

fn csv_error(err: csv::Error) -> Error {
    let line = err.position().map(csv::Position::line);
    let reason = match line {
        Some(line) => format!("CSV line {line}: {err}"),
        None => format!("CSV: {err}"),
    };
    Error::Batch { reason }
}
