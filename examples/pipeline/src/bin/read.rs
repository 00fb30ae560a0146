//! `read PATH…`: writes each file to stdout. In this app only the `read`
//! component is granted files, so only this stage can read them.

use std::io::Write as _;

fn main() {
    let mut out = std::io::stdout().lock();
    for path in std::env::args().skip(1) {
        match std::fs::read(&path) {
            Ok(bytes) => out.write_all(&bytes).expect("writing stdout"),
            Err(e) => {
                eprintln!("read: {path}: {e}");
                std::process::exit(1);
            }
        }
    }
}
