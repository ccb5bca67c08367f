//! Prometheus metrics: requests by outcome and a latency histogram, through `prometheus-client`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Every outcome a connector request can have: the spec's six, then the connector's own.
pub const OUTCOMES: [&str; 14] = [
    "valid",
    "malformed",
    "mistyped",
    "not-valid",
    "revoked",
    "expired",
    "missing-code",
    "no-email",
    "wrong-step",
    "bad-request",
    "unauthorized",
    "method-not-allowed",
    "too-large",
    "timeout",
];

/// The server's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    /// The counter of each of [`OUTCOMES`], made at start: a request then counts without the
    /// family's lock and hashing, and every outcome is exported from the start, at zero.
    counters: Vec<(&'static str, Counter)>,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the metrics.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("invitegate");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "connector_requests",
            "Connector requests by outcome (valid, mistyped, not-valid, unauthorized, ...)",
            requests.clone(),
        );
        // 50 µs to about 3.3 s: verification is microseconds, B2C gives up at 5 s.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 17));
        registry.register(
            "connector_request_duration_seconds",
            "Time from the request's arrival at the handler to its answer",
            latency.clone(),
        );
        let counters = OUTCOMES
            .iter()
            .map(|&outcome| {
                let counter = requests.get_or_create(&OutcomeLabels { outcome }).clone();
                (outcome, counter)
            })
            .collect();
        Self {
            registry,
            requests,
            counters,
            latency,
        }
    }

    /// Counts one connector request.
    pub fn record(&self, outcome: &'static str, seconds: f64) {
        match self.counters.iter().find(|(name, _)| *name == outcome) {
            Some((_, counter)) => counter.inc(),
            None => self
                .requests
                .get_or_create(&OutcomeLabels { outcome })
                .inc(),
        };
        self.latency.observe(seconds);
    }

    /// The text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_exported_from_the_start_and_counted() {
        let metrics = Metrics::new();
        metrics.record("expired", 0.001);
        metrics.record("expired", 0.001);
        metrics.record("something-new", 0.001);
        let text = metrics.render();
        for outcome in OUTCOMES {
            let count = if outcome == "expired" { 2 } else { 0 };
            let line =
                format!("invitegate_connector_requests_total{{outcome=\"{outcome}\"}} {count}");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains(r#"invitegate_connector_requests_total{outcome="something-new"} 1"#));
        assert!(text.contains("invitegate_connector_request_duration_seconds_count 3"));
    }
}
