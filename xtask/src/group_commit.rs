//! Durable key-value writes per second, with group commit and with one
//! fsync per write, at 1 and 32 concurrent writers, on a database on disk;
//! and what a `get` costs through the store (with and without its read
//! cache) against the same query on a SQLite connection directly. The
//! measurements are `baseline.rs`'s, which `cargo xtask bench`
//! also reports beside the same operations through a guest.
//!
//! `cargo xtask group-commit` (set `FERRY_BENCH_DIR` to measure on another
//! filesystem; the default is the target directory, which must not be a
//! tmpfs for the numbers to mean anything).

use std::time::Duration;

use crate::baseline;

const RUN_FOR: Duration = Duration::from_secs(3);

/// Runs the measurements and prints them.
pub fn run() {
    let base = std::env::var_os("FERRY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp"))
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("writers  one fsync per write  group commit  ratio");
    for writers in [1, 32] {
        let sets = |max_batch| {
            runtime
                .block_on(baseline::durable_sets_per_second(
                    &base, writers, max_batch, RUN_FOR,
                ))
                .unwrap()
        };
        let per_write = sets(1);
        let grouped = sets(512);
        println!(
            "{writers:>7}  {per_write:>14.0}/s  {grouped:>10.0}/s  {:>5.1}x",
            grouped / per_write
        );
    }
    let get = runtime.block_on(baseline::get_cost(&base)).unwrap();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "get: {:.2} µs through the store's cache, {:.1} µs through the store without it, \
         {:.1} µs on SQLite directly ({:.2}x / {:.1}x)",
        micros(get.cached),
        micros(get.uncached),
        micros(get.direct),
        micros(get.cached) / micros(get.direct),
        micros(get.uncached) / micros(get.direct),
    );
}
