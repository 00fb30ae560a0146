//! The MQTT trigger, as the spin-trigger-mqtt plugin runs it: a connection
//! per trigger to the app's broker, subscribed to the trigger's topic
//! filter at its QoS, the component's `handle-message` called with each
//! message's payload and topic.
//!
//! Delivery is the QoS's. At QoS 0 a message is sent once and lost if
//! Ferry is away. At QoS 1 and 2 the session is persistent (a client id
//! stable for the app and trigger, `clean_session = false`): the broker
//! keeps what arrives while Ferry is away and hands it over when it is
//! back, and Ferry acknowledges a message only once its guest has run
//! (whether or not it failed: a failure is logged, not retried, as in the
//! plugin). A lost connection is made again with backoff.

use std::sync::Arc;
use std::time::Duration;

use ferry_runtime::Event;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use crate::{Invocations, Invoker, Link, Reconnect, Source};

/// `mqtt://HOST[:PORT]` (or `tcp://`): host and port (1883 by default).
pub(crate) fn broker_address(address: &str) -> Result<(String, u16), String> {
    let shown = ferry_manifest::redacted(address);
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("`{shown}` is not an MQTT address: write mqtt://HOST:PORT"))?;
    match scheme {
        "mqtt" | "tcp" => {}
        "mqtts" | "ssl" => {
            return Err(format!(
                "`{shown}`: TLS connections to an MQTT broker are not supported by Ferry yet"
            ));
        }
        other => {
            return Err(format!(
                "`{shown}`: `{other}://` is not an MQTT address: write mqtt://HOST:PORT"
            ));
        }
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("`{shown}`: `{port}` is not a port"))?,
        ),
        _ => (authority, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{shown}` names no host"));
    }
    Ok((host.to_owned(), port))
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
    let (host, port) = match broker_address(&address) {
        Ok(broker) => broker,
        Err(e) => {
            // Checked when the app loads.
            tracing::error!(target: "ferry::trigger", trigger = &*invoker.trigger, "{e}");
            return;
        }
    };
    // Stable for the app and trigger, so a persistent session is found
    // again after a restart.
    let hash = crate::stable_hash(&format!("{app}/{}", invoker.trigger));
    let client_id = format!("ferry-{hash:016x}");
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
        let mut options = MqttOptions::new(&client_id, addrs[0].ip().to_string(), port);
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
            Ok(("localhost".into(), 1884))
        );
        assert_eq!(
            broker_address("mqtt://u:p@broker"),
            Ok(("broker".into(), 1883))
        );
        assert_eq!(broker_address("tcp://[::1]:1999"), Ok(("::1".into(), 1999)));
        assert!(broker_address("mqtts://broker:8883").is_err());
        assert!(broker_address("broker:1883").is_err());
        assert!(broker_address("mqtt://:1883").is_err());
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
