//! The mail-merge output: every input column, then `code`, `kind` and `expires_at`, with cells
//! that a spreadsheet would run as a formula neutralised.

use std::borrow::Cow;

use super::recipients::Columns;

/// How the mail-merge file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Start the file with a UTF-8 byte order mark, which Excel needs to read UTF-8.
    pub bom: bool,
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

/// Fills `out` with an output row: the input fields but `expires_at` (neutralised unless
/// `raw_cells`), then the added ones.
pub(crate) fn output_row(
    columns: &Columns,
    record: &csv::ByteRecord,
    added: [&[u8]; 3],
    raw_cells: bool,
    out: &mut csv::ByteRecord,
) {
    out.clear();
    for (i, field) in record.iter().enumerate() {
        if Some(i) == columns.expires_at {
            continue;
        }
        if raw_cells {
            out.push_field(field);
        } else {
            out.push_field(&neutralise(field));
        }
    }
    for field in added {
        out.push_field(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
