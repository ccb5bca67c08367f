//! Campaigns: the recipients CSV that `batch` reads, the same row minter, one email a row,
//! and a journal that makes a run resumable.
//!
//! A campaign runs in three steps, the same whatever carries the mail:
//!
//! 1. [`campaign::open_journal`] opens the journal and applies the resume rules (a resumed
//!    campaign keeps its codes' expiry);
//! 2. [`campaign::check`] reads every row once ([`prepare::prepare`]: read, minted, rendered,
//!    built) and sets it against the journal, before any message leaves;
//! 3. [`pool::deliver`] hands the rows still to send to a [`Transport`] (SMTP or Microsoft
//!    Graph), paced and retried, journalling each row before and after its message goes.
//!
//! The caller owns the async runtime: `deliver` and the transports are `async`. Codes are
//! deterministic (the same key, audience and expiry give the same code), so a resumed run
//! sends the codes the first run would have. [`dry_run::write`] writes the messages as files
//! instead.
//!
//! The messages still to send are held in memory between the check and the end of the run:
//! a few kilobytes a row.

pub mod campaign;
pub mod dry_run;
pub mod http;
pub mod journal;
pub mod oauth;
pub mod pacing;
pub mod pool;
pub mod prepare;
pub mod reply;
pub mod template;
pub mod transport;

use std::path::Path;
use std::time::Duration;

use lettre::Address;
use lettre::message::Mailbox;

pub use campaign::{Checked, Counts, Ending, ExpiryAsked, Ready, check, open_journal};
pub use journal::{Journal, JournalState, Record, RowStatus};
pub use pacing::{Pacer, Rate};
pub use pool::deliver;
pub use prepare::{Mail, Prepared, RowOutcome, prepare};
pub use reply::Reply;
pub use template::{Columns, Rendered, TemplateSource, Templates, Vars};
pub use transport::Transport;
pub use transport::graph::{GraphSettings, GraphTransport};
pub use transport::smtp::{SmtpPassword, SmtpSettings, SmtpTransport, TlsMode};

use crate::batch::{MintOptions, ReadOptions};
use crate::{Expiry, KeyRing};

/// Settings of one campaign.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// How rows are minted (the default expiry is the journal's on a resumed run).
    pub mint: MintOptions,
    /// How the recipients file is read.
    pub read: ReadOptions,
    /// The `From` of every message.
    pub from: Mailbox,
    /// Send every message to this mailbox instead of its recipient (a test run), the real
    /// recipient named in front of the subject.
    pub to_one: Option<Mailbox>,
    /// `sign_up_url` in templates.
    pub sign_up_url: Option<String>,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// The rate limit; `None` for none.
    pub rate: Option<Rate>,
    /// Leave rows whose outcome the journal does not know unsent, instead of sending again.
    pub skip_uncertain: bool,
    /// Send again rows refused for good in an earlier run, though the row has not changed.
    pub retry_rejected: bool,
    /// How temporary failures are retried.
    pub retry: Retry,
    /// Send at most this many rows (the first ones still to send); the others are left for
    /// a later run.
    pub limit: Option<u64>,
}

/// Retries of temporary failures (4xx replies, lost connections): `attempts` in all, waiting
/// `first_delay`, then twice as long each time.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The wait before the second attempt.
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_secs(1),
        }
    }
}

/// What a campaign reads: the key ring, the templates, the settings, and what the journal
/// says of earlier runs.
#[derive(Debug, Clone, Copy)]
pub struct Campaign<'a> {
    /// The key ring; its signing key mints.
    pub ring: &'a KeyRing,
    /// The message templates.
    pub templates: &'a Templates,
    /// The settings.
    pub options: &'a SendOptions,
    /// The journal as read when the run started (empty for a new campaign).
    pub journal: &'a JournalState,
    /// The journal's path, for messages.
    pub journal_path: &'a Path,
}

/// What happened, for the caller to show: while the journal is opened and the rows checked,
/// then as messages go.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A campaign with a journal is resumed.
    Resuming {
        /// The journal.
        journal: &'a Path,
        /// The expiry its codes keep.
        expires_at: Option<Expiry>,
    },
    /// A relative expiry asked for again differs by more than a day from the campaign's,
    /// which is kept.
    ExpiryKept {
        /// The `--expires-in` asked for.
        asked_in: &'a str,
    },
    /// A row is wrong.
    Invalid {
        /// The row's line.
        line: u64,
        /// Why.
        reason: &'a str,
    },
    /// A valid row is not sent by this run; [`RowOutcome::left_out`] says why.
    LeftOut(&'a RowOutcome),
    /// A row handed over by an earlier run with no reply recorded is sent again.
    SendingAgain {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The code's fingerprint.
        code: &'a str,
    },
    /// An address that an earlier run sent a message to is no longer in the file.
    NoLongerInFile {
        /// The address.
        to: &'a str,
        /// Its line then.
        line: u64,
    },
    /// The message was accepted.
    Sent {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
    },
    /// The message was refused for good, for the recipient's sake.
    Rejected {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The reply.
        reply: &'a str,
        /// The row's fields.
        record: &'a csv::ByteRecord,
    },
    /// The message was refused for now (after the retries), or for a reason that is not the
    /// recipient's: not sent; a later run sends it again.
    Deferred {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The last reply.
        reply: &'a str,
    },
    /// The provider asked to slow down; no message starts before the wait is over.
    Throttled {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// What the provider said.
        reply: &'a str,
        /// How long the run waits.
        wait: Duration,
    },
    /// The provider could not be reached with retries. `uncertain` when the row's outcome
    /// is unknown: a connection broke while the message may have been on its way.
    GaveUp {
        /// The row's line.
        line: u64,
        /// The recipient.
        to: &'a Address,
        /// The last error.
        reply: &'a str,
        /// Whether the provider may have taken it.
        uncertain: bool,
    },
}

/// Why a run stopped before the end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// The shutdown future completed (Ctrl-C).
    Interrupted,
    /// The provider could not be reached with retries.
    ServerLost(String),
    /// The provider deferred or refused, for reasons not the recipients', this many messages
    /// in a row with none accepted between: it is refusing the campaign (a login, a quota,
    /// a policy). Its last reply.
    ServerRefuses(u64, String),
    /// The provider refused in a way no message of this campaign gets past until an
    /// administrator acts (a missing permission, a login that no longer works).
    Fatal(String),
    /// The sender's sending quota is used up; the same command sends the rest later.
    Quota(String),
}

/// Counts of a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages accepted.
    pub sent: u64,
    /// Messages refused for good, for the recipient's sake.
    pub rejected: u64,
    /// Retries made.
    pub retried: u64,
    /// Waits the provider asked for (throttling).
    pub throttled: u64,
    /// Rows deferred: refused for now, or not for the recipient's sake (sent by a later run).
    pub deferred: u64,
    /// Rows given up after retries, the provider out of reach.
    pub gave_up: u64,
    /// Of those, the rows whose outcome is unknown: a connection broke during an attempt.
    pub uncertain: u64,
    /// Rows sent again although an earlier run may have sent them.
    pub resent_uncertain: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stop>,
}
