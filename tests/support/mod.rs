//! Shared by the CLI test files: the built binary in a clean environment, in a temporary
//! directory with the spec vectors' key 7.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod tls;

use std::io::{Read, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const KEY_7: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const KEY_8: &str = "8:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// alice@contoso.com, key 7, expires 2030-01-01.
pub const ALICE_CODE: &str = "243Q1-PYRG0-DVPFF-Z9H9F-NDX66";
pub const BEFORE_2030: &str = "2029-06-01T00:00:00Z";

/// The binary under test: this build's, or the one `INVITEGATE_TEST_BINARY` names (to check
/// that a test fails against an older build).
pub fn binary() -> String {
    std::env::var("INVITEGATE_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_invitegate").to_owned())
}

/// The binary with a clean environment: no key variables leak in from the caller.
pub fn invitegate(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(dir)
        .env_remove("INVITEGATE_KEYS")
        .env_remove("INVITEGATE_KEYS_FILE")
        .stdin(Stdio::null());
    command
}

/// How long a test waits for a child process it expects to finish by itself: far beyond what
/// any command here needs (a debug build on a busy two-core machine included), and far below
/// CI's limit, so a regression that hangs is a failure with a message, not a stalled run.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn run(command: &mut Command) -> Output {
    output_within(command, DEADLINE)
}

pub fn run_with_stdin(command: &mut Command, input: impl AsRef<[u8]>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input.as_ref());
    drop(stdin);
    wait_with_output_within(child, DEADLINE)
}

/// `Command::output` with a deadline: the child is killed past it and the test fails, naming
/// the command. Standard input is what the command was given (`invitegate` and `shell` give
/// none).
pub fn output_within(command: &mut Command, deadline: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    wait_with_output_within(child, deadline)
}

/// `Child::wait_with_output` with a deadline: stdout and stderr are read on their own threads
/// (a full pipe never blocks the child), and the child is killed past the deadline.
pub fn wait_with_output_within(mut child: Child, deadline: Duration) -> Output {
    output_of(&mut child, deadline)
}

/// [`wait_with_output_within`] for a child the caller keeps (one in a [`KillOnDrop`]).
pub fn output_of(child: &mut Child, deadline: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_within(child, deadline);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `Child::wait` with a deadline: past it the child is killed and the test fails.
pub fn wait_within(child: &mut Child, deadline: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} did not exit within {deadline:?}; killed it",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a shell command line in `dir`, with the binary as `$INVITEGATE`.
pub fn shell(dir: &Path, line: &str) -> Output {
    run(Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("INVITEGATE", binary())
        .env_remove("INVITEGATE_KEYS")
        .env_remove("INVITEGATE_KEYS_FILE")
        .stdin(Stdio::null()))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

pub fn status(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

/// An `Authorization: Basic` header line (with its CR LF) for `user` and `password`.
pub fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {auth}\r\n")
}

/// `invitegate serve` from `dir` on a free loopback port with `dir`'s `keys.txt`: add the rest
/// of the command line.
pub fn serve_command(dir: &Path) -> Command {
    let mut command = invitegate(dir);
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--keys-file",
        "keys.txt",
    ]);
    command
}

/// A code for `alice@contoso.com` under the ring `keys` (text), valid for an hour from now.
pub fn alice_code(keys: &str) -> String {
    let expiry = invitegate::Expiry::from_datetime(
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    )
    .unwrap();
    invitegate::mint(
        &invitegate::KeyRing::parse(keys).unwrap(),
        &invitegate::Audience::email("alice@contoso.com").unwrap(),
        expiry,
    )
    .to_string()
}

/// One HTTP/1.1 response read from a connection, framed by its `Content-Length`.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// Whether the server said `Connection: close`.
    pub close: bool,
    /// How many bytes of the buffer the response took.
    pub len: usize,
}

/// The response at the start of `buffer`, once all of it has arrived.
pub fn response_in(buffer: &[u8]) -> Option<Response> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let len = end + 4 + length;
    if buffer.len() < len {
        return None;
    }
    Some(Response {
        status: head.get(9..12).unwrap().parse().unwrap(),
        body: String::from_utf8_lossy(&buffer[end + 4..len]).into_owned(),
        close: head.lines().any(|l| l == "connection: close"),
        len,
    })
}

/// One plain-HTTP request on a new connection to `addr`, sent with `Connection: close` and
/// read to the end: the status and the body.
pub fn ask_once(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let request = request.replacen("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n", 1);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// The value of `series` (a metric's name and labels, as `/metrics` writes them) in a scrape;
/// panics, showing the scrape, when the series is not there.
pub fn counter(scrape: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {series} in {scrape}"))
        .parse()
        .unwrap()
}

/// A temporary directory with `keys.txt` (mode 0600) holding the spec vectors' key 7.
pub fn with_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.txt");
    std::fs::write(&path, format!("{KEY_7}\n")).unwrap();
    set_mode(&path, 0o600);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The names in a directory, sorted: to see that no temporary file is left behind.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A spawned process (a server, usually) that is killed and reaped when dropped, a panicking
/// test included, so that no test leaves a process behind. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Once reaped, `kill` does nothing: no signal reaches a process that reused the id.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a process writes to a pipe, read on a thread of their own: a test waits for one
/// with a deadline, and the pipe is always drained, so a chatty process never blocks on it.
#[derive(Debug)]
pub struct Lines {
    receiver: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut reader = std::io::BufReader::new(pipe);
            let mut forward = true;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    // Nobody listens any more: keep draining so the process never blocks.
                    Ok(_) => forward = forward && sender.send(line).is_ok(),
                }
            }
        });
        Self {
            receiver,
            seen: Vec::new(),
        }
    }

    /// The next line (with its line end), or `None` when the pipe is closed. Past the
    /// deadline the test fails, showing the lines seen so far.
    pub fn next_within(&mut self, deadline: Duration) -> Option<String> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.receiver.recv_timeout(deadline) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!(
                "no line within {deadline:?}; so far:\n{}",
                self.seen.concat()
            ),
        }
    }

    /// Reads lines until `wanted` holds for one and returns it. The test fails, showing the
    /// lines seen, if the pipe closes first or the deadline passes.
    pub fn wait_for(&mut self, mut wanted: impl FnMut(&str) -> bool, deadline: Duration) -> String {
        let started = Instant::now();
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            let Some(line) = self.next_within(left) else {
                panic!(
                    "the stream ended before the line awaited; it said:\n{}",
                    self.seen.concat()
                );
            };
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Reads to the end of the stream (the process exits or closes the pipe) and returns
    /// every line, those read before included.
    pub fn rest_within(&mut self, deadline: Duration) -> String {
        let started = Instant::now();
        while self
            .next_within(deadline.saturating_sub(started.elapsed()))
            .is_some()
        {}
        self.seen.concat()
    }

    /// The lines read so far, joined.
    pub fn seen(&self) -> String {
        self.seen.concat()
    }
}

/// A log filter for `serve` that keeps its start-up lines (the address it listens on among
/// them) and its warnings, but not a line per request.
pub const START_UP_LOG: &str = "warn,invitegate::cli::serve=info";

/// A `serve` process started by [`serve`]: killed when dropped.
#[derive(Debug)]
pub struct Server {
    pub process: KillOnDrop,
    /// Where it listens, as it logged.
    pub addr: std::net::SocketAddr,
    /// Its log (JSON lines), after the line that says it serves.
    pub log: Lines,
}

/// Starts `command` (a `serve` whose log filter lets the start-up lines through: the default,
/// or [`START_UP_LOG`]) with JSON logs on a pipe, and waits until it logs that it serves.
pub fn serve(command: &mut Command) -> Server {
    command
        .env("INVITEGATE_LOG_FORMAT", "json")
        .stderr(Stdio::piped());
    let mut process = KillOnDrop(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} does not start: {e}")),
    );
    let mut log = Lines::new(process.stderr.take().unwrap());
    let line = log.wait_for(
        |line| line.contains(r#""message":"invitegate serving""#),
        DEADLINE,
    );
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = json["address"].as_str().unwrap().parse().unwrap();
    Server { process, addr, log }
}

/// Sends `signal` (`TERM`, `HUP`, `INT`) to a process with the shell's builtin `kill` (no
/// procps needed on the machine).
pub fn signal(pid: u32, signal: &str) {
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {pid}"))
        .stdin(Stdio::null()));
    assert!(out.status.success(), "kill -{signal} {pid}: {out:?}");
}

// ---- fingerprints, recomputed from their definitions, not by the library ----

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A code's fingerprint as `Code::fingerprint` documents it: ten hex digits (the first five
/// bytes) of SHA-256 over the code's fifteen bytes. The bytes are decoded from the display form
/// with the `base32` crate (the first 24 symbols; the 25th is the check symbol), not by the
/// library.
pub fn code_fingerprint(display: &str) -> String {
    use sha2::Digest as _;
    let symbols: String = display.chars().filter(|&c| c != '-').collect();
    assert_eq!(symbols.len(), 25, "{display}");
    let bytes = base32::decode(base32::Alphabet::Crockford, &symbols[..24]).expect("base32");
    assert_eq!(bytes.len(), 15, "{display}");
    hex(&sha2::Sha256::digest(&bytes)[..5])
}

/// A key's fingerprint as `KeyRing::fingerprint` documents it: the first eight bytes of the
/// key's HMAC-SHA256 (the MAC of CODE-FORMAT.md section 2) over a fixed message, in two hex
/// groups of eight digits. The message is written out here; the library keeps it in a private
/// constant.
pub fn key_fingerprint(key: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"invitegate key fingerprint v1");
    let full = mac.finalize().into_bytes();
    format!("{}-{}", hex(&full[..4]), hex(&full[4..8]))
}

// ---- the process's log, captured ----

/// A log writer that keeps what it is given, for a test binary that installs the process's
/// log writer (`invitegate::server::log::init`) and reads the lines back.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
