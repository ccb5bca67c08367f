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
    /// RFC 3339 in UTC, e.g. `2030-01-01T00:00:00Z`, as `time` writes it; computed from the
    /// seconds directly, since Entra's answer to every valid code carries one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = date_time(u64::from(self.0));
        // ASCII digits and separators only.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
        f.write_str("Z")
    }
}

/// `seconds` since the Unix epoch as RFC 3339 UTC up to the seconds, without the zone, e.g.
/// `2026-12-01T21:17:29`: for the years 1970 to 9999 (a later year is written modulo 10,000).
pub(crate) fn date_time(seconds: u64) -> [u8; 19] {
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let of_day = seconds % 86_400;
    let mut text = *b"0000-00-00T00:00:00";
    for (at, value, width) in [
        (0, year, 4),
        (5, month, 2),
        (8, day, 2),
        (11, of_day / 3600, 2),
        (14, of_day / 60 % 60, 2),
        (17, of_day % 60, 2),
    ] {
        let mut rest = value;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    text
}

/// The proleptic Gregorian date (year, month, day) of `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days that are not negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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
    fn display_is_rfc3339_as_time_writes_it() {
        let through_time = |seconds: u32| {
            Expiry::from_unix(seconds)
                .to_datetime()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        // Epoch, leap days, century rules (2100 is not a leap year), the last second.
        let mut seconds = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,   // 2000-02-29
            951_868_800,   // 2000-03-01
            1_709_164_800, // 2024-02-29
            4_107_456_000, // 2100-02-28
            4_107_542_400, // 2100-03-01
            u32::MAX,
        ];
        // And a spread across the whole range, a few hours and seconds off each day.
        let mut next = 0x9E37_79B9_u32;
        for _ in 0..20_000 {
            next = next.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seconds.push(next);
        }
        for s in seconds {
            assert_eq!(Expiry::from_unix(s).to_string(), through_time(s), "{s}");
        }
    }

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
