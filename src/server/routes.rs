//! Paths and replies: each identity-provider endpoint, `/healthz`, `/readyz` and `/metrics`.
//!
//! Every endpoint runs the same steps: method, authentication, body size and read time, then
//! its [`Connector`] answers, and the request is counted and logged. An endpoint whose
//! authentication cannot check credentials yet (no Entra signing keys, no audience) answers
//! 503, not 401: the server is at fault, not the caller. Domain outcomes are
//! replies, never rejections; one `recover` turns what is left (no route matched) into a JSON
//! 404.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::path::FullPath;
use warp::reply::Response;

use super::auth::{Auth, BearerAuth, Denied, Presented};
use super::connection::{ConnectionStats, Limits};
use super::labels::{Outcome, RefusedAt};
use super::log::{self, DroppedLines, RequestLine};
use super::metrics::{EndpointLabel, Metrics};
use super::reload::{Current, ReloadSource};
use super::tls::Certificates;
use crate::connector::b2c_policy::CustomPolicy;
use crate::connector::b2c_user_flow::UserFlow;
use crate::connector::entra::Entra;
use crate::connector::{Answer, Connector};
use crate::decision::Verifier;

/// Largest request body read. A sign-up request is a few hundred bytes of claims; 64 KiB leaves
/// room for every attribute a flow can collect and stops a client from making us buffer more.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// Time to send the body once the head is in. Entra gives up after 1 s by default (2 s at most),
/// B2C user flows after 20 s.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The B2C user-flow API connector. With an Azure Functions custom handler whose function
/// route is `b2c/user-flow`, this is the path the host forwards.
pub const USER_FLOW_PATH: &str = "/api/b2c/user-flow";
/// The B2C custom policy RESTful technical profile.
pub const CUSTOM_POLICY_PATH: &str = "/api/b2c/custom-policy";
/// The Entra External ID OnAttributeCollectionSubmit custom authentication extension.
pub const ENTRA_PATH: &str = "/api/entra/attribute-collection-submit";

/// One endpoint: how its caller authenticates, and the dialect it speaks.
#[derive(Debug)]
pub struct Endpoint<C> {
    /// Who may call it.
    pub auth: Auth,
    /// The dialect's settings.
    pub connector: C,
}

impl<C> Endpoint<C> {
    /// An endpoint with its authentication and dialect.
    pub fn new(auth: Auth, connector: C) -> Self {
        Self { auth, connector }
    }
}

/// Everything the server needs; built once at start. An endpoint left `None` is off: its path
/// answers 404.
#[derive(Debug)]
pub struct Config {
    /// Keys, deny list, leeway and messages.
    pub verifier: Verifier,
    /// `POST /api/b2c/user-flow`.
    pub user_flow: Option<Endpoint<UserFlow>>,
    /// `POST /api/b2c/custom-policy`.
    pub custom_policy: Option<Endpoint<CustomPolicy>>,
    /// `POST /api/entra/attribute-collection-submit`.
    pub entra: Option<Endpoint<Entra>>,
    /// Who may read `/metrics`; `None` turns it off.
    pub metrics_auth: Option<Auth>,
    /// Log whole email addresses instead of their domain.
    pub log_emails: bool,
    /// Log lines dropped by the log writer, for `/metrics`.
    pub dropped_log_lines: DroppedLines,
    /// Connection limits, used by [`run`](super::run).
    pub limits: Limits,
    /// Connection counters, shown in `/metrics`.
    pub connection_stats: Arc<ConnectionStats>,
    /// Where to reload the verifier from, on SIGHUP and file changes ([`run`](super::run)).
    pub reload: Option<ReloadSource>,
    /// The server's certificate and key: serve HTTPS ([`run`](super::run)).
    pub tls: Option<Arc<Certificates>>,
    /// A second listener serving `/metrics` without authentication, and the probes
    /// ([`run`](super::run)).
    pub metrics_listener: Option<tokio::net::TcpListener>,
}

impl Config {
    /// A configuration with every endpoint off.
    #[must_use]
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            user_flow: None,
            custom_policy: None,
            entra: None,
            metrics_auth: None,
            log_emails: false,
            dropped_log_lines: DroppedLines::default(),
            limits: Limits::default(),
            connection_stats: Arc::new(ConnectionStats::default()),
            reload: None,
            tls: None,
            metrics_listener: None,
        }
    }

    /// Whether an endpoint takes client certificates: the connections then ask for one (TLS)
    /// and hand it, or the `X-ARR-ClientCert` header, to each request.
    #[must_use]
    pub fn takes_client_certificates(&self) -> bool {
        [
            self.user_flow.as_ref().map(|e| &e.auth),
            self.custom_policy.as_ref().map(|e| &e.auth),
        ]
        .into_iter()
        .any(|auth| matches!(auth, Some(Auth::ClientCert(..))))
    }

    /// The paths that are on, for messages.
    #[must_use]
    pub fn paths(&self) -> Vec<&'static str> {
        [
            self.user_flow.as_ref().map(|_| USER_FLOW_PATH),
            self.custom_policy.as_ref().map(|_| CUSTOM_POLICY_PATH),
            self.entra.as_ref().map(|_| ENTRA_PATH),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// What every request shares.
#[derive(Debug)]
struct State {
    user_flow: Option<Endpoint<UserFlow>>,
    custom_policy: Option<Endpoint<CustomPolicy>>,
    entra: Option<Endpoint<Entra>>,
    /// Endpoints whose authentication may not be ready (bearer tokens without keys yet).
    readiness: Vec<(&'static str, Arc<BearerAuth>)>,
    verifier: Arc<Current>,
    /// Whether the drain has started, for `/readyz`.
    connections: Arc<ConnectionStats>,
    log_emails: bool,
    metrics_auth: Option<Auth>,
    metrics: Metrics,
    not_found: String,
}

/// The main listener's paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    UserFlow,
    CustomPolicy,
    Entra,
    Healthz,
    Readyz,
    Metrics,
    Unknown,
}

impl Path {
    /// The path a request is for: the exact path, or with one slash after it, as warp's
    /// `path!` matches.
    fn of(path: &str) -> Self {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        match path {
            USER_FLOW_PATH => Self::UserFlow,
            ENTRA_PATH => Self::Entra,
            CUSTOM_POLICY_PATH => Self::CustomPolicy,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            _ => Self::Unknown,
        }
    }
}

/// The warp filter for every route, with rejections recovered into JSON replies.
pub fn routes(config: Config) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let current = Arc::new(Current::new(config.verifier.clone()));
    routes_with(config, current).0
}

/// [`routes`] verifying with `current`, which a reload may swap; and the routes of the
/// metrics listener: `/metrics` without authentication, `/healthz` and `/readyz`.
///
/// The main routes are one filter: what any path may need is taken from the request (the
/// method, the credentials headers, the client certificate, the body), then one match on the
/// path picks the reply. A chain of `or` filters, one a path, cost each request a rejection
/// for every path tried before its own.
pub(crate) fn routes_with(
    config: Config,
    current: Arc<Current>,
) -> (
    impl Filter<Extract = (Response,), Error = Infallible> + Clone,
    impl Filter<Extract = (Response,), Error = Infallible> + Clone,
) {
    let paths = config.paths().join(", ");
    let readiness = [
        ("user-flow", config.user_flow.as_ref().map(|e| &e.auth)),
        (
            "custom-policy",
            config.custom_policy.as_ref().map(|e| &e.auth),
        ),
        ("entra", config.entra.as_ref().map(|e| &e.auth)),
    ]
    .into_iter()
    .filter_map(|(name, auth)| match auth {
        Some(Auth::Bearer(bearer)) => Some((name, Arc::clone(bearer))),
        _ => None,
    })
    .collect();
    let mut metrics = Metrics::new(config.dropped_log_lines, &config.connection_stats);
    current.register(metrics.registry_mut());
    if let Some(certificates) = &config.tls {
        certificates.register(metrics.registry_mut());
    }
    let state = Arc::new(State {
        user_flow: config.user_flow,
        custom_policy: config.custom_policy,
        entra: config.entra,
        readiness,
        verifier: current,
        connections: Arc::clone(&config.connection_stats),
        log_emails: config.log_emails,
        metrics_auth: config.metrics_auth,
        metrics,
        not_found: if paths.is_empty() {
            "no such path; no endpoint is on".to_owned()
        } else {
            format!("no such path; the endpoints are POST {paths}")
        },
    });
    let not_found_message = state.not_found.clone();
    let probe_state = Arc::clone(&state);
    let probes =
        warp::path::full()
            .and(warp::method())
            .map(
                move |path: FullPath, method: Method| match Path::of(path.as_str()) {
                    Path::Healthz => health(&probe_state, &method, false),
                    Path::Readyz => health(&probe_state, &method, true),
                    Path::Metrics => match method {
                        Method::GET => metrics_text(&probe_state),
                        _ => method_not_allowed("GET"),
                    },
                    _ => error_reply(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no such path; this listener serves GET /metrics, /healthz and /readyz",
                    ),
                },
            );
    let main =
        warp::path::full()
            .and(warp::method())
            // The whole header map, cloned (a reference count a value): looking up each header an
            // endpoint may need with its own filter cost as much, and a missing one a rejection.
            .and(warp::header::headers_cloned())
            // Put there by the connection only when client certificates are pinned.
            .and(warp::ext::optional::<Presented>())
            .and(warp::body::stream())
            .then(
                move |path: FullPath,
                      method: Method,
                      headers: HeaderMap,
                      certificate: Option<Presented>,
                      body| {
                    let state = Arc::clone(&state);
                    async move {
                        let request = Request {
                            method,
                            headers,
                            certificate,
                        };
                        let mut body = body;
                        // Passed down by reference: each async fn keeps its arguments in its
                        // future, and the request's future is copied whole as it is handed on.
                        dispatch(&state, Path::of(path.as_str()), &request, &mut body).await
                    }
                },
            )
            // Only a body taken twice is rejected, which no route does; answered as an unknown
            // path, as every rejection was.
            .recover(move |_: warp::Rejection| {
                let message = not_found_message.clone();
                async move {
                    Ok::<_, Infallible>(error_reply(StatusCode::NOT_FOUND, "not_found", &message))
                }
            })
            .unify();
    (main, probes)
}

/// The reply of the main listener to a request for `path`.
async fn dispatch<S, B>(state: &State, path: Path, request: &Request, body: &mut S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf,
{
    match path {
        Path::UserFlow => match &state.user_flow {
            Some(endpoint) => handle(endpoint, EndpointLabel::UserFlow, state, request, body).await,
            None => not_found(state),
        },
        Path::Entra => match &state.entra {
            Some(endpoint) => handle(endpoint, EndpointLabel::Entra, state, request, body).await,
            None => not_found(state),
        },
        Path::CustomPolicy => match &state.custom_policy {
            Some(endpoint) => {
                handle(endpoint, EndpointLabel::CustomPolicy, state, request, body).await
            }
            None => not_found(state),
        },
        Path::Healthz => health(state, &request.method, false),
        Path::Readyz => health(state, &request.method, true),
        Path::Metrics => {
            let credentials = state
                .metrics_auth
                .as_ref()
                .and_then(|auth| request.credentials(auth));
            metrics_reply(state, &request.method, credentials).await
        }
        Path::Unknown => not_found(state),
    }
}

/// 404 with the paths that are on.
fn not_found(state: &State) -> Response {
    error_reply(StatusCode::NOT_FOUND, "not_found", &state.not_found)
}

/// `/healthz` or (`strict`) `/readyz`, for GET and HEAD.
fn health(state: &State, method: &Method, strict: bool) -> Response {
    match *method {
        Method::GET | Method::HEAD => health_reply(state, strict),
        _ => method_not_allowed("GET, HEAD"),
    }
}

/// The parts of a request an endpoint looks at before the body.
struct Request {
    method: Method,
    headers: HeaderMap,
    certificate: Option<Presented>,
}

impl Request {
    /// The value of the header that carries `auth`'s credentials, if sent.
    fn credentials(&self, auth: &Auth) -> Option<&HeaderValue> {
        self.headers.get(auth.header_name())
    }

    /// The declared body length, if any and a number.
    fn content_length(&self) -> Option<u64> {
        let value = self.headers.get(header::CONTENT_LENGTH)?;
        value.to_str().ok()?.parse().ok()
    }
}

/// One request to an endpoint: answered, counted and logged.
async fn handle<C, S, B>(
    endpoint: &Endpoint<C>,
    label: EndpointLabel,
    state: &State,
    request: &Request,
    body: &mut S,
) -> Response
where
    C: Connector,
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf,
{
    let started = Instant::now();
    let mut line = RequestLine::new(label);
    let response = answer(endpoint, state, request, body, &mut line).await;
    let elapsed = started.elapsed();
    state
        .metrics
        .record(label, line.outcome, elapsed.as_secs_f64());
    if let Some(refusal) = &line.denied {
        state.metrics.refused(label.into(), refusal);
    }
    line.finish(response.status(), elapsed);
    response
}

async fn answer<C, S, B>(
    endpoint: &Endpoint<C>,
    state: &State,
    request: &Request,
    body: &mut S,
    line: &mut RequestLine,
) -> Response
where
    C: Connector,
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf,
{
    if request.method != Method::POST {
        line.outcome = Outcome::MethodNotAllowed;
        return method_not_allowed("POST");
    }
    // One reading of the clock for the credentials and the decision.
    let now = SystemTime::now();
    let checked = endpoint.auth.check_request(
        request.credentials(&endpoint.auth),
        request.certificate.as_ref(),
        now,
    );
    if let Err(denied) = checked.await {
        if denied.unavailable {
            line.outcome = Outcome::Unavailable;
            line.denied = Some(denied.reason);
            return unavailable(&denied);
        }
        line.outcome = Outcome::Unauthorized;
        line.denied = Some(denied.reason);
        return unauthorized(&endpoint.auth, &denied);
    }
    if request
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES)
    {
        line.outcome = Outcome::TooLarge;
        return payload_too_large();
    }
    // Most bodies arrive with the head: read once, and arm the timer only when waiting.
    let mut reading = std::pin::pin!(read_limited(body));
    let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(read) => Ok(read),
        // Boxed: the timer is kept only by a request that waits for its body.
        Poll::Pending => Box::pin(tokio::time::timeout(BODY_READ_TIMEOUT, reading)).await,
    };
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => {
            line.outcome = Outcome::TooLarge;
            return payload_too_large();
        }
        Ok(Err(BodyError::Broken)) => {
            line.outcome = Outcome::Refused(crate::reason::Reason::BadRequest);
            return error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read",
            );
        }
        Err(_) => {
            line.outcome = Outcome::Timeout;
            return error_reply(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body was not sent in time",
            );
        }
    };
    // Unix seconds straight from the clock: no calendar conversion a request.
    let answer: Answer<'_> = endpoint
        .connector
        .answer(&state.verifier.load(), &body, now.into());
    line.record(&answer, state.log_emails);
    json_reply(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST),
        answer.body,
    )
}

async fn metrics_reply(
    state: &State,
    method: &Method,
    credentials: Option<&HeaderValue>,
) -> Response {
    let Some(auth) = &state.metrics_auth else {
        return not_found(state);
    };
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    if let Err(denied) = auth.check(credentials).await {
        state.metrics.refused(RefusedAt::Metrics, &denied.reason);
        log::denied("/metrics", &denied.reason);
        return unauthorized(auth, &denied);
    }
    metrics_text(state)
}

/// The metrics in Prometheus text format.
fn metrics_text(state: &State) -> Response {
    let mut response = Response::new(state.metrics.render().into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Collects a body of at most [`MAX_BODY_BYTES`], whatever its transfer encoding. The usual
/// single chunk is taken as it is; only a body in several chunks is copied together.
async fn read_limited<S, B>(body: &mut S) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Broken)?;
        total = total.saturating_add(chunk.remaining());
        if u64::try_from(total).unwrap_or(u64::MAX) > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&bytes),
            (None, None) => first = Some(bytes),
            (None, Some(earlier)) => {
                let mut buffer = BytesMut::with_capacity(total);
                buffer.extend_from_slice(&earlier);
                buffer.extend_from_slice(&bytes);
                joined = Some(buffer);
            }
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze))
}

/// A reply with a JSON body.
pub(crate) fn json_reply(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = Response::new(body.into().into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON error outside the identity-provider contracts: `{"error": code, "message": text}`.
pub(crate) fn error_reply(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    json_reply(status, body.to_string().into_bytes())
}

/// `/healthz` (liveness: always 200 while the process serves, since a restart would not bring
/// the keys sooner) and `/readyz` (503 while any part is not ready): `{"status":"ok"}`, or
/// `{"status":"not-ready","not_ready":{"entra":"waiting for the signing keys","server":"..."}}`
/// naming every part not ready: an endpoint that cannot decide yet (no Entra signing keys),
/// the key ring (`keys`), the server draining after SIGTERM (`server`).
fn health_reply(state: &State, strict: bool) -> Response {
    let mut waiting: serde_json::Map<String, serde_json::Value> = state
        .readiness
        .iter()
        .filter_map(|(name, bearer)| {
            bearer
                .ready()
                .err()
                .map(|why| ((*name).to_owned(), why.into()))
        })
        .collect();
    if state.verifier.load().ring.key_ids().next().is_none() {
        waiting.insert("keys".to_owned(), "no key ring loaded".into());
    }
    if state.connections.draining() {
        waiting.insert(
            "server".to_owned(),
            "draining after a shutdown signal: answering the requests received, taking no new \
             ones"
                .into(),
        );
    }
    if waiting.is_empty() {
        return json_reply(StatusCode::OK, br#"{"status":"ok"}"#.to_vec());
    }
    let body = serde_json::json!({ "status": "not-ready", "not_ready": waiting });
    let status = if strict {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_reply(status, body.to_string().into_bytes())
}

/// 503 when the endpoint cannot check credentials yet: the caller (Entra) logs a server error,
/// not an authentication error, and tries again later.
fn unavailable(denied: &Denied) -> Response {
    let mut response = error_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        denied.message,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// 401 with the scheme's challenge. The body never says why: that goes to the log.
fn unauthorized(auth: &Auth, denied: &Denied) -> Response {
    let mut response = error_reply(StatusCode::UNAUTHORIZED, "unauthorized", denied.message);
    if let Some(challenge) = auth.challenge() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this path takes {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn payload_too_large() -> Response {
    error_reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the request body is over {MAX_BODY_BYTES} bytes"),
    )
}
