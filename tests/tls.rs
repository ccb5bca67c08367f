//! The server's own TLS and client certificates, on the real binary over real TCP with a real
//! rustls client: TLS 1.2 and 1.3, the pair reloaded (a good one swapped in, a bad one refused
//! and the old kept, a Kubernetes Secret's `..data` symlink swap), mutual TLS by pin, and the
//! `X-ARR-ClientCert` header with and without `--trust-arr-client-cert`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::tls::{self, Pair};

const KEY_7: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_8: &str = "8:HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";
const PASSWORD: &str = "a-long-enough-password";

/// How long a test waits for a reload the server should make within its 100 ms interval.
const RELOAD_WITHIN: Duration = Duration::from_secs(30);

/// A sign-up to the user-flow endpoint with `headers` (each ending in CRLF).
fn sign_up(code: &str, headers: &str) -> String {
    let body = format!(
        r#"{{"email":"alice@contoso.com","extension_InvitationCode":"{code}","step":"PostAttributeCollection"}}"#
    );
    format!(
        "POST /api/b2c/user-flow HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn basic() -> String {
    support::basic_header("b2c", PASSWORD)
}

/// The server's `/metrics` over TLS, with the Basic credentials: the status and the text.
fn scrape(addr: std::net::SocketAddr) -> (u16, String) {
    tls::ask(
        addr,
        None,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
            basic()
        ),
    )
}

/// A directory with key 7 in keys.txt and `pair` in tls.crt and tls.key.
fn folder(pair: &Pair) -> tempfile::TempDir {
    let dir = support::with_keys();
    pair.write(&dir.path().join("tls.crt"), &dir.path().join("tls.key"));
    dir
}

/// `serve` over TLS on a loopback port, with `dir`'s key ring and TLS pair.
fn tls_command(dir: &Path) -> std::process::Command {
    let mut command = support::serve_command(dir);
    command.args(["--tls-cert", "tls.crt", "--tls-key", "tls.key"]);
    command
}

/// `serve` over TLS from `dir`'s files, checking them every 100 ms.
fn serve_tls(dir: &Path, extra: &[&str]) -> support::Server {
    support::serve(
        tls_command(dir)
            .args(["--reload-interval", "100ms"])
            .args(extra)
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env(
                "INVITEGATE_LOG",
                "warn,invitegate::cli::serve=info,invitegate::server=info",
            ),
    )
}

/// Polls `check` until it holds, for at most [`RELOAD_WITHIN`].
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < RELOAD_WITHIN,
            "{what}: not within {RELOAD_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn https_with_tls_1_2_and_1_3_and_no_plain_http() {
    let server_pair = tls::pair("server");
    let dir = folder(&server_pair);
    let server = serve_tls(dir.path(), &[]);
    let started = server.log.seen();
    assert!(started.contains(r#""scheme":"https""#), "{started}");
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut connection = tls::Connection::open(server.addr, tls::client_config(version, None));
        assert_eq!(connection.version(), version.version);
        assert_eq!(connection.served(), server_pair.der);
        let (status, body) = connection.ask("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    }
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(support::DEADLINE)).unwrap();
    std::io::Write::write_all(&mut plain, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn a_new_pair_is_served_without_dropping_connections_and_a_bad_one_is_refused() {
    let first = tls::pair("first");
    let dir = folder(&first);
    let mut server = serve_tls(dir.path(), &[]);
    let mut kept = tls::Connection::open(
        server.addr,
        tls::client_config(&rustls::version::TLS13, None),
    );
    assert_eq!(kept.served(), first.der);

    // A good pair, each file renamed into place (the key first: in between, the certificate
    // and key do not match, and that attempt is refused).
    let second = tls::pair("second");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    second.write(&dir.path().join("new.crt"), &dir.path().join("new.key"));
    std::fs::rename(dir.path().join("new.key"), &key).unwrap();
    std::fs::rename(dir.path().join("new.crt"), &cert).unwrap();
    until("the new certificate served", || {
        tls::served(server.addr) == second.der
    });
    // The connection opened before the swap is still served.
    let (status, _) = kept.ask("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);

    // A certificate whose key is another's: refused, the second pair kept.
    let third = tls::pair("third");
    std::fs::write(dir.path().join("new.crt"), &third.cert_pem).unwrap();
    std::fs::rename(dir.path().join("new.crt"), &cert).unwrap();
    server.log.wait_for(
        |line| {
            line.contains("TLS certificate reload failed")
                && line.contains("does not belong to the certificate")
        },
        support::DEADLINE,
    );
    assert_eq!(tls::served(server.addr), second.der);
    // Not PEM at all: refused too, and SIGHUP says so again.
    std::fs::write(dir.path().join("new.key"), "not a key\n").unwrap();
    std::fs::rename(dir.path().join("new.key"), &key).unwrap();
    support::signal(server.process.id(), "HUP");
    server.log.wait_for(
        |line| line.contains("TLS certificate reload failed") && line.contains("SIGHUP"),
        support::DEADLINE,
    );
    let log = server.log.seen();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert_eq!(tls::served(server.addr), second.der);
    let (_, metrics) = scrape(server.addr);
    let count = |result: &str| {
        support::counter(
            &metrics,
            &format!(r#"invitegate_tls_reloads_total{{result="{result}"}}"#),
        )
    };
    assert!(count("ok") >= 1, "{metrics}");
    assert!(count("failed") >= 2, "{metrics}");
}

/// Kubernetes updates a mounted Secret by writing a new timestamped folder and renaming a new
/// `..data` symlink over the old one; the files are symlinks through `..data`.
#[test]
fn a_kubernetes_secret_swap_reloads_the_keys_and_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = tls::pair("first");
    let write_version = |name: &str, keys: &str, pair: &Pair| {
        let version = root.join(name);
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("keys.txt"), keys).unwrap();
        support::set_mode(&version.join("keys.txt"), 0o600);
        pair.write(&version.join("tls.crt"), &version.join("tls.key"));
        support::set_mode(&version.join("tls.key"), 0o600);
    };
    write_version("..2026_12_06_09_00_00.123", &format!("{KEY_7}\n"), &first);
    std::os::unix::fs::symlink("..2026_12_06_09_00_00.123", root.join("..data")).unwrap();
    for file in ["keys.txt", "tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), root.join(file)).unwrap();
    }
    let server = support::serve(
        tls_command(root)
            .args(["--reload-interval", "100ms"])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let new_code = support::alice_code(KEY_8);
    let (_, body) = tls::ask(server.addr, None, &sign_up(&new_code, &basic()));
    assert!(body.contains("not valid"), "{body}");
    assert_eq!(tls::served(server.addr), first.der);

    let second = tls::pair("second");
    write_version(
        "..2026_12_06_10_00_00.456",
        &format!("{KEY_8}\n{KEY_7}\n"),
        &second,
    );
    std::os::unix::fs::symlink("..2026_12_06_10_00_00.456", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_12_06_09_00_00.123")).unwrap();

    until("the new key used", || {
        tls::ask(server.addr, None, &sign_up(&new_code, &basic()))
            .1
            .contains("Continue")
    });
    until("the new certificate served", || {
        tls::served(server.addr) == second.der
    });
}

/// A server over TLS asking for client certificates, pinning `pins`, with Basic too.
fn serve_mtls(dir: &Path, pins: &str) -> support::Server {
    support::serve(
        tls_command(dir)
            .args(["--client-cert-thumbprints", pins])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", "info"),
    )
}

/// Waits for the request line of a refusal for `reason` and returns it.
fn refusal_line(server: &mut support::Server, reason: &str) -> String {
    let wanted = format!(r#""denied":"{reason}""#);
    server
        .log
        .wait_for(|line| line.contains(&wanted), support::DEADLINE)
}

#[test]
fn mutual_tls_by_pin_with_basic_as_the_alternative() {
    let dir = folder(&tls::pair("server"));
    let pinned = tls::pair("b2c");
    let other = tls::pair("stranger");
    let now = time::OffsetDateTime::now_utc();
    let expired = tls::pair_valid(
        "b2c-expired",
        now - time::Duration::days(30),
        now - time::Duration::hours(2),
    );
    let later = tls::pair_valid(
        "b2c-later",
        now + time::Duration::hours(2),
        now + time::Duration::days(30),
    );
    // SHA-1 in lower case with colons as some tools print it, SHA-256 as is.
    let sha1_colons = pinned
        .sha1()
        .to_ascii_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let pins = format!(
        "{sha1_colons},{},{},{}",
        expired.sha256(),
        later.sha1(),
        tls::pair("unused").sha1()
    );
    let mut server = serve_mtls(dir.path(), &pins);
    let started = server.log.seen();
    assert!(
        started.contains("client certificate (4 pinned thumbprints) or HTTP Basic"),
        "{started}"
    );
    let valid = support::alice_code(KEY_7);

    // The pinned certificate alone lets the caller in.
    let (status, body) = tls::ask(server.addr, Some(&pinned), &sign_up(&valid, ""));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Continue"), "{body}");

    // An unknown certificate: 401, with the reason and its thumbprint in the log.
    let (status, body) = tls::ask(server.addr, Some(&other), &sign_up(&valid, ""));
    assert_eq!(status, 401, "{body}");
    let line = refusal_line(&mut server, "unknown-thumbprint");
    assert!(line.contains(&other.sha1()), "{line}");

    // Pinned but expired, or not valid yet, beyond the leeway.
    let (status, _) = tls::ask(server.addr, Some(&expired), &sign_up(&valid, ""));
    assert_eq!(status, 401);
    let line = refusal_line(&mut server, "certificate-expired");
    assert!(line.contains(&expired.sha1()), "{line}");
    let (status, _) = tls::ask(server.addr, Some(&later), &sign_up(&valid, ""));
    assert_eq!(status, 401);
    refusal_line(&mut server, "certificate-not-yet-valid");

    // No certificate: Basic still works, and without it the caller is refused.
    let (status, body) = tls::ask(server.addr, None, &sign_up(&valid, &basic()));
    assert_eq!(status, 200, "{body}");
    let (status, _) = tls::ask(server.addr, None, &sign_up(&valid, ""));
    assert_eq!(status, 401);
    refusal_line(&mut server, "missing-header");
    // An unknown certificate with the right Basic credentials: either is accepted.
    let (status, _) = tls::ask(server.addr, Some(&other), &sign_up(&valid, &basic()));
    assert_eq!(status, 200);
    // Neither accepted: the log names the Basic reason and the certificate's thumbprint.
    let wrong = support::basic_header("b2c", "not the password");
    let (status, _) = tls::ask(server.addr, Some(&other), &sign_up(&valid, &wrong));
    assert_eq!(status, 401);
    let line = refusal_line(&mut server, "wrong-password");
    assert!(line.contains(&other.sha1()), "{line}");
    assert!(line.contains(r#""user":"b2c""#), "{line}");

    // The refusals are counted by reason.
    let (status, metrics) = scrape(server.addr);
    assert_eq!(status, 200);
    for reason in [
        "unknown-thumbprint",
        "certificate-expired",
        "certificate-not-yet-valid",
    ] {
        let wanted = format!(
            r#"invitegate_auth_refusals_total{{endpoint="b2c-user-flow",reason="{reason}"}} 1"#
        );
        assert!(metrics.contains(&wanted), "{wanted} in\n{metrics}");
    }
}

#[test]
fn pins_alone_turn_the_b2c_endpoints_on() {
    let dir = folder(&tls::pair("server"));
    let pinned = tls::pair("b2c");
    let server = support::serve(
        tls_command(dir.path())
            .env("INVITEGATE_CLIENT_CERT_THUMBPRINTS", pinned.sha256())
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let valid = support::alice_code(KEY_7);
    let body = r#"{"email":"alice@contoso.com","invitationCode":"CODE"}"#.replace("CODE", &valid);
    let policy = format!(
        "POST /api/b2c/custom-policy HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(tls::ask(server.addr, Some(&pinned), &policy).0, 200);
    assert_eq!(tls::ask(server.addr, None, &policy).0, 401);
    assert_eq!(
        tls::ask(server.addr, Some(&pinned), &sign_up(&valid, "")).0,
        200
    );
    // Basic is not configured: a Basic header does not let anyone in.
    assert_eq!(
        tls::ask(server.addr, None, &sign_up(&valid, &basic())).0,
        401
    );
}

fn serve_plain_pinned(dir: &Path, pins: &str, trust: bool) -> support::Server {
    let mut command = support::serve_command(dir);
    command
        .args(["--client-cert-thumbprints", pins])
        .env("INVITEGATE_LOG", "info");
    if trust {
        command.env("INVITEGATE_TRUST_ARR_CLIENT_CERT", "true");
    } else {
        // Without the header trusted no certificate can arrive: Basic gives a way in.
        command
            .arg("--tls-cert")
            .arg("tls.crt")
            .arg("--tls-key")
            .arg("tls.key");
    }
    support::serve(&mut command)
}

#[test]
fn the_arr_header_counts_only_when_trusted() {
    let dir = folder(&tls::pair("server"));
    let pinned = tls::pair("b2c");
    let other = tls::pair("stranger");
    let header = |pair: &Pair| {
        format!(
            "X-ARR-ClientCert: {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(&pair.der)
        )
    };
    let valid = support::alice_code(KEY_7);

    let mut trusting = serve_plain_pinned(dir.path(), &pinned.sha1(), true);
    let (status, body) = support::ask_once(trusting.addr, &sign_up(&valid, &header(&pinned)));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Continue"), "{body}");
    let (status, _) = support::ask_once(trusting.addr, &sign_up(&valid, &header(&other)));
    assert_eq!(status, 401);
    let line = refusal_line(&mut trusting, "unknown-thumbprint");
    assert!(line.contains(&other.sha1()), "{line}");
    let (status, _) = support::ask_once(
        trusting.addr,
        &sign_up(&valid, "X-ARR-ClientCert: not base64!\r\n"),
    );
    assert_eq!(status, 401);
    refusal_line(&mut trusting, "malformed-certificate");
    let (status, _) = support::ask_once(trusting.addr, &sign_up(&valid, ""));
    assert_eq!(status, 401);
    refusal_line(&mut trusting, "no-client-certificate");
    drop(trusting);

    // Not trusted: the header is ignored, and its presence logged once.
    let mut ignoring = serve_plain_pinned(dir.path(), &pinned.sha1(), false);
    let request = sign_up(&valid, &header(&pinned));
    for _ in 0..2 {
        let answer = tls::ask(ignoring.addr, None, &request);
        assert_eq!(answer.0, 401, "{answer:?}");
    }
    ignoring.log.wait_for(
        |line| line.contains("X-ARR-ClientCert header, which is ignored"),
        support::DEADLINE,
    );
    let (status, _) = tls::ask(ignoring.addr, None, &sign_up(&valid, ""));
    assert_eq!(status, 401);
    refusal_line(&mut ignoring, "no-client-certificate");
    let log = ignoring.log.seen();
    assert_eq!(log.matches("which is ignored").count(), 1, "{log}");
}

#[test]
fn check_lists_every_tls_and_certificate_problem() {
    let dir = support::with_keys();
    let first = tls::pair("first");
    let second = tls::pair("second");
    std::fs::write(dir.path().join("tls.crt"), &first.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &second.key_pem).unwrap();
    let output = support::run(
        support::invitegate(dir.path())
            .args([
                "serve",
                "--check",
                "--keys-file",
                "keys.txt",
                "--tls-cert",
                "tls.crt",
                "--tls-key",
                "tls.key",
                "--client-cert-thumbprints",
                "abc,0123",
            ])
            .env("INVITEGATE_LOG", "off"),
    );
    let out = support::stdout(&output);
    assert_eq!(support::status(&output), 2, "{out}");
    assert!(out.contains("does not belong to the certificate"), "{out}");
    assert_eq!(
        out.matches("is not a certificate thumbprint").count(),
        2,
        "{out}"
    );
    assert!(!out.contains("PRIVATE KEY"), "{out}");

    // Pins with no way for a certificate to arrive; a key without its certificate.
    let output = support::run(
        support::invitegate(dir.path())
            .args([
                "serve",
                "--check",
                "--keys-file",
                "keys.txt",
                "--tls-key",
                "tls.key",
            ])
            .env("INVITEGATE_CLIENT_CERT_THUMBPRINTS", first.sha1())
            .env("INVITEGATE_LOG", "off"),
    );
    let out = support::stdout(&output);
    assert_eq!(support::status(&output), 2, "{out}");
    assert!(
        out.contains("--tls-key (INVITEGATE_TLS_KEY) is set but --tls-cert"),
        "{out}"
    );
    assert!(out.contains("no client certificate can arrive"), "{out}");
}

#[test]
fn plain_http_off_loopback_is_warned_about() {
    let dir = support::with_keys();
    let server = support::serve(
        support::invitegate(dir.path())
            .args(["serve", "--listen", "0.0.0.0:0", "--keys-file", "keys.txt"])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    let seen = server.log.seen();
    assert!(
        seen.contains("a non-loopback address, without TLS") && seen.contains("clear text"),
        "{seen}"
    );
    let dir = folder(&tls::pair("server"));
    let server = support::serve(
        support::invitegate(dir.path())
            .args(["serve", "--listen", "0.0.0.0:0", "--keys-file", "keys.txt"])
            .args(["--tls-cert", "tls.crt", "--tls-key", "tls.key"])
            .env("BASIC_AUTH_USERNAME", "b2c")
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .env("INVITEGATE_LOG", support::START_UP_LOG),
    );
    assert!(
        !server.log.seen().contains("without TLS"),
        "{}",
        server.log.seen()
    );
}

#[test]
fn a_handshake_not_finished_within_the_header_timeout_is_closed_and_counted() {
    let dir = folder(&tls::pair("server"));
    let server = serve_tls(dir.path(), &["--header-timeout", "1s"]);
    // A client that connects and never says hello.
    let mut silent = std::net::TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(support::DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut silent, &mut byte);
    assert!(matches!(read, Ok(0)), "{read:?}");
    let (status, metrics) = scrape(server.addr);
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"invitegate_connection_limit_hits_total{limit="header-timeout"} 1"#),
        "{metrics}"
    );
}
