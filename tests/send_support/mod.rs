//! Shared by the send test files: a local HTTP server playing Entra's token endpoint and
//! Microsoft Graph's sendMail (std `TcpListener`, one thread a connection, keep-alive), and a
//! campaign folder with the command that runs `invitegate send` over it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEYS: &str = "5:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
pub const SECRET: &str = "Qx8~unguessable.client-secret_42";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const SENDER: &str = "invites@contoso.com";
/// Base64url SHA-256 of tests/data/send/oauth-client.pem's certificate (DER).
pub const THUMBPRINT: &str = "zMPz1DmLkBAQFRCtHuCs7Za049KBoyDFHywq-37ZDYw";

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/send")
        .join(name)
}

/// A reply the server gives instead of its usual one.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub code: String,
}

impl Scripted {
    pub fn new(status: u16, code: &str) -> Self {
        Self {
            status,
            retry_after: None,
            code: code.to_owned(),
        }
    }
}

/// What the server saw, and how it behaves.
#[derive(Debug, Default)]
pub struct State {
    /// Each token request's form fields.
    pub token_requests: Vec<HashMap<String, String>>,
    /// Tokens issued, and when.
    pub issued: HashMap<String, Instant>,
    /// The `expires_in` the token endpoint declares.
    pub expires_in: u64,
    /// How long a token is honoured, whatever was declared (a revoked or lapsed token).
    pub honoured_for: Option<Duration>,
    /// Every sendMail request: path, bearer token, body.
    pub requests: Vec<(String, String, serde_json::Value)>,
    /// Accepted messages, and when.
    pub accepted: Vec<(Instant, serde_json::Value)>,
    /// Replies given before any other, in order.
    pub queue: VecDeque<Scripted>,
    /// Replies to one recipient's messages, always.
    pub by_recipient: HashMap<String, Scripted>,
    /// Every sendMail refused with this.
    pub always: Option<Scripted>,
    /// Every message taken this long to answer.
    pub delay: Option<Duration>,
}

pub struct GraphServer {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

impl GraphServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            expires_in: 3600,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, port);
                });
            }
        });
        Self { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The recipients of the accepted messages.
    pub fn recipients(&self) -> Vec<String> {
        self.state()
            .accepted
            .iter()
            .map(|(_, m)| recipient(m))
            .collect()
    }
}

pub fn recipient(mail: &serde_json::Value) -> String {
    mail["message"]["toRecipients"][0]["emailAddress"]["address"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn serve(stream: TcpStream, state: &Mutex<State>, port: u16) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let (status, extra, reply) = if path.ends_with("/oauth2/v2.0/token") {
            token(state, &path, &body, port)
        } else if path.ends_with("/sendMail") {
            send_mail(state, &path, &headers, &body)
        } else {
            (404, Vec::new(), String::new())
        };
        let mut response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            reply.len()
        );
        for (name, value) in extra {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&reply);
        stream.write_all(response.as_bytes())?;
    }
}

type Reply = (u16, Vec<(String, String)>, String);

fn refuse(status: u16, error: &str, description: &str) -> Reply {
    let body = serde_json::json!({"error": error, "error_description": description});
    (status, Vec::new(), body.to_string())
}

fn token(state: &Mutex<State>, path: &str, body: &[u8], port: u16) -> Reply {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut state = state.lock().unwrap();
    state.token_requests.push(form.clone());
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
    {
        return refuse(400, "unauthorized_client", "AADSTS700016: unknown app");
    }
    if let Some(secret) = form.get("client_secret") {
        if secret != SECRET {
            return refuse(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1",
            );
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        let audience = format!("http://127.0.0.1:{port}{path}");
        if let Err(why) = check_assertion(assertion, &audience) {
            return refuse(401, "invalid_client", &format!("AADSTS700027: {why}"));
        }
    } else {
        return refuse(401, "invalid_client", "AADSTS7000216: no credential");
    }
    let token = format!("tok-{}", state.issued.len() + 1);
    state.issued.insert(token.clone(), Instant::now());
    let body = serde_json::json!({
        "token_type": "Bearer",
        "expires_in": state.expires_in,
        "access_token": token,
    });
    (200, Vec::new(), body.to_string())
}

/// Checks a client assertion as Entra does: signed by the registered certificate's key,
/// named by its thumbprint, for this endpoint, from this app, short-lived.
fn check_assertion(assertion: &str, audience: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
    if header.x5t_s256.as_deref() != Some(THUMBPRINT) {
        return Err(format!("unknown certificate {:?}", header.x5t_s256));
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_der(
        &std::fs::read(data("oauth-client-public.der")).unwrap(),
    );
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub", "nbf"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .map_err(|e| e.to_string())?;
    let claims = data.claims;
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["nbf"].as_i64().unwrap_or(0);
    if claims["sub"] != CLIENT_ID || claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err("bad sub or jti".to_owned());
    }
    if !(60..=600).contains(&lifetime) {
        return Err(format!("lifetime {lifetime}"));
    }
    Ok(())
}

fn graph_error(scripted: &Scripted) -> Reply {
    let mut extra = Vec::new();
    if let Some(seconds) = scripted.retry_after {
        extra.push(("retry-after".to_owned(), seconds.to_string()));
    }
    let body = serde_json::json!({"error": {
        "code": scripted.code,
        "message": format!("{} from the test server", scripted.code),
    }});
    (scripted.status, extra, body.to_string())
}

fn send_mail(
    state: &Mutex<State>,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Reply {
    let mail: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let delay = {
        let mut state = state.lock().unwrap();
        state
            .requests
            .push((path.to_owned(), bearer.clone(), mail.clone()));
        state.delay
    };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    let mut state = state.lock().unwrap();
    let honoured = state
        .issued
        .get(&bearer)
        .is_some_and(|at| state.honoured_for.is_none_or(|limit| at.elapsed() < limit));
    if !honoured {
        return graph_error(&Scripted::new(401, "InvalidAuthenticationToken"));
    }
    if let Some(scripted) = state.queue.pop_front() {
        return graph_error(&scripted);
    }
    if let Some(scripted) = state.always.clone() {
        return graph_error(&scripted);
    }
    if let Some(scripted) = state.by_recipient.get(&recipient(&mail)).cloned() {
        return graph_error(&scripted);
    }
    state.accepted.push((Instant::now(), mail));
    (
        202,
        vec![("request-id".to_owned(), "0b4d7c1e-test".to_owned())],
        String::new(),
    )
}

/// A campaign folder: keys, recipients, a text template.
pub struct Campaign {
    pub dir: tempfile::TempDir,
}

impl Campaign {
    pub fn new(recipients: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys.txt"), KEYS).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(dir.path().join("keys.txt"), private).unwrap();
        }
        std::fs::write(dir.path().join("recipients.csv"), recipients).unwrap();
        std::fs::write(
            dir.path().join("invite.txt"),
            "Hello {{ first_name }},\nCODE: {{ code }}\n",
        )
        .unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `invitegate send` with the campaign's files, nothing from the caller's environment.
    pub fn base(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
        command.current_dir(self.dir.path());
        for (name, _) in std::env::vars() {
            if name.starts_with("INVITEGATE_") {
                command.env_remove(name);
            }
        }
        command
            .args(["send", "recipients.csv", "--keys-file", "keys.txt"])
            .args(["--expires-in", "14d", "--text-template", "invite.txt"])
            .args(["--retry-delay-ms", "50"]);
        command
    }

    /// The full Graph command, with a client secret in the environment.
    pub fn graph(&self, server: &GraphServer, extra: &[&str]) -> Command {
        let mut command = self.base();
        command
            .args(["--graph-sender", SENDER])
            .args(["--graph-url", &server.url()])
            .args(["--oauth-authority", &server.url()])
            .env("INVITEGATE_OAUTH_TENANT", TENANT)
            .env("INVITEGATE_OAUTH_CLIENT_ID", CLIENT_ID)
            .env("INVITEGATE_OAUTH_CLIENT_SECRET", SECRET)
            .args(extra);
        command
    }

    pub fn run_graph(&self, server: &GraphServer, extra: &[&str]) -> Output {
        run(self.graph(server, extra))
    }

    pub fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("recipients.csv.journal"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every file the runs wrote, as text.
    pub fn all_files(&self) -> String {
        let mut text = String::new();
        let mut dirs = vec![self.dir.path().to_owned()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
                }
            }
        }
        text
    }
}

/// Runs `command` with a deadline: a child that hangs fails the test instead of the suite.
pub fn run(mut command: Command) -> Output {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    output
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn recipients(n: usize) -> String {
    let mut text = String::from("first_name,email\n");
    for i in 0..n {
        text.push_str(&format!("P{i},p{i}@contoso.com\n"));
    }
    text
}

/// The code in a Graph message's text body.
pub fn code(mail: &serde_json::Value) -> String {
    let body = mail["message"]["body"]["content"].as_str().unwrap();
    let start = body.find("CODE: ").unwrap() + 6;
    body[start..start + 29].to_owned()
}

/// A running aiosmtpd (tests/data/send/smtp_server.py), plain text, no login; killed when
/// dropped.
pub struct SmtpServer {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
    pub port: u16,
    out: PathBuf,
}

impl SmtpServer {
    pub fn start(dir: &Path) -> Self {
        let out = dir.join("smtp-received.jsonl");
        let mut child = Command::new("python3")
            .arg(data("smtp_server.py"))
            .arg("--out")
            .arg(&out)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("python3 runs (the tests need python3 with aiosmtpd: pip install aiosmtpd)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start (aiosmtpd?): {line:?}"));
        Self {
            child,
            _stdin: stdin,
            port,
            out,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The envelope recipients of the messages received so far.
    pub fn recipients(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with('}'))
            .flat_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The messages received so far, as received.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["data"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Campaign {
    /// The full SMTP command (plain text, no login: the test server's).
    pub fn smtp(&self, server: &SmtpServer, extra: &[&str]) -> Command {
        let mut command = self.base();
        command
            .args([
                "--from",
                SENDER,
                "--smtp",
                &server.url(),
                "--smtp-tls",
                "none",
            ])
            .args(extra);
        command
    }
}
