//! Pacing: at most so many messages a second or a minute, evenly spread, as providers count.

use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// A rate limit such as `10/s` or `600/min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/sec`, `N/min`, `N/h`; `off` for no limit (`None`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text is not a rate.
    pub fn parse(text: &str) -> Result<Option<Self>, Error> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let bad = || Error::Config {
            reason: format!("--rate {text:?}: give a rate such as 10/s, 600/min or 3000/h, or off"),
        };
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Some(Self { count, per }))
    }

    /// The time between two messages.
    #[must_use]
    pub fn interval(self) -> Duration {
        self.per / self.count
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per.as_secs() {
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            _ => write!(f, "{}/s", self.count),
        }
    }
}

/// Hands out send slots no closer than the rate's interval. Without a rate, every slot is now.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate` (`None`: no limit).
    #[must_use]
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            interval: rate.map(Rate::interval),
            next: None,
        }
    }

    /// Waits for the next slot. Cancel-safe: a slot is taken only when the wait completes.
    pub async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        if let Some(next) = self.next {
            tokio::time::sleep_until(next).await;
        }
        let now = Instant::now();
        // A slot missed while idle is not saved up: no burst after a pause.
        let base = self.next.map_or(now, |next| next.max(now));
        self.next = Some(base + interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let rate = Rate::parse("10/s").unwrap().unwrap();
        assert_eq!(rate.interval(), Duration::from_millis(100));
        let rate = Rate::parse(" 600/min ").unwrap().unwrap();
        assert_eq!(rate.interval(), Duration::from_millis(100));
        assert_eq!(rate.to_string(), "600/min");
        assert_eq!(Rate::parse("off").unwrap(), None);
        for bad in ["10", "0/s", "ten/s", "10/day", "-1/s"] {
            let err = Rate::parse(bad).unwrap_err().to_string();
            assert!(err.contains("such as 10/s"), "{bad}: {err}");
        }
    }

    /// With time paused, the clock moves only when every task waits: each slot is taken at
    /// exactly the instant the pacer allows, whatever the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn slots_are_spread_evenly() {
        let mut pacer = Pacer::new(Rate::parse("100/s").unwrap());
        let start = Instant::now();
        for slot in 0..11 {
            pacer.wait().await;
            assert_eq!(
                start.elapsed(),
                Duration::from_millis(10) * slot,
                "slot {slot}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_saves_no_slots_up() {
        let mut pacer = Pacer::new(Rate::parse("10/s").unwrap());
        pacer.wait().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Ten slots went by unused: the next is now, the one after a whole interval later.
        let resumed = Instant::now();
        pacer.wait().await;
        assert_eq!(resumed.elapsed(), Duration::ZERO);
        pacer.wait().await;
        assert_eq!(resumed.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_every_slot_is_now() {
        let mut pacer = Pacer::new(None);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
