//! The HTTP server: the identity-provider endpoints, health and metrics, on warp and hyper.
//!
//! [`run`] is the one entry point `main` and the tests share: it takes a bound listener, the
//! configuration and a shutdown future. [`routes()`] is the warp filter on its own, for
//! `warp::test`. The parts, one job each:
//! - this file: the accept loop, connection limits and shutdown;
//! - [`routes`]: paths, body limits, the reply of each endpoint and the JSON errors;
//! - [`auth`]: how each endpoint authenticates its caller;
//! - [`log`] and [`metrics`]: what each request leaves behind.
//!
//! What each identity provider's request and answer look like lives in
//! [`connector`](crate::connector); what the answer is, in [`decision`](crate::decision).

pub mod auth;
pub mod log;
pub mod metrics;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::Filter;
use warp::reply::Response;

pub use routes::{
    CUSTOM_POLICY_PATH, Config, ENTRA_PATH, Endpoint, MAX_BODY_BYTES, USER_FLOW_PATH, routes,
};

/// Largest request head (request line and headers) hyper buffers; larger heads get 431.
/// 16 KiB holds any header set a proxy or Azure front end adds, and an Entra bearer token.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Time to send the request head. Identity providers send it at once; slow senders only hold
/// sockets.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog. Each costs a task and buffers
/// of a few KiB, so this bounds memory while staying far above what an identity provider sends.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time given to requests in flight after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
