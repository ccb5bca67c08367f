//! Why a sign-up is refused: one enum whose stable name is the answer's error code, the log's
//! and the metrics' outcome, and the key of the message the person reads.

use serde::Deserialize;

/// Why a sign-up is refused. Each reason has one stable name and one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Reason {
    /// No code was entered.
    MissingCode,
    /// The text is not an invitation code.
    Malformed,
    /// The check symbol is wrong: a typo.
    Mistyped,
    /// Not valid for this address (also: unknown key id, or an address that cannot be
    /// normalized; the spec gives no hint which).
    NotValid,
    /// Authentic but withdrawn.
    Revoked,
    /// Authentic but expired; the message shows the expiry (`{expiry}`, YYYY-MM-DD, UTC).
    Expired,
    /// The request could not be read.
    BadRequest,
    /// There is no email address to check the code against.
    NoEmail,
    /// The connector was called at a step or for an event where it cannot ask for a correction.
    WrongStep,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Self; 9] = [
        Self::MissingCode,
        Self::Malformed,
        Self::Mistyped,
        Self::NotValid,
        Self::Revoked,
        Self::Expired,
        Self::BadRequest,
        Self::NoEmail,
        Self::WrongStep,
    ];

    /// The stable name, for logs, metrics and error codes: the spec's outcome names
    /// (`not-valid`, `expired`, ...) and the connectors' own (`missing-code`, `no-email`, ...).
    /// A messages file names the same reasons in snake case (`not_valid`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::MissingCode => "missing-code",
            Self::Malformed => "malformed",
            Self::Mistyped => "mistyped",
            Self::NotValid => "not-valid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::BadRequest => "bad-request",
            Self::NoEmail => "no-email",
            Self::WrongStep => "wrong-step",
        }
    }

    /// Whether the person cannot put it right on the sign-up page: the flow should end with a
    /// block page rather than ask for a correction.
    #[must_use]
    pub fn blocks(self) -> bool {
        matches!(self, Self::NoEmail | Self::WrongStep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case_and_messages_files_use_snake_case() {
        for reason in Reason::ALL {
            let snake = reason.name().replace('-', "_");
            let read: Reason = serde_json::from_value(serde_json::json!(snake)).unwrap();
            assert_eq!(read, reason);
        }
    }
}
