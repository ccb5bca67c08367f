//! Accepted bearer tokens, remembered by the SHA-256 of their text until they expire: Entra
//! sends one token for its whole lifetime, so a repeated token costs one digest and one map
//! lookup instead of a signature check. The token text itself is never kept.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// What is remembered of an accepted token: its time window and its key, never its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachedToken {
    /// `nbf` in Unix seconds, `i64::MIN` without one.
    pub(crate) not_before: i64,
    /// `exp` in Unix seconds.
    pub(crate) expires: i64,
    /// Fingerprint of the key that verified it.
    pub(crate) key: [u8; 32],
}

/// Accepted tokens by the SHA-256 of their text, bounded.
pub(crate) struct TokenCache {
    capacity: usize,
    entries: RwLock<HashMap<[u8; 32], CachedToken>>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<CachedToken> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .copied()
    }

    /// Remembers a token if `still_current` holds under the cache lock: a key-set install that
    /// raced with this check must not leave behind a token of a key it removed. When full,
    /// expired entries go first, then any.
    pub(crate) fn insert(
        &self,
        digest: [u8; 32],
        entry: CachedToken,
        now: i64,
        leeway: i64,
        still_current: impl FnOnce() -> bool,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if !still_current() {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, cached| now < cached.expires.saturating_add(leeway));
            while entries.len() >= self.capacity {
                let Some(any) = entries.keys().next().copied() else {
                    break;
                };
                entries.remove(&any);
            }
        }
        entries.insert(digest, entry);
    }

    pub(crate) fn retain(&self, keep: impl Fn(&CachedToken) -> bool) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, entry| keep(entry));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_evicts_expired_first() {
        let cache = TokenCache::new(3);
        let entry = |expires| CachedToken {
            not_before: i64::MIN,
            expires,
            key: [0; 32],
        };
        cache.insert([1; 32], entry(10), 0, 0, || true);
        cache.insert([2; 32], entry(1000), 0, 0, || true);
        cache.insert([3; 32], entry(1000), 0, 0, || true);
        // Full: at now = 500 the first entry is expired and goes first.
        cache.insert([4; 32], entry(1000), 500, 0, || true);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[4; 32]).is_some());
        // Full of live entries: one of them goes.
        cache.insert([5; 32], entry(1000), 500, 0, || true);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&[5; 32]).is_some());
        // A raced key-set install: nothing is remembered.
        cache.insert([6; 32], entry(1000), 500, 0, || false);
        assert!(cache.get(&[6; 32]).is_none());
    }
}
