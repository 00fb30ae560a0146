//! Spin's outbound MySQL (and MariaDB), over `mysql_async`:
//! `fermyon:spin/mysql@2.0.0` (spin-sdk 2.x–6.x `mysql`) and
//! `spin:mysql/mysql@3.0.0` (spin-sdk 7's), whose calls are async and whose
//! rows reach the guest as a stream, on one implementation.
//!
//! Deny by default, as Spin checks it: `open` refuses (`connection-failed`,
//! before any connection) an address whose `mysql://host:port` (3306 when
//! the URL gives no port) is not in the component's
//! `allowed_outbound_hosts`, and a Unix socket (`?socket=`). The host name
//! is resolved once, every address checked against the runtime's forbidden
//! listeners (the admin API's), and the connection made to the checked
//! address over TCP only: the client's habit of moving to the server's own
//! Unix socket once connected on loopback is turned off. TLS as Spin takes
//! it: with `ssl-mode` (or `sslmode`) given and not `disabled`, verified
//! for the host's name against the roots outbound TLS trusts (the webpki
//! roots and `SSL_CERT_FILE`'s); without it, none.
//!
//! Statements are prepared (`?` placeholders, one statement per call). A
//! server asking for a file of this host (`LOAD DATA LOCAL INFILE`, which
//! MariaDB lets a prepared statement do) gets nothing: the client has no
//! handler to read one, and the guest gets the interface's `other` error.
//! Each `open` is a session of its own, closed when the guest drops it; at most
//! [`MAX_OPEN`] per component are open at once. Columns of a type the
//! interface has no word for read as text where MySQL has one (decimals,
//! dates and times, JSON: `str`), else as `unsupported`; a result larger
//! than [`MAX_RESULT_BYTES`] is refused as it is read (3.0.0's stream too:
//! the rows are read whole, then streamed). A guest's calls on one session
//! run one at a time, in the order they came.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Opts, OptsBuilder, Params, SslOpts, Value};
use wasmtime::component::{
    Accessor, FutureReader, HasData, Linker, Resource, ResourceTable, StreamReader,
};

use crate::rdbms::generated::fermyon::spin::mysql as v2;
use crate::rdbms::generated_async::spin::mysql::mysql as v3;
use crate::rdbms::v2 as v2t;
use crate::rdbms::{Session, Sessions};
use crate::sandbox::OutboundPolicy;

/// How long opening a session (TCP, TLS and authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sessions open at once per component.
pub const MAX_OPEN: usize = 64;
/// The largest result handed to a guest, all its values together.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// A session a guest opened (shared by its calls in flight, which take
/// turns).
pub struct Connection {
    conn: Arc<tokio::sync::Mutex<mysql_async::Conn>>,
    _session: Session,
}

/// What one guest store gives the MySQL interface.
pub(crate) struct MysqlView<'a> {
    pub table: &'a mut ResourceTable,
    pub policy: &'a Arc<OutboundPolicy>,
    pub sessions: &'a Arc<Sessions>,
    /// What the store holds of results its guest has not read yet.
    pub unread: &'a crate::Unread,
}

pub(crate) trait MysqlHost {
    fn mysql(&mut self) -> MysqlView<'_>;
}

struct MysqlData;

impl HasData for MysqlData {
    type Data<'a> = MysqlView<'a>;
}

pub(crate) fn add_to_linker<T: MysqlHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, MysqlData>(linker, T::mysql)
}

/// Also `spin:mysql@3.0.0`, whose functions are async: only an engine with
/// the component model's concurrency can link it.
pub(crate) fn add_to_linker_concurrent<T: MysqlHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v3::add_to_linker::<T, MysqlData>(linker, T::mysql)
}

/// `address` without Spin's `ssl-mode` / `sslmode` parameter (which
/// `mysql_async` does not take), and whether it asks for TLS.
fn without_ssl_mode(address: &str) -> (String, bool) {
    let Some((base, query)) = address.split_once('?') else {
        return (address.to_owned(), false);
    };
    let mut tls = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mode = key.eq_ignore_ascii_case("ssl-mode") || key.eq_ignore_ascii_case("sslmode");
            if mode {
                tls = !value.eq_ignore_ascii_case("disabled");
            }
            !mode
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), tls)
    } else {
        (format!("{base}?{}", kept.join("&")), tls)
    }
}

/// Opens a session to `address`, if the component may reach it.
async fn open(
    policy: &OutboundPolicy,
    sessions: &Arc<Sessions>,
    address: &str,
) -> Result<Connection, v2t::Error> {
    let shown = ferry_manifest::redacted(address);
    let deny = |why: String| {
        tracing::warn!(
            component = &*policy.component,
            address = shown.as_str(),
            "outbound MySQL connection denied: {why}"
        );
        v2t::Error::ConnectionFailed(format!("{why}: not permitted"))
    };
    let (url, tls) = without_ssl_mode(address);
    let opts = Opts::from_url(&url).map_err(|e| {
        v2t::Error::ConnectionFailed(format!(
            "not a MySQL address (mysql://USER:PASSWORD@HOST[:PORT]/DATABASE): {}",
            crate::one_line_error(&e)
        ))
    })?;
    if opts.socket().is_some() {
        return Err(deny("Unix sockets are not reachable from a guest".into()));
    }
    let (host, port) = (opts.ip_or_hostname().to_owned(), opts.tcp_port());
    if !policy.allowed.allows("mysql", &host, port, false) {
        return Err(deny(format!("mysql://{host}:{port}")));
    }
    let session = sessions.open(MAX_OPEN).ok_or_else(|| {
        v2t::Error::ConnectionFailed(format!(
            "too many connections (a component may have {MAX_OPEN} open at once)"
        ))
    })?;
    let addrs = crate::outbound::resolve(&host, port)
        .await
        .map_err(|e| v2t::Error::ConnectionFailed(format!("cannot resolve {host}: {e}")))?;
    if let Some((target, listener)) = policy.forbidden.first_reached(&addrs) {
        return Err(deny(format!(
            "{host}:{port} is {target}, which reaches this host's admin listener ({listener})"
        )));
    }
    let mut last = String::from("no address to connect to");
    for addr in &addrs {
        let mut builder = OptsBuilder::from_opts(opts.clone())
            .ip_or_hostname(addr.ip().to_string())
            .tcp_port(addr.port())
            .prefer_socket(false)
            .socket(None::<String>);
        if tls {
            // The certificate is the name's, not the address's.
            // Beside the webpki roots, those the host trusts from
            // `SSL_CERT_FILE`, as for every outbound TLS connection.
            let roots = crate::outbound::extra_roots()
                .iter()
                .map(|cert| cert.as_ref().to_vec().into())
                .collect();
            builder = builder.ssl_opts(
                SslOpts::default()
                    .with_danger_tls_hostname_override(Some(host.clone()))
                    .with_root_certs(roots),
            );
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(builder)).await {
            Ok(Ok(conn)) => {
                return Ok(Connection {
                    conn: Arc::new(tokio::sync::Mutex::new(conn)),
                    _session: session,
                });
            }
            Ok(Err(e)) => last = crate::one_line_error(&e),
            Err(_) => {
                last = format!(
                    "{host}:{port} did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                );
            }
        }
    }
    Err(v2t::Error::ConnectionFailed(format!(
        "cannot connect to {shown}: {last}"
    )))
}

/// A failure of `mysql_async` in the interface's words: the server's own
/// error (its code, SQLSTATE and message) or anything else, as text.
fn failure(error: &mysql_async::Error) -> v2t::Error {
    match error {
        mysql_async::Error::Server(e) => {
            v2t::Error::QueryFailed(format!("ERROR {} ({}): {}", e.code, e.state, e.message))
        }
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {
            v2t::Error::Other(crate::one_line_error(error))
        }
        other => v2t::Error::QueryFailed(crate::one_line_error(other)),
    }
}

/// A parameter as MySQL takes it (it converts to the column's type itself).
fn parameter(p: v2t::ParameterValue) -> Value {
    use v2t::ParameterValue as P;
    match p {
        P::Boolean(b) => Value::Int(i64::from(b)),
        P::Int8(n) => Value::Int(n.into()),
        P::Int16(n) => Value::Int(n.into()),
        P::Int32(n) => Value::Int(n.into()),
        P::Int64(n) => Value::Int(n),
        P::Uint8(n) => Value::UInt(n.into()),
        P::Uint16(n) => Value::UInt(n.into()),
        P::Uint32(n) => Value::UInt(n.into()),
        P::Uint64(n) => Value::UInt(n),
        P::Floating32(x) => Value::Float(x),
        P::Floating64(x) => Value::Double(x),
        P::Str(s) => Value::Bytes(s.into_bytes()),
        P::Binary(b) => Value::Bytes(b),
        P::DbNull => Value::NULL,
    }
}

/// The interface's type for a column.
fn data_type(column: &mysql_async::Column) -> v2t::DbDataType {
    use ColumnType as C;
    use v2t::DbDataType as D;
    let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    // Character set 63 is `binary`: bytes, not text.
    let binary = column.character_set() == 63;
    match column.column_type() {
        C::MYSQL_TYPE_TINY if unsigned => D::Uint8,
        C::MYSQL_TYPE_TINY => D::Int8,
        C::MYSQL_TYPE_SHORT | C::MYSQL_TYPE_YEAR if unsigned => D::Uint16,
        C::MYSQL_TYPE_SHORT | C::MYSQL_TYPE_YEAR => D::Int16,
        C::MYSQL_TYPE_INT24 | C::MYSQL_TYPE_LONG if unsigned => D::Uint32,
        C::MYSQL_TYPE_INT24 | C::MYSQL_TYPE_LONG => D::Int32,
        C::MYSQL_TYPE_LONGLONG if unsigned => D::Uint64,
        C::MYSQL_TYPE_LONGLONG => D::Int64,
        C::MYSQL_TYPE_FLOAT => D::Floating32,
        C::MYSQL_TYPE_DOUBLE => D::Floating64,
        C::MYSQL_TYPE_BIT => D::Binary,
        C::MYSQL_TYPE_STRING
        | C::MYSQL_TYPE_VAR_STRING
        | C::MYSQL_TYPE_VARCHAR
        | C::MYSQL_TYPE_TINY_BLOB
        | C::MYSQL_TYPE_MEDIUM_BLOB
        | C::MYSQL_TYPE_LONG_BLOB
        | C::MYSQL_TYPE_BLOB
            if binary =>
        {
            D::Binary
        }
        C::MYSQL_TYPE_STRING
        | C::MYSQL_TYPE_VAR_STRING
        | C::MYSQL_TYPE_VARCHAR
        | C::MYSQL_TYPE_TINY_BLOB
        | C::MYSQL_TYPE_MEDIUM_BLOB
        | C::MYSQL_TYPE_LONG_BLOB
        | C::MYSQL_TYPE_BLOB
        | C::MYSQL_TYPE_ENUM
        | C::MYSQL_TYPE_SET
        | C::MYSQL_TYPE_JSON
        | C::MYSQL_TYPE_DECIMAL
        | C::MYSQL_TYPE_NEWDECIMAL
        | C::MYSQL_TYPE_DATE
        | C::MYSQL_TYPE_NEWDATE
        | C::MYSQL_TYPE_TIME
        | C::MYSQL_TYPE_TIME2
        | C::MYSQL_TYPE_DATETIME
        | C::MYSQL_TYPE_DATETIME2
        | C::MYSQL_TYPE_TIMESTAMP
        | C::MYSQL_TYPE_TIMESTAMP2 => D::Str,
        _ => D::Other,
    }
}

/// A value of a column of type `ty`, and the bytes it takes.
fn value(value: Value, ty: &v2t::DbDataType) -> Result<(v2t::DbValue, usize), String> {
    use v2t::DbDataType as D;
    use v2t::DbValue as V;
    fn get<T: mysql_async::prelude::FromValue>(value: Value) -> Result<T, String> {
        mysql_async::from_value_opt(value).map_err(|e| e.to_string())
    }
    let slot = std::mem::size_of::<V>();
    if value == Value::NULL {
        return Ok((V::DbNull, slot));
    }
    let read = match ty {
        D::Boolean => V::Boolean(get(value)?),
        D::Int8 => V::Int8(get(value)?),
        D::Int16 => V::Int16(get(value)?),
        D::Int32 => V::Int32(get(value)?),
        D::Int64 => V::Int64(get(value)?),
        D::Uint8 => V::Uint8(get(value)?),
        D::Uint16 => V::Uint16(get(value)?),
        D::Uint32 => V::Uint32(get(value)?),
        D::Uint64 => V::Uint64(get(value)?),
        D::Floating32 => V::Floating32(get(value)?),
        D::Floating64 => V::Floating64(get(value)?),
        D::Binary => V::Binary(get(value)?),
        D::Str => V::Str(text(value)?),
        D::Other => V::Unsupported,
    };
    let size = match &read {
        V::Str(s) => s.len(),
        V::Binary(b) => b.len(),
        _ => 0,
    } + slot;
    Ok((read, size))
}

/// A value MySQL has text for: as the text, dates and times as MySQL
/// writes them.
fn text(value: Value) -> Result<String, String> {
    match value {
        Value::Bytes(bytes) => String::from_utf8(bytes).map_err(|e| e.to_string()),
        Value::Date(year, month, day, hour, minute, second, micros) => {
            let mut text = format!("{year:04}-{month:02}-{day:02}");
            if (hour, minute, second, micros) != (0, 0, 0, 0) {
                text.push_str(&format!(" {hour:02}:{minute:02}:{second:02}"));
                if micros > 0 {
                    text.push_str(&format!(".{micros:06}"));
                }
            }
            Ok(text)
        }
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            let sign = if negative { "-" } else { "" };
            let mut text = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
            if micros > 0 {
                text.push_str(&format!(".{micros:06}"));
            }
            Ok(text)
        }
        Value::Int(n) => Ok(n.to_string()),
        Value::UInt(n) => Ok(n.to_string()),
        Value::Float(x) => Ok(x.to_string()),
        Value::Double(x) => Ok(x.to_string()),
        Value::NULL => Ok(String::new()),
    }
}

impl MysqlView<'_> {
    fn connection(
        &mut self,
        this: &Resource<Connection>,
    ) -> wasmtime::Result<Arc<tokio::sync::Mutex<mysql_async::Conn>>> {
        Ok(self.table.get(this)?.conn.clone())
    }
}

async fn query(
    conn: &mut mysql_async::Conn,
    statement: String,
    params: Vec<v2t::ParameterValue>,
) -> Result<v2t::RowSet, v2t::Error> {
    use futures_util::TryStreamExt as _;
    let params = Params::Positional(params.into_iter().map(parameter).collect());
    let mut result = conn
        .exec_iter(statement, params)
        .await
        .map_err(|e| failure(&e))?;
    let described = result.columns().unwrap_or_default();
    let types: Vec<v2t::DbDataType> = described.iter().map(data_type).collect();
    let columns = described
        .iter()
        .zip(&types)
        .map(|(c, ty)| v2t::Column {
            name: c.name_str().into_owned(),
            data_type: *ty,
        })
        .collect();
    let mut rows = Vec::new();
    let mut size = 0;
    if let Some(mut stream) = result
        .stream::<mysql_async::Row>()
        .await
        .map_err(|e| failure(&e))?
    {
        while let Some(row) = stream.try_next().await.map_err(|e| failure(&e))? {
            size += std::mem::size_of::<v2t::Row>();
            let mut values = Vec::with_capacity(types.len());
            for (i, value) in row.unwrap().into_iter().enumerate() {
                let ty = types.get(i).unwrap_or(&v2t::DbDataType::Other);
                let (read, bytes) = self::value(value, ty).map_err(|e| {
                    v2t::Error::ValueConversionFailed(format!(
                        "column `{}`: {e}",
                        described.get(i).map(|c| c.name_str()).unwrap_or_default()
                    ))
                })?;
                size += bytes;
                values.push(read);
            }
            if size > MAX_RESULT_BYTES {
                return Err(v2t::Error::Other(format!(
                    "the result is over Ferry's limit of {MAX_RESULT_BYTES} bytes"
                )));
            }
            rows.push(values);
        }
    }
    Ok(v2t::RowSet { columns, rows })
}

impl v2::Host for MysqlView<'_> {}

impl v2::HostConnection for MysqlView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2t::Error>> {
        Ok(match open(self.policy, self.sessions, &address).await {
            Ok(c) => Ok(self.table.push(c)?),
            Err(e) => Err(e),
        })
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, v2t::Error>> {
        let conn = self.connection(&this)?;
        Ok(query(&mut *conn.lock().await, statement, params).await)
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<(), v2t::Error>> {
        let conn = self.connection(&this)?;
        Ok(execute(&mut *conn.lock().await, statement, params).await)
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        close(self.table.delete(this)?).await;
        Ok(())
    }
}

async fn execute(
    conn: &mut mysql_async::Conn,
    statement: String,
    params: Vec<v2t::ParameterValue>,
) -> Result<(), v2t::Error> {
    let params = Params::Positional(params.into_iter().map(parameter).collect());
    conn.exec_drop(statement, params)
        .await
        .map_err(|e| failure(&e))
}

/// Says goodbye to a session the guest dropped, briefly (a server that
/// does not answer is left); one still in use by a call is closed when the
/// call ends.
async fn close(connection: Connection) {
    let Connection { conn, _session } = connection;
    if let Some(conn) = Arc::into_inner(conn) {
        let conn = conn.into_inner();
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
    }
}

/// 3.0.0's values are 2.0.0's, in types of their own.
mod v3_values {
    use super::{v2t, v3};

    /// The same variant, its payload as it is, for each name given.
    macro_rules! same {
        ($value:expr, $from:ident => $to:ident, [$($payload:ident),*], [$($unit:ident),*]) => {
            match $value {
                $($from::$payload(x) => $to::$payload(x),)*
                $($from::$unit => $to::$unit,)*
            }
        };
    }

    pub fn parameter(p: v3::ParameterValue) -> v2t::ParameterValue {
        use v2t::ParameterValue as B;
        use v3::ParameterValue as A;
        same!(p, A => B,
            [Boolean, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Floating32,
             Floating64, Str, Binary],
            [DbNull])
    }

    pub fn value(v: v2t::DbValue) -> v3::DbValue {
        use v2t::DbValue as A;
        use v3::DbValue as B;
        same!(v, A => B,
            [Boolean, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Floating32,
             Floating64, Str, Binary],
            [DbNull, Unsupported])
    }

    pub fn column(c: v2t::Column) -> v3::Column {
        use v2t::DbDataType as A;
        use v3::DbDataType as B;
        v3::Column {
            name: c.name,
            data_type: same!(c.data_type, A => B,
                [],
                [Boolean, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64,
                 Floating32, Floating64, Str, Binary, Other]),
        }
    }

    pub fn error(e: v2t::Error) -> v3::Error {
        use v2t::Error as A;
        use v3::Error as B;
        same!(e, A => B,
            [ConnectionFailed, BadParameter, QueryFailed, ValueConversionFailed, Other],
            [])
    }
}

/// What an async call needs, taken from the guest's store at its start.
fn v3_connection<U>(
    accessor: &Accessor<U, MysqlData>,
    this: &Resource<Connection>,
) -> wasmtime::Result<Arc<tokio::sync::Mutex<mysql_async::Conn>>> {
    accessor.with(|mut access| access.get().connection(this))
}

impl v3::Host for MysqlView<'_> {}

impl v3::HostConnection for MysqlView<'_> {
    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        close(self.table.delete(this)?).await;
        Ok(())
    }
}

impl<U> v3::HostConnectionWithStore<U> for MysqlData {
    async fn open(
        accessor: &Accessor<U, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        let (policy, sessions) = accessor.with(|mut access| {
            let view = access.get();
            (view.policy.clone(), view.sessions.clone())
        });
        match open(&policy, &sessions, &address).await {
            Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().table.push(c)?))),
            Err(e) => Ok(Err(v3_values::error(e))),
        }
    }

    async fn query(
        accessor: &Accessor<U, Self>,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v3::Column>,
                StreamReader<v3::Row>,
                FutureReader<Result<(), v3::Error>>,
            ),
            v3::Error,
        >,
    > {
        let conn = v3_connection(accessor, &this)?;
        let params = params.into_iter().map(v3_values::parameter).collect();
        let rows = match query(&mut *conn.lock().await, statement, params).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(v3_values::error(e))),
        };
        let columns = rows.columns.into_iter().map(v3_values::column).collect();
        let rows: Vec<v3::Row> = rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(v3_values::value).collect())
            .collect();
        accessor.with(|mut access| {
            let unread = access.get().unread.clone();
            Ok(crate::read_whole(&mut access, &unread, rows, Ok(()))?
                .map(|(rows, done)| (columns, rows, done))
                .map_err(v3::Error::Other))
        })
    }

    async fn execute(
        accessor: &Accessor<U, Self>,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let conn = v3_connection(accessor, &this)?;
        let params = params.into_iter().map(v3_values::parameter).collect();
        Ok(execute(&mut *conn.lock().await, statement, params)
            .await
            .map_err(v3_values::error))
    }
}

impl crate::HeldSize for v3::Row {
    fn held_size(&self) -> usize {
        24 + self
            .iter()
            .map(|value| match value {
                v3::DbValue::Str(text) => 32 + text.len(),
                v3::DbValue::Binary(bytes) => 32 + bytes.len(),
                _ => 32,
            })
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_ssl_mode_is_taken_out_of_the_address() {
        assert_eq!(
            without_ssl_mode("mysql://u:p@h/db"),
            ("mysql://u:p@h/db".into(), false)
        );
        assert_eq!(
            without_ssl_mode("mysql://u:p@h/db?ssl-mode=REQUIRED"),
            ("mysql://u:p@h/db".into(), true)
        );
        assert_eq!(
            without_ssl_mode("mysql://h/db?sslmode=disabled&compression=fast"),
            ("mysql://h/db?compression=fast".into(), false)
        );
    }

    #[test]
    fn dates_and_times_read_as_mysql_writes_them() {
        assert_eq!(
            text(Value::Date(2024, 2, 29, 0, 0, 0, 0)).unwrap(),
            "2024-02-29"
        );
        assert_eq!(
            text(Value::Date(1999, 12, 31, 23, 0, 1, 500_000)).unwrap(),
            "1999-12-31 23:00:01.500000"
        );
        assert_eq!(text(Value::Time(true, 1, 2, 3, 4, 0)).unwrap(), "-26:03:04");
    }
}
