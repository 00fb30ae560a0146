//! One client connection, bounded in time from its first byte to its last.
//!
//! hyper-util's auto builder waits for the bytes that tell HTTP/1 from the
//! HTTP/2 preface with no time limit, so a client that drips the preface (or
//! sends nothing) used to hold a connection forever: hyper's header-read
//! timeout only starts once the protocol is known. Here Ferry reads those
//! bytes itself, under `header_read_timeout`, then replays them to hyper's
//! HTTP/1 or HTTP/2 connection. After that:
//! - HTTP/1: hyper's header-read timer runs from the moment the connection
//!   waits for a request head, so it bounds both a slow head and an idle
//!   keep-alive connection.
//! - HTTP/2: keep-alive pings close a connection whose peer stopped
//!   answering, and a connection with no request in flight for
//!   `header_read_timeout` is closed with GOAWAY (Ferry's own timer: hyper
//!   has none). A connection told to close that does not within the same
//!   time is dropped.
//!
//! Over TLS the handshake comes first, under the same time limit; a client
//! that picked `h2` by ALPN is served HTTP/2 at once, any other has its
//! first bytes read as above. Each request is marked [`Secure`], which
//! gives it the `https` scheme guests see.
//!
//! On server shutdown every connection is told to finish what it is doing
//! and close; the worker bounds the whole drain (`shutdown_timeout`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_runtime::{BoxError, ResponseBody};
use http::Request;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::{LiveApps, ServerConfig};

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often an HTTP/2 connection is pinged, and how long the peer has to
/// answer before the connection is closed.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection builders one worker serves with.
pub(crate) struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Bounds the TLS handshake and protocol bytes, an HTTP/2
    /// connection's idle time, and a closing connection's last exchange.
    timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A request extension: the request came over TLS.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secure;

impl Protocols {
    pub fn new(config: &ServerConfig) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_size.max(8192));
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX))
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Self {
            http1,
            http2,
            timeout: config.header_read_timeout,
            tls: config.tls.as_ref().map(crate::tls::Tls::acceptor),
        }
    }
}

/// Which protocol a connection's first bytes announce.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Reads until the bytes in `buf` settle the protocol: the first byte that
/// differs from the HTTP/2 preface means HTTP/1, the whole preface HTTP/2.
/// `None`: the client closed the connection or `deadline` passed first.
async fn detect<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Option<Protocol> {
    loop {
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
        let seen = buf.len().min(PREFACE.len());
        if buf[..seen] != PREFACE[..seen] {
            return Some(Protocol::Http1);
        }
        if seen == PREFACE.len() {
            return Some(Protocol::Http2);
        }
    }
}

/// Serves one connection to its end. `shutdown` turns true when the server
/// stops accepting.
pub(crate) async fn serve(
    stream: TcpStream,
    client_addr: SocketAddr,
    local_addr: SocketAddr,
    host: Arc<LiveApps>,
    protocols: Arc<Protocols>,
    mut shutdown: watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + protocols.timeout;
    let Some(acceptor) = &protocols.tls else {
        let peer = Peer {
            client_addr,
            local_addr,
            secure: false,
        };
        return serve_stream(stream, None, peer, host, protocols, shutdown, deadline).await;
    };
    let handshake = tokio::select! {
        done = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => done,
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(client = %client_addr, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %client_addr, "TLS handshake timed out");
            return;
        }
    };
    let chosen = match stream.get_ref().1.alpn_protocol() {
        Some(crate::tls::H2) => Some(Protocol::Http2),
        _ => None,
    };
    let peer = Peer {
        client_addr,
        local_addr,
        secure: true,
    };
    serve_stream(stream, chosen, peer, host, protocols, shutdown, deadline).await;
}

/// Who is on either end of a connection, and whether it is TLS.
#[derive(Clone, Copy)]
struct Peer {
    client_addr: SocketAddr,
    local_addr: SocketAddr,
    secure: bool,
}

impl Peer {
    fn mark<B>(&self, request: &mut Request<B>) {
        if self.secure {
            request.extensions_mut().insert(Secure);
        }
    }
}

/// Serves HTTP on `stream` (plain or decrypted) to its end: `protocol`
/// if ALPN settled it, else the one the first bytes announce.
async fn serve_stream<S>(
    mut stream: S,
    protocol: Option<Protocol>,
    peer: Peer,
    host: Arc<LiveApps>,
    protocols: Arc<Protocols>,
    mut shutdown: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Peer {
        client_addr,
        local_addr,
        ..
    } = peer;
    // Big enough that an HTTP/1 request head usually arrives in the same
    // read that tells the protocol, so detection costs no extra syscall.
    let mut buf = Vec::new();
    let protocol = match protocol {
        Some(known) => Some(known),
        None => {
            buf.reserve(4096);
            tokio::select! {
                detected = detect(&mut stream, &mut buf, deadline) => detected,
                _ = shutdown.wait_for(|stop| *stop) => None,
            }
        }
    };
    let Some(protocol) = protocol else {
        tracing::debug!(client = %client_addr, "connection closed before it sent a request");
        return;
    };
    let io = TokioIo::new(Replay::new(buf, stream));
    let result = match protocol {
        Protocol::Http1 => {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                peer.mark(&mut request);
                // The version serving now; it lives as long as this request.
                let host = host.current();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        host.handle(request, client_addr, local_addr).await,
                    )
                }
            });
            let connection = protocols.http1.serve_connection(io, service);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                None,
                shutdown,
                protocols.timeout,
            )
            .await
        }
        Protocol::Http2 => {
            let activity = Arc::new(Activity::new());
            let tracked = activity.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                peer.mark(&mut request);
                let host = host.current();
                let in_flight = tracked.begin();
                async move {
                    let response = host.handle(request, client_addr, local_addr).await;
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        InFlightBody {
                            inner: body,
                            _in_flight: in_flight,
                        }
                        .boxed_unsync()
                    }))
                }
            });
            let connection = protocols.http2.serve_connection(io, service);
            let idle = activity.idle_for(protocols.timeout);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                Some(Box::pin(idle)),
                shutdown,
                protocols.timeout,
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %client_addr, "connection ended with an error: {e}");
    }
}

type Idle = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `connection` until it ends. It is told to close gracefully when
/// the server shuts down or `idle` resolves; a connection told so because
/// it was idle that is still open `linger` later is dropped (on shutdown,
/// the worker's own deadline bounds the drain).
async fn drive<C>(
    connection: C,
    graceful: impl Fn(Pin<&mut C>),
    idle: Option<Idle>,
    mut shutdown: watch::Receiver<bool>,
    linger: Duration,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut idle = idle;
    let mut closing_by: Option<tokio::time::Instant> = None;
    let mut told_to_stop = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            _ = shutdown.wait_for(|stop| *stop), if !told_to_stop => {
                told_to_stop = true;
                graceful(connection.as_mut());
            }
            () = async { idle.as_mut().expect("guarded").await }, if idle.is_some() && closing_by.is_none() => {
                idle = None;
                closing_by = Some(tokio::time::Instant::now() + linger);
                graceful(connection.as_mut());
            }
            () = tokio::time::sleep_until(closing_by.unwrap_or_else(far_future)), if closing_by.is_some() => {
                return Ok(());
            }
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// Requests in flight on one HTTP/2 connection, and when that count last
/// changed.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch`.
    last_change_ms: AtomicU64,
    epoch: Instant,
}

/// Holds one request in [`Activity`]'s count until dropped with the
/// response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle_for(self: Arc<Self>, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            let quiet_ms = now.saturating_sub(self.last_change_ms.load(Ordering::Relaxed));
            if self.in_flight.load(Ordering::Relaxed) == 0 && quiet_ms >= limit_ms {
                return;
            }
            let wait = limit_ms.saturating_sub(quiet_ms).max(limit_ms / 4).max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// A response body that keeps its request counted as in flight until the
/// body is done with.
struct InFlightBody {
    inner: ResponseBody,
    _in_flight: InFlight,
}

impl Body for InFlightBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that first yields the bytes already read from it (to tell the
/// protocol), then reads on. Writes go straight through, vectored ones
/// included: hyper's HTTP/1 writer uses them.
struct Replay<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    fn new(read: Vec<u8>, inner: S) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                // Replayed: give the memory back.
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_bytes_tell_the_protocol() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (sent, expected) in [
            (&b"GET / HTTP/1.1\r\n"[..], Some(Protocol::Http1)),
            (&b"PUT / HTTP/1.1\r\n"[..], Some(Protocol::Http1)),
            (&PREFACE[..], Some(Protocol::Http2)),
            // A prefix of the preface decides nothing: the deadline passes.
            (&PREFACE[..10], None),
            (&b""[..], None),
        ] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut client, sent)
                .await
                .unwrap();
            let mut buf = Vec::with_capacity(4096);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            let detected = detect(&mut server, &mut buf, deadline).await;
            assert_eq!(detected, expected, "{:?}", String::from_utf8_lossy(sent));
            if detected.is_some() {
                // Nothing read is lost: it is all replayed.
                let mut replay = Replay::new(buf, server);
                let mut again = vec![0; sent.len()];
                replay.read_exact(&mut again).await.unwrap();
                assert_eq!(again, sent);
            }
        }
    }
}
