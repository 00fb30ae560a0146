//! The live host in process: `ferry_control::host::Host` driven through its
//! methods (no admin API, no process), against the `DesiredState` trait —
//! the state directory itself, and the state directory with another writer
//! or a failing disk in the way, as a replicated store would have them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_api::{AppStatus, DeployRequest, Values};
use ferry_control::assemble::{Assembler, Settings, SizedBy};
use ferry_control::desired::{BlobError, Change, DesiredState, SwapError, VersionRecord};
use ferry_control::host::{BundleLimits, Host, HostError};
use ferry_control::metrics::Metrics;
use ferry_control::state::StateDir;
use ferry_control::variables::Sources;
use ferry_runtime::{CompileCache, EngineOptions, Runtime};
use ferry_server::LiveApps;

use crate::support::{HTTP_GUEST, cache_dir, sha256};

/// A host on `state`, with the engine, app table and runtime it needs.
struct InProcess {
    host: Host,
    live: Arc<LiveApps>,
    // Drives the stores' I/O while the host's calls wait on it.
    _tokio: tokio::runtime::Runtime,
}

impl InProcess {
    fn new(state: Arc<dyn DesiredState>) -> Self {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let runtime = Arc::new(
            Runtime::new(
                &EngineOptions {
                    max_memory: 128 << 20,
                    max_instances: 8,
                    ..EngineOptions::default()
                },
                CompileCache::new(Some(cache_dir())),
            )
            .unwrap(),
        );
        let metrics = Metrics::new();
        let live = LiveApps::observed(Some(metrics.server()), false);
        let host = Host::new(
            state,
            live.clone(),
            Assembler {
                runtime,
                // Nothing listens: these apps are never called over HTTP.
                local: Some("127.0.0.1:9".parse().unwrap()),
                tokio: tokio.handle().clone(),
                metrics: Some(metrics.clone()),
                sized_by: SizedBy::Flag,
                traces: false,
            },
            Settings {
                limits: Default::default(),
                cache_dir: Some(cache_dir()),
                max_download_size: 1 << 20,
                download_timeout: Duration::from_secs(5),
                variables: Sources::Host {
                    environment: Values::default(),
                    deployed: Values::default(),
                },
                environment: Vec::new(),
                component_ids: Vec::new(),
                registry_credentials: false,
            },
            BundleLimits {
                max_bundle_size: 64 << 20,
                max_files: 100,
            },
            3,
            metrics,
        );
        Self {
            host,
            live,
            _tokio: tokio,
        }
    }

    /// Uploads an app called `name` whose guest greets `greeting`, and
    /// deploys it.
    fn deploy(&self, name: &str, greeting: &str) -> Result<u64, HostError> {
        let manifest = format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\n\n\
             [[trigger.http]]\nroute = \"/{name}/...\"\ncomponent = \"guest\"\n\n\
             [component.guest]\nsource = \"guest.wasm\"\n\
             environment = {{ NAME = \"{greeting}\" }}\n"
        );
        let guest = std::fs::read(HTTP_GUEST).unwrap();
        let mut files = BTreeMap::new();
        for (path, bytes) in [("spin.toml", manifest.into_bytes()), ("guest.wasm", guest)] {
            let digest = sha256(&bytes);
            if !self
                .host
                .missing_blobs(std::slice::from_ref(&digest))?
                .is_empty()
            {
                self.host.put_blob(&digest, &bytes)?;
            }
            files.insert(path.to_owned(), digest);
        }
        let done = self.host.deploy(
            name,
            DeployRequest {
                manifest: "spin.toml".into(),
                files,
                hostnames: Vec::new(),
                variables: Values::default(),
            },
        )?;
        Ok(done.version)
    }

    fn serving(&self, name: &str) -> Option<u64> {
        self.live.app(name)?;
        let shown = self.host.show(name).ok()?;
        (shown.summary.status == AppStatus::Serving)
            .then_some(shown.summary.version)
            .flatten()
    }
}

/// Every change the watch has announced so far.
fn seen(changes: &mut tokio::sync::broadcast::Receiver<Change>) -> Vec<Change> {
    std::iter::from_fn(|| changes.try_recv().ok()).collect()
}

fn current(app: &str, current: Option<u64>) -> Change {
    Change::Current {
        app: app.into(),
        current,
    }
}

/// Deploy, deploy again, roll back, delete: each decision reaches the
/// desired state (and its watchers) as one compare-and-swap, and what is
/// served follows it.
#[test]
fn every_decision_is_a_swap_of_the_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(StateDir::open(dir.path()).unwrap());
    let mut changes = state.watch();
    let host = InProcess::new(state.clone());

    assert_eq!(host.deploy("shop", "one").unwrap(), 1);
    assert_eq!(host.deploy("shop", "two").unwrap(), 2);
    assert_eq!(host.serving("shop"), Some(2));
    assert_eq!(state.current("shop"), Some(2));

    assert_eq!(host.host.rollback("shop", None).unwrap().version, 1);
    assert_eq!(
        (host.serving("shop"), state.current("shop")),
        (Some(1), Some(1))
    );

    host.host.delete("shop").unwrap();
    assert!(host.live.app("shop").is_none());
    assert!(!state.has_app("shop"));
    assert_eq!(
        seen(&mut changes),
        [
            current("shop", Some(1)),
            current("shop", Some(2)),
            current("shop", Some(1)),
            Change::Removed { app: "shop".into() },
        ]
    );

    // A host started again on the same state serves what it says.
    assert_eq!(host.deploy("shop", "three").unwrap(), 1);
    drop(host);
    let again = InProcess::new(state.clone());
    again.host.restore();
    assert_eq!(again.serving("shop"), Some(1));
}

/// Another writer (another node, in a cluster) changes the serving version
/// while a deploy compiles, after the host decided what the deploy
/// replaces: the deploy is refused as a conflict, the other writer's
/// decision stands, and the refused version is not kept.
#[test]
fn a_deploy_that_loses_the_race_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inner = StateDir::open(dir.path()).unwrap();
    let state = Arc::new(Intercepted::new(inner));
    let host = InProcess::new(state.clone());
    host.deploy("shop", "one").unwrap();
    host.deploy("shop", "two").unwrap();

    // The other writer rolls `shop` back to 1 once the new version is
    // stored, while the host goes on to compile it.
    state.after_next_version(|inner| inner.swap_current("shop", Some(2), Some(1)).unwrap());
    match host.deploy("shop", "three") {
        Err(HostError::Conflict(message)) => {
            assert!(message.contains("changed meanwhile (now 1)"), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(state.current("shop"), Some(1));
    let kept: Vec<u64> = state.versions("shop").iter().map(|r| r.version).collect();
    assert_eq!(kept, [1, 2]);
    // This host still serves what it last installed; following the other
    // writer is the cluster's job (its watch).
    assert_eq!(host.serving("shop"), Some(2));
}

/// The serving version cannot be recorded (a full disk, an unreachable
/// store): a first deploy is refused as the host's failure and leaves no
/// app behind, served or stored.
#[test]
fn a_deploy_whose_swap_fails_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(Intercepted::new(StateDir::open(dir.path()).unwrap()));
    let host = InProcess::new(state.clone());
    state.fail_next_swap();
    match host.deploy("shop", "one") {
        Err(HostError::Internal(message)) => assert!(message.contains("disk full"), "{message}"),
        other => panic!("expected the host's failure, got {other:?}"),
    }
    assert!(host.live.app("shop").is_none());
    assert!(!state.has_app("shop"));
    assert!(host.host.show("shop").is_err());
    // The next attempt, with the store back, deploys as the first.
    assert_eq!(host.deploy("shop", "one").unwrap(), 1);
    assert_eq!(host.serving("shop"), Some(1));
}

type Hook = Box<dyn FnOnce(&StateDir) + Send>;

/// The state directory, with another writer's change made right after the
/// next version is stored, or the next swap of a serving version failing.
struct Intercepted {
    inner: StateDir,
    after_version: Mutex<Option<Hook>>,
    fail: Mutex<bool>,
}

impl Intercepted {
    fn new(inner: StateDir) -> Self {
        Self {
            inner,
            after_version: Mutex::default(),
            fail: Mutex::default(),
        }
    }

    fn after_next_version(&self, hook: impl FnOnce(&StateDir) + Send + 'static) {
        *self.after_version.lock().unwrap() = Some(Box::new(hook));
    }

    fn fail_next_swap(&self) {
        *self.fail.lock().unwrap() = true;
    }
}

impl DesiredState for Intercepted {
    fn swap_current(
        &self,
        name: &str,
        expected: Option<u64>,
        new: Option<u64>,
    ) -> Result<(), SwapError> {
        if std::mem::take(&mut *self.fail.lock().unwrap()) {
            return Err(SwapError::Write(anyhow::anyhow!("disk full")));
        }
        self.inner.swap_current(name, expected, new)
    }

    fn has_blob(&self, digest: &str) -> bool {
        self.inner.has_blob(digest)
    }
    fn blob_size(&self, digest: &str) -> Option<u64> {
        self.inner.blob_size(digest)
    }
    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), BlobError> {
        self.inner.put_blob(digest, bytes)
    }
    fn remove_unused_blobs(&self) {
        self.inner.remove_unused_blobs();
    }
    fn app_names(&self) -> anyhow::Result<Vec<String>> {
        self.inner.app_names()
    }
    fn has_app(&self, name: &str) -> bool {
        self.inner.has_app(name)
    }
    fn versions(&self, name: &str) -> Vec<VersionRecord> {
        self.inner.versions(name)
    }
    fn version(&self, name: &str, version: u64) -> Option<VersionRecord> {
        self.inner.version(name, version)
    }
    fn add_version(
        &self,
        name: &str,
        record: VersionRecord,
        variables: &Values,
    ) -> anyhow::Result<VersionRecord> {
        let added = self.inner.add_version(name, record, variables)?;
        if let Some(hook) = self.after_version.lock().unwrap().take() {
            hook(&self.inner);
        }
        Ok(added)
    }
    fn variables(&self, name: &str, version: u64) -> anyhow::Result<Values> {
        self.inner.variables(name, version)
    }
    fn remove_version(&self, name: &str, version: u64) {
        self.inner.remove_version(name, version);
    }
    fn prune(&self, name: &str, keep: usize) {
        self.inner.prune(name, keep);
    }
    fn current(&self, name: &str) -> Option<u64> {
        self.inner.current(name)
    }
    fn retire_app(&self, name: &str) -> anyhow::Result<()> {
        self.inner.retire_app(name)
    }
    fn purge_app(&self, name: &str) -> anyhow::Result<()> {
        self.inner.purge_app(name)
    }
    fn watch(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner.watch()
    }
    fn tree(&self, name: &str, record: &VersionRecord) -> anyhow::Result<PathBuf> {
        self.inner.tree(name, record)
    }
    fn data_dir(&self, name: &str) -> PathBuf {
        self.inner.data_dir(name)
    }
}
