//! The contract-neutral decision every connector asks for: given what the identity provider sent
//! (an email address, the code as typed), continue the sign-up or refuse it with a reason.
//!
//! A connector reads its own request shape, calls [`decide`], and renders the [`Decision`] in
//! its own dialect: the [`Reason`] of a refusal names the message the person reads
//! ([`Decision::message`]), which for an expired code shows the code's authentic expiry.

use std::borrow::Cow;

use crate::code::Code;
use crate::expiry::UnixTime;
use crate::keys::KeyRing;
use crate::messages::Messages;
pub use crate::reason::Reason;
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

    /// Why it is refused; `None` when the sign-up continues.
    #[must_use]
    pub fn refusal(&self) -> Option<Reason> {
        match self.verdict {
            Verdict::Continue(_) => None,
            Verdict::Refuse(reason) => Some(reason),
        }
    }

    /// `valid`, or the reason's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.refusal().map_or("valid", Reason::name)
    }

    /// What the person reads about a refusal, in the best locale of `locales` (`fr-FR,fr`);
    /// an expired code's message shows its expiry date (YYYY-MM-DD, UTC), authentic since the
    /// code was verified to be expired. `None` when the sign-up continues.
    #[must_use]
    pub fn message<'m>(
        &self,
        messages: &'m Messages,
        locales: Option<&str>,
    ) -> Option<Cow<'m, str>> {
        let reason = self.refusal()?;
        // Only an expired code's expiry is known authentic: it was verified.
        let expiry = (reason == Reason::Expired)
            .then(|| self.code.as_ref().map(Code::expiry))
            .flatten();
        Some(messages.refusal(reason, expiry, locales))
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
        Outcome::Expired(_) => (None, Reason::Expired),
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
    use crate::expiry::Expiry;
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
        let expired = decide(&v, Some("alice@contoso.com"), Some(&old), now);
        let Verdict::Refuse(reason) = expired.verdict else {
            panic!("valid")
        };
        let text = expired.message(&v.messages, None).unwrap();
        assert!(text.contains("2026-01-01"), "{text}");
        assert!(!text.contains("{expiry}"));
        assert!(!reason.blocks());
        assert!(Reason::NoEmail.blocks() && Reason::WrongStep.blocks());
    }
}
