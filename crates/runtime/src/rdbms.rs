//! Spin's outbound relational database interfaces: the bindings PostgreSQL
//! (`postgres.rs`) and MySQL (`mysql.rs`) share, since both versions 2.0.0
//! use one `fermyon:spin/rdbms-types@2.0.0`, those of the versions whose
//! functions are async (`spin:postgres@4.2.0`, `spin:mysql@3.0.0`), and
//! what both count: the sessions a component holds open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::Linker;

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "wit/rdbms",
        world: "ferry:rdbms/rdbms",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/postgres.connection": crate::postgres::Connection,
            "spin:postgres/postgres@3.0.0.connection": crate::postgres::Connection,
            "spin:postgres/postgres@4.1.0.connection": crate::postgres::Connection,
            "spin:postgres/postgres@4.1.0.connection-builder": crate::postgres::Builder,
            "fermyon:spin/mysql.connection": crate::mysql::Connection,
        },
    });
}

/// The versions whose functions are async (spin-sdk 7's `pg` and
/// `mysql`): only an engine with the component model's concurrency can
/// link them.
pub(crate) mod generated_async {
    wasmtime::component::bindgen!({
        path: "wit/rdbms-async",
        world: "ferry:rdbms-async/rdbms-async",
        imports: { default: async | trappable },
        with: {
            "spin:postgres/postgres.connection": crate::postgres::Connection,
            "spin:postgres/postgres.connection-builder": crate::postgres::Builder,
            "spin:mysql/mysql.connection": crate::mysql::Connection,
        },
    });
}

pub(crate) use generated::fermyon::spin::rdbms_types as v2;

/// Both databases' interfaces, for a store whose data gives both views.
pub(crate) fn add_to_linker<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: crate::postgres::PostgresHost + crate::mysql::MysqlHost + Send + 'static,
{
    crate::postgres::add_to_linker(linker)?;
    crate::mysql::add_to_linker(linker)
}

/// Also the versions whose functions are async.
pub(crate) fn add_to_linker_concurrent<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: crate::postgres::PostgresHost + crate::mysql::MysqlHost + Send + 'static,
{
    add_to_linker(linker)?;
    crate::postgres::add_to_linker_concurrent(linker)?;
    crate::mysql::add_to_linker_concurrent(linker)
}

/// The sessions a component holds open to one kind of database, counted
/// against a limit.
#[derive(Default)]
pub struct Sessions(AtomicUsize);

/// One open session, counted until it is dropped.
pub(crate) struct Session(Arc<Sessions>);

impl Sessions {
    /// One more session, if fewer than `limit` are open.
    pub(crate) fn open(self: &Arc<Self>, limit: usize) -> Option<Session> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Session(self.clone()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}
