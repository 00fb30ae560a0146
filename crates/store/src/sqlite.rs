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
//! A `get` is first looked up in a bounded in-memory [`ReadCache`] of
//! recent values, kept exactly as fresh as the file by the writer thread
//! (see that module for why it cannot go stale). Misses run on tokio's
//! blocking pool with connections of their own, which WAL lets read while
//! the writer writes. Nothing here blocks an async worker thread on the
//! disk.
//!
//! The cache is only right if nothing but this process's writer changes the
//! file, so a file is opened once per process (a second
//! [`SqliteDatabase::open`] of it shares the first) and held under an
//! exclusive lock (`<file>.lock`) that another process's open is refused
//! at.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::read_cache::{self, Committed, Lookup, MAX_CACHED_VALUE, ReadCache};
use crate::{Error, KeyValue, check_entry};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// Bytes of values (and keys) kept in memory per file.
const CACHE_BYTES: usize = 32 << 20;

/// Every file open in this process, by canonical path.
static OPEN: Mutex<BTreeMap<PathBuf, Weak<Shared>>> = Mutex::new(BTreeMap::new());

/// One SQLite key-value file. Cheap to clone; the writer thread stops when
/// the last clone (and every store from it) is dropped.
#[derive(Clone)]
pub struct SqliteDatabase {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// The open file's device and inode.
    identity: (u64, u64),
    writes: Mutex<mpsc::Sender<Write>>,
    readers: Mutex<Vec<Connection>>,
    cache: Arc<ReadCache>,
    /// Holds the file's lock for as long as the file is open here.
    _lock: File,
}

/// How a [`SqliteDatabase`] is opened; the defaults are what Ferry uses,
/// the others are for benchmarks and tests.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    /// Most writes committed in one transaction (1: one fsync per write).
    pub max_batch: usize,
    /// Bytes the read cache may hold (0: no cache).
    pub cache_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: MAX_BATCH,
            cache_bytes: CACHE_BYTES,
        }
    }
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
    /// must exist, or shares it if this process has it open already.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// As [`open`](Self::open), with `options` (ignored if the file is
    /// open already).
    #[doc(hidden)]
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self, Error> {
        let canonical = canonical(path)?;
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, shared| shared.strong_count() > 0);
        // Shared only while the path still names the file that is open: a
        // file removed (its app deleted) while a request still holds it is
        // not what a new app at the same path gets.
        if let Some(shared) = open.get(&canonical).and_then(Weak::upgrade)
            && file_identity(&canonical) == Some(shared.identity)
        {
            return Ok(Self { shared });
        }
        let lock = lock(&canonical)?;
        let writer = Connection::open(path)?;
        crate::sql::keep_wal_files(&writer)?;
        crate::sql::harden(&writer)?;
        let identity = file_identity(&canonical).ok_or_else(|| {
            Error::Backend(format!("{} vanished as it was opened", path.display()))
        })?;
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
        let cache = Arc::new(ReadCache::new(options.cache_bytes));
        let (sender, receiver) = mpsc::channel();
        let name = format!("ferry-kv-writer {}", path.display());
        let writer_cache = cache.clone();
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || write_loop(writer, receiver, max_batch, &writer_cache))
            .map_err(|e| Error::Backend(format!("starting the writer thread: {e}")))?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            identity,
            writes: Mutex::new(sender),
            readers: Mutex::new(Vec::new()),
            cache,
            _lock: lock,
        });
        open.insert(canonical, Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// The store `label` of app `app`.
    pub fn store(&self, app: &str, label: &str) -> Arc<dyn KeyValue> {
        Arc::new(SqliteStore {
            db: self.clone(),
            app: app.to_owned(),
            store: label.to_owned(),
            namespace: read_cache::namespace(app, label),
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
                    // Still the file the writer writes (not a new one in
                    // the place of a removed one).
                    if file_identity(&shared.path) != Some(shared.identity) {
                        return Err(Error::Backend(format!(
                            "{} was removed",
                            shared.path.display()
                        )));
                    }
                    crate::sql::keep_wal_files(&connection)?;
                    crate::sql::harden(&connection)?;
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

/// `path` with its directory resolved, so that two spellings of one file
/// are one entry in [`OPEN`] (the file itself may not exist yet).
fn canonical(path: &Path) -> Result<PathBuf, Error> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Backend(format!(
            "{} is not a file path",
            path.display()
        )));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::Backend(format!("{}: {e}", dir.display())))?;
    Ok(dir.join(name))
}

/// The device and inode of the file at `path`, if there is one.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Takes the exclusive lock beside the file at `path`, which another
/// process holding it means refusing to open.
fn lock(path: &Path) -> Result<File, Error> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Backend(format!("{}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Backend(format!(
            "{} is in use by another process (it holds {}); a key-value file is served by one Ferry process at a time",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Backend(format!(
            "locking {}: {e}",
            lock_path.display()
        ))),
    }
}

/// The writer thread: batches of waiting writes, one transaction each,
/// telling `cache` which keys each batch changes and to what.
fn write_loop(
    mut connection: Connection,
    writes: mpsc::Receiver<Write>,
    max_batch: usize,
    cache: &ReadCache,
) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        cache.begin_batch(batch.iter().flat_map(Write::keys));
        let outcomes = commit(&mut connection, &batch);
        cache.end_batch(
            batch
                .iter()
                .zip(&outcomes)
                .flat_map(|(write, outcome)| write.committed(outcome)),
        );
        for (write, outcome) in batch.into_iter().zip(outcomes) {
            let _ = write.reply.send(outcome);
        }
    }
}

impl Write {
    /// The cache keys this write may change.
    fn keys(&self) -> Vec<String> {
        let key = |key: &str| read_cache::cache_key(&self.app, &self.store, key);
        match &self.op {
            WriteOp::SetMany(entries) => entries.iter().map(|(k, _)| key(k)).collect(),
            WriteOp::DeleteMany(keys) => keys.iter().map(|k| key(k)).collect(),
            WriteOp::Increment(k, _) | WriteOp::CompareAndSwap { key: k, .. } => vec![key(k)],
        }
    }

    /// What this write left in the file, given its outcome: nothing where
    /// it failed or changed nothing (its savepoint was rolled back, so the
    /// keys hold what earlier writes left).
    fn committed(&self, outcome: &Result<Written, Error>) -> Vec<(String, Committed)> {
        let key = |key: &str| read_cache::cache_key(&self.app, &self.store, key);
        let value = |value: &Vec<u8>| {
            if value.len() <= MAX_CACHED_VALUE {
                Committed::Value(Some(value.clone()))
            } else {
                Committed::Uncached
            }
        };
        match (&self.op, outcome) {
            (WriteOp::SetMany(entries), Ok(_)) => {
                entries.iter().map(|(k, v)| (key(k), value(v))).collect()
            }
            (WriteOp::DeleteMany(keys), Ok(_)) => keys
                .iter()
                .map(|k| (key(k), Committed::Value(None)))
                .collect(),
            (WriteOp::Increment(k, _), Ok(Written::Counter(counter))) => {
                vec![(
                    key(k),
                    Committed::Value(Some(counter.to_le_bytes().to_vec())),
                )]
            }
            (WriteOp::CompareAndSwap { key: k, new, .. }, Ok(Written::Swapped(true))) => {
                vec![(key(k), value(new))]
            }
            _ => Vec::new(),
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

pub(crate) fn select(
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
    /// What the read cache puts before this store's keys.
    namespace: String,
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
        let cache_key = format!("{}{key}", self.namespace);
        let ticket = match self.db.shared.cache.get(&cache_key) {
            Lookup::Hit(value) => return Ok(value),
            Lookup::Miss(ticket) => ticket,
        };
        let (app, store) = self.names();
        let key = key.to_owned();
        let value = self.db.read(move |c| select(c, &app, &store, &key)).await?;
        self.db.shared.cache.fill(cache_key, &value, ticket);
        Ok(value)
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        for key in &keys {
            check_entry(key, None)?;
        }
        let cache = &self.db.shared.cache;
        let mut values = Vec::with_capacity(keys.len());
        let mut misses = Vec::new();
        for key in keys {
            let cache_key = format!("{}{key}", self.namespace);
            match cache.get(&cache_key) {
                Lookup::Hit(value) => values.push((key, value)),
                Lookup::Miss(ticket) => {
                    misses.push((values.len(), key.clone(), cache_key, ticket));
                    values.push((key, None));
                }
            }
        }
        if misses.is_empty() {
            return Ok(values);
        }
        let (app, store) = self.names();
        let wanted: Vec<String> = misses.iter().map(|(_, key, _, _)| key.clone()).collect();
        let read = self
            .db
            .read(move |c| {
                wanted
                    .iter()
                    .map(|key| select(c, &app, &store, key))
                    .collect::<Result<Vec<_>, Error>>()
            })
            .await?;
        for ((index, _, cache_key, ticket), value) in misses.into_iter().zip(read) {
            cache.fill(cache_key, &value, ticket);
            values[index].1 = value;
        }
        Ok(values)
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

    #[tokio::test]
    async fn a_file_is_opened_once_per_process_and_refused_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let db = SqliteDatabase::open(&path).unwrap();
        db.store("app", "default")
            .set("k".into(), b"v".to_vec())
            .await
            .unwrap();
        // Another spelling of the same file shares the open one (a second
        // writer and cache would be a second lock holder).
        let again = SqliteDatabase::open(&dir.path().join(".").join("kv.db")).unwrap();
        assert!(Arc::ptr_eq(&db.shared, &again.shared));
        drop((db, again));

        // Another process holding the lock (flock locks belong to an open
        // file, so this one stands for it).
        let other = File::open(dir.path().join("kv.db.lock")).unwrap();
        other.try_lock().unwrap();
        let refused = SqliteDatabase::open(&path).err().unwrap().to_string();
        assert!(
            refused.contains("is in use by another process"),
            "{refused}"
        );
        drop(other);
        let db = SqliteDatabase::open(&path).unwrap();
        assert_eq!(
            db.store("app", "default").get("k").await.unwrap(),
            Some(b"v".to_vec())
        );
    }

    /// A file removed while a store on it is still held (an app deleted
    /// during one of its requests) is not what the next open of the same
    /// path gets: a new app there starts empty, and its writes land in the
    /// new file, where a restart finds them.
    #[tokio::test]
    async fn a_removed_file_is_not_shared_with_the_next_open_of_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let path = data.join("kv.db");
        let old = SqliteDatabase::open(&path).unwrap();
        let old_store = old.store("app", "default");
        old_store
            .set("secret".into(), b"the old app's".to_vec())
            .await
            .unwrap();
        std::fs::remove_dir_all(&data).unwrap();
        std::fs::create_dir(&data).unwrap();

        let new = SqliteDatabase::open(&path).unwrap();
        let new_store = new.store("app", "default");
        assert_eq!(new_store.get("secret").await.unwrap(), None);
        new_store
            .set("mine".into(), b"the new app's".to_vec())
            .await
            .unwrap();
        // The old store's late write goes to its own (removed) file, and
        // its reads never open the new one.
        old_store
            .set("late".into(), b"lost with the old app".to_vec())
            .await
            .unwrap();
        assert_eq!(new_store.get("late").await.unwrap(), None);
        drop((old_store, old, new_store, new));

        let reopened = SqliteDatabase::open(&path).unwrap();
        let store = reopened.store("app", "default");
        assert_eq!(store.keys().await.unwrap(), ["mine"]);
    }

    /// The cache keeps what the last write to a key left, even where that
    /// value is too large to keep and an earlier one in the same batch was
    /// not.
    #[tokio::test]
    async fn the_last_write_in_a_batch_wins_in_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDatabase::open(&dir.path().join("kv.db")).unwrap();
        let store = db.store("app", "default");
        let big = vec![2; MAX_CACHED_VALUE + 1];
        store
            .set_many(vec![("k".into(), vec![1; 8]), ("k".into(), big.clone())])
            .await
            .unwrap();
        assert_eq!(store.get("k").await.unwrap(), Some(big));
        store
            .set_many(vec![("k".into(), vec![3; 8]), ("k".into(), vec![4; 8])])
            .await
            .unwrap();
        assert_eq!(store.get("k").await.unwrap(), Some(vec![4; 8]));
    }

    /// A cache far smaller than the data keeps answering right: values
    /// come from the file once pushed out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_cache_answers_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            cache_bytes: 4096,
            ..SqliteOptions::default()
        };
        let db = SqliteDatabase::open_with(&dir.path().join("kv.db"), options).unwrap();
        let store = db.store("app", "default");
        for round in 0..3u8 {
            let entries = (0..200u8)
                .map(|i| (format!("k{i}"), vec![i ^ round; 100]))
                .collect();
            store.set_many(entries).await.unwrap();
            for i in (0..200u8).rev() {
                assert_eq!(
                    store.get(&format!("k{i}")).await.unwrap(),
                    Some(vec![i ^ round; 100])
                );
            }
        }
        assert!(db.shared.cache.bytes() <= 4096);
    }
}
