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

/// An embedded store's file is served by one process: its read cache is
/// only as fresh as the file because this process makes every write. A
/// second `ferry up` on the same state directory stops at load, naming the
/// file, and the first keeps serving.
#[tokio::test]
async fn a_second_process_on_the_same_store_file_stops_at_load() {
    let app = app_with_stores("[\"default\"]");
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("state");
    let state = state.to_str().unwrap();
    let first = Ferry::start(&app, &["--state-dir", state]);
    let mut second = ferry()
        .arg("up")
        .arg(app.path())
        .args(["--listen", "127.0.0.1:0", "--state-dir", state])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_exit(
        &mut second,
        "a second `ferry up` on the same state directory to stop at load (not start serving)",
    );
    let output = second.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("key-value store `default`: cannot open")
            && stderr.contains("key_value.db is in use by another process"),
        "{stderr}"
    );
    assert_eq!(get(&format!("{}/", first.url)).await.status, 200);
}
