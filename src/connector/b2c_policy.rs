//! Azure AD B2C custom policy, RESTful technical profile (`docs/CONNECTOR-CONTRACTS.md`
//! section 2).
//!
//! The policy sends its input claims as one flat JSON object whose keys the policy author
//! chooses; the claim names are settings. A valid code is HTTP 200 with output claims
//! (`invitationKind`, `invitationExpires`, `invitationKeyId`); any refusal is HTTP 409 with
//! `{"version":"1.0.0","status":409,"code":"invitegate.<outcome>","userMessage":"..."}`, which
//! B2C shows on the page. A body that is not a JSON object gets the same shape with 400.

use std::borrow::Cow;

use serde::Serialize;

use super::claim::{Claims, triage};
use super::{Answer, Connector};
use crate::decision::{Decision, Reason, Verdict, Verifier};
use crate::expiry::UnixTime;

/// Claim name of the email by default.
pub const DEFAULT_EMAIL_CLAIM: &str = "email";
/// Claim name of the code by default.
pub const DEFAULT_CODE_CLAIM: &str = "invitationCode";
/// Status of a refusal: B2C shows the message of any 4xx; 409 is what its documentation uses.
pub const REFUSAL_STATUS: u16 = 409;

/// The custom-policy endpoint: which claims hold the email and the code.
#[derive(Debug, Clone)]
pub struct CustomPolicy {
    /// Claim holding the email address (`PartnerClaimType` in the policy).
    pub email_claim: String,
    /// Claim holding the code as typed.
    pub code_claim: String,
}

impl Default for CustomPolicy {
    fn default() -> Self {
        Self {
            email_claim: DEFAULT_EMAIL_CLAIM.to_owned(),
            code_claim: DEFAULT_CODE_CLAIM.to_owned(),
        }
    }
}

/// The output claims of a valid code.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Valid<'a> {
    invitation_kind: &'a str,
    /// Written into the answer as it is serialized, with no string of its own.
    #[serde(serialize_with = "as_text")]
    invitation_expires: &'a crate::expiry::Expiry,
    invitation_key_id: u8,
}

/// A value written as its `Display` text.
fn as_text<S: serde::Serializer>(
    value: &&crate::expiry::Expiry,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A refusal, in the shape B2C reads.
#[derive(Serialize)]
struct Refusal<'a> {
    version: &'a str,
    status: u16,
    code: String,
    #[serde(rename = "userMessage")]
    user_message: &'a str,
}

impl Connector for CustomPolicy {
    fn answer<'b>(&self, verifier: &Verifier, body: &'b [u8], now: UnixTime) -> Answer<'b> {
        // Only the claims read below are kept (`named` matches case-insensitively too).
        let wanted = [
            "ui_locales",
            "locale",
            self.email_claim.as_str(),
            self.code_claim.as_str(),
        ];
        let Ok(claims) = Claims::parse_wanted(body, |name| {
            wanted.iter().any(|want| name.eq_ignore_ascii_case(want))
        }) else {
            return render(
                verifier,
                None,
                Decision::refuse(Reason::BadRequest),
                None,
                400,
            );
        };
        let locales = claims
            .named("ui_locales")
            .text()
            .or_else(|| claims.named("locale").text());
        let email = claims.named(&self.email_claim).text();
        let code = claims.named(&self.code_claim);
        let decision = triage(verifier, email.as_deref(), &code, now);
        render(
            verifier,
            locales.as_deref(),
            decision,
            email.clone(),
            REFUSAL_STATUS,
        )
    }
}

fn render<'b>(
    verifier: &Verifier,
    locales: Option<&str>,
    decision: Decision<'_>,
    email: Option<Cow<'b, str>>,
    refusal_status: u16,
) -> Answer<'b> {
    let (status, body) = match &decision.verdict {
        Verdict::Continue(grant) => {
            let valid = Valid {
                invitation_kind: grant.kind().name(),
                invitation_expires: &grant.expiry,
                invitation_key_id: grant.key_id,
            };
            (200, serde_json::to_vec(&valid))
        }
        Verdict::Refuse(reason) => {
            let message = decision
                .message(&verifier.messages, locales)
                .unwrap_or_default();
            let refusal = Refusal {
                version: "1.0.0",
                status: refusal_status,
                code: format!("invitegate.{}", reason.name()),
                user_message: &message,
            };
            (refusal_status, serde_json::to_vec(&refusal))
        }
    };
    Answer {
        status,
        // Serializing these plain structs cannot fail; an empty object would still be JSON.
        body: body.map_or_else(|_| bytes::Bytes::from_static(b"{}"), bytes::Bytes::from),
        refusal: decision.refusal(),
        code: decision.code,
        email,
        email_source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::Audience;
    use crate::expiry::Expiry;
    use crate::keys::KeyRing;
    use crate::verify::mint;
    use time::macros::datetime;

    fn verifier() -> Verifier {
        Verifier::new(KeyRing::parse("7:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap())
    }

    #[test]
    fn claims_are_found_by_name_and_case() {
        let v = verifier();
        let expiry = Expiry::from_datetime(datetime!(2030-01-01 0:00 UTC)).unwrap();
        let code = mint(&v.ring, &Audience::email("a@contoso.com").unwrap(), expiry).to_string();
        let now = UnixTime::from(datetime!(2026-01-01 0:00 UTC));
        let body = format!(r#"{{"Email":"a@contoso.com","InvitationCode":"{code}","x":[1]}}"#);
        let answer = CustomPolicy::default().answer(&v, body.as_bytes(), now);
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"invitationKind": "email",
                "invitationExpires": "2030-01-01T00:00:00Z", "invitationKeyId": 7})
        );
        let settings = CustomPolicy {
            email_claim: "signInName".into(),
            code_claim: "code".into(),
        };
        let body = br#"{"signInName":"a@contoso.com","code":5}"#;
        let answer = settings.answer(&v, body, now);
        assert_eq!(
            (answer.status, answer.refusal),
            (409, Some(Reason::BadRequest))
        );
        let answer = settings.answer(&v, b"[1,2]", now);
        assert_eq!(
            (answer.status, answer.refusal),
            (400, Some(Reason::BadRequest))
        );
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(json["code"], "invitegate.bad-request");
        assert_eq!(json["status"], 400);
    }
}
