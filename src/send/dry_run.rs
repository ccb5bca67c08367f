//! The dry run: each message written as a file a mail client opens, nothing sent, no journal
//! written, no connection opened and no token asked for.

use std::path::{Path, PathBuf};

use super::prepare::{RowOutcome, prepare};
use super::{Campaign, Journal, JournalState, SendOptions};
use crate::Error;

/// The journal's state as a dry run sees it: read without taking its lock or changing it,
/// with the campaign's expiry put into `options` on a resumed campaign; empty if there is
/// no journal.
///
/// # Errors
///
/// [`Error::Journal`] when the journal exists and cannot be read.
pub fn peek_journal(path: &Path, options: &mut SendOptions) -> Result<JournalState, Error> {
    if !path.exists() {
        return Ok(JournalState::default());
    }
    let state = Journal::peek(path)?;
    if state.expires_at.is_some() {
        options.mint.default_expiry = state.expires_at;
    }
    Ok(state)
}

/// Writes each ready row's message to `dir` as `LINE-ADDRESS.eml` (mode 0600: it holds a
/// working code) and calls `on_row` for every row, with the file written for a ready one.
/// With `options.limit`, only the first rows to send are written; the others are passed
/// to `on_row` with no file.
///
/// # Errors
///
/// As [`prepare`]; [`Error::Config`] when `dir` already holds messages (two runs' messages
/// mixed in one folder cannot be told apart); [`Error::Io`] when a file cannot be written.
pub fn write(
    campaign: &Campaign<'_>,
    input: impl std::io::Read,
    dir: &Path,
    mut on_row: impl FnMut(&RowOutcome, Option<&Path>),
) -> Result<(), Error> {
    if let Ok(entries) = std::fs::read_dir(dir)
        && let Some(old) = entries
            .filter_map(Result::ok)
            .find(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
    {
        return Err(Error::Config {
            reason: format!(
                "--dry-run {}: the folder already holds messages ({}); give a new or empty \
                 folder",
                dir.display(),
                old.file_name().to_string_lossy()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|err| Error::io("creating the dry-run folder", &err))?;
    let limit = campaign.options.limit.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut failed = None;
    prepare(campaign, input, |outcome| {
        let path = match &outcome {
            RowOutcome::Ready { prepared, .. } if written < limit => {
                match write_one(dir, prepared.line, &prepared.to, &prepared.mail) {
                    Ok(path) => {
                        written += 1;
                        Some(path)
                    }
                    Err(err) => {
                        failed = Some(err);
                        return false;
                    }
                }
            }
            _ => None,
        };
        on_row(&outcome, path.as_deref());
        true
    })?;
    failed.map_or(Ok(()), Err)
}

fn write_one(
    dir: &Path,
    line: u64,
    to: &lettre::Address,
    mail: &super::Mail,
) -> Result<PathBuf, Error> {
    let safe: String = to
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{line:06}-{safe}.eml"));
    let message = mail.to_message().map_err(|err| Error::Batch {
        reason: format!("line {line}: cannot build the message: {err}"),
    })?;
    // A message holds a working code: readable by its owner only.
    crate::fsutil::private_options()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &message.formatted()))
        .map_err(|err| Error::io("writing a dry-run message", &err))?;
    Ok(path)
}
