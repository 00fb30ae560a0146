//! Where a guest's outbound HTTP request connects, and the connection.
//!
//! `allowed_outbound_hosts` (checked on the URL by `http.rs`'s hooks) says
//! which names and addresses a guest may ask for. This module makes sure
//! the connection then goes nowhere the host keeps every guest from, whatever
//! the grant: the runtime's [`ForbiddenAddrs`] (`ferry serve` puts its admin
//! listener there). The destination is resolved here, once; if any of its
//! addresses reaches a forbidden listener the request is refused with the
//! same `HttpRequestDenied` a host outside `allowed_outbound_hosts` gets,
//! and a log line says why; otherwise the connection is made to the
//! addresses that were checked, never to the name again, so a name that
//! resolves elsewhere a moment later (DNS rebinding) cannot slip past the
//! check. Everything after connecting (TLS verified against the name, with
//! the roots every outbound TLS connection trusts, [`trusted_roots`];
//! HTTP/1.1; the request's connect, first-byte and
//! between-bytes timeouts) is as `wasmtime_wasi_http::default_send_request`
//! does it.

use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions};

/// Listeners of this host that no guest may connect to, whatever its
/// grants. One per runtime, shared by every sandbox (so it also covers apps
/// loaded before an address was added).
#[derive(Debug, Default)]
pub struct ForbiddenAddrs {
    listeners: RwLock<Vec<SocketAddr>>,
}

impl ForbiddenAddrs {
    pub fn add(&self, listener: SocketAddr) {
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    /// The forbidden listener a connection to `target` would reach, if any.
    pub fn reached_by(&self, target: SocketAddr) -> Option<SocketAddr> {
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        listeners
            .iter()
            .copied()
            .find(|listener| reaches(*listener, target))
    }

    /// The first of `targets` that reaches a forbidden listener, with the
    /// listener it reaches.
    pub fn first_reached(&self, targets: &[SocketAddr]) -> Option<(SocketAddr, SocketAddr)> {
        targets
            .iter()
            .find_map(|target| self.reached_by(*target).map(|l| (*target, l)))
    }

    fn is_empty(&self) -> bool {
        self.listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Whether a connection to `target` may reach `listener`: the same port, and
/// the listener's address, or (a listener on `0.0.0.0` or `::`) any of this
/// machine's own addresses. A connection to `0.0.0.0` or `::` reaches this
/// machine, so it counts as reaching any listener on its port. IPv4-mapped
/// IPv6 addresses count as the IPv4 address they map.
fn reaches(listener: SocketAddr, target: SocketAddr) -> bool {
    if listener.port() != target.port() {
        return false;
    }
    let listener_ip = listener.ip().to_canonical();
    let target_ip = target.ip().to_canonical();
    if target_ip == listener_ip || target_ip.is_unspecified() {
        return true;
    }
    listener_ip.is_unspecified() && (target_ip.is_loopback() || is_this_machine(target_ip))
}

/// Whether `ip` is one of this machine's own addresses: only those can be
/// bound to, and binding (without sending anything) asks the kernel about
/// the interfaces as they are now.
fn is_this_machine(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The response body: the connection's, failing if the next frame takes
/// longer than the request's between-bytes timeout.
pub(crate) struct IncomingBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(if err.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(err)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Sends `request` (already allowed by `allowed_outbound_hosts`) to an
/// address checked against `forbidden`; `component` names the guest in
/// the log line of a refusal. Returns the response and the future that
/// drives the rest of the connection, as `default_send_request` does.
pub(crate) async fn send<B>(
    mut request: http::Request<B>,
    options: Option<RequestOptions>,
    forbidden: &ForbiddenAddrs,
    component: &str,
) -> Result<
    (
        http::Response<IncomingBody>,
        impl Future<Output = Result<(), Error>> + Send + use<B>,
    ),
    Error,
>
where
    B: http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
{
    let uri = request.uri().clone();
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri
        .host()
        .ok_or(Error::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let option = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options
            .as_ref()
            .and_then(pick)
            .unwrap_or(Duration::from_secs(600))
    };
    let connect_timeout = option(|o| o.connect_timeout);
    let first_byte_timeout = option(|o| o.first_byte_timeout);
    let between_bytes_timeout = option(|o| o.between_bytes_timeout);

    let method = request.method().clone();
    let stream = tokio::time::timeout(connect_timeout, async {
        let addrs = resolve(&host, port).await?;
        if !forbidden.is_empty()
            && let Some((target, listener)) = forbidden.first_reached(&addrs)
        {
            tracing::warn!(
                component,
                method = method.as_str(),
                uri = uri.to_string().as_str(),
                "outbound request denied: {host}:{port} is {target}, which reaches this host's \
                 admin listener ({listener}); no guest may connect to it"
            );
            return Err(Error::HttpRequestDenied);
        }
        connect(&addrs).await.map_err(Error::Connect)
    })
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    let stream: Box<dyn Stream> = if use_tls {
        let name = server_name(&host)?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, stream)
            .await
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line holds the path only (not the scheme and authority,
    // which only a proxy is sent).
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        // A zero interval panics; 1 ns is as good as none.
        let mut timeout = tokio::time::interval(between_bytes_timeout.max(Duration::new(0, 1)));
        timeout.reset();
        Ok::<_, Error>(response.map(|incoming| IncomingBody { incoming, timeout }))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Waits for the response while driving the connection's I/O.
    let response = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(driving) = conn.as_mut() else {
                return Poll::Pending;
            };
            let ended = ready!(Pin::new(driving).poll(cx));
            conn = None;
            match ended {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    })
    .await?;
    Ok((response, async move {
        let Some(conn) = conn else {
            return Ok(());
        };
        conn.await.map_err(|err| {
            if err.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                err.into()
            }
        })
    }))
}

/// `host`'s addresses: itself if it is an IP address, else what the system
/// resolver says (a failure reads as `default_send_request`'s does).
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(Error::Connect)?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Connect(std::io::Error::other(
            "failed to lookup address information: no address",
        )));
    }
    Ok(addrs)
}

/// A connection to the first of `addrs` that takes one (the last error if
/// none does), as `TcpStream::connect` tries a name's addresses.
async fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

/// The name a TLS certificate must be for: the host as the guest wrote it.
pub(crate) fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(rustls::pki_types::ServerName::from(ip));
    }
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(Error::InvalidDnsNameError)
}

/// The roots every outbound TLS connection trusts: the webpki roots
/// (Mozilla's), and the PEM certificates of the file `SSL_CERT_FILE` names
/// where it is set, as OpenSSL-based clients take it: how a private CA is
/// trusted. Read once; a file that cannot be read is logged and left out.
pub(crate) fn trusted_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        roots.add_parsable_certificates(extra_roots().iter().cloned());
        roots
    })
}

/// The certificates of `SSL_CERT_FILE` that a verifier can use (none where
/// it is not set), read once: what [`trusted_roots`] adds to the webpki
/// roots, for clients that take extra roots on their own (MySQL's).
pub(crate) fn extra_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static EXTRA: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    EXTRA.get_or_init(|| {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let Some(file) = std::env::var_os("SSL_CERT_FILE") else {
            return Vec::new();
        };
        let shown = std::path::Path::new(&file).display().to_string();
        let read = CertificateDer::pem_file_iter(&file)
            .map_err(|e| e.to_string())
            .and_then(|certs| {
                certs
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())
            });
        match read {
            Ok(certs) => {
                let mut check = rustls::RootCertStore::empty();
                let usable: Vec<_> = certs
                    .into_iter()
                    .filter(|cert| check.add(cert.clone()).is_ok())
                    .collect();
                tracing::info!(
                    file = shown.as_str(),
                    "outbound TLS also trusts {} certificate(s) of SSL_CERT_FILE",
                    usable.len()
                );
                usable
            }
            Err(e) => {
                tracing::warn!(
                    file = shown.as_str(),
                    "SSL_CERT_FILE cannot be read, so none of it is trusted: {e}"
                );
                Vec::new()
            }
        }
    })
}

/// A client TLS configuration trusting [`trusted_roots`] and `extra`.
pub(crate) fn client_tls(
    extra: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = trusted_roots().clone();
    if let Some(root) = extra {
        roots
            .add(root.clone())
            .map_err(|e| format!("the CA root: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The client TLS configuration: [`client_tls`], made once.
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let config = client_tls(None).map_err(|e| Error::Tls(std::io::Error::other(e)))?;
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_listener_is_reached_by_its_address_and_port_only() {
        let admin = addr("127.0.0.1:9000");
        assert!(reaches(admin, addr("127.0.0.1:9000")));
        assert!(reaches(admin, addr("[::ffff:127.0.0.1]:9000")));
        assert!(reaches(admin, addr("0.0.0.0:9000")));
        assert!(reaches(admin, addr("[::]:9000")));
        assert!(!reaches(admin, addr("127.0.0.1:9001")));
        assert!(!reaches(admin, addr("127.0.0.2:9000")));
        assert!(!reaches(admin, addr("[::1]:9000")));
        assert!(!reaches(admin, addr("192.0.2.1:9000")));
    }

    #[test]
    fn a_listener_on_every_address_is_reached_by_each_of_this_machines() {
        for admin in [addr("0.0.0.0:9000"), addr("[::]:9000")] {
            assert!(reaches(admin, addr("127.0.0.1:9000")));
            assert!(reaches(admin, addr("127.0.0.53:9000")));
            // TEST-NET-1 is no machine's own address.
            assert!(!reaches(admin, addr("192.0.2.1:9000")));
            assert!(!reaches(admin, addr("127.0.0.1:9001")));
        }
    }

    #[test]
    fn forbidden_addresses_are_shared_and_checked_by_each_target() {
        let forbidden = ForbiddenAddrs::default();
        assert!(forbidden.is_empty());
        assert_eq!(forbidden.reached_by(addr("127.0.0.1:9000")), None);
        forbidden.add(addr("127.0.0.1:9000"));
        assert_eq!(
            forbidden.reached_by(addr("127.0.0.1:9000")),
            Some(addr("127.0.0.1:9000"))
        );
        assert_eq!(forbidden.reached_by(addr("127.0.0.1:80")), None);
    }
}
