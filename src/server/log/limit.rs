//! How many refusals are logged one by one: per place and reason, the first
//! [`REFUSALS_IN_FULL`] of each [`REFUSAL_WINDOW`] in full, then only counted, and the count
//! written as one summary line when the window ends. A client that is refused a million
//! times a second then writes a few lines a second, not a million; the metrics still count
//! every refusal.
//!
//! Time is passed in, so the rules are tested without waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::server::labels::RefusedAt;

/// Refusals of one place and reason logged in full in each window. Five show the pattern (the
/// user names tried, the scheme sent) without letting a flood through.
pub const REFUSALS_IN_FULL: u32 = 5;

/// The window the limit counts in, and so the longest a summary waits.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(1);

/// What a refusal is limited by: where, and why. The reasons are the code's own static names
/// and the places a handful, so the table stays small without a bound of its own.
pub(crate) type Key = (RefusedAt, &'static str);

/// Refusals of one key that were counted, not logged, in a window that has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Where and why.
    pub(crate) key: Key,
    /// How many were not logged in full.
    pub(crate) more: u64,
}

/// One key's current window.
#[derive(Debug)]
struct Window {
    key: Key,
    started: Instant,
    seen: u32,
    more: u64,
}

/// The per-key windows.
#[derive(Debug)]
pub(crate) struct Limiter {
    windows: Mutex<Vec<Window>>,
}

impl Limiter {
    /// No refusals seen yet.
    pub(crate) const fn new() -> Self {
        Self {
            windows: Mutex::new(Vec::new()),
        }
    }

    /// Counts a refusal at `now`: whether to log it in full, and the summaries of every window
    /// that has ended with refusals only counted (written before the refusal's own line).
    pub(crate) fn admit(&self, key: Key, now: Instant) -> (bool, Vec<Summary>) {
        let mut windows = self.lock();
        let ended = take_ended(&mut windows, now);
        let in_full = match windows.iter_mut().find(|window| window.key == key) {
            Some(window) => {
                window.seen = window.seen.saturating_add(1);
                let in_full = window.seen <= REFUSALS_IN_FULL;
                if !in_full {
                    window.more += 1;
                }
                in_full
            }
            None => {
                windows.push(Window {
                    key,
                    started: now,
                    seen: 1,
                    more: 0,
                });
                true
            }
        };
        (in_full, ended)
    }

    /// The summaries of the windows that have ended by `now`, which are forgotten: for the
    /// log thread to write when refusals stop.
    pub(crate) fn ended(&self, now: Instant) -> Vec<Summary> {
        take_ended(&mut self.lock(), now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Window>> {
        // The windows are counts: after a panic elsewhere they are still usable.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes the windows that have ended, returning the summaries of those with refusals only
/// counted.
fn take_ended(windows: &mut Vec<Window>, now: Instant) -> Vec<Summary> {
    let mut summaries = Vec::new();
    windows.retain(|window| {
        let open = now.saturating_duration_since(window.started) < REFUSAL_WINDOW;
        if !open && window.more > 0 {
            summaries.push(Summary {
                key: window.key,
                more: window.more,
            });
        }
        open
    });
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::labels::EndpointLabel;

    const FLOW: RefusedAt = RefusedAt::Endpoint(EndpointLabel::UserFlow);

    #[test]
    fn the_first_of_each_window_in_full_then_one_summary() {
        let limiter = Limiter::new();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let password = (FLOW, "wrong-password");
        let user = (FLOW, "unknown-user");
        let mut in_full = 0;
        for i in 0..100 {
            let (full, ended) = limiter.admit(password, at(i * 5));
            assert!(ended.is_empty());
            in_full += u32::from(full);
        }
        assert_eq!(in_full, REFUSALS_IN_FULL);
        // Another reason has a window of its own.
        assert!(limiter.admit(user, at(600)).0);
        assert!(limiter.ended(at(999)).is_empty());
        // The password window ends at 1000 ms; the user window at 1600 ms, with nothing only
        // counted, so without a summary.
        assert_eq!(
            limiter.ended(at(1000)),
            vec![Summary {
                key: password,
                more: 95
            }]
        );
        assert!(limiter.ended(at(2000)).is_empty());
        // A new window starts in full again.
        assert!(limiter.admit(password, at(2000)).0);
    }

    #[test]
    fn a_refusal_after_a_window_brings_its_summary() {
        let limiter = Limiter::new();
        let start = Instant::now();
        let key = (RefusedAt::Metrics, "missing-header");
        for _ in 0..REFUSALS_IN_FULL + 3 {
            limiter.admit(key, start);
        }
        let (full, ended) = limiter.admit(key, start + REFUSAL_WINDOW);
        assert!(full);
        assert_eq!(ended, vec![Summary { key, more: 3 }]);
    }
}
