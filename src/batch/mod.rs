//! Batch minting: a recipients CSV in, a mail-merge CSV out, streamed in chunks of rows.
//!
//! Input has a header row. A `domain` column makes every row a domain code (an email column
//! beside it is then the recipient and passes through); otherwise an email column (`email`,
//! `E-mail Address`, ... or the one named) makes every row an email code. Optional per-row
//! columns: `subdomains` (yes/no) and `expires_at` (RFC 3339). Every input column passes
//! through in order, except `expires_at`, which comes back normalized among the added columns
//! `code`, `kind`, `expires_at`.
//!
//! The parts are separate so that other senders reuse them row by row: [`Recipients`] reads
//! the file, [`RowMinter`] mints one row, [`Duplicates`] remembers who was seen.

mod merge;
mod mint;
mod recipients;

use std::io::{Read, Write};

pub use merge::{ADDED_COLUMNS, BOM, MergeOptions, neutralise};
pub use mint::{Duplicates, MintOptions, Minted, RecipientKey, RowError, RowMinter};
pub use recipients::{Columns, Dialect, EMAIL_HEADERS, ReadOptions, Recipients};

use crate::{Error, Expiry};

/// Settings of one batch run.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// How rows are minted.
    pub mint: MintOptions,
    /// How the recipients file is read.
    pub read: ReadOptions,
    /// How the mail-merge file is written.
    pub merge: MergeOptions,
    /// Mint a code for every row, even a recipient seen on an earlier row.
    pub allow_duplicates: bool,
}

/// What happened to one data row.
#[derive(Debug)]
#[non_exhaustive]
pub enum RowEvent<'a> {
    /// A code was minted and the row written.
    Minted,
    /// The row was refused and not written.
    Rejected(Rejection<'a>),
    /// The row names a recipient an earlier row named: it was not written. The reason says
    /// which line.
    Duplicate(Rejection<'a>),
}

/// A row set aside: where it was, why, and its fields as read.
#[derive(Debug)]
pub struct Rejection<'a> {
    /// 1-based line of the input where the row starts.
    pub line: u64,
    /// Why, in a sentence fragment such as ``invalid email address: it has no `@` ``.
    pub reason: String,
    /// The input fields, to write to a rejects file.
    pub record: &'a csv::ByteRecord,
    /// The input header row, for the rejects file's own header.
    pub header: &'a csv::ByteRecord,
    /// The input's delimiter and byte order mark, for the rejects file.
    pub dialect: Dialect,
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
    /// Rows left out as duplicates of an earlier row.
    pub duplicates: u64,
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

/// Rows handed to a worker at a time: enough that handing over costs little against minting
/// them, few enough that the chunks in flight stay small.
const CHUNK_ROWS: usize = 256;

/// What became of one row of a chunk.
enum RowResult {
    /// Minted: its output row ends at this offset of the chunk's output.
    Minted { end: usize, recipient: RecipientKey },
    /// Refused, and why.
    Rejected(String),
    /// Not UTF-8: the run stops at this row.
    NotUtf8,
}

/// A run of consecutive data rows, read by the calling thread, minted by a worker, and written
/// back in order by the calling thread.
#[derive(Default)]
struct Chunk {
    /// Order of the chunk in the input.
    sequence: usize,
    /// Rows read; only the first `len` are this chunk's (the rest are kept for reuse).
    records: Vec<csv::ByteRecord>,
    len: usize,
    /// The output rows of the minted ones, as CSV.
    output: Vec<u8>,
    /// For each row: minted, or why not.
    results: Vec<RowResult>,
}

impl Chunk {
    /// Reads up to [`CHUNK_ROWS`] records; `false` when the input had none left.
    fn fill<R: Read>(&mut self, reader: &mut Recipients<R>) -> Result<bool, Error> {
        self.len = 0;
        while self.len < CHUNK_ROWS {
            if self.records.len() == self.len {
                self.records.push(csv::ByteRecord::new());
            }
            let Some(record) = self.records.get_mut(self.len) else {
                break;
            };
            if !reader.read_row(record)? {
                break;
            }
            self.len += 1;
        }
        Ok(self.len > 0)
    }
}

/// One thread's minting: the shared row minter and what the thread reuses from chunk to chunk.
struct Worker<'a> {
    minter: RowMinter<'a>,
    columns: &'a Columns,
    raw_cells: bool,
    delimiter: u8,
    expiry_text: ExpiryText,
}

impl<'a> Worker<'a> {
    fn new(minter: RowMinter<'a>, columns: &'a Columns, raw_cells: bool, delimiter: u8) -> Self {
        Self {
            minter,
            columns,
            raw_cells,
            delimiter,
            expiry_text: ExpiryText::default(),
        }
    }

    /// Mints the rows of `chunk` and writes the output rows of those minted to its output.
    fn mint(&mut self, chunk: &mut Chunk) {
        chunk.results.clear();
        chunk.output.clear();
        let records = chunk.records.get(..chunk.len).unwrap_or_default();
        for record in records {
            let result = match self.minter.mint(record) {
                Ok(minted) => {
                    let added = [
                        &minted.code.display_bytes()[..],
                        minted.audience.kind().name().as_bytes(),
                        self.expiry_text.get(minted.expiry).as_bytes(),
                    ];
                    merge::write_row(
                        self.columns,
                        record,
                        added,
                        self.raw_cells,
                        self.delimiter,
                        &mut chunk.output,
                    );
                    RowResult::Minted {
                        end: chunk.output.len(),
                        recipient: minted.recipient,
                    }
                }
                Err(RowError::Rejected(reason)) => RowResult::Rejected(reason),
                Err(RowError::NotUtf8) => RowResult::NotUtf8,
            };
            chunk.results.push(result);
        }
    }
}

/// The chunks waiting for a minting thread. Any thread takes the next one.
type Queue = std::sync::Mutex<std::sync::mpsc::Receiver<Chunk>>;

/// A helper thread: mints chunks from `queue` until it is closed.
fn help(
    mut worker: Worker<'_>,
    queue: &Queue,
    done: &std::sync::mpsc::Sender<Result<Chunk, Error>>,
) {
    loop {
        // The lock is held only to take the next chunk.
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv().ok(),
            Err(_) => None,
        };
        let Some(mut chunk) = next else {
            return;
        };
        worker.mint(&mut chunk);
        if done.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// Reads the recipients CSV from `input` and writes the mail-merge CSV to `output`, calling
/// `on_row` once a data row, in input order.
///
/// Rows are minted a chunk at a time on every core: the calling thread reads, writes, and
/// mints whenever the next chunk to write is not ready; one helper thread a further core
/// mints. A bounded number of chunks is in flight, and output keeps the input's order. Memory
/// grows only with duplicate detection, 16 bytes and a line number a row, which
/// [`BatchOptions::allow_duplicates`] turns off.
///
/// # Errors
///
/// [`Error::Batch`] when the header lacks the needed column or the CSV cannot be read,
/// [`Error::NotUtf8`] at the first line that is not UTF-8, [`Error::Io`] when reading or
/// writing fails. A bad row is not an error: it is reported through `on_row` and counted. Rows
/// before an error are written and reported before the error is returned.
pub fn run<R: Read, W: Write>(
    ring: &crate::KeyRing,
    input: R,
    mut output: W,
    options: &BatchOptions,
    mut on_row: impl FnMut(RowEvent<'_>),
) -> Result<Summary, Error> {
    let mut reader = Recipients::open(input, &options.read)?;
    let header = reader.header().clone();
    let columns = reader.columns().clone();
    // Written as the input was unless told otherwise: Excel in a `;` locale opens a `;` file.
    let input = reader.dialect();
    let delimiter = options.merge.delimiter.unwrap_or(input.delimiter);
    let mut head = Vec::new();
    if options.merge.bom.unwrap_or(input.bom) {
        head.extend_from_slice(BOM);
    }
    merge::write_row(&columns, &header, ADDED_COLUMNS, true, delimiter, &mut head);
    write_output(&mut output, &head)?;

    let minter = RowMinter::new(ring, &columns, &options.mint);
    let raw_cells = options.merge.raw_cells;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let helpers = cores.saturating_sub(1).max(1);
    let (to_queue, queue) = std::sync::mpsc::channel::<Chunk>();
    let queue = std::sync::Mutex::new(queue);
    let (done_tx, done) = std::sync::mpsc::channel::<Result<Chunk, Error>>();
    let summary = std::thread::scope(|scope| {
        for _ in 0..helpers {
            let worker = Worker::new(minter.sibling(), &columns, raw_cells, delimiter);
            let (queue, done_tx) = (&queue, done_tx.clone());
            scope.spawn(move || help(worker, queue, &done_tx));
        }
        drop(done_tx);
        let mut driver = Driver {
            reader: &mut reader,
            output: &mut output,
            header: &header,
            in_flight_limit: 4 * cores,
            helpers,
            to_queue: &to_queue,
            queue: &queue,
            done: &done,
            worker: Worker::new(minter.sibling(), &columns, raw_cells, delimiter),
            duplicates: (!options.allow_duplicates).then(Duplicates::new),
        };
        let result = driver.drive(&mut on_row);
        // Closing the queue ends the helpers.
        drop(to_queue);
        result
    })?;
    output
        .flush()
        .map_err(|err| Error::io("writing output", &err))?;
    Ok(summary)
}

/// The calling thread's part of [`run`].
struct Driver<'a, R: Read, W> {
    reader: &'a mut Recipients<R>,
    output: &'a mut W,
    header: &'a csv::ByteRecord,
    in_flight_limit: usize,
    helpers: usize,
    to_queue: &'a std::sync::mpsc::Sender<Chunk>,
    queue: &'a Queue,
    done: &'a std::sync::mpsc::Receiver<Result<Chunk, Error>>,
    worker: Worker<'a>,
    duplicates: Option<Duplicates>,
}

impl<R: Read, W: Write> Driver<'_, R, W> {
    /// Keeps up to `in_flight_limit` chunks read ahead, and writes and reports finished chunks
    /// in input order; while the next one to write is not ready, mints a queued one itself.
    fn drive(&mut self, on_row: &mut impl FnMut(RowEvent<'_>)) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let mut spare: Vec<Chunk> = Vec::new();
        // Finished chunks by sequence, waiting for the earlier ones.
        let mut finished = std::collections::BTreeMap::<usize, Chunk>::new();
        let (mut sent, mut next_to_write) = (0usize, 0usize);
        // `None` while the input has rows left; then `Ok` at its end or the read error.
        let mut ended: Option<Result<(), Error>> = None;
        loop {
            while ended.is_none() && sent - next_to_write < self.in_flight_limit {
                let mut chunk = spare.pop().unwrap_or_default();
                let more = match chunk.fill(self.reader) {
                    Ok(more) => more,
                    Err(err) => {
                        // Rows read before the error still count; the error comes after them.
                        ended = Some(Err(err));
                        chunk.len > 0
                    }
                };
                if !more {
                    ended.get_or_insert(Ok(()));
                    spare.push(chunk);
                    break;
                }
                chunk.sequence = sent;
                sent += 1;
                self.to_queue.send(chunk).map_err(|_| helper_gone())?;
            }
            if next_to_write == sent {
                break;
            }
            while let Ok(chunk) = self.done.try_recv() {
                let chunk = chunk?;
                finished.insert(chunk.sequence, chunk);
            }
            if !finished.contains_key(&next_to_write) {
                // Chunks still queued if every helper is busy with one. Reading comes first,
                // so this thread mints only when the helpers would still find work after.
                let queued = (sent - next_to_write)
                    .saturating_sub(finished.len())
                    .saturating_sub(self.helpers);
                let taken = if queued > self.helpers {
                    self.take_queued()
                } else {
                    None
                };
                let chunk = match taken {
                    Some(mut chunk) => {
                        self.worker.mint(&mut chunk);
                        Ok(chunk)
                    }
                    None => self.done.recv().map_err(|_| helper_gone())?,
                }?;
                finished.insert(chunk.sequence, chunk);
            }
            while let Some(chunk) = finished.remove(&next_to_write) {
                self.write_and_report(&chunk, &mut summary, on_row)?;
                next_to_write += 1;
                spare.push(chunk);
            }
        }
        ended.unwrap_or(Ok(())).map(|()| summary)
    }

    /// A queued chunk, if one is waiting and no helper is taking one right now.
    fn take_queued(&self) -> Option<Chunk> {
        self.queue.try_lock().ok()?.try_recv().ok()
    }

    /// Writes a finished chunk's output rows but duplicates, and reports each row in order.
    /// Stops at a row that is not UTF-8.
    fn write_and_report(
        &mut self,
        chunk: &Chunk,
        summary: &mut Summary,
        on_row: &mut impl FnMut(RowEvent<'_>),
    ) -> Result<(), Error> {
        // Output bytes from `written` to `start` are not written yet; runs of rows are written
        // at once, so a chunk without duplicates is one write.
        let (mut written, mut start) = (0usize, 0usize);
        for (record, result) in chunk.records.iter().zip(&chunk.results) {
            let line = record.position().map_or(0, csv::Position::line);
            match result {
                RowResult::Minted { end, recipient } => {
                    let first = match self.duplicates.as_mut() {
                        Some(seen) => seen.first_seen(*recipient, line),
                        None => None,
                    };
                    summary.rows += 1;
                    if let Some(first) = first {
                        write_output(
                            self.output,
                            chunk.output.get(written..start).unwrap_or_default(),
                        )?;
                        written = *end;
                        summary.duplicates += 1;
                        on_row(RowEvent::Duplicate(Rejection {
                            line,
                            reason: format!(
                                "the same recipient as line {first}: minted once (pass \
                                 --allow-duplicates to mint one code a row)"
                            ),
                            record,
                            header: self.header,
                            dialect: self.reader.dialect(),
                        }));
                    } else {
                        summary.minted += 1;
                        on_row(RowEvent::Minted);
                    }
                    start = *end;
                }
                RowResult::Rejected(reason) => {
                    summary.rows += 1;
                    summary.rejected += 1;
                    on_row(RowEvent::Rejected(Rejection {
                        line,
                        reason: reason.clone(),
                        record,
                        header: self.header,
                        dialect: self.reader.dialect(),
                    }));
                }
                RowResult::NotUtf8 => {
                    write_output(
                        self.output,
                        chunk.output.get(written..start).unwrap_or_default(),
                    )?;
                    return Err(Error::NotUtf8 { line });
                }
            }
        }
        write_output(
            self.output,
            chunk.output.get(written..start).unwrap_or_default(),
        )
    }
}

fn write_output<W: Write>(output: &mut W, bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    output
        .write_all(bytes)
        .map_err(|err| Error::io("writing output", &err))
}

fn helper_gone() -> Error {
    Error::Batch {
        reason: "a minting thread stopped unexpectedly".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyRing, UnixTime, verify};

    const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn options() -> BatchOptions {
        BatchOptions {
            mint: MintOptions {
                default_expiry: Some(Expiry::from_unix(1_893_456_000)),
                now: time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
                allow_public_domains: false,
            },
            read: ReadOptions::default(),
            merge: MergeOptions::default(),
            allow_duplicates: false,
        }
    }

    /// `rows` recipients over many chunks; every 97th has no `@` and must be rejected.
    fn recipients(rows: usize) -> (String, Vec<usize>) {
        let mut text = String::from("name,email\n");
        let mut bad = Vec::new();
        for i in 0..rows {
            if i % 97 == 5 {
                bad.push(i);
                text.push_str(&format!("P{i},not-an-address-{i}\n"));
            } else {
                text.push_str(&format!("P{i},p{i}@contoso.com\n"));
            }
        }
        (text, bad)
    }

    #[test]
    fn many_chunks_keep_input_order_and_report_rows_in_order() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let rows = CHUNK_ROWS * 9 + 17;
        let (input, bad) = recipients(rows);
        let mut output = Vec::new();
        let mut events = Vec::new();
        let summary = run(&ring, input.as_bytes(), &mut output, &options(), |event| {
            events.push(match event {
                RowEvent::Minted => None,
                RowEvent::Rejected(rejection) => Some((
                    rejection.line,
                    String::from_utf8(rejection.record[1].to_vec()).unwrap(),
                )),
                RowEvent::Duplicate(_) => panic!("no duplicates here"),
            });
        })
        .unwrap();
        assert_eq!(summary.rows, rows as u64);
        assert_eq!(summary.rejected, bad.len() as u64);
        assert_eq!(summary.minted, (rows - bad.len()) as u64);
        // One event a row, in input order; rejections name their line (the header is line 1).
        assert_eq!(events.len(), rows);
        for (i, event) in events.iter().enumerate() {
            match event {
                Some((line, email)) => {
                    assert!(bad.contains(&i), "row {i} rejected");
                    assert_eq!(*line, i as u64 + 2);
                    assert_eq!(*email, format!("not-an-address-{i}"));
                }
                None => assert!(!bad.contains(&i), "row {i} minted"),
            }
        }
        // The output has the good rows in input order, each with a code for its own address.
        let mut reader = csv::Reader::from_reader(output.as_slice());
        assert_eq!(
            reader.headers().unwrap(),
            vec!["name", "email", "code", "kind", "expires_at"]
        );
        let good = (0..rows).filter(|i| !bad.contains(i));
        let mut count = 0;
        for (record, i) in reader.records().zip(good) {
            let record = record.unwrap();
            assert_eq!(&record[0], format!("P{i}"));
            let outcome = verify(
                &ring,
                &record[2],
                &record[1],
                UnixTime::from_unix(1_790_000_000),
                &crate::VerifyOptions::default(),
            );
            assert!(outcome.is_valid(), "row {i}: {outcome}");
            count += 1;
        }
        assert_eq!(count, rows - bad.len());
    }

    /// Gives `good` bytes, then fails.
    struct FailingAfter<'a> {
        good: &'a [u8],
    }

    impl Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.good.len().min(buf.len()).min(1000);
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good = &self.good[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_comes_after_the_rows_read_before_it() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let rows = CHUNK_ROWS * 5;
        let (input, _) = recipients(rows);
        let input = FailingAfter {
            good: input.as_bytes(),
        };
        let mut output = Vec::new();
        let mut seen = 0u64;
        let result = run(&ring, input, &mut output, &options(), |_| seen += 1);
        let Err(Error::Io { message, .. }) = result else {
            panic!("expected an error, got {result:?}");
        };
        assert!(message.contains("disk on fire"), "{message}");
        // Every complete row before the failure was reported and the minted ones written.
        assert!(seen >= rows as u64 - 1, "{seen} rows reported");
        let written = csv::Reader::from_reader(output.as_slice())
            .records()
            .count() as u64;
        assert!(
            written > 0 && written <= seen,
            "{written} written, {seen} seen"
        );
    }

    #[test]
    fn no_data_rows_gives_the_header_alone() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let mut output = Vec::new();
        let summary = run(&ring, &b"email,team\n"[..], &mut output, &options(), |_| {}).unwrap();
        assert_eq!(summary, Summary::default());
        assert_eq!(output, b"email,team,code,kind,expires_at\n");
    }

    #[test]
    fn duplicates_are_minted_once_unless_allowed() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let mut input = String::from("name,email\n");
        for i in 0..CHUNK_ROWS * 3 {
            // Every address twice, the second time in another case, chunks apart.
            input.push_str(&format!("P{i},p{i}@contoso.com\n"));
        }
        for i in 0..CHUNK_ROWS * 3 {
            input.push_str(&format!("Q{i},P{i}@Contoso.com\n"));
        }
        let mut output = Vec::new();
        let mut firsts = Vec::new();
        let summary = run(&ring, input.as_bytes(), &mut output, &options(), |event| {
            if let RowEvent::Duplicate(dup) = event {
                firsts.push((dup.line, dup.reason));
            }
        })
        .unwrap();
        assert_eq!(summary.minted, CHUNK_ROWS as u64 * 3);
        assert_eq!(summary.duplicates, CHUNK_ROWS as u64 * 3);
        assert_eq!(firsts.len(), CHUNK_ROWS * 3);
        let (line, reason) = &firsts[0];
        assert_eq!(*line, CHUNK_ROWS as u64 * 3 + 2);
        assert!(
            reason.starts_with("the same recipient as line 2:"),
            "{reason}"
        );
        let rows = csv::Reader::from_reader(output.as_slice())
            .records()
            .count();
        assert_eq!(rows, CHUNK_ROWS * 3);

        let allowed = BatchOptions {
            allow_duplicates: true,
            ..options()
        };
        let mut output = Vec::new();
        let summary = run(&ring, input.as_bytes(), &mut output, &allowed, |_| {}).unwrap();
        assert_eq!(summary.minted, CHUNK_ROWS as u64 * 6);
        assert_eq!(summary.duplicates, 0);
    }

    #[test]
    fn a_row_that_is_not_utf8_stops_the_run_at_its_line() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let mut input = b"name,email\nAlice,alice@contoso.com\n".to_vec();
        input.extend_from_slice(b"Zo\xeb,zoe@contoso.com\nBob,bob@contoso.com\n");
        let mut output = Vec::new();
        let result = run(&ring, input.as_slice(), &mut output, &options(), |_| {});
        assert_eq!(result, Err(Error::NotUtf8 { line: 3 }));
    }

    #[test]
    fn the_output_is_written_as_the_input_was_unless_told_otherwise() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let input = "\u{feff}Name;E-mail Address\r\nDupont, Marie;marie@contoso.fr\r\n";
        let mut output = Vec::new();
        run(&ring, input.as_bytes(), &mut output, &options(), |_| {}).unwrap();
        let text = String::from_utf8(output).unwrap();
        assert!(
            text.starts_with("\u{feff}Name;E-mail Address;code;kind;expires_at\n"),
            "{text}"
        );
        assert!(text.contains("\nDupont, Marie;marie@contoso.fr;"), "{text}");
        let told = BatchOptions {
            merge: MergeOptions {
                bom: Some(false),
                delimiter: Some(b','),
                raw_cells: false,
            },
            ..options()
        };
        let mut output = Vec::new();
        run(&ring, input.as_bytes(), &mut output, &told, |_| {}).unwrap();
        let text = String::from_utf8(output).unwrap();
        assert!(text.starts_with("Name,E-mail Address,code,"), "{text}");
        assert!(
            text.contains("\n\"Dupont, Marie\",marie@contoso.fr,"),
            "{text}"
        );
        // No mark in, none out; a tab in, a tab out.
        let mut output = Vec::new();
        let input = "Name\temail\nBob\tbob@contoso.com\n";
        run(&ring, input.as_bytes(), &mut output, &options(), |_| {}).unwrap();
        assert!(output.starts_with(b"Name\temail\tcode\t"));
    }

    #[test]
    fn formula_cells_are_neutralised_unless_raw() {
        let ring = KeyRing::parse(KEYS).unwrap();
        let input = "name;email\n=HYPERLINK(\"x\");a@contoso.com\n";
        let mut output = Vec::new();
        run(&ring, input.as_bytes(), &mut output, &options(), |_| {}).unwrap();
        let text = String::from_utf8(output).unwrap();
        assert!(
            text.contains("\"'=HYPERLINK(\"\"x\"\")\";a@contoso.com;"),
            "{text}"
        );
        let raw = BatchOptions {
            merge: MergeOptions {
                raw_cells: true,
                bom: Some(true),
                delimiter: Some(b','),
            },
            ..options()
        };
        let mut output = Vec::new();
        run(&ring, input.as_bytes(), &mut output, &raw, |_| {}).unwrap();
        assert!(output.starts_with(BOM));
        let text = String::from_utf8(output).unwrap();
        assert!(
            text.contains("\"=HYPERLINK(\"\"x\"\")\",a@contoso.com,"),
            "{text}"
        );
    }
}
