//! The Redis trigger: one subscriber connection per server address, on
//! every channel the app's triggers name there; each message runs each
//! component subscribed to its channel once, in a fresh instance.
//!
//! A connection that cannot be made, or that drops, is made again after a
//! backoff (100 ms doubling to 30 s, reset once subscribed); messages
//! published meanwhile are lost, as Redis pub/sub loses them for any
//! subscriber that is away.

use std::sync::Arc;

use ferry_runtime::Event;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::{Channels, Invocations, Invoker, backoff};

pub(crate) async fn run(address: String, channels: Channels, mut stopped: watch::Receiver<bool>) {
    let shown = ferry_manifest::redacted(&address);
    let client = match redis::Client::open(address.as_str()) {
        Ok(client) => client,
        Err(e) => {
            // The address is checked when the app loads; this is a bug if
            // it happens, and nothing would ever fix it by retrying.
            tracing::error!(target: "ferry::trigger", address = shown.as_str(), "not a Redis address: {e}");
            return;
        }
    };
    let mut names: Vec<&str> = channels.iter().map(|(c, _)| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut invocations = Invocations::new();
    let mut attempt = 0;
    'connect: loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            for name in &names {
                pubsub.subscribe(*name).await?;
            }
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break 'connect,
            pubsub = subscribed => pubsub,
        };
        let pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(e) => {
                let wait = backoff(attempt);
                attempt += 1;
                set_connected(&channels, false);
                tracing::warn!(
                    target: "ferry::trigger",
                    address = shown.as_str(),
                    "cannot subscribe on the Redis server: {e}; trying again in {wait:?}"
                );
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break 'connect,
                    _ = tokio::time::sleep(wait) => continue 'connect,
                }
            }
        };
        attempt = 0;
        set_connected(&channels, true);
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
                set_connected(&channels, false);
                tracing::warn!(
                    target: "ferry::trigger",
                    address = shown.as_str(),
                    "the Redis server closed the subscription; subscribing again"
                );
                continue 'connect;
            };
            let channel = message.get_channel_name();
            let payload = bytes::Bytes::copy_from_slice(message.get_payload_bytes());
            for (name, invoker) in &channels {
                if name == channel {
                    // Waits for a free slot: a busy component slows the
                    // reading of its connection, not the host.
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => break 'connect,
                        () = invoker.dispatch(Event::Message(payload.clone()), &mut invocations) => {}
                    }
                }
            }
        }
    }
    set_connected(&channels, false);
    while invocations.join_next().await.is_some() {}
}

fn set_connected(channels: &[(String, Arc<Invoker>)], connected: bool) {
    for (_, invoker) in channels {
        if let Some(series) = &invoker.metrics {
            series.connected(connected);
        }
    }
}
