//! A live host (`ferry serve`): many apps in one process, each deployed,
//! rolled back and deleted while the others — and its own running
//! requests — go on.
//!
//! A deploy adds the uploaded bundle as a new version to the desired state
//! ([`DesiredState`]; on one machine the state directory), assembles the
//! app from the version's tree exactly as `ferry up` assembles one from
//! disk (the same [`assemble::prepare`] and [`Assembler::assemble`]), checks
//! its routes and host names against the other apps *before* compiling,
//! and only when every component has compiled records the version as the
//! one serving — by compare-and-swap on what it read, so another writer's
//! decision is never overwritten — and swaps it into the [`LiveApps`] table
//! in one step. A failure at any step leaves the running version serving
//! and the desired state as it was. Deploys of one app are serialised by a lock of its own; apps
//! never wait for each other, and requests never take any of these locks.
//!
//! This layer speaks in plain values (requests and answers the admin API
//! serialises); it knows nothing of HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ferry_manifest::Source;
use ferry_server::{LiveApps, LoadedApp, Router};

use crate::assemble::{self, Assembler, Mode, Settings};
use crate::desired::{BlobError, Change, DesiredState, SwapError, Unreachable, VersionRecord};
use crate::locks::Locks;
use crate::metrics::Metrics;
use crate::state;
use crate::stores;
use crate::summary;
use ferry_api::human::human_size;

pub use ferry_api::{
    Activated, AppDetail, AppStatus, AppSummary, Compiled, ComponentSummary, DeployRequest,
    NodeApp, NodeList, VersionSummary,
};

/// Why a host call did nothing; each is one HTTP status in the admin API.
#[derive(Debug)]
pub enum HostError {
    /// The request itself is malformed (400).
    BadRequest(String),
    /// No such app or version (404).
    NotFound(String),
    /// Another app has a route or host name this one claims, or another
    /// writer changed the app first (409).
    Conflict(String),
    /// The bundle, its manifest or a component is invalid (422).
    Invalid(String),
    /// The host failed (500).
    Internal(String),
    /// The shared desired state is out of reach (503): a node cut off from
    /// its cluster serves on but changes nothing.
    Unavailable(String),
}

impl HostError {
    pub fn message(&self) -> &str {
        match self {
            Self::BadRequest(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::Invalid(m)
            | Self::Internal(m)
            | Self::Unavailable(m) => m,
        }
    }
}

/// A failure of the host (500), or of a shared desired state out of reach
/// (503).
fn internal(e: anyhow::Error) -> HostError {
    if e.downcast_ref::<Unreachable>().is_some() {
        HostError::Unavailable(format!("{e:#}"))
    } else {
        HostError::Internal(format!("{e:#}"))
    }
}

/// What the host knows of an app beyond the table: how its serving version
/// was made, or why it is not serving.
#[derive(Debug, Clone)]
struct AppState {
    version: Option<u64>,
    status: AppStatus,
    error: Option<String>,
    hostnames: Vec<String>,
    deployed_at: Option<u64>,
    components: Vec<ComponentSummary>,
    /// The version the desired state named that this node could not
    /// activate (not tried again until it names another).
    refused: Option<u64>,
}

/// Bounds on what one deploy may bring.
#[derive(Debug, Clone, Copy)]
pub struct BundleLimits {
    /// All of a bundle's files together, in bytes.
    pub max_bundle_size: u64,
    pub max_files: usize,
}

pub struct Host {
    state: Arc<dyn DesiredState>,
    live: Arc<LiveApps>,
    assembler: Assembler,
    settings: Settings,
    limits: BundleLimits,
    /// Versions kept per app, the serving one included.
    keep_versions: usize,
    /// One lock per app name: its deploys, rollbacks and deletion run one at a time.
    locks: Locks,
    apps: RwLock<BTreeMap<String, AppState>>,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    /// When unused blobs were last removed.
    collected: Mutex<Option<Instant>>,
    /// Told of every change to what this node serves (its heartbeat
    /// reports it at once).
    changed: tokio::sync::Notify,
    /// Each serving app's event triggers, started with its version.
    triggers: Mutex<BTreeMap<String, AppTriggers>>,
}

/// An app's event triggers on this node.
struct AppTriggers {
    /// The ones it runs whatever the other nodes do: all of them, but on
    /// a cluster's node the NATS ones only.
    every_node: Option<ferry_trigger::Running>,
    /// On a cluster's node, those one node runs at a time
    /// ([`ferry_trigger::Source::one_node`]): run while this node holds
    /// the app's lease.
    one_node: Option<ferry_trigger::Triggers>,
    one_node_running: Option<ferry_trigger::Running>,
    /// When the round that last renewed the app's lease began: the lease
    /// runs at least [`crate::cluster::LEASE_LIFE`] from then.
    renewed: Option<Instant>,
}

impl AppTriggers {
    /// Stops taking events at once; the future waits for the invocations
    /// under way.
    fn stop(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let stopped: Vec<_> = [self.every_node, self.one_node_running]
            .into_iter()
            .flatten()
            .map(ferry_trigger::Running::stop)
            .collect();
        async move {
            for stopped in stopped {
                stopped.await;
            }
        }
    }
}

/// How often a node following a shared desired state reads all of it
/// again, whatever it heard: the watch's safety net.
pub const RELIST: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a cluster's node renews its leases on apps' one-node
/// triggers: well within [`crate::cluster::LEASE_LIFE`].
pub const LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after the round that renewed it a lease is counted on: 6 s of
/// its 10 ([`crate::cluster::LEASE_LIFE`], from when the servers had the
/// renewal, which is after the round began).
pub const LEASE_TRUSTED: std::time::Duration = std::time::Duration::from_secs(6);

/// How often a node sharing its desired state says what it serves, when
/// nothing changed.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(3);

/// How often unused blobs are looked for: each search reads every version
/// of every app, which at a thousand apps costs more than a deploy.
const BLOB_COLLECTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Host {
    pub fn new(
        state: Arc<dyn DesiredState>,
        live: Arc<LiveApps>,
        assembler: Assembler,
        settings: Settings,
        limits: BundleLimits,
        keep_versions: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            metrics,
            triggers: Mutex::default(),
            collected: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
            state,
            live,
            assembler,
            settings,
            limits,
            keep_versions: keep_versions.max(1),
            locks: Locks::default(),
            apps: RwLock::default(),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether every app the desired state held at start has been
    /// restored (or has failed to be).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Brings back every app at its `current` version. An app that fails
    /// to load is reported as `failed` (with why) and the others go on.
    /// Runs off the runtime's threads, once, at start, while the admin API
    /// already takes calls: each app is restored under its lock, from what
    /// `current` says then, and not at all if a deploy, rollback or delete
    /// has decided its fate meanwhile. It writes only what it changes.
    pub fn restore(&self) {
        let names = self.state.app_names().unwrap_or_else(|e| {
            tracing::error!("cannot list the desired state's apps: {e:#}");
            Vec::new()
        });
        let mut pending = Vec::new();
        for name in names {
            if self.state.current(&name).is_some() {
                self.set_state(&name, |s| s.status = AppStatus::Restoring);
                pending.push(name);
                continue;
            }
            // Never activated: a crash during its first deploy (asked again
            // under the lock: a first deploy may be running now). In a
            // shared state it may be another node's first deploy, running.
            let _lock = self.lock(&name);
            if !self.state.shared() && self.state.current(&name).is_none() {
                let _ = self.state.remove_app(&name);
            }
        }
        for name in pending {
            let _lock = self.lock(&name);
            let restoring = self
                .apps
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .is_some_and(|s| s.status == AppStatus::Restoring);
            // Deployed, rolled back or deleted while the apps before it
            // were restored: what that call did stands.
            let Some(version) = self.state.current(&name).filter(|_| restoring) else {
                continue;
            };
            let started = Instant::now();
            match self.restore_app(&name, version) {
                Ok(done) => tracing::info!(
                    app = name.as_str(),
                    version = done.version,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "restored"
                ),
                Err(e) => {
                    tracing::error!(
                        app = name.as_str(),
                        version,
                        "cannot restore: {}",
                        e.message()
                    );
                    self.set_state(&name, |s| {
                        s.status = AppStatus::Failed;
                        s.error = Some(e.message().to_owned());
                    });
                }
            }
        }
        self.ready.store(true, Ordering::Release);
        self.collect_blobs();
    }

    /// Restores every app, then keeps this node serving what a shared
    /// desired state says: each app another writer changes is converged
    /// as soon as the change is heard, and every app after a reconnect,
    /// after changes were missed and every [`RELIST`]. Runs on a thread of
    /// its own (off `tokio`'s runtime, which must be driven) until the
    /// desired state is dropped.
    pub fn follow(&self, tokio: &tokio::runtime::Handle) {
        use tokio::sync::broadcast::error::RecvError;
        let mut changes = self.state.watch();
        self.restore();
        let mut relisted = Instant::now();
        loop {
            // Every RELIST at the latest, however busy the watch is.
            let wait = RELIST.saturating_sub(relisted.elapsed());
            let next = tokio.block_on(async { tokio::time::timeout(wait, changes.recv()).await });
            match next {
                Ok(Ok(Change::Current { app, .. } | Change::Removed { app })) => {
                    self.converge(&app);
                }
                Ok(Ok(Change::Relist) | Err(RecvError::Lagged(_))) | Err(_) => {
                    self.converge_all();
                    relisted = Instant::now();
                }
                Ok(Err(RecvError::Closed)) => return,
            }
        }
    }

    /// Activates version `current` of `name`, or, if its directory is
    /// missing (a crash before its rename reached the disk), the newest
    /// kept version before it that loads, recorded as `current`.
    fn restore_app(&self, name: &str, current: u64) -> Result<Activated, HostError> {
        if let Some(record) = self.state.version(name, current) {
            return self.activate(name, &record, Some(current), Recording::MayFail);
        }
        let mut failure = format!("version {current} is missing, and no version before it is kept");
        let older = self.state.versions(name).into_iter().rev();
        for record in older.filter(|r| r.version < current) {
            // A shared state's decision is not this node's to undo: the
            // older version serves here only, and `current` stays.
            let replaces = if self.state.shared() {
                Some(record.version)
            } else {
                Some(current)
            };
            match self.activate(name, &record, replaces, Recording::MayFail) {
                Ok(done) => {
                    tracing::warn!(
                        app = name,
                        missing = current,
                        version = record.version,
                        "version {current} is missing: serving version {} instead",
                        record.version
                    );
                    return Ok(done);
                }
                Err(e) => {
                    failure = format!(
                        "version {current} is missing, and version {} does not load: {}",
                        record.version,
                        e.message()
                    );
                }
            }
        }
        Err(HostError::Internal(failure))
    }

    /// Makes this node serve what the desired state says of `name`, when
    /// another writer (a cluster's other node) changed it: the version it
    /// names activated as a deploy activates one — zero failed requests —
    /// or the app taken out of service if it was removed. A version that
    /// cannot be activated here (a component that does not compile, too
    /// little memory) is reported on the app and the version serving stays;
    /// it is not tried again until the desired state names another.
    pub fn converge(&self, name: &str) {
        let _lock = self.lock(name);
        let known = self.known(name);
        if !self.state.has_app(name) {
            if known.is_some() || self.live.app(name).is_some() {
                self.stop_serving(name);
                if let Err(e) = self.state.purge_app(name) {
                    tracing::warn!(app = name, "removed, but not all its files: {e:#}");
                }
                tracing::info!(app = name, "deleted elsewhere: no longer served");
            }
            return;
        }
        // None: a first deploy still in progress (on another node).
        let Some(current) = self.state.current(name) else {
            return;
        };
        if let Some((serving, refused)) = known
            && (serving == Some(current) || refused == Some(current))
        {
            return;
        }
        let heard = Instant::now();
        let result = match self.state.version(name, current) {
            Some(record) => self.activate(name, &record, Some(current), Recording::MayFail),
            None => Err(HostError::Internal(format!(
                "version {current} is not in the desired state"
            ))),
        };
        self.metrics
            .converged(name, result.is_ok(), heard.elapsed());
        match result {
            Ok(done) => tracing::info!(
                app = name,
                version = done.version,
                elapsed_ms = done.elapsed_ms,
                "serving the version the cluster decided on"
            ),
            Err(e) => {
                tracing::error!(
                    app = name,
                    version = current,
                    "cannot serve version {current} on this node: {}",
                    e.message()
                );
                // Only a version that cannot load here is not tried again;
                // anything else (the cluster out of reach, a route another
                // app's next version frees) is, at the next change or relist.
                let refused = matches!(e, HostError::Invalid(_)).then_some(current);
                self.set_state(name, |s| {
                    if s.version.is_none() {
                        s.status = AppStatus::Failed;
                    }
                    s.refused = refused;
                    s.error = Some(format!(
                        "cannot serve version {current} on this node: {}",
                        e.message()
                    ));
                });
            }
        }
    }

    /// [`converge`](Self::converge) for every app the desired state or
    /// this node knows.
    pub fn converge_all(&self) {
        let mut names = match self.state.app_names() {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!("cannot list the desired state's apps: {e:#}");
                return;
            }
        };
        names.extend(
            self.apps
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned(),
        );
        names.sort();
        names.dedup();
        for name in names {
            self.converge(&name);
        }
    }

    /// Takes `name` out of the table and out of what this host reports
    /// (heartbeat, metrics); its files are the caller's to remove.
    fn stop_serving(&self, name: &str) {
        self.live.remove(name);
        self.swap_triggers(name, None);
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.changed.notify_one();
        self.metrics.serving(name, None);
    }

    /// Sends this node's heartbeat — what it serves — to the nodes sharing
    /// its desired state: at once after each change, else every
    /// [`HEARTBEAT`]. Runs on a thread of its own (off `tokio`'s runtime,
    /// which must be driven), forever.
    pub fn heartbeat(&self, tokio: &tokio::runtime::Handle) {
        loop {
            self.metrics.cluster_connected(self.state.reachable());
            self.state.beat(&self.report());
            let _ = tokio
                .block_on(async { tokio::time::timeout(HEARTBEAT, self.changed.notified()).await });
        }
    }

    /// On a cluster's node: takes, renews and gives up the leases on apps'
    /// one-node triggers (Redis, MQTT, cron: each event would otherwise run
    /// on every node), every [`LEASE_RENEW`], and starts or stops those
    /// triggers to match. An app whose lease a round did not renew (cut off
    /// from the cluster, another node's, or no answer within
    /// [`crate::cluster::LEASE_ROUND`]) has them stopped; so has, by
    /// [`watch_leases`](Self::watch_leases), one whose last renewal is older
    /// than [`LEASE_TRUSTED`], whatever this loop is doing. Runs on a
    /// thread of its own, forever.
    pub fn lead_triggers(&self) {
        let mut held: Vec<String> = Vec::new();
        loop {
            let wanted: Vec<String> = {
                let running = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
                running
                    .iter()
                    .filter(|(_, t)| t.one_node.is_some())
                    .map(|(name, _)| name.clone())
                    .collect()
            };
            let round = Instant::now();
            let renewed = if wanted.is_empty() {
                Vec::new()
            } else {
                self.state.lead(&wanted)
            };
            let mut running = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
            for (name, triggers) in running.iter_mut() {
                let Some(one_node) = &triggers.one_node else {
                    continue;
                };
                if renewed.contains(name) {
                    triggers.renewed = Some(round);
                    if triggers.one_node_running.is_none() {
                        tracing::info!(
                            app = name.as_str(),
                            "this node now runs the app's Redis, MQTT and cron triggers (it holds their lease)"
                        );
                        let _enter = self.assembler.tokio.enter();
                        triggers.one_node_running = Some(
                            one_node.start(Some(self.metrics.triggers()), self.assembler.traces),
                        );
                    }
                } else {
                    triggers.renewed = None;
                    self.lose_lease(name, triggers, "their lease is not renewed");
                }
            }
            drop(running);
            // Leases of apps gone from this node, given up for another to
            // take at once (after the renewals: these may wait).
            for gone in held.iter().filter(|name| !wanted.contains(name)) {
                self.state.release(gone);
            }
            held = renewed;
            std::thread::sleep(LEASE_RENEW);
        }
    }

    /// Stops every one-node trigger whose lease was last renewed more than
    /// [`LEASE_TRUSTED`] ago: well before another node may take it, even
    /// when [`lead_triggers`](Self::lead_triggers) is late or gone. Runs on
    /// a thread of its own, forever.
    pub fn watch_leases(&self) {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let mut running = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
            for (name, triggers) in running.iter_mut() {
                let stale = triggers
                    .renewed
                    .is_none_or(|at| at.elapsed() > LEASE_TRUSTED);
                if stale {
                    self.lose_lease(name, triggers, "their lease was not renewed in time");
                }
            }
        }
    }

    /// Stops `name`'s one-node triggers, if they run, saying `why`.
    fn lose_lease(&self, name: &str, triggers: &mut AppTriggers, why: &str) {
        if let Some(stopped) = triggers.one_node_running.take() {
            tracing::warn!(
                app = name,
                "this node no longer runs the app's Redis, MQTT and cron triggers ({why})"
            );
            self.assembler.tokio.spawn(stopped.stop());
        }
    }

    /// What this node serves, app by app.
    pub fn report(&self) -> Vec<NodeApp> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.iter()
            .map(|(name, s)| NodeApp {
                name: name.clone(),
                version: s.version,
                status: s.status,
                error: s.error.clone(),
                refused: s.refused,
            })
            .collect()
    }

    /// Every live node sharing this desired state, and how far each is
    /// from it.
    pub fn nodes(&self) -> Result<NodeList, HostError> {
        let Some(beats) = self.state.nodes().map_err(internal)? else {
            return Ok(NodeList {
                cluster: false,
                nodes: Vec::new(),
            });
        };
        let names = self.state.app_names().map_err(internal)?;
        let desired: BTreeMap<String, u64> = names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.state.current(&name)?)))
            .collect();
        let now = state::now_ms();
        let nodes = beats
            .into_iter()
            .map(|beat| {
                let behind = desired
                    .iter()
                    .filter(|(name, version)| {
                        !beat.apps.iter().any(|app| {
                            &app.name == *name
                                && app.version == Some(**version)
                                && app.status == AppStatus::Serving
                        })
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                ferry_api::NodeSummary {
                    name: beat.node,
                    heartbeat_at: state::rfc3339(beat.at_ms / 1000),
                    heartbeat_age_ms: now.saturating_sub(beat.at_ms),
                    apps: beat.apps,
                    behind,
                }
            })
            .collect();
        Ok(NodeList {
            cluster: true,
            nodes,
        })
    }

    /// The version of `name` this node serves and the one it could not
    /// activate, if it knows the app.
    fn known(&self, name: &str) -> Option<(Option<u64>, Option<u64>)> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(name).map(|s| {
            let serving = s.version.filter(|_| s.status == AppStatus::Serving);
            (serving, s.refused)
        })
    }

    /// Removes the blobs no kept version uses, unless that was done less
    /// than [`BLOB_COLLECTION_INTERVAL`] ago.
    fn collect_blobs(&self) {
        let mut collected = self.collected.lock().unwrap_or_else(|e| e.into_inner());
        if collected.is_some_and(|at| at.elapsed() < BLOB_COLLECTION_INTERVAL) {
            return;
        }
        *collected = Some(Instant::now());
        drop(collected);
        self.state.remove_unused_blobs();
    }

    /// The digests of `digests` the host does not have yet.
    pub fn missing_blobs(&self, digests: &[String]) -> Result<Vec<String>, HostError> {
        digests
            .iter()
            .map(|d| match ferry_api::digest_hex(d) {
                Some(_) => Ok((!self.state.has_blob(d)).then(|| d.clone())),
                None => Err(not_a_digest(d)),
            })
            .filter_map(Result::transpose)
            .collect()
    }

    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), HostError> {
        if ferry_api::digest_hex(digest).is_none() {
            return Err(not_a_digest(digest));
        }
        self.state.put_blob(digest, bytes).map_err(|e| match e {
            BlobError::Refused(why) => HostError::Invalid(why),
            BlobError::Write(e) => internal(e),
        })
    }

    /// Deploys a new version of `name` from blobs already uploaded.
    pub fn deploy(&self, name: &str, request: DeployRequest) -> Result<Activated, HostError> {
        ferry_api::valid_app_name(name).map_err(HostError::BadRequest)?;
        let hostnames = valid_hostnames(&request.hostnames)?;
        ferry_api::values::check_deployed(&request.variables).map_err(HostError::BadRequest)?;
        self.check_bundle(&request)?;
        let _lock = self.lock(name);
        // What this deploy replaces: the swap at its end is made against
        // it, so a change another writer makes meanwhile is never lost.
        let replaces = self.state.current(name);
        let record = self
            .state
            .add_version(
                name,
                VersionRecord {
                    version: 0,
                    manifest: request.manifest,
                    files: request.files,
                    hostnames,
                    deployed_at: state::now(),
                },
                &request.variables,
            )
            .map_err(|e| {
                // A first deploy leaves no app directory behind (in a
                // shared state, another node's first deploy may be running).
                if !self.state.shared() && self.state.current(name).is_none() {
                    let _ = self.state.remove_app(name);
                }
                internal(e)
            })?;
        let result = self.activate(name, &record, replaces, Recording::Required);
        self.metrics.deployed(name, result.is_ok());
        match result {
            Ok(done) => {
                self.state.prune(name, self.keep_versions);
                self.collect_blobs();
                tracing::info!(app = name, version = record.version, "deployed");
                Ok(done)
            }
            Err(e) => {
                // Kept if it is recorded as serving after all (an undo
                // that could not be written): `current` must name a version.
                if self.state.current(name) != Some(record.version) {
                    self.state.remove_version(name, record.version);
                }
                if !self.state.shared() && self.state.current(name).is_none() {
                    let _ = self.state.remove_app(name);
                }
                tracing::warn!(app = name, "deploy refused: {}", e.message());
                Err(e)
            }
        }
    }

    /// The settings version `record` of `name` loads with: the host's, and
    /// the variable values that version's deploy gave.
    fn version_settings(&self, name: &str, record: &VersionRecord) -> Result<Settings, HostError> {
        let deployed = self
            .state
            .variables(name, record.version)
            .map_err(internal)?;
        Ok(Settings {
            variables: self.settings.variables.with_deployed(deployed),
            ..self.settings.clone()
        })
    }

    /// Serves `to` (default: the version before the serving one) again.
    pub fn rollback(&self, name: &str, to: Option<u64>) -> Result<Activated, HostError> {
        known_name(name)?;
        let _lock = self.lock(name);
        let current = self.state.current(name).ok_or_else(|| no_app(name))?;
        let versions = self.state.versions(name);
        let target = match to {
            Some(to) => versions
                .into_iter()
                .find(|r| r.version == to)
                .ok_or_else(|| {
                    HostError::NotFound(format!(
                        "app `{name}` has no version {to} (kept: {})",
                        self.kept(name)
                    ))
                })?,
            None => versions
                .into_iter()
                .rev()
                .find(|r| r.version < current)
                .ok_or_else(|| {
                    HostError::NotFound(format!(
                        "app `{name}` has no version before {current} to roll back to"
                    ))
                })?,
        };
        let result = self.activate(name, &target, Some(current), Recording::Required);
        self.metrics.rolled_back(name, result.is_ok());
        let done = result?;
        tracing::info!(app = name, version = target.version, "rolled back");
        Ok(done)
    }

    /// Takes `name` out of service and removes it, its versions and its data.
    pub fn delete(&self, name: &str) -> Result<(), HostError> {
        known_name(name)?;
        let _lock = self.lock(name);
        let known = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name);
        // Anything of it on disk counts, what a removal cut short left
        // included: deleting again finishes the job.
        if !known && !self.state.has_app(name) {
            return Err(no_app(name));
        }
        // Out of the desired state first, in one step: if that fails
        // the app serves on, unchanged; once done, no restart brings it back.
        self.state.retire_app(name).map_err(internal)?;
        self.stop_serving(name);
        if let Err(e) = self.state.purge_app(name) {
            tracing::warn!(
                app = name,
                "deleted, but not all its files are removed yet (the next start or delete of the name removes them): {e:#}"
            );
        }
        self.collect_blobs();
        tracing::info!(app = name, "deleted");
        Ok(())
    }

    pub fn list(&self) -> Vec<AppSummary> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.iter().map(|(name, s)| self.summary(name, s)).collect()
    }

    pub fn show(&self, name: &str) -> Result<AppDetail, HostError> {
        known_name(name)?;
        // A copy: the desired state is read with no lock held (a cluster's
        // may take a while to answer).
        let app = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| no_app(name))?;
        let current = self.state.current(name);
        Ok(AppDetail {
            summary: self.summary(name, &app),
            components: app.components.clone(),
            versions: self
                .state
                .versions(name)
                .into_iter()
                .map(|r| VersionSummary {
                    version: r.version,
                    deployed_at: state::rfc3339(r.deployed_at),
                    current: Some(r.version) == current,
                    files: r.files.len(),
                })
                .collect(),
        })
    }

    fn summary(&self, name: &str, app: &AppState) -> AppSummary {
        let routes = self
            .live
            .app(name)
            .map(|host| routes(host.router()))
            .unwrap_or_default();
        AppSummary {
            name: name.to_owned(),
            version: app.version,
            status: app.status,
            error: app.error.clone(),
            routes,
            hostnames: app.hostnames.clone(),
            deployed_at: app.deployed_at.map(state::rfc3339),
        }
    }

    fn kept(&self, name: &str) -> String {
        let kept: Vec<String> = self
            .state
            .versions(name)
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        kept.join(", ")
    }

    /// Waits for, and holds, the lock of the app `name`. Called off the
    /// runtime's threads.
    fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.hold(name)
    }

    fn set_state(&self, name: &str, change: impl FnOnce(&mut AppState)) {
        // Told once the change is made: the heartbeat reads it then.
        let _told = Told(&self.changed);
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let app = apps.entry(name.to_owned()).or_insert_with(|| AppState {
            version: None,
            status: AppStatus::Restoring,
            error: None,
            hostnames: Vec::new(),
            deployed_at: None,
            components: Vec::new(),
            refused: None,
        });
        change(app);
    }

    /// Refuses a bundle whose paths could leave it, whose files are not all
    /// uploaded, or that is larger than allowed — before anything is written.
    fn check_bundle(&self, request: &DeployRequest) -> Result<(), HostError> {
        if request.files.len() > self.limits.max_files {
            return Err(HostError::Invalid(format!(
                "the bundle has {} files; this host takes at most {}",
                request.files.len(),
                self.limits.max_files
            )));
        }
        ferry_api::valid_bundle_path(&request.manifest).map_err(HostError::Invalid)?;
        if !request.files.contains_key(&request.manifest) {
            return Err(HostError::Invalid(format!(
                "the manifest `{}` is not one of the bundle's files",
                request.manifest
            )));
        }
        let mut missing = Vec::new();
        let mut total = 0u64;
        for (path, digest) in &request.files {
            ferry_api::valid_bundle_path(path).map_err(HostError::Invalid)?;
            if ferry_api::digest_hex(digest).is_none() {
                return Err(not_a_digest(digest));
            }
            match self.state.blob_size(digest) {
                Some(size) => total += size,
                None => missing.push(format!("{path} ({digest})")),
            }
        }
        if !missing.is_empty() {
            return Err(HostError::Invalid(format!(
                "the bundle's files were not all uploaded: {}",
                missing.join(", ")
            )));
        }
        if total > self.limits.max_bundle_size {
            return Err(HostError::Invalid(format!(
                "the bundle is {}; this host takes at most {}",
                human_size(total),
                human_size(self.limits.max_bundle_size)
            )));
        }
        // A path that is also a directory of another (`a` and `a/b`) cannot be laid out.
        for path in request.files.keys() {
            let mut prefix = path.as_str();
            while let Some((parent, _)) = prefix.rsplit_once('/') {
                if request.files.contains_key(parent) {
                    return Err(HostError::Invalid(format!(
                        "`{parent}` is both a file and the directory of `{path}`"
                    )));
                }
                prefix = parent;
            }
        }
        Ok(())
    }

    /// Loads version `record` of `name` from its tree, compiles it and
    /// makes it the one serving in place of `replaces` (the serving version
    /// the caller read when it decided, under the app's lock, which it
    /// holds).
    fn activate(
        &self,
        name: &str,
        record: &VersionRecord,
        replaces: Option<u64>,
        recording: Recording,
    ) -> Result<Activated, HostError> {
        let started = Instant::now();
        let tree = self.state.tree(name, record).map_err(internal)?;
        let invalid = |e: anyhow::Error| HostError::Invalid(format!("{e:#}"));
        confine_to_tree(&tree, &tree.join(&record.manifest))?;
        let mut progress = Vec::new();
        let mut prepared = assemble::prepare(
            &tree.join(&record.manifest),
            None,
            Some(name),
            &self.version_settings(name, record)?,
            &mut progress,
        )
        .map_err(invalid)?;
        if let Some(command) = prepared.app.event_triggers.iter().find(|t| t.runs_once()) {
            return Err(HostError::Invalid(format!(
                "trigger `{}`: a {} trigger runs once, from `ferry up`; a live host serves apps and does not run commands",
                command.id,
                command.kind()
            )));
        }
        // Before compiling: a clash costs nothing.
        let router = Router::new(&prepared.app).map_err(invalid)?;
        self.live
            .check(name, &router, &record.hostnames)
            .map_err(|c| HostError::Conflict(c.0))?;
        let data = self.state.data_dir(name);
        stores::confine_data_paths(&mut prepared, &data).map_err(invalid)?;
        let previous = self.live.app(name);
        let guest_stores = self.state.guest_stores();
        let assemble::Assembled {
            app: host,
            triggers,
            ..
        } = self
            .assembler
            .assemble(
                &prepared,
                Mode::Serve {
                    data: &data,
                    previous: previous.as_deref(),
                    cluster: guest_stores.as_ref(),
                },
                &mut progress,
            )
            .map_err(invalid)?;
        let mut components: Vec<Compiled> = host
            .guests()
            .chain(triggers.guests())
            .map(|g| Compiled {
                id: g.id().to_owned(),
                from_cache: g.info().compile.from_cache,
                compile_ms: g.info().compile.elapsed.as_secs_f64() * 1000.0,
            })
            .collect();
        components.sort_by(|a, b| a.id.cmp(&b.id));
        let details = component_details(&prepared, &host, &triggers, &tree);
        let routes = routes(host.router());
        // Recorded first, so that a crash once traffic has moved restores
        // what was serving; undone if the swap is refused (an app that
        // claimed the same route since the check). Written only if it
        // changes: a restore writes nothing, so a full disk cannot stop it.
        // Swapped against what the caller decided on: if another writer
        // changed it meanwhile (during the compile), its change stands.
        let mut wrote = false;
        if replaces != Some(record.version) {
            match self
                .state
                .swap_current(name, replaces, Some(record.version))
            {
                Ok(()) => wrote = true,
                // Another writer decided first: what it decided stands.
                Err(changed @ SwapError::Changed { .. }) => {
                    return Err(HostError::Conflict(changed.to_string()));
                }
                Err(SwapError::Write(e)) if recording == Recording::MayFail => tracing::warn!(
                    app = name,
                    version = record.version,
                    "serving, but cannot record the version as `current`: {e:#}"
                ),
                Err(SwapError::Write(e)) => return Err(internal(e)),
            }
        }
        if let Err(conflict) = self.live.install(host, record.hostnames.clone()) {
            if wrote
                && let Err(e) = self
                    .state
                    .swap_current(name, Some(record.version), replaces)
            {
                // The version stays recorded (and kept): a restart serves
                // it, which is what the swap just refused would have done.
                tracing::error!(
                    app = name,
                    version = record.version,
                    "refused, but cannot record the version it replaces as `current` again: {e}"
                );
            }
            return Err(HostError::Conflict(conflict.0));
        }
        // The new version's triggers start once it serves; the old ones
        // stop after, finishing what they had begun.
        self.swap_triggers(name, Some(&triggers));
        self.state.served(name, record.version);
        let mut warnings = Vec::new();
        if !prepared.app.warnings.is_empty() {
            warnings.push(prepared.app.warnings.to_string());
        }
        warnings.extend(self.host_name_notice(name, &record.hostnames));
        self.metrics.serving(name, Some(record.version));
        self.set_state(name, |s| {
            s.version = Some(record.version);
            s.status = AppStatus::Serving;
            s.error = None;
            s.refused = None;
            s.hostnames.clone_from(&record.hostnames);
            s.deployed_at = Some(record.deployed_at);
            s.components = details;
        });
        Ok(Activated {
            app: name.to_owned(),
            version: record.version,
            components,
            routes,
            warnings: (!warnings.is_empty()).then(|| warnings.join("\n")),
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Starts `triggers` (if any) as `name`'s, and stops the ones it had:
    /// they finish the invocations under way on their own. On a cluster's
    /// node, the one-node triggers start only while this node holds the
    /// app's lease ([`lead_triggers`](Self::lead_triggers)).
    fn swap_triggers(&self, name: &str, triggers: Option<&ferry_trigger::Triggers>) {
        let mut running = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
        // The old ones stop taking events before the new ones start: a
        // cron tick or a message never runs on both versions.
        let had = running.remove(name);
        let leading = had.as_ref().is_some_and(|t| t.one_node_running.is_some());
        let renewed = had.as_ref().and_then(|t| t.renewed);
        let stopped = had.map(AppTriggers::stop);
        if let Some(triggers) = triggers.filter(|t| !t.is_empty()) {
            let _enter = self.assembler.tokio.enter();
            let start = |t: &ferry_trigger::Triggers| {
                (!t.is_empty())
                    .then(|| t.start(Some(self.metrics.triggers()), self.assembler.traces))
            };
            let (every_node, one_node) = match self.state.shared() {
                true => {
                    let (every_node, one_node) = triggers.split();
                    (every_node, (!one_node.is_empty()).then_some(one_node))
                }
                false => (triggers.clone(), None),
            };
            // The lease held for the version before is this one's too.
            let one_node_running = one_node.as_ref().filter(|_| leading).and_then(start);
            running.insert(
                name.to_owned(),
                AppTriggers {
                    every_node: start(&every_node),
                    one_node,
                    one_node_running,
                    renewed,
                },
            );
        }
        drop(running);
        let kept: Vec<(String, String)> = triggers
            .into_iter()
            .flat_map(|t| t.iter().map(|t| (t.component.clone(), t.id.clone())))
            .collect();
        self.metrics.triggers().retain(name, &kept);
        if let Some(stopped) = stopped {
            self.assembler.tokio.spawn(stopped);
        }
    }

    /// What claiming `hostnames` for `name` takes from the apps routed by
    /// path, said to whoever deployed it: a host name reaches only the app
    /// that claims it, so those apps are no longer served on it.
    fn host_name_notice(&self, name: &str, hostnames: &[String]) -> Option<String> {
        if hostnames.is_empty() {
            return None;
        }
        let by_path: Vec<String> = self
            .live
            .current()
            .apps()
            .filter(|(host, names)| names.is_empty() && host.name() != name)
            .map(|(host, _)| format!("`{}`", host.name()))
            .collect();
        if by_path.is_empty() {
            return None;
        }
        let claimed: Vec<String> = hostnames.iter().map(|h| format!("`{h}`")).collect();
        Some(format!(
            "warning: every request to {} now reaches `{name}` only: the apps routed by path ({}) are no longer served on that name (a host name takes every request to it)",
            claimed.join(", "),
            by_path.join(", ")
        ))
    }
}

/// Wakes the heartbeat when dropped: after the change it guards is made
/// (and its lock released, the guard being declared first).
struct Told<'a>(&'a tokio::sync::Notify);

impl Drop for Told<'_> {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Whether an activation that cannot write `current` fails or serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recording {
    /// A deploy or rollback: refused, and the version serving stays.
    Required,
    /// A restore: the app serves; `current` still names what a restart
    /// restores (or falls back from).
    MayFail,
}

/// Refuses a version whose manifest or component sources lie outside its
/// tree once `..` and links are resolved — before any of them is read: the
/// client's paths are not trusted to stay in the bundle.
fn confine_to_tree(tree: &Path, manifest: &Path) -> Result<(), HostError> {
    let root = tree
        .canonicalize()
        .map_err(|e| HostError::Internal(format!("opening {}: {e}", tree.display())))?;
    // Lexically (`..` through a directory the bundle lacks cannot be
    // resolved on disk), then through the file system (links).
    let inside = |path: &Path| {
        path.strip_prefix(tree)
            .ok()
            .and_then(ferry_manifest::normalize_relative)
            .is_some()
            && path
                .canonicalize()
                .map_or(true, |real| real.starts_with(&root))
    };
    if !inside(manifest) {
        return Err(HostError::Invalid(format!(
            "the manifest `{}` is outside the bundle",
            summary::relative(tree, manifest)
        )));
    }
    let app = ferry_manifest::load_app(manifest)
        .map_err(|e| HostError::Invalid(format!("{:#}", anyhow::Error::from(e))))?;
    for component in &app.components {
        if let Source::File(path) = &component.source
            && !inside(path)
        {
            return Err(HostError::Invalid(format!(
                "component `{}`: its source `{}` is outside the bundle",
                component.id,
                summary::relative(tree, path)
            )));
        }
        if let Some(path) = component.dependency_files().find(|path| !inside(path)) {
            return Err(HostError::Invalid(format!(
                "component `{}`: its dependency `{}` is outside the bundle",
                component.id,
                summary::relative(tree, path)
            )));
        }
    }
    Ok(())
}

/// A name that could be an app's; any other names none (and never a path).
fn known_name(name: &str) -> Result<(), HostError> {
    ferry_api::valid_app_name(name).map_err(|_| no_app(name))
}

fn no_app(name: &str) -> HostError {
    HostError::NotFound(format!("no app called `{name}` is deployed"))
}

fn not_a_digest(digest: &str) -> HostError {
    HostError::BadRequest(format!(
        "`{digest}` is not a digest: expected sha256:<64 lower-case hex digits>"
    ))
}

/// Host names, lower-cased and checked: letters, digits, `-` and `.`.
fn valid_hostnames(names: &[String]) -> Result<Vec<String>, HostError> {
    let mut valid = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        let ok = !lower.is_empty()
            && lower.len() <= 253
            && lower
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63)
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return Err(HostError::BadRequest(format!(
                "`{name}` is not a host name (letters, digits, `-` and `.`, no port)"
            )));
        }
        if !valid.contains(&lower) {
            valid.push(lower);
        }
    }
    Ok(valid)
}

/// Every route of an app as it is reached: base included.
fn routes(router: &Router) -> Vec<String> {
    router.routes().iter().map(|r| r.pattern.full()).collect()
}

fn component_details(
    prepared: &assemble::Prepared,
    host: &LoadedApp,
    triggers: &ferry_trigger::Triggers,
    tree: &Path,
) -> Vec<ComponentSummary> {
    let app = &prepared.app;
    host.guests()
        .chain(triggers.guests())
        .filter_map(|guest| {
            let component = app.component(guest.id())?;
            Some(summary::summarize(
                app,
                component,
                guest,
                tree,
                summary::Variables::Written,
            ))
        })
        .collect()
}
