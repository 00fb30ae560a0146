//! The `ferry` command line: argument parsing, the commands' output for
//! people, build commands (`ferry build`), templates (`ferry new`) and file
//! watching (`ferry up --watch`). Everything else is a library: `ferry-control` loads, serves
//! and hosts apps, `ferry-client` talks to a live host.

mod build;
mod cli;
mod new;
mod registry;
mod watch;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

pub use cli::Cli;

/// Exit codes: 1 for a failure while running, 3 for an app that cannot be
/// loaded (bad manifest, runtime config or component), 4 when the listen
/// address cannot be bound. Usage errors exit with 2 (clap's convention).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error
        .chain()
        .any(|e| e.is::<ferry_manifest::ManifestError>())
    {
        return 3;
    }
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ferry_api::Failure>())
        .map_or(1, |f| f.exit_code)
}

/// Runs the command line `args` (including the program name).
pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)));
        }
    };
    cli::run(cli)
}
