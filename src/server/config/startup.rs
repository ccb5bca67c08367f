//! What happens between [`build`](super::build) and serving: the Entra signing keys fetched
//! (at start, or once for `serve --check`), the metadata's issuer compared with the accepted
//! ones, and a summary of each endpoint for the start-up log and `--check`.

use std::time::Duration;

use super::{Built, Problem, Settings, entra};
use crate::connector::AttributeNames;
use crate::server::auth::{Auth, BearerAuth};
use crate::server::routes::{CUSTOM_POLICY_PATH, Config, ENTRA_PATH, USER_FLOW_PATH};

/// Longest wait for the Entra signing keys before serving: the tenant answers in
/// milliseconds, and a slower answer keeps coming in the background while the server runs.
pub const START_KEY_WAIT: Duration = Duration::from_secs(5);

/// Fetches the Entra signing keys once before serving, waiting at most [`START_KEY_WAIT`],
/// then keeps them fresh in the background (retrying with backoff while none is held). A
/// failure is logged with the URL and why: the server starts anyway and answers the Entra
/// endpoint 503 until the keys arrive.
pub async fn fetch_entra_keys_at_start(built: &Built) {
    let Some(bearer) = built.entra_bearer() else {
        return;
    };
    match tokio::time::timeout(START_KEY_WAIT, bearer.refresh()).await {
        // The key store warns itself when the metadata declares an issuer not accepted.
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::error!(
            error = %error,
            "entra: the signing keys could not be fetched; serving the other endpoints, \
             answering the entra endpoint 503 and retrying"
        ),
        Err(_) => tracing::error!(
            source = %bearer.source_name(),
            "entra: the signing keys did not arrive within {}; serving the other endpoints, \
             answering the entra endpoint 503 and retrying",
            humantime::format_duration(START_KEY_WAIT)
        ),
    }
    bearer.spawn_refresh();
}

/// `serve --check`: fetches the Entra signing keys once (no retry), with the bearer
/// authentication `built` holds, or else (when other settings failed) one made for the check
/// from `settings` alone, so that a key problem is reported beside the others. Returns the
/// problem if the keys cannot be fetched, and a warning if the metadata's issuer is not
/// accepted.
pub async fn check_entra_keys(
    built: Option<&Built>,
    settings: &Settings,
) -> (Vec<Problem>, Vec<String>) {
    let alone;
    let bearer = match built {
        Some(built) => match built.entra_bearer() {
            Some(bearer) => bearer,
            None => return (Vec::new(), Vec::new()),
        },
        None => {
            let Some(bearer) = settings
                .entra
                .is_set()
                .then(|| settings.entra.bearer_config(settings.leeway).ok())
                .flatten()
                .and_then(|config| BearerAuth::new(config).ok())
            else {
                return (Vec::new(), Vec::new());
            };
            alone = bearer;
            &alone
        }
    };
    match bearer.refresh().await {
        Ok(_) => (
            Vec::new(),
            metadata_issuer_warning(bearer).into_iter().collect(),
        ),
        Err(error) => {
            let setting = entra::key_source_setting(&settings.entra, &error);
            (
                vec![Problem::new(
                    setting,
                    format!("the entra signing keys cannot be fetched ({setting}): {error}"),
                )],
                Vec::new(),
            )
        }
    }
}

/// A warning when the key source's metadata declares an issuer tokens may not carry.
fn metadata_issuer_warning(bearer: &BearerAuth) -> Option<String> {
    let declared = bearer.metadata_issuer()?;
    let config = bearer.config();
    (!config.accepts_issuer(&declared, Some("2.0"))).then(|| {
        format!(
            "entra: the metadata at {} declares issuer {declared}, which is not among the \
             accepted issuers ({}): tokens it issues will be refused; check ENTRA_TENANT_ID, \
             ENTRA_TENANT_SUBDOMAIN and ENTRA_ISSUER",
            bearer.source_url().unwrap_or_default(),
            bearer.describe_issuers()
        )
    })
}

/// What one endpoint serves, for `--check` and the start-up log.
#[derive(Debug, Clone)]
pub struct EndpointSummary {
    /// `user-flow`, `custom-policy` or `entra`.
    pub name: &'static str,
    /// Its path.
    pub path: &'static str,
    /// How it authenticates; `None` when it is off.
    pub auth: Option<String>,
    /// What it reads the code (and email) from.
    pub reads: Option<String>,
    /// Entra only: what it waits for before it can accept calls.
    pub waiting: Option<&'static str>,
}

/// Per endpoint: on or off, how it authenticates, what it reads.
#[must_use]
pub fn summary(config: &Config, names: &AttributeNames) -> Vec<EndpointSummary> {
    let attribute = if names.has_app_id() {
        format!(
            "attribute {} (or extension_<attribute>)",
            names.response_name()
        )
    } else {
        format!(
            "attribute {} only (B2C_EXTENSIONS_APP_ID not set)",
            names.response_name()
        )
    };
    let mut out = Vec::new();
    let mut add = |name, path, auth: Option<&Auth>, reads: Option<String>| {
        out.push(EndpointSummary {
            name,
            path,
            auth: auth.map(Auth::describe),
            reads: auth.and(reads),
            waiting: auth.and_then(|auth| auth.ready().err()),
        });
    };
    add(
        "user-flow",
        USER_FLOW_PATH,
        config.user_flow.as_ref().map(|e| &e.auth),
        Some(attribute.clone()),
    );
    add(
        "custom-policy",
        CUSTOM_POLICY_PATH,
        config.custom_policy.as_ref().map(|e| &e.auth),
        config.custom_policy.as_ref().map(|e| {
            format!(
                "claims {} (email) and {} (code)",
                e.connector.email_claim, e.connector.code_claim
            )
        }),
    );
    add(
        "entra",
        ENTRA_PATH,
        config.entra.as_ref().map(|e| &e.auth),
        Some(attribute),
    );
    out
}
