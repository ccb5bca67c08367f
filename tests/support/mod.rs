//! Shared by the CLI test files: the built binary in a clean environment, in a temporary
//! directory with the spec vectors' key 7.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

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
    let status = wait_within(&mut child, deadline);
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
