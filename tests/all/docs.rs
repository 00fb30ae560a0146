//! The documents users build on are what they claim to be: the admin API's
//! OpenAPI document (`docs/admin-api.yaml`) is valid OpenAPI 3.1, checked by
//! the OpenAPI project's own validator (`scripts/setup` installs it), and
//! the types host and client exchange (`ferry-api`) are what it publishes.

use std::path::Path;

use crate::support::text;

#[test]
fn the_admin_api_document_is_valid_openapi() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let validator = root.join("docs/.venv/bin/openapi-spec-validator");
    let output = std::process::Command::new(&validator)
        .arg(root.join("docs/admin-api.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{} (scripts/setup installs it): {e}", validator.display()));
    assert!(
        output.status.success(),
        "docs/admin-api.yaml is not valid OpenAPI:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The admin API's types (`crates/api`), which host and client both use,
/// are what `docs/admin-api.yaml` publishes: an instance of each, every
/// optional field filled, validates against the schema of the call that
/// sends it, with exactly the fields the document lists.
#[test]
fn the_admin_api_types_are_what_the_document_says() {
    use ferry_api::*;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The JSON schema of a call's request body or response.
    let op = |path: &str, method: &str, part: &str| {
        format!(
            "/paths/{}/{method}/{part}/content/application~1json/schema",
            path.replace('/', "~1")
        )
    };
    let digest = sha256_digest(b"x");
    let summary = AppSummary {
        name: "app".into(),
        version: Some(2),
        status: AppStatus::Failed,
        error: Some("it failed".into()),
        routes: vec!["/...".into()],
        hostnames: vec!["app.test".into()],
        deployed_at: Some("2026-12-06T00:00:00Z".into()),
    };
    let activated = Activated {
        app: "app".into(),
        version: 2,
        components: vec![Compiled {
            id: "web".into(),
            from_cache: true,
            compile_ms: 1.5,
        }],
        routes: vec!["/...".into()],
        warnings: Some("legacy".into()),
        elapsed_ms: 3.0,
    };
    let detail = AppDetail {
        summary: summary.clone(),
        components: vec![ComponentSummary {
            id: "web".into(),
            source: "web.wasm".into(),
            wasm_bytes: 10,
            executor: "wagi".into(),
            wagi: Some(WagiSummary {
                argv: "${SCRIPT_NAME}".into(),
                entrypoint: "_start".into(),
            }),
            routes: vec!["/...".into()],
            triggers: vec!["redis `web-redis-trigger`: channel `c` on redis://h:6379".into()],
            serves: Some("wasi:http/incoming-handler@0.2.0".into()),
            imports: vec!["wasi:cli/environment@0.2.0".into()],
            unsupported: vec!["fermyon:spin/mqtt".into()],
            composed: Vec::new(),
            chains_to: Vec::new(),
            environment: vec!["A".into()],
            variables: vec!["k = \"{{ v }}\"".into()],
            key_value_stores: vec!["default".into()],
            sqlite_databases: vec!["default".into()],
            allowed_outbound_hosts: vec!["https://x.test".into()],
            files: vec!["static".into()],
            limits: "max_memory 64 MiB".into(),
        }],
        versions: vec![VersionSummary {
            version: 2,
            deployed_at: "2026-12-06T00:00:00Z".into(),
            current: true,
            files: 3,
        }],
    };
    let value = |v: &dyn erased::Value| v.json();
    let cases = [
        (
            op("/v1/blobs/missing", "post", "requestBody"),
            value(&MissingRequest {
                digests: vec![digest.clone()],
            }),
        ),
        (
            op("/v1/blobs/missing", "post", "responses/200"),
            value(&Missing {
                missing: vec![digest.clone()],
            }),
        ),
        (
            op("/v1/blobs/{digest}", "put", "responses/201"),
            value(&Uploaded {
                digest: digest.clone(),
            }),
        ),
        (
            op("/v1/nodes", "get", "responses/200"),
            value(&NodeList {
                cluster: true,
                nodes: vec![NodeSummary {
                    name: "a".into(),
                    heartbeat_at: "2026-12-06T00:00:00Z".into(),
                    heartbeat_age_ms: 800,
                    apps: vec![NodeApp {
                        name: "app".into(),
                        version: Some(1),
                        status: AppStatus::Serving,
                        error: Some("cannot serve version 2 on this node: …".into()),
                        refused: Some(2),
                    }],
                    behind: vec!["app".into()],
                }],
            }),
        ),
        (
            op("/v1/apps", "get", "responses/200"),
            value(&AppList {
                apps: vec![summary],
            }),
        ),
        (
            op("/v1/apps/{name}", "get", "responses/200"),
            value(&detail),
        ),
        (
            op("/v1/apps/{name}", "delete", "responses/200"),
            value(&Deleted {
                deleted: "app".into(),
            }),
        ),
        (
            op("/v1/apps/{name}/versions", "post", "requestBody"),
            value(&DeployRequest {
                manifest: "spin.toml".into(),
                files: [("spin.toml".to_owned(), digest.clone())].into(),
                hostnames: vec!["app.test".into()],
                variables: Values([("token".to_owned(), "hush".to_owned())].into()),
            }),
        ),
        (
            op("/v1/apps/{name}/versions", "post", "responses/201"),
            value(&activated),
        ),
        (
            op("/v1/apps/{name}/rollback", "post", "requestBody"),
            value(&RollbackRequest { to: Some(1) }),
        ),
        (
            op("/v1/apps/{name}/rollback", "post", "responses/200"),
            value(&activated),
        ),
        (
            "/components/schemas/Error".to_owned(),
            value(&Refusal { error: "no".into() }),
        ),
        (
            "/components/schemas/GuestLine".to_owned(),
            value(&GuestLine {
                time: "2026-12-06T00:00:00.000Z".into(),
                level: "INFO".into(),
                app: "app".into(),
                component: "web".into(),
                route: "/...".into(),
                request_id: "0123".into(),
                stream: "stdout".into(),
                status: Some(500),
                message: "hello".into(),
                incarnation: 1,
            }),
        ),
        (
            "/components/schemas/Dropped".to_owned(),
            value(&Dropped { dropped: 3 }),
        ),
    ];
    let cases: Vec<serde_json::Value> = cases
        .into_iter()
        .map(|(pointer, instance)| serde_json::json!({ "pointer": pointer, "instance": instance }))
        .collect();
    let mut checker = std::process::Command::new(root.join("docs/.venv/bin/python"))
        .arg(root.join("docs/check_types.py"))
        .arg(root.join("docs/admin-api.yaml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docs/.venv/bin/python (scripts/setup makes it)");
    std::io::Write::write_all(
        &mut checker.stdin.take().unwrap(),
        serde_json::to_string(&cases).unwrap().as_bytes(),
    )
    .unwrap();
    let output = checker.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the admin API's types and docs/admin-api.yaml differ:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// A type's JSON, whatever the type.
mod erased {
    pub trait Value {
        fn json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Value for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}
