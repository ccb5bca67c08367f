//! `invitegate send --graph-sender` against a local server playing Entra's token endpoint and
//! Microsoft Graph (tests/send_support): no network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod send_support;

use std::time::Duration;

use invitegate::{KeyRing, UnixTime, VerifyOptions, verify};
use send_support::{
    CLIENT_ID, Campaign, GraphServer, SECRET, SENDER, Scripted, code, data, recipients, run,
    stderr, stdout,
};

/// No output, journal or rejects file holds the secret or a token.
fn assert_no_secrets(campaign: &Campaign, server: &GraphServer, outputs: &[&std::process::Output]) {
    let mut seen = campaign.all_files();
    for output in outputs {
        seen.push_str(&stdout(output));
        seen.push_str(&stderr(output));
    }
    assert!(!seen.contains(SECRET), "the secret leaked");
    for token in server.state().issued.keys() {
        assert!(!seen.contains(token.as_str()), "a token leaked: {token}");
    }
}

#[test]
fn graph_sends_each_row_once_with_a_token_and_journals_as_smtp_does() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    let output = campaign.run_graph(&server, &["--rate", "off"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let state = server.state();
    // One token for the run, asked for with the app's credentials and Graph's scope.
    assert_eq!(state.token_requests.len(), 1);
    let form = &state.token_requests[0];
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["scope"], format!("{}/.default", server.url()));
    assert_eq!(state.accepted.len(), 3);
    for (path, bearer, _) in &state.requests {
        assert_eq!(path, &format!("/v1.0/users/{SENDER}/sendMail"));
        assert_eq!(bearer, "tok-1");
    }
    let ring = KeyRing::parse(send_support::KEYS).unwrap();
    let now = UnixTime::from_unix(time::OffsetDateTime::now_utc().unix_timestamp());
    for (_, mail) in &state.accepted {
        assert_eq!(mail["saveToSentItems"], false);
        assert_eq!(mail["message"]["body"]["contentType"], "Text");
        assert_eq!(mail["message"]["from"]["emailAddress"]["address"], SENDER);
        let to = send_support::recipient(mail);
        let outcome = verify(&ring, &code(mail), &to, now, &VerifyOptions::default());
        assert!(outcome.is_valid(), "{to}: {outcome}");
    }
    drop(state);
    let mut sent: Vec<String> = server.recipients();
    sent.sort();
    assert_eq!(sent, ["p0@contoso.com", "p1@contoso.com", "p2@contoso.com"]);
    // The journal reads as it does for SMTP: handed, then the reply.
    let journal = campaign.journal();
    let events: Vec<&str> = journal
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.iter().filter(|e| **e == "handed").count(), 3);
    assert_eq!(events.iter().filter(|e| **e == "sent").count(), 3);
    assert!(
        journal.iter().any(|r| r["reply"]
            .as_str()
            .is_some_and(|t| t.starts_with("202 Accepted"))),
        "{journal:?}"
    );
    // The same command again sends nothing.
    let again = campaign.run_graph(&server, &["--rate", "off"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(server.state().accepted.len(), 3);
    assert!(
        stderr(&again).contains("0 to send, 3 already sent"),
        "{}",
        stderr(&again)
    );
    assert_no_secrets(&campaign, &server, &[&output, &again]);
}

#[test]
fn a_token_that_lapses_mid_run_is_renewed_and_a_401_renews_it_once() {
    let campaign = Campaign::new(&recipients(4));
    let server = GraphServer::start();
    // Declared good for an hour, honoured for half a second: the first 401 renews it.
    server.state().honoured_for = Some(Duration::from_millis(300));
    let output = campaign.run_graph(&server, &["--rate", "2/s", "--concurrency", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let state = server.state();
    assert_eq!(state.accepted.len(), 4);
    assert!(
        state.token_requests.len() >= 2,
        "{:?}",
        state.token_requests.len()
    );
    let bearers: std::collections::BTreeSet<&str> =
        state.requests.iter().map(|(_, b, _)| b.as_str()).collect();
    assert!(bearers.len() >= 2, "{bearers:?}");
    drop(state);

    // Declared good for 2 s: renewed before it lapses, with no 401 at all.
    let campaign = Campaign::new(&recipients(4));
    let server = GraphServer::start();
    server.state().expires_in = 2;
    // Honoured a little longer than declared, as Entra's clock and ours differ.
    server.state().honoured_for = Some(Duration::from_secs(3));
    let output = campaign.run_graph(&server, &["--rate", "1/s", "--concurrency", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let state = server.state();
    assert_eq!(state.accepted.len(), 4);
    assert_eq!(state.requests.len(), 4, "no request was refused");
    assert!(state.token_requests.len() >= 2);
    drop(state);
    assert_no_secrets(&campaign, &server, &[&output]);
}

#[test]
fn a_token_refused_again_after_renewal_stops_the_run_with_exit_2() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    server.state().honoured_for = Some(Duration::ZERO);
    let output = campaign.run_graph(&server, &["--rate", "off"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("InvalidAuthenticationToken") && err.contains("Mail.Send"),
        "{err}"
    );
    assert!(server.state().accepted.is_empty());
    assert!(server.state().requests.len() <= 2 * 4, "stopped at once");
    assert_no_secrets(&campaign, &server, &[&output]);
}

#[test]
fn a_wrong_secret_stops_before_any_row_and_says_what_entra_said() {
    let campaign = Campaign::new(&recipients(2));
    let server = GraphServer::start();
    let output = run({
        let mut command = campaign.graph(&server, &["--rate", "off"]);
        command.env("INVITEGATE_OAUTH_CLIENT_SECRET", "not-the-secret-0123");
        command
    });
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("AADSTS7000215"), "{err}");
    assert!(!err.contains("Trace ID"), "{err}");
    assert!(!err.contains("not-the-secret-0123"), "{err}");
    assert!(server.state().requests.is_empty());
}

#[test]
fn a_certificate_signs_the_client_assertion_and_no_secret_is_sent() {
    let campaign = Campaign::new(&recipients(2));
    let server = GraphServer::start();
    let mut command = campaign.graph(&server, &["--rate", "off"]);
    command
        .env_remove("INVITEGATE_OAUTH_CLIENT_SECRET")
        .arg("--oauth-client-certificate")
        .arg(data("oauth-client.pem"));
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    let state = server.state();
    assert_eq!(state.accepted.len(), 2);
    let form = &state.token_requests[0];
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = form["client_assertion"].clone();
    drop(state);
    let mut seen = stderr(&output) + &stdout(&output) + &campaign.all_files();
    seen.push('\n');
    assert!(!seen.contains(&assertion));
    assert!(!seen.contains("PRIVATE KEY"));
}

#[test]
fn the_secret_comes_only_from_the_environment_or_a_file() {
    let campaign = Campaign::new(&recipients(1));
    let server = GraphServer::start();
    // No flag takes it.
    let output = campaign.run_graph(&server, &["--oauth-client-secret", SECRET]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(server.state().token_requests.is_empty());
    // A file does.
    std::fs::write(campaign.path("secret.txt"), format!("{SECRET}\n")).unwrap();
    let mut command = campaign.graph(&server, &["--rate", "off"]);
    command
        .env_remove("INVITEGATE_OAUTH_CLIENT_SECRET")
        .args(["--oauth-client-secret-file", "secret.txt"]);
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.state().accepted.len(), 1);
    // Neither a secret nor a certificate: said before anything is asked.
    let campaign = Campaign::new(&recipients(1));
    let mut command = campaign.graph(&server, &["--rate", "off"]);
    command.env_remove("INVITEGATE_OAUTH_CLIENT_SECRET");
    let output = run(command);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("INVITEGATE_OAUTH_CLIENT_SECRET"), "{err}");
}

#[test]
fn graph_and_smtp_together_are_a_usage_error_and_http_is_for_loopback_only() {
    let campaign = Campaign::new(&recipients(1));
    let server = GraphServer::start();
    let output = campaign.run_graph(&server, &["--smtp", "smtp://127.0.0.1:25"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--smtp"), "{}", stderr(&output));
    let mut command = campaign.base();
    command
        .args([
            "--graph-sender",
            SENDER,
            "--graph-url",
            "http://graph.example.com",
        ])
        .env("INVITEGATE_OAUTH_TENANT", "t")
        .env("INVITEGATE_OAUTH_CLIENT_ID", CLIENT_ID)
        .env("INVITEGATE_OAUTH_CLIENT_SECRET", SECRET);
    let output = run(command);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");
    assert!(server.state().token_requests.is_empty());
}

#[test]
fn graph_defaults_to_exchange_onlines_pace_and_at_most_four_at_once() {
    let campaign = Campaign::new(&recipients(2));
    let server = GraphServer::start();
    let output = campaign.run_graph(&server, &["--concurrency", "8"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--concurrency 8 lowered to 4"),
        "{}",
        stderr(&output)
    );
    let state = server.state();
    assert_eq!(state.accepted.len(), 2);
    // 30 a minute: two seconds apart, less what the first request's connection took.
    let apart = state.accepted[1].0 - state.accepted[0].0;
    assert!(apart >= Duration::from_millis(1500), "{apart:?}");
}

#[test]
fn throttling_waits_for_retry_after_and_does_not_stop_the_run() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    // Five refusals for now in a row would stop a run; throttling is not one.
    server.state().queue = [(429, 1), (503, 0), (429, 0), (429, 0), (503, 1)]
        .into_iter()
        .map(|(status, wait)| Scripted {
            retry_after: Some(wait),
            ..Scripted::new(status, "ApplicationThrottled")
        })
        .collect();
    let started = std::time::Instant::now();
    let output = campaign.run_graph(&server, &["--rate", "off", "--concurrency", "1"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert!(err.contains("asks to slow down"), "{err}");
    assert_eq!(server.state().accepted.len(), 3);
    assert!(err.contains("0 deferred, 0 retried"), "{err}");
}

#[test]
fn an_invalid_recipient_is_rejected_with_graphs_error_code_and_the_run_goes_on() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    server.state().by_recipient.insert(
        "p1@contoso.com".to_owned(),
        Scripted::new(400, "ErrorInvalidRecipients"),
    );
    let output = campaign.run_graph(&server, &["--rate", "off"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let mut sent = server.recipients();
    sent.sort();
    assert_eq!(sent, ["p0@contoso.com", "p2@contoso.com"]);
    let rejects = std::fs::read_to_string(campaign.path("recipients.csv.rejects.csv")).unwrap();
    assert!(
        rejects.contains("P1,p1@contoso.com,line 3: 400 ErrorInvalidRecipients"),
        "{rejects}"
    );
    assert!(err.contains("1 rejected"), "{err}");
}

#[test]
fn a_missing_permission_stops_at_once_naming_graphs_code_and_what_to_grant() {
    for code in [
        "ErrorAccessDenied",
        "ErrorSendAsDenied",
        "MailboxNotEnabledForRESTAPI",
    ] {
        let campaign = Campaign::new(&recipients(6));
        let server = GraphServer::start();
        server.state().always = Some(Scripted::new(403, code));
        let output = campaign.run_graph(&server, &["--rate", "off", "--concurrency", "1"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(
            err.contains(code) && err.contains("Mail.Send") && err.contains("admin consent"),
            "{err}"
        );
        assert!(err.contains(SENDER), "{err}");
        assert_eq!(
            server.state().requests.len(),
            1,
            "stopped at the first refusal"
        );
        // Nothing went: once granted, the same command sends every row.
        server.state().always = None;
        let again = campaign.run_graph(&server, &["--rate", "off"]);
        assert!(again.status.success(), "{}", stderr(&again));
        assert_eq!(server.state().accepted.len(), 6);
    }
}

#[test]
fn a_used_up_sending_quota_stops_cleanly_and_the_same_command_resumes() {
    let campaign = Campaign::new(&recipients(4));
    let server = GraphServer::start();
    server.state().by_recipient.insert(
        "p2@contoso.com".to_owned(),
        Scripted::new(429, "ErrorExceededMessageLimit"),
    );
    let output = campaign.run_graph(&server, &["--rate", "off", "--concurrency", "1"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("quota") && err.contains("to resume"), "{err}");
    assert_eq!(server.recipients(), ["p0@contoso.com", "p1@contoso.com"]);
    server.state().by_recipient.clear();
    let again = campaign.run_graph(&server, &["--rate", "off"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let mut sent = server.recipients();
    sent.sort();
    assert_eq!(
        sent,
        [
            "p0@contoso.com",
            "p1@contoso.com",
            "p2@contoso.com",
            "p3@contoso.com"
        ]
    );
}

/// The journal's last event for each recipient.
fn last_events(journal: &[serde_json::Value]) -> std::collections::BTreeMap<String, String> {
    let mut by_line = std::collections::HashMap::new();
    let mut last = std::collections::BTreeMap::new();
    for record in journal {
        let line = record["line"].as_u64().unwrap_or(0);
        let event = record["event"].as_str().unwrap().to_owned();
        if event == "handed" {
            by_line.insert(line, record["to"].as_str().unwrap().to_owned());
        }
        if let Some(to) = by_line.get(&line) {
            last.insert(to.clone(), event);
        }
    }
    last
}

#[test]
fn a_campaign_begun_over_smtp_is_finished_over_graph_and_back() {
    let campaign = Campaign::new(&recipients(6));
    let smtp = send_support::SmtpServer::start(campaign.dir.path());
    let graph = GraphServer::start();
    let output = run(campaign.smtp(&smtp, &["--rate", "off", "--limit", "2"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let mut first = smtp.recipients();
    first.sort();
    assert_eq!(first, ["p0@contoso.com", "p1@contoso.com"]);
    // Rows are known by address: Graph sends only the others, with the same expiry.
    let output = campaign.run_graph(&graph, &["--rate", "off", "--limit", "2"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("resuming the campaign"), "{err}");
    let mut sent = graph.recipients();
    sent.sort();
    assert_eq!(sent, ["p2@contoso.com", "p3@contoso.com"]);
    // And back to SMTP for the rest.
    let output = run(campaign.smtp(&smtp, &["--rate", "off"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let mut all = smtp.recipients();
    all.extend(graph.recipients());
    all.sort();
    assert_eq!(all.len(), 6);
    all.dedup();
    assert_eq!(all.len(), 6, "nobody twice");
    let last = last_events(&campaign.journal());
    assert!(last.values().all(|e| e == "sent"), "{last:?}");
    assert_eq!(last.len(), 6);
}

#[test]
fn a_request_cut_off_by_a_kill_leaves_the_row_uncertain_and_it_is_sent_again() {
    let campaign = Campaign::new(&recipients(3));
    let server = GraphServer::start();
    server.state().delay = Some(Duration::from_secs(3));
    let mut command = campaign.graph(&server, &["--rate", "off", "--concurrency", "1"]);
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.state().requests.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request came");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Handed, no reply: the journal cannot know whether Graph took it.
    let last = last_events(&campaign.journal());
    assert_eq!(
        last.get("p0@contoso.com").map(String::as_str),
        Some("handed")
    );
    assert_eq!(last.len(), 1);

    // --skip-uncertain leaves it.
    server.state().delay = None;
    let output = campaign.run_graph(
        &server,
        &["--rate", "off", "--concurrency", "1", "--skip-uncertain"],
    );
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains("p0@contoso.com") && err.contains("may have been sent"),
        "{err}"
    );
    // Without it, it is sent again (better twice than never).
    let output = campaign.run_graph(&server, &["--rate", "off"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("sending it again"), "{err}");
    let requests: Vec<String> = server
        .state()
        .requests
        .iter()
        .map(|(_, _, mail)| send_support::recipient(mail))
        .collect();
    // The request the kill cut off, then the row again; the others once.
    assert_eq!(
        requests,
        [
            "p0@contoso.com",
            "p1@contoso.com",
            "p2@contoso.com",
            "p0@contoso.com"
        ]
    );
    let last = last_events(&campaign.journal());
    assert!(last.values().all(|e| e == "sent"), "{last:?}");
}
