//! The embedded key-value backend: one SQLite file holding every store of
//! every app that uses it, one row per key.
//!
//! Durability and throughput come from how writes are made. All writes go to
//! one writer thread, which takes every write waiting when it wakes (up to
//! [`MAX_BATCH`]) and applies them in one transaction, each in a savepoint of
//! its own so one failing write fails alone; the commit is the batch's only
//! fsync (WAL, `synchronous=FULL`), and only then does any of its writers
//! hear `Ok`. Under load, durable writes cost one fsync per batch, not per
//! request; alone, a write pays one fsync, as it must. Because one thread
//! applies every write, read-modify-writes (increment, compare-and-swap) are
//! atomic without locks.
//!
//! Reads run on tokio's blocking pool with connections of their own, which
//! WAL lets read while the writer writes. Nothing here blocks an async
//! worker thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::{Error, KeyValue, check_entry};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// One SQLite key-value file. Cheap to clone; the writer thread stops when
/// the last clone (and every store from it) is dropped.
#[derive(Clone)]
pub struct SqliteDatabase {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    writes: Mutex<mpsc::Sender<Write>>,
    readers: Mutex<Vec<Connection>>,
}

/// A write and who waits for its outcome.
struct Write {
    app: String,
    store: String,
    op: WriteOp,
    reply: oneshot::Sender<Result<Written, Error>>,
}

enum WriteOp {
    SetMany(Vec<(String, Vec<u8>)>),
    DeleteMany(Vec<String>),
    Increment(String, i64),
    CompareAndSwap {
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

enum Written {
    Done,
    Counter(i64),
    Swapped(bool),
}

impl SqliteDatabase {
    /// Opens (creating if needed) the database at `path`, whose directory
    /// must exist.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_batch_limit(path, MAX_BATCH)
    }

    /// As [`open`](Self::open), committing at most `max_batch` writes per
    /// transaction: 1 is one fsync per write, the baseline group commit is
    /// measured against (`benches/group_commit.rs`).
    #[doc(hidden)]
    pub fn open_with_batch_limit(path: &Path, max_batch: usize) -> Result<Self, Error> {
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS key_value (
                 app   TEXT NOT NULL,
                 store TEXT NOT NULL,
                 key   TEXT NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (app, store, key)
             ) WITHOUT ROWID;",
        )?;
        let (sender, receiver) = mpsc::channel();
        let name = format!("ferry-kv-writer {}", path.display());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || write_loop(writer, receiver, max_batch.max(1)))
            .map_err(|e| Error::Backend(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                writes: Mutex::new(sender),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The store `label` of app `app`.
    pub fn store(&self, app: &str, label: &str) -> Arc<dyn KeyValue> {
        Arc::new(SqliteStore {
            db: self.clone(),
            app: app.to_owned(),
            store: label.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, app: &str, store: &str, op: WriteOp) -> Result<Written, Error> {
        let (reply, outcome) = oneshot::channel();
        let write = Write {
            app: app.to_owned(),
            store: store.to_owned(),
            op,
            reply,
        };
        self.shared
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(write)
            .map_err(|_| Error::Backend("the writer thread has stopped".into()))?;
        outcome
            .await
            .map_err(|_| Error::Backend("the writer thread has stopped".into()))?
    }

    /// Runs `read` on a pooled connection, off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = shared
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => {
                    let connection = Connection::open(&shared.path)?;
                    connection.busy_timeout(std::time::Duration::from_secs(5))?;
                    connection
                }
            };
            let result = read(&connection);
            let mut idle = shared.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|e| Error::Backend(format!("a read failed: {e}")))?
    }
}

/// The writer thread: batches of waiting writes, one transaction each.
fn write_loop(mut connection: Connection, writes: mpsc::Receiver<Write>, max_batch: usize) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let outcomes = commit(&mut connection, &batch);
        for (write, outcome) in batch.into_iter().zip(outcomes) {
            let _ = write.reply.send(outcome);
        }
    }
}

/// Applies `batch` in one transaction, each write in its own savepoint.
fn commit(connection: &mut Connection, batch: &[Write]) -> Vec<Result<Written, Error>> {
    let mut transaction =
        match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(transaction) => transaction,
            Err(e) => {
                let e = Error::from(e);
                return batch.iter().map(|_| Err(e.clone())).collect();
            }
        };
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        let outcome = (|| {
            let savepoint = transaction.savepoint()?;
            let outcome = apply(&savepoint, write)?;
            savepoint.commit()?;
            Ok(outcome)
        })();
        outcomes.push(outcome);
    }
    match transaction.commit() {
        Ok(()) => outcomes,
        Err(e) => {
            tracing::error!("key-value commit failed: {e}");
            let e = Error::from(e);
            batch.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

fn apply(connection: &Connection, write: &Write) -> Result<Written, Error> {
    let (app, store) = (&write.app, &write.store);
    match &write.op {
        WriteOp::SetMany(entries) => {
            for (key, value) in entries {
                check_entry(key, Some(value))?;
            }
            let mut statement = connection.prepare_cached(
                "INSERT INTO key_value (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in entries {
                statement.execute(params![app, store, key, value])?;
            }
            Ok(Written::Done)
        }
        WriteOp::DeleteMany(keys) => {
            let mut statement = connection.prepare_cached(
                "DELETE FROM key_value WHERE app = ?1 AND store = ?2 AND key = ?3",
            )?;
            for key in keys {
                statement.execute(params![app, store, key])?;
            }
            Ok(Written::Done)
        }
        WriteOp::Increment(key, delta) => {
            check_entry(key, None)?;
            let current = match select(connection, app, store, key)? {
                None => 0,
                Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                    .map(i64::from_le_bytes)
                    .map_err(|_| Error::NotACounter(key.clone()))?,
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| Error::Overflow(key.clone()))?;
            upsert(connection, app, store, key, &next.to_le_bytes())?;
            Ok(Written::Counter(next))
        }
        WriteOp::CompareAndSwap { key, expected, new } => {
            check_entry(key, Some(new))?;
            if select(connection, app, store, key)? != *expected {
                return Ok(Written::Swapped(false));
            }
            upsert(connection, app, store, key, new)?;
            Ok(Written::Swapped(true))
        }
    }
}

fn select(
    connection: &Connection,
    app: &str,
    store: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(connection
        .prepare_cached("SELECT value FROM key_value WHERE app = ?1 AND store = ?2 AND key = ?3")?
        .query_row(params![app, store, key], |row| row.get(0))
        .optional()?)
}

fn upsert(
    connection: &Connection,
    app: &str,
    store: &str,
    key: &str,
    value: &[u8],
) -> Result<(), Error> {
    connection
        .prepare_cached(
            "INSERT INTO key_value (app, store, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (app, store, key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![app, store, key, value])?;
    Ok(())
}

/// One app's store in a [`SqliteDatabase`].
struct SqliteStore {
    db: SqliteDatabase,
    app: String,
    store: String,
}

impl SqliteStore {
    fn names(&self) -> (String, String) {
        (self.app.clone(), self.store.clone())
    }
}

#[async_trait::async_trait]
impl KeyValue for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        check_entry(key, None)?;
        let (app, store) = self.names();
        let key = key.to_owned();
        self.db.read(move |c| select(c, &app, &store, &key)).await
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        for key in &keys {
            check_entry(key, None)?;
        }
        let (app, store) = self.names();
        self.db
            .read(move |c| {
                keys.into_iter()
                    .map(|key| {
                        let value = select(c, &app, &store, &key)?;
                        Ok((key, value))
                    })
                    .collect()
            })
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.get(key).await?.is_some())
    }

    async fn keys(&self) -> Result<Vec<String>, Error> {
        let (app, store) = self.names();
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT key FROM key_value WHERE app = ?1 AND store = ?2 ORDER BY key",
                )?;
                let keys = statement
                    .query_map(params![app, store], |row| row.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(keys)
            })
            .await
    }

    async fn keys_page(&self, after: Option<String>, limit: usize) -> Result<Vec<String>, Error> {
        let (app, store) = self.names();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT key FROM key_value WHERE app = ?1 AND store = ?2
                     AND (?3 IS NULL OR key > ?3) ORDER BY key LIMIT ?4",
                )?;
                let keys = statement
                    .query_map(params![app, store, after, limit], |row| row.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(keys)
            })
            .await
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        for (key, value) in &entries {
            check_entry(key, Some(value))?;
        }
        self.db
            .write(&self.app, &self.store, WriteOp::SetMany(entries))
            .await
            .map(|_| ())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        self.db
            .write(&self.app, &self.store, WriteOp::DeleteMany(keys))
            .await
            .map(|_| ())
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, Error> {
        match self
            .db
            .write(&self.app, &self.store, WriteOp::Increment(key, delta))
            .await?
        {
            Written::Counter(value) => Ok(value),
            _ => Err(Error::Backend("unexpected writer answer".into())),
        }
    }

    async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, Error> {
        match self
            .db
            .write(
                &self.app,
                &self.store,
                WriteOp::CompareAndSwap { key, expected, new },
            )
            .await?
        {
            Written::Swapped(swapped) => Ok(swapped),
            _ => Err(Error::Backend("unexpected writer answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backend-independent behaviour is in `crate::tests`; this is what
    /// only a file can show.
    #[tokio::test]
    async fn another_open_of_the_file_sees_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let db = SqliteDatabase::open(&path).unwrap();
        let store = db.store("app", "default");
        store.set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(store.increment("n".into(), 5).await, Ok(5));
        // A counter is 8 little-endian bytes, as Spin stores it.
        assert_eq!(
            store.get("n").await.unwrap(),
            Some(5i64.to_le_bytes().to_vec())
        );
        drop((store, db));
        let db = SqliteDatabase::open(&path).unwrap();
        assert_eq!(db.store("app", "default").keys().await.unwrap(), ["k", "n"]);
    }
}
