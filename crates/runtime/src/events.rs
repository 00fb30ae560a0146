//! Running a component's event entry point — a Redis message, a cron tick —
//! in a fresh sandbox.
//!
//! An event guest links exactly what an HTTP guest links (WASI, outbound
//! HTTP, key-value, SQLite, variables, and Spin's other interfaces answering
//! "not available") and gets the same per-invocation sandbox: a new store
//! and instance for each event, the component's memory limit, its
//! `request_timeout` around instantiation and the call, its grants and
//! nothing else. Only the export called differs (`wit/events`):
//!
//! - `fermyon:spin/inbound-redis` `handle-message(payload)`, what spin-sdk
//!   2.x–5.x `#[redis_component]` exports, or its async successor
//!   `spin:redis/inbound-redis@3.0.0` (spin-sdk 6+ `#[redis_subscriber]`,
//!   a WASI 0.3 guest on the concurrent engine, called inside
//!   `run_concurrent`);
//! - `handle-cron-event(metadata)`, a function of the world itself, what the
//!   cron plugin's `#[cron_component]` exports;
//! - `handle-message(payload, metadata)`, likewise, what the MQTT plugin's
//!   `#[mqtt_component]` exports (`spin:mqtt-trigger`, with the topic), or
//!   the same function async, as the plugin's 0.8 release exports it
//!   (`spin:mqtt-trigger@3.0.0`: a WASI 0.3 guest, on the concurrent
//!   engine).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::http::{HttpState, new_store};
use crate::sandbox::{RequestLog, RequestStats, Sandbox};
use crate::{GuestError, Limits};

mod redis_bindings {
    wasmtime::component::bindgen!({
        path: "wit/events",
        world: "ferry:events/redis-trigger",
        imports: { default: async },
        exports: { default: async },
    });
}

mod redis3_bindings {
    wasmtime::component::bindgen!({
        path: "wit/redis",
        world: "ferry:redis/redis-trigger",
        imports: { default: async },
        exports: { default: async | store },
    });
}

/// The async Redis entry point's name.
pub(crate) const INBOUND_REDIS_3: &str = "spin:redis/inbound-redis@3.0.0";

mod cron_bindings {
    wasmtime::component::bindgen!({
        path: "wit/events/deps/spin-cron",
        world: "fermyon:spin-cron/spin-cron",
        imports: { default: async },
        exports: { default: async },
    });
}

mod mqtt_bindings {
    wasmtime::component::bindgen!({
        path: "wit/events/deps/spin-mqtt-trigger",
        world: "spin:mqtt-trigger/spin-mqtt",
        imports: { default: async },
        exports: { default: async },
    });
}

mod mqtt3_bindings {
    wasmtime::component::bindgen!({
        path: "wit/events/deps/spin-mqtt-trigger-3",
        world: "spin:mqtt-trigger/spin-mqtt@3.0.0",
        imports: { default: async },
        exports: { default: async | store },
    });
}

/// The export an event trigger calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventExport {
    /// `fermyon:spin/inbound-redis`.
    InboundRedis,
    /// `handle-cron-event`.
    Cron,
    /// `handle-message` of `spin:mqtt-trigger`.
    Mqtt,
}

impl EventExport {
    /// The export as a component names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::InboundRedis => "fermyon:spin/inbound-redis",
            Self::Cron => "handle-cron-event",
            Self::Mqtt => "handle-message",
        }
    }

    /// The trigger type that calls it.
    pub fn trigger(self) -> &'static str {
        match self {
            Self::InboundRedis => "redis` or `nats",
            Self::Cron => "cron",
            Self::Mqtt => "mqtt",
        }
    }
}

/// One event for a guest.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message: its payload, and the topic (or channel, or subject) it
    /// came on, which only the MQTT entry point is told.
    Message {
        payload: bytes::Bytes,
        topic: String,
    },
    /// A cron tick, at `timestamp` (seconds since the Unix epoch).
    Tick { timestamp: u64 },
}

/// A component ready to instantiate, with the entry point it exports.
#[derive(Clone)]
pub(crate) enum EventPre {
    InboundRedis(redis_bindings::RedisTriggerPre<HttpState>),
    InboundRedis3(redis3_bindings::RedisTriggerPre<HttpState>),
    Cron(cron_bindings::SpinCronPre<HttpState>),
    Mqtt(mqtt_bindings::SpinMqttPre<HttpState>),
    Mqtt3(mqtt3_bindings::SpinMqttPre<HttpState>),
}

impl EventPre {
    /// The export as the component names it.
    pub fn export_name(&self) -> &'static str {
        match self {
            Self::InboundRedis3(_) => INBOUND_REDIS_3,
            other => other.export().name(),
        }
    }

    pub fn export(&self) -> EventExport {
        match self {
            Self::InboundRedis(_) | Self::InboundRedis3(_) => EventExport::InboundRedis,
            Self::Cron(_) => EventExport::Cron,
            Self::Mqtt(_) | Self::Mqtt3(_) => EventExport::Mqtt,
        }
    }
}

/// Resolves `component`'s imports once and finds the export `export`,
/// with an error naming what the component exports instead.
pub(crate) fn pre(
    linker: &Linker<HttpState>,
    component: &Component,
    exports: &[String],
    export: EventExport,
) -> anyhow::Result<EventPre> {
    let has = |name: &str| exports.iter().any(|e| e == name);
    if export == EventExport::InboundRedis && has(INBOUND_REDIS_3) {
        anyhow::ensure!(
            !has(export.name()),
            "the component exports both {} and {INBOUND_REDIS_3}: a Redis trigger calls one",
            export.name()
        );
        return Ok(EventPre::InboundRedis3(
            redis3_bindings::RedisTriggerPre::new(linker.instantiate_pre(component)?)?,
        ));
    }
    if !has(export.name()) {
        anyhow::bail!(
            "the component does not export {} (it exports {}); a `{}` trigger calls that export",
            export.name(),
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            },
            export.trigger()
        );
    }
    let instance_pre = linker.instantiate_pre(component)?;
    if export == EventExport::Mqtt && exports_async(linker.engine(), component, export.name()) {
        return Ok(EventPre::Mqtt3(mqtt3_bindings::SpinMqttPre::new(
            instance_pre,
        )?));
    }
    Ok(match export {
        EventExport::InboundRedis => {
            EventPre::InboundRedis(redis_bindings::RedisTriggerPre::new(instance_pre)?)
        }
        EventExport::Cron => EventPre::Cron(cron_bindings::SpinCronPre::new(instance_pre)?),
        EventExport::Mqtt => EventPre::Mqtt(mqtt_bindings::SpinMqttPre::new(instance_pre)?),
    })
}

/// Whether `component` exports `name` as an async function.
pub(crate) fn exports_async(engine: &Engine, component: &Component, name: &str) -> bool {
    let ty = component.component_type();
    matches!(
        ty.get_export(engine, name).map(|e| e.ty),
        Some(wasmtime::component::types::ComponentItem::ComponentFunc(f)) if f.async_()
    )
}

/// The instance just made (since `started`), noted in `stats`; a failure
/// to make it is an instantiation error.
fn instantiated<T>(
    made: wasmtime::Result<T>,
    started: Instant,
    stats: Option<&RequestStats>,
) -> Result<T, GuestError> {
    let made = made.map_err(|e| GuestError::from_instantiation(e.into()))?;
    if let Some(stats) = stats {
        stats.instantiated(started.elapsed());
    }
    Ok(made)
}

/// Runs `event` through a fresh instance, within the component's timeout.
/// A guest that returns its error value fails with
/// [`GuestError::ErrorCode`], saying which.
pub(crate) async fn invoke(
    engine: &Engine,
    pre: &EventPre,
    sandbox: &Sandbox,
    limits: &Limits,
    event: Event,
    log: Option<&RequestLog>,
    stats: Option<Arc<RequestStats>>,
) -> Result<(), GuestError> {
    let mut store = new_store(engine, sandbox, limits, log, stats.clone())
        .map_err(GuestError::Instantiation)?;
    let pre = pre.clone();
    let run = async move {
        let instantiating = Instant::now();
        let answer: Result<Option<String>, wasmtime::Error> = match (&pre, event) {
            (EventPre::InboundRedis(pre), Event::Message { payload, .. }) => {
                let bindings = instantiated(
                    pre.instantiate_async(&mut store).await,
                    instantiating,
                    stats.as_deref(),
                )?;
                bindings
                    .fermyon_spin_inbound_redis()
                    .call_handle_message(&mut store, &payload.to_vec())
                    .await
                    .map(|answer| {
                        answer.err().map(|e| match e {
                            redis_bindings::fermyon::spin::redis_types::Error::Success => {
                                "`success` (as an error)".to_owned()
                            }
                            redis_bindings::fermyon::spin::redis_types::Error::Error => {
                                "`error`".to_owned()
                            }
                        })
                    })
            }
            (EventPre::Cron(pre), Event::Tick { timestamp }) => {
                let bindings = instantiated(
                    pre.instantiate_async(&mut store).await,
                    instantiating,
                    stats.as_deref(),
                )?;
                let metadata =
                    cron_bindings::fermyon::spin_cron::cron_types::Metadata { timestamp };
                bindings
                    .call_handle_cron_event(&mut store, metadata)
                    .await
                    .map(|answer| {
                        answer.err().map(|e| match e {
                            cron_bindings::fermyon::spin_cron::cron_types::Error::Other(why) => why,
                        })
                    })
            }
            (EventPre::InboundRedis3(pre), Event::Message { payload, .. }) => {
                let bindings = instantiated(
                    pre.instantiate_async(&mut store).await,
                    instantiating,
                    stats.as_deref(),
                )?;
                store
                    .run_concurrent(async move |accessor| {
                        bindings
                            .spin_redis_inbound_redis()
                            .call_handle_message(accessor, payload.to_vec())
                            .await
                    })
                    .await
                    .and_then(|inner| inner)
                    .map(|answer| answer.err().map(|e| format!("{e:?}")))
            }
            (EventPre::Mqtt(pre), Event::Message { payload, topic }) => {
                let bindings = instantiated(
                    pre.instantiate_async(&mut store).await,
                    instantiating,
                    stats.as_deref(),
                )?;
                let metadata =
                    mqtt_bindings::spin::mqtt_trigger::spin_mqtt_types::Metadata { topic };
                bindings
                    .call_handle_message(&mut store, &payload.to_vec(), &metadata)
                    .await
                    .map(|answer| {
                        answer.err().map(|e| match e {
                            mqtt_bindings::spin::mqtt_trigger::spin_mqtt_types::Error::Other(
                                why,
                            ) => why,
                        })
                    })
            }
            (EventPre::Mqtt3(pre), Event::Message { payload, topic }) => {
                let bindings = instantiated(
                    pre.instantiate_async(&mut store).await,
                    instantiating,
                    stats.as_deref(),
                )?;
                let metadata =
                    mqtt3_bindings::spin::mqtt_trigger::spin_mqtt_types::Metadata { topic };
                store
                    .run_concurrent(async move |accessor| {
                        bindings
                            .call_handle_message(accessor, payload.to_vec(), metadata)
                            .await
                    })
                    .await
                    .and_then(|inner| inner)
                    .map(|answer| {
                        answer.err().map(|e| match e {
                            mqtt3_bindings::spin::mqtt_trigger::spin_mqtt_types::Error::Other(
                                why,
                            ) => why,
                        })
                    })
            }
            (pre, event) => {
                return Err(GuestError::BadRequest(format!(
                    "{event:?} is not an event for {}",
                    pre.export().name()
                )));
            }
        };
        match answer {
            Ok(None) => Ok(()),
            Ok(Some(error)) => Err(GuestError::ErrorCode(error)),
            Err(trap) => Err(GuestError::Trap(trap.into())),
        }
    };
    // The store lives in `run`: dropped (memory and all) when the call ends
    // or the timeout cuts it off.
    match tokio::time::timeout(limits.request_timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(GuestError::Timeout(limits.request_timeout)),
    }
}
