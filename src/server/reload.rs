//! Reloading the key ring, deny list and messages without a restart: on SIGHUP, and when a
//! watched file's modification time, size or inode changes (checked on an interval). A reload
//! prepares a whole new [`Verifier`] and swaps it in at once, so a request sees either the old
//! set or the new one, never a mix. A reload that fails keeps the old set, logs why and is
//! counted.
//!
//! The server's TLS certificate and key, when it has them, are watched and reloaded the same
//! way (see [`tls`](super::tls)): a new pair is swapped in for new handshakes, a pair that does
//! not load is refused, the old one kept, and the log says why.
//!
//! Files are followed through symlinks, so the swap by which Kubernetes updates a mounted
//! Secret (a new `..data` symlink renamed over the old one) is seen as a change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::tls::Certificates;
use crate::decision::Verifier;
use crate::source::VerifierSource;

/// How often watched files are checked by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Where a verifier comes from and when to read it again.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// The key ring, deny list and messages, read again at each reload.
    pub source: VerifierSource,
    /// How often to check the source's files; `None` only on SIGHUP.
    pub interval: Option<Duration>,
}

impl ReloadSource {
    /// Files whose change triggers a reload (followed through symlinks).
    #[must_use]
    pub fn files(&self) -> Vec<PathBuf> {
        self.source.files()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The verifier in use, swapped whole by a reload.
#[derive(Debug)]
pub struct Current {
    verifier: ArcSwap<Verifier>,
    reloads: Family<ResultLabels, Counter>,
}

impl Current {
    /// Starts with `verifier`.
    #[must_use]
    pub fn new(verifier: Verifier) -> Self {
        let reloads = Family::default();
        for result in ["ok", "failed"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        Self {
            verifier: ArcSwap::from_pointee(verifier),
            reloads,
        }
    }

    /// The verifier for one request.
    pub fn load(&self) -> arc_swap::Guard<Arc<Verifier>> {
        self.verifier.load()
    }

    /// Registers the reload counters.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "reloads",
            "Reloads of the key ring, deny list and messages, by result",
            self.reloads.clone(),
        );
    }

    /// Reloads now: swaps in a new verifier, or keeps the old one and logs why.
    pub fn reload(&self, source: &ReloadSource, why: &str) {
        match source.source.load() {
            Ok(verifier) => {
                let keys: Vec<u8> = verifier.ring.key_ids().collect();
                let deny = verifier.options.deny_list.len();
                self.verifier.store(Arc::new(verifier));
                self.reloads
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                tracing::info!(
                    why,
                    ?keys,
                    revoked = deny,
                    "reloaded keys, deny list and messages"
                );
            }
            Err(reason) => {
                self.reloads
                    .get_or_create(&ResultLabels { result: "failed" })
                    .inc();
                tracing::error!(why, reason = %reason, "reload failed; still serving the previous keys, deny list and messages");
            }
        }
    }
}

/// What identifies a file's content without reading it.
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

/// Starts reloading on SIGHUP and on changes of the watched files, until the process ends.
/// SIGHUP is caught from this call on, so it no longer ends the process.
///
/// # Errors
///
/// When the SIGHUP handler cannot be installed.
pub fn spawn(
    current: Arc<Current>,
    source: ReloadSource,
    certificates: Option<Arc<Certificates>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    let hangup = Some(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::hangup(),
    )?);
    #[cfg(not(unix))]
    let hangup = None::<()>;
    Ok(tokio::spawn(watch(current, source, certificates, hangup)))
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// Reloads the TLS certificate and key: swaps them in, or keeps the old pair and logs why.
fn reload_tls(certificates: &Certificates, why: &str) {
    match certificates.reload() {
        Ok(()) => tracing::info!(why, "reloaded the TLS certificate and key"),
        Err(reason) => tracing::error!(
            why,
            reason = %reason,
            "TLS certificate reload failed; still serving the previous certificate and key"
        ),
    }
}

async fn watch(
    current: Arc<Current>,
    source: ReloadSource,
    certificates: Option<Arc<Certificates>>,
    mut hangup: Option<Hangup>,
) {
    let files = source.files();
    let mut stamps: Vec<_> = files.iter().map(|p| stamp(p)).collect();
    let tls_files: Vec<PathBuf> = certificates
        .iter()
        .flat_map(|c| [c.files().cert.clone(), c.files().key.clone()])
        .collect();
    let mut tls_stamps: Vec<_> = tls_files.iter().map(|p| stamp(p)).collect();
    let mut ticks = source.interval.map(|every| {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    loop {
        let hangup_received = async {
            #[cfg(unix)]
            if let Some(hangup) = hangup.as_mut() {
                hangup.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        let tick = async {
            match ticks.as_mut() {
                Some(ticks) => {
                    ticks.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = hangup_received => {
                stamps = files.iter().map(|p| stamp(p)).collect();
                tls_stamps = tls_files.iter().map(|p| stamp(p)).collect();
                current.reload(&source, "SIGHUP");
                if let Some(certificates) = &certificates {
                    reload_tls(certificates, "SIGHUP");
                }
            }
            () = tick => {
                let now: Vec<_> = files.iter().map(|p| stamp(p)).collect();
                if now != stamps {
                    stamps = now;
                    current.reload(&source, "a watched file changed");
                }
                let now: Vec<_> = tls_files.iter().map(|p| stamp(p)).collect();
                if now != tls_stamps {
                    tls_stamps = now;
                    if let Some(certificates) = &certificates {
                        reload_tls(certificates, "a watched file changed");
                    }
                }
            }
        }
    }
}
