//! `words`: one lowercase word per line, from the text on stdin.

use std::io::{BufRead as _, Write as _};

fn main() {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("reading stdin");
        for word in line
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
        {
            writeln!(out, "{}", word.to_lowercase()).expect("writing stdout");
        }
    }
}
