//! Azure AD B2C user-flow API connector, "Before creating the user" (`docs/CONNECTOR-CONTRACTS.md`
//! section 1): reading the request and writing the three responses.
//!
//! Pure: takes the parsed JSON body and returns what to answer; the HTTP layer sends it.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A request body's top-level object: keys, and values left unparsed until the connector asks
/// for one. A B2C body carries every attribute the flow collects; the connector reads four.
pub type Object<'a> = HashMap<Cow<'a, str>, &'a RawValue>;

/// The only step at which B2C allows a ValidationError.
pub const POST_ATTRIBUTE_COLLECTION: &str = "PostAttributeCollection";

/// The contract version every response carries.
pub const API_VERSION: &str = "1.0.0";

/// What the connector found in a request body.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `step`, when present.
    pub step: Option<Cow<'a, str>>,
    /// The email: `email`, else an `identities` entry of sign-in type `emailAddress` or `email`.
    pub email: Option<Cow<'a, str>>,
    /// The code attribute: its key as B2C sent it, and its value.
    pub code: CodeClaim<'a>,
    /// `ui_locales`, when present.
    pub ui_locales: Option<Cow<'a, str>>,
}

/// The invitation code attribute in a request.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeClaim<'a> {
    /// No such attribute (B2C leaves out claims with no value).
    Missing,
    /// The attribute is there but its value is not a string.
    NotAString {
        /// The key as sent.
        key: &'a str,
    },
    /// The attribute as sent.
    Present {
        /// The key as sent, to clear it under the same name.
        key: &'a str,
        /// The code as typed.
        value: Cow<'a, str>,
    },
}

/// Which request keys hold the code: `extension_<appid>_<attribute>` or `extension_<attribute>`,
/// compared case-insensitively.
#[derive(Debug, Clone)]
pub struct AttributeNames {
    with_app_id: Option<String>,
    without_app_id: String,
}

impl AttributeNames {
    /// Names for `attribute` (e.g. `InvitationCode`) and the b2c-extensions-app's client id,
    /// with or without hyphens.
    #[must_use]
    pub fn new(attribute: &str, extensions_app_id: Option<&str>) -> Self {
        let app_id = extensions_app_id
            .map(|id| id.trim().replace('-', "").to_ascii_lowercase())
            .filter(|id| !id.is_empty());
        Self {
            with_app_id: app_id.map(|id| format!("extension_{id}_{attribute}")),
            without_app_id: format!("extension_{attribute}"),
        }
    }

    /// Whether a request key names the code attribute.
    #[must_use]
    pub fn matches(&self, key: &str) -> bool {
        key.eq_ignore_ascii_case(&self.without_app_id)
            || self
                .with_app_id
                .as_ref()
                .is_some_and(|name| key.eq_ignore_ascii_case(name))
    }

    /// The name to clear the attribute under when the request had none.
    #[must_use]
    pub fn response_name(&self) -> &str {
        self.with_app_id.as_deref().unwrap_or(&self.without_app_id)
    }
}

/// A JSON string borrowed from the body where it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// One entry of `identities`.
#[derive(Deserialize)]
struct Identity<'a> {
    #[serde(rename = "signInType", borrow, default)]
    sign_in_type: Option<Cow<'a, str>>,
    #[serde(rename = "issuerAssignedId", borrow, default)]
    issuer_assigned_id: Option<Cow<'a, str>>,
}

impl<'a> Request<'a> {
    /// Reads the fields the connector needs from the request body's top-level object.
    #[must_use]
    pub fn read(body: &'a Object<'a>, names: &AttributeNames) -> Self {
        let text = |key: &str| body.get(key).and_then(|raw| string(raw));
        let email = text("email").filter(|e| !e.trim().is_empty()).or_else(|| {
            body.get("identities")
                .and_then(|raw| email_from_identities(raw))
        });
        let code = body.iter().find(|(key, _)| names.matches(key)).map_or(
            CodeClaim::Missing,
            |(key, raw)| match string(raw) {
                Some(value) => CodeClaim::Present { key, value },
                None if raw.get() == "null" => CodeClaim::Missing,
                None => CodeClaim::NotAString { key },
            },
        );
        Self {
            step: text("step"),
            email,
            code,
            ui_locales: text("ui_locales"),
        }
    }
}

/// A raw value as a string, borrowed from the body unless it holds escapes; `None` when the
/// value is not a string.
fn string<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    serde_json::from_str::<Text<'a>>(raw.get())
        .ok()
        .map(|t| t.0)
}

/// `issuerAssignedId` of the first identity whose `signInType` is `emailAddress` or `email`.
fn email_from_identities<'a>(identities: &'a RawValue) -> Option<Cow<'a, str>> {
    let identities: Vec<Identity<'a>> = serde_json::from_str(identities.get()).ok()?;
    identities.into_iter().find_map(|identity| {
        let sign_in_type = identity.sign_in_type?;
        let is_email = sign_in_type.eq_ignore_ascii_case("emailAddress")
            || sign_in_type.eq_ignore_ascii_case("email");
        identity
            .issuer_assigned_id
            .filter(|e| is_email && !e.trim().is_empty())
    })
}

/// One response of the contract, ready to serialize. Never holds a JSON `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// 200, let the sign-up continue, overwriting the listed claims.
    Continue {
        /// Claims to overwrite (the code attribute, cleared).
        claims: Vec<(String, String)>,
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

#[derive(Serialize)]
struct Body<'a> {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    action: &'static str,
    #[serde(rename = "userMessage", skip_serializing_if = "Option::is_none")]
    user_message: Option<&'a str>,
    #[serde(flatten)]
    claims: Map<String, Value>,
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

    /// The JSON body.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let body = match self {
            Self::Continue { claims } => Body {
                version: API_VERSION,
                status: None,
                action: self.action(),
                user_message: None,
                claims: claims
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            },
            // The body's `status` is required too for a ValidationError, else B2C shows a
            // generic error.
            Self::ValidationError { user_message } => Body {
                version: API_VERSION,
                status: Some(400),
                action: self.action(),
                user_message: Some(user_message),
                claims: Map::new(),
            },
            Self::ShowBlockPage { user_message } => Body {
                version: API_VERSION,
                status: None,
                action: self.action(),
                user_message: Some(user_message),
                claims: Map::new(),
            },
        };
        // Serializing a struct of strings and numbers into a Vec cannot fail; the fallback is
        // a valid body all the same.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Sign-up is not available right now."}"#.to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Object<'_> {
        serde_json::from_str(json).unwrap()
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
        let body = object(text);
        let request = Request::read(&body, &names);
        assert_eq!(
            request.email.as_deref(),
            Some("johnsmith@fabrikam.onmicrosoft.com")
        );
        assert_eq!(request.step.as_deref(), Some("PostAttributeCollection"));
        assert_eq!(request.ui_locales.as_deref(), Some("en-US"));
        assert_eq!(
            request.code,
            CodeClaim::Present {
                key: "extension_93fd07aa333c409d955d96008fd08dd9_invitationcode",
                value: "ABCDE".into(),
            }
        );
    }

    #[test]
    fn email_from_identities_and_short_attribute_name() {
        let names = AttributeNames::new("InvitationCode", None);
        let text = r#"{"identities":[
            {"signInType":"federated","issuer":"facebook.com","issuerAssignedId":"1"},
            {"signInType":"emailAddress","issuer":"t.onmicrosoft.com","issuerAssignedId":"a@b.com"}],
            "extension_InvitationCode": 5}"#;
        let body = object(text);
        let request = Request::read(&body, &names);
        assert_eq!(request.email.as_deref(), Some("a@b.com"));
        assert_eq!(
            request.code,
            CodeClaim::NotAString {
                key: "extension_InvitationCode"
            }
        );
        let empty = object("{}");
        assert_eq!(Request::read(&empty, &names).email, None);
    }

    #[test]
    fn responses_have_the_contract_shape_and_no_null() {
        let ok = Response::Continue {
            claims: vec![("extension_x_InvitationCode".into(), String::new())],
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
