//! Spin's outbound Redis, over the `redis` crate: `fermyon:spin/redis@2.0.0`
//! (spin-sdk 2.x–5.x) and `spin:redis/redis@3.0.0` (spin-sdk 6+, async, for
//! WASI 0.3 guests), both on one implementation ([`Client`]).
//!
//! Deny by default, as Spin checks it: `open` refuses (`invalid-address`,
//! before any connection) an address whose `redis://host:port` (6379 when
//! the URL has no port) is not in the component's `allowed_outbound_hosts`.
//! The host name is then resolved once, every address checked against the
//! runtime's forbidden listeners (the admin API's), and the connection made
//! to the checked address, never to the name again. `rediss://` is TLS
//! (granted as `rediss://host:port`), the server's certificate checked for
//! the host's name against the roots outbound TLS trusts; turning that
//! check off (`#insecure`) and Unix sockets are refused.
//!
//! The typed calls (`get`, `set`, `publish`, …), which change nothing of a
//! connection's own state, share a pool per component: one multiplexed
//! connection per server, database and credentials (commands pipelined over
//! it), made again when it breaks, at most [`MAX_POOLED`] of them
//! (`too-many-connections` beyond). `execute` runs any command, so it gets
//! a connection of its own per `open`, dropped with the handle: a `SELECT`,
//! `MULTI` or blocking command reaches no other request. Each command waits
//! at most [`RESPONSE_TIMEOUT`]; a reply that would cost more than
//! [`MAX_REPLY_BYTES`] (or nests deeper than [`frames::MAX_DEPTH`]) fails
//! its connection as its header arrives, before the client buffers it
//! ([`frames`]). A server that fails, goes away or breaks a bound is the
//! interface's `other` error, never a trap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, Value};
use wasmtime::component::{Accessor, HasData, Linker, Resource, ResourceTable};

use crate::sandbox::OutboundPolicy;

pub mod frames;

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/redis",
        world: "ferry:redis/redis",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis.connection": super::Connection,
            "spin:redis/redis.connection": super::Connection,
        },
    });
}

use generated::fermyon::spin::redis as v2;
use generated::spin::redis::redis as v3;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one command may wait for its reply.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest reply handed to a guest: its bytes, all its values
/// together, plus [`frames::VALUE_COST`] for each value.
pub const MAX_REPLY_BYTES: usize = 64 << 20;
/// Pooled connections per component (distinct servers, databases and
/// credentials).
pub const MAX_POOLED: usize = 16;

/// A connection a guest opened.
pub struct Connection(Arc<Opened>);

struct Opened {
    /// The pool's key for it.
    key: String,
    connection: MultiplexedConnection,
    /// Where `execute`'s own connection goes, and the connection once made.
    info: redis::ConnectionInfo,
    tls: bool,
    addrs: Vec<SocketAddr>,
    own: tokio::sync::OnceCell<MultiplexedConnection>,
}

/// One component's pooled connections, by server, database and
/// credentials.
#[derive(Default)]
pub struct RedisPool {
    connections: Mutex<HashMap<String, (MultiplexedConnection, Vec<SocketAddr>)>>,
}

/// What one guest store gives the Redis interfaces.
pub(crate) struct RedisView<'a> {
    pub table: &'a mut ResourceTable,
    pub policy: &'a Arc<OutboundPolicy>,
    pub pool: &'a Arc<RedisPool>,
}

pub(crate) trait RedisHost {
    fn redis(&mut self) -> RedisView<'_>;
}

struct RedisData;

impl HasData for RedisData {
    type Data<'a> = RedisView<'a>;
}

pub(crate) fn add_to_linker<T: RedisHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, RedisData>(linker, T::redis)
}

/// Also `spin:redis@3.0.0`, whose functions are async: only an engine with
/// the component model's concurrency can link it.
pub(crate) fn add_to_linker_concurrent<T: RedisHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    add_to_linker(linker)?;
    v3::add_to_linker::<T, RedisData>(linker, T::redis)
}

/// Why a call failed, before it is said in one version's words.
#[derive(Debug)]
enum Failure {
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
}

impl From<Failure> for v2::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::TooManyConnections => Self::TooManyConnections,
            Failure::TypeError => Self::TypeError,
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl From<Failure> for v3::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::TooManyConnections => Self::TooManyConnections,
            Failure::TypeError => Self::TypeError,
            Failure::Other(why) => Self::Other(why),
        }
    }
}

/// A parameter of `execute`, in either version's shape.
enum Parameter {
    Int(i64),
    Binary(Vec<u8>),
}

/// A value of `execute`'s reply.
enum Reply {
    Nil,
    Status(String),
    Int(i64),
    Binary(Vec<u8>),
}

/// Opens (or takes from the pool) a connection to `address`, if the
/// component may reach it.
async fn open(
    policy: &OutboundPolicy,
    pool: &Arc<RedisPool>,
    address: &str,
) -> Result<Connection, Failure> {
    let shown = ferry_manifest::redacted(address);
    let deny = |why: String| {
        tracing::warn!(
            component = &*policy.component,
            address = shown.as_str(),
            "outbound Redis connection denied: {why}"
        );
        Failure::InvalidAddress
    };
    let (info, tls) = redis_address(address).map_err(deny)?;
    let (host, port) = redis_endpoint(&info).map_err(deny)?;
    let scheme = address.split_once("://").map_or("redis", |(s, _)| s);
    if !policy.allowed.allows(scheme, &host, port, false) {
        return Err(deny(format!(
            "{scheme}://{host}:{port} is not in allowed_outbound_hosts"
        )));
    }
    // Keyed by what the connection is, not how the address was written:
    // `?x=1`, `?x=2` … name one connection.
    let settings = info.redis_settings();
    let key = format!(
        "{tls}/{}:{port}/{}/{:?}/{:?}/{:?}",
        host.to_ascii_lowercase(),
        settings.db(),
        settings.username(),
        settings.password(),
        settings.protocol()
    );
    if let Some((connection, addrs)) = pool.get(&key) {
        return Ok(Connection(Arc::new(Opened {
            key,
            connection,
            info,
            tls,
            addrs,
            own: tokio::sync::OnceCell::new(),
        })));
    }
    if pool.len() >= MAX_POOLED {
        return Err(Failure::TooManyConnections);
    }
    let addrs = crate::outbound::resolve(&host, port)
        .await
        .map_err(|e| Failure::Other(format!("cannot resolve {host}: {e}")))?;
    if let Some((target, listener)) = policy.forbidden.first_reached(&addrs) {
        return Err(deny(format!(
            "{host}:{port} is {target}, which reaches this host's admin listener ({listener})"
        )));
    }
    let connection = connect(&info, tls, &addrs)
        .await
        .map_err(|e| Failure::Other(format!("cannot connect to {shown}: {e}")))?;
    pool.put(&key, connection.clone(), addrs.clone());
    Ok(Connection(Arc::new(Opened {
        key,
        connection,
        info,
        tls,
        addrs,
        own: tokio::sync::OnceCell::new(),
    })))
}

/// A connection to the first of the checked `addrs` that takes one.
async fn connect(
    info: &redis::ConnectionInfo,
    tls: bool,
    addrs: &[SocketAddr],
) -> redis::RedisResult<MultiplexedConnection> {
    let (host, _) = redis_endpoint(info).map_err(std::io::Error::other)?;
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut last = None;
    for addr in addrs {
        let made = async {
            let stream = redis_stream(&host, *addr, tls, MAX_REPLY_BYTES, None).await?;
            let (connection, driver) = MultiplexedConnection::new_with_config(
                info.redis_settings(),
                stream,
                config.clone(),
            )
            .await?;
            tokio::spawn(driver);
            Ok::<_, redis::RedisError>(connection)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, made).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time").into(),
                );
            }
        }
    }
    Err(last.unwrap_or_else(|| redis::RedisError::from(std::io::Error::other("no address"))))
}

/// What the `redis` client reads and writes: TCP, or TLS over it.
pub trait RedisStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RedisStream for T {}

/// A Redis address as the client takes it, and whether it asks for TLS:
/// `redis://` or `rediss://` (whose certificate is always checked: its
/// `#insecure` is refused).
pub fn redis_address(address: &str) -> Result<(redis::ConnectionInfo, bool), String> {
    let (plain, tls) = match address.strip_prefix("rediss://") {
        Some(rest) if rest.contains('#') => {
            return Err(
                "a rediss:// address takes no fragment: the server's certificate is always checked"
                    .into(),
            );
        }
        Some(rest) => (format!("redis://{rest}"), true),
        None => (address.to_owned(), false),
    };
    let info = plain
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("not a Redis URL: {e}"))?;
    Ok((info, tls))
}

/// Where a Redis address leads: its host and port. A Unix socket is
/// refused.
pub fn redis_endpoint(info: &redis::ConnectionInfo) -> Result<(String, u16), String> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => Ok((host.clone(), *port)),
        _ => Err("only redis://HOST:PORT and rediss://HOST:PORT addresses are reachable".into()),
    }
}

/// A connection to `addr` (already checked) for `host`: over TLS when
/// `tls`, the certificate checked for `host` against the roots outbound TLS
/// trusts; each reply at most `max_reply` and reading held back by
/// `backlog` ([`frames::Bounded`]).
pub async fn redis_stream(
    host: &str,
    addr: SocketAddr,
    tls: bool,
    max_reply: usize,
    backlog: Option<Arc<frames::Backlog>>,
) -> std::io::Result<Box<dyn RedisStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if !tls {
        return Ok(Box::new(frames::Bounded::new(tcp, max_reply, backlog)));
    }
    let name = crate::outbound::server_name(host).map_err(std::io::Error::other)?;
    let config = crate::outbound::tls_config().map_err(std::io::Error::other)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(Box::new(frames::Bounded::new(tls, max_reply, backlog)))
}

impl RedisPool {
    fn get(&self, key: &str) -> Option<(MultiplexedConnection, Vec<SocketAddr>)> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn len(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn put(&self, key: &str, connection: MultiplexedConnection, addrs: Vec<SocketAddr>) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), (connection, addrs));
    }

    /// Forgets a broken connection: the next `open` makes a new one.
    fn forget(&self, key: &str) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Runs `command` on `connection`, turning what failed into the
/// interface's error (and forgetting a connection that broke).
async fn run<T: redis::FromRedisValue>(
    pool: &RedisPool,
    connection: &Connection,
    command: &redis::Cmd,
) -> Result<T, Failure> {
    let mut conn = connection.0.connection.clone();
    run_on(pool, connection, &mut conn, command).await
}

/// [`run`] on `conn`, a connection of `connection`'s.
async fn run_on<T: redis::FromRedisValue>(
    pool: &RedisPool,
    connection: &Connection,
    conn: &mut MultiplexedConnection,
    command: &redis::Cmd,
) -> Result<T, Failure> {
    let value: Value = command
        .query_async(conn)
        .await
        .map_err(|e| failure(pool, connection, &e))?;
    // A reply of another type than the command's (a set where a string
    // was expected): the interface's type error.
    redis::from_redis_value(value).map_err(|_| Failure::TypeError)
}

fn failure(pool: &RedisPool, connection: &Connection, error: &redis::RedisError) -> Failure {
    if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
        pool.forget(&connection.0.key);
    }
    match error.kind() {
        redis::ErrorKind::UnexpectedReturnType => Failure::TypeError,
        _ if error.code() == Some("WRONGTYPE") => Failure::TypeError,
        _ if error.to_string().contains("not an integer") => Failure::TypeError,
        _ => Failure::Other(crate::one_line_error(error)),
    }
}

/// `execute`'s reply as the interface's list: each value of an array, or
/// the one value.
fn replies(value: Value) -> Result<Vec<Reply>, Failure> {
    let one = |value: Value| -> Result<Reply, Failure> {
        Ok(match value {
            Value::Nil => Reply::Nil,
            Value::Okay => Reply::Status("OK".into()),
            Value::SimpleString(s) => Reply::Status(s),
            Value::Int(i) => Reply::Int(i),
            Value::BulkString(bytes) => Reply::Binary(bytes),
            Value::ServerError(e) => return Err(Failure::Other(e.to_string())),
            other => {
                return Err(Failure::Other(format!(
                    "the reply holds a value Spin's Redis interface cannot carry: {other:?}"
                )));
            }
        })
    };
    match value {
        Value::Array(items) | Value::Set(items) => items.into_iter().map(one).collect(),
        value => Ok(vec![one(value)?]),
    }
}

/// The calls, once, for both versions.
struct Calls;

impl Calls {
    async fn publish(
        pool: &RedisPool,
        c: &Connection,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), Failure> {
        run::<i64>(pool, c, redis::cmd("PUBLISH").arg(channel).arg(payload))
            .await
            .map(drop)
    }

    async fn get(
        pool: &RedisPool,
        c: &Connection,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        run(pool, c, redis::cmd("GET").arg(key)).await
    }

    async fn set(
        pool: &RedisPool,
        c: &Connection,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        run::<Value>(pool, c, redis::cmd("SET").arg(key).arg(value))
            .await
            .map(drop)
    }

    async fn incr(pool: &RedisPool, c: &Connection, key: String) -> Result<i64, Failure> {
        run(pool, c, redis::cmd("INCR").arg(key)).await
    }

    async fn del(pool: &RedisPool, c: &Connection, keys: Vec<String>) -> Result<u32, Failure> {
        if keys.is_empty() {
            return Ok(0);
        }
        run(pool, c, redis::cmd("DEL").arg(keys)).await
    }

    async fn sadd(
        pool: &RedisPool,
        c: &Connection,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, Failure> {
        if values.is_empty() {
            return Ok(0);
        }
        run(pool, c, redis::cmd("SADD").arg(key).arg(values)).await
    }

    async fn smembers(
        pool: &RedisPool,
        c: &Connection,
        key: String,
    ) -> Result<Vec<String>, Failure> {
        run(pool, c, redis::cmd("SMEMBERS").arg(key)).await
    }

    async fn srem(
        pool: &RedisPool,
        c: &Connection,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, Failure> {
        if values.is_empty() {
            return Ok(0);
        }
        run(pool, c, redis::cmd("SREM").arg(key).arg(values)).await
    }

    async fn execute(
        pool: &RedisPool,
        c: &Connection,
        command: String,
        arguments: Vec<Parameter>,
    ) -> Result<Vec<Reply>, Failure> {
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                Parameter::Int(i) => cmd.arg(i),
                Parameter::Binary(bytes) => cmd.arg(bytes),
            };
        }
        // Any command: on this handle's own connection, never the pool's.
        let opened = &c.0;
        let mut own = opened
            .own
            .get_or_try_init(|| connect(&opened.info, opened.tls, &opened.addrs))
            .await
            .map_err(|e| Failure::Other(format!("cannot connect: {e}")))?
            .clone();
        replies(run_on::<Value>(pool, c, &mut own, &cmd).await?)
    }
}

impl RedisView<'_> {
    /// The connection behind a guest's handle.
    fn connection(&self, handle: &Resource<Connection>) -> wasmtime::Result<Connection> {
        Ok(Connection(self.table.get(handle)?.0.clone()))
    }
}

impl v2::Host for RedisView<'_> {}

impl v2::HostConnection for RedisView<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        match open(self.policy, self.pool, &address).await {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(f) => Ok(Err(f.into())),
        }
    }

    async fn publish(
        &mut self,
        c: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::publish(self.pool, &c, channel, payload)
            .await
            .map_err(Into::into))
    }

    async fn get(
        &mut self,
        c: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::get(self.pool, &c, key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        c: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::set(self.pool, &c, key, value)
            .await
            .map_err(Into::into))
    }

    async fn incr(
        &mut self,
        c: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::incr(self.pool, &c, key).await.map_err(Into::into))
    }

    async fn del(
        &mut self,
        c: Resource<Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::del(self.pool, &c, keys).await.map_err(Into::into))
    }

    async fn sadd(
        &mut self,
        c: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::sadd(self.pool, &c, key, values)
            .await
            .map_err(Into::into))
    }

    async fn smembers(
        &mut self,
        c: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::smembers(self.pool, &c, key)
            .await
            .map_err(Into::into))
    }

    async fn srem(
        &mut self,
        c: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v2::Error>> {
        let c = self.connection(&c)?;
        Ok(Calls::srem(self.pool, &c, key, values)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        c: Resource<Connection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v2::RedisResult>, v2::Error>> {
        let c = self.connection(&c)?;
        let arguments = arguments
            .into_iter()
            .map(|a| match a {
                v2::RedisParameter::Int64(i) => Parameter::Int(i),
                v2::RedisParameter::Binary(b) => Parameter::Binary(b),
            })
            .collect();
        Ok(Calls::execute(self.pool, &c, command, arguments)
            .await
            .map(|replies| {
                replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Nil => v2::RedisResult::Nil,
                        Reply::Status(s) => v2::RedisResult::Status(s),
                        Reply::Int(i) => v2::RedisResult::Int64(i),
                        Reply::Binary(b) => v2::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

/// What an async call needs, taken from the guest's store at its start.
fn v3_parts<U>(
    accessor: &Accessor<U, RedisData>,
    c: &Resource<Connection>,
) -> wasmtime::Result<(Connection, Arc<RedisPool>)> {
    accessor.with(|mut access| {
        let view = access.get();
        Ok((view.connection(c)?, view.pool.clone()))
    })
}

impl v3::Host for RedisView<'_> {}

impl v3::HostConnection for RedisView<'_> {
    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl<U> v3::HostConnectionWithStore<U> for RedisData {
    async fn open(
        accessor: &Accessor<U, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        let (policy, pool) = accessor.with(|mut access| {
            let view = access.get();
            (view.policy.clone(), view.pool.clone())
        });
        match open(&policy, &pool, &address).await {
            Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().table.push(c)?))),
            Err(f) => Ok(Err(f.into())),
        }
    }

    async fn publish(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::publish(&pool, &c, channel, payload)
            .await
            .map_err(Into::into))
    }

    async fn get(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::get(&pool, &c, key).await.map_err(Into::into))
    }

    async fn set(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::set(&pool, &c, key, value).await.map_err(Into::into))
    }

    async fn incr(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::incr(&pool, &c, key).await.map_err(Into::into))
    }

    async fn del(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::del(&pool, &c, keys).await.map_err(Into::into))
    }

    async fn sadd(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::sadd(&pool, &c, key, values)
            .await
            .map_err(Into::into))
    }

    async fn smembers(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::smembers(&pool, &c, key).await.map_err(Into::into))
    }

    async fn srem(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        Ok(Calls::srem(&pool, &c, key, values)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<v3::RedisResult>, v3::Error>> {
        let (c, pool) = v3_parts(accessor, &c)?;
        let arguments = arguments
            .into_iter()
            .map(|a| match a {
                v3::RedisParameter::Int64(i) => Parameter::Int(i),
                v3::RedisParameter::Binary(b) => Parameter::Binary(b),
            })
            .collect();
        Ok(Calls::execute(&pool, &c, command, arguments)
            .await
            .map(|replies| {
                replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Nil => v3::RedisResult::Nil,
                        Reply::Status(s) => v3::RedisResult::Status(s),
                        Reply::Int(i) => v3::RedisResult::Int64(i),
                        Reply::Binary(b) => v3::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }
}
