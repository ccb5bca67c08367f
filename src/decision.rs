//! The contract-neutral decision every connector asks for: given what the identity provider sent
//! (an email address, the code as typed), continue the sign-up or refuse it with a reason.
//!
//! A connector reads its own request shape, calls [`decide`], and renders the [`Decision`] in
//! its own dialect: the reason names the message the person reads ([`Reason::message`]) and,
//! for an expired code, carries the authentic expiry that the message shows.

use std::borrow::Cow;

use crate::code::{Code, Expiry, UnixTime};
use crate::keys::KeyRing;
use crate::messages::{MessageKey, Messages};
use crate::verify::{Grant, Outcome, VerifyOptions, verify_code};

/// Everything verification needs, prepared once and swapped whole when the key ring, deny list
/// or messages are reloaded: a request sees one consistent set.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The keys that verify codes.
    pub ring: KeyRing,
    /// Leeway and deny list.
    pub options: VerifyOptions,
    /// What people read.
    pub messages: Messages,
}

impl Verifier {
    /// A verifier with the default leeway, no deny list and the built-in English messages.
    #[must_use]
    pub fn new(ring: KeyRing) -> Self {
        Self {
            ring,
            options: VerifyOptions::default(),
            messages: Messages::english(),
        }
    }
}

/// Why a sign-up is refused. Each reason has one message and one stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Authentic but expired, at this instant.
    Expired(Expiry),
    /// The request could not be read.
    BadRequest,
    /// There is no email address to check the code against.
    NoEmail,
    /// The connector was called at a step or for an event where it cannot ask for a correction.
    WrongStep,
}

impl Reason {
    /// The stable name, for logs, metrics and error codes: the spec's outcome names
    /// (`not-valid`, `expired`, ...) and the connectors' own (`missing-code`, `no-email`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::MissingCode => "missing-code",
            Self::Malformed => "malformed",
            Self::Mistyped => "mistyped",
            Self::NotValid => "not-valid",
            Self::Revoked => "revoked",
            Self::Expired(_) => "expired",
            Self::BadRequest => "bad-request",
            Self::NoEmail => "no-email",
            Self::WrongStep => "wrong-step",
        }
    }

    /// The key of the message the person reads.
    #[must_use]
    pub fn message_key(self) -> MessageKey {
        match self {
            Self::MissingCode => MessageKey::MissingCode,
            Self::Malformed => MessageKey::Malformed,
            Self::Mistyped => MessageKey::Mistyped,
            Self::NotValid => MessageKey::NotValid,
            Self::Revoked => MessageKey::Revoked,
            Self::Expired(_) => MessageKey::Expired,
            Self::BadRequest => MessageKey::BadRequest,
            Self::NoEmail => MessageKey::NoEmail,
            Self::WrongStep => MessageKey::WrongStep,
        }
    }

    /// Whether the person cannot put it right on the sign-up page: the flow should end with a
    /// block page rather than ask for a correction.
    #[must_use]
    pub fn blocks(self) -> bool {
        matches!(self, Self::NoEmail | Self::WrongStep)
    }

    /// The message in the best locale of `locales` (`fr-FR,fr`), with `{expiry}` replaced by
    /// the expiry date (YYYY-MM-DD, UTC) for an expired code.
    #[must_use]
    pub fn message<'m>(self, messages: &'m Messages, locales: Option<&str>) -> Cow<'m, str> {
        let text = messages.get(self.message_key(), locales);
        match self {
            Self::Expired(expiry) => {
                Cow::Owned(text.replace("{expiry}", &expiry.to_datetime().date().to_string()))
            }
            _ => Cow::Borrowed(text),
        }
    }
}

/// What to answer: continue with the authentic grant, or refuse for a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The code admits the address now.
    Continue(Grant<'a>),
    /// Refused.
    Refuse(Reason),
}

/// A verdict and the code it was about, when the text was one (for the log's fingerprint and
/// key id; never the whole code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Continue or refuse.
    pub verdict: Verdict<'a>,
    /// The parsed code, when the text parsed.
    pub code: Option<Code>,
}

impl<'a> Decision<'a> {
    /// A refusal with no code, for requests refused before verification.
    #[must_use]
    pub fn refuse(reason: Reason) -> Self {
        Self {
            verdict: Verdict::Refuse(reason),
            code: None,
        }
    }

    /// `valid`, or the reason's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self.verdict {
            Verdict::Continue(_) => "valid",
            Verdict::Refuse(reason) => reason.name(),
        }
    }
}

/// Decides a sign-up: an address to check (`None` or blank: [`Reason::NoEmail`]) and the code
/// as typed (`None` or blank: [`Reason::MissingCode`]), at instant `now`.
///
/// The checks after these two are the spec's, in its order (section 5).
#[must_use]
pub fn decide<'a>(
    verifier: &Verifier,
    email: Option<&'a str>,
    code: Option<&str>,
    now: impl Into<UnixTime>,
) -> Decision<'a> {
    let Some(email) = email.filter(|email| !email.trim().is_empty()) else {
        return Decision::refuse(Reason::NoEmail);
    };
    let Some(typed) = code.filter(|code| !code.trim().is_empty()) else {
        return Decision::refuse(Reason::MissingCode);
    };
    let code = match Code::parse(typed) {
        Ok(code) => code,
        Err(err) => return Decision::refuse(from_outcome(Outcome::unreadable(&err)).1),
    };
    let outcome = verify_code(&verifier.ring, &code, email, now.into(), &verifier.options);
    let (grant, reason) = from_outcome(outcome);
    Decision {
        verdict: grant.map_or(Verdict::Refuse(reason), Verdict::Continue),
        code: Some(code),
    }
}

/// The grant of a valid outcome, or the reason of any other.
fn from_outcome(outcome: Outcome<'_>) -> (Option<Grant<'_>>, Reason) {
    match outcome {
        Outcome::Valid(grant) => (Some(grant), Reason::NotValid),
        Outcome::Expired(grant) => (None, Reason::Expired(grant.expiry)),
        Outcome::Revoked(_) => (None, Reason::Revoked),
        Outcome::NotValid => (None, Reason::NotValid),
        Outcome::Mistyped => (None, Reason::Mistyped),
        Outcome::Malformed => (None, Reason::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::Audience;
    use crate::verify::{DenyList, mint};
    use time::macros::datetime;

    const KEYS: &str = "7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn verifier() -> Verifier {
        Verifier::new(KeyRing::parse(KEYS).unwrap())
    }

    fn code(audience: &str, expiry: time::OffsetDateTime) -> String {
        mint(
            &verifier().ring,
            &Audience::email(audience).unwrap(),
            Expiry::from_datetime(expiry).unwrap(),
        )
        .to_string()
    }

    #[test]
    fn every_reason_in_order() {
        let now = datetime!(2026-06-01 0:00 UTC);
        let good = code("alice@contoso.com", datetime!(2027-01-01 0:00 UTC));
        let old = code("alice@contoso.com", datetime!(2026-01-01 0:00 UTC));
        let mut revoking = verifier();
        let mut deny = DenyList::new();
        deny.insert(&Code::parse(&good).unwrap());
        revoking.options.deny_list = deny;
        let v = verifier();
        let alice = Some("Alice@Contoso.com");
        let cases: [(&Verifier, Option<&str>, Option<&str>, &str); 9] = [
            (&v, None, Some(&good), "no-email"),
            (&v, Some("  "), Some(&good), "no-email"),
            (&v, alice, None, "missing-code"),
            (&v, alice, Some(" "), "missing-code"),
            (&v, alice, Some("hello"), "malformed"),
            (&v, alice, Some(&good[..good.len() - 1]), "malformed"),
            (&v, Some("bob@contoso.com"), Some(&good), "not-valid"),
            (&v, alice, Some(&old), "expired"),
            (&revoking, alice, Some(&good), "revoked"),
        ];
        for (verifier, email, typed, name) in cases {
            let decision = decide(verifier, email, typed, now);
            assert_eq!(decision.name(), name, "{email:?} {typed:?}");
            assert!(matches!(decision.verdict, Verdict::Refuse(_)));
        }
        let valid = decide(&v, alice, Some(&good), now);
        assert_eq!(valid.name(), "valid");
        assert_eq!(valid.code, Some(Code::parse(&good).unwrap()));
        let Verdict::Continue(grant) = valid.verdict else {
            panic!("not valid")
        };
        assert_eq!(grant.audience.value(), "alice@contoso.com");
    }

    #[test]
    fn mistyped_and_the_expiry_date_in_the_message() {
        let now = datetime!(2026-06-01 0:00 UTC);
        let old = code("alice@contoso.com", datetime!(2026-01-01 0:00 UTC));
        let mut typo = old.clone().into_bytes();
        typo[0] = if typo[0] == b'2' { b'3' } else { b'2' };
        let typo = String::from_utf8(typo).unwrap();
        let v = verifier();
        assert_eq!(
            decide(&v, Some("alice@contoso.com"), Some(&typo), now).name(),
            "mistyped"
        );
        let Verdict::Refuse(reason) =
            decide(&v, Some("alice@contoso.com"), Some(&old), now).verdict
        else {
            panic!("valid")
        };
        let text = reason.message(&v.messages, None);
        assert!(text.contains("2026-01-01"), "{text}");
        assert!(!text.contains("{expiry}"));
        assert!(!reason.blocks());
        assert!(Reason::NoEmail.blocks() && Reason::WrongStep.blocks());
    }
}
