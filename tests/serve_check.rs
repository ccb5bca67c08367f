//! `invitegate serve --check`: every setting judged as `serve` would judge it, the Entra keys
//! fetched (from 127.0.0.1 here), what each endpoint would serve printed, nothing bound; exit 0,
//! or 2 with every problem listed and the setting to fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod entra_support;
mod support;

use std::process::{Command, Output};

use entra_support::{APP, APP_ID, KEYS, TID, Tenant, tenant_issuer};

fn check(envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
    command
        .args(["serve", "--check"])
        .args(args)
        .env_clear()
        .env("INVITEGATE_LOG", "off")
        .envs(envs.iter().copied());
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = support::wait_with_output_within(child, support::DEADLINE);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{output:?}"
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_configuration_is_printed_and_nothing_is_bound() {
    let tenant = Tenant::start().await;
    // The port is held here: serve would fail to bind it; --check does not try.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = held.local_addr().unwrap().to_string();
    let metadata = tenant.metadata_url();
    let given = listen.clone();
    let output = tokio::task::spawn_blocking(move || {
        check(
            &[
                ("INVITEGATE_KEYS", KEYS),
                ("BASIC_AUTH_USERNAME", "b2c"),
                ("BASIC_AUTH_PASSWORD", "a-password-long-enough"),
                ("B2C_EXTENSIONS_APP_ID", APP),
                ("ENTRA_TENANT_ID", TID),
                ("ENTRA_TENANT_SUBDOMAIN", "contoso"),
                ("ENTRA_AUDIENCE", APP_ID),
                ("ENTRA_METADATA_URL", &metadata),
            ],
            &["--listen", &given],
        )
    })
    .await
    .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    for line in [
        format!("listen         {listen}"),
        "user-flow      on  POST /api/b2c/user-flow".to_owned(),
        "custom-policy  on  POST /api/b2c/custom-policy".to_owned(),
        "entra          on  POST /api/entra/attribute-collection-submit".to_owned(),
        format!("  issuer       {}", tenant_issuer()),
        format!("  issuer       https://contoso.ciamlogin.com/{TID}/v2.0"),
        format!("  issuer       https://login.microsoftonline.com/{TID}/v2.0"),
        format!("  issuer       https://sts.windows.net/{TID}/ (v1 tokens)"),
        format!("  tenant       {TID} (tid must match)"),
        format!("  audience     {APP_ID}"),
        format!("  keys from    metadata {}", tenant.metadata_url()),
        format!("  key set      {}", tenant.keys_url()),
        "  keys held    1".to_owned(),
        format!(
            "  reads        attribute extension_{}_InvitationCode (or extension_<attribute>)",
            APP.replace('-', "")
        ),
        "configuration OK".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
    assert!(!out.contains("a-password-long-enough"), "{out}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_listed_with_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let messages = dir.path().join("messages.json");
    std::fs::write(&messages, "not json").unwrap();
    let messages = messages.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        check(
            &[
                ("INVITEGATE_KEYS", "7:tooshort"),
                ("INVITEGATE_DENY_LIST", "/nonexistent/deny.txt"),
                ("INVITEGATE_MESSAGES", &messages),
                ("BASIC_AUTH_USERNAME", "b2c"),
                ("B2C_EXTENSIONS_APP_ID", "not-a-guid"),
                ("ENTRA_TENANT_ID", "contoso.onmicrosoft.com"),
                ("ENTRA_ISSUER", "contoso"),
                ("ENTRA_AUDIENCE", APP_ID),
            ],
            &["--max-connections", "0"],
        )
    })
    .await
    .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    for setting in [
        "INVITEGATE_KEYS",
        "--deny-list",
        "--messages",
        "BASIC_AUTH_PASSWORD",
        "B2C_EXTENSIONS_APP_ID",
        "ENTRA_TENANT_ID",
        "ENTRA_ISSUER",
        "--max-connections",
    ] {
        assert!(
            out.contains(&format!("problem: {setting}: ")),
            "{setting} not named in\n{out}"
        );
    }
    assert!(out.contains("/nonexistent/deny.txt"), "{out}");
    assert!(out.contains("8 problems found: fix "), "{out}");
    assert!(!out.contains("tooshort"), "the key text is printed: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_keys_audience_and_metadata_issuer_are_checked() {
    let tenant = Tenant::start().await;
    let metadata = tenant.metadata_url();
    let run = |envs: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let mut all: Vec<(&str, &str)> =
                vec![("INVITEGATE_KEYS", KEYS), ("ENTRA_TENANT_ID", TID)];
            all.extend(envs.iter().map(|(k, v)| (*k, v.as_str())));
            check(&all, &[])
        })
    };
    // No audience yet: serve would start; --check says what is missing.
    let output = run(vec![("ENTRA_METADATA_URL", metadata.clone())])
        .await
        .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("problem: ENTRA_AUDIENCE: "), "{out}");
    assert!(out.contains("  keys held    1"), "{out}");

    // The metadata declares an issuer none of the accepted ones: a warning, not a failure.
    *tenant.declared_issuer.lock().unwrap() = format!("https://contoso.ciamlogin.com/{TID}/v2.0");
    let output = run(vec![
        ("ENTRA_METADATA_URL", metadata.clone()),
        ("ENTRA_AUDIENCE", APP_ID.to_owned()),
    ])
    .await
    .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "warning: entra: the metadata at {metadata} declares issuer \
             https://contoso.ciamlogin.com/{TID}/v2.0, which is not among the accepted issuers"
        )),
        "{out}"
    );

    // Keys unreachable: a problem naming the setting and the URL.
    tenant
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let output = run(vec![
        ("ENTRA_METADATA_URL", metadata.clone()),
        ("ENTRA_AUDIENCE", APP_ID.to_owned()),
    ])
    .await
    .unwrap();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("problem: ENTRA_METADATA_URL: "), "{out}");
    assert!(out.contains(&metadata) && out.contains("500"), "{out}");

    // Plain http to anything but loopback is refused before any fetch.
    let output = run(vec![
        (
            "ENTRA_METADATA_URL",
            "http://login.example.invalid/x".to_owned(),
        ),
        ("ENTRA_AUDIENCE", APP_ID.to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(stdout(&output).contains("problem: ENTRA_METADATA_URL: "));
}

#[test]
fn an_entra_setting_without_tenant_or_issuer_is_a_problem() {
    for (name, value) in [
        ("ENTRA_AUDIENCE", APP_ID),
        ("ENTRA_TENANT_SUBDOMAIN", "contoso"),
        ("ENTRA_JWKS_URL", "https://keys.example/keys"),
    ] {
        let output = check(
            &[
                ("INVITEGATE_KEYS", KEYS),
                ("BASIC_AUTH_USERNAME", "b2c"),
                ("BASIC_AUTH_PASSWORD", "a-password-long-enough"),
                (name, value),
            ],
            &[],
        );
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {out}");
        assert!(out.contains("problem: ENTRA_TENANT_ID: "), "{name}: {out}");
    }
}

/// `serve` itself stops at start only for settings that can never work, with every problem.
#[test]
fn serve_refuses_a_configuration_that_can_never_work() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_invitegate"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("INVITEGATE_KEYS", KEYS)
        .env("ENTRA_TENANT_ID", "not-a-guid")
        .env("ENTRA_ISSUER", "http://contoso.ciamlogin.com/x/v2.0")
        .env("ENTRA_AUDIENCE", APP_ID)
        .stdin(std::process::Stdio::null());
    let output = support::output_within(&mut command, support::DEADLINE);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("2 problems in the configuration"), "{err}");
    assert!(
        err.contains("ENTRA_TENANT_ID \"not-a-guid\" is not a GUID"),
        "{err}"
    );
    assert!(err.contains("is not an https:// URL"), "{err}");
}

/// Problems clap could have stopped at alone are listed with the rest: two key sources, and a
/// subdomain beside an empty tenant id.
#[test]
fn two_key_sources_and_an_empty_tenant_are_listed_together() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("keys.json");
    std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
    let output = check(
        &[
            ("INVITEGATE_KEYS", KEYS),
            ("ENTRA_TENANT_ID", ""),
            ("ENTRA_TENANT_SUBDOMAIN", "contoso"),
            ("ENTRA_ISSUER", "https://issuer.example/v2.0"),
            ("ENTRA_AUDIENCE", APP_ID),
            ("ENTRA_JWKS_URL", "https://keys.example/keys"),
            ("ENTRA_JWKS_FILE", jwks.to_str().unwrap()),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("ENTRA_JWKS_FILE and ENTRA_JWKS_URL name the signing keys twice"),
        "{text}"
    );
    assert!(
        text.contains("ENTRA_TENANT_SUBDOMAIN is set but ENTRA_TENANT_ID is not"),
        "{text}"
    );
}
