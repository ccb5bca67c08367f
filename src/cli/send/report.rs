//! What a run says: the events of the check and of the delivery, the progress, the rejects
//! file, and the command that resumes it; and the signals that stop it.

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use invitegate::send::{Event, campaign};

use super::settings::Plan;
use crate::cli::output::{Rejects, Sink};

/// How often a plain progress line is printed when standard error is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Prints what the library says while the journal is opened and the rows checked.
pub(super) fn say(event: &Event<'_>) {
    match event {
        Event::Resuming {
            journal,
            expires_at,
        } => eprintln!(
            "invitegate: resuming the campaign in {} (codes expire at {})",
            journal.display(),
            campaign::expiry_text(*expires_at)
        ),
        Event::ExpiryKept { asked_in } => eprintln!(
            "invitegate: note: --expires-in {asked_in} is not applied: a resumed campaign keeps \
             its codes' expiry (another expiry needs a new campaign: another --journal)"
        ),
        Event::Invalid { line, reason } => eprintln!("invitegate: line {line}: {reason}"),
        Event::LeftOut(outcome) => {
            if let Some(why) = outcome.left_out() {
                eprintln!("invitegate: {why}");
            }
        }
        Event::SendingAgain { line, to, code } => eprintln!(
            "invitegate: line {line}: {to} (code fingerprint {code}) was handed over by an \
             earlier run with no reply recorded; sending it again (--skip-uncertain leaves it)"
        ),
        Event::NoLongerInFile { to, line } => eprintln!(
            "invitegate: note: {to} (line {line} when an earlier run sent it a message) is no \
             longer in the recipients file"
        ),
        _ => {}
    }
}

pub(super) fn write_rejects(
    input: &[u8],
    sink: Sink,
    plan: &Plan,
    rejects: &[(csv::ByteRecord, String)],
) -> anyhow::Result<()> {
    let path = sink.target().map(Path::to_owned).unwrap_or_default();
    if rejects.is_empty() {
        // Nothing refused now: a rejects file of an earlier run of this campaign would list
        // rows that have since gone. Only a rejects file is removed: its header ends with
        // the `error` column.
        let ours = std::fs::read(&path).is_ok_and(|text| {
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            first.trim_ascii_end().ends_with(b"error")
        });
        if ours && std::fs::remove_file(&path).is_ok() {
            eprintln!(
                "invitegate: removed {}: no row is refused now",
                path.display()
            );
        }
        return Ok(());
    }
    // The header and dialect as the rows were read, for a rejects file laid out like batch's.
    let reader = invitegate::batch::Recipients::open(input, &plan.options.read)?;
    let (header, dialect) = (reader.header(), reader.dialect());
    let mut writer = Rejects::new(sink, false);
    for (record, error) in rejects {
        writer
            .write(dialect, header, record, error)
            .context("writing the rejects file")?;
    }
    writer
        .finish()?
        .commit()
        .context("writing the rejects file")?;
    eprintln!("invitegate: refused rows are in {}", path.display());
    Ok(())
}

/// Completes with the number of the first of SIGINT (Ctrl-C), SIGTERM (`docker stop`,
/// systemd, `timeout`) and SIGHUP (a closed terminal) to arrive: each stops a run as Ctrl-C
/// does. Never completes if no handler can be installed.
pub(super) async fn stop_signal() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut streams = Vec::new();
        for (kind, number) in [
            (SignalKind::interrupt(), 2),
            (SignalKind::terminate(), 15),
            (SignalKind::hangup(), 1),
        ] {
            if let Ok(stream) = signal(kind) {
                streams.push((stream, number));
            }
        }
        if streams.is_empty() {
            std::future::pending::<()>().await;
        }
        std::future::poll_fn(|cx| {
            for (stream, number) in &mut streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*number);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        2
    }
}

/// This process's command line, quoted for a POSIX shell.
pub(super) fn resume_command() -> String {
    std::env::args()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
            {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A progress bar on a terminal, else a plain line every few seconds.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::cell::Cell<u64>,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    pub(super) fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {human_pos}/{human_len} messages  {per_sec}  eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total,
            done: std::cell::Cell::new(0),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    pub(super) fn inc(&self) {
        self.done.set(self.done.get() + 1);
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last.get().elapsed() >= PROGRESS_EVERY => {
                self.last.set(Instant::now());
                eprintln!(
                    "invitegate: {}/{} messages done",
                    self.done.get(),
                    self.total
                );
            }
            None => {}
        }
    }

    pub(super) fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("invitegate: {line}")),
            None => eprintln!("invitegate: {line}"),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
