//! The `invitegate` command line: parse, build configuration, call the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse_args();
    match cli::run(args) {
        Ok(status) => status.into(),
        Err(err) => {
            // One line, with every context layer: "reading keys file k.txt: entry 2: ...".
            eprintln!("invitegate: {err:#}");
            cli::Status::Error.into()
        }
    }
}
