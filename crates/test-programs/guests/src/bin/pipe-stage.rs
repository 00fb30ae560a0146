//! One stage of a `ferry pipe` pipeline, by its first argument:
//! - `cat`: copies stdin to stdout;
//! - `grep PATTERN`: writes the lines of stdin that contain `PATTERN`;
//! - `fail-after N`: copies `N` bytes, then panics (a trap);
//! - `count`: writes `bytes <B> lines <L>` for what it read;
//! - `file PATH`: writes the file at `PATH` (or `cannot read PATH: …`),
//!   ignoring stdin;
//! - `tag`: writes each line of stdin prefixed with `$TAG: ` (or
//!   `untagged: `).
//!
//! A stage that cannot write (the next one ended) exits with status 1.

use std::io::{BufRead as _, Read as _, Write as _};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut output = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let written = match args.first().map(String::as_str) {
        Some("cat") => std::io::copy(&mut input, &mut output).map(drop),
        Some("grep") => {
            let pattern = args.get(1).cloned().unwrap_or_default();
            let mut line = Vec::new();
            loop {
                line.clear();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) => break Ok(()),
                    Ok(_) => {
                        if line
                            .windows(pattern.len().max(1))
                            .any(|w| w == pattern.as_bytes())
                        {
                            if let Err(e) = output.write_all(&line) {
                                break Err(e);
                            }
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
        }
        Some("fail-after") => {
            let limit: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            let copied = std::io::copy(&mut (&mut input).take(limit), &mut output);
            let _ = output.flush();
            if copied.is_ok() {
                panic!("failing after {limit} bytes");
            }
            copied.map(drop)
        }
        Some("count") => {
            let (mut bytes, mut lines) = (0u64, 0u64);
            let mut buffer = vec![0; 64 << 10];
            loop {
                match input.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        bytes += n as u64;
                        lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
                    }
                    Err(_) => break,
                }
            }
            writeln!(output, "bytes {bytes} lines {lines}")
        }
        Some("file") => {
            let path = args.get(1).cloned().unwrap_or_default();
            match std::fs::read(&path) {
                Ok(bytes) => output.write_all(&bytes),
                Err(e) => writeln!(output, "cannot read {path}: {e}"),
            }
        }
        Some("tag") => {
            let tag = std::env::var("TAG").unwrap_or_else(|_| "untagged".into());
            let mut written = Ok(());
            for line in input.lines() {
                let Ok(line) = line else { break };
                written = writeln!(output, "{tag}: {line}");
                if written.is_err() {
                    break;
                }
            }
            written
        }
        other => {
            eprintln!("no stage {other:?}");
            std::process::exit(2);
        }
    };
    if written.and_then(|()| output.flush()).is_err() {
        std::process::exit(1);
    }
}
