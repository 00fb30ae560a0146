//! The in-process measurements the benchmarks compare Ferry against: durable
//! sets per second with and without group commit, and what a `get` costs
//! through the store against the bare query on one SQLite connection.
//!
//! Shared by `cargo xtask group-commit` and `cargo xtask bench`, so that the
//! baseline in BENCHMARKS.md is one piece of code however it was run. Uses
//! only the store's public API.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_store::{KeyValue, SqliteDatabase, SqliteOptions};
use rusqlite::OptionalExtension as _;

/// Durable sets per second (64-byte values, distinct keys) from `writers`
/// tasks for `run_for`, each waiting for its write before the next, on a new
/// database in `dir`; at most `max_batch` writes per transaction (1: one
/// fsync per write).
pub async fn durable_sets_per_second(
    dir: &Path,
    writers: usize,
    max_batch: usize,
    run_for: Duration,
) -> Result<f64, ferry_store::Error> {
    let dir = scratch(dir)?;
    let options = SqliteOptions {
        max_batch,
        ..SqliteOptions::default()
    };
    let db = SqliteDatabase::open_with(&dir.path().join("kv.db"), options)?;
    let store: Arc<dyn KeyValue> = db.store("bench", "default");
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < run_for {
                    store.set(format!("w{writer}-{done}"), vec![7; 64]).await?;
                    done += 1;
                }
                Ok::<_, ferry_store::Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task
            .await
            .map_err(|e| ferry_store::Error::Backend(format!("a writer task failed: {e}")))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// What one `get` of a present 64-byte value costs.
#[derive(Debug, Clone, Copy)]
pub struct GetCost {
    /// Through [`KeyValue::get`] with the read cache (the key is cached).
    pub cached: Duration,
    /// Through [`KeyValue::get`] without the cache: a hop to the blocking
    /// pool and back.
    pub uncached: Duration,
    /// The store's query on one SQLite connection, on the calling thread.
    pub direct: Duration,
}

/// Measures [`GetCost`] on a new database in `dir`.
pub async fn get_cost(dir: &Path) -> Result<GetCost, ferry_store::Error> {
    const GETS: u32 = 20_000;
    let dir = scratch(dir)?;
    let path = dir.path().join("kv.db");
    let mut through_store = [Duration::ZERO; 2];
    for (cache_bytes, took) in [SqliteOptions::default().cache_bytes, 0]
        .into_iter()
        .zip(&mut through_store)
    {
        let options = SqliteOptions {
            cache_bytes,
            ..SqliteOptions::default()
        };
        // Dropped at the end of the iteration, so the next open is a new
        // one with its own options.
        let db = SqliteDatabase::open_with(&path, options)?;
        let store = db.store("bench", "default");
        store.set("key".into(), vec![7; 64]).await?;
        let started = Instant::now();
        for _ in 0..GETS {
            present(store.get("key").await?)?;
        }
        *took = started.elapsed() / GETS;
    }

    // The bare query: the statement the store runs for a `get` (its
    // `sqlite.rs`), prepared once, on a connection of its own.
    let backend = |e: rusqlite::Error| ferry_store::Error::Backend(e.to_string());
    let connection = rusqlite::Connection::open(&path).map_err(backend)?;
    let started = Instant::now();
    for _ in 0..GETS {
        let value: Option<Vec<u8>> = connection
            .prepare_cached(
                "SELECT value FROM key_value WHERE app = ?1 AND store = ?2 AND key = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(["bench", "default", "key"], |row| row.get(0))
                    .optional()
            })
            .map_err(backend)?;
        present(value)?;
    }
    Ok(GetCost {
        cached: through_store[0],
        uncached: through_store[1],
        direct: started.elapsed() / GETS,
    })
}

fn present(value: Option<Vec<u8>>) -> Result<(), ferry_store::Error> {
    match value {
        Some(value) if value.len() == 64 => Ok(()),
        other => Err(ferry_store::Error::Backend(format!(
            "the benchmark's key read back as {other:?}"
        ))),
    }
}

fn scratch(dir: &Path) -> Result<tempfile::TempDir, ferry_store::Error> {
    tempfile::tempdir_in(dir)
        .map_err(|e| ferry_store::Error::Backend(format!("{}: {e}", dir.display())))
}
