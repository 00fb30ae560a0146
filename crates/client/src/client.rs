//! The admin API's client: `ferry deploy`, `apps`, `app show`, `rollback`
//! and `delete` against a live host.
//!
//! A deploy collects the app's [`Bundle`], asks the host which of its files'
//! digests it lacks, uploads only those, then creates the version from the
//! file list: an unchanged component is neither sent nor compiled again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::bundle::Bundle;
use ferry_api::Failure;
use ferry_api::https::{describe, tls_config};
use ferry_api::human::{human_duration, human_size};
use ferry_api::{
    Activated, AppDetail, AppList, AppStatus, DeployRequest, Missing, MissingRequest, NodeList,
    RollbackRequest,
};
use ferry_api::{Dropped, LogEntry, Values};

/// A live host's admin API, and the token to call it with.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `host` is the admin listener's URL; the token is read from
    /// `token_file`, else taken from `token` (`FERRY_TOKEN`).
    pub fn new(host: &str, token_file: Option<&Path>, token: Option<&str>) -> anyhow::Result<Self> {
        let token = match (token_file, token) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| {
                    Failure::usage(format!(
                        "cannot read the token file {}: {e}",
                        file.display()
                    ))
                })?
                .trim()
                .to_owned(),
            (None, Some(token)) => token.trim().to_owned(),
            (None, None) => {
                return Err(Failure::usage(
                    "no admin token: give --token-file FILE or set FERRY_TOKEN \
                     (`ferry serve` writes one to admin-token in its state directory)"
                        .into(),
                )
                .into());
            }
        };
        // The system's trust store only where it is needed: loading it costs
        // milliseconds a plain-HTTP admin call would pay on every command.
        let tls = if host.starts_with("https://") {
            tls_config()?
        } else {
            plain_http_tls()?
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self {
            base: host.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// Sends one call: the response if the host took it, else the host's
    /// error message (exit code 3 where it refused the app itself, as
    /// `ferry up` exits for an app that cannot be loaded).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| describe(e).context(format!("cannot reach the host at {}", self.base)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.map_err(describe)?;
        let message = serde_json::from_slice::<ferry_api::Refusal>(&bytes)
            .map(|refusal| refusal.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
        let exit_code = if matches!(status.as_u16(), 409 | 422) {
            3
        } else {
            1
        };
        Err(Failure::build(exit_code, format!("{method} {path}: {status}: {message}")).into())
    }

    /// Sends one call; the answer's JSON, or the host's error message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> anyhow::Result<Value> {
        let response = self.send(method, path, body).await?;
        let bytes = response.bytes().await.map_err(describe)?;
        serde_json::from_slice(&bytes).context("the host's answer is not JSON")
    }

    /// Sends `body` as JSON; the answer as `T`.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body)?;
        let answer = self
            .call(method, path, Some(reqwest::Body::from(body)))
            .await?;
        typed(answer)
    }

    /// Uploads what the host lacks of `bundle` and deploys it as `name`.
    pub async fn deploy(
        &self,
        bundle: &Bundle,
        name: &str,
        hostnames: &[String],
        variables: &Values,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<Activated> {
        let started = Instant::now();
        let digests: Vec<&str> = bundle.files.values().map(|f| f.digest.as_str()).collect();
        let missing: Missing = self
            .call_json(
                reqwest::Method::POST,
                "/v1/blobs/missing",
                &MissingRequest {
                    digests: digests.iter().map(|d| (*d).to_owned()).collect(),
                },
            )
            .await?;
        let missing: std::collections::BTreeSet<&str> =
            missing.missing.iter().map(String::as_str).collect();
        let mut sent = 0u64;
        let mut uploaded = std::collections::BTreeSet::new();
        for file in bundle.files.values() {
            if !missing.contains(file.digest.as_str()) || !uploaded.insert(file.digest.as_str()) {
                continue;
            }
            let bytes = std::fs::read(&file.path)
                .with_context(|| format!("reading {}", file.path.display()))?;
            sent += bytes.len() as u64;
            self.call(
                reqwest::Method::PUT,
                &format!("/v1/blobs/{}", file.digest),
                Some(reqwest::Body::from(bytes)),
            )
            .await?;
        }
        writeln!(
            out,
            "Uploaded {} of {} file(s) ({} of {}) in {}",
            uploaded.len(),
            bundle.files.len(),
            human_size(sent),
            human_size(bundle.total_size()),
            human_duration(started.elapsed())
        )?;
        let request = DeployRequest {
            manifest: bundle.manifest.clone(),
            files: bundle
                .files
                .iter()
                .map(|(path, f)| (path.clone(), f.digest.clone()))
                .collect(),
            hostnames: hostnames.to_vec(),
            variables: variables.clone(),
        };
        self.call_json(
            reqwest::Method::POST,
            &format!("/v1/apps/{name}/versions"),
            &request,
        )
        .await
    }

    /// `GET /v1/apps`, as the host wrote it (`ferry apps --json`); read it
    /// with [`typed`].
    pub async fn apps(&self) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, "/v1/apps", None).await
    }

    /// `GET /v1/apps/{name}`, as the host wrote it; read it with [`typed`].
    pub async fn show(&self, name: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, &format!("/v1/apps/{name}"), None)
            .await
    }

    /// `GET /v1/nodes`, as the host wrote it; read it with [`typed`].
    pub async fn nodes(&self) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, "/v1/nodes", None).await
    }

    /// `ferry deploy --wait`: waits until every live node of the host's
    /// cluster serves `version` of `app` — or says it cannot, or `limit`
    /// passes — printing each node's outcome as it is known. An error if
    /// any node does not serve it.
    pub async fn wait_for_nodes(
        &self,
        app: &str,
        version: u64,
        limit: Duration,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut told = std::collections::BTreeSet::new();
        loop {
            let list: NodeList = typed(self.nodes().await?)?;
            if !list.cluster {
                writeln!(
                    out,
                    "This host is no cluster's node: no other node to wait for"
                )?;
                return Ok(());
            }
            let mut waiting = Vec::new();
            let mut refused = 0;
            for node in &list.nodes {
                let served = node.apps.iter().find(|a| a.name == app);
                let outcome = match served {
                    Some(a) if a.version == Some(version) && a.status == AppStatus::Serving => {
                        format!(
                            "serving version {version} after {}",
                            human_duration(started.elapsed())
                        )
                    }
                    Some(a) if a.refused == Some(version) => {
                        refused += 1;
                        format!(
                            "cannot serve version {version}: {}",
                            a.error.as_deref().unwrap_or("no reason given")
                        )
                    }
                    _ => {
                        waiting.push((node, served));
                        continue;
                    }
                };
                if told.insert(node.name.clone()) {
                    writeln!(out, "  node `{}`: {outcome}", node.name)?;
                }
            }
            if waiting.is_empty() {
                if refused > 0 {
                    bail!(
                        "{refused} of {} nodes cannot serve version {version} of `{app}`",
                        list.nodes.len()
                    );
                }
                return Ok(());
            }
            if started.elapsed() >= limit {
                for (node, served) in &waiting {
                    let at = served
                        .and_then(|a| a.version)
                        .map_or_else(|| "no version".to_owned(), |v| format!("version {v}"));
                    writeln!(
                        out,
                        "  node `{}`: still at {at} after {}",
                        node.name,
                        human_duration(limit)
                    )?;
                }
                bail!(
                    "{} of {} nodes do not serve version {version} of `{app}` yet",
                    waiting.len(),
                    list.nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn rollback(&self, name: &str, to: Option<u64>) -> anyhow::Result<Activated> {
        self.call_json(
            reqwest::Method::POST,
            &format!("/v1/apps/{name}/rollback"),
            &RollbackRequest { to },
        )
        .await
    }

    /// `ferry logs`: prints the app's kept guest lines (and, following,
    /// each new one) to `out` as they arrive: JSON lines with `json`, else
    /// one readable line each.
    pub async fn logs(
        &self,
        name: &str,
        follow: bool,
        json: bool,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        let path = format!(
            "/v1/apps/{name}/logs{}",
            if follow { "?follow=true" } else { "" }
        );
        let mut response = self.send(reqwest::Method::GET, &path, None).await?;
        let mut pending = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                // A blank line is the host's keep-alive while nothing is
                // written.
                if line.trim().is_empty() {
                    continue;
                }
                if json {
                    writeln!(out, "{}", json_line(&line))?;
                } else {
                    writeln!(out, "{}", readable_line(&line))?;
                }
            }
            out.flush()?;
        }
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, &format!("/v1/apps/{name}"), None)
            .await
    }
}

/// An answer of the host's as the type the admin API gives it.
pub fn typed<T: serde::de::DeserializeOwned>(answer: Value) -> anyhow::Result<T> {
    serde_json::from_value(answer)
        .context("the host's answer is not what this client expects (a host of another version?)")
}

/// Prints what a deploy or rollback did.
pub fn print_activated(
    out: &mut dyn std::io::Write,
    done: &Activated,
    verb: &str,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "{verb} `{}` version {} in {}",
        done.app,
        done.version,
        human_duration(Duration::from_secs_f64(done.elapsed_ms / 1000.0))
    )?;
    for component in &done.components {
        writeln!(
            out,
            "  {} `{}` in {}",
            if component.from_cache {
                "loaded compiled"
            } else {
                "compiled"
            },
            component.id,
            human_duration(Duration::from_secs_f64(component.compile_ms / 1000.0))
        )?;
    }
    for route in &done.routes {
        writeln!(out, "  route {route}")?;
    }
    if let Some(warnings) = &done.warnings {
        writeln!(out, "\n{warnings}")?;
    }
    Ok(())
}

/// `ferry apps`: one line per app.
pub fn print_apps(out: &mut dyn std::io::Write, apps: &AppList) -> anyhow::Result<()> {
    let apps = &apps.apps;
    if apps.is_empty() {
        writeln!(out, "No apps deployed")?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = apps
        .iter()
        .map(|app| {
            let mut routes = app.routes.clone();
            if !app.hostnames.is_empty() {
                routes.push(format!("(host {})", app.hostnames.join(", ")));
            }
            [
                app.name.clone(),
                app.version.map_or_else(|| "-".into(), |v| v.to_string()),
                app.deployed_at.clone().unwrap_or_else(|| "-".into()),
                match &app.error {
                    Some(error) => format!("{}: {error}", app.status),
                    None => app.status.to_string(),
                },
                routes.join(" "),
            ]
        })
        .collect();
    print_table(
        out,
        &["NAME", "VERSION", "DEPLOYED", "STATUS", "ROUTES"],
        rows.into_iter().map(Vec::from).collect(),
    )
}

/// `ferry nodes`: each live node of the cluster, its last heartbeat, the
/// version of each app it serves, and the apps it is behind on.
pub fn print_nodes(out: &mut dyn std::io::Write, list: &NodeList) -> anyhow::Result<()> {
    if !list.cluster {
        writeln!(
            out,
            "This host is no cluster's node (ferry serve --cluster)"
        )?;
        return Ok(());
    }
    let rows = list
        .nodes
        .iter()
        .map(|node| {
            let apps: Vec<String> = node
                .apps
                .iter()
                .map(|a| match a.version {
                    Some(v) => format!("{}@{v}", a.name),
                    None => format!("{} ({})", a.name, a.status),
                })
                .collect();
            vec![
                node.name.clone(),
                format!(
                    "{} ago",
                    human_duration(Duration::from_millis(node.heartbeat_age_ms))
                ),
                if node.behind.is_empty() {
                    "-".to_owned()
                } else {
                    node.behind.join(" ")
                },
                if apps.is_empty() {
                    "-".to_owned()
                } else {
                    apps.join(" ")
                },
            ]
        })
        .collect();
    print_table(out, &["NODE", "HEARTBEAT", "BEHIND", "APPS"], rows)
}

/// `rows` under `header`, each column as wide as its widest cell (the
/// last one, free text, unpadded).
fn print_table(
    out: &mut dyn std::io::Write,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    let last = header.len() - 1;
    let widths: Vec<usize> = (0..last)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:width$}  "));
        }
        line.push_str(&row[last]);
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `ferry app show`: the serving version's components with their grants,
/// then the kept versions.
pub fn print_app(out: &mut dyn std::io::Write, app: &AppDetail) -> anyhow::Result<()> {
    let summary = &app.summary;
    writeln!(
        out,
        "App `{}`: version {}, {}",
        summary.name,
        summary
            .version
            .map_or_else(|| "null".into(), |v| v.to_string()),
        summary.status
    )?;
    if let Some(error) = &summary.error {
        writeln!(out, "  error      {error}")?;
    }
    writeln!(out, "  routes     {}", ferry_api::listed(&summary.routes))?;
    writeln!(
        out,
        "  hostnames  {}",
        ferry_api::listed(&summary.hostnames)
    )?;
    for component in &app.components {
        component.render(out)?;
    }
    writeln!(out, "\nversions")?;
    for v in &app.versions {
        writeln!(
            out,
            "  {:>4}  {}  {} file(s){}",
            v.version,
            v.deployed_at,
            v.files,
            if v.current { "  (serving)" } else { "" }
        )?;
    }
    Ok(())
}

/// The values a deploy gives, from its `--variable` flags: checked as the
/// host checks them, before anything is uploaded. A `.env` beside the
/// manifest is not sent (unless a component's `files` has it): a note says
/// so where it gives variables.
pub fn deploy_variables(bundle: &Bundle, flags: &[String]) -> anyhow::Result<Values> {
    let values =
        ferry_api::values::from_flags(flags).map_err(|e| Failure::usage(format!("{e:#}")))?;
    ferry_api::values::check_deployed(&values)
        .and_then(|()| ferry_api::values::check_declared(&bundle.app, &values))
        .map_err(|e| Failure::usage(format!("`--variable`: {e}")))?;
    let dotenv = bundle.app.dir.join(".env");
    let bundled = bundle
        .files
        .values()
        .any(|f| dotenv.canonicalize().is_ok_and(|real| real == f.path));
    if !bundled
        && std::fs::read_to_string(&dotenv)
            .is_ok_and(|text| text.contains("SPIN_VARIABLE_") || text.contains("FERRY_VARIABLE_"))
    {
        eprintln!(
            "note: {} is not deployed: a live host takes an app's values from `ferry deploy --variable NAME=VALUE`\n",
            dotenv.display()
        );
    }
    Ok(values)
}

/// The app name a deploy uses: `--name`, else the manifest's, which must
/// then be a valid one.
pub fn deploy_name(bundle: &Bundle, given: Option<&str>) -> anyhow::Result<String> {
    let name = given.unwrap_or(&bundle.app.name);
    if let Err(e) = ferry_api::valid_app_name(name) {
        if given.is_none() {
            bail!("{e}; give the app another name with --name");
        }
        bail!("{e}");
    }
    Ok(name.to_owned())
}

/// A guest log line (JSON, as the host sends it) for people:
/// `TIME COMPONENT ROUTE REQUEST-ID STREAM: MESSAGE`. Whatever the guest
/// (or the host) put in it, no control character reaches the terminal:
/// each is escaped as the host's own log escapes it.
fn readable_line(line: &str) -> String {
    let text = |text: &str| ferry_api::human::escape_control(text).into_owned();
    // A field the host left out (or empty) shows as `-`, so the columns
    // stay in place.
    let field = |value: &str| {
        if value.is_empty() {
            "-".to_owned()
        } else {
            text(value)
        }
    };
    // Only an object is a line or a notice; anything else is shown as sent.
    if !line.trim_start().starts_with('{') {
        return text(line);
    }
    match serde_json::from_str::<LogEntry>(line) {
        Ok(LogEntry::Dropped(Dropped { dropped })) => {
            format!("({dropped} lines dropped: this follower fell behind)")
        }
        Ok(LogEntry::Line(line)) => format!(
            "{} {} {} {} {}: {}",
            field(&line.time),
            field(&line.component),
            field(&line.route),
            field(&line.request_id),
            field(&line.stream),
            text(&line.message)
        ),
        Err(_) => text(line),
    }
}

/// A guest log line as JSON (`ferry logs --json`), with no control
/// character left raw: JSON allows DEL and the C1 controls raw inside a
/// string, and a terminal may act on them, so they are written as `\u`
/// escapes (the same JSON value). A line that is not JSON is escaped as
/// text.
fn json_line(line: &str) -> String {
    use std::fmt::Write as _;
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return ferry_api::human::escape_control(line).into_owned();
    };
    // Compact, so no raw whitespace (a `\r`) is left between the values;
    // C0 controls inside strings are escaped by serde_json.
    let compact = value.to_string();
    let mut safe = String::with_capacity(compact.len());
    for c in compact.chars() {
        if c.is_control() {
            // Writing into a String cannot fail.
            let _ = write!(safe, "\\u{:04x}", c as u32);
        } else {
            safe.push(c);
        }
    }
    safe
}

/// A TLS configuration that trusts nothing, for a client that only speaks
/// plain HTTP (reqwest wants one all the same).
fn plain_http_tls() -> anyhow::Result<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::readable_line;

    #[test]
    fn log_lines_read_as_columns_whatever_the_host_sends() {
        let line = r#"{"time":"t","component":"c","route":"/r","request_id":"i","stream":"stdout","message":"hi","app":"a","level":"INFO"}"#;
        assert_eq!(readable_line(line), "t c /r i stdout: hi");
        // An older host, or one that leaves fields out: `-` in their place.
        assert_eq!(
            readable_line(r#"{"time":"t","component":"c","stream":"stdout","message":"hi"}"#),
            "t c - - stdout: hi"
        );
        // The notice, even with fields a later host may add.
        for notice in [r#"{"dropped":3}"#, r#"{"dropped":3,"app":"x"}"#] {
            assert_eq!(
                readable_line(notice),
                "(3 lines dropped: this follower fell behind)"
            );
        }
        // Not a line: shown as sent, its control characters escaped.
        assert_eq!(readable_line("[1]"), "[1]");
        assert_eq!(readable_line("plain \u{1b}[2J"), "plain \\x1b[2J");
        assert_eq!(readable_line(r#"{"message":42}"#), r#"{"message":42}"#);
        // A guest's control characters never reach the terminal.
        assert_eq!(
            readable_line(r#"{"message":"\u001b[2Jgone","stream":"stderr"}"#),
            "- - - - stderr: \\x1b[2Jgone"
        );
    }
}
