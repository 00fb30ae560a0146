//! Spin's outbound MQTT, over `rumqttc`: `fermyon:spin/mqtt@2.0.0`
//! (spin-sdk 2.x–5.x) and `spin:mqtt/mqtt@3.0.0` (spin-sdk 6+, async),
//! both on one implementation.
//!
//! As Spin: the address is `mqtt://HOST[:PORT]?client_id=ID` (1883 when
//! it has no port; the client id is required), or `mqtts://` for TLS (8883
//! by default), and `open` answers `connection-failed` before any
//! connection when `mqtt://HOST:PORT` (`mqtts://…`) is not in the
//! component's `allowed_outbound_hosts`. The host is resolved once and its
//! addresses checked against the runtime's forbidden listeners. A plain
//! connection is made to a checked address; a TLS one to the host's name
//! (rumqttc resolves it again: it takes no connection made beforehand),
//! the broker's certificate checked for that name against the roots
//! outbound TLS trusts ([`broker_options`]). So a name whose DNS answer
//! changes between the check and that lookup (rebinding) can point the
//! connection at an address that was not checked, the admin listener
//! included: what reaches it is a TCP connection and a TLS ClientHello,
//! and no byte of MQTT before the peer proves it is the host. (Connecting
//! to the checked address instead would lose SNI, which hosted brokers
//! need.)
//!
//! Each `open` is one broker session (as in Spin); `publish` returns once
//! the broker has the message as its QoS promises: sent (QoS 0),
//! acknowledged (1) or completed (2), within [`PUBLISH_TIMEOUT`]. A broker
//! that fails or goes away is the interface's error, never a trap.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use wasmtime::component::{Accessor, HasData, Linker, Resource, ResourceTable};

use crate::sandbox::OutboundPolicy;

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/mqtt",
        world: "ferry:mqtt/mqtt",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/mqtt.connection": super::Connection,
            "spin:mqtt/mqtt.connection": super::Connection,
        },
    });
}

use generated::fermyon::spin::mqtt as v2;
use generated::spin::mqtt::mqtt as v3;

/// How long connecting to the broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a publish may wait for the broker's acknowledgement.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message a guest may publish.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A broker session a guest opened.
pub struct Connection {
    client: AsyncClient,
    events: Arc<tokio::sync::Mutex<EventLoop>>,
}

/// What one guest store gives the MQTT interfaces.
pub(crate) struct MqttView<'a> {
    pub table: &'a mut ResourceTable,
    pub policy: &'a Arc<OutboundPolicy>,
}

pub(crate) trait MqttHost {
    fn mqtt(&mut self) -> MqttView<'_>;
}

struct MqttData;

impl HasData for MqttData {
    type Data<'a> = MqttView<'a>;
}

pub(crate) fn add_to_linker<T: MqttHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, MqttData>(linker, T::mqtt)
}

/// Also `spin:mqtt@3.0.0`, whose functions are async.
pub(crate) fn add_to_linker_concurrent<T: MqttHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    add_to_linker(linker)?;
    v3::add_to_linker::<T, MqttData>(linker, T::mqtt)
}

/// Why a call failed, before it is said in one version's words.
enum Failure {
    InvalidAddress,
    ConnectionFailed(String),
    Other(String),
}

impl From<Failure> for v2::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::ConnectionFailed(why) => Self::ConnectionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl From<Failure> for v3::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::ConnectionFailed(why) => Self::ConnectionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

/// Host, port, client id and whether it is TLS, of
/// `mqtt://HOST[:PORT]?client_id=ID` or `mqtts://…`.
fn parse(address: &str) -> Result<(String, u16, String, bool), String> {
    let (scheme, rest) = address
        .split_once("://")
        .ok_or("not an MQTT URL (mqtt://HOST:PORT?client_id=ID)")?;
    let tls = match scheme {
        "mqtt" => false,
        "mqtts" => true,
        _ => {
            return Err(format!(
                "`{scheme}://` is not supported: use mqtt:// or mqtts://"
            ));
        }
    };
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("`{port}` is not a port"))?,
        ),
        _ => (authority, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('@') || host.contains('/') {
        return Err("the URL names no plain host".into());
    }
    let client_id = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("client_id="))
        .filter(|id| !id.is_empty())
        .ok_or("the URL has no `client_id` (mqtt://HOST:PORT?client_id=ID)")?;
    Ok((host.to_owned(), port, client_id.to_owned(), tls))
}

/// How to reach a broker `host:port` whose addresses `addrs` were checked:
/// the checked address itself, or over TLS (`tls`) the host's name, the
/// certificate checked for it against the roots outbound TLS trusts (and
/// the name sent as SNI).
pub fn broker_options(
    client_id: &str,
    host: &str,
    port: u16,
    tls: bool,
    addrs: &[std::net::SocketAddr],
) -> Result<MqttOptions, String> {
    if !tls {
        let addr = addrs.first().ok_or("no address")?;
        return Ok(MqttOptions::new(client_id, addr.ip().to_string(), port));
    }
    let config = crate::outbound::tls_config().map_err(|e| e.to_string())?;
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(config),
    ));
    Ok(options)
}

async fn open(
    policy: &OutboundPolicy,
    address: &str,
    username: &str,
    password: &str,
    keep_alive_secs: u64,
) -> Result<Connection, Failure> {
    let (host, port, client_id, tls) = parse(address).map_err(|why| {
        tracing::warn!(
            component = &*policy.component,
            address,
            "outbound MQTT connection refused: {why}"
        );
        Failure::InvalidAddress
    })?;
    let scheme = if tls { "mqtts" } else { "mqtt" };
    if !policy.allowed.allows(scheme, &host, port, false) {
        tracing::warn!(
            component = &*policy.component,
            address,
            "outbound MQTT connection denied: {scheme}://{host}:{port} is not in allowed_outbound_hosts"
        );
        return Err(Failure::ConnectionFailed(format!(
            "address {scheme}://{host}:{port} is not permitted"
        )));
    }
    let addrs = crate::outbound::resolve(&host, port)
        .await
        .map_err(|e| Failure::ConnectionFailed(format!("cannot resolve {host}: {e}")))?;
    if let Some((target, listener)) = policy.forbidden.first_reached(&addrs) {
        tracing::warn!(
            component = &*policy.component,
            address,
            "outbound MQTT connection denied: {host}:{port} is {target}, which reaches this host's admin listener ({listener})"
        );
        return Err(Failure::ConnectionFailed(format!(
            "address {scheme}://{host}:{port} is not permitted"
        )));
    }
    let mut options =
        broker_options(&client_id, &host, port, tls, &addrs).map_err(Failure::ConnectionFailed)?;
    options
        .set_keep_alive(Duration::from_secs(keep_alive_secs.clamp(5, 65535)))
        .set_max_packet_size(
            MAX_MESSAGE_BYTES + (64 << 10),
            MAX_MESSAGE_BYTES + (64 << 10),
        );
    if !username.is_empty() {
        options.set_credentials(username, password);
    }
    let (client, mut events) = AsyncClient::new(options, 16);
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no answer from the broker".to_owned())
    .and_then(|r| r);
    connected
        .map_err(|e| Failure::ConnectionFailed(format!("cannot connect to {host}:{port}: {e}")))?;
    Ok(Connection {
        client,
        events: Arc::new(tokio::sync::Mutex::new(events)),
    })
}

/// Publishes and drives the session until the broker has the message as
/// its QoS promises.
async fn publish(
    client: &AsyncClient,
    events: &tokio::sync::Mutex<EventLoop>,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
) -> Result<(), Failure> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(Failure::Other(format!(
            "the message is {} bytes, over Ferry's limit of {MAX_MESSAGE_BYTES}",
            payload.len()
        )));
    }
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(Failure::Other(format!(
            "`{topic}` is not a topic to publish to"
        )));
    }
    let mut events = events.lock().await;
    tokio::time::timeout(PUBLISH_TIMEOUT, async {
        client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        // The broker's answer to this message, by its packet id.
        let mut sent = None;
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) if sent.is_none() => {
                    if qos == QoS::AtMostOnce {
                        return Ok(());
                    }
                    sent = Some(pkid);
                }
                Ok(Event::Incoming(Packet::PubAck(ack)))
                    if qos == QoS::AtLeastOnce && sent == Some(ack.pkid) =>
                {
                    return Ok(());
                }
                Ok(Event::Incoming(Packet::PubComp(done)))
                    if qos == QoS::ExactlyOnce && sent == Some(done.pkid) =>
                {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::Other(format!("the broker connection failed: {e}"))),
            }
        }
    })
    .await
    .map_err(|_| Failure::Other("the broker did not acknowledge the message in time".into()))?
}

fn v2_qos(qos: v2::Qos) -> QoS {
    match qos {
        v2::Qos::AtMostOnce => QoS::AtMostOnce,
        v2::Qos::AtLeastOnce => QoS::AtLeastOnce,
        v2::Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn v3_qos(qos: v3::Qos) -> QoS {
    match qos {
        v3::Qos::AtMostOnce => QoS::AtMostOnce,
        v3::Qos::AtLeastOnce => QoS::AtLeastOnce,
        v3::Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

impl v2::Host for MqttView<'_> {}

impl v2::HostConnection for MqttView<'_> {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        match open(
            self.policy,
            &address,
            &username,
            &password,
            keep_alive_interval_in_secs,
        )
        .await
        {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(f) => Ok(Err(f.into())),
        }
    }

    async fn publish(
        &mut self,
        c: Resource<Connection>,
        topic: String,
        payload: Vec<u8>,
        qos: v2::Qos,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let c = self.table.get(&c)?;
        let (client, events) = (c.client.clone(), c.events.clone());
        Ok(publish(&client, &events, topic, payload, v2_qos(qos))
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        let c = self.table.delete(c)?;
        let _ = c.client.try_disconnect();
        Ok(())
    }
}

impl v3::Host for MqttView<'_> {}

impl v3::HostConnection for MqttView<'_> {
    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        let c = self.table.delete(c)?;
        let _ = c.client.try_disconnect();
        Ok(())
    }
}

impl<U> v3::HostConnectionWithStore<U> for MqttData {
    async fn open(
        accessor: &Accessor<U, Self>,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        let policy = accessor.with(|mut access| access.get().policy.clone());
        match open(
            &policy,
            &address,
            &username,
            &password,
            keep_alive_interval_in_secs,
        )
        .await
        {
            Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().table.push(c)?))),
            Err(f) => Ok(Err(f.into())),
        }
    }

    async fn publish(
        accessor: &Accessor<U, Self>,
        c: Resource<Connection>,
        topic: String,
        payload: Vec<u8>,
        qos: v3::Qos,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (client, events) = accessor.with(|mut access| {
            let c = access.get().table.get(&c)?;
            Ok::<_, wasmtime::Error>((c.client.clone(), c.events.clone()))
        })?;
        Ok(publish(&client, &events, topic, payload, v3_qos(qos))
            .await
            .map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_as_spin_reads_them() {
        assert_eq!(
            parse("mqtt://broker:1884?client_id=app"),
            Ok(("broker".into(), 1884, "app".into(), false))
        );
        assert_eq!(
            parse("mqtt://broker?client_id=a&keep_alive_secs=5"),
            Ok(("broker".into(), 1883, "a".into(), false))
        );
        assert_eq!(
            parse("mqtts://broker?client_id=a"),
            Ok(("broker".into(), 8883, "a".into(), true))
        );
        assert!(parse("mqtt://broker:1883").is_err(), "no client id");
        assert!(parse("ssl://broker?client_id=a").is_err());
        assert!(parse("mqtt://user@broker?client_id=a").is_err());
        assert!(parse("broker?client_id=a").is_err());
    }
}
