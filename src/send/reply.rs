//! Whose fault a refusal is: what one attempt at one message came to, in terms every
//! transport shares, so that retries, the journal and the accounting mean the same whatever
//! carried the message.

use std::time::Duration;

/// What one attempt at one message came to. Each transport turns its own replies (SMTP codes,
/// HTTP statuses and error codes) into one of these; the campaign does the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Accepted; the reply to journal.
    Accepted(String),
    /// Refused for good, for the recipient's sake (an unknown mailbox, a bad address): the
    /// row goes to the rejects file and the run goes on.
    Rejected(String),
    /// Refused for a reason that is not the recipient's and that retrying will not mend (a
    /// policy, the sender, a message the provider will not take): the row is deferred, and
    /// five such rows in a row stop the run.
    Refused(String),
    /// Worth another attempt after the retry delay (a 4xx, a lost connection).
    Retry {
        /// What went wrong.
        reply: String,
        /// Whether the message may have reached the provider (a connection that broke
        /// rather than one never made): the row is then uncertain if retries run out.
        may_have_gone: bool,
        /// A refusal for now (4xx), not a lost connection: deferred when retries run out,
        /// and the run goes on.
        temporary: bool,
    },
    /// The provider asks to slow down: wait this long, then try again. Does not count as a
    /// retry nor toward the rows deferred in a row.
    Throttled {
        /// What the provider said.
        reply: String,
        /// How long it asked to wait.
        wait: Duration,
    },
    /// No message of this campaign can go until an administrator acts (a permission, a
    /// login): the run stops at once.
    Fatal(String),
    /// The sender's sending quota is used up: the run stops cleanly, and the same command
    /// sends the rest later.
    Quota(String),
}

/// Whose sake a refusal is for, from its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// This recipient's: an unknown, disabled or full mailbox, a bad address.
    Recipient,
    /// The server's or the sender's: a login, a policy, a quota, a protocol or system error.
    /// Every row would meet it.
    Sender,
}

/// Whose sake a permanent (5xx) SMTP refusal is for. An enhanced status code (RFC 3463) says
/// it best: class X.1 (addressing) and X.2 (mailbox) concern the recipient, the others
/// (system, network, protocol, content, security: `5.7.8` a login, `5.7.60` not allowed to
/// send as this sender) the sender. Without one, 550 to 553 are the recipient's (RFC 5321:
/// mailbox unavailable, not local, storage exceeded, name not allowed), the others the
/// sender's.
#[must_use]
pub fn smtp_blame(code: Option<u16>, text: &str) -> Blame {
    let enhanced = text.split_whitespace().next().and_then(|token| {
        let mut parts = token.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        (parts.next().is_none()
            && matches!(class, "2" | "4" | "5")
            && numeric(subject)
            && numeric(detail))
        .then_some(subject)
    });
    match (enhanced, code) {
        (Some("1" | "2"), _) | (None, Some(550..=553)) => Blame::Recipient,
        _ => Blame::Sender,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_blamed_on_the_recipient_only_when_the_reply_says_so() {
        let recipient = [
            (
                550,
                "5.1.1 <a@contoso.com>: Recipient address rejected: User unknown",
            ),
            (
                550,
                "5.2.1 The email account that you tried to reach is disabled",
            ),
            (552, "5.2.2 Mailbox full"),
            (550, "Requested action not taken: mailbox unavailable"),
            (553, "mailbox name not allowed"),
            (554, "5.1.10 RESOLVER.ADR.RecipientNotFound; not found"),
        ];
        for (code, text) in recipient {
            assert_eq!(
                smtp_blame(Some(code), text),
                Blame::Recipient,
                "{code} {text}"
            );
        }
        let sender = [
            (
                550,
                "5.7.60 SMTP; Client does not have permissions to send as this sender",
            ),
            (535, "5.7.8 Authentication credentials invalid"),
            (535, "Authentication failed"),
            (554, "Transaction failed"),
            (550, "5.4.1 Relay Access Denied"),
            (552, "5.3.4 Message size exceeds fixed limit"),
            (500, "5.5.1 Command unrecognized"),
        ];
        for (code, text) in sender {
            assert_eq!(smtp_blame(Some(code), text), Blame::Sender, "{code} {text}");
        }
        assert_eq!(smtp_blame(None, ""), Blame::Sender);
    }
}
