//! The HTTP server: the B2C API connector, health and metrics, on warp and hyper.
//!
//! [`run`] is the one entry point `main` and the tests share: it takes a bound listener, the
//! configuration and a shutdown future. [`routes`] is the warp filter on its own, for
//! `warp::test`. Domain outcomes are replies, never rejections; one `recover` turns what is
//! left (no route matched) into a JSON 404.

pub mod auth;
pub mod messages;
pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::connector::b2c::{self, AttributeNames, CodeClaim};
use crate::{Code, KeyRing, Outcome, VerifyOptions, verify_code};
use auth::BasicAuth;
use messages::{MessageKey, Messages};
use metrics::Metrics;

/// Largest request body read. A B2C request is a few hundred bytes of claims; 64 KiB leaves
/// room for every attribute a flow can collect and stops a client from making us buffer more.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// Largest request head (request line and headers) hyper buffers; larger heads get 431.
/// 16 KiB holds any header set a proxy or Azure front end adds.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Time to send the request head. B2C sends it at once; slow senders only hold sockets.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to send the body once the head is in. B2C itself gives up after 5 s.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog. Each costs a task and buffers
/// of a few KiB, so this bounds memory while staying far above what B2C sends.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time given to requests in flight after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The connector's path. With an Azure Functions custom handler whose function route is
/// `b2c/user-flow`, this is the path the host forwards.
pub const USER_FLOW_PATH: &str = "/api/b2c/user-flow";

/// Everything the connector needs; built once at start.
#[derive(Debug)]
pub struct Config {
    /// The keys that verify codes.
    pub ring: KeyRing,
    /// Leeway and deny list.
    pub verify: VerifyOptions,
    /// Basic credentials to require; `None` only with `--insecure-no-auth`.
    pub auth: Option<BasicAuth>,
    /// Where the code attribute is in requests.
    pub attribute: AttributeNames,
    /// Keep the code in the directory (do not clear the attribute on Continue).
    pub keep_code_attribute: bool,
    /// What people read.
    pub messages: Messages,
    /// Log whole email addresses instead of their domain.
    pub log_emails: bool,
}

/// Configuration and metrics shared by every request.
#[derive(Debug)]
struct State {
    config: Config,
    metrics: Metrics,
}

/// The warp filter for every route, with rejections recovered into JSON replies.
pub fn routes(config: Config) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    routes_with_state(Arc::new(State {
        config,
        metrics: Metrics::new(),
    }))
}

fn routes_with_state(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_state = warp::any().map(move || Arc::clone(&state));
    let healthz = warp::path!("healthz")
        .and(warp::method())
        .map(|method: Method| match method {
            Method::GET | Method::HEAD => {
                json_reply(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
            }
            _ => method_not_allowed("GET, HEAD"),
        });
    let metrics = warp::path!("metrics")
        .and(warp::method())
        .and(authorization())
        .and(with_state.clone())
        .map(
            |method: Method, authorization: Option<HeaderValue>, state: Arc<State>| {
                if method != Method::GET {
                    return method_not_allowed("GET");
                }
                if !authorized(&state.config, authorization.as_ref()) {
                    return unauthorized();
                }
                let mut response = Response::new(state.metrics.render().into());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            },
        );
    let user_flow = warp::path!("api" / "b2c" / "user-flow")
        .and(warp::method())
        .and(authorization())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_state)
        .then(user_flow);
    // The connector first: it is the route that carries the load, and each route tried before
    // the matching one costs a rejection.
    user_flow
        .or(healthz)
        .unify()
        .or(metrics)
        .unify()
        .recover(recover)
        .unify()
}

/// The `Authorization` header, if any, without rejecting on bytes that are not text. Only
/// this one value is cloned, not the request's whole header map.
fn authorization() -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    warp::header::value(header::AUTHORIZATION.as_str())
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}

fn authorized(config: &Config, authorization: Option<&HeaderValue>) -> bool {
    config
        .auth
        .as_ref()
        .is_none_or(|auth| auth.accepts(authorization.map(HeaderValue::as_bytes)))
}

/// What one connector request came to, for the log line and the metrics.
#[derive(Default)]
struct Record {
    outcome: &'static str,
    code: Option<Code>,
    /// What the log line shows of the email: its domain, or the address with `log_emails`.
    /// Only taken when the line will be written.
    email: Option<String>,
}

/// Whether connector log lines are written.
fn logging() -> bool {
    tracing::enabled!(target: "invitegate::connector", tracing::Level::INFO)
}

/// What the log shows of an email address: its lower-cased domain, or with `log_emails` the
/// address.
fn email_for_log(config: &Config, email: &str) -> String {
    if config.log_emails {
        email.trim().to_owned()
    } else {
        email.rsplit_once('@').map_or_else(
            || "(no domain)".to_owned(),
            |(_, domain)| domain.trim().to_ascii_lowercase(),
        )
    }
}

/// `POST /api/b2c/user-flow`.
async fn user_flow<S, B>(
    method: Method,
    authorization: Option<HeaderValue>,
    content_length: Option<u64>,
    body: S,
    state: Arc<State>,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf,
{
    let started = Instant::now();
    let mut record = Record::default();
    let response = answer(
        &state.config,
        &mut record,
        method,
        authorization,
        content_length,
        body,
    )
    .await;
    let elapsed = started.elapsed();
    state.metrics.record(record.outcome, elapsed.as_secs_f64());
    log(&record, response.status(), elapsed);
    response
}

async fn answer<S, B>(
    config: &Config,
    record: &mut Record,
    method: Method,
    authorization: Option<HeaderValue>,
    content_length: Option<u64>,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf,
{
    if method != Method::POST {
        record.outcome = "method-not-allowed";
        return method_not_allowed("POST");
    }
    if !authorized(config, authorization.as_ref()) {
        record.outcome = "unauthorized";
        return unauthorized();
    }
    if content_length.is_some_and(|len| len > MAX_BODY_BYTES) {
        record.outcome = "too-large";
        return payload_too_large();
    }
    // Most bodies arrive with the head: read once, and arm the timer only when waiting.
    let mut reading = std::pin::pin!(read_limited(body));
    let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(read) => Ok(read),
        Poll::Pending => tokio::time::timeout(BODY_READ_TIMEOUT, reading).await,
    };
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => {
            record.outcome = "too-large";
            return payload_too_large();
        }
        Ok(Err(BodyError::Broken)) => {
            record.outcome = "bad-request";
            return error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read",
            );
        }
        Err(_) => {
            record.outcome = "timeout";
            return error_reply(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body was not sent in time",
            );
        }
    };
    let response = connector_response(config, record, &body);
    json_reply(
        StatusCode::from_u16(response.status()).unwrap_or(StatusCode::BAD_REQUEST),
        response.to_json(),
    )
}

/// The contract's answer to a request body; fills `record` on the way.
fn connector_response(config: &Config, record: &mut Record, body: &[u8]) -> b2c::Response {
    let Ok(request) = b2c::Request::parse(body, &config.attribute) else {
        record.outcome = "bad-request";
        return validation_error(config, MessageKey::BadRequest, None);
    };
    connector_answer(config, record, request)
}

fn connector_answer(
    config: &Config,
    record: &mut Record,
    request: b2c::Request<'_>,
) -> b2c::Response {
    let locales = request.ui_locales.as_deref();
    if let Some(step) = request
        .step
        .as_deref()
        .filter(|s| *s != b2c::POST_ATTRIBUTE_COLLECTION)
    {
        record.outcome = "wrong-step";
        tracing::warn!(
            step,
            "the API connector is attached to the wrong step: attach it to \"Before creating the \
             user\" (PostAttributeCollection); answering with a block page"
        );
        return block_page(config, MessageKey::WrongStep, locales);
    }
    let Some(email) = request.email.as_deref() else {
        record.outcome = "no-email";
        return block_page(config, MessageKey::NoEmail, locales);
    };
    if logging() {
        record.email = Some(email_for_log(config, email));
    }
    let (key, typed) = match &request.code {
        CodeClaim::Present { key, value } if !value.trim().is_empty() => {
            (key.as_ref(), value.as_ref())
        }
        CodeClaim::Present { .. } | CodeClaim::Missing => {
            record.outcome = "missing-code";
            return validation_error(config, MessageKey::MissingCode, locales);
        }
        CodeClaim::NotAString { .. } => {
            record.outcome = "bad-request";
            return validation_error(config, MessageKey::BadRequest, locales);
        }
    };
    let outcome = match Code::parse(typed) {
        Ok(code) => {
            record.code = Some(code);
            verify_code(
                &config.ring,
                &code,
                email,
                // Unix seconds straight from the clock: no calendar conversion a request.
                std::time::SystemTime::now(),
                &config.verify,
            )
        }
        Err(err) => Outcome::unreadable(&err),
    };
    record.outcome = outcome.name();
    match outcome {
        Outcome::Valid(_) => {
            let claims = if config.keep_code_attribute {
                Vec::new()
            } else {
                vec![(key.to_owned(), String::new())]
            };
            b2c::Response::Continue { claims }
        }
        Outcome::Expired(grant) => {
            let date = grant.expiry.to_datetime().date().to_string();
            let text = config
                .messages
                .get(MessageKey::Expired, locales)
                .replace("{expiry}", &date);
            b2c::Response::ValidationError { user_message: text }
        }
        Outcome::Revoked(_) => validation_error(config, MessageKey::Revoked, locales),
        Outcome::NotValid => validation_error(config, MessageKey::NotValid, locales),
        Outcome::Mistyped => validation_error(config, MessageKey::Mistyped, locales),
        Outcome::Malformed => validation_error(config, MessageKey::Malformed, locales),
    }
}

fn validation_error(config: &Config, key: MessageKey, locales: Option<&str>) -> b2c::Response {
    b2c::Response::ValidationError {
        user_message: config.messages.get(key, locales).to_owned(),
    }
}

fn block_page(config: &Config, key: MessageKey, locales: Option<&str>) -> b2c::Response {
    b2c::Response::ShowBlockPage {
        user_message: config.messages.get(key, locales).to_owned(),
    }
}

/// One structured line a connector request: outcome, kind, key id, the code's fingerprint and
/// the email's domain (the whole address only with `log_emails`). Never a whole code.
fn log(record: &Record, status: StatusCode, elapsed: Duration) {
    if !logging() {
        return;
    }
    tracing::info!(
        target: "invitegate::connector",
        outcome = record.outcome,
        status = status.as_u16(),
        kind = record.code.map(|c| c.kind().name()),
        key_id = record.code.map(|c| c.key_id()),
        code = record.code.map(|c| c.fingerprint()).as_deref(),
        email = record.email.as_deref(),
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "connector request"
    );
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Collects a body of at most [`MAX_BODY_BYTES`], whatever its transfer encoding. The usual
/// single chunk is taken as it is; only a body in several chunks is copied together.
async fn read_limited<S, B>(mut body: S) -> Result<Bytes, BodyError>
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

fn json_reply(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON error outside the connector contract: `{"error": code, "message": text}`.
fn error_reply(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    json_reply(status, body.to_string().into_bytes())
}

fn unauthorized() -> Response {
    let mut response = error_reply(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong HTTP Basic credentials",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"invitegate\""),
    );
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

/// What no route matched.
async fn recover(_rejection: Rejection) -> Result<Response, Infallible> {
    Ok(error_reply(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no such path; the connector is POST {USER_FLOW_PATH}"),
    ))
}

/// Serves `config` on `listener` until `shutdown` completes, then stops accepting and gives
/// requests in flight [`SHUTDOWN_GRACE`] to finish.
///
/// Connections are HTTP/1.1 with keep-alive, bounded in number ([`MAX_CONNECTIONS`]), head
/// size ([`MAX_HEAD_BYTES`]) and head read time ([`HEAD_READ_TIMEOUT`]).
///
/// # Errors
///
/// None today: accept errors (such as running out of file descriptors) are logged and retried.
/// The `Result` leaves room for start-up failures.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve(listener, routes(config), shutdown).await
}

/// Serves any warp filter with the connection handling of [`run`]: the same limits, timeouts
/// and graceful shutdown. The HTTP bench uses it to serve a bare route beside the connector.
///
/// # Errors
///
/// As [`run`].
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let service = warp::service(filter);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small JSON replies: send them at once rather than waiting to coalesce.
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEAD_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
    }
    Ok(())
}
