//! SQLite databases as guests reach them: Spin's
//! `fermyon:spin/sqlite@2.0.0` (spin-sdk 2.x–5.x) and
//! `spin:sqlite/sqlite@3.0.0` (which adds `last-insert-rowid` and
//! `changes`), over `ferry-store`'s [`SqlDatabase`].
//!
//! The context is the component's granted databases, by label, opened once
//! when the app loads. A label the component was not granted is
//! `access-denied`, as in Spin. Each `open` is a [`SqlSession`] of its own
//! (its transactions are its own, as a Spin connection's are), which ends
//! when the guest drops it or its request's store goes: a transaction still
//! open then is rolled back. Statements run under `ferry-store`'s confinement
//! and limits (one file, no `ATTACH`, a PRAGMA allow-list, a deadline, a
//! result-size cap); a refused or failing statement is the interface's `io`
//! error naming why, never a trap.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_store::{QueryResult, SqlDatabase, SqlSession, SqlValue};
use wasmtime::component::{
    Accessor, FutureReader, HasData, Linker, Resource, ResourceTable, StreamReader,
};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/sqlite",
        world: "ferry:sqlite/sqlite",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/sqlite.connection": super::OpenDatabase,
            "spin:sqlite/sqlite.connection": super::OpenDatabase,
        },
    });
}

mod generated_async {
    wasmtime::component::bindgen!({
        path: "wit/sqlite-async",
        world: "ferry:sqlite-async/sqlite-async",
        imports: { default: async | trappable },
        with: {
            "spin:sqlite/sqlite.connection": super::OpenDatabase,
        },
    });
}

use generated::fermyon::spin::sqlite as v2;
use generated::spin::sqlite::sqlite as v3;
use generated_async::spin::sqlite::sqlite as v3_1;

/// A database a guest opened, with what its last statement reported.
pub struct OpenDatabase {
    session: SqlSession,
    last_insert_rowid: i64,
    changes: u64,
}

impl OpenDatabase {
    /// What a statement changes of `last-insert-rowid` and `changes`, as
    /// SQLite counts them per connection: a query changes neither.
    fn record(&mut self, result: &QueryResult) {
        if let Some(rowid) = result.last_insert_rowid {
            self.last_insert_rowid = rowid;
        }
        if let Some(changes) = result.changes {
            self.changes = changes;
        }
    }
}

/// Granted databases, by label.
pub(crate) type Databases = BTreeMap<String, Arc<SqlDatabase>>;

/// What one guest store gives the SQLite interfaces.
pub(crate) struct SqliteView<'a> {
    pub table: &'a mut ResourceTable,
    pub databases: &'a Databases,
    /// What the store holds of results its guest has not read yet.
    pub unread: &'a crate::Unread,
}

pub(crate) trait SqliteHost {
    fn sqlite(&mut self) -> SqliteView<'_>;
}

struct SqliteData;

impl HasData for SqliteData {
    type Data<'a> = SqliteView<'a>;
}

pub(crate) fn add_to_linker<T: SqliteHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, SqliteData>(linker, T::sqlite)?;
    v3::add_to_linker::<T, SqliteData>(linker, T::sqlite)?;
    Ok(())
}

/// Also `spin:sqlite@3.1.0`, whose added functions are async: only an
/// engine with the component model's concurrency can link it.
pub(crate) fn add_to_linker_concurrent<T: SqliteHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    add_to_linker(linker)?;
    v3_1::add_to_linker::<T, SqliteData>(linker, T::sqlite)
}

impl SqliteView<'_> {
    /// The database granted under `label`, opened as a guest resource.
    fn open(&mut self, label: &str) -> wasmtime::Result<Option<Resource<OpenDatabase>>> {
        let Some(database) = self.databases.get(label) else {
            return Ok(None);
        };
        Ok(Some(self.table.push(OpenDatabase {
            session: database.session(),
            last_insert_rowid: 0,
            changes: 0,
        })?))
    }

    /// Runs a statement on the guest's connection and records what it
    /// reported for `last-insert-rowid` and `changes`.
    async fn execute(
        &mut self,
        connection: &Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> wasmtime::Result<Result<QueryResult, String>> {
        let session = self.table.get(connection)?.session.clone();
        let result = session.execute(statement, parameters).await;
        if let Ok(result) = &result {
            self.table.get_mut(connection)?.record(result);
        }
        Ok(result.map_err(|e| e.to_string()))
    }
}

/// The same conversions for each version's (identically shaped) types.
macro_rules! conversions {
    ($version:ident) => {
        impl From<$version::Value> for SqlValue {
            fn from(value: $version::Value) -> Self {
                match value {
                    $version::Value::Integer(i) => SqlValue::Integer(i),
                    $version::Value::Real(r) => SqlValue::Real(r),
                    $version::Value::Text(t) => SqlValue::Text(t),
                    $version::Value::Blob(b) => SqlValue::Blob(b),
                    $version::Value::Null => SqlValue::Null,
                }
            }
        }

        impl From<SqlValue> for $version::Value {
            fn from(value: SqlValue) -> Self {
                match value {
                    SqlValue::Integer(i) => $version::Value::Integer(i),
                    SqlValue::Real(r) => $version::Value::Real(r),
                    SqlValue::Text(t) => $version::Value::Text(t),
                    SqlValue::Blob(b) => $version::Value::Blob(b),
                    SqlValue::Null => $version::Value::Null,
                }
            }
        }

        impl From<QueryResult> for $version::QueryResult {
            fn from(result: QueryResult) -> Self {
                $version::QueryResult {
                    columns: result.columns,
                    rows: result
                        .rows
                        .into_iter()
                        .map(|row| $version::RowResult {
                            values: row.into_iter().map(Into::into).collect(),
                        })
                        .collect(),
                }
            }
        }

        impl $version::Host for SqliteView<'_> {}
    };
}

conversions!(v2);
conversions!(v3);
conversions!(v3_1);

impl v2::HostConnection for SqliteView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v2::Error>> {
        Ok(SqliteView::open(self, &database)?.ok_or(v2::Error::AccessDenied))
    }

    async fn execute(
        &mut self,
        connection: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(
            SqliteView::execute(self, &connection, statement, parameters)
                .await?
                .map(Into::into)
                .map_err(v2::Error::Io),
        )
    }

    async fn drop(&mut self, connection: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

/// `spin:sqlite@3.x`'s synchronous functions, the same in 3.0.0 and 3.1.0.
macro_rules! sync_connection {
    ($version:ident) => {
        impl $version::HostConnection for SqliteView<'_> {
            async fn open(
                &mut self,
                database: String,
            ) -> wasmtime::Result<Result<Resource<OpenDatabase>, $version::Error>> {
                Ok(SqliteView::open(self, &database)?.ok_or($version::Error::AccessDenied))
            }

            async fn execute(
                &mut self,
                connection: Resource<OpenDatabase>,
                statement: String,
                parameters: Vec<$version::Value>,
            ) -> wasmtime::Result<Result<$version::QueryResult, $version::Error>> {
                let parameters = parameters.into_iter().map(Into::into).collect();
                Ok(
                    SqliteView::execute(self, &connection, statement, parameters)
                        .await?
                        .map(Into::into)
                        .map_err($version::Error::Io),
                )
            }

            async fn last_insert_rowid(
                &mut self,
                connection: Resource<OpenDatabase>,
            ) -> wasmtime::Result<i64> {
                Ok(self.table.get(&connection)?.last_insert_rowid)
            }

            async fn changes(
                &mut self,
                connection: Resource<OpenDatabase>,
            ) -> wasmtime::Result<u64> {
                Ok(self.table.get(&connection)?.changes)
            }

            async fn drop(&mut self, connection: Resource<OpenDatabase>) -> wasmtime::Result<()> {
                self.table.delete(connection)?;
                Ok(())
            }
        }
    };
}

sync_connection!(v3);
sync_connection!(v3_1);

impl<U> v3_1::HostConnectionWithStore<U> for SqliteData {
    async fn open_async(
        accessor: &Accessor<U, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v3_1::Error>> {
        accessor.with(|mut access| {
            Ok(SqliteView::open(&mut access.get(), &database)?.ok_or(v3_1::Error::AccessDenied))
        })
    }

    /// Runs the statement, then hands the rows to the guest as a stream (the
    /// whole result is already bounded by `ferry-store`'s size cap).
    async fn execute_async(
        accessor: &Accessor<U, Self>,
        connection: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v3_1::Value>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<String>,
                StreamReader<v3_1::RowResult>,
                FutureReader<Result<(), v3_1::Error>>,
            ),
            v3_1::Error,
        >,
    > {
        let session = accessor.with(|mut access| -> wasmtime::Result<SqlSession> {
            Ok(access.get().table.get(&connection)?.session.clone())
        })?;
        let parameters = parameters.into_iter().map(Into::into).collect();
        let result = match session.execute(statement, parameters).await {
            Ok(result) => result,
            Err(e) => return Ok(Err(v3_1::Error::Io(e.to_string()))),
        };
        accessor.with(|mut access| {
            access.get().table.get_mut(&connection)?.record(&result);
            let v3_1::QueryResult { columns, rows } = result.into();
            let unread = access.get().unread.clone();
            Ok(crate::read_whole(&mut access, &unread, rows, Ok(()))?
                .map(|(rows, done)| (columns, rows, done))
                .map_err(v3_1::Error::Io))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<U, Self>,
        connection: Resource<OpenDatabase>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut access| Ok(access.get().table.get(&connection)?.last_insert_rowid))
    }

    async fn changes_async(
        accessor: &Accessor<U, Self>,
        connection: Resource<OpenDatabase>,
    ) -> wasmtime::Result<u64> {
        accessor.with(|mut access| Ok(access.get().table.get(&connection)?.changes))
    }
}

impl crate::HeldSize for v3_1::RowResult {
    fn held_size(&self) -> usize {
        24 + self
            .values
            .iter()
            .map(|value| match value {
                v3_1::Value::Text(text) => 32 + text.len(),
                v3_1::Value::Blob(blob) => 32 + blob.len(),
                _ => 32,
            })
            .sum::<usize>()
    }
}
