//! The Microsoft Graph side of `benches/send.rs`: a loopback server playing Entra's token
//! endpoint and Graph's `sendMail`, the baseline (a plain reqwest client posting the same JSON
//! bodies), and `send` through the Graph transport.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use invitegate::KeyRing;
use invitegate::send::oauth::{ClientSecret, Credential, OAuthSettings};
pub use invitegate::send::transport::graph::MAX_CONCURRENCY;
use invitegate::send::{
    Campaign, GraphSettings, GraphTransport, Journal, Mail, SendOptions, Templates, Transport as _,
};
use serde_json::json;

/// The one token the server gives, and wants on every `sendMail`.
const TOKEN: &str = "bench-token";
/// Where the messages come from.
pub const SENDER: &str = "invites@contoso.com";
const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "00000000-0000-0000-0000-00000000b3c4";
const CLIENT_SECRET: &str = "bench-secret";

/// An HTML body as a campaign sending through Graph would have: Graph takes one body, and
/// the HTML one when there is one.
pub const HTML_TEMPLATE: &str = "\
<p>Hello {{ first_name }},</p>
<p>You are invited to create an account at <a href=\"{{ sign_up_url }}\">{{ sign_up_url }}</a>.</p>
<p>Your invitation code is:</p>
<p style=\"font-family: monospace; font-size: 1.4em\">{{ code }}</p>
<p>Sign up with this email address, {{ email }}, and enter the code when asked.
The code is valid until {{ expires_human }}.</p>
";

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    /// `sendMail` requests answered 202.
    pub accepted: AtomicU64,
    /// Token requests.
    pub tokens: AtomicU64,
    /// Requests refused: a wrong path or token. None in a good run.
    pub refused: AtomicU64,
    /// While set, the accepted bodies are kept (to check both sides post the same ones).
    pub keep: Mutex<Option<Vec<Bytes>>>,
}

/// Starts the server on 127.0.0.1, on a thread of its own with a single-threaded runtime,
/// as the SMTP sink runs. HTTP/1.1 with keep-alive, as Graph speaks to a client without TLS.
pub fn start_server() -> (u16, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    let port = super::loopback_server(move |socket| {
        let seen = Arc::clone(&shared);
        async move {
            socket.set_nodelay(true).unwrap();
            let service = hyper::service::service_fn(move |request| {
                let seen = Arc::clone(&seen);
                async move { answer(request, &seen).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                .await;
        }
    });
    (port, seen)
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    seen: &Seen,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_owned();
    let bearer = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    // Drained whatever the request: as Graph reads a message before it answers.
    let body = request.into_body().collect().await?.to_bytes();
    let reply = |status: StatusCode, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
    };
    if path == format!("/{TENANT}/oauth2/v2.0/token") {
        seen.tokens.fetch_add(1, Ordering::Relaxed);
        let token = json!({"token_type": "Bearer", "expires_in": 3600, "access_token": TOKEN});
        let mut response = reply(StatusCode::OK, Bytes::from(token.to_string()));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    if path == format!("/v1.0/users/{SENDER}/sendMail") && bearer && !body.is_empty() {
        seen.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(kept) = seen.keep.lock().unwrap().as_mut() {
            kept.push(body);
        }
        return Ok(reply(StatusCode::ACCEPTED, Bytes::new()));
    }
    seen.refused.fetch_add(1, Ordering::Relaxed);
    Ok(reply(StatusCode::UNAUTHORIZED, Bytes::new()))
}

/// The JSON body the Graph transport posts for `mail`, built as it builds it (the documented
/// `sendMail` shape: the message's subject, body, recipients and sender; no copy kept in Sent
/// Items).
fn graph_body(mail: &Mail) -> String {
    let (content_type, content) = match &mail.html {
        Some(html) => ("HTML", html.as_str()),
        None => ("Text", mail.text.as_str()),
    };
    let mut message = json!({
        "subject": mail.subject,
        "body": {"contentType": content_type, "content": content},
        "toRecipients": [{"emailAddress": {"address": mail.to.email.to_string()}}],
        "from": {"emailAddress": {"address": mail.from.email.to_string()}},
    });
    if let Some(name) = &mail.from.name {
        message["from"]["emailAddress"]["name"] = json!(name);
    }
    if let Some(name) = &mail.to.name {
        message["toRecipients"][0]["emailAddress"]["name"] = json!(name);
    }
    json!({"message": message, "saveToSentItems": false}).to_string()
}

/// The campaign's `sendMail` bodies, prepared by the library once and serialized: what the
/// baseline posts.
pub fn bodies(
    ring: &KeyRing,
    input: &str,
    templates: &Templates,
    options: &SendOptions,
) -> Vec<Bytes> {
    super::prepared(ring, input, templates, options, |prepared| {
        Bytes::from(graph_body(&prepared.mail))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The baseline: a plain reqwest client (the product's crate and features: rustls, keep-alive
/// pool) gets one token, then posts the prepared bodies with `MAX_CONCURRENCY` senders, each
/// with the bearer token. Timed from the token request to the last 202.
pub fn baseline(port: u16, bodies: &Arc<Vec<Bytes>>) -> Duration {
    // reqwest's `rustls-no-provider`, as the product has it, wants a provider installed (or
    // a configuration given, as the product does).
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime().block_on(async {
        let client = reqwest::Client::builder().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let endpoint: reqwest::Url = format!("{base}/v1.0/users/{SENDER}/sendMail")
            .parse()
            .unwrap();
        let start = Instant::now();
        let token = Arc::new(token(&client, &base).await);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..MAX_CONCURRENCY {
            let (client, endpoint, token, next, bodies) = (
                client.clone(),
                endpoint.clone(),
                Arc::clone(&token),
                Arc::clone(&next),
                Arc::clone(bodies),
            );
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return;
                    };
                    post(&client, &endpoint, &token, body).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        start.elapsed()
    })
}

/// The `sendMail` body, serialized from borrowed fields as an efficient client would.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FloorMail<'a> {
    message: FloorMessage<'a>,
    save_to_sent_items: bool,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FloorMessage<'a> {
    body: FloorBody<'a>,
    from: FloorRecipient<'a>,
    subject: &'a str,
    to_recipients: [FloorRecipient<'a>; 1],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FloorBody<'a> {
    content: &'a str,
    content_type: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FloorRecipient<'a> {
    email_address: FloorAddress<'a>,
}

#[derive(serde::Serialize)]
struct FloorAddress<'a> {
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// One line a message in the floor's log: what a journal must say before the request goes
/// (the row, its address, its code's key and expiry) and the previous message's reply.
#[derive(serde::Serialize)]
struct FloorLine<'a> {
    line: u64,
    to: &'a str,
    key_id: u8,
    expires_at: &'a str,
    previous_reply: &'a str,
}

/// The floor: what no `send` over Graph can avoid, written plainly, with no code of ours but
/// the minting (the code format is ours to compute). Timed from the start, it first prepares
/// every row, as a campaign must before its first message (a bad row on line 9,000 must not
/// leave 8,999 people invited): reads it with the csv crate, mints its code, renders the
/// subject and the HTML body with minijinja from a plain context, and serializes the
/// `sendMail` body from borrowed fields. Then, as the baseline, it gets one token and posts the
/// bodies with `MAX_CONCURRENCY` senders, each appending one JSON line to a log file with one
/// `write` before its request (the row, and the reply to the one before): the least a
/// journal that knows which messages may have gone can do. No pacing, retries, reply
/// classification or progress.
pub fn floor(
    port: u16,
    campaign: (&KeyRing, &str, &Templates, &SendOptions),
    log: &Path,
) -> Duration {
    let (ring, input, _, options) = campaign;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let expiry = options.mint.default_expiry.unwrap();
    let expires_at = invitegate::send::journal::rfc3339(expiry);
    let from = options.from.email.to_string();
    let from_name = options.from.name.clone();
    let sign_up_url = options.sign_up_url.clone().unwrap_or_default();
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // `/` left as it is in HTML, as `send` leaves it (minijinja's own escaping writes it
    // `&#x2f;`).
    env.set_formatter(|out, state, value| {
        if *state.auto_escape() == minijinja::AutoEscape::Html
            && !value.is_safe()
            && let Some(text) = value.as_str()
        {
            let escaped = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#x27;");
            return out.write_str(&escaped).map_err(minijinja::Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.add_template("subject", invitegate::send::template::DEFAULT_SUBJECT)
        .unwrap();
    env.add_template("html.html", HTML_TEMPLATE).unwrap();
    let (subject, html) = (
        env.get_template("subject").unwrap(),
        env.get_template("html.html").unwrap(),
    );
    let start = Instant::now();
    let expires_human = jiff::fmt::strtime::format(
        invitegate::send::template::HUMAN_DATE,
        &jiff::Timestamp::from_second(i64::from(expiry.unix()))
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC),
    )
    .unwrap();
    let mut reader = csv::Reader::from_reader(input.as_bytes());
    let mut prepared = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.unwrap();
        let email = row.get(2).unwrap().trim();
        let audience = invitegate::Audience::email(email).unwrap();
        let code = invitegate::verify::mint(ring, &audience, expiry).to_string();
        let context = minijinja::context! {
            first_name => row.get(0).unwrap(),
            last_name => row.get(1).unwrap(),
            email => email,
            code => code,
            sign_up_url => &sign_up_url,
            expires_human => &expires_human,
        };
        let subject = subject.render(&context).unwrap();
        let content = html.render(&context).unwrap();
        let body = serde_json::to_vec(&FloorMail {
            message: FloorMessage {
                body: FloorBody {
                    content: &content,
                    content_type: "HTML",
                },
                from: FloorRecipient {
                    email_address: FloorAddress {
                        address: &from,
                        name: from_name.as_deref(),
                    },
                },
                subject: &subject,
                to_recipients: [FloorRecipient {
                    email_address: FloorAddress {
                        address: email,
                        name: None,
                    },
                }],
            },
            save_to_sent_items: false,
        })
        .unwrap();
        prepared.push((i as u64 + 2, email.to_owned(), Bytes::from(body)));
    }
    let prepared = Arc::new(prepared);
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(log)
            .unwrap(),
    );
    let key_id = ring.signing_key_id();
    let expires_at = Arc::new(expires_at);
    runtime().block_on(async {
        let client = reqwest::Client::builder().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let endpoint: reqwest::Url = format!("{base}/v1.0/users/{SENDER}/sendMail")
            .parse()
            .unwrap();
        let token = Arc::new(token(&client, &base).await);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..MAX_CONCURRENCY {
            let (client, endpoint, token, next, prepared, file, expires_at) = (
                client.clone(),
                endpoint.clone(),
                Arc::clone(&token),
                Arc::clone(&next),
                Arc::clone(&prepared),
                Arc::clone(&file),
                Arc::clone(&expires_at),
            );
            tasks.spawn(async move {
                let mut previous = String::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((line, to, body)) = prepared.get(i) else {
                        return;
                    };
                    let mut record = serde_json::to_vec(&FloorLine {
                        line: *line,
                        to,
                        key_id,
                        expires_at: &expires_at,
                        previous_reply: &previous,
                    })
                    .unwrap();
                    record.push(b'\n');
                    std::io::Write::write_all(&mut &*file, &record).unwrap();
                    post(&client, &endpoint, &token, body).await;
                    previous = format!("{line} 202 Accepted");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    start.elapsed()
}

/// Posts one `sendMail` body with the bearer token, as a plain client does, and reads the
/// reply to its end, so that the connection goes back to the pool.
async fn post(client: &reqwest::Client, endpoint: &reqwest::Url, token: &str, body: &Bytes) {
    let response = client
        .post(endpoint.clone())
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    response.bytes().await.unwrap();
}

/// One token from the server's token endpoint, as a plain client asks for it.
async fn token(client: &reqwest::Client, base: &str) -> String {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", CLIENT_ID)
        .append_pair("scope", &format!("{base}/.default"))
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_secret", CLIENT_SECRET)
        .finish();
    let reply = client
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    reply["access_token"].as_str().unwrap().to_owned()
}

/// What a run of `send` over Graph took.
pub struct Run {
    /// The whole run.
    pub elapsed: Duration,
    /// Of which the check of every row (read, minted, rendered, built), before the first
    /// message.
    pub check: Duration,
    /// Messages accepted.
    pub sent: u64,
}

/// The whole `send` path over Graph, with a fresh journal in `dir`: the check of every row,
/// the transport's own check (its token), and `deliver`, as `invitegate send --graph-sender
/// invites@contoso.com --graph-url http://127.0.0.1:PORT --oauth-authority
/// http://127.0.0.1:PORT --rate off` runs it.
pub fn send(
    port: u16,
    campaign: (&KeyRing, &str, &Templates, &SendOptions),
    dir: &Path,
    name: &str,
) -> Run {
    let (ring, input, templates, options) = campaign;
    let path = dir.join(format!("journal-graph-{name}"));
    let (journal, state) =
        Journal::open(&path, options.mint.default_expiry, options.mint.now).unwrap();
    let journal = Arc::new(journal);
    let url = invitegate::send::http::parse_url("--graph-url", &format!("http://127.0.0.1:{port}"))
        .unwrap();
    let settings = GraphSettings {
        graph_url: url.clone(),
        sender: SENDER.to_owned(),
    };
    let oauth = OAuthSettings {
        authority: url,
        tenant: TENANT.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        credential: Credential::Secret(ClientSecret::new(CLIENT_SECRET.to_owned()).unwrap()),
        scope: settings.scope(),
    };
    let campaign = Campaign {
        ring,
        templates,
        options,
        journal: &state,
        journal_path: &path,
    };
    let runtime = runtime();
    let start = Instant::now();
    let (summary, check) = runtime.block_on(async {
        let checked = invitegate::send::check(&campaign, input.as_bytes(), |_| {}).unwrap();
        let check = start.elapsed();
        let transport = Arc::new(GraphTransport::new(settings, oauth).unwrap());
        transport.check().await.unwrap();
        let summary = invitegate::send::deliver(
            checked.ready,
            &journal,
            &transport,
            options,
            std::future::pending(),
            |_| {},
        )
        .await
        .unwrap();
        (summary, check)
    });
    Run {
        elapsed: start.elapsed(),
        check,
        sent: summary.sent,
    }
}
