//! Application variables on a live host. Each app gets the values its own
//! deploy gave (`ferry deploy --variable`), the values its own bundle's
//! `.env` spells out, and a value from the host's environment only where the
//! operator names the variable (`ferry serve --host-variable NAME`): a
//! host-wide `SPIN_VARIABLE_*` is no tenant's business. Given values are
//! stored with their version (private), used again on rollback and restart,
//! and never shown by the admin API, `ferry app show` or the host's log.
//!
//! The guest is the spin-sdk 7 app (`/variables?<name>` answers the
//! variable's value through `spin:variables`), under manifests of our own.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::support::*;

/// A value only the host's environment holds.
const HOST_SECRET: &str = "hostsecret-7f3a9c";

/// An app of the spin-sdk 7 guest (copied in) with `[variables]` entries
/// `variables`, the component's `[component.guest.variables]` keys `keys`
/// and `extra` component fields.
fn variables_app(variables: &str, keys: &str, extra: &str) -> TestApp {
    let app = TestApp::new("");
    std::fs::copy(super::spin_app_wasm(), app.path().join("guest.wasm")).unwrap();
    app.write(
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"vars\"\n\n\
             [variables]\n{variables}\n\n{}\
             [component.guest]\nsource = \"guest.wasm\"\n{extra}\n\n\
             [component.guest.variables]\n{keys}\n",
            trigger("/...", "guest")
        ),
    );
    app
}

/// What the app reached by `hostname` reads as its variable `name`.
async fn variable(host: &Host, hostname: &str, name: &str) -> String {
    let reply = host.get_host(&format!("/variables?{name}"), hostname).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), host.logs());
    reply.text()
}

/// `ferry deploy` that the host must refuse (exit 3); what it printed.
fn refused_deploy(host: &Host, path: &Path, args: &[&str]) -> String {
    let mut all = vec!["deploy", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = host.client(&all);
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(3), "{printed}");
    printed
}

#[tokio::test]
async fn the_hosts_environment_reaches_an_app_only_where_the_operator_names_it() {
    let state = tempfile::tempdir().unwrap();
    let env = [
        ("SPIN_VARIABLE_REGION", HOST_SECRET),
        ("FERRY_VARIABLE_DB_PASSWORD", HOST_SECRET),
    ];
    let host = Host::start_with_env(state.path(), &[], &env);
    let app = variables_app(
        "region = { default = \"unset\" }\ndb_password = { default = \"unset\", secret = true }",
        "region = \"{{ region }}\"\ndb_password = \"{{ db_password }}\"",
        "",
    );
    host.deploy(
        app.path(),
        &["--name", "tenant", "--hostname", "tenant.test"],
    );
    assert_eq!(variable(&host, "tenant.test", "region").await, "unset");
    assert_eq!(variable(&host, "tenant.test", "db_password").await, "unset");
    host.kill_9();

    // Named by the operator: that variable, and only it, comes from the
    // host's environment, for the apps restored at start too.
    let host = Host::start_with_env(state.path(), &["--host-variable", "region"], &env);
    host.until_ready().await;
    assert_eq!(variable(&host, "tenant.test", "region").await, HOST_SECRET);
    assert_eq!(variable(&host, "tenant.test", "db_password").await, "unset");
    assert!(!host.logs().contains(HOST_SECRET), "{}", host.logs());
    drop(host);

    // A name written as the environment spells it is a usage error that
    // says how to write it.
    let output = ferry()
        .arg("serve")
        .arg("--state-dir")
        .arg(state.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--host-variable", "SPIN_VARIABLE_REGION"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--host-variable region"),
        "expected the name as the manifest writes it:\n{stderr}"
    );
}

#[tokio::test]
async fn a_bundles_env_file_gives_its_own_values_and_never_the_hosts() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start_with_env(state.path(), &[], &[("HOST_ONLY_TOKEN", HOST_SECRET)]);
    let app = variables_app(
        "greeting = { default = \"unset\" }",
        "greeting = \"{{ greeting }}\"",
        "files = [\".env\"]",
    );
    app.write(".env", "SPIN_VARIABLE_GREETING='hello from the app'\n");
    host.deploy(
        app.path(),
        &["--name", "dotenv", "--hostname", "dotenv.test"],
    );
    assert_eq!(
        variable(&host, "dotenv.test", "greeting").await,
        "hello from the app"
    );

    // `$NAME` in `.env` would read the host's environment: refused, naming
    // the line and the variable, and the version before goes on serving.
    for line in [
        "SPIN_VARIABLE_GREETING=${HOST_ONLY_TOKEN}",
        "SPIN_VARIABLE_GREETING=\"x $HOST_ONLY_TOKEN\"",
    ] {
        app.write(".env", &format!("# a comment\n{line}\n"));
        let printed = refused_deploy(&host, app.path(), &["--name", "dotenv"]);
        assert!(
            printed.contains(".env` line 2") && printed.contains("SPIN_VARIABLE_GREETING"),
            "{printed}"
        );
        assert!(!printed.contains(HOST_SECRET), "{printed}");
    }
    assert_eq!(
        variable(&host, "dotenv.test", "greeting").await,
        "hello from the app"
    );
    assert!(!host.logs().contains(HOST_SECRET), "{}", host.logs());
}

#[tokio::test]
async fn deployed_variables_belong_to_their_version_and_are_never_shown() {
    let state = tempfile::tempdir().unwrap();
    let mut host = Host::start(state.path(), &[]);
    let app = variables_app(
        "token = { required = true, secret = true }\nregion = { default = \"eu\" }",
        "auth = \"Bearer {{ token }}\"\nregion = \"{{ region }}\"",
        "",
    );
    let outside = tempfile::tempdir().unwrap();
    let token_file = outside.path().join("token.txt");
    std::fs::write(&token_file, "first-s3cr3t-A1").unwrap();
    let token_flag = format!("token=@{}", token_file.display());
    let shop = ["--name", "shop", "--hostname", "shop.test"];
    let deployed = host.deploy(
        app.path(),
        &[
            &shop[..],
            &[
                "--variable",
                &token_flag,
                "--variable",
                "region=given-region-9",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        variable(&host, "shop.test", "auth").await,
        "Bearer first-s3cr3t-A1"
    );
    assert_eq!(
        variable(&host, "shop.test", "region").await,
        "given-region-9"
    );

    // Stored beside its version, private, and nowhere else.
    let version = state.path().join("apps/shop/versions/1");
    let stored = version.join("variables.json");
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", stored.display());
    assert!(
        std::fs::read_to_string(&stored)
            .unwrap()
            .contains("first-s3cr3t-A1")
    );
    let record = std::fs::read_to_string(version.join("version.json")).unwrap();
    assert!(!record.contains("first-s3cr3t-A1"), "{record}");

    // Never shown: by the CLI, the API or the host's log. Names may be.
    let show = host.client(&["app", "show", "shop"]);
    let show_json = host.client(&["app", "show", "shop", "--json"]);
    let api = host
        .call("GET", "/v1/apps/shop", Some(&host.token()), Vec::new())
        .await;
    let apps = host
        .call("GET", "/v1/apps", Some(&host.token()), Vec::new())
        .await;
    assert_eq!(api.status, 200, "{}", api.text());
    let show_text = text(&show.stdout);
    assert!(
        show_text.contains("auth") && show_text.contains("token"),
        "{show_text}"
    );
    for (what, shown) in [
        ("ferry deploy", deployed),
        ("ferry app show", show_text.clone()),
        ("ferry app show --json", text(&show_json.stdout)),
        ("GET /v1/apps/shop", api.text()),
        ("GET /v1/apps", apps.text()),
        ("the host's log", host.logs()),
    ] {
        for value in ["first-s3cr3t-A1", "given-region-9"] {
            assert!(!shown.contains(value), "{what} shows {value}:\n{shown}");
        }
    }

    // Another app declaring the same variable gets nothing of it.
    let other = ["--name", "other", "--hostname", "other.test"];
    let printed = refused_deploy(&host, app.path(), &other);
    assert!(
        printed.contains("required variable `token` has no value")
            && printed.contains("--variable token="),
        "{printed}"
    );

    // A new deploy gives exactly its own values: the default where it
    // gives none, and a refusal where a required one is missing.
    host.deploy(
        app.path(),
        &[&shop[..], &["--variable", "token=second-s3cr3t-B2"]].concat(),
    );
    assert_eq!(
        variable(&host, "shop.test", "auth").await,
        "Bearer second-s3cr3t-B2"
    );
    assert_eq!(variable(&host, "shop.test", "region").await, "eu");
    let printed = refused_deploy(&host, app.path(), &shop);
    assert!(
        printed.contains("required variable `token` has no value"),
        "{printed}"
    );
    assert_eq!(
        variable(&host, "shop.test", "auth").await,
        "Bearer second-s3cr3t-B2"
    );

    // Rollback serves version 1 with version 1's values, and a restart
    // restores them.
    let output = host.client(&["rollback", "shop"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        variable(&host, "shop.test", "auth").await,
        "Bearer first-s3cr3t-A1"
    );
    host.kill_9();
    host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(
        variable(&host, "shop.test", "auth").await,
        "Bearer first-s3cr3t-A1"
    );
    assert_eq!(
        variable(&host, "shop.test", "region").await,
        "given-region-9"
    );
    for value in ["first-s3cr3t-A1", "second-s3cr3t-B2", "given-region-9"] {
        assert!(!host.logs().contains(value), "{}", host.logs());
    }
}

#[tokio::test]
async fn the_admin_api_bounds_what_a_deploy_may_give() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let app = variables_app(
        "token = { required = true, secret = true }",
        "auth = \"Bearer {{ token }}\"",
        "",
    );
    let manifest = std::fs::read(app.path().join("spin.toml")).unwrap();
    let wasm = std::fs::read(app.path().join("guest.wasm")).unwrap();
    let files = serde_json::json!({
        "spin.toml": host.upload(&manifest).await,
        "guest.wasm": host.upload(&wasm).await,
    });
    let token = host.token();
    let deploy = async |variables: serde_json::Value| {
        let body =
            serde_json::json!({ "manifest": "spin.toml", "files": files, "variables": variables });
        host.call(
            "POST",
            "/v1/apps/bounded/versions",
            Some(&token),
            body.to_string().into_bytes(),
        )
        .await
    };
    let big = "v".repeat(65 * 1024);
    let many: serde_json::Map<String, serde_json::Value> =
        (0..257).map(|i| (format!("v{i}"), "x".into())).collect();
    let heavy: serde_json::Map<String, serde_json::Value> = (0..17)
        .map(|i| (format!("v{i}"), "w".repeat(63 * 1024).into()))
        .collect();
    for (variables, status, says) in [
        (serde_json::json!({ "Token": "s3cr3t-1" }), 400, "`Token`"),
        (serde_json::json!({ "token": 5 }), 400, "string"),
        (serde_json::json!("s3cr3t-2"), 400, "variables"),
        (serde_json::json!({ "token": big }), 400, "64 KiB"),
        (many.into(), 400, "256"),
        (heavy.into(), 400, "1 MiB"),
        (
            serde_json::json!({ "token": "s3cr3t-3", "undeclared": "s3cr3t-4" }),
            422,
            "`undeclared`",
        ),
        (serde_json::json!({}), 422, "`token`"),
    ] {
        let what: String = variables.to_string().chars().take(80).collect();
        let reply = deploy(variables).await;
        let answer = reply.text();
        assert_eq!(reply.status, status, "{what}: {answer}");
        assert!(answer.contains(says), "{what}: {answer}");
        assert!(
            !answer.contains("s3cr3t") && !answer.contains("vvvv"),
            "{answer}"
        );
    }
    let reply = deploy(serde_json::json!({ "token": "s3cr3t-5" })).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(!host.logs().contains("s3cr3t"), "{}", host.logs());
}
