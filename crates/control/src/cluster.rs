//! A cluster's desired state: the [`DesiredState`] that several `ferry
//! serve` nodes share through NATS JetStream (`ferry serve --cluster`).
//!
//! ```text
//! bucket ferry_apps (key-value, R3, reads from the leader)
//!   <app>        {"current": 7, "versions": [5, 6, 7]}   changed only by compare-and-swap
//!   <app>.<n>    {"record": …, "variables": …}            written once, by create
//! object store ferry_blobs
//!   <hex>        a bundle's file, named by its sha256, checked on download
//! bucket ferry_nodes (key-value, entries gone 15 s after their last write)
//!   <node>       its heartbeat: what it serves
//! bucket ferry_leases (key-value, entries gone 10 s after their last write)
//!   <app>        the node running the app's one-node triggers (Redis, MQTT,
//!                cron): taken by create, renewed by compare-and-swap
//! ```
//!
//! The app record is the one place an app's fate is decided: a version is
//! added by creating its key (`create` fails if another node took the
//! number) and then listing it in the record, and the serving version is
//! swapped by an update that names the record's revision, so of two nodes
//! deciding at once exactly one wins and the other hears `Changed`. Every
//! change to a record reaches every node through a watch on the bucket
//! ([`Change`]); after a reconnect the node reads everything again
//! ([`Change::Relist`]).
//!
//! Each node keeps a copy of what it serves in its own state directory
//! ([`StateDir`]): blobs, laid-out versions, variables, and which version it
//! serves. Reads fall back to that copy while the cluster is out of reach,
//! so a node cut off (or started while NATS is down) serves on; writes then
//! fail with [`Unreachable`] — at once when no server is connected, after
//! [`ELECTION`] when no JetStream leader answers.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::connection::State;
use async_nats::jetstream::kv;
use async_nats::jetstream::object_store::{InfoErrorKind, ObjectStore};
use bytes::Bytes;
use ferry_api::{Values, digest_hex};
use ferry_store::nats::{self, BucketConfig, ELECTION};
use serde::{Deserialize, Serialize};

use crate::desired::{
    BlobError, Change, DesiredState, Heartbeat, SwapError, Unreachable, VersionRecord,
};
use crate::state::{StateDir, now_ms};

/// The bucket of app records and versions.
const APPS: &str = "ferry_apps";
/// The object store of blobs.
const BLOBS: &str = "ferry_blobs";
/// The bucket of nodes' heartbeats.
const NODES: &str = "ferry_nodes";
/// The bucket of leases on apps' one-node triggers: `<app>` holds the name
/// of the node that runs them.
const LEASES: &str = "ferry_leases";

/// How long a lease lasts unrenewed: the servers let it go after this, by
/// their clock, and another node may take it.
pub const LEASE_LIFE: Duration = Duration::from_secs(10);
/// How long one round of renewals may take: a node that has not renewed
/// within it no longer counts on its leases, well before
/// [`LEASE_LIFE`] lets another node take them.
pub const LEASE_ROUND: Duration = Duration::from_secs(2);

/// How long a node's heartbeat counts: a node silent for longer is no
/// longer listed.
pub const HEARTBEAT_LIFE: Duration = Duration::from_secs(15);

/// How long a read waits for the cluster before this node's copy answers.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// How long a write waits for a connection to the cluster before it
/// answers that the cluster is unreachable.
const CONNECTING: Duration = Duration::from_secs(3);

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The NATS servers, `nats://host:port`, comma separated.
    pub urls: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Copies JetStream keeps of each bucket (at most the servers it has).
    pub replicas: usize,
}

/// What a node's bucket handles are, once JetStream answered.
struct Buckets {
    apps: kv::Store,
    blobs: ObjectStore,
    nodes: kv::Store,
    leases: kv::Store,
}

/// An app's record: its kept versions and the one that serves. A removed
/// app's record stays, marked removed, so that a version number is never
/// given twice under one name: a node that missed the removal and the next
/// deploy can tell the new version 3 from the old one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppRecord {
    current: Option<u64>,
    versions: Vec<u64>,
    /// The highest version number ever given under this name.
    #[serde(default)]
    last: u64,
    #[serde(default)]
    removed: bool,
}

impl AppRecord {
    /// The record, if it is an app's (not a removed one's).
    fn live(self) -> Option<Self> {
        (!self.removed).then_some(self)
    }
}

/// One version as the cluster stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredVersion {
    record: VersionRecord,
    #[serde(default)]
    variables: Values,
}

/// The desired state of a cluster (see the module documentation).
pub struct ClusterState {
    local: StateDir,
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    buckets: tokio::sync::OnceCell<Buckets>,
    tokio: tokio::runtime::Handle,
    node: String,
    /// What this node writes in the leases it holds: its name and this
    /// process's own random id, so that two nodes given one name (or a
    /// node restarted) never take each other's lease for their own.
    lease_owner: String,
    urls: String,
    replicas: usize,
    changes: tokio::sync::broadcast::Sender<Change>,
    /// The apps' `default` key-value stores, on the same connection.
    guest_stores: ferry_store::NatsDatabase,
}

impl ClusterState {
    /// Joins the cluster at `options.urls`, keeping this node's copy in
    /// `local`. Returns at once even if no server answers yet: the
    /// connection, the buckets and the watch come when one does. Its
    /// methods are then called from threads outside the runtime it was
    /// joined on, which must go on being driven.
    pub async fn join(options: &ClusterOptions, local: StateDir) -> anyhow::Result<Arc<Self>> {
        let tokio = tokio::runtime::Handle::current();
        let changes = tokio::sync::broadcast::channel(1024).0;
        let relist = changes.clone();
        let node = options.node.clone();
        let client = nats::connect(
            &options.urls,
            &format!("ferry {}", options.node),
            move |event| {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(node = node.as_str(), "connected to the cluster");
                        // What changed while away is read again.
                        let _ = relist.send(Change::Relist);
                    }
                    async_nats::Event::Disconnected => tracing::warn!(
                        node = node.as_str(),
                        "cut off from the cluster: serving what this node has"
                    ),
                    other => tracing::debug!("NATS: {other}"),
                }
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let state = Arc::new(Self {
            guest_stores: ferry_store::NatsDatabase::new(client.clone(), options.replicas.max(1)),
            local,
            jetstream: nats::jetstream(client.clone()),
            client,
            buckets: tokio::sync::OnceCell::new(),
            tokio: tokio.clone(),
            node: options.node.clone(),
            lease_owner: {
                use std::hash::{BuildHasher as _, Hasher as _};
                let random = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                format!("{} {random:016x}", options.node)
            },
            urls: options.urls.clone(),
            replicas: options.replicas.max(1),
            changes,
        });
        tokio.spawn(watch_apps(Arc::downgrade(&state)));
        Ok(state)
    }

    /// Whether a NATS server is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// The buckets, created (or opened) the first time a server answers.
    async fn buckets(&self) -> anyhow::Result<&Buckets> {
        // A connection being made (at start, or again after a server went)
        // is waited for briefly; beyond that a write answers at once.
        let deadline = tokio::time::Instant::now() + CONNECTING;
        while !self.connected() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Unreachable(format!(
                    "no NATS server of {} answered within {} s",
                    self.urls,
                    CONNECTING.as_secs()
                ))
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.buckets
            .get_or_try_init(|| async {
                // A cluster just started (or electing) may not place a
                // bucket yet: tried again until an election's time is up.
                let deadline = tokio::time::Instant::now() + ELECTION;
                loop {
                    match self.open_buckets().await {
                        Ok(buckets) => return Ok(buckets),
                        Err(e) if tokio::time::Instant::now() >= deadline => {
                            return Err(unreachable(&*e));
                        }
                        Err(e) => {
                            tracing::debug!("opening the cluster's buckets: {e}");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
            })
            .await
    }

    async fn open_buckets(&self) -> Result<Buckets, Box<dyn std::error::Error + Send + Sync>> {
        let apps = nats::key_value(
            &self.jetstream,
            &BucketConfig {
                bucket: APPS.into(),
                replicas: self.replicas,
                max_age: None,
                max_value_size: -1,
            },
        )
        .await?;
        let blobs = nats::objects(&self.jetstream, BLOBS, self.replicas).await?;
        let nodes = nats::key_value(
            &self.jetstream,
            &BucketConfig {
                bucket: NODES.into(),
                replicas: self.replicas,
                max_age: Some(HEARTBEAT_LIFE),
                max_value_size: -1,
            },
        )
        .await?;
        let leases = nats::key_value(
            &self.jetstream,
            &BucketConfig {
                bucket: LEASES.into(),
                replicas: self.replicas,
                max_age: Some(LEASE_LIFE),
                max_value_size: -1,
            },
        )
        .await?;
        Ok(Buckets {
            apps,
            blobs,
            nodes,
            leases,
        })
    }

    /// Runs `work` against the cluster from this (non-runtime) thread,
    /// bounded by [`ELECTION`].
    fn remote<T>(
        &self,
        work: impl AsyncFnOnce(&Buckets) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.remote_within(ELECTION + Duration::from_secs(5), work)
    }

    /// [`remote`](Self::remote) bounded by `limit`, opening the buckets
    /// included.
    fn remote_within<T>(
        &self,
        limit: Duration,
        work: impl AsyncFnOnce(&Buckets) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.tokio.block_on(async {
            let bounded = async {
                let buckets = self.buckets().await?;
                work(buckets).await
            };
            match tokio::time::timeout(limit, bounded).await {
                Ok(result) => result,
                Err(_) => {
                    Err(Unreachable(format!("no answer within {} s", limit.as_secs())).into())
                }
            }
        })
    }

    /// A read from the cluster, or — cut off from it — from this node's copy.
    fn read<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&Buckets) -> anyhow::Result<T>,
        local: impl FnOnce() -> T,
    ) -> T {
        if !self.connected() {
            return local();
        }
        // Briefly: a read that cannot be answered soon is answered from
        // this node's copy.
        match self.remote_within(READ_LIMIT, work) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("reading {what} from the cluster: {e:#}; using this node's copy");
                local()
            }
        }
    }

    /// The app record of `name` and its revision (0: none, or deleted).
    async fn record(apps: &kv::Store, name: &str) -> anyhow::Result<(Option<AppRecord>, u64)> {
        let entry = nats::routed_read(|| apps.entry(name))
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let record = serde_json::from_slice(&entry.value)
                    .with_context(|| format!("the cluster's record of `{name}` is not valid"))?;
                (Some(record), entry.revision)
            }
            Some(entry) => (None, entry.revision),
            None => (None, 0),
        })
    }

    /// Changes the app record of `name` by `change` (which may refuse), by
    /// compare-and-swap on its revision, read again and retried while other
    /// writers change it meanwhile.
    async fn change_record<T>(
        apps: &kv::Store,
        name: &str,
        mut change: impl FnMut(Option<AppRecord>) -> Result<(AppRecord, T), SwapError>,
    ) -> Result<T, SwapError> {
        loop {
            let (record, revision) = Self::record(apps, name).await.map_err(SwapError::Write)?;
            let (new, outcome) = change(record)?;
            let bytes =
                Bytes::from(serde_json::to_vec(&new).map_err(|e| SwapError::Write(e.into()))?);
            match apps.update(name, bytes, revision).await {
                Ok(_) => return Ok(outcome),
                Err(e) if nats::is_wrong_revision(&e) => continue,
                Err(e) => return Err(SwapError::Write(unreachable(&e))),
            }
        }
    }

    /// The key of version `version` of `name`.
    fn version_key(name: &str, version: u64) -> String {
        format!("{name}.{version}")
    }

    async fn stored_version(
        apps: &kv::Store,
        name: &str,
        version: u64,
    ) -> anyhow::Result<Option<StoredVersion>> {
        let key = Self::version_key(name, version);
        match nats::routed_read(|| apps.entry(&key))
            .await
            .map_err(|e| unreachable(&e))?
        {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let stored: StoredVersion = serde_json::from_slice(&entry.value)
                    .with_context(|| format!("the cluster's version {key} is not valid"))?;
                anyhow::ensure!(
                    stored.record.version == version,
                    "the cluster's version {key} says it is version {}",
                    stored.record.version
                );
                Ok(Some(stored))
            }
            _ => Ok(None),
        }
    }

    /// Brings the blob `digest` to this node's copy from the cluster,
    /// checked against its digest.
    async fn fetch_blob(&self, blobs: &ObjectStore, digest: &str) -> anyhow::Result<()> {
        let hex = digest_hex(digest).with_context(|| format!("`{digest}` is not a digest"))?;
        let fetch = async {
            let info = nats::read_from_leader("reading a blob's size", || blobs.info(hex)).await?;
            if info.deleted {
                return Err(format!("the cluster has no blob {digest}").into());
            }
            // No more than its stated size; then checked against its digest.
            nats::read_object(&self.jetstream, BLOBS, &info, info.size).await
        };
        let bytes = fetch
            .await
            .map_err(|e| unreachable(&*e))
            .with_context(|| format!("fetching {digest}"))?;
        match self.local.put_blob(digest, &bytes) {
            Ok(()) => Ok(()),
            // The cluster's copy is not what its name says: never served.
            Err(BlobError::Refused(why)) => anyhow::bail!("the cluster's blob {digest}: {why}"),
            Err(BlobError::Write(e)) => Err(e),
        }
    }
}

impl DesiredState for ClusterState {
    fn has_blob(&self, digest: &str) -> bool {
        let Some(hex) = digest_hex(digest) else {
            return false;
        };
        self.read(
            "a blob",
            async |b| match b.blobs.info(hex).await {
                Ok(info) => Ok(!info.deleted),
                Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(false),
                Err(e) => Err(unreachable(&e)),
            },
            || self.local.has_blob(digest),
        )
    }

    fn blob_size(&self, digest: &str) -> Option<u64> {
        let hex = digest_hex(digest)?;
        self.read(
            "a blob's size",
            async |b| match b.blobs.info(hex).await {
                Ok(info) if !info.deleted => Ok(Some(info.size as u64)),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
                Err(e) => Err(unreachable(&e)),
            },
            || self.local.blob_size(digest),
        )
    }

    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), BlobError> {
        // Checked (and kept) here first: what reaches the cluster is what
        // its name says.
        self.local.put_blob(digest, bytes)?;
        let hex = digest_hex(digest).unwrap_or_default();
        self.remote(async |b| {
            if matches!(b.blobs.info(hex).await, Ok(info) if !info.deleted) {
                return Ok(());
            }
            // A chunk published while the object store's stream has no
            // leader (just created, or electing one) finds no stream; the
            // put is tried again until an election's worth of time has
            // passed (a failed try's chunks are never linked to a name).
            let deadline = tokio::time::Instant::now() + ELECTION;
            let mut pause = Duration::from_millis(250);
            loop {
                match b.blobs.put(hex, &mut std::io::Cursor::new(bytes)).await {
                    Ok(_) => return Ok(()),
                    Err(e) if tokio::time::Instant::now() + pause < deadline => {
                        tracing::debug!(error = %e, "storing a blob in the cluster failed; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => return Err(unreachable(&e)),
                }
            }
        })
        .map_err(BlobError::Write)
    }

    /// This node's copy only: the cluster's blobs are shared, and another
    /// node's deploy may be about to use any of them.
    fn remove_unused_blobs(&self) {
        self.local.remove_unused_blobs();
    }

    fn app_names(&self) -> anyhow::Result<Vec<String>> {
        if !self.connected() {
            return self.local.app_names();
        }
        self.remote(async |b| {
            // Versions' keys have a dot: `*` leaves them out. Anything not
            // an app's name (which becomes a path) is not one.
            let keys = nats::leader_keys(&b.apps, "*")
                .await
                .map_err(|e| unreachable(&*e))?;
            let names: BTreeSet<String> = keys
                .into_iter()
                .filter(|key| ferry_api::valid_app_name(key).is_ok())
                .collect();
            Ok(names.into_iter().collect())
        })
    }

    fn has_app(&self, name: &str) -> bool {
        self.read(
            "an app",
            async |b| {
                Ok(Self::record(&b.apps, name)
                    .await?
                    .0
                    .and_then(AppRecord::live)
                    .is_some())
            },
            || self.local.has_app(name),
        )
    }

    fn versions(&self, name: &str) -> Vec<VersionRecord> {
        self.read(
            "an app's versions",
            async |b| {
                let Some(record) = Self::record(&b.apps, name)
                    .await?
                    .0
                    .and_then(AppRecord::live)
                else {
                    return Ok(Vec::new());
                };
                let mut versions = Vec::new();
                for n in record.versions {
                    if let Some(stored) = Self::stored_version(&b.apps, name, n).await? {
                        versions.push(stored.record);
                    }
                }
                versions.sort_by_key(|r| r.version);
                Ok(versions)
            },
            || self.local.versions(name),
        )
    }

    fn version(&self, name: &str, version: u64) -> Option<VersionRecord> {
        self.read(
            "a version",
            async |b| {
                Ok(Self::stored_version(&b.apps, name, version)
                    .await?
                    .map(|s| s.record))
            },
            || self.local.version(name, version),
        )
    }

    /// Takes the next free number (creating the version's key fails if
    /// another node took it), then lists the version in the app's record.
    fn add_version(
        &self,
        name: &str,
        mut record: VersionRecord,
        variables: &Values,
    ) -> anyhow::Result<VersionRecord> {
        self.remote(async |b| {
            let (existing, _) = Self::record(&b.apps, name).await?;
            let mut number = existing.as_ref().map_or(0, |r| {
                r.versions.iter().copied().max().unwrap_or(0).max(r.last)
            }) + 1;
            loop {
                record.version = number;
                let stored = serde_json::to_vec(&StoredVersion {
                    record: record.clone(),
                    variables: variables.clone(),
                })?;
                let limit = self.client.server_info().max_payload;
                anyhow::ensure!(
                    stored.len() < limit,
                    "the version's record is {} bytes, over the cluster's largest message ({limit} bytes): too many files in one bundle",
                    stored.len()
                );
                match b
                    .apps
                    .create(Self::version_key(name, number), stored.into())
                    .await
                {
                    Ok(_) => break,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => number += 1,
                    Err(e) => return Err(unreachable(&e)),
                }
            }
            Self::change_record(&b.apps, name, |existing| {
                // A removed app's name starts again, its numbers going on.
                let mut new = match existing {
                    Some(record) if !record.removed => record,
                    Some(record) => AppRecord {
                        last: record.last,
                        ..AppRecord::default()
                    },
                    None => AppRecord::default(),
                };
                new.versions.push(number);
                new.versions.sort_unstable();
                new.versions.dedup();
                new.last = new.last.max(number);
                Ok((new, ()))
            })
            .await
            .map_err(swap_error)?;
            Ok(record)
        })
    }

    fn variables(&self, name: &str, version: u64) -> anyhow::Result<Values> {
        if !self.connected() {
            return self.local.variables(name, version);
        }
        self.remote(async |b| {
            Self::stored_version(&b.apps, name, version)
                .await?
                .map(|s| s.variables)
                .with_context(|| format!("version {version} of `{name}` is not in the cluster"))
        })
    }

    fn remove_version(&self, name: &str, version: u64) {
        let removed = self.remote(async |b| {
            // Never the serving version, and never into a record that is
            // gone: decided on the record as it is when written.
            Self::change_record(&b.apps, name, |existing| {
                let Some(mut record) = existing.and_then(AppRecord::live) else {
                    return Err(SwapError::Changed { now: None });
                };
                if record.current == Some(version) {
                    return Err(SwapError::Changed {
                        now: record.current,
                    });
                }
                record.versions.retain(|v| *v != version);
                Ok((record, ()))
            })
            .await
            .map_err(swap_error)?;
            b.apps
                .purge(Self::version_key(name, version))
                .await
                .map_err(|e| unreachable(&e))?;
            Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(app = name, version, "cannot remove the version: {e:#}");
        }
        self.local.remove_version(name, version);
    }

    fn current(&self, name: &str) -> Option<u64> {
        self.read(
            "an app's serving version",
            async |b| {
                Ok(Self::record(&b.apps, name)
                    .await?
                    .0
                    .and_then(AppRecord::live)
                    .and_then(|r| r.current))
            },
            || self.local.current(name),
        )
    }

    fn swap_current(
        &self,
        name: &str,
        expected: Option<u64>,
        new: Option<u64>,
    ) -> Result<(), SwapError> {
        let swapped = self.tokio.block_on(async {
            let b = self.buckets().await.map_err(SwapError::Write)?;
            let change = Self::change_record(&b.apps, name, |existing| {
                let Some(mut record) = existing.and_then(AppRecord::live) else {
                    // Deleted meanwhile: another writer's decision.
                    return Err(SwapError::Changed { now: None });
                };
                if record.current != expected {
                    return Err(SwapError::Changed {
                        now: record.current,
                    });
                }
                if let Some(version) = new
                    && !record.versions.contains(&version)
                {
                    return Err(SwapError::Write(anyhow::anyhow!(
                        "version {version} was removed meanwhile"
                    )));
                }
                record.current = new;
                Ok((record, ()))
            });
            match tokio::time::timeout(ELECTION + Duration::from_secs(5), change).await {
                Ok(result) => result,
                Err(_) => Err(SwapError::Write(
                    Unreachable("no answer to the swap".into()).into(),
                )),
            }
        });
        swapped?;
        if let Some(version) = new
            && let Err(e) = self.local.record_current(name, version)
        {
            tracing::warn!(app = name, "cannot note the serving version locally: {e:#}");
        }
        Ok(())
    }

    /// Deletes the app's record (one write: every node hears of it), then
    /// its versions' keys and this node's copy.
    fn retire_app(&self, name: &str) -> anyhow::Result<()> {
        self.remote(async |b| {
            let versions = Self::change_record(&b.apps, name, |existing| {
                let Some(record) = existing.and_then(AppRecord::live) else {
                    return Err(SwapError::Changed { now: None });
                };
                let removed = AppRecord {
                    last: record
                        .versions
                        .iter()
                        .copied()
                        .max()
                        .unwrap_or(0)
                        .max(record.last),
                    removed: true,
                    ..AppRecord::default()
                };
                Ok((removed, record.versions))
            })
            .await;
            let versions = match versions {
                Ok(versions) => versions,
                // Already removed (or never there): nothing to undo.
                Err(SwapError::Changed { .. }) => Vec::new(),
                Err(SwapError::Write(e)) => return Err(e),
            };
            for version in versions {
                let key = Self::version_key(name, version);
                if let Err(e) = b.apps.purge(&key).await {
                    tracing::warn!(app = name, "cannot remove {key}: {e}");
                }
            }
            // Its key-value data goes with it: a new app of the name
            // starts empty.
            if let Err(e) = self.guest_stores.remove_app(name).await {
                tracing::warn!(app = name, "cannot remove its key-value stores: {e}");
            }
            Ok(())
        })?;
        self.local.retire_app(name)
    }

    fn purge_app(&self, name: &str) -> anyhow::Result<()> {
        self.local.remove_app(name)
    }

    fn watch(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// This node's copy of the version, laid out from blobs fetched from
    /// the cluster where it lacks them. A copy that is not the version the
    /// cluster names (an app of the same name deleted and deployed again
    /// while this node was away) is laid out again.
    fn tree(&self, name: &str, record: &VersionRecord) -> anyhow::Result<PathBuf> {
        let tree = self.local.tree(name, record)?;
        if self.local.version(name, record.version).as_ref() == Some(record) {
            return Ok(tree);
        }
        self.local.remove_version(name, record.version);
        let variables = self.variables(name, record.version)?;
        self.remote(async |b| {
            for digest in record.files.values().collect::<BTreeSet<_>>() {
                if !self.local.has_blob(digest) {
                    self.fetch_blob(&b.blobs, digest).await?;
                }
            }
            Ok(())
        })?;
        self.local.lay_out(name, record, &variables)?;
        Ok(tree)
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.local.data_dir(name)
    }

    /// Noted in this node's copy, so that a restart while the cluster is
    /// out of reach serves it again.
    /// Noted in this node's copy, which also lets go of the versions the
    /// cluster no longer keeps (their files, and their variables).
    fn served(&self, name: &str, version: u64) {
        if self.local.current(name) != Some(version)
            && let Err(e) = self.local.record_current(name, version)
        {
            tracing::warn!(app = name, "cannot note the serving version locally: {e:#}");
        }
        if !self.connected() {
            return;
        }
        let kept = self.remote_within(READ_LIMIT, async |b| {
            Ok(Self::record(&b.apps, name)
                .await?
                .0
                .and_then(AppRecord::live)
                .map(|r| r.versions))
        });
        if let Ok(Some(kept)) = kept {
            for local in self.local.versions(name) {
                if local.version != version && !kept.contains(&local.version) {
                    self.local.remove_version(name, local.version);
                }
            }
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn reachable(&self) -> bool {
        self.connected()
    }

    fn guest_stores(&self) -> Option<ferry_store::NatsDatabase> {
        Some(self.guest_stores.clone())
    }

    fn beat(&self, apps: &[ferry_api::NodeApp]) {
        let beat = Heartbeat {
            node: self.node.clone(),
            at_ms: now_ms(),
            apps: apps.to_vec(),
        };
        let sent = self.remote(async |b| {
            let bytes = serde_json::to_vec(&beat)?;
            b.nodes
                .put(&self.node, bytes.into())
                .await
                .map_err(|e| unreachable(&e))?;
            Ok(())
        });
        if let Err(e) = sent {
            tracing::debug!("heartbeat: {e:#}");
        }
    }

    /// Each lease held by this node renewed (by compare-and-swap on its
    /// revision), each lapsed or released one taken (created, so that of
    /// two nodes one wins), all within [`LEASE_ROUND`]; a lease another
    /// node holds is left to it. Cut off, or past the round: none held.
    fn lead(&self, apps: &[String]) -> Vec<String> {
        if !self.connected() {
            return Vec::new();
        }
        let node = self.lease_owner.as_str();
        let held = self.remote_within(LEASE_ROUND + Duration::from_secs(1), async |b| {
            let tries = apps.iter().map(|app| async move {
                // Whether this node holds the lease after the round.
                let round = async {
                    match b.leases.entry(app).await {
                        Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                            if entry.value.as_ref() != node.as_bytes() {
                                // Another node's.
                                return Ok(false);
                            }
                            b.leases
                                .update(app, node.as_bytes().to_vec().into(), entry.revision)
                                .await
                                .map(|_| true)
                                .map_err(|e| e.to_string())
                        }
                        Ok(_) => b
                            .leases
                            .create(app, node.as_bytes().to_vec().into())
                            .await
                            .map(|_| true)
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                };
                // Each app within the round on its own: one slow answer
                // costs only its own lease.
                let taken = tokio::time::timeout(LEASE_ROUND, round)
                    .await
                    .unwrap_or_else(|_| Err("no answer within the round".into()));
                match taken {
                    Ok(held) => held.then(|| app.clone()),
                    Err(e) => {
                        tracing::debug!(app = app.as_str(), "lease on one-node triggers: {e}");
                        None
                    }
                }
            });
            Ok(futures_util::future::join_all(tries)
                .await
                .into_iter()
                .flatten()
                .collect())
        });
        held.unwrap_or_else(|e| {
            tracing::debug!("leases on one-node triggers: {e:#}");
            Vec::new()
        })
    }

    fn release(&self, app: &str) {
        if !self.connected() {
            return;
        }
        let node = self.lease_owner.as_bytes();
        let released = self.remote_within(LEASE_ROUND, async |b| {
            if let Some(entry) = b.leases.entry(app).await.map_err(|e| unreachable(&e))?
                && entry.operation == kv::Operation::Put
                && entry.value.as_ref() == node
            {
                b.leases
                    .delete_expect_revision(app, Some(entry.revision))
                    .await
                    .map_err(|e| unreachable(&e))?;
            }
            Ok(())
        });
        if let Err(e) = released {
            tracing::debug!(app, "releasing the lease on one-node triggers: {e:#}");
        }
    }

    fn nodes(&self) -> anyhow::Result<Option<Vec<Heartbeat>>> {
        self.remote(async |b| {
            let keys = nats::leader_keys(&b.nodes, ">")
                .await
                .map_err(|e| unreachable(&*e))?;
            let mut beats = Vec::new();
            for key in keys {
                // The bucket lets a heartbeat go after HEARTBEAT_LIFE, by
                // the servers' clock (nodes' clocks may differ).
                if let Some(bytes) = b.nodes.get(&key).await.map_err(|e| unreachable(&e))?
                    && let Ok(beat) = serde_json::from_slice::<Heartbeat>(&bytes)
                {
                    beats.push(beat);
                }
            }
            beats.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(Some(beats))
        })
    }
}

/// Hears every change to an app record and announces it; after any
/// interruption (and at first) announces [`Change::Relist`], for what may
/// have been missed. Ends when the state is dropped.
async fn watch_apps(state: std::sync::Weak<ClusterState>) {
    use futures_util::StreamExt as _;
    loop {
        let watcher = {
            let Some(state) = state.upgrade() else {
                return;
            };
            match state.buckets().await {
                Ok(b) => b
                    .apps
                    .watch("*")
                    .await
                    .ok()
                    .map(|w| (w, state.changes.clone())),
                Err(_) => None,
            }
        };
        let Some((mut watcher, changes)) = watcher else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let _ = changes.send(Change::Relist);
        while let Some(entry) = watcher.next().await {
            let Ok(entry) = entry else {
                break;
            };
            // Only an app's name is ever a path here.
            if ferry_api::valid_app_name(&entry.key).is_err() {
                continue;
            }
            let record = serde_json::from_slice::<AppRecord>(&entry.value).ok();
            let change = match (entry.operation, record.and_then(AppRecord::live)) {
                (kv::Operation::Put, Some(record)) => Change::Current {
                    current: record.current,
                    app: entry.key,
                },
                _ => Change::Removed { app: entry.key },
            };
            let _ = changes.send(change);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A NATS error as [`Unreachable`]: the write's fate is unknown to this
/// node, and the admin call answers 503.
fn unreachable(e: &(dyn std::error::Error + '_)) -> anyhow::Error {
    Unreachable(e.to_string()).into()
}

fn swap_error(e: SwapError) -> anyhow::Error {
    match e {
        SwapError::Write(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}
