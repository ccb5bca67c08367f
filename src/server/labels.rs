//! What the log and the metrics both name: the endpoint a request came to and what became of
//! it. Kept apart from both so that neither imports the other for them.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::reason::Reason;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum EndpointLabel {
    /// `POST /api/b2c/user-flow`.
    UserFlow,
    /// `POST /api/b2c/custom-policy`.
    CustomPolicy,
    /// `POST /api/entra/attribute-collection-submit`.
    Entra,
}

impl EndpointLabel {
    /// Every endpoint.
    pub const ALL: [Self; 3] = [Self::UserFlow, Self::CustomPolicy, Self::Entra];

    /// The label value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::UserFlow => "b2c-user-flow",
            Self::CustomPolicy => "b2c-custom-policy",
            Self::Entra => "entra",
        }
    }
}

impl EncodeLabelValue for EndpointLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

/// What became of one endpoint request: the sign-up's decision, or what stopped the request
/// before one was asked for.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// The code admits the address.
    Valid,
    /// The sign-up is refused (a request that could not be read is [`Reason::BadRequest`]).
    Refused(Reason),
    /// The caller did not authenticate.
    Unauthorized,
    /// Not a `POST`.
    MethodNotAllowed,
    /// The body is over the size limit.
    TooLarge,
    /// The body was not sent in time.
    Timeout,
}

impl Outcome {
    /// Every outcome: valid, each refusal reason, then what stops a request before a decision.
    pub fn all() -> impl Iterator<Item = Self> {
        std::iter::once(Self::Valid)
            .chain(Reason::ALL.into_iter().map(Self::Refused))
            .chain([
                Self::Unauthorized,
                Self::MethodNotAllowed,
                Self::TooLarge,
                Self::Timeout,
            ])
    }

    /// The label value: `valid`, a reason's name, or `unauthorized`, `method-not-allowed`,
    /// `too-large`, `timeout`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Refused(reason) => reason.name(),
            Self::Unauthorized => "unauthorized",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::TooLarge => "too-large",
            Self::Timeout => "timeout",
        }
    }
}

impl From<Option<Reason>> for Outcome {
    /// The outcome of a decision: refused for its reason, else valid.
    fn from(refusal: Option<Reason>) -> Self {
        refusal.map_or(Self::Valid, Self::Refused)
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_distinct() {
        let names: Vec<_> = Outcome::all().map(Outcome::name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 14);
    }
}
