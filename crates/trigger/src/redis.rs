//! The Redis trigger: one subscriber connection per server address, on
//! every channel the app's triggers name there; each message runs each
//! component subscribed to its channel once, in a fresh instance.
//!
//! A connection that cannot be made, or that drops, is made again after a
//! backoff (100 ms doubling to 30 s, reset once a message came through);
//! messages published meanwhile are lost, as Redis pub/sub loses them for
//! any subscriber that is away. The server's address is resolved and
//! checked against the host's forbidden listeners before each connection.
//! A message larger than its components' `max_request_body` is dropped
//! with a log line. (The Redis client buffers what the server sends before
//! Ferry reads it; a component slower than its channel makes that buffer
//! grow until Redis's own `client-output-buffer-limit` for pub/sub cuts the
//! subscriber off.)

use ferry_runtime::Event;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::{Channels, Invocations, Link, Reconnect};

/// How long connecting and subscribing (TCP, TLS, `SUBSCRIBE`) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn run(address: String, channels: Channels, mut stopped: watch::Receiver<bool>) {
    let shown = ferry_manifest::redacted(&address);
    let (info, tls) = match ferry_runtime::redis_address(&address) {
        Ok(parsed) => parsed,
        Err(e) => {
            // The address is checked when the app loads; this is a bug if
            // it happens, and nothing would ever fix it by retrying.
            tracing::error!(target: "ferry::trigger", address = shown.as_str(), "not a Redis address: {e}");
            return;
        }
    };
    let Some((_, first)) = channels.first() else {
        return;
    };
    let guest = first.guest.clone();
    // The largest message a subscribed component takes, as an HTTP body.
    let max_payload = channels
        .iter()
        .map(|(_, i)| i.guest.limits().max_request_body)
        .max()
        .unwrap_or(0);
    let mut names: Vec<&str> = channels.iter().map(|(c, _)| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut invocations = Invocations::new();
    let mut reconnect = Reconnect::new();
    let mut link = Link::new(channels.iter().map(|(_, invoker)| invoker));
    'connect: loop {
        let wait = reconnect.next_wait();
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break 'connect,
            () = tokio::time::sleep(wait) => {}
        }
        let subscribed = async {
            // Resolved and checked here, then connected to by address
            // (over TLS for `rediss://`, the certificate checked for the
            // host's name).
            let (host, port) = ferry_runtime::redis_endpoint(&info)?;
            let addrs = crate::checked_addrs(&guest, &host, port).await?;
            // Connected, TLS, authenticated and subscribed, all within
            // the one limit: a server that stalls anywhere is left.
            let subscribe = async {
                let stream = ferry_runtime::redis_stream(&host, addrs[0], tls)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut pubsub = redis::aio::PubSub::new(info.redis_settings(), stream)
                    .await
                    .map_err(|e| e.to_string())?;
                for name in &names {
                    pubsub.subscribe(*name).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(pubsub)
            };
            tokio::time::timeout(CONNECT_TIMEOUT, subscribe)
                .await
                .map_err(|_| {
                    format!(
                        "{host}:{port} did not subscribe within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    )
                })?
        };
        let pubsub = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break 'connect,
            pubsub = subscribed => pubsub,
        };
        let pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(e) => {
                link.set(false);
                tracing::warn!(
                    target: "ferry::trigger",
                    address = shown.as_str(),
                    "cannot subscribe on the Redis server: {e}; trying again"
                );
                continue 'connect;
            }
        };
        link.set(true);
        tracing::info!(
            target: "ferry::trigger",
            address = shown.as_str(),
            channels = names.join(", ").as_str(),
            "subscribed"
        );
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                _ = stopped.wait_for(|s| *s) => break 'connect,
                // Finished invocations are collected as they end.
                Some(_) = invocations.join_next(), if !invocations.is_empty() => continue,
                message = messages.next() => message,
            };
            let Some(message) = message else {
                link.set(false);
                tracing::warn!(
                    target: "ferry::trigger",
                    address = shown.as_str(),
                    "the Redis server closed the subscription; subscribing again"
                );
                continue 'connect;
            };
            reconnect.worked();
            let channel = message.get_channel_name();
            let bytes = message.get_payload_bytes();
            if bytes.len() as u64 > max_payload {
                tracing::error!(
                    target: "ferry::trigger",
                    address = shown.as_str(),
                    channel,
                    "a message of {} bytes is over its components' max_request_body ({max_payload} bytes); dropped",
                    bytes.len()
                );
                continue;
            }
            let payload = bytes::Bytes::copy_from_slice(bytes);
            for (name, invoker) in &channels {
                if name == channel {
                    // Waits for a free slot: a busy component slows the
                    // reading of its connection, not the host.
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => break 'connect,
                        () = invoker.dispatch(Event::Message {
                            payload: payload.clone(),
                            topic: channel.to_owned(),
                        }, &mut invocations) => {}
                    }
                }
            }
        }
    }
    link.set(false);
    while invocations.join_next().await.is_some() {}
}
