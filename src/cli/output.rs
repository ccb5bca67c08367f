//! Where commands write: standard output (a stream), or a file written beside its target and
//! renamed into place only when the command succeeds. Also the checks that no output is a file
//! the command reads or another of its outputs, and the Ctrl-C handler that removes unfinished
//! files.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use invitegate::fsutil::{AtomicFile, FileId, Privacy};

/// The temporary files of outputs not committed yet: the interrupt handler removes them.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// `n` and the noun, plural unless `n` is one: `1 row`, `2 rows`.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Whether a path argument means standard input or output.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A file a command reads or writes, by the name the user gave, for the same-file checks.
#[derive(Debug)]
pub struct Named {
    /// How to name it in a message: `--rejects bad.csv`, `standard input`.
    pub label: String,
    id: FileId,
    /// A regular file or a path with nothing there yet; devices such as `/dev/null` may be
    /// read and written at once and are not compared.
    regular: bool,
}

impl Named {
    /// A path argument, for a message as `label PATH`.
    pub fn path(label: &str, path: &Path) -> anyhow::Result<Self> {
        let id = FileId::of_path(path)
            .with_context(|| format!("{label} {}: cannot examine it", path.display()))?;
        let regular = std::fs::metadata(path).map_or(true, |meta| meta.is_file());
        Ok(Self {
            label: format!("{label} {}", path.display()),
            id,
            regular,
        })
    }

    /// Standard input or output when it is a regular file (a shell redirection), else `None`:
    /// pipes and terminals are no file that could be overwritten.
    #[cfg(unix)]
    pub fn stdio(label: &str, fd: std::os::fd::BorrowedFd<'_>) -> Option<Self> {
        let file = File::from(fd.try_clone_to_owned().ok()?);
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(Self {
            label: label.to_owned(),
            id: FileId::of_file(&file).ok()?,
            regular: true,
        })
    }
}

/// Refuses when an output is one of the inputs or another output, by device and inode.
pub fn check_distinct(inputs: &[Named], outputs: &[Named]) -> anyhow::Result<()> {
    for (i, output) in outputs.iter().enumerate() {
        if !output.regular {
            continue;
        }
        if let Some(input) = inputs.iter().find(|input| input.id == output.id) {
            bail!(
                "{} is the same file as {}: writing it would destroy what is read; choose \
                 another output",
                output.label,
                input.label
            );
        }
        if let Some(other) = outputs.iter().skip(i + 1).find(|o| o.id == output.id) {
            bail!(
                "{} and {} are the same file; give each output its own file",
                output.label,
                other.label
            );
        }
    }
    Ok(())
}

/// The standard output as a possible same-file conflict, when it is redirected to a file.
pub fn stdout_named() -> Option<Named> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        Named::stdio("standard output", io::stdout().as_fd())
    }
    #[cfg(not(unix))]
    None
}

/// The standard input as a possible same-file conflict, when it is redirected from a file.
pub fn stdin_named() -> Option<Named> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        Named::stdio("standard input", io::stdin().as_fd())
    }
    #[cfg(not(unix))]
    None
}

/// Refuses to let a command's standard output, redirected to a file, land on a file it reads
/// (`invitegate mint --keys-file keys.txt ... >> keys.txt`).
pub fn check_stdout_against(inputs: &[Named]) -> anyhow::Result<()> {
    match stdout_named() {
        Some(stdout) => check_distinct(inputs, &[stdout]),
        None => Ok(()),
    }
}

/// An output being written.
pub enum Sink {
    /// Standard output: a stream, written as it goes.
    Stdout(io::BufWriter<io::Stdout>),
    /// A regular file, written beside its target and renamed into place by [`Sink::commit`].
    File(Pending),
    /// A device or pipe named by path (`/dev/null`): written as it goes, like standard output.
    Device(io::BufWriter<File>),
}

impl Sink {
    /// Standard output.
    pub fn stdout() -> Self {
        Self::Stdout(io::BufWriter::with_capacity(64 * 1024, io::stdout()))
    }

    /// The output file `path`: a temporary file beside it, mode 0600 when `privacy` says so.
    /// A symbolic link is refused for a private file (it could send codes anywhere) and
    /// followed for an ordinary one.
    pub fn create(label: &str, path: &Path, privacy: Privacy) -> anyhow::Result<Self> {
        let shown = || format!("{label} {}", path.display());
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() && privacy == Privacy::Private => bail!(
                "{} is a symbolic link; codes are written only to a regular file: give the \
                 real path",
                shown()
            ),
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = path
                    .canonicalize()
                    .with_context(|| format!("{}: following the symbolic link", shown()))?;
                return Self::create(label, &target, privacy);
            }
            Ok(meta) if !meta.is_file() && !meta.is_dir() => {
                // A device or FIFO cannot be replaced (and must not be): write to it directly.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("opening {}", shown()))?;
                return Ok(Self::Device(io::BufWriter::with_capacity(64 * 1024, file)));
            }
            _ => {}
        }
        let mut pending = PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = AtomicFile::create(path, privacy)
            .with_context(|| format!("creating a temporary file beside {}", shown()))?;
        pending.push(file.temp_path().to_owned());
        Ok(Self::File(Pending {
            file: Some(io::BufWriter::with_capacity(64 * 1024, file)),
        }))
    }

    /// Finishes the output: flushes a stream; syncs a file and renames it into place.
    pub fn commit(self) -> anyhow::Result<()> {
        match self {
            Self::Stdout(mut out) => out.flush().context("writing standard output"),
            Self::Device(mut out) => out.flush().context("writing output"),
            Self::File(pending) => pending.commit(),
        }
    }

    /// The temporary file of a file output, to set its permissions before the commit.
    pub fn temp_path(&self) -> Option<&Path> {
        match self {
            Self::File(pending) => pending.atomic().map(AtomicFile::temp_path),
            _ => None,
        }
    }

    /// Where a file output goes, for messages; `None` for a stream.
    pub fn target(&self) -> Option<&Path> {
        match self {
            Self::File(pending) => pending.atomic().map(AtomicFile::target),
            _ => None,
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::File(pending) => pending.file()?.write(buf),
            Self::Device(out) => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout(out) => out.write_all(buf),
            Self::File(pending) => pending.file()?.write_all(buf),
            Self::Device(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::File(pending) => pending.file()?.flush(),
            Self::Device(out) => out.flush(),
        }
    }
}

/// A file output not committed yet. Dropped, its temporary file is removed.
pub struct Pending {
    /// Always `Some` until the commit takes it.
    file: Option<io::BufWriter<AtomicFile>>,
}

impl Pending {
    fn file(&mut self) -> io::Result<&mut io::BufWriter<AtomicFile>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the output was already committed"))
    }

    fn atomic(&self) -> Option<&AtomicFile> {
        self.file.as_ref().map(io::BufWriter::get_ref)
    }

    fn commit(mut self) -> anyhow::Result<()> {
        // Held across the rename so that an interrupt either finds the temporary file (and
        // removes it) or finds the output already in place.
        let mut pending = PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = self
            .file
            .take()
            .context("the output was already committed")?
            .into_inner()
            .map_err(|err| anyhow::Error::new(err.into_error()))
            .context("writing output")?;
        let temp = file.temp_path().to_owned();
        let target = file.target().to_owned();
        pending.retain(|path| *path != temp);
        file.commit()
            .with_context(|| format!("writing {}", target.display()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(temp) = self.atomic().map(|file| file.temp_path().to_owned()) else {
            return;
        };
        let mut pending = PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|path| *path != temp);
    }
}

/// On Ctrl-C, SIGTERM or SIGHUP: removes the temporary files of outputs not committed yet,
/// says so, and exits with 128 + the signal number, as shells do. Returns once the handler
/// is in place, so that a signal from then on is handled.
pub fn remove_unfinished_files_on_interrupt() {
    let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("interrupts".to_owned())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ = ready_tx.send(());
                return;
            };
            #[cfg(not(unix))]
            runtime.block_on(async move {
                let _ = ready_tx.send(());
                if tokio::signal::ctrl_c().await.is_ok() {
                    interrupted(2);
                }
            });
            #[cfg(unix)]
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let kinds = [
                    (SignalKind::interrupt(), 2),
                    (SignalKind::terminate(), 15),
                    (SignalKind::hangup(), 1),
                ];
                for (kind, number) in kinds {
                    if let Ok(mut stream) = signal(kind) {
                        tokio::spawn(async move {
                            stream.recv().await;
                            interrupted(number);
                        });
                    }
                }
                let _ = ready_tx.send(());
                std::future::pending::<()>().await;
            });
        });
    if spawned.is_ok() {
        let _ = ready.recv();
    }
}

fn interrupted(signal: i32) -> ! {
    // Kept locked until the exit, so that no commit starts after the files are removed.
    let pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for path in pending.iter() {
        let _ = std::fs::remove_file(path);
    }
    if pending.is_empty() {
        eprintln!("invitegate: interrupted");
    } else {
        eprintln!("invitegate: interrupted; no output was written");
    }
    std::process::exit(128 + signal)
}

/// The rejects file of `batch` and `send`: the input's header with an `error` column, then
/// each refused row as it was read, with its error. Cells a spreadsheet would run as a
/// formula get a leading `'` unless `raw`.
/// It is written as the input was (its delimiter, a byte order mark only if it had one, and
/// its legacy encoding if it was read in one), so that the spreadsheet it came from opens it
/// the same way, and the same command reads it again.
pub struct Rejects {
    sink: Sink,
    /// Whether the header is written.
    started: bool,
    raw: bool,
}

impl Rejects {
    /// A rejects file written to `sink`.
    pub fn new(sink: Sink, raw: bool) -> Self {
        Self {
            sink,
            started: false,
            raw,
        }
    }

    fn cells(&self, record: &csv::ByteRecord) -> csv::ByteRecord {
        record
            .iter()
            .map(|cell| {
                if self.raw {
                    cell.to_vec()
                } else {
                    invitegate::batch::neutralise(cell).into_owned()
                }
            })
            .collect()
    }

    /// Writes a refused row of the input whose header is `header`; the header first, once.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub fn write(
        &mut self,
        dialect: invitegate::batch::Dialect,
        header: &csv::ByteRecord,
        record: &csv::ByteRecord,
        error: &str,
    ) -> csv::Result<()> {
        let row = {
            let mut row = self.cells(record);
            row.push_field(error.as_bytes());
            row
        };
        let mut writer = csv::WriterBuilder::new()
            // A row with too few or too many fields is rejected and kept as it was read.
            .flexible(true)
            .delimiter(dialect.delimiter)
            .from_writer(Vec::new());
        if !self.started {
            self.started = true;
            if dialect.bom {
                self.sink.write_all(invitegate::batch::BOM)?;
            }
            let mut header = self.cells(header);
            header.push_field(b"error");
            writer.write_byte_record(&header)?;
        }
        writer.write_byte_record(&row)?;
        let text = writer
            .into_inner()
            .map_err(|err| csv::Error::from(std::io::Error::other(err.to_string())))?;
        match dialect.encoding {
            // The cells were decoded from this encoding, so they encode back; the error text is
            // ours (a character it lacks becomes a numeric character reference).
            Some(encoding) => {
                let text = String::from_utf8_lossy(&text);
                let (bytes, _, _) = encoding.encode(&text);
                self.sink.write_all(&bytes)?;
            }
            None => self.sink.write_all(&text)?,
        }
        Ok(())
    }

    /// Everything written, ready to commit.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub fn finish(mut self) -> anyhow::Result<Sink> {
        self.sink.flush().context("writing the rejects file")?;
        Ok(self.sink)
    }
}
