//! Spin's locked app (`spin-locked-app`'s `LockedApp`), the JSON an app's
//! artifact carries as its last layer: the manifest resolved, with every
//! Wasm and file named by its digest.
//!
//! These types read what Spin writes and write what Spin reads; fields
//! Ferry has no use for are kept as JSON so nothing is lost on the way.
//! Unknown top-level fields are ignored, as Spin ignores them; an unknown
//! `must_understand` entry is refused, as Spin refuses it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The newest `spin_lock_version` Spin (and Ferry) reads.
pub const MAX_LOCK_VERSION: u64 = 1;

/// What a reader must understand to run the app.
pub const MUST_UNDERSTAND: [&str; 2] = ["host_requirements", "component_host_requirements"];

/// The host requirements Ferry meets (`*.spin.internal` chaining and
/// middleware).
pub const HOST_REQUIREMENTS: [&str; 2] = ["local_service_chaining", "middleware"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockedApp {
    pub spin_lock_version: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub host_requirements: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Variable>,
    pub triggers: Vec<Trigger>,
    pub components: Vec<Component>,
}

/// An application variable: required when it has no default.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trigger {
    pub id: String,
    pub trigger_type: String,
    /// The manifest's trigger table, its `component` an id.
    pub trigger_config: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    pub id: String,
    /// `description`, `allowed_outbound_hosts`, `key_value_stores`,
    /// `databases` (the manifest's `sqlite_databases`), `ai_models`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Each file the guest sees, by its path under `/` (no leading `/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ContentPath>,
    /// `[component.<id>.variables]`, as templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, Dependency>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub host_requirements: Map<String, Value>,
}

/// A Wasm source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub content_type: String,
    #[serde(flatten)]
    pub content: ContentRef,
}

/// Content by digest, inline (small content, unpadded base64) or by URL;
/// an artifact's content always has a digest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentPath {
    #[serde(flatten)]
    pub content: ContentRef,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dependency {
    pub source: Source,
    /// Spin writes `null` when there is none.
    pub export: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<Inherit>,
}

/// Which of its parent's capability sets a dependency keeps; Spin's
/// default (absent) is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Inherit {
    All,
    Some(Vec<String>),
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl LockedApp {
    /// Refuses what this version of the format cannot run.
    pub fn check_understood(&self) -> anyhow::Result<()> {
        if self.spin_lock_version > MAX_LOCK_VERSION {
            anyhow::bail!(
                "the app is locked in format version {}; Ferry reads up to {MAX_LOCK_VERSION}",
                self.spin_lock_version
            );
        }
        if let Some(unknown) = self
            .must_understand
            .iter()
            .find(|m| !MUST_UNDERSTAND.contains(&m.as_str()))
        {
            anyhow::bail!(
                "the app needs a host that understands `{unknown}`, which Ferry does not"
            );
        }
        let requirements = self.host_requirements.keys().chain(
            self.components
                .iter()
                .flat_map(|c| c.host_requirements.keys()),
        );
        for requirement in requirements {
            if !HOST_REQUIREMENTS.contains(&requirement.as_str()) {
                anyhow::bail!(
                    "the app requires `{requirement}` of its host, which Ferry does not provide"
                );
            }
        }
        Ok(())
    }
}
