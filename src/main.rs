//! The `ferry` binary: parses arguments, runs the command, and on failure
//! prints the whole error chain and exits with a code that says what kind of
//! failure it was (see [`ferry::exit_code`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    match ferry::run(std::env::args_os()) {
        Ok(code) => code,
        Err(error) => {
            // Manifest errors render their own `error:` lines with locations.
            let message = error.to_string();
            if message.starts_with("error: ") {
                eprintln!("{message}");
            } else {
                eprintln!("error: {message}");
            }
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(ferry::exit_code(&error))
        }
    }
}
