//! The HTTP server: the identity-provider endpoints, health and metrics, on warp and hyper.
//!
//! [`run`] is the one entry point `main` and the tests share: it takes a bound listener, the
//! configuration and a shutdown future. [`routes()`] is the warp filter on its own, for
//! `warp::test`. The parts, one job each:
//! - this file: the accept loop, connection limits and shutdown, the metrics listener;
//! - [`tls`]: the server's certificate (reloaded with the keys) and client certificates;
//! - [`mod@routes`]: paths, body limits, the reply of each endpoint and the JSON errors;
//! - [`mod@config`]: settings to endpoints and their authentication, the Entra issuer rules;
//! - [`auth`]: how each endpoint authenticates its caller;
//! - [`log`] and [`metrics`]: what each request leaves behind.
//!
//! What each identity provider's request and answer look like lives in
//! [`connector`](crate::connector); what the answer is, in [`decision`](crate::decision).

pub mod auth;
pub mod config;
pub mod connection;
pub mod labels;
pub mod log;
pub mod metrics;
pub mod parse_errors;
pub mod reload;
pub mod routes;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::Filter;
use warp::reply::Response;

use auth::client_cert::Intake;
use connection::{ConnectionStats, Limits, OVERFLOW_WAIT, OpenGuard, Registry};

pub use routes::{
    CUSTOM_POLICY_PATH, Config, ENTRA_PATH, Endpoint, MAX_BODY_BYTES, USER_FLOW_PATH, routes,
};

/// Largest request head (request line and headers) hyper buffers; larger heads get 431.
/// 16 KiB holds any header set a proxy or Azure front end adds, and an Entra bearer token.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `config` on `listener` until `shutdown` completes, then drains: see
/// [`connection`] for the limits and the drain.
///
/// With [`Config::tls`] set, every connection is HTTPS (see [`tls`]). With
/// [`Config::reload`] set, the verifier (and the TLS certificate and key) are reloaded on
/// SIGHUP and when their files change (see [`reload`]). With [`Config::metrics_listener`] set,
/// that listener serves `/metrics` without authentication and the probes, in plain HTTP, until
/// the drain of `listener` has ended: `/readyz` there says when the server drains.
///
/// # Errors
///
/// When the SIGHUP handler cannot be installed. Accept errors (such as running out of file
/// descriptors) are logged and retried.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut config = config;
    let limits = config.limits;
    let stats = Arc::clone(&config.connection_stats);
    let current = Arc::new(reload::Current::new(config.verifier.clone()));
    let certificates = config.tls.clone();
    let metrics_listener = config.metrics_listener.take();
    let client_certificates = config.takes_client_certificates();
    let tls = match &certificates {
        Some(certificates) => Some(tokio_rustls::TlsAcceptor::from(
            certificates
                .server_config(client_certificates)
                .map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    let _watching = match config.reload.take() {
        Some(source) => Some(reload::spawn(Arc::clone(&current), source, certificates)?),
        None => None,
    };
    let (routes, probes) = routes::routes_with(config, current);
    let (stop_probes, probes_stopped) = tokio::sync::oneshot::channel::<()>();
    let probes = metrics_listener.map(|metrics_listener| {
        let stats = Arc::new(ConnectionStats::default());
        let until = async {
            let _ = probes_stopped.await;
        };
        tokio::spawn(serve_inner(
            metrics_listener,
            probes,
            limits,
            stats,
            Connections::default(),
            until,
        ))
    });
    let connections = Connections {
        tls,
        client_certificates,
    };
    let served = serve_inner(listener, routes, limits, stats, connections, shutdown).await;
    let _ = stop_probes.send(());
    if let Some(probes) = probes {
        let _ = probes.await;
    }
    served
}

/// How connections are taken: TLS or not, client certificates handed to requests or not.
#[derive(Clone, Default)]
struct Connections {
    /// Each connection is TLS, its handshake bounded by the header timeout.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Hand each request its connection's client certificate and `X-ARR-ClientCert` header.
    client_certificates: bool,
}

/// Serves any warp filter with the default limits. The HTTP bench uses it to serve a bare
/// route beside the endpoints.
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
    let stats = Arc::new(ConnectionStats::default());
    serve_with(listener, filter, Limits::default(), stats, shutdown).await
}

/// Serves any warp filter with the connection handling of [`run`]: HTTP/1.1 with keep-alive,
/// head size bounded by [`MAX_HEAD_BYTES`], and `limits`, counted in `stats`.
///
/// # Errors
///
/// As [`run`].
pub async fn serve_with<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    serve_inner(
        listener,
        filter,
        limits,
        stats,
        Connections::default(),
        shutdown,
    )
    .await
}

async fn serve_inner<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let service = warp::service(filter);
    let registry = Arc::new(Registry::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        // A slot now; else the slot of the connection idle the longest, which is asked to
        // close; else, when every connection is busy, whichever slot frees first, briefly.
        let permit = Arc::clone(&slots).try_acquire_owned().ok();
        let handoff = permit.is_none().then(|| {
            let (give, take) = tokio::sync::oneshot::channel();
            registry.evict_idlest(give);
            take
        });
        let (service, registry, stats, slots, connections) = (
            service.clone(),
            Arc::clone(&registry),
            Arc::clone(&stats),
            Arc::clone(&slots),
            connections.clone(),
        );
        tokio::spawn(async move {
            let permit = match (permit, handoff) {
                (Some(permit), _) => permit,
                (None, handoff) => {
                    let handed = async {
                        match handoff {
                            Some(handoff) => handoff.await.ok(),
                            None => None,
                        }
                    };
                    let waited = tokio::time::timeout(OVERFLOW_WAIT, async {
                        tokio::select! {
                            Some(permit) = handed => Some(permit),
                            Ok(permit) = slots.acquire_owned() => Some(permit),
                            else => None,
                        }
                    });
                    match waited.await {
                        Ok(Some(permit)) => permit,
                        _ => {
                            connection::overflow(&stats);
                            return;
                        }
                    }
                }
            };
            // Small JSON replies: send them at once rather than waiting to coalesce.
            let _ = stream.set_nodelay(true);
            let Some(tls) = connections.tls else {
                let intake = connections.client_certificates.then(Intake::default);
                let taken = Taken { permit, intake };
                serve_connection(stream, service, &registry, &limits, &stats, taken).await;
                return;
            };
            let stream = match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(error = %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    connection::handshake_timeout(&stats);
                    return;
                }
            };
            let intake = connections.client_certificates.then(|| {
                let peer = stream.get_ref().1.peer_certificates();
                Intake::new(peer.and_then(|chain| chain.first()).cloned())
            });
            let taken = Taken { permit, intake };
            serve_connection(stream, service, &registry, &limits, &stats, taken).await;
        });
    }
    drop(listener);
    stats.start_drain();
    tracing::info!("shutting down: no new connections; answering the requests received");
    registry.start_drain();
    if tokio::time::timeout(limits.drain_timeout, registry.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after the drain timeout ({:?}); stopping anyway",
            limits.drain_timeout
        );
    }
    Ok(())
}

/// What a connection holds once taken: its slot, and what it hands each request.
struct Taken {
    permit: tokio::sync::OwnedSemaphorePermit,
    intake: Option<Intake>,
}

/// One connection: HTTP/1.1 through hyper, tracked for the limits and the drain.
async fn serve_connection<IO, S>(
    stream: IO,
    service: S,
    registry: &Arc<Registry>,
    limits: &Limits,
    stats: &ConnectionStats,
    taken: Taken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower_service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let _open = OpenGuard::new(stats);
    let (id, tracked) = registry.register();
    let service = Tracking {
        inner: service,
        tracked: Arc::clone(&tracked),
        registry: Arc::clone(registry),
        intake: taken.intake,
    };
    let service = hyper_util::service::TowerToHyperService::new(service);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let io = TokioIo::new(parse_errors::JsonParseErrors::new(stream));
    let connection = http.serve_connection(io, service);
    connection::drive(
        connection,
        |connection| connection.graceful_shutdown(),
        &tracked,
        registry,
        limits,
        stats,
    )
    .await;
    registry.remove(id);
    tracked.release(taken.permit);
}

/// Marks each request's start and end on its connection, and adds `Connection: close` to
/// every answer once the drain has started. With client certificates pinned, hands each
/// request the connection's certificate and its `X-ARR-ClientCert` header.
#[derive(Clone)]
struct Tracking<S> {
    inner: S,
    tracked: Arc<connection::Tracked>,
    registry: Arc<Registry>,
    intake: Option<Intake>,
}

impl<S, B> tower_service::Service<hyper::Request<B>> for Tracking<S>
where
    S: tower_service::Service<hyper::Request<B>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: hyper::Request<B>) -> Self::Future {
        if let Some(intake) = &self.intake {
            intake.attach(&mut request);
        }
        self.registry.request_started(&self.tracked);
        let answer = self.inner.call(request);
        let (tracked, registry) = (Arc::clone(&self.tracked), Arc::clone(&self.registry));
        Box::pin(async move {
            let mut response = answer.await?;
            if registry.closes_after_answer(&tracked) {
                response.headers_mut().insert(
                    warp::http::header::CONNECTION,
                    warp::http::HeaderValue::from_static("close"),
                );
            }
            registry.request_ended(&tracked);
            Ok(response)
        })
    }
}
