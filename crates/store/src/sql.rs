//! SQLite databases that guests query with SQL (Spin's `sqlite_databases`).
//!
//! A guest reaches exactly one file per granted label and nothing else. Its
//! statements run on connections that SQLite itself confines
//! ([`harden`] and the [`authorize`] hook): no other database can be
//! attached (`SQLITE_LIMIT_ATTACHED = 0`, and `ATTACH`, `DETACH` and so
//! `VACUUM INTO` are denied), only PRAGMAs that read the guest's own schema
//! or check its own file run ([`allowed_pragmas`]), no extension loads, the
//! schema is not trusted to call functions with side effects, and
//! defensive mode keeps the file itself from being corrupted on purpose.
//! What was denied comes back to the guest as an error naming it.
//!
//! A guest's connection is a [`SqlSession`]. Each statement borrows one of
//! the file's pooled SQLite connections (at most [`MAX_CONNECTIONS`] at
//! once) and gives it back when it ends, unless the guest left a
//! transaction open or changed the connection's own state (a temporary
//! table, a per-connection setting): then the session keeps that
//! connection, and when the session ends (its request ended, whether the
//! guest closed it or not) any open transaction is rolled back and a
//! connection with state of the guest's own is closed rather than handed
//! to anyone else. So no request holds the write lock past its end, and
//! nothing one request did to a connection reaches the next.
//!
//! Every statement runs under limits the guest cannot lift: a wall-clock
//! deadline (the statement is interrupted, and so is a statement still
//! running when its session ends), a cap on the result's size and on any
//! one value, so a hostile query holds neither a thread nor the host's
//! memory. WAL with `synchronous=FULL`: a committed statement survives a
//! crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqliteValue, ValueRef};
use rusqlite::{Connection, InterruptHandle, OpenFlags, params_from_iter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, MAX_VALUE_BYTES};

mod functions;

pub use functions::MATCH_WORK;

/// Longest a statement may run before it is interrupted.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest result a statement may return, counting value bytes.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// Longest statement text (`SQLITE_LIMIT_SQL_LENGTH`).
pub const MAX_STATEMENT_BYTES: usize = 16 << 20;

/// Most SQLite connections open to one database file at once; a statement
/// that needs another waits for one.
pub const MAX_CONNECTIONS: usize = 32;

/// Connections kept open between statements, per file.
const MAX_IDLE: usize = 4;

/// How long a statement waits for a write lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Virtual-machine steps between two checks of a statement's deadline: a
/// step costs at most about one pass over a value ([`functions`]), so a
/// statement stops soon after its deadline.
const STEPS_PER_CHECK: i32 = 100;

/// Most memory SQLite may hold in this process, all databases together
/// (`sqlite3_hard_heap_limit64`): past it an allocation fails, and so does
/// the statement that asked, rather than the host running out of memory.
pub const SQLITE_HEAP_LIMIT: i64 = 2 << 30;

/// A value in a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// What a statement returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    /// The rowid the statement inserted last, if it inserted any. (A
    /// pooled connection's own counter may be another session's.)
    pub last_insert_rowid: Option<i64>,
    /// Rows the statement inserted, updated or deleted; `None` for a
    /// statement that cannot change any (a query), which leaves SQLite's
    /// count where the guest's last change put it.
    pub changes: Option<u64>,
}

/// Told of every statement a database runs: how long it took and whether
/// it succeeded (metrics, kept by whoever opened it).
pub type SqlObserver = Arc<dyn Fn(Duration, bool) + Send + Sync>;

/// One SQLite database file, and the connections guests' statements run on.
pub struct SqlDatabase {
    pool: Arc<Pool>,
}

struct Pool {
    path: PathBuf,
    /// The file's device and inode when it was opened: a new connection
    /// must reach this file, never one made at its path since.
    identity: (u64, u64),
    /// [`STATEMENT_TIMEOUT`], shorter in tests.
    timeout: Duration,
    idle: Mutex<Vec<Guarded>>,
    /// One per connection open (idle or lent).
    permits: Arc<Semaphore>,
    observer: OnceLock<SqlObserver>,
}

impl SqlDatabase {
    /// Opens (creating if needed) the database at `path`, whose directory
    /// must exist.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_timeout(path, STATEMENT_TIMEOUT)
    }

    fn open_with_timeout(path: &Path, timeout: Duration) -> Result<Self, Error> {
        limit_heap();
        let first = Connection::open_with_flags(path, open_flags())?;
        keep_wal_files(&first)?;
        // Kept in the file: every later connection is in WAL mode.
        first.pragma_update(None, "journal_mode", "WAL")?;
        let identity = crate::sqlite::file_identity(path).ok_or_else(|| {
            Error::Backend(format!("{} vanished as it was opened", path.display()))
        })?;
        drop(first);
        let pool = Arc::new(Pool {
            path: path.to_owned(),
            identity,
            timeout,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            observer: OnceLock::new(),
        });
        // Opened now, so a file that cannot be a guest's fails here.
        let ready = pool.connect()?;
        pool.give_back(ready);
        Ok(Self { pool })
    }

    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    /// Tells `observer` of every statement from now on (set once; later
    /// calls do nothing).
    pub fn observe(&self, observer: SqlObserver) {
        let _ = self.pool.observer.set(observer);
    }

    /// A guest's connection to this database: its statements see each
    /// other's transaction and temporary tables, and nothing of another
    /// session's.
    pub fn session(&self) -> SqlSession {
        SqlSession {
            inner: Arc::new(SessionInner {
                pool: self.pool.clone(),
                lease: Arc::new(tokio::sync::Mutex::new(Held {
                    lease: None,
                    last_insert_rowid: 0,
                })),
                running: Arc::new(Mutex::new(None)),
            }),
        }
    }

    /// Runs one statement in a session of its own.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<QueryResult, Error> {
        self.session().execute(statement, parameters).await
    }

    /// Runs a script of statements (`ferry up --sqlite`: the operator's
    /// own, so not confined like a guest's), in one transaction.
    pub async fn execute_batch(&self, script: String) -> Result<(), Error> {
        let path = self.pool.path.clone();
        tokio::task::spawn_blocking(move || {
            let connection = Connection::open_with_flags(&path, open_flags())?;
            keep_wal_files(&connection)?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.busy_timeout(BUSY_TIMEOUT)?;
            let outcome = connection.execute_batch(&format!("BEGIN;\n{script}\n;COMMIT;"));
            if outcome.is_err() && !connection.is_autocommit() {
                // Nothing of a failed script stays.
                let _ = connection.execute_batch("ROLLBACK");
            }
            outcome.map_err(|e| Error::Sql(e.to_string()))
        })
        .await
        .map_err(|e| Error::Backend(format!("a statement failed: {e}")))?
    }
}

impl Pool {
    /// A connection for a session: an idle one, else a new one once fewer
    /// than [`MAX_CONNECTIONS`] are open.
    async fn lend(self: &Arc<Self>) -> Result<Lease, Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Backend("the database is closed".into()))?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let guarded = match idle {
            Some(guarded) => guarded,
            None => {
                let pool = self.clone();
                tokio::task::spawn_blocking(move || pool.connect())
                    .await
                    .map_err(|e| Error::Backend(format!("opening the database failed: {e}")))??
            }
        };
        Ok(Lease {
            guarded: Some(guarded),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// A new connection to the file, confined for guests; refused if the
    /// file at the path is no longer the one this database opened (its
    /// app was deleted, and perhaps another deployed under its name).
    fn connect(&self) -> Result<Guarded, Error> {
        let gone =
            || Error::Backend("the database was deleted (its app was deleted or replaced)".into());
        // Checked before, so as not to make a file at the path, and after,
        // so the connection holds the file that is there now.
        if crate::sqlite::file_identity(&self.path) != Some(self.identity) {
            return Err(gone());
        }
        let guarded = Guarded::open(&self.path, self.timeout)?;
        if crate::sqlite::file_identity(&self.path) != Some(self.identity) {
            return Err(gone());
        }
        Ok(guarded)
    }

    fn give_back(&self, guarded: Guarded) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(guarded);
        }
    }
}

/// A guest's connection to one database (see the module's docs). Cheap to
/// clone; when the last clone goes, a statement still running is
/// interrupted and an open transaction rolled back.
#[derive(Clone)]
pub struct SqlSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    pool: Arc<Pool>,
    /// The connection this session holds between statements, if it must.
    lease: Arc<tokio::sync::Mutex<Held>>,
    /// The statement running now, to interrupt if the session ends first.
    running: Arc<Mutex<Option<InterruptHandle>>>,
}

/// What a session keeps between its statements.
struct Held {
    /// The connection, if the session must keep it.
    lease: Option<Lease>,
    /// The rowid of the session's last insert (0 before any), which its
    /// statements see as `last_insert_rowid()` on whichever connection
    /// they run.
    last_insert_rowid: i64,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        if let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            running.interrupt();
        }
    }
}

impl SqlSession {
    /// Runs one statement with `parameters` bound to its `?`s.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<QueryResult, Error> {
        let started = Instant::now();
        let result = self.run(statement, parameters).await;
        if let Some(observer) = self.inner.pool.observer.get() {
            observer(started.elapsed(), result.is_ok());
        }
        result
    }

    async fn run(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<QueryResult, Error> {
        // One statement of a session at a time, in the order they came.
        let mut held = self.inner.lease.clone().lock_owned().await;
        if held.lease.is_none() {
            held.lease = Some(self.inner.pool.lend().await?);
        }
        let running = self.inner.running.clone();
        if let Some(lease) = held.lease.as_ref() {
            *running.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(lease.guarded().connection.get_interrupt_handle());
        }
        tokio::task::spawn_blocking(move || {
            let held = &mut *held;
            let result = match held.lease.as_ref() {
                Some(lease) => {
                    lease
                        .guarded()
                        .run(&statement, parameters, &mut held.last_insert_rowid)
                }
                None => Err(Error::Backend("no connection".into())),
            };
            running.lock().unwrap_or_else(|e| e.into_inner()).take();
            if held.lease.as_ref().is_some_and(Lease::reusable) {
                // Back to the pool: nothing ties it to this session.
                held.lease = None;
            }
            result
        })
        .await
        .map_err(|e| Error::Backend(format!("a statement failed: {e}")))?
    }
}

/// A pooled connection lent to a session; given back (or closed) when
/// dropped.
struct Lease {
    guarded: Option<Guarded>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn guarded(&self) -> &Guarded {
        self.guarded
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }

    /// Whether another session may have the connection now: no
    /// transaction is open and the guest left no state of its own on it.
    fn reusable(&self) -> bool {
        let guarded = self.guarded();
        guarded.connection.is_autocommit() && !guarded.guard.tainted.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(guarded) = self.guarded.take() else {
            return;
        };
        if !guarded.connection.is_autocommit() {
            // The session ended inside a transaction: none of it stays,
            // and the write lock is released now.
            let _ = guarded.connection.execute_batch("ROLLBACK");
        }
        if guarded.connection.is_autocommit() && !guarded.guard.tainted.load(Ordering::Relaxed) {
            self.pool.give_back(guarded);
        }
    }
}

/// A connection confined for guests, with what its authorizer saw.
struct Guarded {
    connection: Connection,
    guard: Arc<Guard>,
    timeout: Duration,
}

/// What the authorizer tells the statement's runner, and what the
/// [`functions`] ask of it.
#[derive(Default)]
struct Guard {
    /// Why the statement being prepared was refused.
    denied: Mutex<Option<String>>,
    /// The guest made state of its own on the connection (a temporary
    /// object, a per-connection setting): it is never lent to another
    /// session.
    tainted: AtomicBool,
    /// What the statement being prepared does: [`ROWS`] if it inserts,
    /// updates or deletes rows, [`SCHEMA`] if it changes the schema or a
    /// setting; SQLite counts the changes of the first kind only.
    kinds: AtomicU8,
    /// When the running statement must stop.
    deadline: Mutex<Option<Instant>>,
}

impl Guard {
    fn past_deadline(&self) -> bool {
        self.deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|deadline| Instant::now() > deadline)
    }
}

impl Guarded {
    fn open(path: &Path, timeout: Duration) -> Result<Self, Error> {
        let connection = Connection::open_with_flags(path, open_flags())?;
        keep_wal_files(&connection)?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        harden(&connection)?;
        connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit(MAX_VALUE_BYTES))?;
        connection.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limit(MAX_STATEMENT_BYTES))?;
        let guard = Arc::new(Guard::default());
        functions::register(&connection, &guard)?;
        let seen = guard.clone();
        // Last: everything above is the host's own doing.
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            if context.database_name == Some("temp") {
                // Whatever names the temporary schema (`CREATE TABLE
                // temp.x`, a temporary trigger on a table of `main`) may
                // leave an object there.
                seen.tainted.store(true, Ordering::Relaxed);
            }
            seen.kinds.fetch_or(kind(&context), Ordering::Relaxed);
            match authorize(&context.action) {
                Verdict::Allow => Authorization::Allow,
                Verdict::AllowTainting => {
                    seen.tainted.store(true, Ordering::Relaxed);
                    Authorization::Allow
                }
                Verdict::Deny(reason) => {
                    let mut denied = seen.denied.lock().unwrap_or_else(|e| e.into_inner());
                    denied.get_or_insert(reason);
                    Authorization::Deny
                }
            }
        }));
        Ok(Self {
            connection,
            guard,
            timeout,
        })
    }

    /// Runs one guest statement under the deadline; a refusal by the
    /// authorizer comes back as the reason it gave. `last_insert_rowid` is
    /// the session's, which the statement sees and may change.
    fn run(
        &self,
        statement: &str,
        parameters: Vec<SqlValue>,
        last_insert_rowid: &mut i64,
    ) -> Result<QueryResult, Error> {
        self.guard
            .denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.guard.kinds.store(0, Ordering::Relaxed);
        let deadline = Instant::now() + self.timeout;
        *self
            .guard
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.connection
            .progress_handler(STEPS_PER_CHECK, Some(move || Instant::now() > deadline));
        // The connection's counter may hold another session's last insert.
        // SAFETY: the handle is this open connection's, used on this thread
        // only while it is borrowed.
        unsafe {
            rusqlite::ffi::sqlite3_set_last_insert_rowid(
                self.connection.handle(),
                *last_insert_rowid,
            );
        }
        let result = query(&self.connection, statement, parameters);
        *last_insert_rowid = self.connection.last_insert_rowid();
        self.connection.progress_handler(0, None::<fn() -> bool>);
        let denied = self
            .guard
            .denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        result
            .map_err(|e| match (e, denied) {
                (_, Some(reason)) => Error::Sql(reason),
                (rusqlite::Error::SqliteFailure(f, _), None)
                    if f.code == rusqlite::ErrorCode::OperationInterrupted =>
                {
                    Error::Backend(format!(
                        "the statement ran longer than {}s and was interrupted",
                        self.timeout.as_secs_f64()
                    ))
                }
                (e, None) => Error::Sql(e.to_string()),
            })?
            .map(|mut result| {
                result.last_insert_rowid = Some(*last_insert_rowid);
                result.changes = (self.guard.kinds.load(Ordering::Relaxed) == ROWS)
                    .then(|| self.connection.changes());
                result
            })
    }
}

/// A statement's own insert, update or delete of rows (not a trigger's).
const ROWS: u8 = 1;
/// A statement that changes the schema (whose table it writes, and whose
/// dropped table it deletes) or a setting.
const SCHEMA: u8 = 2;

/// What one action of a statement says of the statement's kind.
fn kind(context: &AuthContext<'_>) -> u8 {
    match context.action {
        AuthAction::Insert { .. } | AuthAction::Update { .. } | AuthAction::Delete { .. }
            if context.accessor.is_none() =>
        {
            ROWS
        }
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. } => 0,
        _ => SCHEMA,
    }
}

/// Sets [`SQLITE_HEAP_LIMIT`], once.
fn limit_heap() {
    static LIMITED: std::sync::Once = std::sync::Once::new();
    LIMITED.call_once(|| {
        // SAFETY: a process-wide setting, safe to call at any time.
        unsafe {
            rusqlite::ffi::sqlite3_hard_heap_limit64(SQLITE_HEAP_LIMIT);
        }
    });
}

fn open_flags() -> OpenFlags {
    // No URI filenames: the path is the host's, never a guest's.
    OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

fn limit(bytes: usize) -> i32 {
    i32::try_from(bytes).unwrap_or(i32::MAX)
}

/// Keeps a WAL database's `-wal` and `-shm` files when its last connection
/// closes (SQLite removes them otherwise), so that opening it again needs no
/// new file: after a clean shutdown on a full disk, an app's data still
/// opens and serves reads. Every connection to a file says so, since the
/// last to close decides.
pub(crate) fn keep_wal_files(connection: &Connection) -> Result<(), rusqlite::Error> {
    let mut keep: std::ffi::c_int = 1;
    // SAFETY: the handle is this open connection's, and the argument is the
    // `int` that SQLITE_FCNTL_PERSIST_WAL reads and writes, alive for the call.
    let code = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            connection.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut keep).cast(),
        )
    };
    match code {
        rusqlite::ffi::SQLITE_OK => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("keeping the WAL files".into()),
        )),
    }
}

/// SQLite's own controls against SQL that would reach beyond one file or
/// damage it, for every connection a guest's strings reach (as
/// statements, or as values the host's statements bind): no attached
/// database (`SQLITE_LIMIT_ATTACHED = 0`, and `ATTACH` may neither create
/// nor write a file), defensive mode (no writable schema, no raw page
/// writes, no shadow-table writes), a schema that is not trusted to call
/// functions with side effects, and no extension loading (off unless
/// enabled; Ferry never enables it).
pub(crate) fn harden(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false)?;
    Ok(())
}

/// What the authorizer does with one action of a guest's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Allow,
    /// Allowed, but it leaves state on the connection that only this
    /// session may see.
    AllowTainting,
    /// Refused, and why, as the guest is told.
    Deny(String),
}

/// How a guest may use a PRAGMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PragmaUse {
    /// Reads; an argument, if any, is what it reads or checks (a table, an
    /// index, a step count), not a setting.
    Read,
    /// A setting of the file: it may be read, not set.
    ReadOnly,
    /// A setting kept in the database file itself (migrations set it).
    SetInFile,
    /// A setting of the connection only: setting it ties the connection
    /// to the session.
    SetOnConnection,
}

/// The PRAGMAs a guest may run: reading its own schema, checking its own
/// file, and the settings migrations use. Every other PRAGMA — where the
/// file is (`database_list`), how it is written (`journal_mode`,
/// `synchronous`), the schema as raw text (`writable_schema`), memory and
/// threads — is the host's.
const PRAGMAS: &[(&str, PragmaUse)] = &[
    ("table_info", PragmaUse::Read),
    ("table_xinfo", PragmaUse::Read),
    ("table_list", PragmaUse::Read),
    ("index_list", PragmaUse::Read),
    ("index_info", PragmaUse::Read),
    ("index_xinfo", PragmaUse::Read),
    ("foreign_key_list", PragmaUse::Read),
    ("foreign_key_check", PragmaUse::Read),
    ("integrity_check", PragmaUse::Read),
    ("quick_check", PragmaUse::Read),
    ("optimize", PragmaUse::Read),
    ("incremental_vacuum", PragmaUse::Read),
    ("collation_list", PragmaUse::Read),
    ("page_count", PragmaUse::ReadOnly),
    ("page_size", PragmaUse::ReadOnly),
    ("freelist_count", PragmaUse::ReadOnly),
    ("data_version", PragmaUse::ReadOnly),
    ("schema_version", PragmaUse::ReadOnly),
    ("encoding", PragmaUse::ReadOnly),
    ("user_version", PragmaUse::SetInFile),
    ("application_id", PragmaUse::SetInFile),
    ("foreign_keys", PragmaUse::SetOnConnection),
    ("defer_foreign_keys", PragmaUse::SetOnConnection),
    ("recursive_triggers", PragmaUse::SetOnConnection),
];

/// The names of the PRAGMAs a guest may run.
pub fn allowed_pragmas() -> impl Iterator<Item = &'static str> {
    PRAGMAS.iter().map(|(name, _)| *name)
}

/// The authorizer's rule for one action of a guest's statement (SQLite
/// asks while preparing it, for every table, column, function and
/// PRAGMA it touches).
fn authorize(action: &AuthAction<'_>) -> Verdict {
    match action {
        AuthAction::Attach { .. } => Verdict::Deny(
            "ATTACH is not allowed (nor VACUUM, which attaches a database): a guest reaches only its own database".into(),
        ),
        AuthAction::Detach { .. } => Verdict::Deny("DETACH is not allowed".into()),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let usage = PRAGMAS.iter().find(|(n, _)| *n == name).map(|(_, u)| *u);
            match (usage, pragma_value) {
                (None, _) => Verdict::Deny(format!(
                    "PRAGMA {name} is not allowed: a guest may use only {}",
                    allowed_pragmas().collect::<Vec<_>>().join(", ")
                )),
                (Some(_), None) | (Some(PragmaUse::Read | PragmaUse::SetInFile), Some(_)) => {
                    Verdict::Allow
                }
                (Some(PragmaUse::SetOnConnection), Some(_)) => Verdict::AllowTainting,
                (Some(PragmaUse::ReadOnly), Some(_)) => {
                    Verdict::Deny(format!("PRAGMA {name} may be read but not set"))
                }
            }
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Verdict::Deny("load_extension() is not allowed".into())
        }
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Verdict::AllowTainting,
        _ => Verdict::Allow,
    }
}

/// The statement's rows, or the reason it failed (outer: SQLite's error,
/// inner: the result-size limit).
fn query(
    connection: &Connection,
    statement: &str,
    parameters: Vec<SqlValue>,
) -> Result<Result<QueryResult, Error>, rusqlite::Error> {
    let mut prepared = connection.prepare(statement)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let parameters = parameters.into_iter().map(|p| match p {
        SqlValue::Integer(i) => SqliteValue::Integer(i),
        SqlValue::Real(r) => SqliteValue::Real(r),
        SqlValue::Text(t) => SqliteValue::Text(t),
        SqlValue::Blob(b) => SqliteValue::Blob(b),
        SqlValue::Null => SqliteValue::Null,
    });
    let mut rows = prepared.query(params_from_iter(parameters))?;
    let mut result = Vec::new();
    let mut size = 0usize;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let value = row.get_ref(i)?;
            // Counted before it is copied: a row of many large values is
            // refused at the first that does not fit.
            size += match value {
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.len(),
                _ => 8,
            };
            if size > MAX_RESULT_BYTES {
                return Ok(Err(Error::Backend(format!(
                    "the result is larger than {MAX_RESULT_BYTES} bytes"
                ))));
            }
            values.push(match value {
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(r) => SqlValue::Real(r),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                ValueRef::Null => SqlValue::Null,
            });
        }
        result.push(values);
    }
    drop(rows);
    Ok(Ok(QueryResult {
        columns,
        rows: result,
        // Set by the runner, which knows the session's.
        last_insert_rowid: None,
        changes: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_with_every_value_type() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqlDatabase::open(&dir.path().join("db.sqlite")).unwrap();
        db.execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n);".into())
            .await
            .unwrap();
        let inserted = db
            .execute(
                "INSERT INTO t VALUES (?, ?, ?, ?, ?)".into(),
                vec![
                    SqlValue::Integer(-7),
                    SqlValue::Real(1.5),
                    SqlValue::Text("é".into()),
                    SqlValue::Blob(vec![0, 255]),
                    SqlValue::Null,
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            (inserted.last_insert_rowid, inserted.changes),
            (Some(1), Some(1))
        );
        let selected = db
            .execute(
                "SELECT * FROM t WHERE i = ?".into(),
                vec![SqlValue::Integer(-7)],
            )
            .await
            .unwrap();
        assert_eq!(selected.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(
            selected.rows,
            [vec![
                SqlValue::Integer(-7),
                SqlValue::Real(1.5),
                SqlValue::Text("é".into()),
                SqlValue::Blob(vec![0, 255]),
                SqlValue::Null,
            ]]
        );
        // A session of its own: no insert yet.
        assert_eq!(
            (selected.last_insert_rowid, selected.changes),
            (Some(0), None)
        );
        let error = db
            .execute("SELEC nonsense".into(), vec![])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("syntax error"), "{error}");
        // A failing script leaves nothing behind, and the next one runs.
        assert!(
            db.execute_batch("CREATE TABLE half (x); INSERT INTO nowhere VALUES (1);".into())
                .await
                .is_err()
        );
        db.execute_batch("CREATE TABLE half (x);".into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_huge_result_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqlDatabase::open(&dir.path().join("db.sqlite")).unwrap();
        let error = db
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 100000)
                 SELECT zeroblob(1000) FROM n"
                    .into(),
                vec![],
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    /// A guest's database beside another app's, which holds a secret.
    async fn beside_a_victim() -> (tempfile::TempDir, SqlDatabase, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.db");
        let other = SqlDatabase::open(&victim).unwrap();
        other
            .execute_batch(
                "CREATE TABLE secrets (s TEXT); INSERT INTO secrets VALUES ('hush');".into(),
            )
            .await
            .unwrap();
        let db = SqlDatabase::open(&dir.path().join("guest.db")).unwrap();
        db.execute_batch("CREATE TABLE t (x);".into())
            .await
            .unwrap();
        (dir, db, victim)
    }

    async fn refused(db: &SqlDatabase, statement: &str) -> String {
        match db.execute(statement.into(), vec![]).await {
            Ok(result) => panic!("`{statement}` ran: {result:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn no_other_database_can_be_attached_or_written() {
        let (dir, db, victim) = beside_a_victim().await;
        let victim = victim.display();
        let made = dir.path().join("made.db");
        let made_shown = made.display();
        for statement in [
            format!("ATTACH '{victim}' AS v"),
            format!("ATTACH DATABASE '{victim}' AS v"),
            format!("attach database \"{victim}\" as v"),
            format!("ATTACH 'file:{victim}?mode=rw' AS v"),
            format!("ATTACH 'file://{victim}' AS v"),
            format!("ATTACH '{made_shown}' AS m"),
            "ATTACH ':memory:' AS m".to_owned(),
            "ATTACH '' AS m".to_owned(),
        ] {
            let error = refused(&db, &statement).await;
            assert!(
                error.contains("ATTACH is not allowed"),
                "{statement}: {error}"
            );
        }
        for statement in [format!("VACUUM INTO '{made_shown}'"), "VACUUM".to_owned()] {
            let error = refused(&db, &statement).await;
            assert!(error.contains("not allowed"), "{statement}: {error}");
        }
        let error = refused(&db, "DETACH main").await;
        assert!(error.contains("DETACH is not allowed"), "{error}");
        assert!(!made.exists(), "a statement made {made_shown}");
        // Nothing attached earlier lingers either: only `main` (and `temp`).
        let error = refused(&db, "SELECT * FROM v.secrets").await;
        assert!(error.contains("no such table"), "{error}");
    }

    #[tokio::test]
    async fn only_harmless_pragmas_run() {
        let (_dir, db, _) = beside_a_victim().await;
        for statement in [
            "PRAGMA database_list",
            "SELECT * FROM pragma_database_list",
            "SELECT file FROM pragma_database_list()",
            "PRAGMA journal_mode = DELETE",
            "PRAGMA journal_mode",
            "PRAGMA synchronous = OFF",
            "PRAGMA writable_schema = ON",
            "PRAGMA main.writable_schema = 1",
            "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA cache_size = -1000000",
            "PRAGMA mmap_size = 1000000000",
            "PRAGMA trusted_schema = ON",
            "PRAGMA schema_version = 1",
            "PRAGMA compile_options",
        ] {
            let error = refused(&db, statement).await;
            assert!(error.contains("PRAGMA"), "{statement}: {error}");
            assert!(error.contains("not"), "{statement}: {error}");
        }
        let error = refused(&db, "PRAGMA database_list").await;
        assert!(!error.contains(".db"), "the path leaks: {error}");

        let columns = db
            .execute("PRAGMA table_info(t)".into(), vec![])
            .await
            .unwrap();
        assert_eq!(columns.rows.len(), 1);
        let columns = db
            .execute("SELECT name FROM pragma_table_info('t')".into(), vec![])
            .await
            .unwrap();
        assert_eq!(columns.rows, [vec![SqlValue::Text("x".into())]]);
        db.execute("PRAGMA user_version = 7".into(), vec![])
            .await
            .unwrap();
        let version = db
            .execute("PRAGMA user_version".into(), vec![])
            .await
            .unwrap();
        assert_eq!(version.rows, [vec![SqlValue::Integer(7)]]);
        let check = db
            .execute("PRAGMA integrity_check".into(), vec![])
            .await
            .unwrap();
        assert_eq!(check.rows, [vec![SqlValue::Text("ok".into())]]);
    }

    #[tokio::test]
    async fn no_extension_loads_and_values_are_bounded() {
        let (_dir, db, _) = beside_a_victim().await;
        let error = refused(
            &db,
            "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libm.so.6')",
        )
        .await;
        assert!(error.contains("load_extension() is not allowed"), "{error}");
        let error = refused(&db, "SELECT length(randomblob(100000000))").await;
        assert!(error.contains("too big"), "{error}");
    }

    /// A guest's transaction is its session's alone, and ends with it: a
    /// session dropped inside one leaves nothing of it and holds no lock.
    #[tokio::test]
    async fn a_transaction_left_open_ends_with_its_session() {
        let (_dir, db, _) = beside_a_victim().await;
        let first = db.session();
        first
            .execute("BEGIN IMMEDIATE".into(), vec![])
            .await
            .unwrap();
        first
            .execute("INSERT INTO t VALUES ('uncommitted')".into(), vec![])
            .await
            .unwrap();
        // Another session sees none of it.
        let seen = db
            .execute("SELECT count(*) FROM t".into(), vec![])
            .await
            .unwrap();
        assert_eq!(seen.rows, [vec![SqlValue::Integer(0)]]);
        drop(first);
        // The write lock went with it: another session writes at once.
        let second = db.session();
        second
            .execute("INSERT INTO t VALUES ('committed')".into(), vec![])
            .await
            .unwrap();
        let rows = second
            .execute("SELECT x FROM t".into(), vec![])
            .await
            .unwrap();
        assert_eq!(rows.rows, [vec![SqlValue::Text("committed".into())]]);
        // A session's own transaction spans its statements.
        second.execute("BEGIN".into(), vec![]).await.unwrap();
        second
            .execute("INSERT INTO t VALUES ('rolled back')".into(), vec![])
            .await
            .unwrap();
        second.execute("ROLLBACK".into(), vec![]).await.unwrap();
        let rows = db
            .execute("SELECT count(*) FROM t".into(), vec![])
            .await
            .unwrap();
        assert_eq!(rows.rows, [vec![SqlValue::Integer(1)]]);
    }

    /// Functions that SQLite runs in time quadratic in their arguments
    /// (one call, which its deadline cannot stop, would run for minutes)
    /// answer at once: the statement finishes well inside a one-second
    /// deadline, and SQLite's own would be interrupted.
    #[tokio::test]
    async fn quadratic_built_ins_answer_within_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            SqlDatabase::open_with_timeout(&dir.path().join("db.sqlite"), Duration::from_secs(1))
                .unwrap();
        let a = |n: usize| format!("printf('%.*c', {n}, 'a')");
        for (statement, expected) in [
            (
                format!("SELECT instr({}, {} || 'b')", a(1_600_000), a(800_000)),
                SqlValue::Integer(0),
            ),
            (
                format!(
                    "SELECT length(replace({}, {} || 'b', 'x'))",
                    a(1_600_000),
                    a(800_000)
                ),
                SqlValue::Integer(1_600_000),
            ),
            (
                format!(
                    "SELECT length(trim({}, printf('%.*c', 200000, 'b') || 'a'))",
                    a(200_000)
                ),
                SqlValue::Integer(0),
            ),
            (
                format!(
                    "SELECT length(rtrim({} || 'c', printf('%.*c', 200000, 'b') || 'a'))",
                    a(200_000)
                ),
                SqlValue::Integer(200_001),
            ),
        ] {
            let result = db.execute(statement.clone(), vec![]).await;
            assert_eq!(
                result.map(|r| r.rows),
                Ok(vec![vec![expected]]),
                "{}",
                &statement[..60]
            );
        }
        // A match whose worst case is too long is refused, not run.
        let error = refused(
            &db,
            &format!("SELECT {} LIKE '%' || {} || 'b'", a(4_000_000), a(2_000)),
        )
        .await;
        assert!(error.contains("more than"), "{error}");
    }

    /// A row of many large values is refused at the first that does not
    /// fit, before SQLite is asked for the rest.
    #[tokio::test]
    async fn a_wide_row_is_refused_value_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqlDatabase::open(&dir.path().join("db.sqlite")).unwrap();
        let columns = vec!["zeroblob(16000000)"; 20].join(", ");
        let error = refused(&db, &format!("SELECT {columns}")).await;
        assert!(error.contains("larger than"), "{error}");
    }

    /// `last_insert_rowid()` and the count of changes are the session's
    /// own, whichever pooled connection its statements run on.
    #[tokio::test]
    async fn last_insert_rowid_and_changes_are_the_sessions() {
        let (_dir, db, _) = beside_a_victim().await;
        let first = db.session();
        for _ in 0..3 {
            first
                .execute("INSERT INTO t VALUES ('x')".into(), vec![])
                .await
                .unwrap();
        }
        let updated = first
            .execute("UPDATE t SET x = 'y'".into(), vec![])
            .await
            .unwrap();
        assert_eq!(
            (updated.last_insert_rowid, updated.changes),
            (Some(3), Some(3))
        );
        let seen = first
            .execute("SELECT last_insert_rowid(), changes()".into(), vec![])
            .await
            .unwrap();
        assert_eq!(
            seen.rows,
            [vec![SqlValue::Integer(3), SqlValue::Integer(3)]]
        );
        // The statement sees the session's last rowid, and stores it.
        first
            .execute("INSERT INTO t VALUES (last_insert_rowid())".into(), vec![])
            .await
            .unwrap();
        let stored = first
            .execute("SELECT x FROM t WHERE rowid = 4".into(), vec![])
            .await
            .unwrap();
        assert_eq!(stored.rows, [vec![SqlValue::Integer(3)]]);
        drop(first);
        // Another session on the same connection starts from nothing, and
        // a statement that changes no rows leaves the count alone.
        let second = db.session();
        let seen = second
            .execute("SELECT last_insert_rowid()".into(), vec![])
            .await
            .unwrap();
        assert_eq!(seen.rows, [vec![SqlValue::Integer(0)]]);
        for statement in [
            "CREATE TABLE u (y)",
            "CREATE INDEX u_y ON u (y)",
            "PRAGMA user_version = 3",
            "DROP TABLE u",
        ] {
            let result = second.execute(statement.into(), vec![]).await.unwrap();
            assert_eq!(
                (result.last_insert_rowid, result.changes),
                (Some(0), None),
                "{statement}"
            );
        }
        let deleted = second
            .execute("DELETE FROM t WHERE rowid > 2".into(), vec![])
            .await
            .unwrap();
        assert_eq!(deleted.changes, Some(2));
    }

    /// A connection opened after the database's file was deleted (its app
    /// deleted) does not reach a file made at the same path since (another
    /// app's, deployed under the name).
    #[tokio::test]
    async fn a_deleted_database_is_never_reached_through_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let old = SqlDatabase::open(&path).unwrap();
        // The old app's request holds the pool's only idle connection.
        let holding = old.session();
        holding.execute("BEGIN".into(), vec![]).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(&file);
        }
        let successor = SqlDatabase::open(&path).unwrap();
        successor
            .execute_batch(
                "CREATE TABLE secrets (s TEXT); INSERT INTO secrets VALUES ('hush');".into(),
            )
            .await
            .unwrap();
        let error = refused(&old, "SELECT s FROM secrets").await;
        assert!(error.contains("the database was deleted"), "{error}");
        let rows = successor
            .execute("SELECT s FROM secrets".into(), vec![])
            .await
            .unwrap();
        assert_eq!(rows.rows, [vec![SqlValue::Text("hush".into())]]);
    }

    /// What a guest leaves on a connection — a temporary table, a setting —
    /// stays with its session and never reaches another.
    #[tokio::test]
    async fn connection_state_never_reaches_another_session() {
        let (_dir, db, _) = beside_a_victim().await;
        let first = db.session();
        first
            .execute("CREATE TEMP TABLE mine (x)".into(), vec![])
            .await
            .unwrap();
        first
            .execute("INSERT INTO temp.mine VALUES (1)".into(), vec![])
            .await
            .unwrap();
        first
            .execute("PRAGMA foreign_keys = OFF".into(), vec![])
            .await
            .unwrap();
        let rows = first
            .execute("SELECT x FROM mine".into(), vec![])
            .await
            .unwrap();
        assert_eq!(rows.rows, [vec![SqlValue::Integer(1)]]);
        drop(first);
        // Temporary objects named by their schema rather than `TEMP`, and
        // a temporary trigger on the main database's table.
        for statement in [
            "CREATE TABLE temp.theirs (x)",
            "CREATE VIEW temp.t AS SELECT 'shadowed' AS x",
            "CREATE TRIGGER temp.spy AFTER INSERT ON main.t BEGIN SELECT 1; END",
            "CREATE INDEX temp.i ON theirs (x)",
        ] {
            let session = db.session();
            if statement.contains("INDEX") {
                session
                    .execute("CREATE TABLE temp.theirs (x)".into(), vec![])
                    .await
                    .unwrap();
            }
            session.execute(statement.into(), vec![]).await.unwrap();
        }
        for _ in 0..MAX_IDLE + 1 {
            let left = db
                .execute("SELECT name FROM temp.sqlite_schema".into(), vec![])
                .await
                .unwrap();
            assert_eq!(left.rows, Vec::<Vec<SqlValue>>::new());
            let error = refused(&db, "SELECT x FROM mine").await;
            assert!(error.contains("no such table"), "{error}");
            let keys = db
                .execute("PRAGMA foreign_keys".into(), vec![])
                .await
                .unwrap();
            assert_eq!(keys.rows, [vec![SqlValue::Integer(1)]]);
        }
    }
}
