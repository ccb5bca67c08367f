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

/// The server's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
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
        Self {
            registry,
            requests,
            latency,
        }
    }

    /// Counts one connector request.
    pub fn record(&self, outcome: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
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
