//! Registry credentials: where `ferry registry login` keeps them and where
//! pushes and pulls look for them.
//!
//! Looked up in order, the first that has the registry winning:
//! 1. Ferry's own file, `$XDG_CONFIG_HOME/ferry/registry-auth.json`
//!    (`~/.config/ferry/…`), which `ferry registry login` writes;
//! 2. Spin's, `$XDG_CONFIG_HOME/fermyon/registry-auth.json`, so a
//!    `spin registry login` is honoured;
//! 3. Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): its `auths` entries. Credential helpers
//!    (`credsStore`, `credHelpers`) are not run.
//!
//! Ferry's and Spin's files share one shape, `{"auths": {"<registry>":
//! "<base64 of user:password>"}}`, keyed by the registry's host (and port).
//! Ferry's is written with mode 0600 and replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A user name and password (or token) for one registry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The password stays out of logs and panics.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
}

/// The key a registry's credentials are kept under: its host and port,
/// with Docker Hub's aliases made one.
pub fn registry_key(registry: &str) -> String {
    let host = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".into(),
        _ => host,
    }
}

pub(crate) fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
}

/// Ferry's credentials file.
pub fn ferry_file() -> Option<PathBuf> {
    config_dir().map(|d| d.join("ferry").join("registry-auth.json"))
}

fn spin_file() -> Option<PathBuf> {
    config_dir().map(|d| d.join("fermyon").join("registry-auth.json"))
}

fn docker_file() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
        .map(|d| d.join("config.json"))
}

/// The credentials for `registry`, and where they came from; `None` means
/// anonymous. A file that exists but cannot be read is an error, so a typo
/// in it is not mistaken for "no credentials".
pub fn lookup(registry: &str) -> anyhow::Result<Option<(Credentials, PathBuf)>> {
    let key = registry_key(registry);
    for file in [ferry_file(), spin_file()].into_iter().flatten() {
        if let Some(auth) = read_json::<AuthFile>(&file)?
            && let Some(encoded) = auth.auths.iter().find(|(k, _)| registry_key(k) == key)
        {
            return Ok(Some((decode(encoded.1, &file)?, file)));
        }
    }
    if let Some(file) = docker_file()
        && let Some(config) = read_json::<DockerConfig>(&file)?
        && let Some(encoded) = config
            .auths
            .iter()
            .filter(|(k, _)| registry_key(k) == key)
            .find_map(|(_, a)| a.auth.as_ref())
    {
        return Ok(Some((decode(encoded, &file)?, file)));
    }
    Ok(None)
}

/// Keeps `credentials` for `registry` in Ferry's file; returns its path.
pub fn save(registry: &str, credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let file = ferry_file().context("no home directory to keep credentials in (set HOME)")?;
    let mut auth = read_json::<AuthFile>(&file)?.unwrap_or_default();
    let pair = format!("{}:{}", credentials.username, credentials.password);
    auth.auths
        .insert(registry_key(registry), STANDARD.encode(pair));
    let dir = file.parent().context("credentials file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".registry-auth")
        .tempfile_in(dir)?;
    // tempfile creates files readable by their owner only.
    serde_json::to_writer_pretty(&mut temp, &auth)?;
    temp.persist(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading registry credentials from {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

fn decode(encoded: &str, file: &Path) -> anyhow::Result<Credentials> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .with_context(|| {
            format!(
                "{}: a registry's credentials are not base64 of `user:password`",
                file.display()
            )
        })?;
    let (username, password) = bytes.split_once(':').with_context(|| {
        format!(
            "{}: a registry's credentials are not base64 of `user:password`",
            file.display()
        )
    })?;
    Ok(Credentials {
        username: username.into(),
        password: password.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hosts_with_docker_hub_made_one() {
        assert_eq!(registry_key("https://GHCR.io/v2/"), "ghcr.io");
        assert_eq!(registry_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            registry_key("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(registry_key("docker.io"), "index.docker.io");
    }
}
