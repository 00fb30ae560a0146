//! The NATS JetStream trigger: at-least-once delivery through a durable
//! pull consumer, which Redis pub/sub cannot give.
//!
//! The trigger reads from the trigger's `stream`, or, without one, from a
//! stream Ferry makes for the subject (`FERRY_<hash of the subject>`, file
//! storage, shared by every trigger on that subject). Each trigger has its
//! own durable consumer (`ferry_<app>_<trigger id>`, hashed where the names
//! do not fit), so its position survives a restart of Ferry: a message
//! published while Ferry was down is delivered when it is back.
//!
//! A message whose guest succeeds is acknowledged. One whose guest fails
//! is handed back (`nak`) with a delay that doubles from one second (up to
//! a minute) and delivered again, up to `max_deliver` times in all; after
//! the last failure it is published to `dead_letter_subject` when the
//! trigger has one, with headers saying where it came from and why, and
//! acknowledged (`term`) so it is not delivered again. A message the
//! guest is still working on when its component's timeout plus a margin
//! has passed is delivered again by the server (`ack_wait`).
//!
//! A lost connection is the client's to restore (it reconnects on its
//! own); a consumer that cannot be read is made again after a backoff.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use ferry_runtime::Event;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::{Invocations, Invoker, Link, Reconnect, Source};

/// A subject a trigger may consume: tokens of printable characters without
/// spaces, `*` and `>` standing for whole tokens, and none of NATS's own:
/// `$`-subjects carry JetStream's API and every stream's data (a cluster's
/// desired state, other apps' key-value buckets), `_INBOX` other clients'
/// replies.
pub(crate) fn check_subject(subject: &str) -> Result<(), String> {
    if subject.starts_with('$') || subject.starts_with("_INBOX") || subject == ">" {
        return Err(format!(
            "`{subject}` is one of NATS's own subjects (`$…` are JetStream's API and streams, `_INBOX…` replies): a trigger may not consume or publish to it"
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let bad = subject.is_empty()
        || tokens.iter().enumerate().any(|(i, t)| {
            t.is_empty()
                || t.chars().any(|c| c.is_whitespace() || c.is_control())
                || (t.contains('*') && *t != "*")
                || (t.contains('>') && (*t != ">" || i + 1 != tokens.len()))
        });
    if bad {
        return Err(format!(
            "`{subject}` is not a NATS subject: dot-separated tokens without spaces, `*` for one whole token, `>` only as the last"
        ));
    }
    Ok(())
}

/// The servers of `url`: one NATS URL, or several separated by commas (a
/// cluster's, as `ferry serve --cluster` takes them).
/// A stream a trigger may consume: none of JetStream's key-value buckets
/// (`KV_…`) or object stores (`OBJ_…`), which hold a cluster's state and
/// apps' data.
pub(crate) fn check_stream(stream: &str) -> Result<(), String> {
    if stream.starts_with("KV_") || stream.starts_with("OBJ_") || stream.starts_with('$') {
        return Err(format!(
            "the stream `{stream}` is a key-value bucket or object store: a trigger may not consume it"
        ));
    }
    Ok(())
}

/// A dead-letter subject: a plain subject (no wildcard) that the trigger's
/// own subject does not match, or a given-up message would come back.
pub(crate) fn check_dead_letter(dead_letter: &str, subject: &str) -> Result<(), String> {
    check_subject(dead_letter)?;
    if dead_letter.contains(['*', '>']) {
        return Err(format!(
            "the dead-letter subject `{dead_letter}` has a wildcard: name one subject"
        ));
    }
    if matches(subject, dead_letter) {
        return Err(format!(
            "the dead-letter subject `{dead_letter}` is one the trigger consumes (`{subject}`): a given-up message would be delivered again"
        ));
    }
    Ok(())
}

/// Whether the subject `pattern` (with `*` and `>`) matches `subject`.
fn matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for want in pattern.split('.') {
        match (want, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (want, Some(token)) if want == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

pub(crate) fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!(
                    "`{}` is not a NATS server address: {e}",
                    ferry_manifest::redacted(u)
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("no NATS server address given".to_owned());
    }
    Ok(servers)
}

/// A JetStream name for `text`: itself where it is short and plain, else a
/// readable prefix and a hash.
fn name(prefix: &str, text: &str) -> String {
    let plain = ferry_manifest::plain_name(text);
    let full = format!("{prefix}{plain}");
    if full.len() <= 48 && plain == text {
        return full;
    }
    let hash = crate::stable_hash(text);
    let keep: String = plain.chars().take(24).collect();
    format!("{prefix}{keep}_{hash:016x}")
}

/// How long a message waits before it is delivered again after its
/// `delivered`th failure: one second doubling, up to a minute.
fn redelivery_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.clamp(1, 7) - 1).unwrap_or(0);
    Duration::from_secs(1 << exponent).min(Duration::from_secs(60))
}

pub(crate) async fn run(
    source: Source,
    app: Arc<str>,
    invoker: Arc<Invoker>,
    mut stopped: watch::Receiver<bool>,
) {
    let Source::Nats {
        url,
        subject,
        stream,
        max_deliver,
        dead_letter,
    } = source
    else {
        unreachable!("the NATS trigger runs NATS sources only");
    };
    let shown = ferry_manifest::redacted(&url);
    let own_stream = stream.is_none();
    let stream_name = stream.unwrap_or_else(|| name("FERRY_", &subject));
    // App and trigger joined by a character neither may hold, so the name
    // is always the hash of both: `shop`+`a_b` and `shop_a`+`b` differ.
    let durable = name("ferry_", &format!("{app}/{}", invoker.trigger));
    let servers = match servers(&url) {
        Ok(servers) => servers,
        Err(e) => {
            // Checked when the app loads.
            tracing::error!(target: "ferry::trigger", trigger = &*invoker.trigger, "{e}");
            return;
        }
    };
    for server in &servers {
        let checked = crate::checked_addrs(&invoker.guest, server.host(), server.port()).await;
        if let Err(e) = checked {
            tracing::error!(target: "ferry::trigger", trigger = &*invoker.trigger, "cannot use the NATS server: {e}");
            return;
        }
    }
    let max_payload = invoker.guest.limits().max_request_body;
    let connected = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        // Only the servers the manifest names, never ones they advertise.
        .ignore_discovered_servers()
        .name(format!("ferry trigger {}", invoker.trigger))
        .connect(servers);
    let client = tokio::select! {
        _ = stopped.wait_for(|s| *s) => return,
        client = connected => client,
    };
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(target: "ferry::trigger", url = shown.as_str(), trigger = &*invoker.trigger, "cannot use the NATS server: {e}");
            return;
        }
    };
    let js = jetstream::new(client.clone());
    // Time for the guest, and for the answer to reach the server.
    let ack_wait = invoker.guest.limits().request_timeout + Duration::from_secs(5);
    let mut invocations = Invocations::new();
    let mut reconnect = Reconnect::new();
    let mut link = Link::new([&invoker]);
    'consume: loop {
        let wait = reconnect.next_wait();
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break 'consume,
            () = tokio::time::sleep(wait) => {}
        }
        let opened = async {
            let stream = if own_stream {
                js.get_or_create_stream(stream::Config {
                    name: stream_name.clone(),
                    subjects: vec![subject.clone()],
                    storage: stream::StorageType::File,
                    // Kept until every trigger on it has taken it, and a
                    // week at most: a stream of Ferry's never grows
                    // without end.
                    retention: stream::RetentionPolicy::Interest,
                    max_age: Duration::from_secs(7 * 24 * 3600),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
            } else {
                js.get_stream(&stream_name).await.map_err(|e| e.to_string())
            }
            .map_err(|e| format!("the stream `{stream_name}`: {e}"))?;
            // Created, or updated to this version's settings.
            let consumer: consumer::PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subject.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    // Unlimited: Ferry counts the tries and gives a
                    // message up itself (to its dead letter), so none
                    // is dropped by the server unannounced.
                    max_deliver: -1,
                    max_ack_pending: i64::try_from(invoker.guest.limits().max_concurrent_requests)
                        .unwrap_or(1000),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("the consumer `{durable}`: {e}"))?;
            consumer
                .messages()
                .await
                .map_err(|e| format!("reading the consumer `{durable}`: {e}"))
        };
        let messages = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break 'consume,
            messages = opened => messages,
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                link.set(false);
                tracing::warn!(
                    target: "ferry::trigger",
                    url = shown.as_str(),
                    trigger = &*invoker.trigger,
                    "cannot consume {e}; trying again"
                );
                continue 'consume;
            }
        };
        link.set(true);
        tracing::info!(
            target: "ferry::trigger",
            url = shown.as_str(),
            subject = subject.as_str(),
            stream = stream_name.as_str(),
            consumer = durable.as_str(),
            "consuming"
        );
        loop {
            let message = tokio::select! {
                _ = stopped.wait_for(|s| *s) => break 'consume,
                Some(_) = invocations.join_next(), if !invocations.is_empty() => continue,
                message = messages.next() => message,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::warn!(
                        target: "ferry::trigger",
                        trigger = &*invoker.trigger,
                        "reading the consumer `{durable}`: {e}; reading it again"
                    );
                    link.set(false);
                    continue 'consume;
                }
                None => continue 'consume,
            };
            reconnect.worked();
            let (sequence, delivered) = message
                .info()
                .map(|i| (i.stream_sequence, i.delivered))
                .unwrap_or((0, 1));
            let id = format!("{}-{sequence}", invoker.trigger);
            if message.payload.len() as u64 > max_payload {
                // Given up at once: no try would take it.
                let why = format!(
                    "the message is {} bytes, over the component's max_request_body ({max_payload} bytes)",
                    message.payload.len()
                );
                settle(
                    &js,
                    message,
                    Err(why),
                    i64::from(max_deliver),
                    max_deliver,
                    dead_letter.as_deref(),
                    &id,
                    &invoker.trigger,
                )
                .await;
                continue;
            }
            let payload = message.payload.clone();
            let topic = message.subject.to_string();
            let after = {
                let (js, id, trigger) = (js.clone(), id.clone(), invoker.trigger.clone());
                let dead_letter = dead_letter.clone();
                move |outcome: Result<(), String>| async move {
                    settle(
                        &js,
                        message,
                        outcome,
                        delivered,
                        max_deliver,
                        dead_letter.as_deref(),
                        &id,
                        &trigger,
                    )
                    .await;
                }
            };
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => break 'consume,
                () = invoker.dispatch_then(Event::Message { payload, topic }, Some(id), &mut invocations, after) => {}
            }
        }
    }
    link.set(false);
    while invocations.join_next().await.is_some() {}
}

/// Acknowledges a handled message; hands a failed one back for another
/// try, or gives it up (to the dead-letter subject) after its last.
#[allow(clippy::too_many_arguments)]
async fn settle(
    js: &jetstream::Context,
    message: jetstream::Message,
    outcome: Result<(), String>,
    delivered: i64,
    max_deliver: u32,
    dead_letter: Option<&str>,
    id: &str,
    trigger: &str,
) {
    let answer = match outcome {
        Ok(()) => message.ack().await,
        Err(_) if delivered < i64::from(max_deliver) => {
            let delay = redelivery_delay(delivered);
            tracing::warn!(
                target: "ferry::trigger",
                trigger,
                message_id = id,
                delivered,
                "try {delivered} of {max_deliver} failed; delivering it again in {delay:?}"
            );
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
        Err(why) => {
            match dead_letter {
                Some(subject) => {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Ferry-Trigger", trigger);
                    headers.insert("Ferry-Subject", message.subject.as_str());
                    headers.insert("Ferry-Deliveries", delivered.to_string().as_str());
                    let why: String = why.replace(['\r', '\n'], " ").chars().take(1024).collect();
                    headers.insert("Ferry-Error", why.as_str());
                    // Into the stream that keeps the subject, if one
                    // does, acknowledged; else to its subscribers.
                    let stored = match js.stream_by_subject(subject).await {
                        Ok(_) => match js
                            .publish_with_headers(
                                subject.to_owned(),
                                headers,
                                message.payload.clone(),
                            )
                            .await
                        {
                            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        },
                        Err(_) => {
                            let client = js.client();
                            match client
                                .publish_with_headers(
                                    subject.to_owned(),
                                    headers,
                                    message.payload.clone(),
                                )
                                .await
                            {
                                Ok(()) => {
                                    tokio::time::timeout(Duration::from_secs(5), client.flush())
                                        .await
                                        .map_err(|_| "no answer from the server".to_owned())
                                        .and_then(|flushed| flushed.map_err(|e| e.to_string()))
                                }
                                Err(e) => Err(e.to_string()),
                            }
                        }
                    };
                    match stored {
                        Ok(()) => tracing::error!(
                            target: "ferry::trigger",
                            trigger,
                            message_id = id,
                            delivered,
                            "given up after {delivered} tries; published to `{subject}`"
                        ),
                        Err(e) => {
                            // Not handed on: handed back, to be given up
                            // again on its next delivery.
                            let delay = redelivery_delay(delivered);
                            tracing::error!(
                                target: "ferry::trigger",
                                trigger,
                                message_id = id,
                                "given up after {delivered} tries, but publishing it to `{subject}` failed: {e}; trying again in {delay:?}"
                            );
                            if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
                                tracing::warn!(target: "ferry::trigger", trigger, message_id = id, "cannot answer the NATS server about the message: {e}");
                            }
                            return;
                        }
                    }
                }
                None => tracing::error!(
                    target: "ferry::trigger",
                    trigger,
                    message_id = id,
                    delivered,
                    "given up after {delivered} tries (the trigger has no dead_letter_subject)"
                ),
            }
            message.ack_with(AckKind::Term).await
        }
    };
    if let Err(e) = answer {
        // The server delivers it again once `ack_wait` has passed.
        tracing::warn!(target: "ferry::trigger", trigger, message_id = id, "cannot answer the NATS server about the message: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_as_nats_reads_them() {
        for good in ["orders", "orders.*", "orders.>", "a.*.c"] {
            assert_eq!(check_subject(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "a b",
            "a.b*",
            "a.>.c",
            ".a",
            "a.",
            ">",
            "$KV.ferry_apps.>",
            "$JS.API.STREAM.DELETE.X",
            "_INBOX.abc",
        ] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dead_letters_never_come_back_to_the_trigger() {
        assert!(check_dead_letter("dead.orders", "orders.>").is_ok());
        assert!(check_dead_letter("orders.dead", "orders.>").is_err());
        assert!(check_dead_letter("orders.dead", "orders.*").is_err());
        assert!(check_dead_letter("orders.dead.x", "orders.*").is_ok());
        assert!(check_dead_letter("dead.*", "orders").is_err());
        assert!(check_dead_letter("$KV.ferry_apps.shop", "orders").is_err());
        assert!(check_stream("KV_ferry_apps").is_err());
        assert!(check_stream("ORDERS").is_ok());
    }

    #[test]
    fn names_are_plain_or_hashed_and_stable() {
        assert_eq!(name("ferry_", "app_t1"), "ferry_app_t1");
        let long = name("FERRY_", "orders.>");
        assert!(long.starts_with("FERRY_orders__"), "{long}");
        assert_eq!(long, name("FERRY_", "orders.>"));
        assert_ne!(long, name("FERRY_", "orders.*"));
    }

    #[test]
    fn redelivery_waits_double_up_to_a_minute() {
        assert_eq!(redelivery_delay(1), Duration::from_secs(1));
        assert_eq!(redelivery_delay(3), Duration::from_secs(4));
        assert_eq!(redelivery_delay(50), Duration::from_secs(60));
    }
}
