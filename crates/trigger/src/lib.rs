//! Event triggers: an app's components run on Redis messages, NATS
//! JetStream messages, MQTT messages and cron schedules, each event in a
//! fresh sandbox, as the server runs them on HTTP requests. One module per
//! source: `redis.rs`, `nats.rs`, `mqtt.rs`, `cron.rs`.
//!
//! [`Triggers`] is one app version's event triggers, each with its loaded
//! [`Guest`]; [`Triggers::start`] subscribes and schedules on the caller's
//! tokio runtime and returns the [`Running`] handle that stops them. A
//! live host starts a version's triggers when it serves the version and
//! stops the previous version's after; `ferry up` does the same on each
//! reload.
//!
//! Each event is one invocation: the component's concurrency limit
//! (`max_concurrent_requests`) bounds how many run at once (a source waits
//! for a free slot before it takes the next event), its memory limit and
//! timeout apply to each, and each is counted, timed and logged with its
//! message id. A failing guest is logged and the trigger goes on. A source
//! that goes away (a server restarting) is reconnected with backoff; the
//! app's HTTP side never notices. Every connection a source makes is
//! resolved and checked against the host's forbidden listeners first.
//!
//! Delivery: a Redis channel is pub/sub, so a message published while no
//! subscriber is connected (Ferry restarting, Redis reconnecting) is never
//! seen, and one whose guest fails is not retried: at most once. NATS
//! JetStream is at least once (`nats.rs`: acknowledgement after success,
//! redelivery, dead letters). MQTT is its QoS's (`mqtt.rs`). A cron tick
//! missed while the process was down is not run later.
//!
//! This crate knows nothing of HTTP routing, manifests on disk or the
//! control plane: it is handed resolved triggers and their guests.

mod cron;
mod metrics;
mod mqtt;
mod nats;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_runtime::{Event, Guest, GuestError, RequestLog, RequestStats};
use tokio::sync::{Semaphore, watch};

pub use metrics::{TriggerFigures, TriggerMetrics};

/// One event trigger with its values filled in.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The manifest's `id` (or the one Spin generates).
    pub id: String,
    pub component: String,
    pub source: Source,
}

/// Where a trigger's events come from, resolved.
#[derive(Debug, Clone)]
pub enum Source {
    Redis {
        address: String,
        channel: String,
    },
    Nats {
        url: String,
        subject: String,
        /// An existing stream to consume; none: Ferry's own for `subject`.
        stream: Option<String>,
        max_deliver: u32,
        dead_letter: Option<String>,
    },
    Mqtt {
        address: String,
        username: Option<String>,
        password: Option<String>,
        keep_alive: Duration,
        topic: String,
        qos: u8,
    },
    Cron {
        schedule: String,
    },
}

impl Source {
    /// Whether one node of a cluster runs the trigger at a time: every
    /// subscriber to a Redis channel or an MQTT topic hears each message,
    /// and every node keeps a schedule, so each node running it would run
    /// each event once more. A NATS trigger's durable consumer is shared:
    /// each message goes to one of the nodes pulling from it.
    pub fn one_node(&self) -> bool {
        !matches!(self, Self::Nats { .. })
    }

    /// The trigger type, as the manifest names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::Nats { .. } => "nats",
            Self::Mqtt { .. } => "mqtt",
            Self::Cron { .. } => "cron",
        }
    }

    /// Whether the trigger can run: a Redis address the client takes, a
    /// schedule the cron parser takes.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Redis { address, .. } => ferry_runtime::redis_address(address)
                .and_then(|(info, _)| ferry_runtime::redis_endpoint(&info))
                .map(drop)
                .map_err(|e| {
                    format!(
                        "`{}` is not a Redis address: {e}",
                        ferry_manifest::redacted(address)
                    )
                }),
            Self::Nats {
                url,
                subject,
                stream,
                dead_letter,
                ..
            } => {
                nats::servers(url)?;
                nats::check_subject(subject)?;
                if let Some(stream) = stream {
                    nats::check_stream(stream)?;
                }
                match dead_letter {
                    Some(dead_letter) => nats::check_dead_letter(dead_letter, subject),
                    None => Ok(()),
                }
            }
            Self::Mqtt { address, topic, .. } => {
                mqtt::broker_address(address)?;
                mqtt::check_topic(topic)
            }
            Self::Cron { schedule } => ferry_manifest::parse_schedule(schedule).map(drop),
        }
    }

    /// For people: the address without credentials, the channel or
    /// the schedule.
    pub fn describe(&self) -> String {
        match self {
            Self::Redis { address, channel } => {
                format!(
                    "channel `{channel}` on {}",
                    ferry_manifest::redacted(address)
                )
            }
            Self::Nats {
                url,
                subject,
                stream,
                max_deliver,
                dead_letter,
            } => format!(
                "subject `{subject}` on {}{}, up to {max_deliver} tries{}",
                ferry_manifest::redacted(url),
                stream
                    .as_ref()
                    .map(|s| format!(" (stream `{s}`)"))
                    .unwrap_or_default(),
                dead_letter
                    .as_ref()
                    .map(|d| format!(", then to `{d}`"))
                    .unwrap_or_default()
            ),
            Self::Mqtt {
                address,
                topic,
                qos,
                ..
            } => format!(
                "topic `{topic}` on {} at QoS {qos}",
                ferry_manifest::redacted(address)
            ),
            Self::Cron { schedule } => format!("schedule `{schedule}` (UTC)"),
        }
    }
}

/// One app version's event triggers and their guests, ready to start.
#[derive(Clone)]
pub struct Triggers {
    app: Arc<str>,
    incarnation: u64,
    triggers: Vec<(Trigger, Arc<Guest>)>,
}

impl Triggers {
    /// `triggers` of the app `app` (in its life `incarnation`, as the
    /// server's log lines say it).
    pub fn new(app: &str, incarnation: u64, triggers: Vec<(Trigger, Arc<Guest>)>) -> Self {
        Self {
            app: app.into(),
            incarnation,
            triggers,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// These triggers in two: those every node of a cluster runs, and those
    /// one node runs at a time ([`Source::one_node`]).
    pub fn split(&self) -> (Self, Self) {
        let (one_node, every_node) = self
            .triggers
            .iter()
            .cloned()
            .partition(|(t, _)| t.source.one_node());
        let part = |triggers| Self {
            app: self.app.clone(),
            incarnation: self.incarnation,
            triggers,
        };
        (part(every_node), part(one_node))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Trigger> {
        self.triggers.iter().map(|(t, _)| t)
    }

    /// The guests the triggers run, each once.
    pub fn guests(&self) -> impl Iterator<Item = &Guest> {
        self.triggers
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| {
                !self.triggers[..*i]
                    .iter()
                    .any(|(earlier, _)| earlier.component == t.component)
            })
            .map(|(_, (_, g))| &**g)
    }

    /// The guest a trigger runs.
    pub fn guest(&self, component: &str) -> Option<&Arc<Guest>> {
        self.triggers
            .iter()
            .find(|(t, _)| t.component == component)
            .map(|(_, g)| g)
    }

    /// Starts every trigger on the current tokio runtime. `traces`: record
    /// a span for each invocation through OpenTelemetry's global tracer.
    pub fn start(&self, metrics: Option<&TriggerMetrics>, traces: bool) -> Running {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        // One slot pool per component, shared by the triggers that run it.
        let mut slots: Vec<(String, Arc<Semaphore>)> = Vec::new();
        let mut redis: Vec<(String, Channels)> = Vec::new();
        for (trigger, guest) in &self.triggers {
            let permits = match slots.iter().find(|(c, _)| *c == trigger.component) {
                Some((_, s)) => s.clone(),
                None => {
                    let s = Arc::new(Semaphore::new(
                        guest.limits().max_concurrent_requests.max(1),
                    ));
                    slots.push((trigger.component.clone(), s.clone()));
                    s
                }
            };
            let invoker = Arc::new(Invoker {
                app: self.app.clone(),
                incarnation: self.incarnation,
                trigger: trigger.id.as_str().into(),
                kind: trigger.source.kind(),
                component: trigger.component.as_str().into(),
                guest: guest.clone(),
                permits,
                sequence: AtomicU64::new(0),
                metrics: metrics.map(|m| m.series(&self.app, &trigger.component, &trigger.id)),
                traces,
            });
            match &trigger.source {
                Source::Redis { address, channel } => {
                    match redis.iter_mut().find(|(a, _)| a == address) {
                        Some((_, channels)) => channels.push((channel.clone(), invoker)),
                        None => redis.push((address.clone(), vec![(channel.clone(), invoker)])),
                    }
                }
                Source::Mqtt { .. } => tasks.push(tokio::spawn(mqtt::run(
                    trigger.source.clone(),
                    self.app.clone(),
                    invoker,
                    stopped.clone(),
                ))),
                Source::Nats { .. } => tasks.push(tokio::spawn(nats::run(
                    trigger.source.clone(),
                    self.app.clone(),
                    invoker,
                    stopped.clone(),
                ))),
                Source::Cron { schedule } => tasks.push(tokio::spawn(cron::run(
                    schedule.clone(),
                    invoker,
                    stopped.clone(),
                ))),
            }
        }
        // One connection per address, as Spin's Redis trigger makes.
        for (address, channels) in redis {
            tasks.push(tokio::spawn(redis::run(address, channels, stopped.clone())));
        }
        Running { stop, tasks }
    }
}

/// The channels of one Redis address, each with the trigger it runs.
pub(crate) type Channels = Vec<(String, Arc<Invoker>)>;

/// Started triggers. Dropping it stops them at once; [`Running::stop`]
/// lets invocations under way finish first.
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops taking events at once; the future returned waits for the
    /// invocations under way (each bounded by its component's timeout).
    pub fn stop(mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        async move {
            for task in tasks {
                let _ = task.await;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs one trigger's events on its guest.
pub(crate) struct Invoker {
    app: Arc<str>,
    incarnation: u64,
    trigger: Arc<str>,
    kind: &'static str,
    component: Arc<str>,
    guest: Arc<Guest>,
    /// The component's concurrency limit.
    permits: Arc<Semaphore>,
    /// Numbers this trigger's events for their message ids.
    sequence: AtomicU64,
    metrics: Option<metrics::Series>,
    traces: bool,
}

impl Invoker {
    /// Waits for a free slot, then runs `event` in a task of its own, so the
    /// source goes on to its next event. The task ends when the guest does.
    pub(crate) async fn dispatch(self: &Arc<Self>, event: Event, tasks: &mut Invocations) {
        self.dispatch_then(event, None, tasks, |_| async {}).await;
    }

    /// [`dispatch`](Self::dispatch), then `after` with how the guest
    /// fared (its failure, for people), in the same task and slot. `id`
    /// names the message (else the trigger numbers it).
    pub(crate) async fn dispatch_then<F, Fut>(
        self: &Arc<Self>,
        event: Event,
        id: Option<String>,
        tasks: &mut Invocations,
        after: F,
    ) where
        F: FnOnce(Result<(), String>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let id = id.unwrap_or_else(|| {
            format!(
                "{}-{}",
                self.trigger,
                self.sequence.fetch_add(1, Ordering::Relaxed) + 1
            )
        });
        let this = self.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let outcome = this.invoke(event, id).await;
            after(outcome).await;
        });
    }

    /// Runs one event; its failure, for people.
    async fn invoke(&self, event: Event, message_id: String) -> Result<(), String> {
        let log = RequestLog {
            app: self.app.clone(),
            incarnation: self.incarnation,
            route: format!("{}:{}", self.kind, self.trigger).into(),
            request_id: message_id.as_str().into(),
            traceparent: None,
            chain_depth: 0,
        };
        let span = self.traces.then(|| metrics::span(self, &message_id));
        let stats = Arc::new(RequestStats::default());
        let started = Instant::now();
        let result = self
            .guest
            .invoke(event, Some(&log), Some(stats.clone()))
            .await;
        let took = started.elapsed();
        let failure = result.as_ref().err().map(|e| failure_kind(e, &stats));
        if let Some(series) = &self.metrics {
            series.record(took, failure, &stats);
        }
        if let Some(span) = span {
            metrics::end_span(span, failure, result.as_ref().err());
        }
        match result {
            Ok(()) => {
                tracing::debug!(
                target: "ferry::trigger",
                app = &*self.app,
                component = &*self.component,
                trigger = &*self.trigger,
                message_id = message_id.as_str(),
                took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                "handled"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                target: "ferry::trigger",
                app = &*self.app,
                component = &*self.component,
                trigger = &*self.trigger,
                message_id = message_id.as_str(),
                kind = failure.unwrap_or("trap"),
                took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                "the {} trigger's invocation failed: {e}",
                self.kind
                );
                Err(e.to_string())
            }
        }
    }
}

/// A source's invocations under way: waited for when it stops.
pub(crate) type Invocations = tokio::task::JoinSet<()>;

/// What failed, as the `kind` label says it (the server's words).
fn failure_kind(error: &GuestError, stats: &RequestStats) -> &'static str {
    match error.kind() {
        "trap" if stats.memory_denied() => "out_of_memory",
        kind => kind,
    }
}

/// Whether a source is up (subscribed, consuming, scheduled), as its
/// triggers' `connected` gauges count it: each source adds one while it is
/// up, so an old and a new version's sources overlapping in a swap never
/// undo each other.
pub(crate) struct Link {
    series: Vec<metrics::Series>,
    up: bool,
}

impl Link {
    pub(crate) fn new<'a>(invokers: impl IntoIterator<Item = &'a Arc<Invoker>>) -> Self {
        Self {
            series: invokers
                .into_iter()
                .filter_map(|i| i.metrics.clone())
                .collect(),
            up: false,
        }
    }

    pub(crate) fn set(&mut self, up: bool) {
        if up != self.up {
            self.up = up;
            for series in &self.series {
                series.connected(up);
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// When a source reconnects: at once the first time, then after a backoff
/// that grows while connections keep failing or closing before any event
/// came through (a server that accepts and hangs up is not hammered).
pub(crate) struct Reconnect {
    attempt: u32,
}

impl Reconnect {
    pub(crate) fn new() -> Self {
        Self { attempt: 0 }
    }

    /// How long to wait before the next try; counts the try.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = match self.attempt {
            0 => Duration::ZERO,
            n => backoff(n - 1),
        };
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// An event came through: the connection works.
    pub(crate) fn worked(&mut self) {
        self.attempt = 0;
    }
}

/// The addresses `host:port` resolves to, refused if any reaches a
/// listener no guest may connect to (the admin API's): a trigger connects
/// on its app's behalf, so where it connects is held to the same rule.
pub(crate) async fn checked_addrs(
    guest: &Guest,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, String> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if let Some((addr, listener)) = guest.forbidden_listener(&addrs) {
        return Err(format!(
            "{host}:{port} is {addr}, which reaches this host's admin listener ({listener}); no app may connect to it"
        ));
    }
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok(addrs)
}

/// A hash of `text` stable across builds and processes (FNV-1a; std's
/// hasher is not promised to be), for names a server keeps between runs:
/// durable consumers, MQTT client ids.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How long to wait before the `attempt`th reconnection (from 0): 100 ms
/// doubling to 30 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(9))).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
