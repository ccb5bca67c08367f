//! A real SMTP server for tests/send.rs: Python's aiosmtpd with the handler in
//! tests/data/send/smtp_server.py, started per test on a free loopback port.
//!
//! `cargo test` needs only python3 with pip: when the machine's Python lacks aiosmtpd, it is
//! installed once under the target folder (tests/support/python.rs) and the server runs with
//! `PYTHONPATH` pointing there. The including file declares `mod support;` and `mod python;`
//! (tests/support/python.rs) too.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::python::{Package, package_path, python_path, python3};
use crate::support::DEADLINE;

/// The password the TLS server takes for the user `campaign`.
pub const PASSWORD: &str = "correct horse battery staple";

/// A file in tests/data/send.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/send")
        .join(name)
}

/// aiosmtpd, installed under the target folder when the machine's Python lacks it.
const AIOSMTPD: Package = Package {
    pip: "aiosmtpd",
    check: "import aiosmtpd.smtp",
    needs: "tests/send.rs runs an SMTP server in Python: install python3 (3.8 or later) with \
            pip (Debian and Ubuntu: apt-get install python3 python3-pip), or aiosmtpd itself \
            (python3 -m pip install aiosmtpd)",
};

/// The folder to put on `PYTHONPATH` for the server; worked out once a test binary.
fn aiosmtpd_path() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| package_path(&AIOSMTPD))
}

/// A running aiosmtpd; killed when dropped.
pub struct Server {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    out: PathBuf,
    /// TLS from the first byte: smtps://.
    implicit_tls: bool,
}

impl Server {
    /// A plain server; `extra` are smtp_server.py's options (`--reject ADDRESS`, `--delay S`).
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        // One file a server, so that a test can start a second one in the same folder.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = dir.join(format!("received-{n}.jsonl"));
        let mut child = python3()
            .arg(data("smtp_server.py"))
            .arg("--out")
            .arg(&out)
            .args(extra)
            .env("PYTHONPATH", python_path(aiosmtpd_path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 does not run ({e}); {}", AIOSMTPD.needs));
        let stdin = child.stdin.take().unwrap();
        // The first line, `PORT n`, read on its own thread so that a server that never prints
        // it is killed past the deadline instead of holding the test.
        let stdout = child.stdout.take().unwrap();
        let (sender, first_line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = first_line.recv_timeout(DEADLINE).unwrap_or_default();
        let Some(port) = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the SMTP server did not start (its errors are above): {line:?}");
        };
        Self {
            child,
            _stdin: stdin,
            port,
            out,
            implicit_tls: extra.contains(&"--implicit-tls"),
        }
    }

    /// A server that requires TLS (STARTTLS, or `--implicit-tls`) and a login with
    /// [`PASSWORD`], its certificate signed by tests/data/send/ca.pem.
    pub fn start_tls(dir: &Path, extra: &[&str]) -> Self {
        let cert = data("server.pem");
        let key = data("server-key.pem");
        let mut args = vec![
            "--tls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            "--password",
            PASSWORD,
        ];
        args.extend_from_slice(extra);
        Self::start(dir, &args)
    }

    pub fn url(&self) -> String {
        let scheme = if self.implicit_tls { "smtps" } else { "smtp" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, in the order the server took them.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // A line still being written has no line end yet.
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Received {
                    to: v["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                        .collect(),
                    data: v["data"].as_str().unwrap().to_owned(),
                    tls: v["tls"].as_bool().unwrap(),
                    auth: v["auth"].as_bool().unwrap(),
                    mechanisms: v["auth_mechanisms"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m.as_str().unwrap().to_owned())
                        .collect(),
                    received_at: v["received_at"].as_f64().unwrap(),
                }
            })
            .collect()
    }

    /// Waits until the server has received at least `n` messages, and returns them.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the server received {} messages within {DEADLINE:?}, not {n}",
                received.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (every connection breaks); the messages it received.
    pub fn stop(mut self) -> Vec<Received> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.received()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message as the server took it.
#[derive(Debug)]
pub struct Received {
    pub to: Vec<String>,
    pub data: String,
    pub tls: bool,
    pub auth: bool,
    /// The AUTH mechanisms the connection logged in with.
    pub mechanisms: Vec<String>,
    /// When the server took it (Unix seconds, the server's clock).
    pub received_at: f64,
}

impl Received {
    /// The code after `CODE: ` (the tests' templates), from the quoted-printable body if
    /// the message was encoded so.
    pub fn code(&self) -> String {
        let body = quoted_printable_decode(&self.data);
        let start = body.find("CODE: ").expect("a code in the message") + 6;
        body[start..start + 29].to_owned()
    }
}

/// Enough of quoted-printable for the tests: soft line breaks and `=XX` escapes.
pub fn quoted_printable_decode(text: &str) -> String {
    let text = text.replace("=\r\n", "").replace("=\n", "");
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
