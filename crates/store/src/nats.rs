//! NATS JetStream as Ferry uses it: one connection per process, and the
//! buckets (key-value and object stores) created the one way that keeps
//! reads honest.
//!
//! A bucket made by `async-nats`' own `create_key_value` or
//! `create_object_store` lets any replica answer reads (JetStream's "direct
//! get"); a replica cut off from the majority then answers "not found" for
//! a key the majority has committed. Ferry's buckets are created with
//! direct gets off, so every read goes to the stream's leader, which only a
//! majority elects.
//!
//! Leader elections take 5–15 s on a small machine, so the JetStream
//! requests made here wait up to [`ELECTION`] before they give up.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

/// How long a JetStream request may wait for an answer: long enough to
/// ride out a leader election.
pub const ELECTION: Duration = Duration::from_secs(20);

/// Connects to the NATS servers `urls` (`nats://host:port`, comma
/// separated), as `name`. It returns at once even when none answers: the
/// client keeps trying in the background, forever, and
/// [`async_nats::Client::connection_state`] says whether it is connected.
/// `events` hears of every connection and disconnection.
pub async fn connect(
    urls: &str,
    name: &str,
    events: impl Fn(async_nats::Event) + Send + Sync + 'static,
) -> anyhow_free::Result<async_nats::Client> {
    let addresses: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse()
                .map_err(|e| format!("`{u}` is not a NATS server address: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if addresses.is_empty() {
        return Err("no NATS server address given".into());
    }
    let events = std::sync::Arc::new(events);
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        // A server gone silent (a partition, not a closed socket) is noticed
        // within two pings.
        .ping_interval(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            // Quickly at first (a restarted server is back within a
            // second or two), then no more than once a second.
            Duration::from_millis((100 * attempts as u64).min(1000))
        })
        .event_callback(move |event| {
            let events = events.clone();
            async move { events(event) }
        })
        .connect(addresses)
        .await
        .map_err(|e| format!("connecting to {urls}: {e}").into())
}

/// A JetStream context on `client` whose requests wait out an election.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    let mut context = jetstream::new(client);
    context.set_timeout(ELECTION);
    context
}

/// How one of Ferry's key-value buckets is made.
#[derive(Debug, Clone)]
pub struct BucketConfig {
    pub bucket: String,
    pub replicas: usize,
    /// Entries older than this go (none: kept).
    pub max_age: Option<Duration>,
    /// The largest value, in bytes.
    pub max_value_size: i32,
}

/// The key-value bucket `config.bucket`, created if it is not there, with
/// reads from the leader only (see the module documentation). An existing
/// bucket is taken as it is.
pub async fn key_value(
    js: &jetstream::Context,
    config: &BucketConfig,
) -> anyhow_free::Result<kv::Store> {
    let name = format!("KV_{}", config.bucket);
    let wanted = stream::Config {
        name: name.clone(),
        subjects: vec![format!("$KV.{}.>", config.bucket)],
        // One value per key: the revision is what compare-and-swap checks.
        max_messages_per_subject: 1,
        max_age: config.max_age.unwrap_or_default(),
        max_message_size: config.max_value_size,
        storage: stream::StorageType::File,
        num_replicas: config.replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        duplicate_window: config.max_age.map_or(Duration::from_secs(120), |age| {
            age.min(Duration::from_secs(120))
        }),
        ..Default::default()
    };
    js.get_or_create_stream(wanted)
        .await
        .map_err(|e| format!("creating the bucket `{}`: {e}", config.bucket))?;
    js.get_key_value(&config.bucket)
        .await
        .map_err(|e| format!("opening the bucket `{}`: {e}", config.bucket).into())
}

/// The object store `bucket`, created if it is not there, with reads from
/// the leader only.
pub async fn objects(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> anyhow_free::Result<object_store::ObjectStore> {
    let wanted = stream::Config {
        name: format!("OBJ_{bucket}"),
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.get_or_create_stream(wanted)
        .await
        .map_err(|e| format!("creating the object store `{bucket}`: {e}"))?;
    js.get_object_store(bucket)
        .await
        .map_err(|e| format!("opening the object store `{bucket}`: {e}").into())
}

/// Whether `error`, from a key-value `update` or `create`, says the key's
/// revision was not the one expected (another writer got there first).
pub fn is_wrong_revision(error: &kv::UpdateError) -> bool {
    error.kind() == kv::UpdateErrorKind::WrongLastRevision
}

/// This crate has no `anyhow`: plain boxed errors, with the message said.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
