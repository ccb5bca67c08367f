//! The server's settings and what they build: each endpoint with its authentication, the
//! verifier's source, the limits. `invitegate serve` fills [`Settings`] from flags and the
//! environment and calls [`build`]; `serve --check` calls the same [`build`] and
//! [`check_entra_keys`], so a configuration is judged exactly as `serve` would judge it.
//!
//! [`build`] never stops at the first problem: it returns every one it finds, each naming the
//! setting to fix. It fetches nothing: the Entra signing keys are fetched by
//! [`fetch_entra_keys_at_start`] (serve: a failure is logged, the server starts and keeps
//! trying) or [`check_entra_keys`] (`--check`: a failure is a problem).

pub mod entra;
mod startup;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::auth::{ApiKey, Auth, BasicAuth, BearerAuth, ClientCertAuth, Pins};
use super::connection::Limits;
use super::reload::{DEFAULT_RELOAD_INTERVAL, ReloadSource};
use super::routes::{Config, Endpoint};
use super::tls::{Certificates, TlsFiles};
use crate::connector::AttributeNames;
use crate::connector::b2c_policy::{CustomPolicy, DEFAULT_CODE_CLAIM, DEFAULT_EMAIL_CLAIM};
use crate::connector::b2c_user_flow::UserFlow;
use crate::connector::entra::Entra;
use crate::source::{RingSource, VerifierSource, readable_by_others};
pub use entra::EntraSettings;
pub use startup::{
    EndpointSummary, START_KEY_WAIT, check_entra_keys, fetch_entra_keys_at_start, summary,
};

/// Environment variable for the Basic password.
pub const PASSWORD_ENV: &str = "BASIC_AUTH_PASSWORD";
/// Environment variable for the API key.
pub const API_KEY_ENV: &str = "INVITEGATE_API_KEY";
/// Environment variable for the client-certificate thumbprints.
pub const THUMBPRINTS_ENV: &str = "INVITEGATE_CLIENT_CERT_THUMBPRINTS";
/// Passwords shorter than this get a warning: B2C stores and sends whatever is set.
pub const SHORT_PASSWORD: usize = 16;

/// The endpoints the server can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointName {
    /// Azure AD B2C user flow API connector.
    UserFlow,
    /// Azure AD B2C custom policy RESTful technical profile.
    CustomPolicy,
    /// Microsoft Entra External ID OnAttributeCollectionSubmit.
    Entra,
}

impl EndpointName {
    /// The name used in settings and the log.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::UserFlow => "user-flow",
            Self::CustomPolicy => "custom-policy",
            Self::Entra => "entra",
        }
    }
}

/// Everything `serve` is configured with, as given: [`build`] checks it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--keys-file`; else the ring comes from `INVITEGATE_KEYS_FILE` or `INVITEGATE_KEYS`.
    pub keys_file: Option<PathBuf>,
    /// Endpoints to serve; empty: every endpoint whose settings are present.
    pub endpoints: Vec<EndpointName>,
    /// `BASIC_AUTH_USERNAME`.
    pub basic_auth_username: Option<String>,
    /// `BASIC_AUTH_PASSWORD`.
    pub basic_auth_password: Option<Zeroizing<String>>,
    /// `--api-key-header`.
    pub api_key_header: Option<String>,
    /// `INVITEGATE_API_KEY`.
    pub api_key: Option<Zeroizing<String>>,
    /// Serve endpoints without credentials without authentication.
    pub insecure_no_auth: bool,
    /// `B2C_EXTENSIONS_APP_ID`.
    pub extensions_app_id: Option<String>,
    /// The custom attribute holding the code.
    pub attribute: String,
    /// Custom policy: the claim holding the email address.
    pub policy_email_claim: String,
    /// Custom policy: the claim holding the code.
    pub policy_code_claim: String,
    /// The Entra endpoint.
    pub entra: EntraSettings,
    /// Leeway on code expiry and on Entra tokens' `exp`/`nbf`.
    pub leeway: Duration,
    /// `--deny-list`.
    pub deny_list: Option<PathBuf>,
    /// `--messages`.
    pub messages: Option<PathBuf>,
    /// Keep the code in the directory.
    pub keep_code_attribute: bool,
    /// Log whole email addresses.
    pub log_emails: bool,
    /// Connection limits.
    pub limits: Limits,
    /// How often to check the verifier's files; zero: only on SIGHUP.
    pub reload_interval: Duration,
    /// `--tls-cert`: the server's certificate chain (PEM); with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`: the server's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// `--client-cert-thumbprints`: SHA-1 or SHA-256 thumbprints of the client certificates
    /// the B2C endpoints accept.
    pub client_cert_thumbprints: Vec<String>,
    /// `--trust-arr-client-cert`: read the client certificate from `X-ARR-ClientCert`, which
    /// the platform in front sets.
    pub trust_arr_client_cert: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            keys_file: None,
            endpoints: Vec::new(),
            basic_auth_username: None,
            basic_auth_password: None,
            api_key_header: None,
            api_key: None,
            insecure_no_auth: false,
            extensions_app_id: None,
            attribute: "InvitationCode".to_owned(),
            policy_email_claim: DEFAULT_EMAIL_CLAIM.to_owned(),
            policy_code_claim: DEFAULT_CODE_CLAIM.to_owned(),
            entra: EntraSettings::default(),
            leeway: Duration::from_secs(60),
            deny_list: None,
            messages: None,
            keep_code_attribute: false,
            log_emails: false,
            limits: Limits::default(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            tls_cert: None,
            tls_key: None,
            client_cert_thumbprints: Vec::new(),
            trust_arr_client_cert: false,
        }
    }
}

/// A setting that cannot work, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The flag or variable to change.
    pub setting: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    /// A problem with `setting`.
    pub fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What [`build`] made.
#[derive(Debug)]
pub struct Built {
    /// The server's configuration.
    pub config: Config,
    /// The attribute names the user-flow and Entra endpoints read.
    pub names: AttributeNames,
    /// Things that work but deserve a look (short password, app id missing, ...).
    pub warnings: Vec<String>,
    /// What the server waits for while it runs (the Entra audience): `serve` starts with these,
    /// `serve --check` fails on them.
    pub pending: Vec<Problem>,
}

impl Built {
    /// The Entra endpoint's bearer authentication, if it has one.
    #[must_use]
    pub fn entra_bearer(&self) -> Option<&Arc<BearerAuth>> {
        match self.config.entra.as_ref().map(|e| &e.auth) {
            Some(Auth::Bearer(bearer)) => Some(bearer),
            _ => None,
        }
    }
}

/// Builds the server's configuration from `settings`, fetching nothing.
///
/// # Errors
///
/// Every problem found (never an empty list), each naming the setting to fix.
pub fn build(settings: &Settings) -> Result<Built, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let basic = basic_auth(settings, &mut problems, &mut warnings);
    let api_key = api_key(settings, &mut problems);
    let tls = tls_pair(settings, &mut problems, &mut warnings);
    let pins = client_cert(settings, tls.is_some(), &mut problems, &mut warnings);
    let app_id = match settings.extensions_app_id.as_deref() {
        Some(id) => entra::guid_hex(id).or_else(|| {
            problems.push(Problem::new(
                "B2C_EXTENSIONS_APP_ID",
                "B2C_EXTENSIONS_APP_ID is not a GUID: give the Application (client) ID of the \
                 tenant's b2c-extensions-app, e.g. 93fd07aa-333c-409d-955d-96008fd08dd9 (App \
                 registrations > All applications > b2c-extensions-app)",
            ));
            None
        }),
        None => None,
    };
    let names = AttributeNames::new(&settings.attribute, app_id.as_deref());
    let source = verifier_source(settings, &mut problems, &mut warnings);
    let verifier = source.as_ref().and_then(|source| {
        source
            .load_all()
            .map_err(|errors| {
                problems.extend(
                    errors
                        .into_iter()
                        .map(|e| Problem::new(e.setting, e.message)),
                );
            })
            .ok()
    });
    check_limits(&settings.limits, &mut problems);

    let entra_set = settings.entra.is_set();
    let chosen = |name: EndpointName, present: bool| {
        if settings.endpoints.is_empty() {
            present
        } else {
            settings.endpoints.contains(&name)
        }
    };
    let mut unauthenticated = |name: &str, needs: &str, problems: &mut Vec<Problem>| {
        if settings.insecure_no_auth {
            warnings.push(format!(
                "{name}: serving WITHOUT authentication (--insecure-no-auth)"
            ));
            Some(Auth::None)
        } else {
            problems.push(Problem::new(
                "--insecure-no-auth",
                format!(
                    "the {name} endpoint has no authentication: {needs}, or pass \
                     --insecure-no-auth"
                ),
            ));
            None
        }
    };
    let insecure_default = settings.insecure_no_auth && settings.endpoints.is_empty();
    let with_pins = |otherwise: Option<Auth>| match &pins {
        Some(pins) => Some(Auth::ClientCert(Arc::clone(pins), otherwise.map(Box::new))),
        None => otherwise,
    };
    let mut user_flow = None;
    if chosen(
        EndpointName::UserFlow,
        basic.is_some() || pins.is_some() || (insecure_default && !entra_set),
    ) {
        user_flow = match with_pins(basic.clone().map(Auth::Basic)) {
            Some(auth) => Some(auth),
            None => unauthenticated(
                "user-flow",
                &format!(
                    "set BASIC_AUTH_USERNAME and {PASSWORD_ENV} (the API connector's user \
                     name and password in the B2C portal), or --client-cert-thumbprints"
                ),
                &mut problems,
            ),
        };
    }
    let mut custom_policy = None;
    if chosen(
        EndpointName::CustomPolicy,
        basic.is_some() || api_key.is_some() || pins.is_some() || (insecure_default && !entra_set),
    ) {
        let otherwise = match (&api_key, &basic) {
            (Some(key), _) => Some(Auth::ApiKey(key.clone())),
            (None, Some(basic)) => Some(Auth::Basic(basic.clone())),
            (None, None) => None,
        };
        custom_policy = match with_pins(otherwise) {
            Some(auth) => Some(auth),
            None => unauthenticated(
                "custom-policy",
                &format!(
                    "set BASIC_AUTH_USERNAME and {PASSWORD_ENV}, --api-key-header and \
                     {API_KEY_ENV}, or --client-cert-thumbprints"
                ),
                &mut problems,
            ),
        };
    }
    let mut pending = Vec::new();
    let mut entra_auth = None;
    if chosen(EndpointName::Entra, entra_set) {
        if entra_set {
            entra_auth = entra_bearer(settings, &mut problems).map(Auth::Bearer);
            pending.extend(settings.entra.pending());
            warnings.extend(settings.entra.warnings());
        } else {
            entra_auth = unauthenticated(
                "entra",
                "set ENTRA_TENANT_ID and ENTRA_AUDIENCE",
                &mut problems,
            );
        }
    }
    let any_endpoint = user_flow.is_some() || custom_policy.is_some() || entra_auth.is_some();
    let credentials_problem = problems.iter().any(|p| {
        p.setting.starts_with("ENTRA_")
            || [
                PASSWORD_ENV,
                "BASIC_AUTH_USERNAME",
                API_KEY_ENV,
                "--api-key-header",
                "--client-cert-thumbprints",
            ]
            .contains(&p.setting)
    });
    if !any_endpoint && !credentials_problem {
        problems.push(Problem::new(
            "BASIC_AUTH_USERNAME",
            format!(
                "no endpoint to serve: set BASIC_AUTH_USERNAME and {PASSWORD_ENV} or \
                 --client-cert-thumbprints (B2C user flows and custom policies), \
                 --api-key-header and {API_KEY_ENV} (custom policies), or ENTRA_TENANT_ID and ENTRA_AUDIENCE (Entra External ID); try \
                 `invitegate serve --dev`"
            ),
        ));
    }
    let (Some(verifier), Some(source), true) = (verifier, source, problems.is_empty()) else {
        return Err(problems);
    };
    let reads_attribute = user_flow.is_some() || entra_auth.is_some();
    if reads_attribute && !names.has_app_id() {
        warnings.push(format!(
            "B2C_EXTENSIONS_APP_ID is not set: the code is read only from the attribute {}, but \
             B2C user flows and Entra send extension_<appid>_<attribute>; every sign-up will be \
             answered 'missing code' until it is set",
            names.response_name()
        ));
    }
    let mut config = Config::new(verifier);
    config.log_emails = settings.log_emails;
    config.limits = settings.limits;
    config.user_flow = user_flow.map(|auth| {
        Endpoint::new(
            auth,
            UserFlow::new(names.clone(), settings.keep_code_attribute),
        )
    });
    config.custom_policy = custom_policy.map(|auth| {
        Endpoint::new(
            auth,
            CustomPolicy {
                email_claim: settings.policy_email_claim.clone(),
                code_claim: settings.policy_code_claim.clone(),
            },
        )
    });
    config.entra = entra_auth.map(|auth| {
        Endpoint::new(
            auth,
            Entra {
                attribute: names.clone(),
                keep_code_attribute: settings.keep_code_attribute,
                email_source: settings.entra.email_source,
            },
        )
    });
    config.metrics_auth = match (basic, api_key) {
        (Some(basic), _) => Some(Auth::Basic(basic)),
        (None, Some(key)) => Some(Auth::ApiKey(key)),
        (None, None) => None,
    };
    config.tls = tls.map(Arc::new);
    config.reload = Some(ReloadSource {
        source,
        interval: Some(settings.reload_interval).filter(|i| !i.is_zero()),
    });
    Ok(Built {
        config,
        names,
        warnings,
        pending,
    })
}

/// The Entra endpoint's bearer authentication, keys not fetched yet.
fn entra_bearer(settings: &Settings, problems: &mut Vec<Problem>) -> Option<Arc<BearerAuth>> {
    let config = settings
        .entra
        .bearer_config(settings.leeway)
        .map_err(|found| problems.extend(found))
        .ok()?;
    BearerAuth::new(config)
        .map_err(|error| {
            let setting = entra::key_source_setting(&settings.entra, &error);
            problems.push(Problem::new(setting, format!("{setting}: {error}")));
        })
        .ok()
}

/// The key ring, deny list and messages to read, and a warning about how the ring is kept.
fn verifier_source(
    settings: &Settings,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<VerifierSource> {
    let choice = RingSource::choose(settings.keys_file.as_deref())
        .map_err(|e| problems.push(Problem::new(e.setting, e.message)))
        .ok()?;
    warnings.extend(choice.warning);
    if let Some(path) = choice.source.file()
        && readable_by_others(path)
    {
        warnings.push(format!(
            "keys file {} is readable by other users; chmod 600 it",
            path.display()
        ));
    }
    Some(VerifierSource {
        ring: choice.source,
        deny_list: settings.deny_list.clone(),
        messages: settings.messages.clone(),
        leeway: settings.leeway,
    })
}

/// The server's certificate and key, loaded, when both are given.
fn tls_pair(
    settings: &Settings,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<Certificates> {
    let files = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        (None, None) => return None,
        (Some(_), None) => {
            problems.push(Problem::new(
                "--tls-key",
                "--tls-cert (INVITEGATE_TLS_CERT) is set but --tls-key (INVITEGATE_TLS_KEY) is \
                 not: give the private key's PEM file too",
            ));
            return None;
        }
        (None, Some(_)) => {
            problems.push(Problem::new(
                "--tls-cert",
                "--tls-key (INVITEGATE_TLS_KEY) is set but --tls-cert (INVITEGATE_TLS_CERT) is \
                 not: give the certificate chain's PEM file too",
            ));
            return None;
        }
    };
    if readable_by_others(&files.key) {
        warnings.push(format!(
            "TLS key file {} is readable by other users; chmod 600 it",
            files.key.display()
        ));
    }
    Certificates::load(files)
        .map_err(|message| problems.push(Problem::new("--tls-cert", message)))
        .ok()
}

/// The client-certificate pins, when any are given.
fn client_cert(
    settings: &Settings,
    tls: bool,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<Arc<ClientCertAuth>> {
    let pins = match Pins::parse(settings.client_cert_thumbprints.iter().map(String::as_str)) {
        Ok(pins) => pins,
        Err(bad) => {
            problems.extend(bad.into_iter().map(|error| {
                Problem::new(
                    "--client-cert-thumbprints",
                    format!("--client-cert-thumbprints ({THUMBPRINTS_ENV}): {error}"),
                )
            }));
            return None;
        }
    };
    if pins.is_empty() {
        if settings.trust_arr_client_cert {
            warnings.push(
                "--trust-arr-client-cert does nothing without --client-cert-thumbprints".to_owned(),
            );
        }
        return None;
    }
    if !tls && !settings.trust_arr_client_cert {
        problems.push(Problem::new(
            "--client-cert-thumbprints",
            "--client-cert-thumbprints is set but no client certificate can arrive: serve TLS \
             (--tls-cert and --tls-key) for mutual TLS, or pass --trust-arr-client-cert when \
             App Service or Functions terminates TLS and sets X-ARR-ClientCert",
        ));
        return None;
    }
    Some(Arc::new(ClientCertAuth::new(
        pins,
        settings.leeway,
        settings.trust_arr_client_cert,
    )))
}

/// The warning for a listener on `address` in plain HTTP, when it is not loopback: codes,
/// email addresses and the callers' credentials would cross the network in clear text.
#[must_use]
pub fn plain_http_warning(address: std::net::SocketAddr, tls: bool) -> Option<String> {
    (!tls && !address.ip().is_loopback()).then(|| {
        format!(
            "serving plain HTTP on {address}, a non-loopback address, without TLS: invitation \
             codes, email addresses and the callers' credentials cross the network in clear \
             text; pass --tls-cert and --tls-key, or make sure a proxy or the platform \
             terminates TLS in front"
        )
    })
}

fn check_limits(limits: &Limits, problems: &mut Vec<Problem>) {
    if limits.max_connections == 0 {
        problems.push(Problem::new(
            "--max-connections",
            "--max-connections must be at least 1",
        ));
    }
    for (name, value) in [
        ("--header-timeout", limits.header_timeout),
        ("--idle-timeout", limits.idle_timeout),
        ("--max-connection-age", limits.max_age),
    ] {
        if value.is_zero() {
            problems.push(Problem::new(
                name,
                format!("{name} must be longer than zero"),
            ));
        }
    }
}

/// Basic credentials, if both parts are set.
fn basic_auth(
    settings: &Settings,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<BasicAuth> {
    let user = settings
        .basic_auth_username
        .as_deref()
        .filter(|u| !u.is_empty());
    let password = settings
        .basic_auth_password
        .as_ref()
        .filter(|p| !p.is_empty());
    match (user, password) {
        (Some(user), Some(password)) => {
            if password.chars().count() < SHORT_PASSWORD {
                warnings.push(format!(
                    "{PASSWORD_ENV} is shorter than {SHORT_PASSWORD} characters"
                ));
            }
            Some(BasicAuth::new(user, password))
        }
        (None, None) => None,
        (Some(_), None) => {
            problems.push(Problem::new(
                PASSWORD_ENV,
                format!(
                    "BASIC_AUTH_USERNAME (--basic-auth-username) is set but {PASSWORD_ENV} is \
                     not: set the password in the environment"
                ),
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::new(
                "BASIC_AUTH_USERNAME",
                format!(
                    "{PASSWORD_ENV} is set but BASIC_AUTH_USERNAME (--basic-auth-username) is \
                     not"
                ),
            ));
            None
        }
    }
}

/// The API key, if the header and the key are both set.
fn api_key(settings: &Settings, problems: &mut Vec<Problem>) -> Option<ApiKey> {
    let key = settings.api_key.as_ref().filter(|k| !k.is_empty());
    match (&settings.api_key_header, key) {
        (Some(header), Some(key)) => ApiKey::new(header, key)
            .map_err(|e| problems.push(Problem::new("--api-key-header", e.to_string())))
            .ok(),
        (None, None) => None,
        (Some(_), None) => {
            problems.push(Problem::new(
                API_KEY_ENV,
                format!(
                    "--api-key-header (INVITEGATE_API_KEY_HEADER) is set but {API_KEY_ENV} is \
                     not: set the key"
                ),
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::new(
                "--api-key-header",
                format!(
                    "{API_KEY_ENV} is set but --api-key-header is not: name the header the \
                     policy sends it in (e.g. --api-key-header x-functions-key, or the setting \
                     INVITEGATE_API_KEY_HEADER=x-functions-key)"
                ),
            ));
            None
        }
    }
}
