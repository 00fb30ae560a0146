//! The admin API of a live host (`ferry serve`), as types: what `ferry
//! deploy`, `ferry apps` and the other admin commands send and what the
//! host answers, and the checks both sides make of names, digests and
//! bundle paths.
//!
//! The host serialises these types and the client deserialises the same
//! ones, so a renamed or retyped field fails to compile on one side or to
//! parse on the other, never prints blanks. `docs/admin-api.yaml` is the
//! published contract these types keep.
//!
//! Beside the API proper, what host and client both print or check: the
//! [`Failure`]s that decide the exit code, sizes and durations for people
//! ([`human`]), the variable values a deploy gives ([`values`]) and, with
//! the `https` feature, how Ferry's HTTPS clients trust servers.
//!
//! This crate knows nothing of wasmtime, the admin API's server or the
//! state directory.

mod failure;
#[cfg(feature = "https")]
pub mod https;
pub mod human;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use failure::Failure;
pub use validate::{digest_hex, sha256_digest, valid_app_name, valid_bundle_path};

/// `POST /v1/apps/{name}/versions`: a bundle already uploaded blob by blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The manifest's path in the bundle.
    pub manifest: String,
    /// Every file of the bundle, by path: its digest (`sha256:<hex>`).
    pub files: BTreeMap<String, String>,
    /// Host names the app is reached by; none: by its routes on any.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Values for the app's variables, by name: stored with this version
    /// only (a deploy gives all of its values), never shown. Sent only when
    /// there are any: a host from before per-app variables refuses the
    /// field, and a deploy without them works there.
    #[serde(default, skip_serializing_if = "Values::is_empty")]
    pub variables: Values,
}

/// `POST /v1/blobs/missing`: which of these the host lacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    pub digests: Vec<String>,
}

/// The answer to [`MissingRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Missing {
    pub missing: Vec<String>,
}

/// The answer to `PUT /v1/blobs/{digest}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Uploaded {
    pub digest: String,
}

/// `POST /v1/apps/{name}/rollback`: to this version, or the one before
/// the current.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub to: Option<u64>,
}

/// The answer to `DELETE /v1/apps/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

/// Every refusal's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activated {
    pub app: String,
    pub version: u64,
    /// Each component, and whether it was compiled or found compiled.
    pub components: Vec<Compiled>,
    pub routes: Vec<String>,
    /// Manifest warnings (legacy syntax and the like), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<String>,
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Compiled {
    pub id: String,
    pub from_cache: bool,
    pub compile_ms: f64,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppList {
    pub apps: Vec<AppSummary>,
}

/// Whether an app serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    Serving,
    /// Being restored at the host's start.
    Restoring,
    /// Its version could not be restored (see the error).
    Failed,
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Serving => "serving",
            Self::Restoring => "restoring",
            Self::Failed => "failed",
        })
    }
}

/// One app as `GET /v1/apps` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppSummary {
    pub name: String,
    /// The version serving; none while it is restored or if it failed to be.
    pub version: Option<u64>,
    pub status: AppStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub routes: Vec<String>,
    pub hostnames: Vec<String>,
    pub deployed_at: Option<String>,
}

/// One app as one node of a cluster serves it (`GET /v1/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeApp {
    pub name: String,
    /// The version it serves; none while it is restored or if it failed to be.
    pub version: Option<u64>,
    pub status: AppStatus,
    /// Why it does not serve the version the cluster names, if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The version the cluster names that this node could not activate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
}

/// One node of a cluster, as its last heartbeat reported it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSummary {
    pub name: String,
    /// When its last heartbeat was sent.
    pub heartbeat_at: String,
    /// How long before the answer that was, in milliseconds (by the
    /// answering node's clock).
    pub heartbeat_age_ms: u64,
    pub apps: Vec<NodeApp>,
    /// The apps it does not serve at the version the cluster names: still
    /// converging, or unable to (its app's `error` says why).
    pub behind: Vec<String>,
}

/// `GET /v1/nodes`: every live node of the cluster (a node that missed its
/// heartbeats for 15 s is no longer listed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeList {
    /// Whether the host is a cluster's node at all (`ferry serve --cluster`).
    pub cluster: bool,
    pub nodes: Vec<NodeSummary>,
}

/// One app as `GET /v1/apps/{name}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppDetail {
    #[serde(flatten)]
    pub summary: AppSummary,
    pub components: Vec<ComponentSummary>,
    pub versions: Vec<VersionSummary>,
}

/// A loaded component and what it is granted: what `ferry check` prints
/// for each component and `GET /v1/apps/{name}` returns for the serving
/// version's (rendered by [`ComponentSummary::render`] for both).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentSummary {
    pub id: String,
    /// Its file (relative to the app directory), or its URL and digest.
    pub source: String,
    pub wasm_bytes: u64,
    /// `wasi:http`, `wagi`, or the event trigger type (`redis`, `cron`).
    pub executor: String,
    /// A WAGI component's command line and entry point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wagi: Option<WagiSummary>,
    pub routes: Vec<String>,
    /// Each event trigger that runs it (`redis trigger \`id\`: channel …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// The interface it exports and Ferry calls, and how its
    /// bytes were adapted first, if they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serves: Option<String>,
    /// Imported interfaces (components) or modules (core modules).
    #[serde(default)]
    pub imports: Vec<String>,
    /// Imports Ferry links but does not provide: calls return the
    /// interface's error.
    #[serde(default)]
    pub unsupported: Vec<String>,
    /// The components of its app it may reach by service chaining
    /// (`http://<id>.spin.internal`), as its grants allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains_to: Vec<String>,
    /// How it was composed with its dependencies and middleware: which
    /// import each satisfies, the middleware chain, what each is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub composed: Vec<String>,
    /// Environment variable names only.
    pub environment: Vec<String>,
    /// `key = value` lines; never a secret's value.
    pub variables: Vec<String>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// Each `files` entry and where the guest sees it.
    pub files: Vec<String>,
    pub limits: String,
}

/// A WAGI component's `argv` template and entry point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WagiSummary {
    pub argv: String,
    pub entrypoint: String,
}

impl ComponentSummary {
    /// The component for people, as `ferry check` and `ferry app show`
    /// print it.
    pub fn render(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "\ncomponent `{}` ({}, {})",
            self.id,
            self.source,
            human::human_size(self.wasm_bytes)
        )?;
        let executor = match &self.wagi {
            Some(wagi) => format!(
                "{}, argv \"{}\", entrypoint {}",
                self.executor, wagi.argv, wagi.entrypoint
            ),
            None => self.executor.clone(),
        };
        for trigger in &self.triggers {
            writeln!(out, "  trigger    {trigger}")?;
        }
        if self.routes.is_empty() && self.triggers.is_empty() {
            writeln!(out, "  route      (none) ({executor})")?;
        }
        for route in &self.routes {
            writeln!(out, "  route      {route} ({executor})")?;
        }
        if let Some(serves) = &self.serves {
            writeln!(out, "  serves     {serves}")?;
        }
        for (n, line) in self.composed.iter().enumerate() {
            let label = if n == 0 { "composed" } else { "" };
            writeln!(out, "  {label:<10} {line}")?;
        }
        writeln!(out, "  imports    {}", listed(&self.imports))?;
        if !self.unsupported.is_empty() {
            writeln!(
                out,
                "  linked, not supported (calls return the interface's error)\n             {}",
                self.unsupported.join(", ")
            )?;
        }
        writeln!(out, "  env        {}", listed(&self.environment))?;
        writeln!(out, "  variables  {}", listed(&self.variables))?;
        writeln!(out, "  key-value  {}", listed(&self.key_value_stores))?;
        writeln!(out, "  sqlite     {}", listed(&self.sqlite_databases))?;
        let files = if self.files.is_empty() {
            "(none)".to_owned()
        } else {
            format!("{} (read-only)", self.files.join(", "))
        };
        writeln!(out, "  files      {files}")?;
        writeln!(out, "  outbound   {}", listed(&self.allowed_outbound_hosts))?;
        if !self.chains_to.is_empty() {
            writeln!(out, "  chains to  {}", self.chains_to.join(", "))?;
        }
        writeln!(out, "  limits     {}", self.limits)
    }
}

/// `items` joined with commas, or `(none)`.
pub fn listed(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join(", ")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionSummary {
    pub version: u64,
    pub deployed_at: String,
    pub current: bool,
    pub files: usize,
}

/// One line a guest wrote to stdout or stderr, as `GET
/// /v1/apps/{name}/logs` streams it (its control characters escaped), and
/// a failure as the dashboard lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestLine {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub level: String,
    pub app: String,
    pub component: String,
    pub route: String,
    pub request_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// A failure's status (failures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    pub message: String,
    /// Which life of its app the line is from (0: not known); the host's
    /// own bookkeeping, never sent.
    #[serde(skip)]
    pub incarnation: u64,
}

/// In a followed log stream, in place of the lines a follower that fell
/// behind missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub dropped: u64,
}

/// One entry of a log stream: a line, or how many were dropped.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogEntry {
    // First: a line's fields all have defaults, so it would take anything.
    Dropped(Dropped),
    Line(Box<GuestLine>),
}

/// Variable names and their values. Its `Debug` shows only the names;
/// as JSON it is an object of names and string values, and a malformed one
/// is described without repeating what was sent.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Values(pub BTreeMap<String, String>);

impl Values {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of variable names and string values")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Values, E> {
                Err(E::custom(
                    "`variables` must be an object of variable names and string values, not a string",
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Values, A::Error> {
                let mut values = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value::<Text>().map_err(|_| {
                        serde::de::Error::custom(format!(
                            "variable `{}`: the value must be a string",
                            name.escape_debug()
                        ))
                    })?;
                    values.insert(name, value.0);
                }
                Ok(Values(values))
            }
        }
        // `any`, not `map`: serde_json's error for a string where a map
        // is expected would quote the string.
        deserializer.deserialize_any(Visitor)
    }
}

/// A string, whose error for anything else does not repeat it.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the host writes, the client reads back whole.
    #[test]
    fn an_app_detail_reads_back_as_written() {
        let detail = AppDetail {
            summary: AppSummary {
                name: "a".into(),
                version: Some(2),
                status: AppStatus::Failed,
                error: Some("no".into()),
                routes: vec!["/...".into()],
                hostnames: vec![],
                deployed_at: None,
            },
            components: vec![],
            versions: vec![VersionSummary {
                version: 2,
                deployed_at: "2026-12-06T00:00:00Z".into(),
                current: true,
                files: 3,
            }],
        };
        let text = serde_json::to_string(&detail).unwrap();
        assert!(text.contains(r#""status":"failed""#), "{text}");
        let back: AppDetail = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }

    #[test]
    fn values_never_show_and_a_bad_one_is_not_repeated() {
        let values: Values = serde_json::from_str(r#"{"token": "hush"}"#).unwrap();
        assert_eq!(format!("{values:?}"), r#"{"token"}"#);
        let error = serde_json::from_str::<Values>(r#"{"token": 12345}"#).unwrap_err();
        assert!(error.to_string().contains("variable `token`"), "{error}");
        assert!(!error.to_string().contains("12345"), "{error}");
        let error = serde_json::from_str::<Values>(r#""hush""#).unwrap_err();
        assert!(!error.to_string().contains("hush"), "{error}");
    }
}
