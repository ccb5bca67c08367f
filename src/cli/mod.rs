//! Subcommands and their flags (clap derive), and the exit status they map to.

mod batch;
mod codes;
mod health;
mod keys;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status: 0 success (or `valid`), 1 a code that did not verify or a batch with rejected \
rows, 2 usage, configuration or I/O error.";

/// Invitation codes that need no database: mint them offline, verify them at sign-up.
#[derive(Debug, Parser)]
#[command(name = "invitegate", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new random key ring entry.
    #[command(after_help = "Examples:
  invitegate keygen                       # print a new entry, key id 1
  invitegate keygen --add-to keys.txt     # rotate: the new key signs, old keys still verify")]
    Keygen(keys::KeygenArgs),
    /// Mint a code for one email address or a domain.
    #[command(after_help = "Examples:
  invitegate mint --keys-file keys.txt --email alice@contoso.com --expires-in 14d
  invitegate mint --keys-file keys.txt --domain fabrikam.com --subdomains --expires-at 2027-01-01T00:00:00Z --json")]
    Mint(codes::MintArgs),
    /// Mint codes for a recipients CSV and write a mail-merge CSV.
    #[command(after_help = "Examples:
  invitegate batch --keys-file keys.txt --expires-in 30d recipients.csv -o merge.csv
  cat recipients.csv | invitegate batch --expires-in 2w --skip-invalid --rejects bad.csv - > merge.csv

Input: a header row with an `email` or a `domain` column (a `domain` column makes domain codes;
an `email` column beside it is the recipient). Optional `subdomains` (yes/no) and `expires_at`
(RFC 3339) columns. Output: every input column in order, then `code`, `kind`, `expires_at`.")]
    Batch(batch::BatchArgs),
    /// Check a code against an email address.
    #[command(after_help = "Examples:
  invitegate verify --keys-file keys.txt --email alice@contoso.com 243Q1-PYRG0-DVPFF-Z9H9F-NDX66
  invitegate verify --email alice@contoso.com --at 2026-12-01T00:00:00Z --json 243Q1-PYRG0-DVPFF-Z9H9F-NDX66")]
    Verify(codes::VerifyArgs),
    /// Run the Azure AD B2C API connector (HTTP).
    #[command(after_help = "Examples:
  invitegate serve --dev                  # try it: throwaway keys, prints a curl command
  BASIC_AUTH_USERNAME=b2c BASIC_AUTH_PASSWORD=... INVITEGATE_KEYS_FILE=keys.txt \\
    B2C_EXTENSIONS_APP_ID=... invitegate serve --listen 0.0.0.0:8080 --log-format json")]
    Serve(Box<serve::ServeArgs>),
    /// Show what a code's text says, without a key (nothing is authenticated).
    #[command(after_help = "Example:
  invitegate inspect 243Q1-PYRG0-DVPFF-Z9H9F-NDX66")]
    Inspect(codes::InspectArgs),
    /// Ask a running server's /healthz; exit 0 when it answers 200 (container health checks).
    #[command(after_help = "Example:
  invitegate healthcheck --url http://127.0.0.1:8080/healthz")]
    Healthcheck(health::HealthArgs),
}

/// Where the key ring comes from. Never from an argument: it would land in shell history and
/// in every user's view of the process list.
#[derive(Debug, Clone, Args)]
pub struct KeySource {
    /// Key ring file (`KID:BASE64` entries). Else INVITEGATE_KEYS_FILE, else INVITEGATE_KEYS.
    #[arg(long, value_name = "PATH")]
    keys_file: Option<PathBuf>,
}

/// The process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done; or the code is valid.
    Success,
    /// A code did not verify, or a batch rejected rows.
    NotVerified,
    /// Usage, configuration or I/O error.
    Error,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => Self::SUCCESS,
            Status::NotVerified => Self::from(1),
            Status::Error => Self::from(2),
        }
    }
}

/// Runs one subcommand.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Keygen(args) => keys::keygen(&args),
        Command::Mint(args) => codes::mint(&args),
        Command::Batch(args) => batch::batch(&args),
        Command::Verify(args) => codes::verify(&args),
        Command::Inspect(args) => codes::inspect(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Healthcheck(args) => health::healthcheck(&args),
    }
}
