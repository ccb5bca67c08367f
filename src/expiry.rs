//! Time as a code holds it: its expiry in whole seconds, and the instant verification compares
//! it with.

use std::fmt;

use time::OffsetDateTime;

use crate::error::Error;

/// The instant after which a code no longer admits anyone: whole seconds since the Unix epoch,
/// as the code's four-byte field holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(u32);

impl Expiry {
    /// The expiry at `seconds` since 1970-01-01T00:00:00Z.
    #[must_use]
    pub const fn from_unix(seconds: u32) -> Self {
        Self(seconds)
    }

    /// The expiry at a date and time, truncated to whole seconds.
    ///
    /// # Errors
    ///
    /// [`Error::ExpiryOutOfRange`] before 1970 or after 2106-02-07T06:28:15Z.
    pub fn from_datetime(at: OffsetDateTime) -> Result<Self, Error> {
        u32::try_from(at.unix_timestamp())
            .map(Self)
            .map_err(|_| Error::ExpiryOutOfRange)
    }

    /// This expiry, if it falls in a later second than `now`: what minting a code at `now`
    /// requires.
    ///
    /// # Errors
    ///
    /// [`Error::ExpiryNotInFuture`] when a code with it would be expired as soon as minted.
    pub fn after(self, now: OffsetDateTime) -> Result<Self, Error> {
        if i64::from(self.0) <= now.unix_timestamp() {
            return Err(Error::ExpiryNotInFuture {
                expiry: self.to_string(),
            });
        }
        Ok(self)
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn unix(self) -> u32 {
        self.0
    }

    /// The expiry as a UTC date and time.
    #[must_use]
    pub fn to_datetime(self) -> OffsetDateTime {
        // Every u32 second count is a valid OffsetDateTime (the type reaches year 9999).
        OffsetDateTime::from_unix_timestamp(i64::from(self.0)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Expiry {
    /// RFC 3339 in UTC, e.g. `2030-01-01T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// An instant as whole seconds since the Unix epoch: the form verification compares expiries
/// in.
///
/// Verification takes `impl Into<UnixTime>`, so callers pass an [`OffsetDateTime`] or a
/// [`std::time::SystemTime`] as they have it. A server that reads the clock for every request
/// can pass `SystemTime::now()` and skip the calendar conversions of `OffsetDateTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(i64);

impl UnixTime {
    /// The instant `seconds` after 1970-01-01T00:00:00Z (before it when negative).
    #[must_use]
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn unix(self) -> i64 {
        self.0
    }
}

impl From<OffsetDateTime> for UnixTime {
    fn from(at: OffsetDateTime) -> Self {
        Self(at.unix_timestamp())
    }
}

impl From<std::time::SystemTime> for UnixTime {
    /// Truncated to the whole second at or before the instant, as `OffsetDateTime` does.
    fn from(at: std::time::SystemTime) -> Self {
        let seconds = match at.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => {
                let before = before.duration();
                let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                // -0.5 s is in the second that starts at -1.
                whole
                    .saturating_add(i64::from(before.subsec_nanos() > 0))
                    .saturating_neg()
            }
        };
        Self(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_agrees_with_offset_date_time() {
        use std::time::{Duration, UNIX_EPOCH};
        for (system, seconds) in [
            (
                UNIX_EPOCH + Duration::new(1_790_000_000, 999_999_999),
                1_790_000_000,
            ),
            (UNIX_EPOCH, 0),
            (UNIX_EPOCH - Duration::from_millis(500), -1),
            (UNIX_EPOCH - Duration::from_secs(2), -2),
        ] {
            assert_eq!(UnixTime::from(system).unix(), seconds, "{system:?}");
            assert_eq!(
                UnixTime::from(OffsetDateTime::from(system)),
                UnixTime::from(system),
                "{system:?}"
            );
        }
    }
}
