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
//! with a log line; one larger than that plus [`FRAME_SLACK`] is not even
//! read: the connection is dropped as its header arrives and made again
//! (losing, as any reconnection does, what the server had queued).
//!
//! What the subscriber holds is bounded: at most [`BACKLOG`] bytes (or two
//! of the largest messages, if more) are read ahead of the components.
//! Beyond that Ferry stops reading, so a component slower than its channel
//! fills the server's buffer for the subscriber instead of the host's
//! memory, until Redis's own `client-output-buffer-limit pubsub` (32 MiB,
//! or 8 MiB for a minute, by default) disconnects it; messages are then
//! lost until it is subscribed again, as for any slow Redis subscriber.

use ferry_runtime::Event;
use ferry_runtime::redis_frames::{Backlog, bulk_bytes};
use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::{Channels, Invocations, Link, Reconnect};

/// How long connecting and subscribing (TCP, TLS, `SUBSCRIBE`) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// What a message may take on the wire beyond its payload (its channel's
/// name and framing).
pub const FRAME_SLACK: usize = 64 << 10;
/// Bytes read ahead of the components, at least.
pub const BACKLOG: usize = 8 << 20;

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
    let max_frame = usize::try_from(max_payload)
        .unwrap_or(usize::MAX)
        .saturating_add(FRAME_SLACK);
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
        // More than two of the largest messages: reading waits only
        // while whole messages are queued (see `Backlog::new`).
        let backlog = Backlog::new(BACKLOG.max(max_frame.saturating_mul(2)));
        let subscribed = async {
            // Resolved and checked here, then connected to by address
            // (over TLS for `rediss://`, the certificate checked for the
            // host's name).
            let (host, port) = ferry_runtime::redis_endpoint(&info)?;
            let addrs = crate::checked_addrs(&guest, &host, port).await?;
            // Connected, TLS, authenticated and subscribed, all within
            // the one limit: a server that stalls anywhere is left.
            let subscribe = async {
                let stream = ferry_runtime::redis_stream(
                    &host,
                    addrs[0],
                    tls,
                    max_frame,
                    Some(backlog.clone()),
                )
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
            while let Some(Some(_)) = invocations.join_next().now_or_never() {}
            // Unconstrained: tokio's scheduling budget must not make a
            // queue with messages in it look empty.
            let message = match tokio::task::unconstrained(messages.next()).now_or_never() {
                Some(message) => message,
                None => {
                    // All that was decoded is taken.
                    backlog.drained();
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => break 'connect,
                        // Finished invocations are collected as they end.
                        Some(_) = invocations.join_next(), if !invocations.is_empty() => continue,
                        message = messages.next() => message,
                        // What the client reads and keeps itself (no message
                        // of ours) is let go too: reading never waits for
                        // good on a queue that stays empty.
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            let Some(message) = message else {
                link.set(false);
                let why = backlog.failure().map_or_else(
                    || "the Redis server closed the subscription".to_owned(),
                    |why| format!("the Redis server sent {why}"),
                );
                tracing::warn!(
                    target: "ferry::trigger",
                    address = shown.as_str(),
                    "{why}; subscribing again"
                );
                continue 'connect;
            };
            reconnect.worked();
            let channel = message.get_channel_name();
            let bytes = message.get_payload_bytes();
            // `*3` (or `>3`), `message`, the channel and the payload.
            backlog.taken(4 + bulk_bytes(7) + bulk_bytes(channel.len()) + bulk_bytes(bytes.len()));
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
