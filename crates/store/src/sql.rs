//! SQLite databases that guests query with SQL (Spin's `sqlite_databases`).
//!
//! Each database is one file with one connection (WAL, `synchronous=FULL`,
//! so a committed statement survives a crash), used by one statement at a
//! time on tokio's blocking pool. Every statement runs under limits the
//! guest cannot lift: a wall-clock deadline (the statement is interrupted)
//! and a cap on the result's size, so a hostile query cannot hold a thread
//! or the host's memory.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{Value as SqliteValue, ValueRef};
use rusqlite::{Connection, params_from_iter};

use crate::Error;

/// Longest a statement may run before it is interrupted.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest result a statement may return, counting value bytes.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

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
    /// The rowid the statement inserted last, if it inserted any. (The
    /// connection is shared, so its own counter would show other guests'
    /// inserts.)
    pub last_insert_rowid: Option<i64>,
    /// Rows the statement inserted, updated or deleted; `None` for a
    /// statement that cannot change any (a query), which leaves SQLite's
    /// count where the guest's last change put it.
    pub changes: Option<u64>,
}

/// Told of every statement a database runs: how long it took and whether
/// it succeeded (metrics, kept by whoever opened it).
pub type SqlObserver = Arc<dyn Fn(Duration, bool) + Send + Sync>;

/// One SQLite database file.
pub struct SqlDatabase {
    connection: Arc<Mutex<Connection>>,
    observer: std::sync::OnceLock<SqlObserver>,
}

impl SqlDatabase {
    /// Opens (creating if needed) the database at `path`, whose directory
    /// must exist.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(Duration::from_secs(5))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Tells `observer` of every statement from now on (set once; later
    /// calls do nothing).
    pub fn observe(&self, observer: SqlObserver) {
        let _ = self.observer.set(observer);
    }

    /// Runs one statement with `parameters` bound to its `?`s.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<QueryResult, Error> {
        let connection = self.connection.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            run(&connection, &statement, parameters)
        })
        .await
        .map_err(|e| Error::Backend(format!("a statement failed: {e}")))?;
        if let Some(observer) = self.observer.get() {
            observer(started.elapsed(), result.is_ok());
        }
        result
    }

    /// Runs a script of statements (`ferry up --sqlite`), in one transaction.
    pub async fn execute_batch(&self, script: String) -> Result<(), Error> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            let outcome = connection.execute_batch(&format!("BEGIN;\n{script}\n;COMMIT;"));
            if outcome.is_err() && !connection.is_autocommit() {
                // Nothing of a failed script stays, and the connection is
                // left outside any transaction.
                let _ = connection.execute_batch("ROLLBACK");
            }
            outcome.map_err(|e| Error::Sql(e.to_string()))
        })
        .await
        .map_err(|e| Error::Backend(format!("a statement failed: {e}")))?
    }
}

fn run(
    connection: &Connection,
    statement: &str,
    parameters: Vec<SqlValue>,
) -> Result<QueryResult, Error> {
    let deadline = Instant::now() + STATEMENT_TIMEOUT;
    connection.progress_handler(10_000, Some(move || Instant::now() > deadline));
    let result = query(connection, statement, parameters);
    connection.progress_handler(0, None::<fn() -> bool>);
    result.map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            Error::Backend(format!(
                "the statement ran longer than {}s and was interrupted",
                STATEMENT_TIMEOUT.as_secs()
            ))
        }
        e => Error::Sql(e.to_string()),
    })?
}

/// The statement's rows, or the reason it failed (outer: SQLite's error,
/// inner: the result-size limit).
fn query(
    connection: &Connection,
    statement: &str,
    parameters: Vec<SqlValue>,
) -> Result<Result<QueryResult, Error>, rusqlite::Error> {
    let rowid_before = connection.last_insert_rowid();
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
            let value = match row.get_ref(i)? {
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(r) => SqlValue::Real(r),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                ValueRef::Null => SqlValue::Null,
            };
            size += match &value {
                SqlValue::Text(t) => t.len(),
                SqlValue::Blob(b) => b.len(),
                _ => 8,
            };
            values.push(value);
        }
        if size > MAX_RESULT_BYTES {
            return Ok(Err(Error::Backend(format!(
                "the result is larger than {MAX_RESULT_BYTES} bytes"
            ))));
        }
        result.push(values);
    }
    drop(rows);
    Ok(Ok(QueryResult {
        columns,
        rows: result,
        last_insert_rowid: Some(connection.last_insert_rowid())
            .filter(|rowid| *rowid != rowid_before),
        changes: (!prepared.readonly()).then(|| connection.changes()),
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
        assert_eq!((selected.last_insert_rowid, selected.changes), (None, None));
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
}
