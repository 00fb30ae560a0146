//! `tally [N]`: the N (default 10) most frequent lines of stdin, with their
//! counts, most frequent first (ties in alphabetical order).

use std::collections::BTreeMap;
use std::io::BufRead as _;

fn main() {
    let top: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in std::io::stdin().lock().lines() {
        *counts.entry(line.expect("reading stdin")).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, count) in counts.into_iter().take(top) {
        println!("{count:>4} {word}");
    }
}
