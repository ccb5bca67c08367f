//! Reading identity-provider requests leniently, the same way in every dialect: a claim is
//! text, some other JSON value, or missing; a flat object of claims is kept raw, in the body's
//! order, until a claim is asked for; and one triage turns the email and the code claim into
//! the decision.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::decision::{Decision, Reason, Verifier, decide};
use crate::expiry::UnixTime;

/// A claim's value as sent. Only a string is kept; other values are scanned, never built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Claim<'b> {
    /// Absent, or `null` (B2C leaves out claims with no value).
    #[default]
    Missing,
    /// A number, boolean, array or object.
    NotText,
    /// A string: borrowed from the body unless it holds escapes.
    Text(Cow<'b, str>),
}

impl<'b> Claim<'b> {
    /// Reads one raw JSON value.
    #[must_use]
    pub fn from_raw(raw: &'b RawValue) -> Self {
        let json = raw.get();
        if json == "null" {
            return Self::Missing;
        }
        if !json.starts_with('"') {
            return Self::NotText;
        }
        // A raw value is valid JSON: a string without a backslash is its text between the
        // quotes, borrowed as it is; one with escapes is decoded.
        let inner = &json[1..json.len() - 1];
        if !inner.contains('\\') {
            return Self::Text(Cow::Borrowed(inner));
        }
        serde_json::from_str::<String>(json)
            .map_or(Self::NotText, |text| Self::Text(Cow::Owned(text)))
    }

    /// The text, if the claim is a string.
    #[must_use]
    pub fn text(self) -> Option<Cow<'b, str>> {
        match self {
            Self::Text(text) => Some(text),
            Self::Missing | Self::NotText => None,
        }
    }

    /// The text, if the claim is a string that is not blank.
    #[must_use]
    pub fn non_blank(self) -> Option<Cow<'b, str>> {
        self.text().filter(|text| !text.trim().is_empty())
    }

    /// The claim with its text owned, for a body read from a repaired copy.
    #[must_use]
    pub fn into_owned(self) -> Claim<'static> {
        match self {
            Self::Missing => Claim::Missing,
            Self::NotText => Claim::NotText,
            Self::Text(text) => Claim::Text(Cow::Owned(text.into_owned())),
        }
    }
}

impl<'de: 'b, 'b> Deserialize<'de> for Claim<'b> {
    /// Any JSON value; only from `serde_json`, which can hand out a value's raw text.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'b RawValue>::deserialize(deserializer).map(Self::from_raw)
    }
}

/// A member name, borrowed from the body unless it holds escapes.
#[derive(Deserialize)]
struct Name<'b>(#[serde(borrow)] Cow<'b, str>);

/// A JSON object's members as a list, in the body's order: the dialects' "last of equal names
/// wins" needs the order, which a map would lose.
pub(crate) fn in_order<'de, D, V>(deserializer: D) -> Result<Vec<(Cow<'de, str>, V)>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Members<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Members<V> {
        type Value = Vec<(Cow<'de, str>, V)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some((Name(name), value)) = map.next_entry::<Name<'de>, V>()? {
                members.push((name, value));
            }
            Ok(members)
        }
    }

    deserializer.deserialize_map(Members(std::marker::PhantomData))
}

/// Members kept raw, in the body's order: held in place for the few a dialect wants, so that
/// reading a request allocates no list.
type Members<'b> = smallvec::SmallVec<[(Cow<'b, str>, &'b RawValue); 6]>;

/// The members of a JSON object whose names a predicate wants, raw, in the body's order; the
/// other values are scanned as JSON (so a body is refused exactly as when all are kept) and
/// dropped.
struct Wanted<F>(F);

impl<'de, F: Fn(&str) -> bool> serde::de::DeserializeSeed<'de> for Wanted<F> {
    type Value = Members<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: Fn(&str) -> bool> serde::de::Visitor<'de> for Wanted<F> {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Members::new();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            if (self.0)(&name) {
                members.push((name, map.next_value::<&'de RawValue>()?));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(members)
    }
}

/// A request that is one flat JSON object of claims (the B2C dialects), each value kept raw
/// until it is asked for.
#[derive(Debug)]
pub struct Claims<'b>(Members<'b>);

impl<'b> Claims<'b> {
    /// Reads a body that must be one JSON object, in UTF-8 (RFC 8259).
    ///
    /// # Errors
    ///
    /// When the body is not UTF-8, not JSON, or not an object.
    pub fn parse(body: &'b [u8]) -> Result<Self, serde_json::Error> {
        Self::parse_wanted(body, |_| true)
    }

    /// Like [`Claims::parse`], keeping only the members whose name is `wanted`: the others are
    /// checked as JSON and skipped, never kept. A dialect asks for a few claims of a body that
    /// holds many, and the lookups then scan those few.
    ///
    /// # Errors
    ///
    /// As [`Claims::parse`]: the same bodies are refused whatever is wanted.
    pub fn parse_wanted(
        body: &'b [u8],
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(body).map_err(|_| {
            <serde_json::Error as serde::de::Error>::custom("the body is not UTF-8")
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let members = serde::de::DeserializeSeed::deserialize(Wanted(wanted), &mut deserializer)?;
        deserializer.end()?;
        Ok(Self(members))
    }

    /// The members kept, in the body's order, each value raw.
    pub fn members(&self) -> impl Iterator<Item = (&Cow<'b, str>, &'b RawValue)> {
        self.0.iter().map(|(name, raw)| (name, *raw))
    }

    /// The claim named `name`, matched exactly, else case-insensitively (policy authors write
    /// `Email` as often as `email`); of equal names, the last.
    #[must_use]
    pub fn named(&self, name: &str) -> Claim<'b> {
        self.find(|key| key == name)
            .or_else(|| self.find(|key| key.eq_ignore_ascii_case(name)))
            .map_or(Claim::Missing, |(_, claim)| claim)
    }

    /// The last claim whose name `matches`, with its name as sent.
    #[must_use]
    pub fn find(&self, matches: impl Fn(&str) -> bool) -> Option<(Cow<'b, str>, Claim<'b>)> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| matches(name))
            .map(|(name, raw)| (name.clone(), Claim::from_raw(raw)))
    }
}

/// Decides a sign-up from the email and the code claim as read. A code that is not text, when
/// there is an email to check it against, is a request that cannot be read; otherwise the
/// decision's own checks (no email, missing code) come first.
#[must_use]
pub fn triage<'a>(
    verifier: &Verifier,
    email: Option<&'a str>,
    code: &Claim<'_>,
    now: UnixTime,
) -> Decision<'a> {
    match code {
        Claim::Text(code) => decide(verifier, email, Some(code), now),
        Claim::NotText if email.is_some() => Decision::refuse(Reason::BadRequest),
        Claim::NotText | Claim::Missing => decide(verifier, email, None, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim named exactly `name`; of equal names, the last.
    fn exact<'b>(claims: &Claims<'b>, name: &str) -> Claim<'b> {
        claims
            .find(|key| key == name)
            .map_or(Claim::Missing, |(_, claim)| claim)
    }

    #[test]
    fn claims_are_text_not_text_or_missing() {
        let body =
            br#"{"a":"x","b":"\u0041","c":null,"d":5,"e":[1,{"f":2}],"A":"upper","a":"last"}"#;
        let claims = Claims::parse(body).unwrap();
        assert_eq!(exact(&claims, "a"), Claim::Text("last".into()));
        assert!(matches!(exact(&claims, "b"), Claim::Text(Cow::Owned(text)) if text == "A"));
        assert_eq!(exact(&claims, "c"), Claim::Missing);
        assert_eq!(exact(&claims, "d"), Claim::NotText);
        assert_eq!(exact(&claims, "e"), Claim::NotText);
        assert_eq!(exact(&claims, "z"), Claim::Missing);
        assert_eq!(exact(&claims, "B"), Claim::Missing);
        assert_eq!(claims.named("B"), Claim::Text("A".into()));
        assert_eq!(claims.named("A"), Claim::Text("upper".into()));
        let (name, _) = claims.find(|key| key.eq_ignore_ascii_case("a")).unwrap();
        assert_eq!(name, "a");
        let spaced = b" {\n \"a\" :\t\"x\" , \"b\" : null ,\r\n \"c\" : 5 } ";
        let spaced = Claims::parse(spaced).unwrap();
        assert_eq!(exact(&spaced, "a"), Claim::Text("x".into()));
        assert_eq!(exact(&spaced, "b"), Claim::Missing);
        assert_eq!(exact(&spaced, "c"), Claim::NotText);
        for bad in [
            &b"[]"[..],
            b"\"x\"",
            b"{",
            b"{} {}",
            b"",
            b"{\"a\":}",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(Claims::parse(bad).is_err(), "{bad:?}");
        }
    }
}
