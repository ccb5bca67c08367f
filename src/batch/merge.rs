//! The mail-merge output: every input column, then `code`, `kind` and `expires_at`, with cells
//! that a spreadsheet would run as a formula neutralised.

use std::borrow::Cow;

use super::recipients::Columns;

/// How the mail-merge file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Start the file with a UTF-8 byte order mark, which Excel needs to read UTF-8 accents;
    /// `None` as the input did.
    pub bom: Option<bool>,
    /// The field delimiter; `None` the input's (Excel in a `;` locale reads `;`).
    pub delimiter: Option<u8>,
    /// Write input cells exactly as read, even those a spreadsheet would run as a formula.
    pub raw_cells: bool,
}

/// The UTF-8 byte order mark.
pub const BOM: &[u8] = "\u{feff}".as_bytes();

/// The first characters that make a spreadsheet read a cell as a formula (or, for tab and
/// carriage return, hide one): OWASP's list for CSV injection.
const FORMULA_STARTS: &[u8] = b"=+-@\t\r";

/// A cell as a spreadsheet will show it and never run it: one starting with `=`, `+`, `-`,
/// `@`, tab or carriage return gets a leading `'`. Other cells are returned as they are.
#[must_use]
pub fn neutralise(cell: &[u8]) -> Cow<'_, [u8]> {
    match cell.first() {
        Some(first) if FORMULA_STARTS.contains(first) => {
            let mut safe = Vec::with_capacity(cell.len() + 1);
            safe.push(b'\'');
            safe.extend_from_slice(cell);
            Cow::Owned(safe)
        }
        _ => Cow::Borrowed(cell),
    }
}

/// The header names of the added columns.
pub const ADDED_COLUMNS: [&[u8]; 3] = [b"code", b"kind", b"expires_at"];

/// Appends one output row to `out` as CSV: the input fields but `expires_at` (neutralised
/// unless `raw_cells`), then the added ones, separated by `delimiter` and ended by a line feed.
///
/// Written by hand rather than through `csv::Writer` so that each row's end in the buffer is
/// known without a flush (duplicates are cut out by offset), and so that no intermediate
/// record is built: this is the hot path of a batch.
pub(crate) fn write_row(
    columns: &Columns,
    record: &csv::ByteRecord,
    added: [&[u8]; 3],
    raw_cells: bool,
    delimiter: u8,
    out: &mut Vec<u8>,
) {
    let mut first = true;
    let mut field = |cell: &[u8], out: &mut Vec<u8>| {
        if !first {
            out.push(delimiter);
        }
        first = false;
        write_field(cell, delimiter, out);
    };
    for (i, cell) in record.iter().enumerate() {
        if Some(i) == columns.expires_at {
            continue;
        }
        if raw_cells {
            field(cell, out);
        } else {
            field(&neutralise(cell), out);
        }
    }
    for cell in added {
        field(cell, out);
    }
    out.push(b'\n');
}

/// One CSV field, quoted when it holds the delimiter, a quote or a line break (or leads with a
/// space a reader might trim), as `csv`'s `QuoteStyle::Necessary` does.
fn write_field(cell: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    let needs_quotes = cell
        .iter()
        .any(|&b| b == delimiter || matches!(b, b'"' | b'\n' | b'\r'))
        || cell.first().is_some_and(|&b| b == b' ' || b == b'\t')
        || cell.last().is_some_and(|&b| b == b' ' || b == b'\t');
    if !needs_quotes {
        out.extend_from_slice(cell);
        return;
    }
    out.push(b'"');
    for &b in cell {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_written() {
        let record = csv::ByteRecord::from(vec![
            "Carol, Jr",
            "Dupont; Marie",
            "tab\there",
            "say \"hi\"",
            "two\nlines",
            " pad",
            "",
        ]);
        let columns = Columns {
            audience: 0,
            kind: crate::Kind::Email,
            recipient: None,
            subdomains: None,
            expires_at: None,
            len: 7,
        };
        let mut expected = record.clone();
        for added in ["c", "k", "e"] {
            expected.push_field(added.as_bytes());
        }
        for delimiter in [b',', b';', b'\t'] {
            let mut out = Vec::new();
            write_row(
                &columns,
                &record,
                [b"c", b"k", b"e"],
                true,
                delimiter,
                &mut out,
            );
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(delimiter)
                .from_reader(out.as_slice());
            let back = reader.byte_records().next().unwrap().unwrap();
            assert_eq!(back, expected, "{}", char::from(delimiter));
        }
    }

    #[test]
    fn formulas_are_neutralised_and_other_cells_kept() {
        for (cell, safe) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("Alice", "Alice"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(&*neutralise(cell.as_bytes()), safe.as_bytes(), "{cell}");
        }
    }
}
