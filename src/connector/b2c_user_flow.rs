//! Azure AD B2C user-flow API connector, "Before creating the user" (`docs/CONNECTOR-CONTRACTS.md`
//! section 1): reading the request and writing the three responses.
//!
//! Pure: takes the request body and returns what to answer; the HTTP layer sends it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Answer, AttributeNames, Connector, push_json_string};
use crate::code::UnixTime;
use crate::decision::{Decision, Reason, Verdict, Verifier, decide};

/// The only step at which B2C allows a ValidationError.
pub const POST_ATTRIBUTE_COLLECTION: &str = "PostAttributeCollection";

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
        key: Cow<'a, str>,
    },
    /// The attribute as sent.
    Present {
        /// The key as sent, to clear it under the same name.
        key: Cow<'a, str>,
        /// The code as typed.
        value: Cow<'a, str>,
    },
}

impl<'a> Request<'a> {
    /// Reads the fields the connector needs from a request body, which must be one JSON
    /// object. Every other member is skipped without being built; strings are borrowed from
    /// the body unless they hold escapes. Of a repeated member, the last counts.
    ///
    /// # Errors
    ///
    /// When the body is not a JSON object.
    pub fn parse(body: &'a [u8], names: &AttributeNames) -> Result<Self, serde_json::Error> {
        // JSON text is UTF-8 (RFC 8259). Checked once over the whole body, which is quicker
        // than the check `from_slice` makes string by string.
        let text = std::str::from_utf8(body)
            .map_err(|_| <serde_json::Error as de::Error>::custom("the body is not UTF-8"))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let request = RequestSeed { names }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(request)
    }
}

struct RequestSeed<'n> {
    names: &'n AttributeNames,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Request<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Request<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut request = Request {
            step: None,
            email: None,
            code: CodeClaim::Missing,
            ui_locales: None,
        };
        let mut identities = None;
        while let Some(Claim::Text(key)) = map.next_key::<Claim<'de>>()? {
            match key.as_ref() {
                "email" => request.email = map.next_value::<Claim<'de>>()?.non_blank(),
                "step" => request.step = map.next_value::<Claim<'de>>()?.text(),
                "ui_locales" => request.ui_locales = map.next_value::<Claim<'de>>()?.text(),
                // Kept raw: decoded only when there is no `email` member.
                "identities" => identities = Some(map.next_value::<&'de RawValue>()?),
                name if self.names.matches(name) => {
                    request.code = match map.next_value::<Claim<'de>>()? {
                        Claim::Text(value) => CodeClaim::Present { key, value },
                        Claim::Null => CodeClaim::Missing,
                        Claim::Other => CodeClaim::NotAString { key },
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if request.email.is_none() {
            request.email = identities
                .and_then(|raw| serde_json::from_str::<Identities<'de>>(raw.get()).ok())
                .and_then(|found| found.0);
        }
        Ok(request)
    }
}

/// Any JSON value, kept only when it is a string.
enum Claim<'a> {
    Text(Cow<'a, str>),
    Null,
    Other,
}

impl<'a> Claim<'a> {
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Self::Text(text) => Some(text),
            Self::Null | Self::Other => None,
        }
    }

    fn non_blank(self) -> Option<Cow<'a, str>> {
        self.text().filter(|text| !text.trim().is_empty())
    }
}

impl<'de> de::Deserialize<'de> for Claim<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient(|| Claim::Other, ClaimShape))
    }
}

/// How a lenient visitor turns the value it meets into its result.
trait Shape<'de> {
    type Value;
    /// A string.
    fn text(&self, _text: Cow<'de, str>) -> Self::Value;
    /// `null`.
    fn null(&self) -> Self::Value;
    /// An array; the default drains it.
    fn seq<A: SeqAccess<'de>>(
        &self,
        mut seq: A,
        other: Self::Value,
    ) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(other)
    }
    /// An object; the default drains it.
    fn map<A: MapAccess<'de>>(
        &self,
        mut map: A,
        other: Self::Value,
    ) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(other)
    }
}

/// A visitor that accepts any JSON value and lets a [`Shape`] keep what it wants; numbers and
/// booleans become the `other` value.
struct Lenient<F, S>(F, S);

impl<'de, F: Fn() -> S::Value, S: Shape<'de>> Visitor<'de> for Lenient<F, S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(self.1.text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.1.text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(self.1.text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.1.null())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.1.null())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.0())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.0())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.0())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.0())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.1.seq(seq, self.0())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.1.map(map, self.0())
    }
}

struct ClaimShape;

impl<'de> Shape<'de> for ClaimShape {
    type Value = Claim<'de>;

    fn text(&self, text: Cow<'de, str>) -> Claim<'de> {
        Claim::Text(text)
    }

    fn null(&self) -> Claim<'de> {
        Claim::Null
    }
}

/// `identities`: the `issuerAssignedId` of the first entry whose `signInType` is
/// `emailAddress` or `email`. Entries of other shapes, or a value that is not an array, are
/// passed over.
struct Identities<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for Identities<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient(|| Identities(None), IdentitiesShape))
    }
}

struct IdentitiesShape;

impl<'de> Shape<'de> for IdentitiesShape {
    type Value = Identities<'de>;

    fn text(&self, _: Cow<'de, str>) -> Identities<'de> {
        Identities(None)
    }

    fn null(&self) -> Identities<'de> {
        Identities(None)
    }

    fn seq<A: SeqAccess<'de>>(
        &self,
        mut seq: A,
        _: Identities<'de>,
    ) -> Result<Identities<'de>, A::Error> {
        let mut found = None;
        while let Some(identity) = seq.next_element::<Identity<'de>>()? {
            if found.is_none() {
                found = identity.email();
            }
        }
        Ok(Identities(found))
    }
}

/// One entry of `identities`.
#[derive(Default)]
struct Identity<'a> {
    sign_in_type: Option<Cow<'a, str>>,
    issuer_assigned_id: Option<Cow<'a, str>>,
}

impl<'a> Identity<'a> {
    fn email(self) -> Option<Cow<'a, str>> {
        let sign_in_type = self.sign_in_type?;
        let is_email = sign_in_type.eq_ignore_ascii_case("emailAddress")
            || sign_in_type.eq_ignore_ascii_case("email");
        self.issuer_assigned_id
            .filter(|e| is_email && !e.trim().is_empty())
    }
}

impl<'de> de::Deserialize<'de> for Identity<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Lenient(Identity::default, IdentityShape))
    }
}

struct IdentityShape;

impl<'de> Shape<'de> for IdentityShape {
    type Value = Identity<'de>;

    fn text(&self, _: Cow<'de, str>) -> Identity<'de> {
        Identity::default()
    }

    fn null(&self) -> Identity<'de> {
        Identity::default()
    }

    fn map<A: MapAccess<'de>>(
        &self,
        mut map: A,
        _: Identity<'de>,
    ) -> Result<Identity<'de>, A::Error> {
        let mut identity = Identity::default();
        while let Some(Claim::Text(key)) = map.next_key::<Claim<'de>>()? {
            match key.as_ref() {
                "signInType" => identity.sign_in_type = map.next_value::<Claim<'de>>()?.text(),
                "issuerAssignedId" => {
                    identity.issuer_assigned_id = map.next_value::<Claim<'de>>()?.text();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(identity)
    }
}

/// The user-flow endpoint: where the code attribute is, and whether to clear it on Continue.
#[derive(Debug, Clone)]
pub struct UserFlow {
    /// Where the code attribute is in requests.
    pub attribute: AttributeNames,
    /// Keep the code in the directory (do not clear the attribute on Continue).
    pub keep_code_attribute: bool,
}

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
        let (decision, key) = match &request.code {
            CodeClaim::NotAString { .. } if request.email.is_some() => {
                (Decision::refuse(Reason::BadRequest), None)
            }
            CodeClaim::Present { key, value } => (
                decide(verifier, request.email.as_deref(), Some(value), now),
                Some(key.as_ref()),
            ),
            CodeClaim::NotAString { .. } | CodeClaim::Missing => {
                (decide(verifier, request.email.as_deref(), None, now), None)
            }
        };
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
        let response = match &decision.verdict {
            Verdict::Continue(_) => Response::Continue {
                claims: match key {
                    Some(key) if !self.keep_code_attribute => vec![(key.to_owned(), String::new())],
                    _ => Vec::new(),
                },
            },
            Verdict::Refuse(reason) => {
                let user_message = decision
                    .message(&verifier.messages, locales)
                    .unwrap_or_default()
                    .into_owned();
                if reason.blocks() {
                    Response::ShowBlockPage { user_message }
                } else {
                    Response::ValidationError { user_message }
                }
            }
        };
        Answer {
            status: response.status(),
            body: response.to_json(),
            refusal: decision.refusal(),
            code: decision.code,
            email,
        }
    }
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

    /// The JSON body. Written directly: three fixed shapes whose strings are escaped by
    /// `serde_json`.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(br#"{"version":"1.0.0","#);
        match self {
            Self::Continue { claims } => {
                out.extend_from_slice(br#""action":"Continue""#);
                for (key, value) in claims {
                    out.push(b',');
                    push_json_string(&mut out, key);
                    out.push(b':');
                    push_json_string(&mut out, value);
                }
            }
            // The body's `status` is required too for a ValidationError, else B2C shows a
            // generic error.
            Self::ValidationError { user_message } => {
                out.extend_from_slice(br#""status":400,"action":"ValidationError","userMessage":"#);
                push_json_string(&mut out, user_message);
            }
            Self::ShowBlockPage { user_message } => {
                out.extend_from_slice(br#""action":"ShowBlockPage","userMessage":"#);
                push_json_string(&mut out, user_message);
            }
        }
        out.push(b'}');
        out
    }
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
            CodeClaim::Present {
                key: "extension_93fd07aa333c409d955d96008fd08dd9_invitationcode".into(),
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
        let request = parse(text, &names);
        assert_eq!(request.email.as_deref(), Some("a@b.com"));
        assert_eq!(
            request.code,
            CodeClaim::NotAString {
                key: "extension_InvitationCode".into()
            }
        );
        assert_eq!(parse("{}", &names).email, None);
        // Odd shapes are passed over, not fatal.
        let odd = r#"{"identities":[1,"x",null,[2],{"signInType":5},
            {"signInType":"email","issuerAssignedId":"c@d.com"}],
            "email":null,"step":{"a":[1,2]},"extension_InvitationCode":null}"#;
        let request = parse(odd, &names);
        assert_eq!(request.email.as_deref(), Some("c@d.com"));
        assert_eq!(request.step, None);
        assert_eq!(request.code, CodeClaim::Missing);
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
