//! The seam between the control plane and where its desired state lives:
//! which apps exist, their versions (each a manifest path and a file list
//! of digests), which version of each should serve, and the files
//! themselves as content-addressed blobs.
//!
//! [`Host`](crate::host::Host) reads and writes only through
//! [`DesiredState`]. Its first implementation is the state directory
//! ([`StateDir`](crate::state::StateDir)); a replicated one (a cluster's)
//! stands beside it without touching deploy logic, which is why the serving
//! version changes only by compare-and-swap ([`DesiredState::swap_current`])
//! and every change is announced on a [`watch`](DesiredState::watch):
//! another writer may get there first, and other nodes must hear of it.
//!
//! What a node keeps for itself rather than shares — a version's files laid
//! out on its disk ([`DesiredState::tree`]), an app's data
//! ([`DesiredState::data_dir`]) — is named here too, so a deploy never
//! needs to know which implementation it runs on.

use std::path::PathBuf;

use ferry_api::Values;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one deployed version was made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// The manifest's path inside the bundle.
    pub manifest: String,
    /// Every file of the bundle: its path inside the bundle and its digest.
    pub files: BTreeMap<String, String>,
    /// The host names the app is reached by (none: any).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// When it was deployed, in seconds since the Unix epoch.
    pub deployed_at: u64,
}

/// What a node last said of itself ([`DesiredState::beat`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    /// When, in milliseconds since the Unix epoch (its clock).
    pub at_ms: u64,
    pub apps: Vec<ferry_api::NodeApp>,
}

/// Why [`DesiredState::put_blob`] stored nothing.
#[derive(Debug)]
pub enum BlobError {
    /// The upload is not what its digest names: the client's doing.
    Refused(String),
    /// It could not be written (a full disk, say): the host's.
    Write(anyhow::Error),
}

/// Why [`DesiredState::swap_current`] changed nothing.
#[derive(Debug)]
pub enum SwapError {
    /// Another writer changed the app's serving version first: this is
    /// what it is now.
    Changed { now: Option<u64> },
    /// It could not be written.
    Write(anyhow::Error),
}

impl std::fmt::Display for SwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Changed { now: Some(now) } => write!(
                f,
                "the app's serving version was changed meanwhile (now {now})"
            ),
            Self::Changed { now: None } => {
                f.write_str("the app's serving version was changed meanwhile (now none)")
            }
            Self::Write(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for SwapError {}

/// A change to the desired state, as [`DesiredState::watch`] announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The version of `app` that should serve is now `current` (`None`: no
    /// version; the app is not served).
    Current { app: String, current: Option<u64> },
    /// `app` was removed, with its versions and data.
    Removed { app: String },
    /// Changes may have been missed (a reconnect to a shared store): every
    /// app should be read again.
    Relist,
}

/// Why a write to a shared desired state could not be made: the store is
/// out of reach (a node cut off from its cluster). Nothing was changed, or
/// — for a write whose answer never came — nothing this node can confirm.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the cluster is unreachable: {}", self.0)
    }
}

impl std::error::Error for Unreachable {}

/// A store of desired state and content-addressed blobs (see the module
/// documentation). Every method may be called from many threads at once;
/// the host serialises the calls that concern one app.
pub trait DesiredState: Send + Sync {
    /// Whether the blob `digest` (`sha256:<hex>`) is stored. Asking may
    /// mark it as wanted, so that a clean-up spares it for the deploy about
    /// to use it.
    fn has_blob(&self, digest: &str) -> bool;

    /// The size of the blob `digest`, if it is stored.
    fn blob_size(&self, digest: &str) -> Option<u64>;

    /// Stores `bytes` as the blob `digest`, refused if they do not hash to
    /// it.
    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), BlobError>;

    /// Removes blobs no version of any app uses (sparing recent ones).
    fn remove_unused_blobs(&self);

    /// Every app, by name.
    fn app_names(&self) -> anyhow::Result<Vec<String>>;

    /// Whether anything of the app `name` is stored, what an earlier
    /// removal left included.
    fn has_app(&self, name: &str) -> bool;

    /// Every complete version of `name`, oldest first.
    fn versions(&self, name: &str) -> Vec<VersionRecord>;

    fn version(&self, name: &str, version: u64) -> Option<VersionRecord>;

    /// Adds a version of `name` made of blobs already stored, numbered one
    /// past the newest (the record's `version` is set to that number), with
    /// the variable values its deploy gave. Nothing is left if it fails.
    fn add_version(
        &self,
        name: &str,
        record: VersionRecord,
        variables: &Values,
    ) -> anyhow::Result<VersionRecord>;

    /// The variable values version `version` of `name` was deployed with.
    /// An unreadable record is an error: a version must not run without
    /// the values it was given.
    fn variables(&self, name: &str, version: u64) -> anyhow::Result<Values>;

    fn remove_version(&self, name: &str, version: u64);

    /// Removes every version of `name` but the newest `keep` (never the
    /// serving one); the blobs they leave unused go with the next
    /// [`remove_unused_blobs`](Self::remove_unused_blobs).
    fn prune(&self, name: &str, keep: usize) {
        let current = self.current(name);
        let versions = self.versions(name);
        let excess = versions.len().saturating_sub(keep);
        for record in versions.iter().take(excess) {
            if Some(record.version) != current {
                self.remove_version(name, record.version);
            }
        }
    }

    /// The version of `name` that should serve, if any.
    fn current(&self, name: &str) -> Option<u64>;

    /// Sets the version of `name` that should serve to `new` (`None`: no
    /// version) if it is still `expected`; otherwise changes nothing and
    /// says what it is now.
    fn swap_current(
        &self,
        name: &str,
        expected: Option<u64>,
        new: Option<u64>,
    ) -> Result<(), SwapError>;

    /// Takes the app `name` out of the desired state in one step, so that
    /// no restart (or other node) sees it again; its files may remain until
    /// [`purge_app`](Self::purge_app).
    fn retire_app(&self, name: &str) -> anyhow::Result<()>;

    /// Removes what [`retire_app`](Self::retire_app) set aside.
    fn purge_app(&self, name: &str) -> anyhow::Result<()>;

    /// Removes the app `name`: retired, then purged.
    fn remove_app(&self, name: &str) -> anyhow::Result<()> {
        self.retire_app(name)?;
        self.purge_app(name)
    }

    /// Changes from now on, whoever made them.
    fn watch(&self) -> tokio::sync::broadcast::Receiver<Change>;

    /// The version `record` of `name` laid out on this node's disk as its
    /// app directory (fetched first where this node does not have it yet).
    fn tree(&self, name: &str, record: &VersionRecord) -> anyhow::Result<PathBuf>;

    /// This node now serves `version` of `name`: what a node that keeps a
    /// copy of a shared state notes, to serve it again after a restart
    /// while the shared state is out of reach.
    fn served(&self, _name: &str, _version: u64) {}

    /// Tells the other nodes sharing this state what this node serves now
    /// (a heartbeat; nothing where none shares it).
    fn beat(&self, _apps: &[ferry_api::NodeApp]) {}

    /// Of `apps`, those whose one-node triggers
    /// ([`ferry_trigger::Source::one_node`]) this node may run now: it
    /// holds (took or renewed) each one's lease among the nodes sharing
    /// this state. Where none shares it, all of them.
    fn lead(&self, apps: &[String]) -> Vec<String> {
        apps.to_vec()
    }

    /// Gives up this node's lease on `app`'s one-node triggers, if it holds
    /// it, for another node to take at once.
    fn release(&self, _app: &str) {}

    /// The nodes sharing this state that beat lately, each with when and
    /// what it last reported (none: nothing shares it).
    fn nodes(&self) -> anyhow::Result<Option<Vec<Heartbeat>>> {
        Ok(None)
    }

    /// Where the apps' `default` key-value stores live when their runtime
    /// config does not say: on a cluster, its NATS servers, so that every
    /// node serves one store (none: each app's data directory).
    fn guest_stores(&self) -> Option<ferry_store::NatsDatabase> {
        None
    }

    /// Whether the shared state is within reach now (always, where none is
    /// shared).
    fn reachable(&self) -> bool {
        true
    }

    /// Whether other writers share this state (a cluster): then what this
    /// node finds half-done may be another node's deploy in progress, not a
    /// crash's leftovers.
    fn shared(&self) -> bool {
        false
    }

    /// Where the app keeps its key-value stores and databases on this node.
    fn data_dir(&self, name: &str) -> PathBuf;
}
