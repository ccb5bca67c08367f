//! The signing keys held for bearer tokens, and how they are fetched: one fetch at a time,
//! shared by every request that needs it, never waited for longer than a request can afford.
//!
//! - At start the keys may be missing (the tenant unreachable for a moment): the store starts
//!   empty, the maintenance task ([`crate::server::auth::BearerAuth::spawn_refresh`]) retries with backoff ([`FIRST_RETRY`] doubling to
//!   [`LAST_RETRY`]) and logs each failure with the URL and why, then refreshes on schedule.
//! - A token naming an unknown `kid` starts a fetch in the background unless one is running
//!   (then it joins it) or the last one was too recent (then it is refused at once), and waits
//!   for it at most a bounded time: a hung key source costs a request that wait, not the fetch
//!   timeout, and never holds a connection for seconds under a flood.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::jwks::{Fetched, Fetcher, KeySet, KeySetError};
use super::token_cache::TokenCache;

/// First wait before fetching again keys that could not be fetched at start.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two tries while no key is held: the endpoint answers 503 meanwhile, so
/// a minute bounds how long it stays down after the tenant is reachable again.
pub const LAST_RETRY: Duration = Duration::from_secs(60);

/// One installed key set.
pub(crate) struct Keys {
    pub(crate) set: KeySet,
    /// Counts installs (0: none yet), so a request can tell whether keys arrived meanwhile.
    pub(crate) generation: u64,
}

#[derive(Default)]
struct FetchState {
    /// A background fetch is running.
    in_flight: bool,
    last_fetch: Option<Instant>,
    /// The `issuer` of the metadata last read, when the keys come from metadata.
    metadata_issuer: Option<String>,
    /// Why the last fetch failed, cleared by a success.
    last_error: Option<String>,
    /// The key set's URL the metadata named at the last successful read.
    jwks_uri: Option<String>,
}

/// The keys in use and their fetching.
pub(crate) struct KeyStore {
    fetcher: Fetcher,
    keys: RwLock<Arc<Keys>>,
    state: Mutex<FetchState>,
    /// Held during every fetch: one at a time, scheduled or not.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Bumped when a fetch ends, for the requests waiting on it.
    done: watch::Sender<u64>,
    cache: Arc<TokenCache>,
    min_interval: Duration,
    /// Issuers a v2 token may carry: metadata declaring another is worth a warning.
    accepted_issuers: Vec<String>,
}

impl KeyStore {
    /// An empty store: no key until the first fetch succeeds.
    pub(crate) fn new(
        fetcher: Fetcher,
        cache: Arc<TokenCache>,
        min_interval: Duration,
        accepted_issuers: Vec<String>,
    ) -> Self {
        Self {
            accepted_issuers,
            fetcher,
            keys: RwLock::new(Arc::new(Keys {
                set: KeySet::default(),
                generation: 0,
            })),
            state: Mutex::new(FetchState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            done: watch::Sender::new(0),
            cache,
            min_interval,
        }
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    pub(crate) fn snapshot(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `issuer` the key source's metadata declared at the last successful read.
    pub(crate) fn metadata_issuer(&self) -> Option<String> {
        self.state().metadata_issuer.clone()
    }

    /// The key set's URL the metadata named at the last successful read.
    pub(crate) fn jwks_uri(&self) -> Option<String> {
        self.state().jwks_uri.clone()
    }

    /// Why the last fetch failed, if it did.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.state().last_error.clone()
    }

    /// Fetches now, whatever the rate limit, after any fetch running; installs the keys or
    /// keeps the previous ones and logs why.
    pub(crate) async fn fetch_now(&self) -> Result<usize, KeySetError> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        self.state().last_fetch = Some(Instant::now());
        let result = self.fetcher.fetch().await;
        self.finish(result, false)
    }

    /// Starts a fetch in the background for a token with an unknown `kid`, or joins the one
    /// running. `None` when the last fetch was too recent: the caller should not wait.
    pub(crate) fn fetch_shared(self: &Arc<Self>) -> Option<watch::Receiver<u64>> {
        let mut state = self.state();
        // Subscribed under the state lock, which `finish` holds to signal: a fetch that ends
        // after this line is seen by the receiver.
        let receiver = self.done.subscribe();
        if state.in_flight {
            return Some(receiver);
        }
        if state
            .last_fetch
            .is_some_and(|last| last.elapsed() < self.min_interval)
        {
            return None;
        }
        state.in_flight = true;
        state.last_fetch = Some(Instant::now());
        drop(state);
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let _one_at_a_time = store.fetch_lock.lock().await;
            let result = store.fetcher.fetch().await;
            // A failure is logged by `finish`; the waiting tokens are then refused.
            let _ = store.finish(result, true);
        });
        Some(receiver)
    }

    fn finish(
        &self,
        result: Result<Fetched, KeySetError>,
        background: bool,
    ) -> Result<usize, KeySetError> {
        let outcome = match result {
            Ok(Fetched {
                set,
                metadata_issuer: issuer,
                jwks_uri,
            }) => {
                let count = set.len();
                self.install(set);
                let mut state = self.state();
                state.jwks_uri = jwks_uri;
                if let Some(declared) = &issuer
                    && state.metadata_issuer.as_ref() != Some(declared)
                    && !self.accepted_issuers.contains(declared)
                {
                    tracing::warn!(
                        metadata = %self.fetcher.source_name(),
                        declared = %declared,
                        accepted = %self.accepted_issuers.join(", "),
                        "the key source's metadata declares an issuer that is not accepted: \
                         tokens it issues will be refused; check ENTRA_TENANT_ID, \
                         ENTRA_TENANT_SUBDOMAIN and ENTRA_ISSUER"
                    );
                }
                state.metadata_issuer = issuer;
                state.last_error = None;
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    keys = self.snapshot().set.len(),
                    "fetching the bearer token signing keys failed; keeping the keys held"
                );
                self.state().last_error = Some(error.to_string());
                Err(error)
            }
        };
        let mut state = self.state();
        if background {
            state.in_flight = false;
        }
        self.done.send_modify(|n| *n = n.wrapping_add(1));
        drop(state);
        outcome
    }

    /// Installs a new key set and forgets cached tokens whose key left it.
    fn install(&self, set: KeySet) {
        let fingerprints = |set: &KeySet| -> HashSet<[u8; 32]> {
            set.keys.values().map(|key| key.fingerprint).collect()
        };
        let new_fingerprints = fingerprints(&set);
        let (old_fingerprints, first) = {
            let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
            let old = fingerprints(&keys.set);
            let first = keys.generation == 0;
            *keys = Arc::new(Keys {
                set,
                generation: keys.generation + 1,
            });
            (old, first)
        };
        self.cache
            .retain(|entry| new_fingerprints.contains(&entry.key));
        if first {
            tracing::info!(
                keys = new_fingerprints.len(),
                source = %self.fetcher.source_name(),
                "bearer token signing keys loaded"
            );
        } else if new_fingerprints == old_fingerprints {
            tracing::debug!(
                keys = new_fingerprints.len(),
                "bearer token signing keys unchanged"
            );
        } else {
            tracing::info!(
                keys = new_fingerprints.len(),
                added = new_fingerprints.difference(&old_fingerprints).count(),
                removed = old_fingerprints.difference(&new_fingerprints).count(),
                "bearer token signing keys changed"
            );
        }
    }

    /// Keeps the keys fresh until the store is dropped: while none is held, tries again after
    /// [`FIRST_RETRY`], doubling to [`LAST_RETRY`]; once held, every `refresh_every`.
    pub(crate) fn spawn_maintenance(
        self: &Arc<Self>,
        refresh_every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let held = match store.upgrade() {
                    Some(store) => store.snapshot().generation > 0,
                    None => break,
                };
                let wait = if held { refresh_every } else { retry };
                if !held {
                    tracing::warn!(
                        retry_in = %humantime::format_duration(wait),
                        "no bearer token signing keys held: the entra endpoint answers 503 \
                         until they are fetched"
                    );
                }
                tokio::time::sleep(wait).await;
                let Some(store) = store.upgrade() else {
                    break;
                };
                // A failure is logged by `fetch_now` and changes nothing.
                if store.fetch_now().await.is_err() && !held {
                    retry = (retry * 2).min(LAST_RETRY);
                } else {
                    retry = FIRST_RETRY;
                }
            }
        })
    }
}
