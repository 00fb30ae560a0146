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

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use crate::{Error, KeyValue, check_entry};

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
    let stream = ensure_stream(js, wanted)
        .await
        .map_err(|e| format!("creating the bucket `{}`: {e}", config.bucket))?;
    if stream.cached_info().config.allow_direct {
        return Err(format!(
            "the bucket `{}` exists with direct gets on (any replica may answer a read, a stale one included): Ferry makes its buckets with them off",
            config.bucket
        )
        .into());
    }
    until_led(stream).await?;
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
    let stream = ensure_stream(js, wanted)
        .await
        .map_err(|e| format!("creating the object store `{bucket}`: {e}"))?;
    until_led(stream).await?;
    js.get_object_store(bucket)
        .await
        .map_err(|e| format!("opening the object store `{bucket}`: {e}").into())
}

/// The stream `wanted`, created if it is not there. Several nodes may
/// create it at once, and an answer to one of them can go missing: each try
/// is awaited briefly and tried again until [`ELECTION`] has passed.
async fn ensure_stream(
    js: &jetstream::Context,
    wanted: stream::Config,
) -> anyhow_free::Result<stream::Stream> {
    let deadline = tokio::time::Instant::now() + ELECTION;
    loop {
        let tried = tokio::time::timeout(
            Duration::from_secs(2),
            js.get_or_create_stream(wanted.clone()),
        )
        .await;
        let failure = match tried {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(failure.into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `stream` has a leader. A stream just created (by this node
/// or another) elects one first, and a read sent before that is dropped,
/// not queued: it would wait out the whole [`ELECTION`] timeout.
async fn until_led(mut stream: stream::Stream) -> anyhow_free::Result<()> {
    let deadline = tokio::time::Instant::now() + ELECTION;
    loop {
        // Asked again and again, each answer awaited briefly: a stream
        // without a leader may not answer at all.
        let info = tokio::time::timeout(Duration::from_secs(1), stream.info()).await;
        let led = match info {
            Ok(Ok(info)) => info
                .cluster
                .as_ref()
                .is_none_or(|cluster| cluster.leader.is_some()),
            _ => false,
        };
        if led {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the stream `{}` has no leader after {} s",
                stream.cached_info().config.name,
                ELECTION.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long one read waits for a stream's leader before it is asked again.
const READ_TRY: Duration = Duration::from_secs(3);

/// Asks `read` of a stream's leader, again whenever an answer does not
/// come within [`READ_TRY`], until [`ELECTION`] has passed. On a loaded
/// machine a request to a leader was seen to go unanswered (dropped while
/// the leader settled) and would otherwise wait out the whole timeout.
/// Only for reads, which are idempotent: a write is never asked twice.
pub async fn read_from_leader<T, E, Fut>(
    what: &str,
    mut read: impl FnMut() -> Fut,
) -> anyhow_free::Result<T>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + ELECTION;
    loop {
        match tokio::time::timeout(READ_TRY, read()).await {
            Ok(result) => return result.map_err(|e| format!("{what}: {e}").into()),
            Err(_) if tokio::time::Instant::now() < deadline => {}
            Err(_) => {
                return Err(format!(
                    "{what}: the stream's leader did not answer within {} s",
                    ELECTION.as_secs()
                )
                .into());
            }
        }
    }
}

/// The keys of `store` that match `filter` (a subject pattern over keys:
/// `*` is every key without a dot), as the bucket's leader lists its
/// stream's subjects. No consumer is made: a consumer is placed on a server
/// the cluster picks, which may be one cut off from it, and its creation
/// then never answers; this listing works whenever a read does. A key
/// whose last entry deleted it is listed too.
pub async fn leader_keys(store: &kv::Store, filter: &str) -> anyhow_free::Result<Vec<String>> {
    use futures_util::TryStreamExt as _;
    let pattern = format!("{}{filter}", store.prefix);
    read_from_leader("listing a bucket's keys", || async {
        let subjects = store.stream.info_with_subjects(&pattern).await?;
        let subjects: Vec<(String, usize)> = subjects.try_collect().await?;
        Ok::<_, stream::InfoError>(
            subjects
                .into_iter()
                .filter_map(|(subject, _)| subject.strip_prefix(&store.prefix).map(str::to_owned))
                .collect(),
        )
    })
    .await
}

/// The bytes of the object `info` of the object store `bucket`, read chunk
/// by chunk from the bucket's leader (no consumer is made; see
/// [`leader_keys`]). Refused beyond `limit` bytes, whatever `info` says of
/// its size.
pub async fn read_object(
    js: &jetstream::Context,
    bucket: &str,
    info: &object_store::ObjectInfo,
    limit: usize,
) -> anyhow_free::Result<Vec<u8>> {
    let stream = js.get_stream_no_info(format!("OBJ_{bucket}")).await?;
    let chunks = format!("$O.{bucket}.C.{}", info.nuid);
    let mut bytes = Vec::with_capacity(info.size.min(limit).min(16 << 20));
    let mut next = 1;
    for _ in 0..info.chunks {
        let chunk = read_from_leader("reading an object", || {
            stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(chunks.clone())
                .send()
        })
        .await?;
        if bytes.len() + chunk.payload.len() > limit {
            return Err(format!("the object `{}` is over {limit} bytes", info.name).into());
        }
        bytes.extend_from_slice(&chunk.payload);
        next = chunk.sequence + 1;
    }
    Ok(bytes)
}

/// Whether `error`, from a key-value `update` or `create`, says the key's
/// revision was not the one expected (another writer got there first).
///
/// nats-server 2.12 answers a write that expected the key absent (revision
/// 0) with error code 10164, "wrong last sequence", which async-nats 0.52
/// does not map to `WrongLastRevision`: it is recognised by its message.
pub fn is_wrong_revision(error: &kv::UpdateError) -> bool {
    if error.kind() == kv::UpdateErrorKind::WrongLastRevision {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.to_string().contains("wrong last sequence") {
            return true;
        }
        source = e.source();
    }
    false
}

/// Runs the write `write` again while the server it went to had not yet
/// heard of the stream (the publish had no responders, so nothing was
/// written): a bucket just created by this node or another is led before
/// every server routes its subjects, and on a loaded machine the gap was
/// seen to reach a write. Gives up after [`ELECTION`].
pub async fn routed<T, E, Fut>(mut write: impl FnMut() -> Fut) -> Result<T, E>
where
    E: std::error::Error + 'static,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + ELECTION;
    loop {
        match write().await {
            Err(e) if is_unrouted(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
}

/// A read of a bucket (an idempotent request), asked again while the
/// server answering does not route the bucket's stream yet: what
/// [`routed`] does for writes, for the same gap after a bucket is made
/// (which lasts well under a second). Gives up after 3 s: a server cut off
/// from the stream's leader answers the same, and its caller is not to
/// wait long for the answer.
pub async fn routed_read<T, E, Fut>(mut read: impl FnMut() -> Fut) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match read().await {
            Err(e) if unrouted_text(&e.to_string()) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
}

/// Whether an error's text says no stream was found for a bucket: how the
/// client reports a read that met the gap (its kinds differ by request).
fn unrouted_text(text: &str) -> bool {
    text.contains("no stream found") || text.contains("stream not found")
}

/// Whether `error` says a publish found no stream for its subject.
fn is_unrouted(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<jetstream::context::PublishError>()
            .is_some_and(|p| p.kind() == jetstream::context::PublishErrorKind::StreamNotFound)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// This crate has no `anyhow`: plain boxed errors, with the message said.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

/// Guest key-value stores on NATS JetStream (`type = "nats"` in
/// runtime-config.toml, and an app's `default` store on a cluster): one
/// bucket per app and label, named by a hash of both, with one copy on each
/// of up to three servers and reads from the bucket's leader.
///
/// What a guest may rely on: each write is acknowledged only once a
/// majority of the bucket's servers has it on disk; a read sees every write
/// acknowledged before it (the leader answers); writes to one key are
/// ordered; `increment` and `compare_and_swap` are atomic on their key (a
/// compare-and-swap on the key's revision, retried on conflict). What it
/// may not: `set_many` and `delete_many` are not atomic across keys (each
/// key is written on its own, in order; a failure part-way leaves the
/// earlier ones done), and nothing spans two keys. Keys are stored encoded
/// (NATS takes only `[-/_=.a-zA-Z0-9]`), so a key may be at most
/// [`MAX_NATS_KEY_BYTES`]; a value at most the servers' largest message
/// (1 MiB unless `max_payload` says otherwise).
#[derive(Clone)]
pub struct NatsDatabase {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    replicas: usize,
}

/// The longest key a NATS store takes, in bytes: encoded, it must fit a
/// NATS subject.
pub const MAX_NATS_KEY_BYTES: usize = 2048;

impl NatsDatabase {
    /// Guest stores on the servers `client` is connected to, each bucket
    /// kept `replicas` times.
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        Self {
            jetstream: self::jetstream(client.clone()),
            client,
            replicas: replicas.max(1),
        }
    }

    /// Connects to `urls` (comma separated) for the stores on them; each
    /// bucket is kept on up to three of the servers named.
    pub async fn connect(urls: &str) -> Result<Self, Error> {
        let replicas = urls
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .count()
            .min(3);
        let client = connect(urls, "ferry key-value", |_| {})
            .await
            .map_err(|e| Error::Backend(e.to_string()))?;
        // A store nobody can reach is said at load, not at the first
        // request.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Backend(format!(
                    "no NATS server of {urls} answered within 5 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self::new(client, replicas))
    }

    /// The store `label` of app `app`: its bucket is made on first use.
    pub fn store(&self, app: &str, label: &str) -> Arc<dyn KeyValue> {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(label);
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        Arc::new(NatsStore {
            database: self.clone(),
            bucket: format!("{}{hex}", Self::app_prefix(app)),
            store: tokio::sync::OnceCell::new(),
        })
    }

    /// What the names of `app`'s buckets start with: its name's length
    /// first, so that no app's prefix is another's (`a_` and `a_b_` would
    /// be; `1_a_` and `3_a_b_` are not). App names are what a bucket name
    /// may hold (letters, digits, `-`, `_`); anything else is hashed.
    fn app_prefix(app: &str) -> String {
        let plain = app
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if plain && app.len() <= 64 {
            format!("ferry_kv_{}_{app}_", app.len())
        } else {
            use sha2::Digest as _;
            let hash = sha2::Sha256::digest(app);
            let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("ferry_kv_h_{hex}_")
        }
    }

    /// Removes every store of `app`, with its data: an app deleted and
    /// deployed again under its name starts empty.
    pub async fn remove_app(&self, app: &str) -> Result<(), Error> {
        use futures_util::StreamExt as _;
        let prefix = format!("KV_{}", Self::app_prefix(app));
        let mut names = self.jetstream.stream_names();
        let mut doomed = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(backend)?;
            if name.starts_with(&prefix) {
                doomed.push(name);
            }
        }
        for name in doomed {
            self.jetstream.delete_stream(&name).await.map_err(backend)?;
        }
        Ok(())
    }
}

struct NatsStore {
    database: NatsDatabase,
    bucket: String,
    store: tokio::sync::OnceCell<kv::Store>,
}

/// How many times a compare-and-swap loop reads again after losing to
/// another writer before it gives up.
const RETRIES: usize = 1000;

impl NatsStore {
    async fn bucket(&self) -> Result<&kv::Store, Error> {
        // Out of reach: said at once, not after a request's timeout.
        if self.database.client.connection_state() != async_nats::connection::State::Connected {
            return Err(Error::Backend(
                "no NATS server is connected (the store is out of reach)".into(),
            ));
        }
        self.store
            .get_or_try_init(|| async {
                key_value(
                    &self.database.jetstream,
                    &BucketConfig {
                        bucket: self.bucket.clone(),
                        replicas: self.database.replicas,
                        max_age: None,
                        max_value_size: -1,
                    },
                )
                .await
                .map_err(|e| Error::Backend(e.to_string()))
            })
            .await
    }

    /// The key as NATS takes it: `k` and the key in unpadded base64url.
    fn encode(key: &str) -> Result<String, Error> {
        check_entry(key, None)?;
        if key.len() > MAX_NATS_KEY_BYTES {
            return Err(Error::Backend(format!(
                "the key is {} bytes; a NATS store takes keys of at most {MAX_NATS_KEY_BYTES}",
                key.len()
            )));
        }
        Ok(format!("k{}", base64url(key.as_bytes())))
    }

    fn decode(encoded: &str) -> Option<String> {
        String::from_utf8(unbase64url(encoded.strip_prefix('k')?)?).ok()
    }

    async fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        check_entry("", Some(value))?;
        // Connected once the bucket is there: the server has said its limit.
        self.bucket().await?;
        // Headers and the subject ride in the same message.
        let max_payload = self.database.client.server_info().max_payload;
        let limit = max_payload.saturating_sub(8192);
        if max_payload > 0 && value.len() > limit {
            return Err(Error::Backend(format!(
                "the value is {} bytes; this NATS store takes values of at most {limit} bytes (the servers' max_payload, less room for the key)",
                value.len()
            )));
        }
        Ok(())
    }

    /// The value of the encoded key and its revision (0: never written).
    async fn entry(&self, encoded: &str) -> Result<(Option<Vec<u8>>, u64), Error> {
        let bucket = self.bucket().await?;
        let entry = read_from_leader("reading a key", || bucket.entry(encoded))
            .await
            .map_err(backend)?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => (Some(e.value.to_vec()), e.revision),
            Some(e) => (None, e.revision),
            None => (None, 0),
        })
    }

    /// Writes the encoded key if its revision is still `revision`; false if
    /// another writer changed it first.
    async fn update(&self, encoded: &str, value: Vec<u8>, revision: u64) -> Result<bool, Error> {
        let bucket = self.bucket().await?;
        let value = bytes::Bytes::from(value);
        match routed(|| bucket.update(encoded, value.clone(), revision)).await {
            Ok(_) => Ok(true),
            Err(e) if is_wrong_revision(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

#[async_trait::async_trait]
impl KeyValue for NatsStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.entry(&Self::encode(key)?).await?.0)
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.get(&key).await?;
            values.push((key, value));
        }
        Ok(values)
    }

    async fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.get(key).await?.is_some())
    }

    async fn keys(&self) -> Result<Vec<String>, Error> {
        use futures_util::StreamExt as _;
        let mut listed = self.bucket().await?.keys().await.map_err(backend)?;
        let mut keys = Vec::new();
        while let Some(key) = listed.next().await {
            if let Some(key) = Self::decode(&key.map_err(backend)?) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn keys_page(&self, after: Option<String>, limit: usize) -> Result<Vec<String>, Error> {
        let keys = self.keys().await?;
        Ok(keys
            .into_iter()
            .filter(|k| after.as_ref().is_none_or(|after| k > after))
            .take(limit)
            .collect())
    }

    /// Each entry on its own, in order (see [`NatsDatabase`]).
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        let mut encoded = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            self.check_value(&value).await?;
            encoded.push((Self::encode(&key)?, value));
        }
        let bucket = self.bucket().await?;
        for (key, value) in encoded {
            let value = bytes::Bytes::from(value);
            routed(|| bucket.put(&key, value.clone()))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        let encoded = keys
            .iter()
            .map(|k| Self::encode(k))
            .collect::<Result<Vec<_>, _>>()?;
        let bucket = self.bucket().await?;
        for key in encoded {
            routed(|| bucket.delete(&key)).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, Error> {
        let encoded = Self::encode(&key)?;
        for _ in 0..RETRIES {
            let (value, revision) = self.entry(&encoded).await?;
            let current = match value {
                None => 0,
                Some(bytes) => i64::from_le_bytes(
                    bytes
                        .try_into()
                        .map_err(|_| Error::NotACounter(key.clone()))?,
                ),
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| Error::Overflow(key.clone()))?;
            if self
                .update(&encoded, next.to_le_bytes().to_vec(), revision)
                .await?
            {
                return Ok(next);
            }
        }
        Err(Error::Backend(format!(
            "incrementing `{key}` lost to other writers {RETRIES} times in a row"
        )))
    }

    async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, Error> {
        self.check_value(&new).await?;
        let encoded = Self::encode(&key)?;
        for _ in 0..RETRIES {
            let (value, revision) = self.entry(&encoded).await?;
            if value != expected {
                return Ok(false);
            }
            // Lost only to a writer that left the value as expected: the
            // compare still holds, so try again on the new revision.
            if self.update(&encoded, new.clone(), revision).await? {
                return Ok(true);
            }
        }
        Err(Error::Backend(format!(
            "swapping `{key}` lost to other writers {RETRIES} times in a row"
        )))
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in unpadded base64url.
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(BASE64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// What [`base64url`] encoded, if `text` is such an encoding.
fn unbase64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let value = BASE64URL.iter().position(|b| b == c)? as u32;
            n |= value << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_reversibly_in_the_nats_alphabet() {
        for key in [
            "",
            "a",
            "ab",
            "abc",
            "héllo wörld",
            "y*",
            "a.b>c",
            "\u{0}\u{7f}",
        ] {
            let encoded = NatsStore::encode(key).unwrap();
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{encoded}"
            );
            assert_eq!(NatsStore::decode(&encoded).as_deref(), Some(key));
        }
        assert_eq!(base64url(b"hello"), "aGVsbG8");
        assert_eq!(NatsStore::decode("kx"), None);
    }
}
