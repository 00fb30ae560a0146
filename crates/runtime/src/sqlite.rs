//! SQLite databases as guests reach them: Spin's
//! `fermyon:spin/sqlite@2.0.0` (spin-sdk 2.x–5.x) and
//! `spin:sqlite/sqlite@3.0.0` (which adds `last-insert-rowid` and
//! `changes`), over `ferry-store`'s [`SqlDatabase`].
//!
//! The context is the component's granted databases, by label, opened once
//! when the app loads. A label the component was not granted is
//! `access-denied`, as in Spin. Statements run under `ferry-store`'s limits
//! (a deadline and a result-size cap); a failing statement is the
//! interface's `io` error, never a trap.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_store::{QueryResult, SqlDatabase, SqlValue};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

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

use generated::fermyon::spin::sqlite as v2;
use generated::spin::sqlite::sqlite as v3;

/// A database a guest opened, with what its last statement reported.
pub struct OpenDatabase {
    database: Arc<SqlDatabase>,
    last_insert_rowid: i64,
    changes: u64,
}

/// Granted databases, by label.
pub(crate) type Databases = BTreeMap<String, Arc<SqlDatabase>>;

/// What one guest store gives the SQLite interfaces.
pub(crate) struct SqliteView<'a> {
    pub table: &'a mut ResourceTable,
    pub databases: &'a Databases,
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

impl SqliteView<'_> {
    /// The database granted under `label`, opened as a guest resource.
    fn open(&mut self, label: &str) -> wasmtime::Result<Option<Resource<OpenDatabase>>> {
        let Some(database) = self.databases.get(label) else {
            return Ok(None);
        };
        Ok(Some(self.table.push(OpenDatabase {
            database: database.clone(),
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
        let database = self.table.get(connection)?.database.clone();
        let result = database.execute(statement, parameters).await;
        if let Ok(result) = &result {
            let open = self.table.get_mut(connection)?;
            open.last_insert_rowid = result.last_insert_rowid;
            open.changes = result.changes;
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

impl v3::HostConnection for SqliteView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v3::Error>> {
        Ok(SqliteView::open(self, &database)?.ok_or(v3::Error::AccessDenied))
    }

    async fn execute(
        &mut self,
        connection: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(
            SqliteView::execute(self, &connection, statement, parameters)
                .await?
                .map(Into::into)
                .map_err(v3::Error::Io),
        )
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<OpenDatabase>,
    ) -> wasmtime::Result<i64> {
        Ok(self.table.get(&connection)?.last_insert_rowid)
    }

    async fn changes(&mut self, connection: Resource<OpenDatabase>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&connection)?.changes)
    }

    async fn drop(&mut self, connection: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}
