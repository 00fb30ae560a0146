//! Durable key-value writes per second, with group commit and with one
//! fsync per write, at 1 and 32 concurrent writers, on a database on disk;
//! and what a `get` costs through the store against the same query on a
//! SQLite connection directly.
//!
//! `cargo bench -p ferry-store --bench group_commit` (set `FERRY_BENCH_DIR`
//! to measure on another filesystem; the default is the target directory,
//! which must not be a tmpfs for the numbers to mean anything).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_store::{KeyValue, SqliteDatabase};

const RUN_FOR: Duration = Duration::from_secs(3);

fn main() {
    let base = std::env::var_os("FERRY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("writers  one fsync per write  group commit  ratio");
    for writers in [1, 32] {
        let per_write = runtime.block_on(measure(&base, writers, 1));
        let grouped = runtime.block_on(measure(&base, writers, 512));
        println!(
            "{writers:>7}  {per_write:>14.0}/s  {grouped:>10.0}/s  {:>5.1}x",
            grouped / per_write
        );
    }
    let (through_store, direct) = runtime.block_on(get_cost(&base));
    println!(
        "get: {:.1} µs through the store, {:.1} µs on SQLite directly ({:.1}x)",
        through_store * 1e6,
        direct * 1e6,
        through_store / direct
    );
}

/// Seconds per `get` of a present key: through `KeyValue::get` (a hop to the
/// blocking pool and back) and as the bare query on one connection.
async fn get_cost(base: &std::path::Path) -> (f64, f64) {
    const GETS: u32 = 20_000;
    let dir = tempfile::tempdir_in(base).unwrap();
    let path = dir.path().join("kv.db");
    let db = SqliteDatabase::open(&path).unwrap();
    let store = db.store("bench", "default");
    store.set("key".into(), vec![7; 64]).await.unwrap();
    let started = Instant::now();
    for _ in 0..GETS {
        assert!(store.get("key").await.unwrap().is_some());
    }
    let through_store = started.elapsed().as_secs_f64() / f64::from(GETS);

    let connection = rusqlite::Connection::open(&path).unwrap();
    let started = Instant::now();
    for _ in 0..GETS {
        let value: Vec<u8> = connection
            .prepare_cached(
                "SELECT value FROM key_value WHERE app = ?1 AND store = ?2 AND key = ?3",
            )
            .unwrap()
            .query_row(("bench", "default", "key"), |row| row.get(0))
            .unwrap();
        assert_eq!(value.len(), 64);
    }
    let direct = started.elapsed().as_secs_f64() / f64::from(GETS);
    (through_store, direct)
}

/// Durable sets per second from `writers` tasks, each waiting for its write.
async fn measure(base: &std::path::Path, writers: usize, max_batch: usize) -> f64 {
    let dir = tempfile::tempdir_in(base).unwrap();
    let db = SqliteDatabase::open_with_batch_limit(&dir.path().join("kv.db"), max_batch).unwrap();
    let store: Arc<dyn KeyValue> = db.store("bench", "default");
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < RUN_FOR {
                    store
                        .set(format!("w{w}-{done}"), vec![7; 64])
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}
