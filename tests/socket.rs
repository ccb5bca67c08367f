//! The real server on a real socket: raw HTTP/1.1 requests, keep-alive, chunked bodies,
//! shutdown with a request in flight, and the binary end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use invitegate::KeyRing;
use invitegate::connector::AttributeNames;
use invitegate::connector::b2c_user_flow::UserFlow;
use invitegate::decision::Verifier;
use invitegate::server::auth::{Auth, BasicAuth};
use invitegate::server::{Config, Endpoint, run};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn config() -> Config {
    let mut config = Config::new(Verifier::new(KeyRing::parse(KEYS).unwrap()));
    let flow = UserFlow::new(AttributeNames::new("InvitationCode", None), false);
    config.user_flow = Some(Endpoint::new(
        Auth::Basic(BasicAuth::new("b2c", "pw")),
        flow,
    ));
    config
}

fn body_for(email: &str) -> String {
    let code = support::alice_code(KEYS);
    format!(
        r#"{{"email":"{email}","extension_InvitationCode":"{code}","step":"PostAttributeCollection"}}"#
    )
}

fn auth_header() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("b2c:pw")
    )
}

/// Starts `run` on 127.0.0.1:0; returns the address, the shutdown trigger and the server task.
async fn start() -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config(), async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// How long a test waits for an answer or a shutdown that should take a moment: far beyond
/// that on a busy machine, and below CI's limit, so a hang is a failure with a message.
const WITHIN: Duration = Duration::from_secs(30);

/// Stops a server started by [`start`] and waits, with a deadline, for it to finish.
async fn stop_and_wait(
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    stop.send(()).unwrap();
    tokio::time::timeout(WITHIN, task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// Reads one HTTP/1.1 response: status and body (content-length framed).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WITHIN, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed inside the response head: {:?}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.push(byte[0]);
    }
    let head = String::from_utf8(buffer).unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    tokio::time::timeout(WITHIN, stream.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn post(body: &str) -> String {
    format!(
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        auth_header(),
        body.len()
    )
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (addr, stop, task) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (email, action) in [
        ("alice@contoso.com", "Continue"),
        ("eve@contoso.com", "ValidationError"),
        ("alice@contoso.com", "Continue"),
    ] {
        stream
            .write_all(post(&body_for(email)).as_bytes())
            .await
            .unwrap();
        let (status, body) = read_response(&mut stream).await;
        assert!(
            body.contains(&format!(r#""action":"{action}""#)),
            "{status} {body}"
        );
    }
    stop_and_wait(stop, task).await;
}

#[tokio::test]
async fn chunked_body_is_read() {
    let (addr, stop, task) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body_for("alice@contoso.com");
    let (first, second) = body.split_at(10);
    let request = format!(
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        auth_header(),
        first.len(),
        second.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""action":"Continue""#), "{body}");
    // A chunked body over the limit is refused with 413, not buffered.
    let big = "x".repeat(70 * 1024);
    let request = format!(
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        auth_header(),
        big.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut stream).await;
    assert_eq!(status, 413);
    stop_and_wait(stop, task).await;
}

#[tokio::test]
async fn oversized_head_is_refused() {
    let (addr, stop, task) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WITHIN, stream.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("content-type: application/json"), "{head}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"], "headers_too_large", "{body}");
    stop_and_wait(stop, task).await;
}

/// Requests hyper cannot parse are answered before any route sees them: still a JSON body.
#[tokio::test]
async fn unparsable_requests_get_a_json_400() {
    let (addr, stop, task) = start().await;
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 400, "{request:?}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "bad_request", "{body}");
    }
    stop_and_wait(stop, task).await;
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_refuses_new_ones() {
    let (addr, stop, task) = start().await;
    let body = body_for("alice@contoso.com");
    let request = post(&body);
    let (head, rest) = request.split_at(request.len() - 20);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // Time for the server to read the head (it gives no sign of that), so that the request is
    // in flight when the shutdown starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    // The listener closes: new connections are refused.
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            started.elapsed() < WITHIN,
            "new connections still accepted {WITHIN:?} after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The request in flight completes.
    stream.write_all(rest.as_bytes()).await.unwrap();
    let (status, reply) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("Continue"));
    tokio::time::timeout(WITHIN, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The binary end to end: keygen, mint with the CLI, serve, validate over HTTP, SIGTERM.
#[test]
fn cli_mints_and_the_served_connector_validates() {
    let dir = tempfile::tempdir().unwrap();
    let keygen =
        support::run(support::invitegate(dir.path()).args(["keygen", "--add-to", "keys.txt"]));
    assert!(keygen.status.success(), "{keygen:?}");
    let mint = support::run(support::invitegate(dir.path()).args([
        "mint",
        "--keys-file",
        "keys.txt",
        "--email",
        "carol@fabrikam.com",
        "--expires-in",
        "1h",
    ]));
    assert!(
        mint.status.success(),
        "{}",
        String::from_utf8_lossy(&mint.stderr)
    );
    let code = String::from_utf8(mint.stdout).unwrap().trim().to_owned();

    let mut server = support::serve(
        support::invitegate(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("INVITEGATE_KEYS_FILE", "keys.txt")
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", "pw")
            .env(
                "B2C_EXTENSIONS_APP_ID",
                "93fd07aa-333c-409d-955d-96008fd08dd9",
            ),
    );
    let addr = server.addr;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = |email: &str| {
        let body = format!(
            r#"{{"email":"{email}","extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode":"{code}","step":"PostAttributeCollection"}}"#
        );
        runtime.block_on(async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(post(&body).as_bytes()).await.unwrap();
            read_response(&mut stream).await
        })
    };
    let (status, body) = answer("Carol@Fabrikam.com");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"version":"1.0.0","action":"Continue","extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode":""}"#
    );
    let (status, body) = answer("dave@fabrikam.com");
    assert_eq!(status, 400, "{body}");

    // One log line per request, with the code's fingerprint and the email's domain only.
    let line = server
        .log
        .next_within(support::DEADLINE)
        .expect("a log line");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["outcome"], "valid", "{line}");
    assert_eq!(json["email"], "fabrikam.com", "{line}");
    let fingerprint = support::code_fingerprint(&code);
    assert_eq!(json["code"], fingerprint.as_str(), "{line}");
    assert!(!line.contains(&code) && !line.contains("carol"), "{line}");

    // SIGTERM stops it cleanly.
    support::signal(server.process.id(), "TERM");
    let exit = support::wait_within(&mut server.process, support::DEADLINE);
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = support::run(
        Command::new(env!("CARGO_BIN_EXE_invitegate"))
            .args(["serve", "--insecure-no-auth", "--listen", &addr])
            .env("INVITEGATE_KEYS", KEYS)
            .env_remove("INVITEGATE_KEYS_FILE"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("binding {addr}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_refuses_to_start_without_credentials_or_keys() {
    let run = |envs: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        for name in [
            "INVITEGATE_KEYS",
            "INVITEGATE_KEYS_FILE",
            "BASIC_AUTH_USERNAME",
            "BASIC_AUTH_PASSWORD",
        ] {
            command.env_remove(name);
        }
        command.envs(envs.iter().copied());
        support::run(&mut command)
    };
    let no_auth = run(&[("INVITEGATE_KEYS", KEYS)]);
    assert_eq!(no_auth.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_auth.stderr).contains("BASIC_AUTH_USERNAME"));
    let no_keys = run(&[
        ("BASIC_AUTH_USERNAME", "b2c"),
        ("BASIC_AUTH_PASSWORD", "pw"),
    ]);
    assert_eq!(no_keys.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_keys.stderr).contains("no key ring"));
    // Half the Basic credentials: the message names the missing half.
    let no_password = run(&[("INVITEGATE_KEYS", KEYS), ("BASIC_AUTH_USERNAME", "b2c")]);
    assert_eq!(no_password.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&no_password.stderr).contains(
            "BASIC_AUTH_USERNAME (--basic-auth-username) is set but BASIC_AUTH_PASSWORD is not"
        ),
        "{no_password:?}"
    );
}

/// The Azure Functions packaging forwards to the path the connector serves, and the handler
/// listens where the host says.
#[test]
fn azure_functions_custom_handler_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/azure-functions");
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("host.json")).unwrap()).unwrap();
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    assert_eq!(
        host["customHandler"]["description"]["arguments"][0],
        "serve"
    );
    let function: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("b2c-user-flow/function.json")).unwrap(),
    )
    .unwrap();
    let route = function["bindings"][0]["route"].as_str().unwrap();
    assert_eq!(format!("/api/{route}"), invitegate::server::USER_FLOW_PATH);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = support::serve(
        Command::new(env!("CARGO_BIN_EXE_invitegate"))
            .args(["serve", "--insecure-no-auth"])
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("INVITEGATE_KEYS", KEYS)
            .env_remove("INVITEGATE_KEYS_FILE")
            .env_remove("INVITEGATE_LISTEN")
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    assert_eq!(server.addr.port(), port, "listens where the host says");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut stream).await
    });
    assert_eq!(answer, (200, r#"{"status":"ok"}"#.to_owned()));
}

/// A `serve --dev` process: killed when dropped, its banner (between two rule lines of `=`)
/// and its log.
struct Dev {
    process: support::KillOnDrop,
    banner: String,
    log: support::Lines,
}

/// Starts `serve --dev` with `env` added, and waits for its banner.
fn start_dev(env: &[(&str, &str)]) -> Dev {
    let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
    command.args(["serve", "--dev"]);
    // A listen address exported in the shell is a production setting too: then the port
    // comes from FUNCTIONS_CUSTOMHANDLER_PORT (0: any free one), as the flag would win.
    if !env.iter().any(|(name, _)| *name == "INVITEGATE_LISTEN") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
        .env_remove("INVITEGATE_LISTEN")
        .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
        .env_remove("INVITEGATE_KEYS")
        .env_remove("INVITEGATE_KEYS_FILE")
        .env_remove("BASIC_AUTH_USERNAME")
        .env_remove("BASIC_AUTH_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut process = support::KillOnDrop(command.spawn().unwrap());
    let log = support::Lines::new(process.stderr.take().unwrap());
    let mut stdout = support::Lines::new(process.stdout.take().unwrap());
    let mut rules = 0;
    stdout.wait_for(
        |line| {
            rules += usize::from(line.starts_with("====="));
            rules == 2
        },
        support::DEADLINE,
    );
    Dev {
        process,
        banner: stdout.seen(),
        log,
    }
}

/// The banner's curl commands, each with its continuation lines joined.
fn curl_commands(banner: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in banner.lines() {
        let line = line.trim();
        if line.starts_with("curl ") {
            current = Some(String::new());
        }
        if let Some(command) = current.as_mut() {
            command.push_str(line.trim_end_matches('\\'));
            command.push(' ');
            if !line.ends_with('\\') {
                commands.push(current.take().unwrap());
            }
        }
    }
    commands
}

/// The quick start: `serve --dev` prints a banner with one curl command per endpoint, and each
/// works as printed, run by a real shell and a real curl.
#[test]
fn dev_mode_banner_works_as_printed() {
    let server = start_dev(&[]);
    let banner = &server.banner;
    assert!(banner.contains("DEVELOPMENT ONLY"), "{banner}");
    let commands = curl_commands(banner);
    assert_eq!(commands.len(), 3, "{banner}");
    let mut answers = Vec::new();
    for command in &commands {
        assert!(command.contains("http://127.0.0.1:"), "{command}");
        let output = support::run(Command::new("sh").args(["-c", command]));
        assert!(output.status.success(), "{command}: {output:?}");
        answers.push(String::from_utf8(output.stdout).unwrap());
    }
    assert_eq!(
        answers[0],
        r#"{"version":"1.0.0","action":"Continue","extension_InvitationCode":""}"#
    );
    let policy: serde_json::Value = serde_json::from_str(&answers[1]).unwrap();
    assert_eq!(policy["invitationKind"], "email", "{}", answers[1]);
    assert_eq!(policy["invitationKeyId"], 1, "{}", answers[1]);
    let entra: serde_json::Value = serde_json::from_str(&answers[2]).unwrap();
    let action = &entra["data"]["actions"][0];
    assert_eq!(
        action["@odata.type"], "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues",
        "{}",
        answers[2]
    );
    // Each command fails without its credentials: the banner's credentials are what work.
    for command in &commands {
        let anonymous = command
            .replace("-u 'dev:", "-u 'nobody:")
            .replace("x-functions-key:", "x-other:")
            .replace("Authorization: Bearer", "Authorization: Bearer x");
        let output = support::run(Command::new("sh").args([
            "-c",
            &format!("{anonymous} -o /dev/null -w '%{{http_code}}'"),
        ]));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "401",
            "{anonymous}"
        );
    }
    drop(server);
}

/// `--dev` ignores production credentials exported in the shell, and says so.
#[test]
fn dev_mode_ignores_production_settings() {
    let mut server = start_dev(&[
        ("BASIC_AUTH_USERNAME", "prod-user"),
        ("BASIC_AUTH_PASSWORD", "prod-password-long-enough"),
        ("INVITEGATE_KEYS", KEYS),
        ("INVITEGATE_LISTEN", "0.0.0.0:7071"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
    ]);
    let commands = curl_commands(&server.banner);
    let output = support::run(Command::new("sh").args(["-c", &commands[0]]));
    let _ = server.process.kill();
    let stderr = server.log.rest_within(support::DEADLINE);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Continue"),
        "{}\n{stderr}\n{output:?}",
        server.banner
    );
    assert!(
        stderr.contains("--dev ignores these production settings: BASIC_AUTH_USERNAME, BASIC_AUTH_PASSWORD, INVITEGATE_KEYS, INVITEGATE_LISTEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("prod-password"), "{stderr}");
}

#[test]
fn dev_mode_stays_on_loopback() {
    // Development mode refuses to listen beyond loopback.
    // Given as a flag, even one that repeats an exported INVITEGATE_LISTEN (which alone
    // would be ignored as a production setting).
    let public = support::run(
        Command::new(env!("CARGO_BIN_EXE_invitegate"))
            .args(["serve", "--dev", "--listen", "0.0.0.0:0"])
            .env("INVITEGATE_LISTEN", "0.0.0.0:0"),
    );
    assert_eq!(public.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&public.stderr).contains("--dev listens on loopback only"),
        "{public:?}"
    );
}

/// The container health check: `invitegate healthcheck` exits 0 against a running server and
/// 1 when nothing answers.
#[test]
fn healthcheck_probes_a_running_server() {
    let server = start_dev(&[]);
    let url = curl_commands(&server.banner)[0]
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    let health = url.replace("/api/b2c/user-flow", "/healthz");
    let probe = |url: &str| {
        support::run(Command::new(env!("CARGO_BIN_EXE_invitegate")).args([
            "healthcheck",
            "--url",
            url,
        ]))
    };
    let up = probe(&health);
    let wrong_path = probe(&url.replace("/api/b2c/user-flow", "/nothing"));
    // Without --url it asks where `serve` listens with the same environment: a wildcard
    // address is reached on loopback.
    let port = health
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/healthz");
    let by_environment = support::run(
        Command::new(env!("CARGO_BIN_EXE_invitegate"))
            .arg("healthcheck")
            .env("INVITEGATE_LISTEN", format!("0.0.0.0:{port}")),
    );
    drop(server);
    let down = probe(&health);
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    assert_eq!(by_environment.status.code(), Some(0), "{by_environment:?}");
    assert_eq!(wrong_path.status.code(), Some(1), "{wrong_path:?}");
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert_eq!(probe("https://127.0.0.1:1/").status.code(), Some(2));
}

/// Without the extensions app id the server reads only `extension_InvitationCode`, which
/// B2C and Entra never send: it starts (a deployment may be half done) but warns, naming the
/// setting.
#[test]
fn a_missing_extensions_app_id_is_warned_about_at_start() {
    let start = |app_id: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
        command
            .args([
                "serve",
                "--insecure-no-auth",
                "--listen",
                "127.0.0.1:0",
                "--endpoints",
                "user-flow",
            ])
            .env("INVITEGATE_KEYS", KEYS)
            .env_remove("INVITEGATE_KEYS_FILE")
            .env_remove("B2C_EXTENSIONS_APP_ID")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(id) = app_id {
            command.env("B2C_EXTENSIONS_APP_ID", id);
        }
        let mut server = support::KillOnDrop(command.spawn().unwrap());
        let mut log = support::Lines::new(server.stderr.take().unwrap());
        log.wait_for(
            |line| line.contains("invitegate serving"),
            support::DEADLINE,
        );
        log.seen()
    };
    let without = start(None);
    assert!(
        without.contains("WARN") && without.contains("B2C_EXTENSIONS_APP_ID is not set"),
        "{without}"
    );
    let with = start(Some("93fd07aa-333c-409d-955d-96008fd08dd9"));
    assert!(!with.contains("B2C_EXTENSIONS_APP_ID is not set"), "{with}");
    assert!(
        with.contains("extension_93fd07aa333c409d955d96008fd08dd9_InvitationCode"),
        "{with}"
    );
}
