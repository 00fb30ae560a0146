//! A WASI 0.3 command (`wasi:cli/run@0.3.0`, an async `run`) for
//! `[[trigger.command]]`: prints each argument on a line (`arg
//! <argument>`) through WASI 0.3's stdout stream, after awaiting a WASI 0.3
//! timer (so `run` really suspends), and fails (`run` returns its error)
//! when the last argument is `fail`. No `fn main`: the export is `run`.

#![no_main]

use wasip3::wit_stream;

struct Command;

impl wasip3::exports::cli::run::Guest for Command {
    async fn run() -> Result<(), ()> {
        wasip3::clocks::monotonic_clock::wait_for(10_000_000).await;
        let args = wasip3::cli::environment::get_arguments();
        let text: String = args.iter().map(|a| format!("arg {a}\n")).collect();
        let (mut tx, rx) = wit_stream::new();
        let written = wasip3::cli::stdout::write_via_stream(rx);
        let remaining = tx.write_all(text.into_bytes()).await;
        assert!(remaining.is_empty());
        drop(tx);
        written.await.map_err(|_| ())?;
        if args.last().map(String::as_str) == Some("fail") {
            return Err(());
        }
        Ok(())
    }
}

wasip3::cli::command::export!(Command);
