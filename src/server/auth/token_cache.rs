//! Accepted bearer tokens, remembered until they expire: Entra sends one token for its whole
//! lifetime, so a repeated token costs one keyed 64-bit hash, one map lookup and one comparison
//! instead of a signature check.
//!
//! The map is keyed by SipHash-1-3, under a key drawn at random for each cache (the standard
//! library's `RandomState`), of the token's length and its last [`INDEXED_BYTES`] bytes: the
//! signature's end, which differs from token to token. Hashing the whole 1.2 KiB text made a
//! cached check cost 370-400 ns in all, against 0.9-1.2 µs for the SHA-256 digest alone that
//! keyed it before (`cargo bench --bench entra_auth`). A hit is only a hit if the text is the
//! accepted token's, byte for byte, so two tokens that share an index (a 64-bit collision,
//! which no caller can aim for without the key, or a forged token ending as an accepted one
//! does) only cost the newcomer a full check. The accepted token's text is kept for that comparison, in memory only, and
//! zeroized when its entry goes; it is never logged.
//!
//! The comparison is not in constant time: it only runs for a token whose keyed hash matches an
//! accepted token's, which a caller without the key cannot arrange, so its timing tells a
//! caller nothing it could use.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{PoisonError, RwLock};

use zeroize::Zeroizing;

/// How many bytes at the end of a token its index is computed from: 48 characters of base64url
/// signature, 288 bits.
pub(crate) const INDEXED_BYTES: usize = 48;

/// What is remembered of an accepted token's checks: its time window and its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachedToken {
    /// `nbf` in Unix seconds, `i64::MIN` without one.
    pub(crate) not_before: i64,
    /// `exp` in Unix seconds.
    pub(crate) expires: i64,
    /// Fingerprint of the key that verified it.
    pub(crate) key: [u8; 32],
}

/// An accepted token: its text, to compare on a hit, and what its checks found.
struct Entry {
    token: Zeroizing<Box<[u8]>>,
    cached: CachedToken,
}

/// Accepted tokens by a keyed hash of their text, bounded.
pub(crate) struct TokenCache {
    capacity: usize,
    /// The hash's random key, this cache's own.
    hasher: RandomState,
    entries: RwLock<HashMap<u64, Entry>>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: RandomState::new(),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cache's index of `token`: a keyed hash of its length and its last
    /// [`INDEXED_BYTES`] bytes.
    pub(crate) fn index(&self, token: &[u8]) -> u64 {
        let tail = token.get(token.len().saturating_sub(INDEXED_BYTES)..);
        self.hasher.hash_one((token.len(), tail))
    }

    /// What the checks of `token` found, if it was accepted; `index` is [`Self::index`] of it.
    pub(crate) fn get(&self, index: u64, token: &[u8]) -> Option<CachedToken> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
            .filter(|entry| entry.token[..] == *token)
            .map(|entry| entry.cached)
    }

    /// Remembers an accepted token if `still_current` holds under the cache lock: a key-set
    /// install that raced with this check must not leave behind a token of a key it removed.
    /// When full, expired entries go first, then any. A token whose index another holds
    /// replaces it.
    pub(crate) fn insert(
        &self,
        (index, token): (u64, &[u8]),
        cached: CachedToken,
        now: i64,
        leeway: i64,
        still_current: impl FnOnce() -> bool,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if !still_current() {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&index) {
            entries.retain(|_, entry| now < entry.cached.expires.saturating_add(leeway));
            while entries.len() >= self.capacity {
                let Some(any) = entries.keys().next().copied() else {
                    break;
                };
                entries.remove(&any);
            }
        }
        let token = Zeroizing::new(Box::from(token));
        entries.insert(index, Entry { token, cached });
    }

    pub(crate) fn retain(&self, keep: impl Fn(&CachedToken) -> bool) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, entry| keep(&entry.cached));
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
        let tokens: Vec<Vec<u8>> = (0..7u8).map(|n| vec![n; 1200]).collect();
        let insert = |n: usize, expires, now, current| {
            let token = &tokens[n][..];
            cache.insert((cache.index(token), token), entry(expires), now, 0, || {
                current
            });
        };
        let held = |n: usize| cache.get(cache.index(&tokens[n]), &tokens[n]).is_some();
        insert(1, 10, 0, true);
        insert(2, 1000, 0, true);
        insert(3, 1000, 0, true);
        // Full: at now = 500 the first entry is expired and goes first.
        insert(4, 1000, 500, true);
        assert_eq!(cache.len(), 3);
        assert!(!held(1));
        assert!(held(4));
        // Full of live entries: one of them goes.
        insert(5, 1000, 500, true);
        assert_eq!(cache.len(), 3);
        assert!(held(5));
        // A raced key-set install: nothing is remembered.
        insert(6, 1000, 500, false);
        assert!(!held(6));
    }

    #[test]
    fn a_hit_needs_the_same_text() {
        let cache = TokenCache::new(3);
        let accepted = b"header.claims.signature".as_slice();
        let entry = CachedToken {
            not_before: i64::MIN,
            expires: 1000,
            key: [0; 32],
        };
        let index = cache.index(accepted);
        cache.insert((index, accepted), entry, 0, 0, || true);
        assert!(cache.get(index, accepted).is_some());
        // Another text under the same index, as a collision would give: a miss.
        assert!(cache.get(index, b"header.claims.signaturf").is_none());
        assert!(cache.get(index, b"header.claims.signature.").is_none());
        assert!(cache.get(index, b"").is_none());
        // A forged token that ends as an accepted one shares its index, and is still a miss.
        let signature = "s".repeat(INDEXED_BYTES);
        let real = format!("eyJhbGci.eyJhdWQi.{signature}");
        let forged = format!("eyJhbGci.eyJhdWQX.{signature}");
        let index = cache.index(real.as_bytes());
        assert_eq!(cache.index(forged.as_bytes()), index);
        assert_ne!(cache.index(format!("x{real}").as_bytes()), index);
        cache.insert((index, real.as_bytes()), entry, 0, 0, || true);
        assert!(cache.get(index, real.as_bytes()).is_some());
        assert!(cache.get(index, forged.as_bytes()).is_none());
    }
}
