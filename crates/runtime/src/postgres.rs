//! Spin's outbound PostgreSQL, over `tokio-postgres`:
//! `fermyon:spin/postgres@2.0.0` (spin-sdk 2.x–5.x `pg`),
//! `spin:postgres/postgres@3.0.0` (`pg3`) and `@4.1.0` (`pg4`, which
//! imports 4.0.0), all on one implementation whose values are 4.1.0's:
//! what an older version cannot carry reaches it as `unsupported` (a value)
//! or `other` (a column's type).
//!
//! Deny by default, as Spin checks it: `open` refuses (`connection-failed`,
//! before any connection) an address any of whose hosts, as
//! `postgres://host:port` (5432 when the address gives no port), is not in
//! the component's `allowed_outbound_hosts`. Unix sockets and `hostaddr=`
//! (an address beside the name, which would bypass the check) are refused.
//! Each host name is resolved once, every address checked against the
//! runtime's forbidden listeners (the admin API's), and the connection made
//! to the checked address. TLS follows `sslmode` (`disable`, `prefer` — the
//! default — or `require`) with the roots outbound TLS trusts (the webpki
//! roots and `SSL_CERT_FILE`'s), plus a guest's own root from 4.1's
//! `connection-builder`.
//!
//! Parameters are bound by the type the server expects for them, not only
//! the one the guest picked: an `int32` binds to a `bigint` or `smallint`
//! column when it fits, a `datetime` to `timestamptz` (it is UTC). A value
//! that does not fit its column is `bad-parameter`. Columns are described
//! by the statement, so a query that returns no row still names them.
//!
//! Connections are per component: a guest's `connection` is one session of
//! its own until it drops it; then the session is reset (`ROLLBACK`,
//! `DISCARD ALL`: no transaction, setting or temporary table reaches the
//! next request) and kept for the next `open` of the same address, up to
//! [`MAX_IDLE`] per address. At most [`MAX_OPEN`] sessions per component are
//! open at once (`connection-failed`, "too many connections", beyond). A
//! result larger than [`MAX_RESULT_BYTES`] is refused as it is read; 4.2's
//! `query-async` streams its rows instead, each at most that large, and
//! the session answers no other call until they are read to the end or
//! dropped (the server sends nothing else meanwhile: a call made then
//! would wait for ever).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, Timelike};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, HasData, Linker, Resource, ResourceTable, StreamProducer,
    StreamReader, StreamResult,
};

use crate::sandbox::OutboundPolicy;

use crate::rdbms::generated::fermyon::spin::postgres as v2;
use crate::rdbms::generated::spin::postgres3_0_0::postgres as v3;
use crate::rdbms::generated::spin::postgres4_1_0::postgres as v4;
use crate::rdbms::generated_async::spin::postgres::postgres as v4_2;
use crate::rdbms::v2 as v2t;
use crate::rdbms::{Session, Sessions};

/// How long opening a connection (TCP, TLS and authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sessions open at once per component.
pub const MAX_OPEN: usize = 64;
/// Reset sessions kept per address for the next `open`.
pub const MAX_IDLE: usize = 8;
/// Addresses whose sessions are kept, per component.
pub const MAX_IDLE_ADDRESSES: usize = 16;
/// How long a kept session waits for its next `open` before it is closed.
pub const IDLE_LIFE: Duration = Duration::from_secs(60);
/// The longest address `open` takes.
pub const MAX_ADDRESS_BYTES: usize = 8192;
/// The most hosts one address may name.
pub const MAX_HOSTS: usize = 8;
/// The largest result handed to a guest, all its values together.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// A session a guest opened; back to its component's pool when dropped by
/// the guest.
pub struct Connection {
    link: Arc<Link>,
    key: String,
}

/// A session's client, shared with the rows a 4.2 `query-async` still
/// streams from it.
struct Link {
    client: tokio_postgres::Client,
    session: Session,
    /// Set when the client's own statements were seen gone (a guest's
    /// `DEALLOCATE ALL` or `DISCARD ALL`): the session is not kept.
    broken: std::sync::atomic::AtomicBool,
    /// Set while a 4.2 query's rows are being streamed.
    streaming: std::sync::atomic::AtomicBool,
}

impl Connection {
    fn new(client: tokio_postgres::Client, session: Session, key: String) -> Self {
        Self {
            link: Arc::new(Link {
                client,
                session,
                broken: Default::default(),
                streaming: Default::default(),
            }),
            key,
        }
    }
}

/// A 4.1 `connection-builder`: an address and the guest's root, if any.
pub struct Builder {
    address: String,
    root: Option<rustls::pki_types::CertificateDer<'static>>,
}

/// One component's sessions: how many are open, and the reset ones kept.
#[derive(Default)]
pub struct PostgresPool {
    open: Arc<Sessions>,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

/// A reset session kept for the next `open` of its address.
struct Idle {
    client: tokio_postgres::Client,
    session: Session,
    since: std::time::Instant,
}

/// What one guest store gives the PostgreSQL interfaces.
pub(crate) struct PostgresView<'a> {
    pub table: &'a mut ResourceTable,
    pub policy: &'a Arc<OutboundPolicy>,
    pub pool: &'a Arc<PostgresPool>,
}

pub(crate) trait PostgresHost {
    fn postgres(&mut self) -> PostgresView<'_>;
}

struct PostgresData;

impl HasData for PostgresData {
    type Data<'a> = PostgresView<'a>;
}

pub(crate) fn add_to_linker<T: PostgresHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, PostgresData>(linker, T::postgres)?;
    // The types both databases' 2.0.0 share: linked once, here.
    v2t::add_to_linker::<T, PostgresData>(linker, T::postgres)?;
    v3::add_to_linker::<T, PostgresData>(linker, T::postgres)?;
    v4::add_to_linker::<T, PostgresData>(linker, T::postgres)
}

/// Also `spin:postgres@4.2.0`, whose added functions are async: only an
/// engine with the component model's concurrency can link it.
pub(crate) fn add_to_linker_concurrent<T: PostgresHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v4_2::add_to_linker::<T, PostgresData>(linker, T::postgres)
}

/// Why a call failed, before it is said in one version's words.
#[derive(Debug)]
enum Failure {
    ConnectionFailed(String),
    BadParameter(String),
    QueryFailed(Box<v4::QueryError>),
    ValueConversionFailed(String),
}

impl Failure {
    fn query(text: impl Into<String>) -> Self {
        Self::QueryFailed(Box::new(v4::QueryError::Text(text.into())))
    }
}

impl From<Failure> for v4::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::ConnectionFailed(s) => Self::ConnectionFailed(s),
            Failure::BadParameter(s) => Self::BadParameter(s),
            Failure::QueryFailed(q) => Self::QueryFailed(*q),
            Failure::ValueConversionFailed(s) => Self::ValueConversionFailed(s),
        }
    }
}

/// The text earlier versions give for a query's failure.
fn query_text(error: v4::QueryError) -> String {
    match error {
        v4::QueryError::Text(text) => text,
        v4::QueryError::DbError(e) => e.as_text,
    }
}

impl From<Failure> for v3::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::ConnectionFailed(s) => Self::ConnectionFailed(s),
            Failure::BadParameter(s) => Self::BadParameter(s),
            Failure::QueryFailed(q) => Self::QueryFailed(query_text(*q)),
            Failure::ValueConversionFailed(s) => Self::ValueConversionFailed(s),
        }
    }
}

impl From<Failure> for v2t::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::ConnectionFailed(s) => Self::ConnectionFailed(s),
            Failure::BadParameter(s) => Self::BadParameter(s),
            Failure::QueryFailed(q) => Self::QueryFailed(query_text(*q)),
            Failure::ValueConversionFailed(s) => Self::ValueConversionFailed(s),
        }
    }
}

/// A failure of `tokio-postgres` in the interface's words: the server's
/// own error with its fields, a parameter that could not be bound, or the
/// text of anything else.
fn failure(error: &tokio_postgres::Error) -> Failure {
    if let Some(db) = error.as_db_error() {
        let mut extras = Vec::new();
        let fields = [
            ("column", db.column()),
            ("constraint", db.constraint()),
            ("routine", db.routine()),
            ("hint", db.hint()),
            ("table", db.table()),
            ("datatype", db.datatype()),
            ("schema", db.schema()),
            ("where", db.where_()),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                extras.push((name.to_owned(), value.to_owned()));
            }
        }
        return Failure::QueryFailed(Box::new(v4::QueryError::DbError(v4::DbError {
            as_text: format!("{}: {}", db.severity(), db.message()),
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras,
        })));
    }
    let text = crate::one_line_error(error);
    // tokio-postgres says a parameter its `to_sql` refused this way.
    if text.starts_with("error serializing parameter") {
        return Failure::BadParameter(text);
    }
    if error.is_closed() {
        return Failure::ConnectionFailed(text);
    }
    Failure::query(text)
}

/// Opens a session to `address` (or takes a reset one from the pool), if
/// the component may reach every host it names.
async fn open(
    policy: &OutboundPolicy,
    pool: &Arc<PostgresPool>,
    address: &str,
    root: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Result<Connection, Failure> {
    if address.len() > MAX_ADDRESS_BYTES {
        return Err(Failure::ConnectionFailed(format!(
            "the address is over {MAX_ADDRESS_BYTES} bytes"
        )));
    }
    let config: tokio_postgres::Config = address.parse().map_err(|e| {
        Failure::ConnectionFailed(format!(
            "not a PostgreSQL address: {}",
            crate::one_line_error(&e)
        ))
    })?;
    let shown = shown(&config);
    let deny = |why: String| {
        tracing::warn!(
            component = &*policy.component,
            address = shown.as_str(),
            "outbound PostgreSQL connection denied: {why}"
        );
        Failure::ConnectionFailed(format!("{why}: not permitted"))
    };
    if config.get_hosts().len() > MAX_HOSTS {
        return Err(Failure::ConnectionFailed(format!(
            "the address names more than {MAX_HOSTS} hosts"
        )));
    }
    if !config.get_hostaddrs().is_empty() {
        return Err(deny(
            "`hostaddr` is not supported (the host's name is what allowed_outbound_hosts checks)"
                .into(),
        ));
    }
    let ports = config.get_ports();
    let mut hosts = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(host) = host else {
            return Err(deny("Unix sockets are not reachable from a guest".into()));
        };
        let port = match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        };
        if !policy.allowed.allows("postgres", host, port, false) {
            return Err(deny(format!("postgres://{host}:{port}")));
        }
        hosts.push((host.clone(), port));
    }
    if hosts.is_empty() {
        return Err(Failure::ConnectionFailed(
            "the address names no host".into(),
        ));
    }
    let key = match root {
        Some(root) => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(root.as_ref());
            format!("{address}\n{digest:x}")
        }
        None => address.to_owned(),
    };
    if let Some((client, session)) = pool.take_idle(&key) {
        return Ok(Connection::new(client, session, key));
    }
    // At the limit, a kept session gives its place to this one.
    let session = std::iter::from_fn(|| match pool.open.open(MAX_OPEN) {
        Some(session) => Some(Some(session)),
        None if pool.close_idle() => Some(None),
        None => None,
    })
    .flatten()
    .next()
    .ok_or_else(|| {
        Failure::ConnectionFailed(format!(
            "too many connections (a component may have {MAX_OPEN} open at once)"
        ))
    })?;
    let mut last = String::from("no address to connect to");
    for (host, port) in &hosts {
        let addrs = match crate::outbound::resolve(host, *port).await {
            Ok(addrs) => addrs,
            Err(e) => {
                last = format!("cannot resolve {host}: {e}");
                continue;
            }
        };
        if let Some((target, listener)) = policy.forbidden.first_reached(&addrs) {
            return Err(deny(format!(
                "{host}:{port} is {target}, which reaches this host's admin listener ({listener})"
            )));
        }
        for addr in &addrs {
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, connect(&config, *addr, host, root)).await;
            match connected {
                Ok(Ok(client)) => return Ok(Connection::new(client, session, key)),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = format!(
                        "{host}:{port} did not answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    );
                }
            }
        }
    }
    Err(Failure::ConnectionFailed(format!(
        "cannot connect to {shown}: {last}"
    )))
}

/// An address as logs and errors may show it, made from what was parsed
/// (never the text, which may hold a password anywhere):
/// `postgres://USER@HOST:PORT,…/DATABASE`.
fn shown(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{database}", hosts.join(","))
}

/// A session on a TCP connection to `addr` (checked), with TLS as the
/// address's `sslmode` says, for the certificate of `host`.
async fn connect(
    config: &tokio_postgres::Config,
    addr: std::net::SocketAddr,
    host: &str,
    root: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Result<tokio_postgres::Client, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let session = |e: tokio_postgres::Error| crate::one_line_error(&e);
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        let (client, connection) = config
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(session)?;
        tokio::spawn(drive(connection));
        return Ok(client);
    }
    let mut tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(root)?);
    let tls = <_ as tokio_postgres::tls::MakeTlsConnect<tokio::net::TcpStream>>::make_tls_connect(
        &mut tls, host,
    )
    .map_err(|e| format!("TLS for {host}: {e}"))?;
    let (client, connection) = config.connect_raw(stream, tls).await.map_err(session)?;
    tokio::spawn(drive(connection));
    Ok(client)
}

/// Runs a session's connection until it closes.
/// Runs a session's connection until it closes. The server's notices
/// (what a guest's `RAISE NOTICE` says, as many as it likes) go to the
/// debug log only.
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notice(notice))) => {
                tracing::debug!("outbound PostgreSQL notice: {}", notice.message());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!("outbound PostgreSQL session ended: {e}");
                return;
            }
            None => return,
        }
    }
}

/// The roots outbound TLS trusts, and the guest's own root where it gave one.
fn tls_config(
    root: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    crate::outbound::client_tls(root)
}

impl PostgresPool {
    /// A reset session kept for `key`, if one is still connected.
    fn take_idle(&self, key: &str) -> Option<(tokio_postgres::Client, Session)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let kept = idle.get_mut(key)?;
        let mut found = None;
        while let Some(session) = kept.pop() {
            if !session.client.is_closed() && session.since.elapsed() < IDLE_LIFE {
                found = Some((session.client, session.session));
                break;
            }
        }
        if kept.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Closes one kept session (the longest idle), if there is one: its
    /// place goes to a session being opened.
    fn close_idle(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = idle
            .iter()
            .filter_map(|(key, kept)| kept.first().map(|s| (s.since, key.clone())))
            .min();
        let Some((_, key)) = oldest else {
            return false;
        };
        if let Some(kept) = idle.get_mut(&key) {
            kept.remove(0);
            if kept.is_empty() {
                idle.remove(&key);
            }
        }
        true
    }

    /// Keeps a session the guest dropped, once reset; a session that does
    /// not reset (or one too many), or whose rows are still being streamed,
    /// is closed.
    async fn give_back(&self, connection: Connection) {
        let Connection { link, key } = connection;
        let Some(Link {
            client,
            session,
            broken,
            ..
        }) = Arc::into_inner(link)
        else {
            // Closed once the rows' stream ends or is dropped.
            return;
        };
        if client.is_closed() {
            return;
        }
        if broken.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), reset(&client)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !idle.contains_key(&key) && idle.len() >= MAX_IDLE_ADDRESSES {
            return;
        }
        let kept = idle.entry(key).or_default();
        if kept.len() < MAX_IDLE {
            kept.push(Idle {
                client,
                session,
                since: std::time::Instant::now(),
            });
        }
    }
}

impl Link {
    /// Refuses a call while the session streams an earlier query's rows.
    fn ready(&self) -> Result<(), Failure> {
        if self.streaming.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Failure::query(
                "the session is streaming an earlier query's rows: read them to the end, or drop them, first",
            ));
        }
        Ok(())
    }

    /// [`failure`], noting a session whose client's own prepared
    /// statements are gone (SQLSTATE 26000 for one of them), so that it is
    /// not kept for another request.
    fn failed(&self, error: &tokio_postgres::Error) -> Failure {
        if error.as_db_error().is_some_and(|db| {
            *db.code() == tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME
        }) {
            self.broken
                .store(true, std::sync::atomic::Ordering::Release);
        }
        failure(error)
    }
}

/// Undoes what a guest may have left in a session: DISCARD ALL but for its
/// DEALLOCATE ALL, which would also drop the statements the client
/// prepared for itself (to look up types) without its knowing; the guest's
/// own SQL-level prepared statements go one by one.
async fn reset(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    // Outside any transaction first.
    client.batch_execute("ROLLBACK").await?;
    client
        .batch_execute(
            "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
             SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; \
             DISCARD SEQUENCES",
        )
        .await?;
    let named = client
        .simple_query("SELECT name FROM pg_prepared_statements WHERE from_sql")
        .await?;
    for message in named {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message
            && let Some(name) = row.get(0)
        {
            let quoted = name.replace('"', "\"\"");
            client
                .batch_execute(&format!("DEALLOCATE \"{quoted}\""))
                .await?;
        }
    }
    Ok(())
}

/// A parameter, bound by the type the server expects for it.
struct Param(v4::ParameterValue);

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("parameter")
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn refuse(what: &str, ty: &Type) -> BoxError {
    format!("a {what} cannot be bound to a parameter of type {ty}").into()
}

/// `value` as an integer of `ty`'s width, if it fits.
fn integer_to_sql(value: i64, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let fits = |_| -> BoxError { format!("{value} does not fit a {ty}").into() };
    match *ty {
        Type::CHAR => out.put_i8(i8::try_from(value).map_err(fits)?),
        Type::INT2 => out.put_i16(i16::try_from(value).map_err(fits)?),
        Type::INT4 => out.put_i32(i32::try_from(value).map_err(fits)?),
        Type::INT8 => out.put_i64(value),
        Type::OID => out.put_u32(u32::try_from(value).map_err(fits)?),
        Type::NUMERIC => numeric::encode(&value.to_string(), out)?,
        Type::FLOAT8 => out.put_f64(value as f64),
        _ => return Err(refuse("integer", ty)),
    }
    Ok(IsNull::No)
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use v4::ParameterValue as P;
        match &self.0 {
            P::DbNull => Ok(IsNull::Yes),
            P::Boolean(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            P::Boolean(_) => Err(refuse("boolean", ty)),
            P::Int8(n) => integer_to_sql(i64::from(*n), ty, out),
            P::Int16(n) => integer_to_sql(i64::from(*n), ty, out),
            P::Int32(n) => integer_to_sql(i64::from(*n), ty, out),
            P::Int64(n) => integer_to_sql(*n, ty, out),
            P::Floating32(x) => match *ty {
                Type::FLOAT4 => x.to_sql(ty, out),
                Type::FLOAT8 => f64::from(*x).to_sql(ty, out),
                _ => Err(refuse("floating-point number", ty)),
            },
            P::Floating64(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                _ => Err(refuse("64-bit floating-point number", ty)),
            },
            P::Str(s) => match *ty {
                Type::JSON | Type::JSONB => json_to_sql(s.as_bytes(), ty, out),
                _ if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
                _ => Err(refuse("string", ty)),
            },
            P::Binary(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            P::Binary(_) => Err(refuse("binary", ty)),
            P::Date((y, m, d)) => {
                let date = date(*y, *m, *d)?;
                match *ty {
                    Type::DATE => date.to_sql(ty, out),
                    _ => Err(refuse("date", ty)),
                }
            }
            P::Time((h, m, s, ns)) => match *ty {
                Type::TIME => time(*h, *m, *s, *ns)?.to_sql(ty, out),
                _ => Err(refuse("time", ty)),
            },
            P::Datetime((y, mo, d, h, mi, s, ns)) => {
                let at = date(*y, *mo, *d)?.and_time(time(*h, *mi, *s, *ns)?);
                match *ty {
                    Type::TIMESTAMP => at.to_sql(ty, out),
                    // A date-time is UTC.
                    Type::TIMESTAMPTZ => at.and_utc().to_sql(ty, out),
                    _ => Err(refuse("date-time", ty)),
                }
            }
            P::Timestamp(seconds) => {
                let at = chrono::DateTime::from_timestamp(*seconds, 0)
                    .ok_or_else(|| format!("{seconds} is not a timestamp PostgreSQL takes"))?;
                match *ty {
                    Type::TIMESTAMPTZ => at.to_sql(ty, out),
                    Type::TIMESTAMP => at.naive_utc().to_sql(ty, out),
                    _ => Err(refuse("timestamp", ty)),
                }
            }
            P::Uuid(text) => match *ty {
                Type::UUID => {
                    out.put_slice(&uuid::parse(text)?);
                    Ok(IsNull::No)
                }
                _ if <&str as ToSql>::accepts(ty) => text.as_str().to_sql(ty, out),
                _ => Err(refuse("UUID", ty)),
            },
            P::Jsonb(bytes) => match *ty {
                Type::JSON | Type::JSONB => json_to_sql(bytes, ty, out),
                _ => Err(refuse("JSON value", ty)),
            },
            P::Decimal(text) => match *ty {
                Type::NUMERIC => {
                    numeric::encode(text, out)?;
                    Ok(IsNull::No)
                }
                _ => Err(refuse("decimal", ty)),
            },
            P::RangeInt32((lower, upper)) => match *ty {
                Type::INT4_RANGE => range::encode(lower, upper, out, |v, out| {
                    out.put_i32(*v);
                    Ok(())
                }),
                _ => Err(refuse("range of 32-bit integers", ty)),
            },
            P::RangeInt64((lower, upper)) => match *ty {
                Type::INT8_RANGE => range::encode(lower, upper, out, |v, out| {
                    out.put_i64(*v);
                    Ok(())
                }),
                _ => Err(refuse("range of 64-bit integers", ty)),
            },
            P::RangeDecimal((lower, upper)) => match *ty {
                Type::NUM_RANGE => {
                    range::encode(lower, upper, out, |v, out| numeric::encode(v, out))
                }
                _ => Err(refuse("range of decimals", ty)),
            },
            P::ArrayInt32(items) => match *ty {
                Type::INT4_ARRAY => items.to_sql(ty, out),
                Type::INT8_ARRAY => items
                    .iter()
                    .map(|i| i.map(i64::from))
                    .collect::<Vec<_>>()
                    .to_sql(ty, out),
                _ => Err(refuse("array of 32-bit integers", ty)),
            },
            P::ArrayInt64(items) => match *ty {
                Type::INT8_ARRAY => items.to_sql(ty, out),
                _ => Err(refuse("array of 64-bit integers", ty)),
            },
            P::ArrayDecimal(items) => match *ty {
                Type::NUMERIC_ARRAY => items
                    .iter()
                    .map(|i| i.as_deref().map(numeric::Numeric::text))
                    .collect::<Vec<_>>()
                    .to_sql(ty, out),
                _ => Err(refuse("array of decimals", ty)),
            },
            P::ArrayStr(items) => match ty.kind() {
                Kind::Array(member) if <&str as ToSql>::accepts(member) => items.to_sql(ty, out),
                _ => Err(refuse("array of strings", ty)),
            },
            P::Interval(interval) => match *ty {
                Type::INTERVAL => {
                    out.put_i64(interval.micros);
                    out.put_i32(interval.days);
                    out.put_i32(interval.months);
                    Ok(IsNull::No)
                }
                _ => Err(refuse("interval", ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each value says for itself which types it binds to.
        true
    }

    to_sql_checked!();
}

fn json_to_sql(text: &[u8], ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).map_err(|e| format!("not JSON: {e}"))?;
    if *ty == Type::JSONB {
        // The binary format's version.
        out.put_u8(1);
    }
    out.put_slice(text);
    Ok(IsNull::No)
}

fn date(year: i32, month: u8, day: u8) -> Result<chrono::NaiveDate, BoxError> {
    chrono::NaiveDate::from_ymd_opt(year, month.into(), day.into())
        .ok_or_else(|| format!("{year}-{month}-{day} is not a date").into())
}

fn time(hour: u8, minute: u8, second: u8, nanos: u32) -> Result<chrono::NaiveTime, BoxError> {
    chrono::NaiveTime::from_hms_nano_opt(hour.into(), minute.into(), second.into(), nanos)
        .ok_or_else(|| format!("{hour}:{minute}:{second}.{nanos:09} is not a time").into())
}

/// PostgreSQL's `uuid`: 16 bytes, written as hyphenated hex.
mod uuid {
    pub fn parse(text: &str) -> Result<[u8; 16], super::BoxError> {
        let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
        let bad = || -> super::BoxError { format!("`{text}` is not a UUID").into() };
        if hex.len() != 32 || text.len() > 36 {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            bytes[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(bytes)
    }

    pub fn format(bytes: &[u8]) -> Option<String> {
        if bytes.len() != 16 {
            return None;
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ))
    }
}

/// PostgreSQL's `numeric` in its binary form, to and from base 10 text,
/// exactly (no float, no 28-digit limit): base-10000 digits with a weight,
/// a sign and a display scale.
mod numeric {
    use bytes::{Buf, BufMut, BytesMut};

    use super::BoxError;

    const POSITIVE: u16 = 0x0000;
    const NEGATIVE: u16 = 0x4000;
    const NAN: u16 = 0xC000;
    const INFINITY: u16 = 0xD000;
    const NEGATIVE_INFINITY: u16 = 0xF000;

    /// A decimal's text, bound as a `numeric` inside an array.
    #[derive(Debug)]
    pub struct Numeric<'a>(&'a str);

    impl<'a> Numeric<'a> {
        pub fn text(text: &'a str) -> Self {
            Self(text)
        }
    }

    impl tokio_postgres::types::ToSql for Numeric<'_> {
        fn to_sql(
            &self,
            _: &tokio_postgres::types::Type,
            out: &mut BytesMut,
        ) -> Result<tokio_postgres::types::IsNull, BoxError> {
            encode(self.0, out)?;
            Ok(tokio_postgres::types::IsNull::No)
        }

        fn accepts(ty: &tokio_postgres::types::Type) -> bool {
            *ty == tokio_postgres::types::Type::NUMERIC
        }

        tokio_postgres::types::to_sql_checked!();
    }

    pub fn encode(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
        let bad = || -> BoxError { format!("`{text}` is not a decimal").into() };
        let special = |sign: u16, out: &mut BytesMut| {
            out.put_i16(0);
            out.put_i16(0);
            out.put_u16(sign);
            out.put_u16(0);
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "nan" => {
                special(NAN, out);
                return Ok(());
            }
            "infinity" | "+infinity" | "inf" => {
                special(INFINITY, out);
                return Ok(());
            }
            "-infinity" | "-inf" => {
                special(NEGATIVE_INFINITY, out);
                return Ok(());
            }
            _ => {}
        }
        let text = text.trim();
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
            || fraction.len() > 16383
            || whole.len() > 131072
        {
            return Err(bad());
        }
        let scale = fraction.len();
        // Groups of four digits, aligned on the decimal point.
        let whole = whole.trim_start_matches('0');
        let lead = (4 - whole.len() % 4) % 4;
        let trail = (4 - fraction.len() % 4) % 4;
        let digits: String = "0".repeat(lead) + whole + fraction + &"0".repeat(trail);
        let mut groups: Vec<i16> = digits
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
            .collect();
        let mut weight = ((lead + whole.len()) / 4) as i32 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.put_i16(i16::try_from(groups.len()).map_err(|_| bad())?);
        out.put_i16(i16::try_from(weight).map_err(|_| bad())?);
        out.put_u16(if negative && !groups.is_empty() {
            NEGATIVE
        } else {
            POSITIVE
        });
        out.put_u16(scale as u16);
        for group in groups {
            out.put_i16(group);
        }
        Ok(())
    }

    /// The number as text, its length taken from `budget` (bounded by
    /// its header) before it is made.
    pub fn decode(mut raw: &[u8], budget: &mut super::Budget) -> Result<String, BoxError> {
        if raw.len() < 8 {
            return Err("a numeric shorter than its header".into());
        }
        let count = raw.get_i16();
        let weight = i32::from(raw.get_i16());
        let sign = raw.get_u16();
        let scale = usize::from(raw.get_u16());
        match sign {
            NAN => return Ok("NaN".into()),
            INFINITY => return Ok("Infinity".into()),
            NEGATIVE_INFINITY => return Ok("-Infinity".into()),
            POSITIVE | NEGATIVE => {}
            other => return Err(format!("a numeric of unknown sign {other:#x}").into()),
        }
        let count = usize::try_from(count).map_err(|_| "a numeric with negative digits")?;
        if raw.len() != count * 2 {
            return Err("a numeric whose digits are not what its header says".into());
        }
        // Sign, whole digits (at least one), point and fraction.
        let whole = usize::try_from(weight + 1).unwrap_or(0).max(1) * 4;
        budget.take(1 + whole + 1 + scale)?;
        if count == 0 {
            // Zero, whatever its weight says.
            return Ok(match scale {
                0 => "0".to_owned(),
                _ => format!("0.{}", "0".repeat(scale)),
            });
        }
        let groups: Vec<i16> = (0..count).map(|_| raw.get_i16()).collect();
        if groups.iter().any(|g| !(0..10000).contains(g)) {
            return Err("a numeric with a digit group out of 0..9999".into());
        }
        let group = |i: i32| -> i16 {
            usize::try_from(i)
                .ok()
                .and_then(|i| groups.get(i).copied())
                .unwrap_or(0)
        };
        let mut text = String::new();
        if sign == NEGATIVE {
            text.push('-');
        }
        // The whole part: groups 0..=weight.
        if weight < 0 {
            text.push('0');
        } else {
            for i in 0..=weight {
                if i == 0 {
                    text.push_str(&group(i).to_string());
                } else {
                    text.push_str(&format!("{:04}", group(i)));
                }
            }
        }
        if scale > 0 {
            let mut fraction = String::new();
            let mut i = weight + 1;
            while fraction.len() < scale {
                fraction.push_str(&format!("{:04}", group(i)));
                i += 1;
            }
            fraction.truncate(scale);
            text.push('.');
            text.push_str(&fraction);
        }
        Ok(text)
    }
}

/// PostgreSQL's range types in their binary form: flags, then each bound
/// present as a length and a value.
mod range {
    use bytes::{Buf, BufMut, BytesMut};
    use tokio_postgres::types::IsNull;

    use super::{BoxError, v4::RangeBoundKind};

    const EMPTY: u8 = 0x01;
    const LOWER_INCLUSIVE: u8 = 0x02;
    const UPPER_INCLUSIVE: u8 = 0x04;
    const LOWER_UNBOUNDED: u8 = 0x08;
    const UPPER_UNBOUNDED: u8 = 0x10;

    type Bound<T> = Option<(T, RangeBoundKind)>;

    pub fn encode<T>(
        lower: &Bound<T>,
        upper: &Bound<T>,
        out: &mut BytesMut,
        value: impl Fn(&T, &mut BytesMut) -> Result<(), BoxError>,
    ) -> Result<IsNull, BoxError> {
        let mut flags = 0;
        match lower {
            None => flags |= LOWER_UNBOUNDED,
            Some((_, RangeBoundKind::Inclusive)) => flags |= LOWER_INCLUSIVE,
            Some(_) => {}
        }
        match upper {
            None => flags |= UPPER_UNBOUNDED,
            Some((_, RangeBoundKind::Inclusive)) => flags |= UPPER_INCLUSIVE,
            Some(_) => {}
        }
        out.put_u8(flags);
        for (bound, _) in [lower, upper].into_iter().flatten() {
            let at = out.len();
            out.put_i32(0);
            value(bound, out)?;
            let len = i32::try_from(out.len() - at - 4)?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    /// The bounds of a range; an empty range reads as `(0, 0)`, both
    /// exclusive (`zero`), which PostgreSQL takes back as empty.
    pub fn decode<T>(
        mut raw: &[u8],
        zero: impl Fn() -> T,
        mut value: impl FnMut(&[u8]) -> Result<T, BoxError>,
    ) -> Result<(Bound<T>, Bound<T>), BoxError> {
        let short = || -> BoxError { "a range shorter than it says".into() };
        if raw.is_empty() {
            return Err(short());
        }
        let flags = raw.get_u8();
        if flags & EMPTY != 0 {
            return Ok((
                Some((zero(), RangeBoundKind::Exclusive)),
                Some((zero(), RangeBoundKind::Exclusive)),
            ));
        }
        let mut bound = |unbounded: u8, inclusive: u8| -> Result<Bound<T>, BoxError> {
            if flags & unbounded != 0 {
                return Ok(None);
            }
            if raw.len() < 4 {
                return Err(short());
            }
            let len = usize::try_from(raw.get_i32()).map_err(|_| short())?;
            if raw.len() < len {
                return Err(short());
            }
            let (bytes, rest) = raw.split_at(len);
            raw = rest;
            let kind = if flags & inclusive != 0 {
                RangeBoundKind::Inclusive
            } else {
                RangeBoundKind::Exclusive
            };
            Ok(Some((value(bytes)?, kind)))
        };
        let lower = bound(LOWER_UNBOUNDED, LOWER_INCLUSIVE)?;
        let upper = bound(UPPER_UNBOUNDED, UPPER_INCLUSIVE)?;
        Ok((lower, upper))
    }
}

/// Any column's bytes in PostgreSQL's binary format, borrowed from the row.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// What is left of a result's [`MAX_RESULT_BYTES`] as its values are read:
/// each value's size is taken before it is made, so none is made that
/// would not fit.
struct Budget(usize);

/// A result over [`MAX_RESULT_BYTES`].
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the result is over Ferry's limit of {MAX_RESULT_BYTES} bytes"
        )
    }
}

impl std::error::Error for OverLimit {}

impl Budget {
    /// Takes `bytes` of what is left, or says the result is over.
    fn take(&mut self, bytes: usize) -> Result<(), BoxError> {
        self.0 = self.0.checked_sub(bytes).ok_or(OverLimit)?;
        Ok(())
    }
}

/// PostgreSQL's one-dimensional arrays in their binary form, read without
/// trusting the count they state beyond what their bytes can hold.
mod array {
    use bytes::Buf;

    use super::BoxError;

    /// The elements, `None` for a null one; `Ok(None)` for an array of
    /// more than one dimension (which the interface cannot carry).
    #[allow(clippy::type_complexity)]
    pub fn decode<T>(
        mut raw: &[u8],
        mut element: impl FnMut(&[u8]) -> Result<T, BoxError>,
    ) -> Result<Option<Vec<Option<T>>>, BoxError> {
        let short = || -> BoxError { "an array shorter than it says".into() };
        if raw.len() < 12 {
            return Err(short());
        }
        let dimensions = raw.get_i32();
        let _has_nulls = raw.get_i32();
        let _element_type = raw.get_u32();
        match dimensions {
            0 => return Ok(Some(Vec::new())),
            1 => {}
            _ => return Ok(None),
        }
        if raw.len() < 8 {
            return Err(short());
        }
        let count = usize::try_from(raw.get_i32()).map_err(|_| short())?;
        let _lower_bound = raw.get_i32();
        // Each element takes at least its 4-byte length.
        if count > raw.len() / 4 {
            return Err(short());
        }
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            if raw.len() < 4 {
                return Err(short());
            }
            let len = raw.get_i32();
            if len < 0 {
                elements.push(None);
                continue;
            }
            let len = len as usize;
            if raw.len() < len {
                return Err(short());
            }
            let (bytes, rest) = raw.split_at(len);
            raw = rest;
            elements.push(Some(element(bytes)?));
        }
        Ok(Some(elements))
    }
}

/// The interface's type for a column of `ty`.
fn data_type(ty: &Type) -> v4::DbDataType {
    use v4::DbDataType as D;
    match *ty {
        Type::BOOL => D::Boolean,
        Type::CHAR => D::Int8,
        Type::INT2 => D::Int16,
        Type::INT4 => D::Int32,
        Type::INT8 => D::Int64,
        Type::FLOAT4 => D::Floating32,
        Type::FLOAT8 => D::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => D::Str,
        Type::BYTEA => D::Binary,
        Type::DATE => D::Date,
        Type::TIME => D::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => D::Datetime,
        Type::UUID => D::Uuid,
        Type::JSON | Type::JSONB => D::Jsonb,
        Type::NUMERIC => D::Decimal,
        Type::INT4_RANGE => D::RangeInt32,
        Type::INT8_RANGE => D::RangeInt64,
        Type::NUM_RANGE => D::RangeDecimal,
        Type::INT4_ARRAY => D::ArrayInt32,
        Type::INT8_ARRAY => D::ArrayInt64,
        Type::NUMERIC_ARRAY => D::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => D::ArrayStr,
        Type::INTERVAL => D::Interval,
        _ => D::Other(ty.name().to_owned()),
    }
}

/// Column `i` of `row` as the interface's value, its size taken from
/// `budget` before it is made.
fn value(
    row: &tokio_postgres::Row,
    i: usize,
    budget: &mut Budget,
) -> Result<v4::DbValue, BoxError> {
    use v4::DbValue as V;
    budget.take(std::mem::size_of::<V>())?;
    let ty = row.columns()[i].type_().clone();
    let Some(Raw(raw)) = row.try_get::<_, Option<Raw>>(i)? else {
        return Ok(V::DbNull);
    };
    // Nothing decodes larger than its bytes but numbers as text (bounded
    // by their own headers) and arrays (their elements' sizes added).
    if !matches!(ty, Type::NUMERIC | Type::NUM_RANGE | Type::NUMERIC_ARRAY) {
        budget.take(raw.len())?;
    }
    fn one_dimension<T>(elements: Option<Vec<Option<T>>>) -> Result<Vec<Option<T>>, BoxError> {
        elements.ok_or_else(|| "an array of more than one dimension".into())
    }
    let value = match ty {
        Type::BOOL => V::Boolean(bool::from_sql(&ty, raw)?),
        Type::CHAR => V::Int8(i8::from_sql(&ty, raw)?),
        Type::INT2 => V::Int16(i16::from_sql(&ty, raw)?),
        Type::INT4 => V::Int32(i32::from_sql(&ty, raw)?),
        Type::INT8 => V::Int64(i64::from_sql(&ty, raw)?),
        Type::FLOAT4 => V::Floating32(f32::from_sql(&ty, raw)?),
        Type::FLOAT8 => V::Floating64(f64::from_sql(&ty, raw)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            V::Str(String::from_sql(&ty, raw)?)
        }
        Type::BYTEA => V::Binary(raw.to_vec()),
        Type::DATE => {
            let d = chrono::NaiveDate::from_sql(&ty, raw)?;
            V::Date((d.year(), d.month() as u8, d.day() as u8))
        }
        Type::TIME => V::Time(time_parts(chrono::NaiveTime::from_sql(&ty, raw)?)),
        Type::TIMESTAMP => V::Datetime(datetime_parts(chrono::NaiveDateTime::from_sql(&ty, raw)?)),
        Type::TIMESTAMPTZ => V::Datetime(datetime_parts(
            chrono::DateTime::<chrono::Utc>::from_sql(&ty, raw)?.naive_utc(),
        )),
        Type::UUID => V::Uuid(uuid::format(raw).ok_or("a uuid not 16 bytes long")?),
        Type::JSON => V::Jsonb(raw.to_vec()),
        Type::JSONB => V::Jsonb(raw.get(1..).unwrap_or_default().to_vec()),
        Type::NUMERIC => V::Decimal(numeric::decode(raw, budget)?),
        Type::INT4_RANGE => {
            V::RangeInt32(range::decode(raw, || 0, |b| i32::from_sql(&Type::INT4, b))?)
        }
        Type::INT8_RANGE => {
            V::RangeInt64(range::decode(raw, || 0, |b| i64::from_sql(&Type::INT8, b))?)
        }
        Type::NUM_RANGE => V::RangeDecimal(range::decode(
            raw,
            || "0".to_owned(),
            |b| numeric::decode(b, budget),
        )?),
        Type::INT4_ARRAY => V::ArrayInt32(one_dimension(array::decode(raw, |b| {
            budget.take(std::mem::size_of::<Option<i32>>())?;
            i32::from_sql(&Type::INT4, b)
        })?)?),
        Type::INT8_ARRAY => V::ArrayInt64(one_dimension(array::decode(raw, |b| {
            budget.take(std::mem::size_of::<Option<i64>>())?;
            i64::from_sql(&Type::INT8, b)
        })?)?),
        Type::NUMERIC_ARRAY => V::ArrayDecimal(one_dimension(array::decode(raw, |b| {
            budget.take(std::mem::size_of::<Option<String>>())?;
            numeric::decode(b, budget)
        })?)?),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            V::ArrayStr(one_dimension(array::decode(raw, |b| {
                budget.take(std::mem::size_of::<Option<String>>())?;
                String::from_sql(&Type::TEXT, b)
            })?)?)
        }
        Type::INTERVAL => {
            use bytes::Buf as _;
            if raw.len() != 16 {
                return Err("an interval not 16 bytes long".into());
            }
            let mut bytes = raw;
            V::Interval(v4::Interval {
                micros: bytes.get_i64(),
                days: bytes.get_i32(),
                months: bytes.get_i32(),
            })
        }
        _ => V::Unsupported(raw.to_vec()),
    };
    Ok(value)
}

fn time_parts(t: chrono::NaiveTime) -> (u8, u8, u8, u32) {
    (
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    )
}

fn datetime_parts(at: chrono::NaiveDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    let (h, mi, s, ns) = time_parts(at.time());
    (at.year(), at.month() as u8, at.day() as u8, h, mi, s, ns)
}

/// The calls, once, for every version.
struct Calls;

impl Calls {
    /// Prepares and starts a query: its columns (described by the
    /// statement, so also when no row comes), and its rows as the server
    /// sends them.
    async fn start(
        c: &Link,
        statement: &str,
        params: Vec<v4::ParameterValue>,
    ) -> Result<(Vec<v4::Column>, tokio_postgres::RowStream), Failure> {
        c.ready()?;
        let prepared = c
            .client
            .prepare(statement)
            .await
            .map_err(|e| c.failed(&e))?;
        check_count(&prepared, &params)?;
        let columns = prepared
            .columns()
            .iter()
            .map(|c| v4::Column {
                name: c.name().to_owned(),
                data_type: data_type(c.type_()),
            })
            .collect();
        let rows = c
            .client
            .query_raw(&prepared, params.into_iter().map(Param))
            .await
            .map_err(|e| c.failed(&e))?;
        Ok((columns, rows))
    }

    /// A query's whole result, at most [`MAX_RESULT_BYTES`].
    async fn query(
        c: &Link,
        statement: &str,
        params: Vec<v4::ParameterValue>,
    ) -> Result<v4::RowSet, Failure> {
        use futures_util::TryStreamExt as _;
        let (columns, rows) = Self::start(c, statement, params).await?;
        futures_util::pin_mut!(rows);
        let mut budget = Budget(MAX_RESULT_BYTES);
        let mut read = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(|e| c.failed(&e))? {
            read.push(row_values(&row, &mut budget)?);
        }
        Ok(v4::RowSet {
            columns,
            rows: read,
        })
    }

    async fn execute(
        c: &Link,
        statement: &str,
        params: Vec<v4::ParameterValue>,
    ) -> Result<u64, Failure> {
        c.ready()?;
        let prepared = c
            .client
            .prepare(statement)
            .await
            .map_err(|e| c.failed(&e))?;
        check_count(&prepared, &params)?;
        c.client
            .execute_raw(&prepared, params.into_iter().map(Param))
            .await
            .map_err(|e| c.failed(&e))
    }
}

/// A row's values, their size taken from `budget`.
fn row_values(row: &tokio_postgres::Row, budget: &mut Budget) -> Result<v4::Row, Failure> {
    let over = |_| Failure::query(OverLimit.to_string());
    budget.take(std::mem::size_of::<v4::Row>()).map_err(over)?;
    let mut values = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let value = value(row, i, budget).map_err(|e| {
            if e.is::<OverLimit>() {
                return Failure::query(OverLimit.to_string());
            }
            Failure::ValueConversionFailed(format!("column `{}`: {e}", row.columns()[i].name()))
        })?;
        values.push(value);
    }
    Ok(values)
}

/// As many parameters as the statement has placeholders.
fn check_count(
    prepared: &tokio_postgres::Statement,
    params: &[v4::ParameterValue],
) -> Result<(), Failure> {
    let wanted = prepared.params().len();
    if params.len() != wanted {
        return Err(Failure::BadParameter(format!(
            "the statement takes {wanted} parameters; {} were given",
            params.len()
        )));
    }
    Ok(())
}

/// 3.0.0's parameters are 4.1.0's.
fn from_v3(p: v3::ParameterValue) -> v4::ParameterValue {
    use v3::ParameterValue as P3;
    use v4::ParameterValue as P;
    match p {
        P3::Boolean(b) => P::Boolean(b),
        P3::Int8(n) => P::Int8(n),
        P3::Int16(n) => P::Int16(n),
        P3::Int32(n) => P::Int32(n),
        P3::Int64(n) => P::Int64(n),
        P3::Floating32(x) => P::Floating32(x),
        P3::Floating64(x) => P::Floating64(x),
        P3::Str(s) => P::Str(s),
        P3::Binary(b) => P::Binary(b),
        P3::Date(d) => P::Date(d),
        P3::Time(t) => P::Time(t),
        P3::Datetime(d) => P::Datetime(d),
        P3::Timestamp(t) => P::Timestamp(t),
        P3::DbNull => P::DbNull,
    }
}

/// 2.0.0's parameters, but for its unsigned integers, which PostgreSQL
/// has no type for (as Spin answers).
fn from_v2(p: v2t::ParameterValue) -> Result<v4::ParameterValue, Failure> {
    use v2t::ParameterValue as P2;
    use v4::ParameterValue as P;
    Ok(match p {
        P2::Boolean(b) => P::Boolean(b),
        P2::Int8(n) => P::Int8(n),
        P2::Int16(n) => P::Int16(n),
        P2::Int32(n) => P::Int32(n),
        P2::Int64(n) => P::Int64(n),
        P2::Floating32(x) => P::Floating32(x),
        P2::Floating64(x) => P::Floating64(x),
        P2::Str(s) => P::Str(s),
        P2::Binary(b) => P::Binary(b),
        P2::DbNull => P::DbNull,
        P2::Uint8(_) | P2::Uint16(_) | P2::Uint32(_) | P2::Uint64(_) => {
            return Err(Failure::ValueConversionFailed(
                "PostgreSQL has no unsigned integers".into(),
            ));
        }
    })
}

fn to_v3(rows: v4::RowSet) -> v3::RowSet {
    use v3::DbDataType as D3;
    use v3::DbValue as V3;
    use v4::DbDataType as D;
    use v4::DbValue as V;
    let columns = rows
        .columns
        .into_iter()
        .map(|c| v3::Column {
            name: c.name,
            data_type: match c.data_type {
                D::Boolean => D3::Boolean,
                D::Int8 => D3::Int8,
                D::Int16 => D3::Int16,
                D::Int32 => D3::Int32,
                D::Int64 => D3::Int64,
                D::Floating32 => D3::Floating32,
                D::Floating64 => D3::Floating64,
                D::Str => D3::Str,
                D::Binary => D3::Binary,
                D::Date => D3::Date,
                D::Time => D3::Time,
                D::Datetime => D3::Datetime,
                D::Timestamp => D3::Timestamp,
                _ => D3::Other,
            },
        })
        .collect();
    let value = |v: V| match v {
        V::Boolean(b) => V3::Boolean(b),
        V::Int8(n) => V3::Int8(n),
        V::Int16(n) => V3::Int16(n),
        V::Int32(n) => V3::Int32(n),
        V::Int64(n) => V3::Int64(n),
        V::Floating32(x) => V3::Floating32(x),
        V::Floating64(x) => V3::Floating64(x),
        V::Str(s) => V3::Str(s),
        V::Binary(b) => V3::Binary(b),
        V::Date(d) => V3::Date(d),
        V::Time(t) => V3::Time(t),
        V::Datetime(d) => V3::Datetime(d),
        V::Timestamp(t) => V3::Timestamp(t),
        V::DbNull => V3::DbNull,
        _ => V3::Unsupported,
    };
    v3::RowSet {
        columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value).collect())
            .collect(),
    }
}

fn to_v2(rows: v4::RowSet) -> v2t::RowSet {
    use v2t::DbDataType as D2;
    use v2t::DbValue as V2;
    use v4::DbDataType as D;
    use v4::DbValue as V;
    let columns = rows
        .columns
        .into_iter()
        .map(|c| v2t::Column {
            name: c.name,
            data_type: match c.data_type {
                D::Boolean => D2::Boolean,
                D::Int8 => D2::Int8,
                D::Int16 => D2::Int16,
                D::Int32 => D2::Int32,
                D::Int64 => D2::Int64,
                D::Floating32 => D2::Floating32,
                D::Floating64 => D2::Floating64,
                D::Str => D2::Str,
                D::Binary => D2::Binary,
                _ => D2::Other,
            },
        })
        .collect();
    let value = |v: V| match v {
        V::Boolean(b) => V2::Boolean(b),
        V::Int8(n) => V2::Int8(n),
        V::Int16(n) => V2::Int16(n),
        V::Int32(n) => V2::Int32(n),
        V::Int64(n) => V2::Int64(n),
        V::Floating32(x) => V2::Floating32(x),
        V::Floating64(x) => V2::Floating64(x),
        V::Str(s) => V2::Str(s),
        V::Binary(b) => V2::Binary(b),
        V::DbNull => V2::DbNull,
        _ => V2::Unsupported,
    };
    v2t::RowSet {
        columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value).collect())
            .collect(),
    }
}

impl PostgresView<'_> {
    async fn open(
        &mut self,
        address: &str,
        root: Option<&rustls::pki_types::CertificateDer<'static>>,
    ) -> wasmtime::Result<Result<Resource<Connection>, Failure>> {
        Ok(match open(self.policy, self.pool, address, root).await {
            Ok(c) => Ok(self.table.push(c)?),
            Err(f) => Err(f),
        })
    }

    async fn drop_connection(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        let connection = self.table.delete(handle)?;
        self.pool.give_back(connection).await;
        Ok(())
    }
}

impl v2t::Host for PostgresView<'_> {}
impl v2::Host for PostgresView<'_> {}
impl v3::Host for PostgresView<'_> {}
impl v4::Host for PostgresView<'_> {}

impl v2::HostConnection for PostgresView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2t::Error>> {
        Ok(self.open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, v2t::Error>> {
        let params = match params.into_iter().map(from_v2).collect() {
            Ok(params) => params,
            Err(f) => return Ok(Err(f.into())),
        };
        let c = &self.table.get(&this)?.link;
        Ok(Calls::query(c, &statement, params)
            .await
            .map(to_v2)
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v2t::Error>> {
        let params = match params.into_iter().map(from_v2).collect() {
            Ok(params) => params,
            Err(f) => return Ok(Err(f.into())),
        };
        let c = &self.table.get(&this)?.link;
        Ok(Calls::execute(c, &statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.drop_connection(this).await
    }
}

impl v3::HostConnection for PostgresView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        Ok(self.open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<v3::RowSet, v3::Error>> {
        let c = &self.table.get(&this)?.link;
        let params = params.into_iter().map(from_v3).collect();
        Ok(Calls::query(c, &statement, params)
            .await
            .map(to_v3)
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v3::Error>> {
        let c = &self.table.get(&this)?.link;
        let params = params.into_iter().map(from_v3).collect();
        Ok(Calls::execute(c, &statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.drop_connection(this).await
    }
}

impl v4::HostConnection for PostgresView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
        Ok(self.open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<v4::RowSet, v4::Error>> {
        let c = &self.table.get(&this)?.link;
        Ok(Calls::query(c, &statement, params)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        let c = &self.table.get(&this)?.link;
        Ok(Calls::execute(c, &statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.drop_connection(this).await
    }
}

impl v4::HostConnectionBuilder for PostgresView<'_> {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<Builder>> {
        Ok(self.table.push(Builder {
            address,
            root: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        this: Resource<Builder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), v4::Error>> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let root = match CertificateDer::pem_slice_iter(certificate.as_bytes()).next() {
            Some(Ok(root)) => root.into_owned(),
            Some(Err(e)) => {
                return Ok(Err(v4::Error::Other(format!(
                    "invalid root certificate: {e}"
                ))));
            }
            None => {
                return Ok(Err(v4::Error::Other(
                    "invalid root certificate: no PEM certificate in it".into(),
                )));
            }
        };
        self.table.get_mut(&this)?.root = Some(root);
        Ok(Ok(()))
    }

    async fn build(
        &mut self,
        this: Resource<Builder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
        let builder = self.table.get(&this)?;
        let (address, root) = (builder.address.clone(), builder.root.clone());
        Ok(self
            .open(&address, root.as_ref())
            .await?
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<Builder>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// 4.2.0's values are 4.1.0's, in types of their own.
mod v4_2_values {
    use super::{v4, v4_2};

    /// The same variant, its payload as it is, for each name given.
    macro_rules! same {
        ($value:expr, $from:ident => $to:ident, [$($payload:ident),*], [$($unit:ident),*], {$($rest:tt)*}) => {
            match $value {
                $($from::$payload(x) => $to::$payload(x),)*
                $($from::$unit => $to::$unit,)*
                $($rest)*
            }
        };
    }

    type Bounds<T, K> = (Option<(T, K)>, Option<(T, K)>);

    fn bounds<T, A, B>((lower, upper): Bounds<T, A>, kind: impl Fn(A) -> B) -> Bounds<T, B> {
        (
            lower.map(|(v, k)| (v, kind(k))),
            upper.map(|(v, k)| (v, kind(k))),
        )
    }

    fn kind_from(k: v4_2::RangeBoundKind) -> v4::RangeBoundKind {
        match k {
            v4_2::RangeBoundKind::Inclusive => v4::RangeBoundKind::Inclusive,
            v4_2::RangeBoundKind::Exclusive => v4::RangeBoundKind::Exclusive,
        }
    }

    fn kind_to(k: v4::RangeBoundKind) -> v4_2::RangeBoundKind {
        match k {
            v4::RangeBoundKind::Inclusive => v4_2::RangeBoundKind::Inclusive,
            v4::RangeBoundKind::Exclusive => v4_2::RangeBoundKind::Exclusive,
        }
    }

    pub fn parameter(p: v4_2::ParameterValue) -> v4::ParameterValue {
        use v4::ParameterValue as B;
        use v4_2::ParameterValue as A;
        same!(p, A => B,
            [Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary, Date,
             Time, Datetime, Timestamp, Uuid, Jsonb, Decimal, ArrayInt32, ArrayInt64,
             ArrayDecimal, ArrayStr],
            [DbNull],
            {
                A::RangeInt32(r) => B::RangeInt32(bounds(r, kind_from)),
                A::RangeInt64(r) => B::RangeInt64(bounds(r, kind_from)),
                A::RangeDecimal(r) => B::RangeDecimal(bounds(r, kind_from)),
                A::Interval(i) => B::Interval(v4::Interval {
                    micros: i.micros,
                    days: i.days,
                    months: i.months,
                }),
            }
        )
    }

    pub fn value(v: v4::DbValue) -> v4_2::DbValue {
        use v4::DbValue as A;
        use v4_2::DbValue as B;
        same!(v, A => B,
            [Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary, Date,
             Time, Datetime, Timestamp, Uuid, Jsonb, Decimal, ArrayInt32, ArrayInt64,
             ArrayDecimal, ArrayStr, Unsupported],
            [DbNull],
            {
                A::RangeInt32(r) => B::RangeInt32(bounds(r, kind_to)),
                A::RangeInt64(r) => B::RangeInt64(bounds(r, kind_to)),
                A::RangeDecimal(r) => B::RangeDecimal(bounds(r, kind_to)),
                A::Interval(i) => B::Interval(v4_2::Interval {
                    micros: i.micros,
                    days: i.days,
                    months: i.months,
                }),
            }
        )
    }

    pub fn row(row: v4::Row) -> v4_2::Row {
        row.into_iter().map(value).collect()
    }

    pub fn column(c: v4::Column) -> v4_2::Column {
        use v4::DbDataType as A;
        use v4_2::DbDataType as B;
        let data_type = same!(c.data_type, A => B,
            [Other],
            [Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary, Date,
             Time, Datetime, Timestamp, Uuid, Jsonb, Decimal, RangeInt32, RangeInt64,
             RangeDecimal, ArrayInt32, ArrayInt64, ArrayDecimal, ArrayStr, Interval],
            {}
        );
        v4_2::Column {
            name: c.name,
            data_type,
        }
    }

    pub fn row_set(rows: v4::RowSet) -> v4_2::RowSet {
        v4_2::RowSet {
            columns: rows.columns.into_iter().map(column).collect(),
            rows: rows.rows.into_iter().map(row).collect(),
        }
    }

    pub fn error(e: v4::Error) -> v4_2::Error {
        use v4::Error as A;
        use v4_2::Error as B;
        same!(e, A => B,
            [ConnectionFailed, BadParameter, ValueConversionFailed, Other],
            [],
            {
                A::QueryFailed(v4::QueryError::Text(t)) => {
                    B::QueryFailed(v4_2::QueryError::Text(t))
                }
                A::QueryFailed(v4::QueryError::DbError(d)) => {
                    B::QueryFailed(v4_2::QueryError::DbError(v4_2::DbError {
                        as_text: d.as_text,
                        severity: d.severity,
                        code: d.code,
                        message: d.message,
                        detail: d.detail,
                        extras: d.extras,
                    }))
                }
            }
        )
    }
}

impl From<Failure> for v4_2::Error {
    fn from(f: Failure) -> Self {
        v4_2_values::error(f.into())
    }
}

impl v4_2::Host for PostgresView<'_> {}

/// 4.2.0's synchronous functions: 4.1.0's.
impl v4_2::HostConnection for PostgresView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4_2::Error>> {
        Ok(self.open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v4_2::ParameterValue>,
    ) -> wasmtime::Result<Result<v4_2::RowSet, v4_2::Error>> {
        let c = &self.table.get(&this)?.link;
        let params = params.into_iter().map(v4_2_values::parameter).collect();
        Ok(Calls::query(c, &statement, params)
            .await
            .map(v4_2_values::row_set)
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v4_2::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4_2::Error>> {
        let c = &self.table.get(&this)?.link;
        let params = params.into_iter().map(v4_2_values::parameter).collect();
        Ok(Calls::execute(c, &statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.drop_connection(this).await
    }
}

impl v4_2::HostConnectionBuilder for PostgresView<'_> {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<Builder>> {
        v4::HostConnectionBuilder::new(self, address).await
    }

    async fn set_ca_root(
        &mut self,
        this: Resource<Builder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), v4_2::Error>> {
        Ok(
            v4::HostConnectionBuilder::set_ca_root(self, this, certificate)
                .await?
                .map_err(v4_2_values::error),
        )
    }

    async fn build(
        &mut self,
        this: Resource<Builder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4_2::Error>> {
        Ok(v4::HostConnectionBuilder::build(self, this)
            .await?
            .map_err(v4_2_values::error))
    }

    async fn drop(&mut self, this: Resource<Builder>) -> wasmtime::Result<()> {
        v4::HostConnectionBuilder::drop(self, this).await
    }
}

/// Opens `address` for an async call: what it needs is taken from the
/// store, the connection made outside it, the resource put in after.
async fn open_async<U>(
    accessor: &Accessor<U, PostgresData>,
    address: &str,
    root: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> wasmtime::Result<Result<Resource<Connection>, v4_2::Error>> {
    let (policy, pool) = accessor.with(|mut access| {
        let view = access.get();
        (view.policy.clone(), view.pool.clone())
    });
    match open(&policy, &pool, address, root).await {
        Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().table.push(c)?))),
        Err(f) => Ok(Err(f.into())),
    }
}

/// The session behind a guest's connection, for an async call.
fn link<U>(
    accessor: &Accessor<U, PostgresData>,
    this: &Resource<Connection>,
) -> wasmtime::Result<Arc<Link>> {
    accessor.with(|mut access| Ok(access.get().table.get(this)?.link.clone()))
}

impl<U> v4_2::HostConnectionWithStore<U> for PostgresData {
    async fn open_async(
        accessor: &Accessor<U, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4_2::Error>> {
        open_async(accessor, &address, None).await
    }

    /// The columns once the statement is prepared and running; the rows as
    /// the server sends them, each made when the guest reads it (at most
    /// [`MAX_RESULT_BYTES`] a row); the outcome once the last is read.
    async fn query_async(
        accessor: &Accessor<U, Self>,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v4_2::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v4_2::Column>,
                StreamReader<v4_2::Row>,
                FutureReader<Result<(), v4_2::Error>>,
            ),
            v4_2::Error,
        >,
    > {
        let link = link(accessor, &this)?;
        let params = params.into_iter().map(v4_2_values::parameter).collect();
        let (columns, rows) = match Calls::start(&link, &statement, params).await {
            Ok(started) => started,
            Err(f) => return Ok(Err(f.into())),
        };
        let (outcome, said) = tokio::sync::oneshot::channel();
        link.streaming
            .store(true, std::sync::atomic::Ordering::Release);
        accessor.with(|mut access| {
            let rows = StreamReader::new(
                &mut access,
                StreamedRows {
                    link,
                    rows: Box::pin(rows),
                    outcome: Some(outcome),
                },
            )?;
            let done = FutureReader::new(&mut access, async move {
                Ok::<_, wasmtime::Error>(match said.await {
                    Ok(outcome) => outcome.map_err(Into::into),
                    Err(_) => Err(v4_2::Error::Other(
                        "the rows were not all read: their stream was dropped first".into(),
                    )),
                })
            })?;
            Ok(Ok((
                columns.into_iter().map(v4_2_values::column).collect(),
                rows,
                done,
            )))
        })
    }

    async fn execute_async(
        accessor: &Accessor<U, Self>,
        this: Resource<Connection>,
        statement: String,
        params: Vec<v4_2::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4_2::Error>> {
        let link = link(accessor, &this)?;
        let params = params.into_iter().map(v4_2_values::parameter).collect();
        Ok(Calls::execute(&link, &statement, params)
            .await
            .map_err(Into::into))
    }
}

impl<U> v4_2::HostConnectionBuilderWithStore<U> for PostgresData {
    async fn build_async(
        accessor: &Accessor<U, Self>,
        this: Resource<Builder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4_2::Error>> {
        let (address, root) = accessor.with(|mut access| -> wasmtime::Result<_> {
            let builder = access.get().table.get(&this)?;
            Ok((builder.address.clone(), builder.root.clone()))
        })?;
        open_async(accessor, &address, root.as_ref()).await
    }
}

/// A 4.2 query's rows, read from the server as the guest reads them; the
/// query's outcome sent once they end.
struct StreamedRows {
    link: Arc<Link>,
    rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
    outcome: Option<tokio::sync::oneshot::Sender<Result<(), Failure>>>,
}

impl StreamedRows {
    fn end(
        &mut self,
        outcome: Result<(), Failure>,
    ) -> std::task::Poll<wasmtime::Result<StreamResult>> {
        self.link
            .streaming
            .store(false, std::sync::atomic::Ordering::Release);
        if let Some(sender) = self.outcome.take() {
            let _ = sender.send(outcome);
        }
        std::task::Poll::Ready(Ok(StreamResult::Dropped))
    }
}

impl Drop for StreamedRows {
    /// Rows dropped unread: the session may take calls again (the client
    /// reads the rest and throws them away).
    fn drop(&mut self) {
        self.link
            .streaming
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

impl<D> StreamProducer<D> for StreamedRows {
    type Item = v4_2::Row;
    type Buffer = Option<v4_2::Row>;

    fn poll_produce<'a>(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> std::task::Poll<wasmtime::Result<StreamResult>> {
        use std::task::Poll;
        let me = self.get_mut();
        if destination.remaining(&mut store) == Some(0) {
            // A guest asking whether a row is ready reads none: a row read
            // for it would be held for a read that may not come.
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        match futures_util::Stream::poll_next(me.rows.as_mut(), cx) {
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => me.end(Ok(())),
            Poll::Ready(Some(Err(e))) => {
                let failure = me.link.failed(&e);
                me.end(Err(failure))
            }
            Poll::Ready(Some(Ok(row))) => match row_values(&row, &mut Budget(MAX_RESULT_BYTES)) {
                Ok(values) => {
                    destination.set_buffer(Some(v4_2_values::row(values)));
                    Poll::Ready(Ok(StreamResult::Completed))
                }
                Err(f) => me.end(Err(f)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        let mut out = BytesMut::new();
        numeric::encode(text, &mut out).unwrap();
        numeric::decode(&out, &mut Budget(usize::MAX)).unwrap()
    }

    #[test]
    fn decimals_keep_every_digit_both_ways() {
        for (given, read) in [
            ("0", "0"),
            ("1", "1"),
            ("-1", "-1"),
            ("10000", "10000"),
            ("12345.6789", "12345.6789"),
            ("0.0001", "0.0001"),
            ("-0.50", "-0.50"),
            (
                "123456789012345678901234567890.123456789",
                "123456789012345678901234567890.123456789",
            ),
            ("007.10", "7.10"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
        ] {
            assert_eq!(numeric_round_trip(given), read, "{given}");
        }
        for bad in ["", ".", "1.2.3", "1e5", "abc", "--1"] {
            assert!(numeric::encode(bad, &mut BytesMut::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_a_hostile_server_says_costs_no_more_than_the_budget() {
        // 1e131068 (131,069 digits) in 10 bytes.
        let mut huge = BytesMut::new();
        huge.put_i16(1);
        huge.put_i16(i16::MAX);
        huge.put_u16(0);
        huge.put_u16(0);
        huge.put_i16(1);
        let mut budget = Budget(1000);
        let over = numeric::decode(&huge, &mut budget).unwrap_err();
        assert!(over.is::<OverLimit>(), "{over}");
        let mut budget = Budget(1 << 20);
        assert_eq!(numeric::decode(&huge, &mut budget).unwrap().len(), 131_069);
        // An array header claiming 2^31 - 1 elements in 20 bytes.
        let mut lying = BytesMut::new();
        for n in [1, 0, 23, i32::MAX, 1] {
            lying.put_i32(n);
        }
        let refused = array::decode(&lying, |b| i32::from_sql(&Type::INT4, b)).unwrap_err();
        assert!(
            refused.to_string().contains("shorter than it says"),
            "{refused}"
        );
        // Digits out of range, an unknown sign.
        for (sign, digit) in [(0u16, 10000i16), (0x1234, 1)] {
            let mut bad = BytesMut::new();
            bad.put_i16(1);
            bad.put_i16(0);
            bad.put_u16(sign);
            bad.put_u16(0);
            bad.put_i16(digit);
            assert!(numeric::decode(&bad, &mut Budget(usize::MAX)).is_err());
        }
    }

    #[test]
    fn uuids_are_read_as_they_are_written() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert_eq!(uuid::format(&uuid::parse(text).unwrap()).unwrap(), text);
        assert!(uuid::parse("a0eebc99").is_err());
        assert!(uuid::parse("g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").is_err());
    }
}
