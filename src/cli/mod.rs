//! Subcommands and their flags (clap derive), and the exit status they map to.

mod batch;
mod codes;
mod health;
mod keys;
mod output;
mod send;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status: 0 success (or `valid`), 1 a code that did not verify (`unknown-key` included) or \
a batch with rejected rows, 2 usage, configuration or I/O error, 130 interrupted (Ctrl-C; no \
output file is left half written), 141 standard output was closed early (`| head`).";

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
  invitegate keygen                              # print a new entry, key id 1
  invitegate keygen --add-to keys.txt --stage    # rotation step 1: verify-only everywhere
  invitegate keygen --add-to keys.txt            # the new key signs at once")]
    Keygen(keys::KeygenArgs),
    /// List the key ring's keys, or rotate: promote a staged key, retire an old one.
    #[command(after_help = "Rotation across several servers:
  invitegate keygen --add-to keys.txt --stage    # 1. new key 3, verify-only; copy keys.txt to
                                                 #    every server and reload them
  invitegate keys promote 3 --keys-file keys.txt # 2. on the minting host: key 3 signs
  invitegate keys retire 2 --keys-file keys.txt  # 3. after the last code of key 2 expired
  invitegate keys list --keys-file keys.txt      # ids, roles, fingerprints (never key bytes)")]
    Keys(keys::KeysArgs),
    /// Mint a code for one email address or a domain.
    #[command(after_help = "Examples:
  invitegate mint --keys-file keys.txt --email alice@contoso.com --expires-in 14d
  invitegate mint --keys-file keys.txt --domain fabrikam.com --subdomains \\
    --expires-at 2027-01-01 --json
  invitegate mint --keys-file keys.txt --email bob@contoso.com \\
    --expires-at 2027-01-01 --tz Europe/Paris")]
    Mint(codes::MintArgs),
    /// Mint codes for a recipients CSV and write a mail-merge CSV.
    #[command(after_help = "Examples:
  invitegate batch --keys-file keys.txt --expires-in 30d recipients.csv -o merge.csv
  invitegate batch --expires-at 2027-01-31 --encoding windows-1252 --bom \\
    excel.csv -o merge.csv
  cat recipients.csv | invitegate batch --expires-in 2w --skip-invalid \\
    --rejects bad.csv - > merge.csv

Input: a header row with an email column (email, e-mail, email address, e-mail address, mail, in
any case, or the one --email-column names) or a `domain` column (domain codes; an email column
beside it is the recipient). Optional `subdomains` (yes/no) and `expires_at` (RFC 3339) columns.
Fields separated by `,`, `;` or tab (detected). Output: every input column in order, then
`code`, `kind`, `expires_at`; cells starting with = + - @ get a leading ' (--raw-cells keeps
them). A recipient named twice is minted once (--allow-duplicates). A file output appears only
when the run succeeds, mode 0600.")]
    Batch(batch::BatchArgs),
    /// Mint a code for each recipients row and email it over SMTP, resumably.
    #[command(after_help = "Examples:
  invitegate send recipients.csv --keys-file keys.txt --expires-in 14d \\
    --from 'Contoso <invites@contoso.com>' --dry-run out/
  INVITEGATE_SMTP_PASSWORD=... invitegate send recipients.csv \\
    --keys-file keys.txt --expires-in 14d \\
    --from 'Contoso <invites@contoso.com>' \\
    --smtp smtp://mail.contoso.com:587 --smtp-username invites --rate 600/min
  # after a crash, Ctrl-C or SIGTERM, run the same command again: it sends only what is left

Exit status: 0 every row sent (now or by an earlier run), 1 rows refused or deferred by the
server, invalid or duplicate, 2 usage, configuration or server error (server gone or refusing
the campaign), 128 + the signal when stopped by one (130 Ctrl-C, 143 SIGTERM).")]
    Send(Box<send::SendArgs>),
    /// Check a code against an email address.
    #[command(after_help = "Examples:
  invitegate verify --keys-file keys.txt --email alice@contoso.com \\
    243Q1-PYRG0-DVPFF-Z9H9F-NDX66
  invitegate verify --email alice@contoso.com --at 2026-12-01T00:00:00Z --json \\
    243Q1-PYRG0-DVPFF-Z9H9F-NDX66")]
    Verify(codes::VerifyArgs),
    /// Serve the sign-up check over HTTP: Entra External ID, B2C user flows, B2C custom
    /// policies.
    #[command(after_help = "Examples:
  invitegate serve --dev                  # try it: throwaway keys, prints a curl command
  invitegate serve --check                # after configuring: every setting checked, the
                                          # Entra keys fetched, nothing bound (like nginx -t)
  INVITEGATE_KEYS_FILE=keys.txt ENTRA_TENANT_ID=<tenant GUID> ENTRA_TENANT_SUBDOMAIN=contoso \\
    ENTRA_AUDIENCE=<extension app id> B2C_EXTENSIONS_APP_ID=... invitegate serve --check
  BASIC_AUTH_USERNAME=b2c BASIC_AUTH_PASSWORD=... INVITEGATE_KEYS_FILE=keys.txt \\
    B2C_EXTENSIONS_APP_ID=... invitegate serve --listen 0.0.0.0:8080 \\
    --log-format json")]
    Serve(Box<serve::ServeArgs>),
    /// Show what a code's text says, without a key (nothing is authenticated).
    #[command(after_help = "Example:
  invitegate inspect 243Q1-PYRG0-DVPFF-Z9H9F-NDX66")]
    Inspect(codes::InspectArgs),
    /// Ask a running server's /healthz; exit 0 when it answers 200 (container health checks).
    #[command(after_help = "Examples:
  invitegate healthcheck       # where `serve` listens with the same environment
  invitegate healthcheck --url http://127.0.0.1:8080/healthz")]
    Healthcheck(health::HealthArgs),
}

/// Where the key ring comes from. Never from an argument: it would land in shell history and
/// in every user's view of the process list.
#[derive(Debug, Clone, Args)]
pub struct KeySource {
    /// Key ring file (`KID:BASE64` entries). Else INVITEGATE_KEYS_FILE, else INVITEGATE_KEYS
    /// (with a warning when both are set); `keys promote` and `keys retire` change a file,
    /// so they need one of the first two.
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
    /// Stopped by this signal (SIGINT, SIGTERM, SIGHUP); the work done so far is kept:
    /// 128 + the signal, as shells report.
    Signalled(i32),
    /// Standard output was closed before everything was written (`| head`): 128 + SIGPIPE,
    /// what a shell reports for a program that SIGPIPE ended.
    ClosedPipe,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => Self::SUCCESS,
            Status::NotVerified => Self::from(1),
            Status::Error => Self::from(2),
            Status::Signalled(signal) => Self::from(u8::try_from(128 + signal).unwrap_or(130)),
            Status::ClosedPipe => Self::from(141),
        }
    }
}

impl Cli {
    /// The command line as clap parses it (exiting with its message on a usage error), with
    /// what only clap's matches know: whether `serve`'s address came from INVITEGATE_LISTEN.
    pub fn parse_args() -> Self {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
        if let (Command::Serve(args), Some(("serve", serve))) =
            (&mut cli.command, matches.subcommand())
        {
            args.listen_from_env =
                serve.value_source("listen") == Some(clap::parser::ValueSource::EnvVariable);
        }
        cli
    }
}

/// Runs one subcommand. Writing to a closed standard output ends quietly with
/// [`Status::ClosedPipe`]: the reader wanted no more.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match run_command(cli) {
        Err(err) if is_closed_pipe(&err) => Ok(Status::ClosedPipe),
        result => result,
    }
}

/// Whether an error, or any error it wraps, is a write to a pipe nobody reads.
pub fn is_closed_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    err.chain().any(|cause| {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == BrokenPipe;
        }
        if let Some(invitegate::Error::Io { kind, .. }) = cause.downcast_ref::<invitegate::Error>()
        {
            return *kind == BrokenPipe;
        }
        if let Some(csv) = cause.downcast_ref::<csv::Error>()
            && let csv::ErrorKind::Io(io) = csv.kind()
        {
            return io.kind() == BrokenPipe;
        }
        false
    })
}

fn run_command(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Keygen(args) => keys::keygen(&args),
        Command::Keys(args) => keys::keys(&args),
        Command::Mint(args) => codes::mint(&args),
        Command::Batch(args) => batch::batch(&args),
        Command::Send(args) => send::send(&args),
        Command::Verify(args) => codes::verify(&args),
        Command::Inspect(args) => codes::inspect(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Healthcheck(args) => health::healthcheck(&args),
    }
}
