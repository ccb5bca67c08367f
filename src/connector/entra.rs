//! Microsoft Entra External ID, custom authentication extension for the
//! OnAttributeCollectionSubmit event (`docs/CONNECTOR-CONTRACTS.md` section 3).
//!
//! Entra sends the attributes the person entered and their identities; every answer is
//! HTTP 200 with exactly one action:
//! - valid: `modifyAttributeValues`, replacing the code attribute with a redemption note that
//!   is no code (kind, key id, expiry), so the directory never stores a usable code; or
//!   `continueWithDefaultBehavior` when the code attribute is to be kept;
//! - a reason the person can put right: `showValidationError` with the message, and the same
//!   message under the code attribute in `attributeErrors`;
//! - no email address to check, or a payload of another event type: `showBlockPage` (fail
//!   closed).
//!
//! The request is read leniently: unknown members are ignored, attribute values that are not
//! strings are passed over, and `@odata.type` (however spelled) is not needed. A body that is
//! not JSON, or whose structure is not this event's, is answered 400 by the caller's rules.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::json;

use super::claim::{Claim, in_order, triage};
use super::{Answer, AttributeNames, Connector, push_json_str, without_trailing_commas};
use crate::decision::{Decision, Reason, Verdict, Verifier};
use crate::expiry::UnixTime;

/// The event type this endpoint answers.
pub const EVENT_TYPE: &str = "microsoft.graph.authenticationEvent.attributeCollectionSubmit";
const RESPONSE_TYPE: &str = "microsoft.graph.onAttributeCollectionSubmitResponseData";
const CONTINUE: &str = "microsoft.graph.attributeCollectionSubmit.continueWithDefaultBehavior";
const MODIFY: &str = "microsoft.graph.attributeCollectionSubmit.modifyAttributeValues";
const BLOCK: &str = "microsoft.graph.attributeCollectionSubmit.showBlockPage";
const VALIDATION_ERROR: &str = "microsoft.graph.attributeCollectionSubmit.showValidationError";

/// The Entra endpoint: where the code attribute is, and whether to keep it.
#[derive(Debug, Clone)]
pub struct Entra {
    /// Where the code attribute is among `data.userSignUpInfo.attributes`.
    pub attribute: AttributeNames,
    /// Keep the code as entered (answer `continueWithDefaultBehavior` instead of replacing it).
    pub keep_code_attribute: bool,
    /// Where the address a code is checked against may come from.
    pub email_source: EmailSource,
}

/// Where the address a code is checked against may come from. Entra sends the sign-in
/// identity's address for an email sign-up (verified by a one-time code before the extension is
/// called); a federated sign-up (Google, Facebook, OpenID Connect) may have no `email`
/// identity, and then the only address is the `email` attribute, which the person may be able
/// to type on the sign-up page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EmailSource {
    /// Only the `email` sign-in identity: a sign-up without one is refused as having no
    /// address, so no code is ever checked against a typed address.
    Identity,
    /// The `email` sign-in identity, else the `email` attribute (the contract's reading).
    #[default]
    IdentityOrAttribute,
}

impl EmailSource {
    /// The setting's value: `identity` or `identity-or-attribute`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::IdentityOrAttribute => "identity-or-attribute",
        }
    }
}

#[derive(Deserialize)]
struct Request<'b> {
    #[serde(rename = "type", default, borrow)]
    event: Claim<'b>,
    #[serde(default, borrow)]
    data: Option<Data<'b>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'b> {
    #[serde(default, borrow)]
    authentication_context: Option<AuthenticationContext<'b>>,
    #[serde(default, borrow)]
    user_sign_up_info: Option<UserSignUpInfo<'b>>,
}

#[derive(Deserialize)]
struct AuthenticationContext<'b> {
    #[serde(default, borrow)]
    client: Option<Client<'b>>,
}

#[derive(Deserialize)]
struct Client<'b> {
    #[serde(default, borrow)]
    locale: Claim<'b>,
}

#[derive(Deserialize)]
struct UserSignUpInfo<'b> {
    /// In the body's order: a handful of entries, looked up twice, cheaper as a list than
    /// hashed into a map.
    #[serde(default, borrow, deserialize_with = "in_order")]
    attributes: Vec<(Cow<'b, str>, Attribute<'b>)>,
    #[serde(default, borrow)]
    identities: Vec<Identity<'b>>,
}

#[derive(Deserialize)]
struct Attribute<'b> {
    /// Not text for a boolean or number attribute.
    #[serde(default, borrow)]
    value: Claim<'b>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'b> {
    #[serde(default, borrow)]
    sign_in_type: Claim<'b>,
    #[serde(default, borrow)]
    issuer_assigned_id: Claim<'b>,
}

/// One action of the answer: `@odata.type`, then `message`, `attributes` (the replaced
/// attribute, on modify) and `attributeErrors` (the attribute's error, on a validation error),
/// each when present.
struct Action<'a> {
    odata_type: &'static str,
    message: Option<&'a str>,
    attributes: Option<OneAttribute<'a>>,
    attribute_errors: Option<OneAttribute<'a>>,
}

/// A JSON object of one member.
struct OneAttribute<'a>(&'a str, &'a str);

impl<'a> Action<'a> {
    fn new(odata_type: &'static str) -> Self {
        Self {
            odata_type,
            message: None,
            attributes: None,
            attribute_errors: None,
        }
    }

    /// The answer, in the shape Entra reads: `{"data": {"@odata.type": ..., "actions":
    /// [action]}}`, compact, as `serde_json` writes it. The constant parts are copied as they
    /// are (their names and types need no escape); only the message and the attribute are
    /// escaped, each time: serializing the whole through serde cost more than the rest of the
    /// answer.
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(b"{\"data\":{\"@odata.type\":\"");
        out.extend_from_slice(RESPONSE_TYPE.as_bytes());
        out.extend_from_slice(b"\",\"actions\":[{\"@odata.type\":\"");
        out.extend_from_slice(self.odata_type.as_bytes());
        out.push(b'"');
        if let Some(message) = self.message {
            out.extend_from_slice(b",\"message\":");
            push_json_str(&mut out, message);
        }
        for (name, attribute) in [
            ("attributes", &self.attributes),
            ("attributeErrors", &self.attribute_errors),
        ] {
            if let Some(OneAttribute(key, value)) = attribute {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":{");
                push_json_str(&mut out, key);
                out.push(b':');
                push_json_str(&mut out, value);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"}]}}");
        out
    }
}

/// What the answer needs from a readable request.
struct SignUp<'b> {
    event: Option<Cow<'b, str>>,
    locale: Option<Cow<'b, str>>,
    /// The `email` sign-in identity's address.
    identity_email: Option<Cow<'b, str>>,
    /// The `email` attribute's value.
    attribute_email: Option<Cow<'b, str>>,
    /// The code attribute's key as sent, and its value.
    code: Option<(Cow<'b, str>, Claim<'b>)>,
}

impl<'b> SignUp<'b> {
    /// Reads a request body. Microsoft's own example of the request has a trailing comma, and
    /// the contract says to read it leniently: a body JSON refuses is read again without its
    /// trailing commas (only then, so a well-formed body is read once, in place).
    fn parse(body: &'b [u8], names: &AttributeNames) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(body).map_err(|_| {
            <serde_json::Error as serde::de::Error>::custom("the body is not UTF-8")
        })?;
        match Self::parse_text(text, names) {
            Ok(request) => Ok(request),
            Err(err) => match without_trailing_commas(text) {
                Some(fixed) => SignUp::parse_text(&fixed, names).map(SignUp::into_owned),
                None => Err(err),
            },
        }
    }

    fn into_owned(self) -> SignUp<'static> {
        let owned = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        SignUp {
            event: self.event.map(owned),
            locale: self.locale.map(owned),
            identity_email: self.identity_email.map(owned),
            attribute_email: self.attribute_email.map(owned),
            code: self
                .code
                .map(|(key, value)| (owned(key), value.into_owned())),
        }
    }

    fn parse_text(text: &'b str, names: &AttributeNames) -> Result<Self, serde_json::Error> {
        let request: Request<'b> = serde_json::from_str(text)?;
        let data = request.data;
        let locale = data
            .as_ref()
            .and_then(|d| d.authentication_context.as_ref())
            .and_then(|c| c.client.as_ref())
            .and_then(|c| c.locale.clone().text());
        let info = data.and_then(|d| d.user_sign_up_info);
        let (attributes, identities) =
            info.map_or_else(Default::default, |info| (info.attributes, info.identities));
        // The identity the person signs in with, and an `email` attribute.
        let identity_email = identities
            .into_iter()
            .filter(|identity| {
                matches!(&identity.sign_in_type, Claim::Text(t) if t.eq_ignore_ascii_case("email"))
            })
            .find_map(|identity| identity.issuer_assigned_id.text())
            .filter(|email| !email.trim().is_empty());
        let attribute_email = attributes
            .iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case("email"))
            .and_then(|(_, attribute)| attribute.value.clone().text());
        // The last of equal names wins, as when the members were read into a map.
        let code = attributes
            .into_iter()
            .rev()
            .find(|(key, _)| names.matches(key))
            .map(|(key, attribute)| (key, attribute.value));
        Ok(Self {
            event: request.event.text(),
            locale,
            identity_email,
            attribute_email,
            code,
        })
    }

    /// The address to check under `source`, and where it came from for the log.
    fn email(&self, source: EmailSource) -> (Option<&Cow<'b, str>>, Option<&'static str>) {
        match (&self.identity_email, &self.attribute_email, source) {
            (Some(email), _, _) => (Some(email), Some("identity")),
            (None, Some(email), EmailSource::IdentityOrAttribute) => {
                (Some(email), Some("attribute"))
            }
            (None, Some(_), EmailSource::Identity) => (None, Some("attribute-ignored")),
            (None, None, _) => (None, None),
        }
    }
}

impl Connector for Entra {
    fn answer<'b>(&self, verifier: &Verifier, body: &'b [u8], now: UnixTime) -> Answer<'b> {
        let Ok(request) = SignUp::parse(body, &self.attribute) else {
            let body = json!({
                "error": "bad_request",
                "message": "the body is not an OnAttributeCollectionSubmit request in JSON",
            });
            return Answer {
                status: 400,
                body: body.to_string().into_bytes().into(),
                refusal: Some(Reason::BadRequest),
                code: None,
                email: None,
                email_source: None,
            };
        };
        let (email, email_source) = request.email(self.email_source);
        let is_event = request
            .event
            .as_deref()
            .is_some_and(|event| event.eq_ignore_ascii_case(EVENT_TYPE));
        let decision = if is_event {
            // An attribute whose value is not a string, null or absent included, is not text.
            let code = match &request.code {
                None => Claim::Missing,
                Some((_, Claim::Text(code))) => Claim::Text(Cow::Borrowed(code)),
                Some(_) => Claim::NotText,
            };
            triage(verifier, email.map(AsRef::as_ref), &code, now)
        } else {
            tracing::warn!(
                event = request.event.as_deref().map(|e| super::clip(e, 100)),
                "the custom authentication extension is attached to another event: attach it \
                 to OnAttributeCollectionSubmit; answering with a block page"
            );
            Decision::refuse(Reason::WrongStep)
        };
        let key = request
            .code
            .as_ref()
            .map_or(self.attribute.response_name(), |(key, _)| key.as_ref());
        let note;
        let message;
        let action = match &decision.verdict {
            Verdict::Continue(_) if self.keep_code_attribute => Action::new(CONTINUE),
            Verdict::Continue(grant) => {
                note = format!(
                    "redeemed: {} invitation, key {}, valid until {}",
                    grant.kind(),
                    grant.key_id,
                    grant.expiry
                );
                Action {
                    attributes: Some(OneAttribute(key, &note)),
                    ..Action::new(MODIFY)
                }
            }
            Verdict::Refuse(reason) => {
                message = decision
                    .message(&verifier.messages, request.locale.as_deref())
                    .unwrap_or_default();
                if reason.blocks() {
                    Action {
                        message: Some(&message),
                        ..Action::new(BLOCK)
                    }
                } else {
                    Action {
                        message: Some(&message),
                        attribute_errors: Some(OneAttribute(key, &message)),
                        ..Action::new(VALIDATION_ERROR)
                    }
                }
            }
        };
        Answer {
            status: 200,
            body: action.to_json().into(),
            refusal: decision.refusal(),
            code: decision.code,
            email: email.cloned(),
            email_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_in_order_and_the_last_of_equal_names_wins() {
        let names = AttributeNames::new("InvitationCode", None);
        let body = br#"{"type":"microsoft.graph.authenticationEvent.attributeCollectionSubmit",
            "data":{"userSignUpInfo":{"attributes":{
                "email":{"value":"first@contoso.com"},
                "extension_InvitationCode":{"value":"FIRST"},
                "givenName":{"value":7},
                "extension_invitationcode":{"value":"LAST"},
                "email":{"value":"last@contoso.com"}}}}}"#;
        let request = SignUp::parse(body, &names).unwrap();
        let (key, value) = request.code.clone().unwrap();
        assert_eq!(
            (key.as_ref(), value),
            ("extension_invitationcode", Claim::Text("LAST".into()))
        );
        assert_eq!(
            request.email(EmailSource::IdentityOrAttribute),
            (Some(&Cow::Borrowed("last@contoso.com")), Some("attribute"))
        );
        // With the identity only, a typed address is not checked, and the log says why.
        assert_eq!(
            request.email(EmailSource::Identity),
            (None, Some("attribute-ignored"))
        );
        let not_an_object = br#"{"data":{"userSignUpInfo":{"attributes":[1,2]}}}"#;
        assert!(SignUp::parse(not_an_object, &names).is_err());
        let none = br#"{"data":{"userSignUpInfo":{}}}"#;
        assert!(SignUp::parse(none, &names).unwrap().code.is_none());
    }

    #[test]
    fn the_identity_is_preferred_to_the_attribute_whatever_the_source() {
        let names = AttributeNames::new("InvitationCode", None);
        let body = br#"{"data":{"userSignUpInfo":{
            "attributes":{"email":{"value":"typed@contoso.com"}},
            "identities":[{"signInType":"email","issuer":"contoso.onmicrosoft.com",
                "issuerAssignedId":"alice@contoso.com"}]}}}"#;
        let request = SignUp::parse(body, &names).unwrap();
        for source in [EmailSource::Identity, EmailSource::IdentityOrAttribute] {
            assert_eq!(
                request.email(source),
                (Some(&Cow::Borrowed("alice@contoso.com")), Some("identity"))
            );
        }
    }
}
