//! What the person signing up reads, per outcome and locale.
//!
//! English is built in. A messages file (JSON) adds locales and may override the default:
//! `{"default": {...}, "fr": {"mistyped": "..."}, "fr-CA": {...}}`. A locale is chosen from
//! B2C's `ui_locales` (`fr-FR,fr`): for each tag in order, the exact tag, then its language;
//! else the default. A locale that lacks a message falls back to the default's.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::Error;
use crate::expiry::Expiry;
use crate::reason::Reason;

/// The built-in English message of each reason.
fn english(reason: Reason) -> &'static str {
    match reason {
        Reason::MissingCode => "Please enter the invitation code from your invitation email.",
        Reason::Malformed => {
            "That is not an invitation code. Invitation codes have 25 letters and digits, \
             like ABCDE-FGHJK-MNPQR-STVWX-YZ012."
        }
        Reason::Mistyped => {
            "The invitation code has a typo. Please check it against your invitation email \
             and try again."
        }
        Reason::NotValid => {
            "This invitation code is not valid for this email address. Please sign up with \
             the email address your invitation was sent to."
        }
        Reason::Revoked => {
            "This invitation code has been withdrawn. Please ask for a new invitation."
        }
        Reason::Expired => {
            "This invitation code expired on {expiry}. Please ask for a new invitation."
        }
        Reason::BadRequest => "We could not read your sign-up request. Please try again.",
        Reason::NoEmail => {
            "We need an email address to check your invitation code. Please sign up with \
             an email address."
        }
        Reason::WrongStep => {
            "Sign-up is not available right now. Please contact the people who invited you."
        }
    }
}
type MessageSet = HashMap<Reason, String>;

/// Messages for every key, by locale.
#[derive(Debug, Clone)]
pub struct Messages {
    default: MessageSet,
    /// Keyed by lower-case language tag.
    locales: HashMap<String, MessageSet>,
}

impl Default for Messages {
    fn default() -> Self {
        Self::english()
    }
}

impl Messages {
    /// The built-in English messages only.
    #[must_use]
    pub fn english() -> Self {
        let default = Reason::ALL
            .iter()
            .map(|&reason| (reason, english(reason).to_owned()))
            .collect();
        Self {
            default,
            locales: HashMap::new(),
        }
    }

    /// The message for `reason` in the best locale of `locales` (`fr-FR,fr`). The message of
    /// [`Reason::Expired`] has `{expiry}` replaced by `expiry`'s date (YYYY-MM-DD, UTC).
    #[must_use]
    pub fn refusal(
        &self,
        reason: Reason,
        expiry: Option<Expiry>,
        locales: Option<&str>,
    ) -> Cow<'_, str> {
        let text = self.get(reason, locales);
        match expiry {
            Some(expiry) if reason == Reason::Expired => {
                Cow::Owned(text.replace("{expiry}", &expiry.to_datetime().date().to_string()))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// The built-in messages plus those of a messages file.
    ///
    /// # Errors
    ///
    /// [`Error::Messages`] when the text is not a JSON object of objects of known message keys
    /// to strings.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let file: HashMap<String, MessageSet> =
            serde_json::from_str(text).map_err(|err| Error::Messages {
                reason: err.to_string(),
            })?;
        let mut messages = Self::english();
        for (tag, set) in file {
            if tag.eq_ignore_ascii_case("default") {
                messages.default.extend(set);
            } else {
                messages.locales.insert(tag.to_ascii_lowercase(), set);
            }
        }
        Ok(messages)
    }

    /// The message for `reason` in the best locale of `ui_locales`, with `{expiry}` in it
    /// still to be filled in.
    #[must_use]
    pub fn get(&self, reason: Reason, ui_locales: Option<&str>) -> &str {
        let tags = ui_locales
            .unwrap_or_default()
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|tag| !tag.is_empty() && !tag.starts_with("q="));
        for tag in tags {
            let tag = tag.to_ascii_lowercase();
            let language = tag.split(['-', '_']).next().unwrap_or_default();
            for candidate in [tag.as_str(), language] {
                if let Some(text) = self.locales.get(candidate).and_then(|set| set.get(&reason)) {
                    return text;
                }
            }
        }
        self.default
            .get(&reason)
            .map_or(english(reason), String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_choice_exact_then_language_then_default() {
        let messages = Messages::from_json(
            r#"{"fr": {"mistyped": "Faute de frappe."}, "fr-CA": {"mistyped": "Erreur."},
                "default": {"revoked": "Gone."}}"#,
        )
        .unwrap();
        assert_eq!(messages.get(Reason::Mistyped, Some("fr-CA")), "Erreur.");
        assert_eq!(
            messages.get(Reason::Mistyped, Some("fr-FR,fr")),
            "Faute de frappe."
        );
        assert_eq!(
            messages.get(Reason::Mistyped, Some("de-DE, FR")),
            "Faute de frappe."
        );
        assert!(
            messages
                .get(Reason::Mistyped, Some("en-US"))
                .starts_with("The invitation")
        );
        assert!(
            messages
                .get(Reason::NotValid, Some("fr"))
                .starts_with("This invitation")
        );
        assert_eq!(messages.get(Reason::Revoked, None), "Gone.");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Messages::from_json(r#"{"fr": {"typo": "x"}}"#).is_err());
        assert!(Messages::from_json("[]").is_err());
    }
}
