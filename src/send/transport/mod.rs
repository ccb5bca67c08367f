//! The seam between a campaign and what carries its messages: SMTP ([`smtp`]) or Microsoft
//! Graph ([`graph`]). A transport makes one attempt at one message and says what came of it
//! as a [`Reply`]; pacing, retries, the journal and the accounting are the campaign's, the
//! same for every transport. Another transport is one more file here.
pub mod graph;
pub mod smtp;

use std::future::Future;

use super::prepare::Mail;
use super::reply::Reply;
use crate::Error;

/// What carries a campaign's messages.
pub trait Transport: Send + Sync + 'static {
    /// What messages call it: "the server", "Microsoft Graph".
    fn name(&self) -> &'static str;

    /// Checks, before the first message, that messages can go: connects and logs in, or
    /// obtains a token. Nothing is sent.
    ///
    /// # Errors
    ///
    /// The transport's, saying what to fix; never a secret.
    fn check(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// One attempt at one message, bounded in time: a transport that gets no answer says
    /// so as a [`Reply::Retry`] that may have gone.
    fn send(&self, mail: &Mail) -> impl Future<Output = Reply> + Send;
}
