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
use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use serde_json::json;
use serde_json::value::RawValue;

use super::{Answer, AttributeNames, Connector};
use crate::UnixTime;
use crate::decision::{Decision, Reason, Verdict, Verifier, decide};

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
}

#[derive(Deserialize)]
struct Request<'b> {
    #[serde(rename = "type", default, borrow, deserialize_with = "text")]
    event: Option<Cow<'b, str>>,
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
    #[serde(default, borrow, deserialize_with = "text")]
    locale: Option<Cow<'b, str>>,
}

#[derive(Deserialize)]
struct UserSignUpInfo<'b> {
    #[serde(default, borrow)]
    attributes: HashMap<Cow<'b, str>, Attribute<'b>>,
    #[serde(default, borrow)]
    identities: Vec<Identity<'b>>,
}

#[derive(Deserialize)]
struct Attribute<'b> {
    /// `None` when absent or not a string (a boolean or number attribute).
    #[serde(default, borrow, deserialize_with = "text")]
    value: Option<Cow<'b, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'b> {
    #[serde(default, borrow, deserialize_with = "text")]
    sign_in_type: Option<Cow<'b, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    issuer_assigned_id: Option<Cow<'b, str>>,
}

/// Any JSON value, kept when it is a string: borrowed from the body unless it has escapes.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    let raw = <&'de RawValue>::deserialize(deserializer)?;
    let json = raw.get();
    Ok(serde_json::from_str::<&'de str>(json)
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(json).map(Cow::Owned))
        .ok())
}

/// What the answer needs from a readable request.
struct SignUp<'b> {
    event: Option<Cow<'b, str>>,
    locale: Option<Cow<'b, str>>,
    email: Option<Cow<'b, str>>,
    /// The code attribute's key as sent, and its value when it is a string.
    code: Option<(Cow<'b, str>, Option<Cow<'b, str>>)>,
}

impl<'b> SignUp<'b> {
    fn parse(body: &'b [u8], names: &AttributeNames) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(body).map_err(|_| {
            <serde_json::Error as serde::de::Error>::custom("the body is not UTF-8")
        })?;
        let request: Request<'b> = serde_json::from_str(text)?;
        let data = request.data;
        let locale = data
            .as_ref()
            .and_then(|d| d.authentication_context.as_ref())
            .and_then(|c| c.client.as_ref())
            .and_then(|c| c.locale.clone());
        let info = data.and_then(|d| d.user_sign_up_info);
        let (mut attributes, identities) =
            info.map_or_else(Default::default, |info| (info.attributes, info.identities));
        // The identity the person signs in with, else an `email` attribute.
        let email = identities
            .into_iter()
            .filter(|identity| {
                identity
                    .sign_in_type
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case("email"))
            })
            .find_map(|identity| identity.issuer_assigned_id)
            .filter(|email| !email.trim().is_empty())
            .or_else(|| {
                attributes
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case("email"))
                    .and_then(|(_, attribute)| attribute.value.clone())
            });
        let key = attributes.keys().find(|key| names.matches(key)).cloned();
        let code = key.map(|key| {
            let value = attributes.remove(&key).and_then(|a| a.value);
            (key, value)
        });
        Ok(Self {
            event: request.event,
            locale,
            email,
            code,
        })
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
                body: body.to_string().into_bytes(),
                outcome: "bad-request",
                code: None,
                email: None,
            };
        };
        let is_event = request
            .event
            .as_deref()
            .is_some_and(|event| event.eq_ignore_ascii_case(EVENT_TYPE));
        let decision = if is_event {
            match &request.code {
                Some((_, Some(code))) => {
                    decide(verifier, request.email.as_deref(), Some(code), now)
                }
                Some((_, None)) if request.email.is_some() => Decision::refuse(Reason::BadRequest),
                Some((_, None)) | None => decide(verifier, request.email.as_deref(), None, now),
            }
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
        let action = match &decision.verdict {
            Verdict::Continue(_) if self.keep_code_attribute => json!({"@odata.type": CONTINUE}),
            Verdict::Continue(grant) => {
                let note = format!(
                    "redeemed: {} invitation, key {}, valid until {}",
                    grant.kind(),
                    grant.key_id,
                    grant.expiry
                );
                json!({"@odata.type": MODIFY, "attributes": {key: note}})
            }
            Verdict::Refuse(reason) => {
                let message = reason.message(&verifier.messages, request.locale.as_deref());
                if reason.blocks() {
                    json!({"@odata.type": BLOCK, "message": message})
                } else {
                    json!({
                        "@odata.type": VALIDATION_ERROR,
                        "message": message,
                        "attributeErrors": {key: message},
                    })
                }
            }
        };
        let body = json!({"data": {"@odata.type": RESPONSE_TYPE, "actions": [action]}});
        Answer {
            status: 200,
            body: body.to_string().into_bytes(),
            outcome: decision.name(),
            code: decision.code,
            email: request.email.clone(),
        }
    }
}
