//! Azure AD B2C user-flow API connector, "Before creating the user" (`docs/CONNECTOR-CONTRACTS.md`
//! section 1): reading the request and writing the three responses.
//!
//! Pure: takes the request body and returns what to answer; the HTTP layer sends it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::claim::{Claim, Claims, triage};
use super::{Answer, AttributeNames, Connector, push_json_str};
use crate::decision::{Decision, Reason, Verdict, Verifier};
use crate::expiry::UnixTime;

/// The only step at which B2C allows a ValidationError.
pub const POST_ATTRIBUTE_COLLECTION: &str = "PostAttributeCollection";

/// What the connector found in a request body.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `step`, when it is text.
    pub step: Option<Cow<'a, str>>,
    /// The email: `email`, else an `identities` entry of sign-in type `emailAddress` or `email`.
    pub email: Option<Cow<'a, str>>,
    /// The code attribute: its key as B2C sent it (to clear it under the same name), and its
    /// value.
    pub code: Option<(Cow<'a, str>, Claim<'a>)>,
    /// `ui_locales`, when it is text.
    pub ui_locales: Option<Cow<'a, str>>,
}

impl<'a> Request<'a> {
    /// Reads the fields the connector needs from a request body, which must be one JSON
    /// object. Other members are skipped without being built; strings are borrowed from the
    /// body unless they hold escapes. Of a repeated member, the last counts.
    ///
    /// # Errors
    ///
    /// When the body is not a JSON object.
    pub fn parse(body: &'a [u8], names: &AttributeNames) -> Result<Self, serde_json::Error> {
        // Only the claims read below are kept; the rest of the body is checked and skipped.
        let claims = Claims::parse_wanted(body, |name| {
            matches!(name, "email" | "identities" | "step" | "ui_locales") || names.matches(name)
        })?;
        // One pass over the few members kept; of equal names, the last counts.
        let (mut email, mut identities, mut step, mut ui_locales, mut code) =
            (None, None, None, None, None);
        for (name, raw) in claims.members() {
            match name.as_ref() {
                "email" => email = Some(raw),
                "identities" => identities = Some(raw),
                "step" => step = Some(raw),
                "ui_locales" => ui_locales = Some(raw),
                other if names.matches(other) => code = Some((name.clone(), raw)),
                _ => {}
            }
        }
        // `identities` is decoded only when there is no `email`.
        let email = email
            .and_then(|raw| Claim::from_raw(raw).non_blank())
            .or_else(|| identities.and_then(email_identity));
        Ok(Self {
            step: step.and_then(|raw| Claim::from_raw(raw).text()),
            email,
            code: code.map(|(name, raw)| (name, Claim::from_raw(raw))),
            ui_locales: ui_locales.and_then(|raw| Claim::from_raw(raw).text()),
        })
    }
}

/// One entry of `identities`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(default, borrow)]
    sign_in_type: Claim<'a>,
    #[serde(default, borrow)]
    issuer_assigned_id: Claim<'a>,
}

impl<'a> Identity<'a> {
    fn email(self) -> Option<Cow<'a, str>> {
        let sign_in_type = self.sign_in_type.text()?;
        let is_email = sign_in_type.eq_ignore_ascii_case("emailAddress")
            || sign_in_type.eq_ignore_ascii_case("email");
        if !is_email {
            return None;
        }
        self.issuer_assigned_id.non_blank()
    }
}

/// The `issuerAssignedId` of the first `identities` entry whose `signInType` is
/// `emailAddress` or `email`. Entries of other shapes, or a value that is not an array, are
/// passed over.
fn email_identity(identities: &RawValue) -> Option<Cow<'_, str>> {
    let entries: Vec<&RawValue> = serde_json::from_str(identities.get()).ok()?;
    entries
        .into_iter()
        .filter_map(|entry| serde_json::from_str::<Identity<'_>>(entry.get()).ok())
        .find_map(Identity::email)
}

/// The user-flow endpoint: where the code attribute is, and whether to clear it on Continue.
#[derive(Debug, Clone)]
pub struct UserFlow {
    /// Where the code attribute is in requests.
    attribute: AttributeNames,
    /// Keep the code in the directory (do not clear the attribute on Continue).
    keep_code_attribute: bool,
    /// The Continue answer clearing the attribute under the name B2C sends,
    /// `extension_<appid>_<attribute>` (or `extension_<attribute>` without the app id): the
    /// answer of nearly every request, written once.
    continue_cleared: bytes::Bytes,
}

impl UserFlow {
    /// The endpoint reading the code from `attribute`; `keep_code_attribute` leaves the code in
    /// the directory instead of clearing it on Continue.
    #[must_use]
    pub fn new(attribute: AttributeNames, keep_code_attribute: bool) -> Self {
        let name = attribute.response_name();
        let continue_cleared = json_body("Continue", None, std::iter::once((name, ""))).into();
        Self {
            attribute,
            keep_code_attribute,
            continue_cleared,
        }
    }

    /// Continue, clearing the attribute under `key` (its name as sent) unless it is kept.
    fn continue_body(&self, key: Option<&str>) -> bytes::Bytes {
        match key.filter(|_| !self.keep_code_attribute) {
            Some(key) if key == self.attribute.response_name() => self.continue_cleared.clone(),
            Some(key) => json_body("Continue", None, std::iter::once((key, ""))).into(),
            None => bytes::Bytes::from_static(CONTINUE),
        }
    }
}

/// Continue without clearing any claim.
const CONTINUE: &[u8] = br#"{"version":"1.0.0","action":"Continue"}"#;

impl Connector for UserFlow {
    fn answer<'b>(&self, verifier: &Verifier, body: &'b [u8], now: UnixTime) -> Answer<'b> {
        let Ok(request) = Request::parse(body, &self.attribute) else {
            return self.render(
                verifier,
                None,
                None,
                Decision::refuse(Reason::BadRequest),
                None,
            );
        };
        let locales = request.ui_locales.as_deref();
        // ValidationError is only allowed at PostAttributeCollection; a request without a step
        // cannot be told apart from one at another step, so it fails closed too.
        if request.step.as_deref() != Some(POST_ATTRIBUTE_COLLECTION) {
            tracing::warn!(
                step = request.step.as_deref().map(|s| super::clip(s, 64)),
                "the API connector is attached to the wrong step or sent no step: attach it to \
                 \"Before creating the user\" (PostAttributeCollection); answering with a block page"
            );
            let decision = Decision::refuse(Reason::WrongStep);
            return self.render(verifier, locales, None, decision, request.email.clone());
        }
        let (key, code) = request
            .code
            .as_ref()
            .map_or((None, &Claim::Missing), |(key, code)| {
                (Some(key.as_ref()), code)
            });
        let decision = triage(verifier, request.email.as_deref(), code, now);
        self.render(verifier, locales, key, decision, request.email.clone())
    }
}

impl UserFlow {
    fn render<'b>(
        &self,
        verifier: &Verifier,
        locales: Option<&str>,
        key: Option<&str>,
        decision: Decision<'_>,
        email: Option<Cow<'b, str>>,
    ) -> Answer<'b> {
        let (status, body) = match &decision.verdict {
            Verdict::Continue(_) => (200, self.continue_body(key)),
            Verdict::Refuse(reason) => {
                let user_message = decision
                    .message(&verifier.messages, locales)
                    .unwrap_or_default()
                    .into_owned();
                let response = if reason.blocks() {
                    Response::ShowBlockPage { user_message }
                } else {
                    Response::ValidationError { user_message }
                };
                (response.status(), response.to_json().into())
            }
        };
        Answer {
            status,
            body,
            refusal: decision.refusal(),
            code: decision.code,
            email,
            email_source: None,
        }
    }
}

/// One response of the contract, ready to serialize. Never holds a JSON `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// 200, let the sign-up continue, overwriting the listed claims.
    Continue {
        /// Claims to overwrite (the code attribute, cleared).
        claims: BTreeMap<String, String>,
    },
    /// 400, keep the user on the page with a message.
    ValidationError {
        /// What the user reads.
        user_message: String,
    },
    /// 200, end the flow with a message.
    ShowBlockPage {
        /// What the user reads.
        user_message: String,
    },
}

impl Response {
    /// The HTTP status B2C expects for this response.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Continue { .. } | Self::ShowBlockPage { .. } => 200,
            Self::ValidationError { .. } => 400,
        }
    }

    /// The `action` value.
    #[must_use]
    pub fn action(&self) -> &'static str {
        match self {
            Self::Continue { .. } => "Continue",
            Self::ValidationError { .. } => "ValidationError",
            Self::ShowBlockPage { .. } => "ShowBlockPage",
        }
    }

    /// The JSON body: `version`, `status` (a ValidationError's only), `action`, then
    /// `userMessage` or the claims to overwrite.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let (user_message, claims) = match self {
            Self::Continue { claims } => (None, Some(claims)),
            Self::ValidationError { user_message } | Self::ShowBlockPage { user_message } => {
                (Some(user_message), None)
            }
        };
        json_body(
            self.action(),
            user_message.map(String::as_str),
            claims
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
    }
}

/// A response's JSON body, in the contract's member order, compact, as serde_json writes it:
/// the constant parts copied, only the message and the claims escaped (serde's flattened map
/// cost more than the rest of the answer).
fn json_body<'a>(
    action: &str,
    user_message: Option<&str>,
    claims: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"version\":\"1.0.0\"");
    if action == "ValidationError" {
        // The body's `status` is required too for a ValidationError, else B2C shows a
        // generic error.
        out.extend_from_slice(b",\"status\":400");
    }
    out.extend_from_slice(b",\"action\":\"");
    out.extend_from_slice(action.as_bytes());
    out.push(b'"');
    if let Some(message) = user_message {
        out.extend_from_slice(b",\"userMessage\":");
        push_json_str(&mut out, message);
    }
    for (name, value) in claims {
        out.push(b',');
        push_json_str(&mut out, name);
        out.push(b':');
        push_json_str(&mut out, value);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(json: &'a str, names: &AttributeNames) -> Request<'a> {
        Request::parse(json.as_bytes(), names).unwrap()
    }

    #[test]
    fn reads_the_documented_request() {
        let names = AttributeNames::new(
            "InvitationCode",
            Some("93fd07aa-333c-409d-955d-96008fd08dd9"),
        );
        let text = r#"{"email":"johnsmith@fabrikam.onmicrosoft.com","identities":[],
            "step":"PostAttributeCollection","ui_locales":"en-US",
            "extension_93fd07aa333c409d955d96008fd08dd9_invitationcode":"AB\u0043DE"}"#;
        let request = parse(text, &names);
        assert_eq!(
            request.email.as_deref(),
            Some("johnsmith@fabrikam.onmicrosoft.com")
        );
        assert_eq!(request.step.as_deref(), Some("PostAttributeCollection"));
        assert_eq!(request.ui_locales.as_deref(), Some("en-US"));
        assert_eq!(
            request.code,
            Some((
                "extension_93fd07aa333c409d955d96008fd08dd9_invitationcode".into(),
                Claim::Text("ABCDE".into())
            ))
        );
    }

    #[test]
    fn email_from_identities_and_short_attribute_name() {
        let names = AttributeNames::new("InvitationCode", None);
        let text = r#"{"identities":[
            {"signInType":"federated","issuer":"facebook.com","issuerAssignedId":"1"},
            {"signInType":"emailAddress","issuer":"t.onmicrosoft.com","issuerAssignedId":"a@b.com"}],
            "extension_InvitationCode": 5}"#;
        let request = parse(text, &names);
        assert_eq!(request.email.as_deref(), Some("a@b.com"));
        assert_eq!(
            request.code,
            Some(("extension_InvitationCode".into(), Claim::NotText))
        );
        assert_eq!(parse("{}", &names).email, None);
        // Odd shapes are passed over, not fatal.
        let odd = r#"{"identities":[1,"x",null,[2],{"signInType":5},
            {"signInType":"email","issuerAssignedId":"c@d.com"}],
            "email":null,"step":{"a":[1,2]},"extension_InvitationCode":null}"#;
        let request = parse(odd, &names);
        assert_eq!(request.email.as_deref(), Some("c@d.com"));
        assert_eq!(request.step, None);
        assert_eq!(
            request.code,
            Some(("extension_InvitationCode".into(), Claim::Missing))
        );
        // `email` wins over identities; a blank one does not.
        let both = r#"{"email":" ","identities":[{"signInType":"emailAddress","issuerAssignedId":"e@f.com"}]}"#;
        assert_eq!(parse(both, &names).email.as_deref(), Some("e@f.com"));
        for bad in ["[]", "\"x\"", "{", "{} {}", "", "{\"a\":}"] {
            assert!(Request::parse(bad.as_bytes(), &names).is_err(), "{bad}");
        }
        // Not UTF-8, inside a string and outside one.
        for bad in [&b"{\"email\":\"a\xff@b.com\"}"[..], b"{\"a\":1}\xc3"] {
            assert!(Request::parse(bad, &names).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn responses_have_the_contract_shape_and_no_null() {
        let ok = Response::Continue {
            claims: BTreeMap::from([("extension_x_InvitationCode".into(), String::new())]),
        };
        assert_eq!(
            String::from_utf8(ok.to_json()).unwrap(),
            r#"{"version":"1.0.0","action":"Continue","extension_x_InvitationCode":""}"#
        );
        let err = Response::ValidationError {
            user_message: "Check it.".into(),
        };
        assert_eq!(err.status(), 400);
        assert_eq!(
            String::from_utf8(err.to_json()).unwrap(),
            r#"{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Check it."}"#
        );
        let block = Response::ShowBlockPage {
            user_message: "No.".into(),
        };
        assert_eq!(block.status(), 200);
        assert!(!String::from_utf8(block.to_json()).unwrap().contains("null"));
    }
}
