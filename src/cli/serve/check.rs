//! `invitegate serve --check`: the configuration judged as `serve` would judge it, printed,
//! nothing bound.

use std::io::Write as _;

use invitegate::server::auth::ENTRA_CALLER_APP_ID;
use invitegate::server::config::{self as settings, Built, Problem};

use super::Status;
use super::args::{ServeArgs, settings_from};

/// `serve --check`: every setting judged as `serve` would, the Entra keys fetched once, what
/// would be served printed; nothing bound. Exit 0, or 2 with every problem listed.
pub(super) async fn check(args: &ServeArgs) -> anyhow::Result<Status> {
    let settings = settings_from(args);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut out = String::new();
    let listen = match super::listen_address(args) {
        Ok(listen) => {
            out.push_str(&format!("listen         {listen}\n"));
            Some(listen)
        }
        Err(err) => {
            problems.push(Problem::new("--listen", format!("{err:#}")));
            None
        }
    };
    if let Some(text) = &args.metrics_listen {
        match super::parse_listen(text) {
            Ok(at) => out.push_str(&format!(
                "metrics        http://{at}/metrics without authentication, /healthz, /readyz\n"
            )),
            Err(err) => problems.push(Problem::new("--metrics-listen", format!("{err:#}"))),
        }
    }
    let built = settings::build(&settings);
    if let Ok(built) = &built {
        if let Some(tls) = &built.config.tls {
            out.push_str(&format!(
                "tls            {} (key {})\n",
                tls.files().cert.display(),
                tls.files().key.display()
            ));
        }
        if let Some(warning) =
            listen.and_then(|at| settings::plain_http_warning(at, built.config.tls.is_some()))
        {
            warnings.push(warning);
        }
    }
    let (key_problems, key_warnings) =
        settings::check_entra_keys(built.as_ref().ok(), &settings).await;
    match &built {
        Ok(built) => {
            warnings.extend(built.warnings.iter().cloned());
            problems.extend(built.pending.iter().cloned());
            out.push_str(&check_report(built));
        }
        Err(found) => problems.extend(found.iter().cloned()),
    }
    problems.extend(key_problems);
    warnings.extend(key_warnings);
    for warning in &warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    for problem in &problems {
        out.push_str(&format!("problem: {}: {problem}\n", problem.setting));
    }
    out.push_str(&if problems.is_empty() {
        "configuration OK\n".to_owned()
    } else {
        format!(
            "{} problem{} found: fix {}\n",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems
                .iter()
                .map(|p| p.setting)
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(if problems.is_empty() {
        Status::Success
    } else {
        Status::Error
    })
}

/// What `--check` prints per endpoint.
fn check_report(built: &Built) -> String {
    let mut out = String::new();
    for endpoint in settings::summary(&built.config, &built.names) {
        let Some(auth) = &endpoint.auth else {
            out.push_str(&format!("{:<14} off\n", endpoint.name));
            continue;
        };
        out.push_str(&format!(
            "{:<14} on  POST {}\n",
            endpoint.name, endpoint.path
        ));
        if endpoint.name == "entra"
            && let Some(bearer) = built.entra_bearer()
        {
            let config = bearer.config();
            let audiences = if config.audiences.is_empty() {
                "(none: set ENTRA_AUDIENCE)".to_owned()
            } else {
                config.audiences.join(", ")
            };
            out.push_str("  auth         Entra bearer token (RS256)\n");
            for issuer in config.accepted_issuers() {
                let v1 = if config.v1_issuers.iter().any(|i| i == issuer) {
                    " (v1 tokens)"
                } else {
                    ""
                };
                out.push_str(&format!("  issuer       {issuer}{v1}\n"));
            }
            if let Some(tenant) = &config.tenant {
                out.push_str(&format!("  tenant       {tenant} (tid must match)\n"));
            }
            out.push_str(&format!("  audience     {audiences}\n"));
            out.push_str(&format!("  caller       {}\n", ENTRA_CALLER_APP_ID));
            out.push_str(&format!("  keys from    {}\n", bearer.source_name()));
            if let Some(jwks_uri) = bearer.jwks_uri() {
                out.push_str(&format!("  key set      {jwks_uri}\n"));
            }
            out.push_str(&format!("  keys held    {}\n", bearer.key_count()));
            if let Some(entra) = &built.config.entra {
                out.push_str(&format!(
                    "  email from   {}\n",
                    entra.connector.email_source.name()
                ));
            }
        } else {
            out.push_str(&format!("  auth         {auth}\n"));
        }
        if let Some(reads) = &endpoint.reads {
            out.push_str(&format!("  reads        {reads}\n"));
        }
    }
    out.push_str(&format!(
        "/metrics       {}\n",
        if built.config.metrics_auth.is_some() {
            "on"
        } else {
            "off (needs Basic credentials or an API key)"
        }
    ));
    out
}
