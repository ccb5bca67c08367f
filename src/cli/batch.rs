//! `invitegate batch`: the library's streaming batch with files, progress and a summary.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use invitegate::batch::{BatchOptions, RowEvent};
use time::OffsetDateTime;

use super::codes::ExpiryArgs;
use super::{KeySource, Status, keys};

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    keys: KeySource,
    #[command(flatten)]
    expiry: ExpiryArgs,
    /// Allow domain codes for public suffixes and free-mail providers.
    #[arg(long)]
    allow_public_domain: bool,
    /// Write the good rows and set bad rows aside in --rejects instead of failing.
    #[arg(long, requires = "rejects")]
    skip_invalid: bool,
    /// With --skip-invalid: where rejected rows go, with an `error` column.
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Output CSV; `-` or absent for standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Recipients CSV; `-` for standard input.
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

/// `invitegate batch`.
pub fn batch(args: &BatchArgs) -> anyhow::Result<Status> {
    let now = OffsetDateTime::now_utc();
    let options = BatchOptions {
        default_expiry: args.expiry.resolve(now)?,
        now,
        allow_public_domains: args.allow_public_domain,
    };
    let ring = keys::load(&args.keys)?;
    let input: Box<dyn Read> = if is_stdio(&args.input) {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(&args.input)
            .with_context(|| format!("opening input {}", args.input.display()))?;
        Box::new(BufReader::new(file))
    };
    let output: Box<dyn Write> = match &args.output {
        Some(path) if !is_stdio(path) => {
            if same_file(path, &args.input) {
                bail!("the output {} would overwrite the input", path.display());
            }
            let file = File::create(path)
                .with_context(|| format!("creating output {}", path.display()))?;
            Box::new(BufWriter::new(file))
        }
        _ => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut rejects = match (&args.rejects, args.skip_invalid) {
        (Some(path), true) => Some(
            csv::WriterBuilder::new()
                // A row with too few or too many fields is rejected and kept as it was read.
                .flexible(true)
                .from_path(path)
                .with_context(|| format!("creating rejects file {}", path.display()))?,
        ),
        _ => None,
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows  {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut rejects_header_written = false;
    let mut write_error = None;
    let summary = invitegate::batch::run(&ring, input, output, &options, |event| {
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        let RowEvent::Rejected(rejection) = event else {
            return;
        };
        let message = format!("line {}: {}", rejection.line, rejection.reason);
        match &progress {
            Some(bar) => bar.println(format!("invitegate: {message}")),
            None => eprintln!("invitegate: {message}"),
        }
        if let Some(writer) = rejects.as_mut() {
            let mut row = rejection.record.clone();
            row.push_field(message.as_bytes());
            let result = if rejects_header_written {
                Ok(())
            } else {
                rejects_header_written = true;
                let mut header = rejection.header.clone();
                header.push_field(b"error");
                writer.write_byte_record(&header)
            };
            if let Err(err) = result.and_then(|()| writer.write_byte_record(&row)) {
                write_error.get_or_insert(err);
            }
        }
    });
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let summary = summary?;
    if let Some(err) = write_error {
        return Err(err).context("writing rejects file");
    }
    if let Some(mut writer) = rejects {
        writer.flush().context("writing rejects file")?;
    }
    eprintln!(
        "invitegate: batch: {} rows read, {} codes minted, {} rows rejected",
        summary.rows, summary.minted, summary.rejected
    );
    if summary.rejected > 0 && !args.skip_invalid {
        eprintln!(
            "invitegate: the output lacks the rejected rows; fix them, or pass --skip-invalid \
             --rejects FILE to set them aside"
        );
        return Ok(Status::NotVerified);
    }
    Ok(Status::Success)
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
