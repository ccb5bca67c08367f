//! `invitegate batch`: the library's streaming batch with files, progress and a summary.
//!
//! Files are precious here: every output is checked against every input and every other
//! output by device and inode before anything is opened for writing, file outputs are written
//! beside their target and renamed into place only when the run succeeds, and the mail-merge
//! file (it holds live codes) is created 0600.

use std::fs::File;
use std::io::{IsTerminal as _, Read};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use invitegate::batch::{BatchOptions, MergeOptions, MintOptions, ReadOptions, RowEvent};
use invitegate::fsutil::Privacy;
use time::OffsetDateTime;

use super::codes::ExpiryArgs;
use super::output::{self, Named, Rejects, Sink, count, is_stdio};
use super::{KeySource, Status, keys};

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    keys: KeySource,
    #[command(flatten)]
    mint: RowMintArgs,
    /// Write the good rows and set bad rows aside in --rejects instead of failing.
    #[arg(long)]
    skip_invalid: bool,
    /// With --skip-invalid: where rejected (and duplicate) rows go, with an `error` column.
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Output CSV; `-` or absent for standard output (a stream: it cannot be undone).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Start the output with a UTF-8 byte order mark, so that Excel reads its accents.
    /// Default: as the input did.
    #[arg(long, conflicts_with = "no_bom")]
    bom: bool,
    /// Start the output without a byte order mark, though the input had one.
    #[arg(long)]
    no_bom: bool,
    /// The field delimiter of the output: `,`, `;`, `tab` or one other character. Default:
    /// the input's.
    #[arg(long, value_name = "CHAR")]
    output_delimiter: Option<String>,
    /// Write input cells as they are, even those starting with = + - @ that a spreadsheet
    /// runs as formulas (by default they get a leading ').
    #[arg(long)]
    raw_cells: bool,
    /// Mint a code for every row, even for a recipient an earlier row named.
    #[arg(long)]
    allow_duplicates: bool,
    /// Recipients CSV; `-` for standard input.
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

impl BatchArgs {
    /// Usage errors the flags' grammar cannot express, each naming the flag.
    fn check_usage(&self) -> anyhow::Result<()> {
        if self.rejects.is_some() && !self.skip_invalid {
            bail!(
                "--rejects takes effect only with --skip-invalid (without it, a bad row fails \
                 the run and nothing is set aside); add --skip-invalid"
            );
        }
        if self.skip_invalid && self.rejects.is_none() {
            bail!("--skip-invalid needs --rejects FILE, or the rejected rows would be lost");
        }
        Ok(())
    }
}

/// How each row's code is minted: the flags `batch` and `send` share.
#[derive(Debug, Args)]
pub struct RowMintArgs {
    #[command(flatten)]
    pub expiry: ExpiryArgs,
    /// Allow domain codes for public suffixes and free-mail providers.
    #[arg(long)]
    allow_public_domain: bool,
}

impl RowMintArgs {
    /// The mint options these flags ask for, at `now`.
    pub fn mint_options(&self, now: OffsetDateTime) -> anyhow::Result<MintOptions> {
        Ok(MintOptions {
            default_expiry: self.expiry.resolve(now)?,
            now,
            allow_public_domains: self.allow_public_domain,
        })
    }

    /// The mint options of `send`, where `--tz` alone is allowed: it sets the zone dates are
    /// written in.
    pub fn send_mint_options(&self, now: OffsetDateTime) -> anyhow::Result<MintOptions> {
        Ok(MintOptions {
            default_expiry: self.expiry.resolve_any_zone(now)?,
            now,
            allow_public_domains: self.allow_public_domain,
        })
    }
}

/// How the recipients CSV is read: the flags `batch` and `send` share.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The field delimiter of the input: `,`, `;`, `tab` or one other character. Default:
    /// detected from the header line (`,`, `;` or tab).
    #[arg(long, value_name = "CHAR")]
    delimiter: Option<String>,
    /// The header of the email column, when it is not a common one: email, e-mail address,
    /// mail, or Outlook's in German, French, Spanish, Italian or Dutch (E-Mail-Adresse,
    /// Adresse de messagerie, Correo electrónico, ...; any case, accents or not).
    #[arg(long, value_name = "NAME")]
    email_column: Option<String>,
    /// The input's text encoding, e.g. windows-1252 for a "CSV" saved by Excel. Default
    /// UTF-8; other input is refused with the line that is not.
    #[arg(long, value_name = "ENCODING")]
    encoding: Option<String>,
}

impl ReadArgs {
    /// The reader's options, or a usage error naming the flag.
    pub fn read_options(&self) -> anyhow::Result<ReadOptions> {
        let delimiter = self
            .delimiter
            .as_deref()
            .map(|text| delimiter("--delimiter", text))
            .transpose()?;
        let encoding = match self.encoding.as_deref() {
            None => None,
            Some(label) => Some(
                encoding_rs::Encoding::for_label(label.trim().as_bytes()).with_context(|| {
                    format!("--encoding {label}: not an encoding name; try windows-1252 or utf-8")
                })?,
            ),
        };
        Ok(ReadOptions {
            delimiter,
            email_column: self.email_column.clone(),
            encoding,
        })
    }
}

/// A delimiter flag's value: one ASCII character other than a quote or a line break, or the
/// word `tab`.
fn delimiter(flag: &str, text: &str) -> anyhow::Result<u8> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text != "\"" && !text.contains(['\n', '\r']) => {
            text.bytes().next().context("one character")
        }
        _ => bail!("{flag} {text:?}: give one ASCII character such as , or ; or the word tab"),
    }
}

/// `invitegate batch`.
pub fn batch(args: &BatchArgs) -> anyhow::Result<Status> {
    args.check_usage()?;
    let now = OffsetDateTime::now_utc();
    let options = BatchOptions {
        mint: args.mint.mint_options(now)?,
        read: args.read.read_options()?,
        merge: MergeOptions {
            bom: match (args.bom, args.no_bom) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            delimiter: args
                .output_delimiter
                .as_deref()
                .map(|text| delimiter("--output-delimiter", text))
                .transpose()?,
            raw_cells: args.raw_cells,
        },
        allow_duplicates: args.allow_duplicates,
    };
    let output_path = args.output.as_ref().filter(|path| !is_stdio(path));
    check_files(args, output_path)?;
    let ring = keys::load(&args.keys)?;
    let input: Box<dyn Read> = if is_stdio(&args.input) {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(&args.input)
            .with_context(|| format!("opening input {}", args.input.display()))?;
        Box::new(file)
    };
    output::remove_unfinished_files_on_interrupt();
    let output = match output_path {
        Some(path) => Sink::create("--output", path, Privacy::Private)?,
        None => Sink::stdout(),
    };
    let rejects = match &args.rejects {
        Some(path) => Some(Sink::create("--rejects", path, Privacy::Private)?),
        None => None,
    };
    run(args, &ring, input, output, rejects, &options)
}

/// Refuses outputs that are inputs or each other: by device and inode, so that hard links,
/// `./` paths, symbolic links and shell redirections are caught too.
fn check_files(args: &BatchArgs, output_path: Option<&PathBuf>) -> anyhow::Result<()> {
    let mut inputs = Vec::new();
    if is_stdio(&args.input) {
        inputs.extend(output::stdin_named());
    } else {
        inputs.push(Named::path("the input", &args.input)?);
    }
    if let Some(path) = args.keys.file() {
        inputs.push(Named::path("the keys file", &path)?);
    }
    let mut outputs = Vec::new();
    match output_path {
        Some(path) => outputs.push(Named::path("--output", path)?),
        None => outputs.extend(output::stdout_named()),
    }
    if let Some(path) = &args.rejects {
        outputs.push(Named::path("--rejects", path)?);
    }
    output::check_distinct(&inputs, &outputs)
}

/// Runs the batch into the outputs, and commits them only when it succeeds.
fn run(
    args: &BatchArgs,
    ring: &invitegate::KeyRing,
    input: Box<dyn Read>,
    mut output: Sink,
    rejects: Option<Sink>,
    options: &BatchOptions,
) -> anyhow::Result<Status> {
    // Whether a failed run leaves an earlier file in place, or none: said so in its message.
    let existed = output
        .target()
        .is_some_and(|path| std::fs::symlink_metadata(path).is_ok());
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows  {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut rejects_csv = rejects.map(|sink| Rejects::new(sink, args.raw_cells));
    let mut write_error = None;
    let mut counted = Counted {
        inner: &mut output,
        bytes: 0,
    };
    let summary = invitegate::batch::run(ring, input, &mut counted, options, |event| {
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        let rejection = match event {
            RowEvent::Rejected(rejection) | RowEvent::Duplicate(rejection) => rejection,
            _ => return,
        };
        let message = format!("line {}: {}", rejection.line, rejection.reason);
        match &progress {
            Some(bar) => bar.println(format!("invitegate: {message}")),
            None => eprintln!("invitegate: {message}"),
        }
        let Some(writer) = rejects_csv.as_mut() else {
            return;
        };
        if let Err(err) = writer.write(
            rejection.dialect,
            rejection.header,
            rejection.record,
            &message,
        ) {
            write_error.get_or_insert(err);
        }
    });
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let streamed = counted.bytes;
    let file_output = output.target().map(|p| p.display().to_string());
    let nothing_written = || match &file_output {
        Some(path) if existed => format!("no output was written ({path} is unchanged)"),
        Some(path) => format!("no output was written ({path} was not created)"),
        None if streamed == 0 => "nothing was written to standard output".to_owned(),
        None => "the output on standard output is incomplete".to_owned(),
    };
    let summary = match summary {
        Ok(summary) => summary,
        Err(err) => {
            let err = anyhow::Error::new(err);
            if super::is_closed_pipe(&err) {
                return Err(err);
            }
            return Err(err.context(nothing_written()));
        }
    };
    if let Some(err) = write_error {
        return Err(err).context("writing the rejects file")?;
    }
    let line = format!(
        "batch: {} read, {} minted, {} rejected, {} left out",
        count(summary.rows, "row"),
        count(summary.minted, "code"),
        count(summary.rejected, "row"),
        count(summary.duplicates, "duplicate")
    );
    if summary.rejected > 0 && !args.skip_invalid {
        eprintln!("invitegate: {line}");
        eprintln!(
            "invitegate: {}: fix the rejected rows, or pass --skip-invalid --rejects FILE to set \
             them aside",
            nothing_written()
        );
        // Dropping the outputs removes their temporary files.
        return Ok(Status::NotVerified);
    }
    let rejects = rejects_csv.map(Rejects::finish).transpose()?;
    output.commit()?;
    if let Some(rejects) = rejects {
        rejects.commit().context("writing the rejects file")?;
    }
    eprintln!("invitegate: {line}");
    Ok(Status::Success)
}

/// A writer that counts the bytes it passes on: whether a stream output got anything.
struct Counted<'w, W> {
    inner: &'w mut W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
