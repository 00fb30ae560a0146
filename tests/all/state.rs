//! Key-value stores from the command line's side: where each label's data
//! lives, and the errors for a label with nowhere to live. (What guests do
//! with them is in `spin_sdk.rs`; the storage itself is tested in
//! `ferry-store`.)

use crate::support::*;

fn app_with_stores(stores: &str) -> TestApp {
    TestApp::new(&format!(
        "{}{}",
        trigger("/...", "a"),
        http_component("a", &format!("key_value_stores = {stores}"))
    ))
}

#[test]
fn check_lists_the_stores_and_writes_nothing() {
    let app = app_with_stores("[\"default\", \"cache\"]");
    app.write(
        "runtime-config.toml",
        "[key_value_store.cache]\ntype = \"spin\"\npath = \"cache.db\"\n",
    );
    let output = ferry().arg("check").arg(app.path()).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("  key-value  default, cache\n"), "{stdout}");
    assert!(!app.path().join(".ferry").exists());
    assert!(!app.path().join("cache.db").exists());
}

#[test]
fn a_label_without_a_backend_stops_the_app() {
    let app = app_with_stores("[\"default\", \"cache\"]");
    for command in ["check", "up"] {
        let output = ferry().arg(command).arg(app.path()).output().unwrap();
        assert_eq!(output.status.code(), Some(3), "ferry {command}");
        assert!(
            text(&output.stderr).contains(
                "component `a` uses the key-value store `cache`, which runtime-config.toml does not define"
            ),
            "{}",
            text(&output.stderr)
        );
    }
}

#[tokio::test]
async fn stores_live_where_runtime_config_puts_them() {
    let app = app_with_stores("[\"default\", \"cache\"]");
    app.write(
        "runtime-config.toml",
        "[key_value_store.cache]\ntype = \"spin\"\npath = \"data/cache.db\"\n",
    );
    std::fs::create_dir(app.path().join("data")).unwrap();
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("state");
    let _ferry = Ferry::start(&app, &["--state-dir", state.to_str().unwrap()]);
    assert!(app.path().join("data/cache.db").is_file());
    assert!(state.join("key_value.db").is_file());
    // Made by Ferry, so made private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the state directory is private: {mode:o}");
}
