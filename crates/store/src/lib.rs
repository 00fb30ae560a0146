//! Ferry's state backends, behind plain Rust traits.
//!
//! Two kinds of state: key-value stores and SQL databases ([`SqlDatabase`],
//! one SQLite file per label of an app, queried with the guest's SQL).
//!
//! A [`KeyValue`] is one store: one label of one app, on embedded SQLite
//! ([`SqliteDatabase`]) or on a Redis server ([`RedisDatabase`]). Backends hand them out
//! namespaced, so two apps sharing a state directory, or two labels of one
//! app, never see each other's keys. The embedded backend is SQLite
//! ([`SqliteDatabase`]): WAL mode with `synchronous=FULL`, so a write the
//! guest saw succeed survives `kill -9` and power loss, and writes that
//! arrive together share one transaction and one fsync (group commit).
//!
//! This crate knows nothing of wasmtime or WIT: the runtime's interface
//! bindings translate guests' calls into these traits, whatever version of
//! which interface the guest imports.

pub mod nats;
mod read_cache;
mod redis;
mod sql;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use nats::NatsDatabase;
pub use redis::RedisDatabase;
pub use sql::{
    MATCH_WORK, MAX_CONNECTIONS, MAX_RESULT_BYTES, QueryResult, SQLITE_HEAP_LIMIT,
    STATEMENT_TIMEOUT, SqlDatabase, SqlObserver, SqlSession, SqlValue, allowed_pragmas,
};
pub use sqlite::SqliteDatabase;
#[doc(hidden)]
pub use sqlite::SqliteOptions;

/// The longest key, in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 4096;

/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// Why a store operation failed: the caller's input, or the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the key is longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLong,
    #[error("the value is larger than {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge,
    #[error("the value of `{0}` is not a counter (8 bytes, a little-endian signed integer)")]
    NotACounter(String),
    #[error("incrementing `{0}` overflowed")]
    Overflow(String),
    #[error("the store failed: {0}")]
    Backend(String),
    /// SQLite's own error for a statement (syntax, constraint, …).
    #[error("{0}")]
    Sql(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Backend(e.to_string())
    }
}

/// One key-value store. Every method may be called from many tasks at once;
/// each write is durable when it returns `Ok`.
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;

    /// The values of `keys`, in order (`None` where a key is absent).
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, Error>;

    async fn exists(&self, key: &str) -> Result<bool, Error>;

    /// Every key, sorted.
    async fn keys(&self) -> Result<Vec<String>, Error>;

    /// Up to `limit` keys, sorted, starting after `after`.
    async fn keys_page(&self, after: Option<String>, limit: usize) -> Result<Vec<String>, Error>;

    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.set_many(vec![(key, value)]).await
    }

    /// Sets all of `entries` in one transaction.
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error>;

    async fn delete(&self, key: String) -> Result<(), Error> {
        self.delete_many(vec![key]).await
    }

    /// Deletes all of `keys` (absent ones are fine) in one transaction.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error>;

    /// Adds `delta` to the counter at `key` (absent: 0) and returns the new
    /// value. A counter is stored as 8 little-endian bytes, as Spin stores
    /// it.
    async fn increment(&self, key: String, delta: i64) -> Result<i64, Error>;

    /// Sets `key` to `new` if its value is still `expected` (`None`: the key
    /// is absent); whether it did.
    async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, Error>;
}

/// Checks a key and value against the limits.
pub(crate) fn check_entry(key: &str, value: Option<&[u8]>) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLong);
    }
    if value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(Error::ValueTooLarge);
    }
    Ok(())
}
