//! The MQTT trigger, as the spin-trigger-mqtt plugin runs it: a connection
//! per trigger to the app's broker, subscribed to the trigger's topic
//! filter at its QoS, the component's `handle-message` called with each
//! message's payload and topic.
//!
//! `mqtts://` (or `ssl://`, port 8883 by default) is TLS: the broker's
//! certificate is checked for its host's name against the roots outbound
//! TLS trusts ([`ferry_runtime::broker_options`]).
//!
//! Delivery is the QoS's. At QoS 0 a message is sent once and lost if
//! Ferry is away. At QoS 1 and 2 the session is persistent (a client id
//! stable for the app, trigger and user, [`client_id`]; `clean_session =
//! false`): the broker
//! keeps what arrives while Ferry is away and hands it over when it is
//! back, and Ferry acknowledges a message only once its guest has run
//! (whether or not it failed: a failure is logged, not retried, as in the
//! plugin). A lost connection is made again with backoff.

use std::sync::Arc;
use std::time::Duration;

use ferry_runtime::Event;
use rumqttc::{AsyncClient, Event as MqttEvent, Packet, QoS};
use tokio::sync::watch;

use crate::{Invocations, Invoker, Link, Reconnect, Source};

/// `mqtt://HOST[:PORT]` (or `tcp://`), or over TLS `mqtts://` (or
/// `ssl://`): host, port (1883, or 8883 for TLS, by default) and whether it
/// is TLS.
pub(crate) fn broker_address(address: &str) -> Result<(String, u16, bool), String> {
    let shown = ferry_manifest::redacted(address);
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("`{shown}` is not an MQTT address: write mqtt://HOST:PORT"))?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => {
            return Err(format!(
                "`{shown}`: `{other}://` is not an MQTT address: write mqtt://HOST:PORT or mqtts://HOST:PORT"
            ));
        }
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("`{shown}`: `{port}` is not a port"))?,
        ),
        _ => (authority, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{shown}` names no host"));
    }
    Ok((host.to_owned(), port, tls))
}

/// The client id of a trigger's session: the same on every node and after
/// a restart, so that a persistent session is found again. A hash of the
/// app, the trigger and the user name it connects as (not the password:
/// an id brokers show would let anyone test guesses of it, and a new
/// password would orphan the session). A client of the broker that knows
/// those three can work it out and, where the broker's ACLs let it, take
/// the session over: a host secret shared by a cluster's nodes would close
/// that, and Ferry has none yet. 23 characters, all letters and digits, as
/// every MQTT 3.1.1 broker must take.
pub(crate) fn client_id(app: &str, trigger: &str, username: &str) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for part in ["ferry mqtt trigger client id", app, trigger, username] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let hex: String = hash
        .finalize()
        .iter()
        .take(9)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ferry{hex}")
}

/// A topic filter as MQTT reads it: `+` a whole level, `#` the last one.
pub(crate) fn check_topic(topic: &str) -> Result<(), String> {
    let levels: Vec<&str> = topic.split('/').collect();
    let bad = topic.is_empty()
        || topic.starts_with('$')
        || levels.iter().enumerate().any(|(i, level)| {
            (level.contains('+') && *level != "+")
                || (level.contains('#') && (*level != "#" || i + 1 != levels.len()))
        });
    if bad {
        return Err(format!(
            "`{topic}` is not an MQTT topic filter: `+` for one whole level, `#` only as the last, no `$` topics"
        ));
    }
    Ok(())
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub(crate) async fn run(
    source: Source,
    app: Arc<str>,
    invoker: Arc<Invoker>,
    mut stopped: watch::Receiver<bool>,
) {
    let Source::Mqtt {
        address,
        username,
        password,
        keep_alive,
        topic,
        qos: level,
    } = source
    else {
        unreachable!("the MQTT trigger runs MQTT sources only");
    };
    let shown = ferry_manifest::redacted(&address);
    let (host, port, tls) = match broker_address(&address) {
        Ok(broker) => broker,
        Err(e) => {
            // Checked when the app loads.
            tracing::error!(target: "ferry::trigger", trigger = &*invoker.trigger, "{e}");
            return;
        }
    };
    let client_id = client_id(
        &app,
        &invoker.trigger,
        username.as_deref().unwrap_or_default(),
    );
    let max_payload = invoker.guest.limits().max_request_body;
    let mut invocations = Invocations::new();
    let mut reconnect = Reconnect::new();
    let mut link = Link::new([&invoker]);
    'connect: loop {
        let wait = reconnect.next_wait();
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break 'connect,
            () = tokio::time::sleep(wait) => {}
        }
        let addrs = match crate::checked_addrs(&invoker.guest, &host, port).await {
            Ok(addrs) => addrs,
            Err(e) => {
                tracing::warn!(target: "ferry::trigger", address = shown.as_str(), trigger = &*invoker.trigger, "cannot reach the MQTT broker: {e}; trying again");
                continue 'connect;
            }
        };
        let mut options = match ferry_runtime::broker_options(&client_id, &host, port, tls, &addrs)
        {
            Ok(options) => options,
            Err(e) => {
                tracing::warn!(target: "ferry::trigger", address = shown.as_str(), trigger = &*invoker.trigger, "cannot reach the MQTT broker: {e}; trying again");
                continue 'connect;
            }
        };
        options
            .set_keep_alive(keep_alive.max(Duration::from_secs(1)))
            .set_clean_session(level == 0)
            .set_manual_acks(true)
            .set_max_packet_size(
                usize::try_from(max_payload)
                    .unwrap_or(usize::MAX)
                    .saturating_add(64 << 10),
                usize::try_from(max_payload)
                    .unwrap_or(usize::MAX)
                    .saturating_add(64 << 10),
            );
        // No user name (or an empty one, as the plugin's examples write
        // it): anonymous.
        if let Some(username) = username.as_deref().filter(|u| !u.is_empty()) {
            options.set_credentials(username, password.as_deref().unwrap_or_default());
        }
        let (client, mut events) = AsyncClient::new(options, 64);
        if let Err(e) = client.subscribe(&topic, qos(level)).await {
            tracing::warn!(target: "ferry::trigger", address = shown.as_str(), trigger = &*invoker.trigger, "cannot subscribe to `{topic}`: {e}; trying again");
            continue 'connect;
        }
        loop {
            let event = tokio::select! {
                _ = stopped.wait_for(|s| *s) => None,
                Some(_) = invocations.join_next(), if !invocations.is_empty() => continue,
                event = events.poll() => Some(event),
            };
            let Some(event) = event else {
                let _ = client.disconnect().await;
                break 'connect;
            };
            match event {
                Ok(MqttEvent::Incoming(Packet::SubAck(ack)))
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) =>
                {
                    link.set(false);
                    tracing::error!(
                        target: "ferry::trigger",
                        address = shown.as_str(),
                        topic = topic.as_str(),
                        "the broker refused the subscription; trying again"
                    );
                    continue 'connect;
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    link.set(true);
                    tracing::info!(
                        target: "ferry::trigger",
                        address = shown.as_str(),
                        topic = topic.as_str(),
                        qos = level,
                        "subscribed"
                    );
                }
                Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                    reconnect.worked();
                    let id = format!("{}-{}", invoker.trigger, publish.pkid);
                    let message_topic = publish.topic.clone();
                    let payload = publish.payload.clone();
                    let client = client.clone();
                    let after = move |_outcome: Result<(), String>| async move {
                        // Run, failed or not: acknowledged (QoS 1 and 2).
                        if let Err(e) = client.ack(&publish).await {
                            tracing::warn!(target: "ferry::trigger", "cannot acknowledge an MQTT message: {e}");
                        }
                    };
                    let event = Event::Message {
                        payload,
                        topic: message_topic,
                    };
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => break 'connect,
                        () = invoker.dispatch_then(event, (level > 0).then_some(id), &mut invocations, after) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    link.set(false);
                    tracing::warn!(
                        target: "ferry::trigger",
                        address = shown.as_str(),
                        trigger = &*invoker.trigger,
                        "the MQTT connection failed: {e}; connecting again"
                    );
                    continue 'connect;
                }
            }
        }
    }
    link.set(false);
    while invocations.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_are_read_as_mqtt_urls() {
        assert_eq!(
            broker_address("mqtt://localhost:1884"),
            Ok(("localhost".into(), 1884, false))
        );
        assert_eq!(
            broker_address("mqtt://u:p@broker"),
            Ok(("broker".into(), 1883, false))
        );
        assert_eq!(
            broker_address("tcp://[::1]:1999"),
            Ok(("::1".into(), 1999, false))
        );
        assert_eq!(
            broker_address("mqtts://broker"),
            Ok(("broker".into(), 8883, true))
        );
        assert_eq!(
            broker_address("ssl://broker:8884"),
            Ok(("broker".into(), 8884, true))
        );
        assert!(broker_address("wss://broker:8883").is_err());
        assert!(broker_address("broker:1883").is_err());
        assert!(broker_address("mqtt://:1883").is_err());
    }

    #[test]
    fn client_ids_are_stable_and_tell_apps_triggers_and_users_apart() {
        let id = client_id("app", "t", "user");
        assert_eq!(id, client_id("app", "t", "user"));
        assert_eq!(id.len(), 23);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        for other in [
            client_id("app", "t", ""),
            client_id("app", "u", "user"),
            client_id("ap", "pt", "user"),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn topic_filters_are_checked() {
        for good in ["a/b", "a/+/c", "a/#", "#", "+"] {
            assert_eq!(check_topic(good), Ok(()), "{good}");
        }
        for bad in ["", "a/b+", "a/#/c", "$SYS/#", "a#"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
    }
}
