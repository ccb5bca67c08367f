//! `invitegate send` throughput against raw lettre, measured in the same run.
//!
//! `cargo bench --bench send` sends 10,000 messages to a local SMTP sink (in this process,
//! on 127.0.0.1, plain text, answering 250 to everything) three times over:
//!
//! - baseline: the same messages, rendered beforehand (subject, body, recipient), each built
//!   with lettre's `Message` builder and sent by its pooled async transport with as many
//!   concurrent senders as connections: the mail library sending the same messages without
//!   minting, templating or journalling;
//! - reference: the bytes `send` built, sent as they are (`send_raw`): lettre without even
//!   building a message, the floor of the transport alone;
//! - send: `invitegate::send::check` then `deliver` through the SMTP transport, rate limit
//!   off: reading the CSV, minting, rendering the default templates, building each message,
//!   journalling before and after each one (with the journal synced in the background),
//!   pacing and retries in place.
//!
//! The same rows then go through Microsoft Graph, to a local server (in this process, on
//! 127.0.0.1, plain HTTP/1.1) playing Entra's token endpoint (one token for the run) and
//! Graph's `sendMail` (the body read, then 202), three ways (`send/graph.rs`):
//!
//! - baseline: a plain reqwest client (the crate and features the product uses, rustls, its
//!   keep-alive pool) asks for one token, then posts the very bodies the transport posts,
//!   serialized beforehand from the library's prepared messages, with a bearer token, as many
//!   at once as Graph's cap on concurrent requests to one mailbox (4);
//! - floor: what no campaign can avoid, written plainly: every row read, minted, rendered
//!   (subject and HTML) and serialized before the first request, as a campaign checks every
//!   row before it sends any; then the baseline's posting, with one line appended to a log file
//!   by one `write` before each request, the least a journal that knows which messages may
//!   have gone can do;
//! - send: `check`, the transport's check (its token), then `deliver` through the Graph
//!   transport, with `--graph-url` and `--oauth-authority` the local server, rate limit off,
//!   concurrency 4, an HTML template beside the default text one (Graph takes the HTML body).
//!
//! Before the rounds, one untimed run of send over Graph and one of the floor keep every body
//! the server takes, and they must be the baseline's, byte for byte. The three run in a
//! different order each round.
//!
//! A round runs them all back to back, and each ratio compares two runs of the same round:
//! on a shared machine the neighbours' load changes from second to second, and a ratio of two
//! runs made close together cancels most of it. The median over the rounds (5, or
//! `INVITEGATE_BENCH_ROUNDS`) is reported, with the lowest and highest. Target: send at least
//! 0.8 of the baseline, over SMTP and over Graph; the share of the SMTP reference, and over
//! Graph the share of the floor and the floor's share of the baseline, are printed too.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "send/graph.rs"]
mod graph;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use invitegate::KeyRing;
use invitegate::batch::{MintOptions, ReadOptions};
use invitegate::send::{
    Campaign, Journal, JournalState, Prepared, Retry, RowOutcome, SendOptions, SmtpSettings,
    SmtpTransport, TemplateSource, Templates, TlsMode,
};
use lettre::message::Mailbox;
use lettre::message::SinglePart;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const MESSAGES: usize = 10_000;
const CONCURRENCY: usize = 4;
/// Rounds by default; `INVITEGATE_BENCH_ROUNDS` sets more on a busy machine.
const ROUNDS: usize = 5;

/// Serves each connection to a new port on 127.0.0.1 with `handle`, on a thread of its own
/// with a single-threaded runtime (the bench's client runs on the other core): the port.
fn loopback_server<H, F>(handle: H) -> u16
where
    H: Fn(tokio::net::TcpStream) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(handle(socket));
            }
        });
    });
    port_rx.recv().unwrap()
}

/// A minimal SMTP server that accepts everything and counts messages.
fn start_sink() -> (u16, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    let port = loopback_server(move |socket| {
        let counter = Arc::clone(&counter);
        async move {
            let _ = serve(socket, &counter).await;
        }
    });
    (port, count)
}

async fn serve(socket: tokio::net::TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut socket = BufReader::new(socket);
    socket.get_mut().write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = String::new();
    let mut in_data = false;
    loop {
        line.clear();
        // lettre writes a message's final "\r\n.\r\n" on its own, without TCP_NODELAY: a
        // delayed acknowledgement here would hold it back 40 ms (Nagle). Acknowledge at once,
        // as a busy server effectively does; both sides of the comparison get the same.
        #[cfg(target_os = "linux")]
        socket2::SockRef::from(socket.get_ref()).set_tcp_quickack(true)?;
        if socket.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                count.fetch_add(1, Ordering::Relaxed);
                socket.get_mut().write_all(b"250 2.0.0 queued\r\n").await?;
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                socket.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 ok\r\n",
        };
        socket.get_mut().write_all(reply).await?;
    }
}

fn recipients() -> String {
    let mut text = String::from("first_name,last_name,email,department\n");
    for i in 0..MESSAGES {
        text.push_str(&format!(
            "Person{i},Surname{i},person.{i}@contoso.com,Sales\n"
        ));
    }
    text
}

fn options(now: OffsetDateTime) -> SendOptions {
    SendOptions {
        mint: MintOptions {
            default_expiry: Some(
                invitegate::Expiry::from_datetime(now + time::Duration::days(14)).unwrap(),
            ),
            now,
            allow_public_domains: false,
        },
        read: ReadOptions::default(),
        from: "Contoso <invites@contoso.com>".parse().unwrap(),
        to_one: None,
        sign_up_url: Some("https://contoso.example/signup".to_owned()),
        concurrency: CONCURRENCY,
        rate: None,
        skip_uncertain: false,
        retry_rejected: false,
        retry: Retry::default(),
        limit: None,
    }
}

/// One message as the baselines take it: its rendered parts, and the bytes `send` built.
struct Built {
    to: lettre::Address,
    subject: String,
    text: String,
    envelope: lettre::address::Envelope,
    bytes: Vec<u8>,
}

/// The subject and plain text body of a formatted single-part message (7 bit or
/// quoted-printable, as lettre writes a plain text body).
fn parts(bytes: &[u8]) -> (String, String) {
    let text = std::str::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    // A MIME part ends with a line break of its own, after the body.
    let body = body.strip_suffix("\r\n").unwrap();
    let subject = head
        .lines()
        .find_map(|line| line.strip_prefix("Subject: "))
        .unwrap();
    let body = if head.contains("Content-Transfer-Encoding: quoted-printable") {
        let joined = body.replace("=\r\n", "");
        let mut decoded = Vec::with_capacity(joined.len());
        let mut bytes = joined.bytes();
        while let Some(byte) = bytes.next() {
            if byte == b'=' {
                let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                let hex = std::str::from_utf8(&hex).unwrap();
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
            } else {
                decoded.push(byte);
            }
        }
        String::from_utf8(decoded).unwrap()
    } else {
        assert!(head.contains("Content-Transfer-Encoding: 7bit"), "{head}");
        body.to_owned()
    };
    (subject.to_owned(), body.replace("\r\n", "\n"))
}

/// A message built from its parts as a lettre user builds one.
fn lettre_message(from: &Mailbox, message: &Built) -> Message {
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, message.to.clone()))
        .subject(message.subject.clone())
        .singlepart(SinglePart::plain(message.text.clone()))
        .unwrap()
}

/// Every row the library prepares from `input` (read, minted, rendered, built), each turned
/// into what a baseline sends by `each`.
fn prepared<T>(
    ring: &KeyRing,
    input: &str,
    templates: &Templates,
    options: &SendOptions,
    mut each: impl FnMut(&Prepared) -> T,
) -> Vec<T> {
    let state = JournalState::default();
    let campaign = Campaign {
        ring,
        templates,
        options,
        journal: &state,
        journal_path: Path::new("unused"),
    };
    let mut out = Vec::with_capacity(MESSAGES);
    invitegate::send::prepare(&campaign, input.as_bytes(), |outcome| {
        if let RowOutcome::Ready { prepared, .. } = outcome {
            out.push(each(&prepared));
        }
        true
    })
    .unwrap();
    out
}

/// The campaign's messages, rendered once: what the baselines send.
fn messages(
    ring: &KeyRing,
    input: &str,
    templates: &Templates,
    options: &SendOptions,
) -> Vec<Built> {
    let out = prepared(ring, input, templates, options, |prepared| {
        let message = prepared.mail.to_message().unwrap();
        let bytes = message.formatted();
        let (subject, text) = parts(&bytes);
        Built {
            to: prepared.to.clone(),
            subject,
            text,
            envelope: message.envelope().clone(),
            bytes,
        }
    });
    // The baseline's own build of a message carries the same subject and body.
    let first = &out[0];
    let rebuilt = lettre_message(&options.from, first);
    assert_eq!(
        parts(&rebuilt.formatted()),
        (first.subject.clone(), first.text.clone())
    );
    out
}

/// Raw lettre: the pooled transport, `CONCURRENCY` senders, the rendered messages. With
/// `build`, each message is built from its parts as a lettre user sends mail (`Message`
/// builder, then `send`); without, the bytes `send` built are sent as they are (`send_raw`).
fn baseline(port: u16, messages: &Arc<Vec<Built>>, from: &Mailbox, build: bool) -> Duration {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(CONCURRENCY as u32))
            .build();
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (transport, next, messages, from) = (
                transport.clone(),
                Arc::clone(&next),
                Arc::clone(messages),
                from.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(message) = messages.get(i) else {
                        return;
                    };
                    if build {
                        transport
                            .send(lettre_message(&from, message))
                            .await
                            .unwrap();
                    } else {
                        transport
                            .send_raw(&message.envelope, &message.bytes)
                            .await
                            .unwrap();
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        start.elapsed()
    })
}

/// The whole `send` path, with a fresh journal in `dir`.
fn send(
    port: u16,
    ring: &KeyRing,
    input: &str,
    templates: &Templates,
    options: &SendOptions,
    dir: &Path,
    round: usize,
) -> Duration {
    let path = dir.join(format!("journal-{round}"));
    let (journal, state) =
        Journal::open(&path, options.mint.default_expiry, options.mint.now).unwrap();
    let journal = Arc::new(journal);
    let mut smtp = SmtpSettings::from_url(&format!("smtp://127.0.0.1:{port}")).unwrap();
    smtp.tls = TlsMode::None;
    smtp.pool_size = CONCURRENCY as u32;
    let campaign = Campaign {
        ring,
        templates,
        options,
        journal: &state,
        journal_path: &path,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let summary = runtime.block_on(async {
        let checked = invitegate::send::check(&campaign, input.as_bytes(), |_| {}).unwrap();
        let transport = Arc::new(SmtpTransport::new(smtp).unwrap());
        invitegate::send::deliver(
            checked.ready,
            &journal,
            &transport,
            options,
            std::future::pending(),
            |_| {},
        )
        .await
        .unwrap()
    });
    let elapsed = start.elapsed();
    assert_eq!(summary.sent, MESSAGES as u64);
    elapsed
}

fn rate(elapsed: Duration) -> f64 {
    MESSAGES as f64 / elapsed.as_secs_f64()
}

fn main() {
    let rounds = std::env::var("INVITEGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS);
    let ring = KeyRing::parse("7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let now = OffsetDateTime::now_utc();
    let options = options(now);
    let templates = Templates::new(None, None, None).unwrap();
    let input = recipients();
    let scan_start = Instant::now();
    let built = Arc::new(messages(&ring, &input, &templates, &options));
    println!(
        "reading, minting, rendering and building {MESSAGES} messages alone: {:.0} ms",
        scan_start.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(built.len(), MESSAGES);
    let (port, received) = start_sink();
    assert_eq!(CONCURRENCY, graph::MAX_CONCURRENCY);
    let graph_templates = Templates::new(
        None,
        None,
        Some(TemplateSource::new("bench.html", graph::HTML_TEMPLATE)),
    )
    .unwrap();
    let graph_campaign = (&ring, input.as_str(), &graph_templates, &options);
    let graph_bodies = Arc::new(graph::bodies(&ring, &input, &graph_templates, &options));
    assert_eq!(graph_bodies.len(), MESSAGES);
    let (graph_port, graph_seen) = graph::start_server();
    // The journal goes where the build goes: a real disk, as an admin's would be.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // An untimed run of send over Graph first: the server keeps what it takes, which must be
    // what the baseline posts.
    *graph_seen.keep.lock().unwrap() = Some(Vec::new());
    let run = graph::send(graph_port, graph_campaign, dir.path(), "check");
    assert_eq!(run.sent, MESSAGES as u64);
    let mut posted = graph_seen.keep.lock().unwrap().take().unwrap();
    let mut expected = graph_bodies.to_vec();
    posted.sort();
    expected.sort();
    assert!(posted == expected, "send over Graph posts other bodies");
    // The floor too: its own preparation must come to the same bodies.
    *graph_seen.keep.lock().unwrap() = Some(Vec::new());
    graph::floor(
        graph_port,
        graph_campaign,
        &dir.path().join("floor-check.log"),
    );
    let mut floor_posted = graph_seen.keep.lock().unwrap().take().unwrap();
    floor_posted.sort();
    if let Some((floor_body, body)) = floor_posted
        .iter()
        .zip(&expected)
        .find(|(floor_body, body)| floor_body != body)
    {
        panic!(
            "the floor posts other bodies than send:\n{}\n{}",
            String::from_utf8_lossy(floor_body),
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(floor_posted.len(), expected.len());
    let first: serde_json::Value = serde_json::from_slice(&graph_bodies[0]).unwrap();
    assert_eq!(first["message"]["body"]["contentType"], "HTML");
    assert_eq!(first["saveToSentItems"], false);
    let (mut built_rates, mut raw_rates, mut send_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut raw_ratios) = (Vec::new(), Vec::new());
    let (mut graph_base_rates, mut graph_send_rates, mut graph_ratios) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut floor_rates, mut floor_ratios, mut floor_of_base) =
        (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let built_base = baseline(port, &built, &options.from, true);
        let ours = send(port, &ring, &input, &templates, &options, dir.path(), round);
        let raw_base = baseline(port, &built, &options.from, false);
        println!(
            "round {}: lettre building each message {:>6.0} messages/s, send {:>6.0} messages/s, lettre sending prebuilt bytes {:>6.0} messages/s: {:.2} of the baseline",
            round + 1,
            rate(built_base),
            rate(ours),
            rate(raw_base),
            built_base.as_secs_f64() / ours.as_secs_f64(),
        );
        built_rates.push(rate(built_base));
        raw_rates.push(rate(raw_base));
        send_rates.push(rate(ours));
        ratios.push(built_base.as_secs_f64() / ours.as_secs_f64());
        raw_ratios.push(raw_base.as_secs_f64() / ours.as_secs_f64());

        // The three in a different order each round: none always runs first or last.
        let (mut graph_base, mut floor, mut run) = (None, None, None);
        for turn in 0..3 {
            match (turn + round) % 3 {
                0 => graph_base = Some(graph::baseline(graph_port, &graph_bodies)),
                1 => {
                    floor = Some(graph::floor(
                        graph_port,
                        graph_campaign,
                        &dir.path().join(format!("floor-{round}.log")),
                    ));
                }
                _ => {
                    run = Some(graph::send(
                        graph_port,
                        graph_campaign,
                        dir.path(),
                        &round.to_string(),
                    ));
                }
            }
        }
        let (graph_base, floor, run) = (graph_base.unwrap(), floor.unwrap(), run.unwrap());
        assert_eq!(run.sent, MESSAGES as u64);
        let graph_ours = run.elapsed;
        println!(
            "round {}: reqwest posting the same JSON {:>6.0} messages/s, the floor {:>6.0} messages/s, send over Graph {:>6.0} messages/s (checking the rows first: {:.0} ms): {:.2} of the baseline, {:.2} of the floor; the floor {:.2} of the baseline",
            round + 1,
            rate(graph_base),
            rate(floor),
            rate(graph_ours),
            run.check.as_secs_f64() * 1000.0,
            graph_base.as_secs_f64() / graph_ours.as_secs_f64(),
            floor.as_secs_f64() / graph_ours.as_secs_f64(),
            graph_base.as_secs_f64() / floor.as_secs_f64(),
        );
        graph_base_rates.push(rate(graph_base));
        graph_send_rates.push(rate(graph_ours));
        graph_ratios.push(graph_base.as_secs_f64() / graph_ours.as_secs_f64());
        floor_rates.push(rate(floor));
        floor_ratios.push(floor.as_secs_f64() / graph_ours.as_secs_f64());
        floor_of_base.push(graph_base.as_secs_f64() / floor.as_secs_f64());
    }
    assert_eq!(
        received.load(Ordering::Relaxed),
        (3 * rounds * MESSAGES) as u64
    );
    assert_eq!(
        graph_seen.accepted.load(Ordering::Relaxed),
        ((3 * rounds + 2) * MESSAGES) as u64
    );
    assert_eq!(graph_seen.refused.load(Ordering::Relaxed), 0);
    // One token a run: every round's three, and the two checks'.
    assert_eq!(
        graph_seen.tokens.load(Ordering::Relaxed),
        (3 * rounds + 2) as u64
    );
    println!(
        "send/raw-lettre: {MESSAGES} messages, concurrency {CONCURRENCY}, rate limit off, median of {rounds} rounds"
    );
    println!(
        "  baseline (lettre, building each message):  {:>8.0} messages/s",
        median(&mut built_rates)
    );
    println!(
        "  reference (lettre, prebuilt bytes):         {:>8.0} messages/s",
        median(&mut raw_rates)
    );
    println!(
        "  invitegate send (mint, render, journal):    {:>8.0} messages/s",
        median(&mut send_rates)
    );
    println!(
        "  ratio: {:.2} of the baseline (target >= 0.8; rounds {:.2} to {:.2}); {:.2} of the prebuilt reference",
        median(&mut ratios),
        ratios.first().copied().unwrap_or_default(),
        ratios.last().copied().unwrap_or_default(),
        median(&mut raw_ratios)
    );
    println!(
        "send/reqwest over Microsoft Graph: {MESSAGES} messages, concurrency {CONCURRENCY}, rate limit off, median of {rounds} rounds"
    );
    println!(
        "  baseline (reqwest, the same JSON bodies):   {:>8.0} messages/s",
        median(&mut graph_base_rates)
    );
    println!(
        "  floor (prepare every row first, a log line before each request): {:>8.0} messages/s",
        median(&mut floor_rates)
    );
    println!(
        "  invitegate send --graph-sender:             {:>8.0} messages/s",
        median(&mut graph_send_rates)
    );
    println!(
        "  ratio: {:.2} of the baseline (target >= 0.8; rounds {:.2} to {:.2})",
        median(&mut graph_ratios),
        graph_ratios.first().copied().unwrap_or_default(),
        graph_ratios.last().copied().unwrap_or_default(),
    );
    println!(
        "  ratio: {:.2} of the floor (rounds {:.2} to {:.2}); the floor is {:.2} of the baseline (rounds {:.2} to {:.2})",
        median(&mut floor_ratios),
        floor_ratios.first().copied().unwrap_or_default(),
        floor_ratios.last().copied().unwrap_or_default(),
        median(&mut floor_of_base),
        floor_of_base.first().copied().unwrap_or_default(),
        floor_of_base.last().copied().unwrap_or_default(),
    );
}

/// The median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
