//! The identity-provider dialects the server speaks, one module each. A dialect reads its
//! request leniently, asks [`decide`](crate::decision::decide) for the contract-neutral
//! decision, and renders that decision as its own answer: status code and JSON body. No HTTP
//! server code lives here.
//!
//! Every dialect reads its claims the same lenient way and triages them into the decision
//! the same way ([`claim`]). Adding a dialect is one module implementing [`Connector`] and one
//! route in `server::routes`.

pub mod b2c_policy;
pub mod b2c_user_flow;
pub mod claim;
pub mod entra;

use std::borrow::Cow;

use crate::code::Code;
use crate::decision::Verifier;
use crate::expiry::UnixTime;
use crate::reason::Reason;

/// A dialect: turns a request body into an answer.
pub trait Connector: Send + Sync + 'static {
    /// Answers one request body (already bounded in size and read whole) at instant `now`.
    fn answer<'b>(&self, verifier: &Verifier, body: &'b [u8], now: UnixTime) -> Answer<'b>;
}

/// What a dialect answered, and what the log and metrics need to know about it.
#[derive(Debug)]
pub struct Answer<'b> {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body: shared, so that an answer written once (a user flow's Continue) is
    /// handed out without copying it.
    pub body: bytes::Bytes,
    /// Why the sign-up was refused; `None` when it continues.
    pub refusal: Option<Reason>,
    /// The code the request carried, when it parsed (the log shows its fingerprint).
    pub code: Option<Code>,
    /// The email address as sent (the log shows its domain unless told otherwise).
    pub email: Option<Cow<'b, str>>,
    /// Where the address came from, for dialects that have more than one place for it
    /// (Entra: `identity`, `attribute`, or `attribute-ignored` when only a typed address was
    /// sent and the operator does not accept one); the log shows it.
    pub email_source: Option<&'static str>,
}

/// Which request keys hold the code attribute: `extension_<appid>_<attribute>` or
/// `extension_<attribute>`, compared case-insensitively. B2C user flows and Entra External ID
/// both name directory extension attributes this way.
#[derive(Debug, Clone)]
pub struct AttributeNames {
    with_app_id: Option<String>,
    without_app_id: String,
}

impl AttributeNames {
    /// Names for `attribute` (e.g. `InvitationCode`) and the tenant's b2c-extensions-app client
    /// id, with or without hyphens.
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

    /// Whether the extensions app id is known, so that `extension_<appid>_<attribute>`, the
    /// name B2C and Entra send, is read.
    #[must_use]
    pub fn has_app_id(&self) -> bool {
        self.with_app_id.is_some()
    }

    /// The name to use when the request had none: the full `extension_<appid>_<attribute>`
    /// when the app id is known.
    #[must_use]
    pub fn response_name(&self) -> &str {
        self.with_app_id.as_deref().unwrap_or(&self.without_app_id)
    }
}

/// `text` without the commas that JSON refuses before a `}` or `]` (outside strings), or
/// `None` when it has none.
pub(crate) fn without_trailing_commas(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut in_string, mut escaped, mut copied) = (false, false, 0);
    for (i, &byte) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b',' => {
                let next = bytes
                    .get(i + 1..)
                    .and_then(|rest| rest.iter().find(|b| !b" \t\r\n".contains(b)));
                if matches!(next, Some(b'}' | b']')) {
                    let kept = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    kept.push_str(text.get(copied..i).unwrap_or_default());
                    copied = i + 1;
                }
            }
            _ => {}
        }
    }
    let mut out = out?;
    out.push_str(text.get(copied..).unwrap_or_default());
    Some(out)
}

/// Appends `text` as a JSON string literal, escaped as `serde_json` escapes it.
pub(crate) fn push_json_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail, and a str always serializes.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// At most `max` bytes of `text`, cut at a character boundary: for log fields that come from
/// the request.
pub(crate) fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_commas_go_and_nothing_else_changes() {
        assert_eq!(without_trailing_commas(r#"{"a":[1,2],"b":{"c":1}}"#), None);
        assert_eq!(
            without_trailing_commas("{\"a\":[1,2,],\"b\":{\"c\":1,\n  },}").as_deref(),
            Some("{\"a\":[1,2],\"b\":{\"c\":1\n  }}")
        );
        // Commas inside strings, escaped quotes included, are text.
        assert_eq!(without_trailing_commas(r#"{"a":",}","b":"\",]"}"#), None);
        assert_eq!(
            without_trailing_commas(r#"{"a":"x\\",}"#).as_deref(),
            Some(r#"{"a":"x\\"}"#)
        );
    }
}
