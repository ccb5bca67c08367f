//! Prometheus metrics: requests by endpoint and outcome, a latency histogram, and callers
//! refused by endpoint and reason, through `prometheus-client`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::connection::ConnectionStats;
pub use super::labels::EndpointLabel;
use super::labels::{Outcome, RefusalReason, RefusedAt};
use super::log::DroppedLines;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: EndpointLabel,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    endpoint: RefusedAt,
    reason: &'static str,
}

/// The server's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The counter of each endpoint and each [`Outcome`], made at start: a request then
    /// counts without the family's lock and hashing, and every outcome is exported from the
    /// start, at zero.
    counters: Vec<(EndpointLabel, Outcome, Counter)>,
    latency: Histogram,
    /// Callers refused, by where and why: every one, whether its log line was written or only
    /// counted in a summary.
    refusals: Family<RefusalLabels, Counter>,
    /// Log lines dropped, read from the log writer at each scrape.
    log_dropped: Counter,
    dropped_source: DroppedLines,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(DroppedLines::default(), &ConnectionStats::default())
    }
}

impl Metrics {
    /// Registers the metrics; `dropped` counts the log lines the log writer dropped, and
    /// `connections` the connection limits hit.
    #[must_use]
    pub fn new(dropped: DroppedLines, connections: &ConnectionStats) -> Self {
        let mut registry = Registry::with_prefix("invitegate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "connector_requests",
            "Identity-provider requests by endpoint and outcome (valid, mistyped, not-valid, \
             unauthorized, ...)",
            requests.clone(),
        );
        // 50 µs to about 3.3 s: verification is microseconds, Entra gives up at 2 s at most.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 17));
        registry.register(
            "connector_request_duration_seconds",
            "Time from the request's arrival at the handler to its answer",
            latency.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "auth_refusals",
            "Callers refused by authentication, by endpoint (or metrics) and reason \
             (missing-header, wrong-scheme, unknown-user, wrong-password, wrong-key, ...)",
            refusals.clone(),
        );
        connections.register(&mut registry);
        let log_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log queue was full (stderr too slow)",
            log_dropped.clone(),
        );
        let counters = EndpointLabel::ALL
            .iter()
            .flat_map(|&endpoint| Outcome::all().map(move |outcome| (endpoint, outcome)))
            .map(|(endpoint, outcome)| {
                let counter = requests
                    .get_or_create(&RequestLabels { endpoint, outcome })
                    .clone();
                (endpoint, outcome, counter)
            })
            .collect();
        Self {
            registry,
            requests,
            counters,
            latency,
            refusals,
            log_dropped,
            dropped_source: dropped,
        }
    }

    /// Counts one endpoint request.
    pub fn record(&self, endpoint: EndpointLabel, outcome: Outcome, seconds: f64) {
        let made = self
            .counters
            .iter()
            .find(|(e, o, _)| *e == endpoint && *o == outcome);
        match made {
            Some((_, _, counter)) => counter.inc(),
            None => self
                .requests
                .get_or_create(&RequestLabels { endpoint, outcome })
                .inc(),
        };
        self.latency.observe(seconds);
    }

    /// Counts one caller refused at `at` for `reason` (a [`Refusal`](super::labels::Refusal)
    /// or a bare reason name).
    pub fn refused(&self, at: RefusedAt, reason: &dyn RefusalReason) {
        self.refusals
            .get_or_create(&RefusalLabels {
                endpoint: at,
                reason: reason.reason(),
            })
            .inc();
    }

    /// The registry, to register more metrics at start.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let dropped = self.dropped_source.get();
        self.log_dropped
            .inc_by(dropped.saturating_sub(self.log_dropped.get()));
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
        let metrics = Metrics::default();
        let expired = Outcome::Refused(crate::reason::Reason::Expired);
        metrics.record(EndpointLabel::Entra, expired, 0.001);
        metrics.record(EndpointLabel::Entra, expired, 0.001);
        metrics.record(EndpointLabel::UserFlow, Outcome::Timeout, 0.001);
        let text = metrics.render();
        for endpoint in EndpointLabel::ALL {
            for outcome in Outcome::all() {
                let count = if outcome == expired && endpoint == EndpointLabel::Entra {
                    2
                } else if outcome == Outcome::Timeout && endpoint == EndpointLabel::UserFlow {
                    1
                } else {
                    0
                };
                let line = format!(
                    "invitegate_connector_requests_total{{endpoint=\"{}\",outcome=\"{}\"}} \
                     {count}",
                    endpoint.name(),
                    outcome.name()
                );
                assert!(text.contains(&line), "{line} in\n{text}");
            }
        }
        assert!(text.contains("invitegate_connector_request_duration_seconds_count 3"));
    }

    #[test]
    fn refusals_are_counted_by_endpoint_and_reason() {
        let metrics = Metrics::default();
        let refusal = super::super::auth::basic::WRONG_PASSWORD;
        metrics.refused(EndpointLabel::UserFlow.into(), &refusal);
        metrics.refused(EndpointLabel::UserFlow.into(), &refusal);
        metrics.refused(RefusedAt::Metrics, &"missing-header");
        let text = metrics.render();
        for line in [
            r#"invitegate_auth_refusals_total{endpoint="b2c-user-flow",reason="wrong-password"} 2"#,
            r#"invitegate_auth_refusals_total{endpoint="metrics",reason="missing-header"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
