//! Microsoft Graph: each message is one `POST {graph}/v1.0/users/{sender}/sendMail` with an
//! app-only token (Mail.Send application permission), answered 202.
//!
//! Graph takes one body a message: the HTML one when there is an HTML template (Exchange
//! writes the plain-text part for recipients who want one), else the text one.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::Transport;
use crate::Error;
use crate::send::Rate;
use crate::send::http;
use crate::send::oauth::{OAuthSettings, TokenError, TokenSource};
use crate::send::prepare::Mail;
use crate::send::reply::Reply;

/// Graph's service.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";

/// Exchange Online's limit for one mailbox: 30 messages a minute.
pub const DEFAULT_RATE: Rate = Rate {
    count: 30,
    per: Duration::from_secs(60),
};

/// Exchange Online's limit of concurrent requests to one mailbox.
pub const MAX_CONCURRENCY: usize = 4;

/// The wait when Graph throttles without saying how long.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// Graph error codes that mean the mailbox's sending quota is used up for now.
const QUOTA_CODES: &[&str] = &[
    "ErrorQuotaExceeded",
    "ErrorSubmissionQuotaExceeded",
    "ErrorExceededMessageLimit",
    "ErrorMessageSubmissionBlocked",
];

/// Where to send from.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// Graph's URL, `https://graph.microsoft.com` by default.
    pub graph_url: Url,
    /// The mailbox that sends (its address or user ID).
    pub sender: String,
}

impl GraphSettings {
    /// The scope of a token for Graph: `{graph}/.default`.
    #[must_use]
    pub fn scope(&self) -> String {
        format!("{}/.default", self.graph_url.as_str().trim_end_matches('/'))
    }
}

/// Sends through Graph's `sendMail`.
#[derive(Debug)]
pub struct GraphTransport {
    settings: GraphSettings,
    endpoint: Url,
    client: reqwest::Client,
    tokens: TokenSource,
}

impl GraphTransport {
    /// A transport for `settings`, with tokens from `oauth`. Asks for nothing until the check
    /// or the first message.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the HTTP client cannot be set up.
    pub fn new(settings: GraphSettings, oauth: OAuthSettings) -> Result<Self, Error> {
        let endpoint = http::join(
            &settings.graph_url,
            &["v1.0", "users", &settings.sender, "sendMail"],
        );
        let client = http::client(endpoint.scheme() == "https")?;
        let tokens = TokenSource::new(oauth)?;
        Ok(Self {
            settings,
            endpoint,
            client,
            tokens,
        })
    }

    /// What to grant, said with each refusal that needs an administrator.
    fn grant(&self) -> String {
        format!(
            "the app needs Microsoft Graph's Mail.Send application permission with admin \
             consent, scoped to the mailbox {} (an Exchange Online application access policy \
             or RBAC for Applications), and that mailbox must exist in Exchange Online",
            self.settings.sender
        )
    }

    fn body<'a>(&self, mail: &'a Mail) -> bytes::Bytes {
        let (content_type, content) = match &mail.html {
            Some(html) => ("HTML", html.as_str()),
            None => ("Text", mail.text.as_str()),
        };
        let address = |mailbox: &'a lettre::message::Mailbox| Recipient {
            email_address: EmailAddress {
                address: AsRef::<str>::as_ref(&mailbox.email),
                name: mailbox.name.as_deref(),
            },
        };
        let request = SendMail {
            message: Message {
                body: Body {
                    content,
                    content_type,
                },
                from: address(&mail.from),
                subject: &mail.subject,
                to_recipients: [address(&mail.to)],
            },
            save_to_sent_items: false,
        };
        // Serializing borrowed strings and plain structs into a Vec cannot fail.
        serde_json::to_vec(&request).unwrap_or_default().into()
    }

    /// What Graph's answer means for the row.
    fn classify(&self, status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Reply {
        let error: Option<GraphError> = serde_json::from_slice::<GraphErrorBody>(body)
            .ok()
            .map(|b| b.error);
        let (code, message) = error
            .map(|e| {
                (
                    e.code,
                    http::cut(e.message.lines().next().unwrap_or_default()),
                )
            })
            .unwrap_or_default();
        let reply = if code.is_empty() {
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        } else {
            format!("{} {code}: {message}", status.as_u16())
        };
        if QUOTA_CODES.contains(&code.as_str()) {
            return Reply::Quota(reply);
        }
        match status.as_u16() {
            429 | 503 => Reply::Throttled {
                reply,
                wait: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
            },
            400 if code == "ErrorInvalidRecipients" => Reply::Rejected(reply),
            401 => Reply::Fatal(format!(
                "{reply}; Graph refused a token just renewed: check that the app's token is for \
                 {} and that {}",
                self.settings.graph_url,
                self.grant()
            )),
            403 => Reply::Fatal(format!("{reply}; {}", self.grant())),
            404 if matches!(
                code.as_str(),
                "MailboxNotEnabledForRESTAPI"
                    | "ErrorInvalidUser"
                    | "ResourceNotFound"
                    | "Request_ResourceNotFound"
            ) =>
            {
                Reply::Fatal(format!("{reply}; {}", self.grant()))
            }
            // A gateway or server failure: the request may have been taken.
            500..=599 => Reply::Retry {
                reply,
                may_have_gone: true,
                temporary: false,
            },
            _ => Reply::Refused(reply),
        }
    }
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize, Default)]
struct GraphError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a token that could not be had means for the row.
fn token_reply(err: TokenError) -> Reply {
    if err.refused {
        Reply::Fatal(err.reason)
    } else {
        Reply::Retry {
            reply: err.reason,
            may_have_gone: false,
            temporary: false,
        }
    }
}

/// `Retry-After` in seconds (what Graph sends).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Transport for GraphTransport {
    fn name(&self) -> &'static str {
        "Microsoft Graph"
    }

    async fn check(&self) -> Result<(), Error> {
        self.tokens
            .token()
            .await
            .map(|_| ())
            .map_err(|err| Error::Config {
                reason: format!("graph: no token: {}", err.reason),
            })
    }

    async fn send(&self, mail: &Mail) -> Reply {
        let body = self.body(mail);
        let (mut generation, mut token) = match self.tokens.token().await {
            Ok(token) => token,
            Err(err) => return token_reply(err),
        };
        let mut renewed = false;
        loop {
            let sent = self
                .client
                .post(self.endpoint.clone())
                .bearer_auth(token.secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(err) => {
                    // A request never sent (no connection) cannot have gone; one that timed
                    // out or broke after it left may have.
                    let may_have_gone = !err.is_connect();
                    return Reply::Retry {
                        reply: format!("cannot reach Graph: {}", http::error_chain(&err)),
                        may_have_gone,
                        temporary: false,
                    };
                }
            };
            let status = response.status();
            if status == StatusCode::ACCEPTED {
                let id = response
                    .headers()
                    .get("request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(|id| format!(" (request-id {})", http::cut(id)))
                    .unwrap_or_default();
                return Reply::Accepted(format!("202 Accepted{id}"));
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                // The token lapsed or was revoked: renewed once, then the same request again.
                renewed = true;
                match self.tokens.renew(generation).await {
                    Ok((next, fresh)) => {
                        (generation, token) = (next, fresh);
                        continue;
                    }
                    Err(err) => return token_reply(err),
                }
            }
            let wait = retry_after(response.headers());
            let bytes = http::read_body(response).await.unwrap_or_default();
            return self.classify(status, wait, &bytes);
        }
    }
}

/// The `sendMail` request: the message and no copy in Sent Items. Its members are in the order
/// a JSON object of them would list them (by name), as the tests and the bench's baseline see
/// them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendMail<'a> {
    message: Message<'a>,
    save_to_sent_items: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    body: Body<'a>,
    from: Recipient<'a>,
    subject: &'a str,
    to_recipients: [Recipient<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    content: &'a str,
    content_type: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Recipient<'a> {
    email_address: EmailAddress<'a>,
}

#[derive(Serialize)]
struct EmailAddress<'a> {
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::oauth::{ClientSecret, Credential};
    use serde_json::json;

    fn transport() -> GraphTransport {
        let graph_url = http::parse_url("--graph-url", "http://127.0.0.1:9").unwrap();
        let settings = GraphSettings {
            graph_url: graph_url.clone(),
            sender: "invites@contoso.com".to_owned(),
        };
        let oauth = OAuthSettings {
            authority: graph_url,
            tenant: "contoso.onmicrosoft.com".to_owned(),
            client_id: "app".to_owned(),
            credential: Credential::Secret(ClientSecret::new("s3cr3t".to_owned()).unwrap()),
            scope: settings.scope(),
        };
        GraphTransport::new(settings, oauth).unwrap()
    }

    fn error(code: &str) -> Vec<u8> {
        json!({"error": {"code": code, "message": "said\nmore"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn graphs_refusals_are_classified() {
        let t = transport();
        let reply = t.classify(
            StatusCode::BAD_REQUEST,
            None,
            &error("ErrorInvalidRecipients"),
        );
        assert_eq!(
            reply,
            Reply::Rejected("400 ErrorInvalidRecipients: said".to_owned())
        );
        let wait = Some(Duration::from_secs(7));
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let reply = t.classify(status, wait, b"");
            assert!(
                matches!(reply, Reply::Throttled { wait, .. } if wait == Duration::from_secs(7)),
                "{reply:?}"
            );
        }
        for code in ["ErrorAccessDenied", "ErrorSendAsDenied"] {
            let Reply::Fatal(text) = t.classify(StatusCode::FORBIDDEN, None, &error(code)) else {
                panic!("{code}")
            };
            assert!(text.contains(code) && text.contains("Mail.Send"), "{text}");
            assert!(text.contains("invites@contoso.com"), "{text}");
        }
        let reply = t.classify(
            StatusCode::NOT_FOUND,
            None,
            &error("MailboxNotEnabledForRESTAPI"),
        );
        assert!(matches!(reply, Reply::Fatal(_)), "{reply:?}");
        let reply = t.classify(StatusCode::FORBIDDEN, None, &error("ErrorQuotaExceeded"));
        assert!(matches!(reply, Reply::Quota(_)), "{reply:?}");
        let reply = t.classify(StatusCode::BAD_REQUEST, None, &error("ErrorInvalidRequest"));
        assert!(matches!(reply, Reply::Refused(_)), "{reply:?}");
        let reply = t.classify(StatusCode::BAD_GATEWAY, None, b"<html>");
        assert!(
            matches!(
                reply,
                Reply::Retry {
                    may_have_gone: true,
                    ..
                }
            ),
            "{reply:?}"
        );
    }

    #[test]
    fn the_request_names_the_recipient_and_keeps_no_copy() {
        let t = transport();
        let mail = Mail {
            from: "Contoso <invites@contoso.com>".parse().unwrap(),
            to: "a@contoso.com".parse().unwrap(),
            subject: "Your code".to_owned(),
            text: "text".to_owned(),
            html: Some("<p>html</p>".to_owned()),
            message_id: None,
        };
        let body: serde_json::Value = serde_json::from_slice(&t.body(&mail)).unwrap();
        assert_eq!(body["saveToSentItems"], false);
        assert_eq!(
            body["message"]["toRecipients"][0]["emailAddress"]["address"],
            "a@contoso.com"
        );
        assert_eq!(body["message"]["body"]["contentType"], "HTML");
        assert_eq!(body["message"]["from"]["emailAddress"]["name"], "Contoso");
        assert_eq!(
            t.endpoint.as_str(),
            "http://127.0.0.1:9/v1.0/users/invites@contoso.com/sendMail"
        );
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
