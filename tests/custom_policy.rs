//! The B2C custom policy end to end, as the shipped `TrustFrameworkExtensions.xml` uses it: the
//! `serve` binary on a real socket with the Basic credentials the deploy guide sets, called
//! with the body the RESTful technical profile sends (its input claims, named as the XML names
//! them) and its Basic authentication, and the answer checked field by field against the
//! deploy guide's table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;

use base64::Engine as _;
use serde_json::{Value, json};

const POLICY: &str = include_str!("../deploy/b2c-custom-policy/TrustFrameworkExtensions.xml");
const PROFILE: &str = "REST-invitegate-VerifyInvitationCode";
/// The credentials the guide exports as BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD and stores
/// as the policy keys; the password holds a colon, which RFC 7617 allows after the first one.
const USER: &str = "b2c-policy";
const PASSWORD: &str = "a long random: password";

/// From the shared vectors (key 7, which `support::with_keys` writes): bob@example.org until
/// 4294967295 (2106-02-07T06:28:15Z), and carol@example.org until 86400 (1970-01-02).
const BOB_CODE: &str = "243ZZ-ZZZZZ-63ER5-BTTJ5-YDRJM";
const CAROL_CODE: &str = "243G0-0AHG1-6ADKJ-DD1C4-KS4N1";

/// The technical profile's element in the shipped policy, comments removed.
fn technical_profile() -> String {
    let start = POLICY
        .find(&format!("<TechnicalProfile Id=\"{PROFILE}\">"))
        .expect("the policy has the technical profile");
    let end = start
        + POLICY[start..]
            .find("</TechnicalProfile>")
            .expect("the technical profile ends");
    let mut text = &POLICY[start..end];
    let mut kept = String::new();
    while let Some(open) = text.find("<!--") {
        kept.push_str(&text[..open]);
        let close = text[open..].find("-->").expect("comment ends");
        text = &text[open + close + 3..];
    }
    kept.push_str(text);
    kept
}

/// Each `<name .../>` element's attributes, in order.
fn elements(profile: &str, name: &str) -> Vec<Vec<(String, String)>> {
    let open = format!("<{name} ");
    profile
        .match_indices(&open)
        .map(|(at, _)| {
            let tag = &profile[at + open.len()..];
            let tag = &tag[..tag.find('>').expect("tag ends")];
            let mut attributes = Vec::new();
            let mut rest = tag;
            while let Some(eq) = rest.find("=\"") {
                let key = rest[..eq].trim().to_owned();
                let value_start = eq + 2;
                let value_end = value_start + rest[value_start..].find('"').expect("quote ends");
                attributes.push((key, rest[value_start..value_end].to_owned()));
                rest = &rest[value_end + 1..];
            }
            attributes
        })
        .collect()
}

fn attribute<'a>(element: &'a [(String, String)], key: &str) -> Option<&'a str> {
    element
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The metadata item `key` of the technical profile.
fn metadata(profile: &str, key: &str) -> String {
    let open = format!("<Item Key=\"{key}\">");
    let at = profile.find(&open).expect("metadata item") + open.len();
    profile[at..at + profile[at..].find('<').unwrap()].to_owned()
}

/// The body the technical profile sends (`SendClaimsIn` `Body`): each input claim under its
/// `PartnerClaimType`, else its claim type, with the value `values` gives the claim type.
fn policy_body(values: &[(&str, &str)]) -> Value {
    let profile = technical_profile();
    let mut body = serde_json::Map::new();
    for claim in elements(&profile, "InputClaim") {
        let claim_type = attribute(&claim, "ClaimTypeReferenceId").expect("claim type");
        let name = attribute(&claim, "PartnerClaimType").unwrap_or(claim_type);
        let (_, value) = values
            .iter()
            .find(|(t, _)| *t == claim_type)
            .unwrap_or_else(|| panic!("the policy sends {claim_type}, which this test lacks"));
        body.insert(name.to_owned(), json!(value));
    }
    Value::Object(body)
}

/// `invitegate serve` with the guide's settings; killed on drop if the test ends early.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = support::with_keys();
        let mut child = support::invitegate(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("INVITEGATE_KEYS_FILE", "keys.txt")
            .env("BASIC_AUTH_USERNAME", USER)
            .env("BASIC_AUTH_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // The log line that names the bound address is the readiness signal.
        let (lines, received) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let Ok(line) = received.recv_timeout(support::DEADLINE) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not report its address: {seen:#?}");
            };
            let json: Value = serde_json::from_str(&line).unwrap_or_default();
            if json["message"] == "invitegate serving" {
                assert!(
                    json["endpoints"]
                        .as_str()
                        .unwrap()
                        .contains("/api/b2c/custom-policy"),
                    "{line}"
                );
                break json["address"].as_str().unwrap().parse().unwrap();
            }
            seen.push(line);
        };
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// One POST to the custom-policy route on a fresh connection: status, headers (lower-case
    /// names), body.
    fn post(
        &self,
        authorization: Option<&str>,
        body: &Value,
    ) -> (u16, Vec<(String, String)>, Value) {
        let body = body.to_string();
        let mut request = format!(
            "POST /api/b2c/custom-policy HTTP/1.1\r\nHost: your-invitegate-host\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(value) = authorization {
            request.push_str(&format!("Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(support::DEADLINE)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let length: usize = header(&headers, "content-length").parse().unwrap();
        assert_eq!(body.len(), length, "{response}");
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
        (status, headers, json)
    }

    /// SIGTERM, as a platform stops the container; the server ends cleanly.
    fn stop(mut self) {
        // The shell's builtin kill: no procps needed on the machine.
        let term = support::run(
            std::process::Command::new("sh")
                .args(["-c", &format!("kill -TERM {}", self.child.id())])
                .stdin(Stdio::null()),
        );
        assert!(term.status.success(), "{term:?}");
        let status = support::wait_within(&mut self.child, support::DEADLINE);
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// The `Authorization` value B2C sends for `AuthenticationType` `Basic`: RFC 7617.
fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[test]
fn the_shipped_policy_is_answered_as_the_guide_says() {
    // What the shipped technical profile does: Basic authentication, claims in the body, the
    // route's path, and the output claims it reads back.
    let profile = technical_profile();
    assert_eq!(metadata(&profile, "AuthenticationType"), "Basic");
    assert_eq!(metadata(&profile, "SendClaimsIn"), "Body");
    assert!(
        metadata(&profile, "ServiceUrl").ends_with("/api/b2c/custom-policy"),
        "{profile}"
    );
    let outputs: Vec<String> = elements(&profile, "OutputClaim")
        .iter()
        .map(|claim| attribute(claim, "ClaimTypeReferenceId").unwrap().to_owned())
        .collect();
    assert_eq!(
        outputs,
        ["invitationKind", "invitationExpires", "invitationKeyId"]
    );
    let sign_up = |email: &str, code: &str| {
        policy_body(&[
            ("email", email),
            ("invitationCode", code),
            // `{Culture:RFC5646}`, resolved by B2C.
            ("invitationLocale", "en-US"),
        ])
    };
    assert_eq!(
        sign_up("bob@example.org", BOB_CODE),
        json!({"email": "bob@example.org", "invitationCode": BOB_CODE, "locale": "en-US"}),
        "the body the guide says B2C posts"
    );

    let server = Server::start();
    let auth = basic(USER, PASSWORD);

    // A valid code: 200 with exactly the output claims.
    for email in ["bob@example.org", "Bob@Example.ORG"] {
        let (status, headers, json) = server.post(Some(&auth), &sign_up(email, BOB_CODE));
        assert_eq!(status, 200, "{email}: {json}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        assert_eq!(
            json,
            json!({"invitationKind": "email", "invitationExpires": "2106-02-07T06:28:15Z",
                "invitationKeyId": 7}),
            "{email}"
        );
    }

    // Refusals: 409 with the guide's body and the English message it quotes.
    let refusals = [
        (
            sign_up("mallory@example.org", BOB_CODE),
            "not-valid",
            "This invitation code is not valid for this email address. Please sign up with the \
             email address your invitation was sent to.",
        ),
        (
            sign_up("carol@example.org", CAROL_CODE),
            "expired",
            "This invitation code expired on 1970-01-02. Please ask for a new invitation.",
        ),
        (
            sign_up("bob@example.org", &BOB_CODE.replace("243ZZ", "243ZY")),
            "mistyped",
            "The invitation code has a typo. Please check it against your invitation email and \
             try again.",
        ),
    ];
    for (body, outcome, message) in refusals {
        let (status, headers, json) = server.post(Some(&auth), &body);
        assert_eq!(status, 409, "{body}: {json}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        assert_eq!(
            json,
            json!({"version": "1.0.0", "status": 409, "code": format!("invitegate.{outcome}"),
                "userMessage": message}),
            "{body}"
        );
    }

    // Without the policy keys' credentials: 401, the same body whatever was wrong.
    let body = sign_up("bob@example.org", BOB_CODE);
    let mut refused = Vec::new();
    for authorization in [
        None,
        Some(basic(USER, "a long random")),
        Some(basic(USER, "a long random: password ")),
        Some(basic("b2c", PASSWORD)),
        Some(auth.replacen("Basic", "Bearer", 1)),
    ] {
        let (status, headers, json) = server.post(authorization.as_deref(), &body);
        assert_eq!(status, 401, "{authorization:?}: {json}");
        assert_eq!(json["error"], "unauthorized", "{authorization:?}");
        assert!(
            header(&headers, "www-authenticate").starts_with("Basic"),
            "{headers:?}"
        );
        refused.push(json);
    }
    assert!(
        refused.windows(2).all(|pair| pair[0] == pair[1]),
        "{refused:?}"
    );

    server.stop();
}
