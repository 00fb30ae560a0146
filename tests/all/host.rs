//! `ferry serve`, a live host: apps deployed with the real `ferry deploy`
//! client, swapped under load without a failed request, refused when
//! broken or when they clash with another app, rolled back without a
//! compile, restored after `kill -9`, and an admin API that does nothing
//! without its token.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::*;

/// 100 deploys alternating two versions while four clients send requests
/// without a pause: not one request fails, every body is exactly one
/// version's, and each deploy's version answers as soon as it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploys_under_load_fail_no_request() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let one = versioned_app("swap", "one", "/");
    let two = versioned_app("swap", "two", "/");
    host.deploy(one.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, url) = (stop.clone(), served.clone(), host.url.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(&format!("{url}/")).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    let body = reply.text();
                    assert!(
                        body == "hello from one\n" || body == "hello from two\n",
                        "a body from neither version: {body:?}"
                    );
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..100 {
        let (app, expected) = if i % 2 == 0 {
            (&two, "two")
        } else {
            (&one, "one")
        };
        let deployed = tokio::task::block_in_place(|| host.deploy(app.path(), &[]));
        assert!(deployed.contains("Deployed `swap`"), "{deployed}");
        assert_eq!(
            host.get("/").await.text(),
            format!("hello from {expected}\n")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .await
            .expect("a client saw a failed or mixed response");
    }
    assert!(
        served.load(Ordering::Relaxed) >= 100,
        "the clients ran throughout"
    );
    // Versions beyond --keep-versions (10) are gone, with their files.
    let versions = std::fs::read_dir(state.path().join("apps/swap/versions"))
        .unwrap()
        .count();
    assert_eq!(versions, 10);
    assert_eq!(host.version("swap"), Some(101));
}

/// A response still streaming from version 1 completes intact while
/// version 2 is deployed and version 1 is removed from the state directory
/// (`--keep-versions 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streaming_response_outlives_its_version() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &["--keep-versions", "1"]);
    let app = versioned_app("stream", "one", "/");
    host.deploy(app.path(), &[]);
    let mut stream = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    stream
        .write_all(b"GET /big?mb=64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0; 1 << 20];
    stream.read_exact(&mut first).await.unwrap();

    write_manifest(&app, "stream", "two", "/");
    tokio::task::block_in_place(|| host.deploy(app.path(), &[]));
    assert_eq!(host.get("/").await.text(), "hello from two\n");
    let versions = state.path().join("apps/stream/versions");
    assert!(!versions.join("1").exists(), "version 1 was removed");
    assert!(versions.join("2").exists());

    let (head, body) = finish_response(&mut stream, first).await;
    assert!(head.contains("x-guest-name: one"), "{head}");
    assert_eq!(body.iter().filter(|b| **b == b'x').count(), 64 << 20);
    assert!(body.ends_with(b"0\r\n\r\n"), "the stream ended cleanly");
}

/// A bad manifest, invalid Wasm, paths leaving the bundle, a symlink out of
/// the app and a bundle over the size limit are each refused with why,
/// and version 1 goes on serving with nothing of the refused one left.
#[tokio::test]
async fn broken_bundles_are_refused_and_the_old_version_serves() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &["--max-bundle-size", "1MiB"]);
    let app = versioned_app("keep", "one", "/");
    host.deploy(app.path(), &[]);
    let still_one = async || {
        assert_eq!(host.get("/").await.text(), "hello from one\n");
        assert_eq!(host.version("keep"), Some(1));
        let versions: Vec<_> = std::fs::read_dir(state.path().join("apps/keep/versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(versions, ["1"], "nothing of a refused version is left");
    };

    // A manifest the host cannot read: 422, pointing at the field.
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    let bad = "spin_manifest_version = 2\n[application]\nname = \"keep\"\n[[trigger.http]]\nroute = 42\ncomponent = \"guest\"\n[component.guest]\nsource = \"guest.wasm\"\n";
    let reply = host
        .deploy_raw(
            "keep",
            "spin.toml",
            &[("spin.toml", bad.as_bytes()), ("guest.wasm", &wasm[..1000])],
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(reply.text().contains("route"), "{}", reply.text());
    still_one().await;

    // Not Wasm: refused by the real client, exit code 3, naming the component.
    std::fs::write(app.path().join("guest.wasm"), b"\0asm but not really").unwrap();
    let output = host.client(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("component `guest`"),
        "{stderr}"
    );
    still_one().await;

    // Paths out of the bundle, named in the file list.
    let manifest = std::fs::read(app.path().join("spin.toml")).unwrap();
    for escaping in ["../guest.wasm", "/etc/guest.wasm", "a/../../guest.wasm"] {
        let reply = host
            .deploy_raw(
                "keep",
                "spin.toml",
                &[("spin.toml", &manifest), (escaping, b"x")],
            )
            .await;
        assert_eq!(reply.status, 422, "{escaping}: {}", reply.text());
        assert!(
            reply.text().contains("not a path inside the bundle"),
            "{}",
            reply.text()
        );
        still_one().await;
    }
    // A digest that was never uploaded.
    let body = serde_json::json!({
        "manifest": "spin.toml",
        "files": { "spin.toml": sha256(b"never uploaded") },
    });
    let reply = host
        .call(
            "POST",
            "/v1/apps/keep/versions",
            Some(&host.token()),
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("not all uploaded"),
        "{}",
        reply.text()
    );

    // A symlink out of the app directory: the client refuses to send it.
    std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "not the app's").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        app.path().join("leak.txt"),
    )
    .unwrap();
    let mut text_manifest = String::from_utf8(manifest.clone()).unwrap();
    text_manifest.push_str("files = [\"leak.txt\"]\n");
    app.write("spin.toml", &text_manifest);
    let output = host.client(&["deploy", app.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("outside the app directory"),
        "{}",
        text(&output.stderr)
    );
    still_one().await;

    // Over --max-bundle-size: the upload itself is refused, and not stored.
    let big = vec![7u8; 2 << 20];
    let digest = sha256(&big);
    let reply = host
        .call(
            "PUT",
            &format!("/v1/blobs/{digest}"),
            Some(&host.token()),
            big,
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("larger than this host takes"),
        "{}",
        reply.text()
    );
    assert!(
        !state
            .path()
            .join("blobs/sha256")
            .join(&digest[7..])
            .exists()
    );
    // A blob that does not hash to its name is not stored either.
    let reply = host
        .call(
            "PUT",
            &format!("/v1/blobs/{}", sha256(b"a")),
            Some(&host.token()),
            b"b".to_vec(),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    still_one().await;
}

/// Apps share the listener, each at its base or host name; an app claiming
/// another's route or host name is refused, naming both.
#[tokio::test]
async fn apps_share_the_listener_and_clashes_are_refused() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("alpha", "alpha", "/a").path(), &[]);
    host.deploy(versioned_app("beta", "beta", "/b").path(), &[]);
    host.deploy(
        versioned_app("gamma", "gamma", "/").path(),
        &["--hostname", "Gamma.Example"],
    );
    assert_eq!(host.get("/a/").await.text(), "hello from alpha\n");
    assert_eq!(host.get("/b/").await.text(), "hello from beta\n");
    assert_eq!(host.get("/c/").await.status, 404);
    assert_eq!(
        host.get_host("/", "gamma.example:3000").await.text(),
        "hello from gamma\n"
    );

    let clash = versioned_app("delta", "delta", "/a");
    let output = host.client(&["deploy", clash.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("alpha") && stderr.contains("delta"),
        "{stderr}"
    );
    let same_host = versioned_app("epsilon", "epsilon", "/");
    let output = host.client(&[
        "deploy",
        same_host.path().to_str().unwrap(),
        "--hostname",
        "gamma.example",
    ]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("gamma"),
        "{stderr}"
    );
    // Neither left anything behind, and everything still serves.
    assert!(!state.path().join("apps/delta").exists());
    assert!(!state.path().join("apps/epsilon").exists());
    assert_eq!(host.get("/a/").await.text(), "hello from alpha\n");

    // `ferry apps` lists each with its version and routes.
    let apps = host.apps();
    let names: Vec<&str> = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    assert_eq!(apps["apps"][0]["routes"], serde_json::json!(["/a/..."]));
    assert_eq!(
        apps["apps"][2]["hostnames"],
        serde_json::json!(["gamma.example"])
    );

    // Deleted: its routes answer 404 and its directory is gone.
    let output = host.client(&["delete", "alpha"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(host.get("/a/").await.status, 404);
    assert!(!state.path().join("apps/alpha").exists());
    let output = host.client(&["delete", "alpha"]);
    assert!(
        text(&output.stderr).contains("404"),
        "{}",
        text(&output.stderr)
    );
}

/// Rollback serves the previous version again from compiled code the host
/// already has, and `--to` picks any kept version.
#[tokio::test]
async fn rollback_needs_no_compile() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(
        state.path(),
        &["--cache-dir", state.path().join("cache").to_str().unwrap()],
    );
    let app = versioned_app("roll", "one", "/");
    let first = host.deploy(app.path(), &[]);
    // The first deploy into a fresh cache compiles.
    assert!(first.contains("  compiled `guest`"), "{first}");
    write_manifest(&app, "roll", "two", "/");
    let second = host.deploy(app.path(), &[]);
    // The manifest changed, not the Wasm: only the manifest is uploaded.
    assert!(second.contains("Uploaded 1 of 2 file(s)"), "{second}");
    assert_eq!(host.get("/").await.text(), "hello from two\n");

    let output = host.client(&["rollback", "roll"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("Serving `roll` version 1"), "{stdout}");
    assert!(stdout.contains("loaded compiled `guest`"), "{stdout}");
    assert_eq!(host.get("/").await.text(), "hello from one\n");
    assert_eq!(host.version("roll"), Some(1));

    let reply = host
        .call(
            "POST",
            "/v1/apps/roll/rollback",
            Some(&host.token()),
            br#"{"to": 2}"#.to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let done: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(done["version"], 2);
    assert_eq!(done["components"][0]["from_cache"], true);
    assert_eq!(host.get("/").await.text(), "hello from two\n");

    let output = host.client(&["rollback", "roll", "--to", "7"]);
    assert!(
        text(&output.stderr).contains("no version 7"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(host.get("/").await.text(), "hello from two\n");

    // `ferry app show` lists the components, grants and versions.
    let output = host.client(&["app", "show", "roll"]);
    let shown = text(&output.stdout);
    assert!(shown.contains("App `roll`: version 2, serving"), "{shown}");
    assert!(shown.contains("component `guest` (guest.wasm"), "{shown}");
    assert!(shown.contains("env        NAME"), "{shown}");
    assert!(shown.contains("(serving)"), "{shown}");
}

/// After `kill -9` a new host on the same state directory serves every app
/// at its current version (a rollback included), with its key-value data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_restores_every_app() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let app = versioned_app("first", "one", "/first");
    host.deploy(app.path(), &[]);
    write_manifest(&app, "first", "two", "/first");
    host.deploy(app.path(), &[]);
    write_manifest(&app, "first", "three", "/first");
    host.deploy(app.path(), &[]);
    assert!(host.client(&["rollback", "first"]).status.success());
    host.deploy(versioned_app("second", "second", "/second").path(), &[]);
    // A real Spin app with a key-value store, reached by host name.
    let kv_app =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/test-programs/spin-apps/rust-sdk7");
    tokio::task::block_in_place(|| host.deploy(&kv_app, &["--build", "--hostname", "kv.test"]));
    assert_eq!(
        host.app_call("kv.test", "PUT", "/kv/kept", "across restarts")
            .await
            .text(),
        "stored"
    );
    assert_eq!(host.get("/first/").await.text(), "hello from two\n");

    host.kill_9();
    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(host.get("/first/").await.text(), "hello from two\n");
    assert_eq!(host.get("/second/").await.text(), "hello from second\n");
    assert_eq!(host.version("first"), Some(2));
    let reply = host.get_host("/kv/kept", "kv.test").await;
    assert_eq!(reply.text(), "across restarts");
    // The next deploy is numbered after every kept version.
    write_manifest(&app, "first", "four", "/first");
    let deployed = host.deploy(app.path(), &[]);
    assert!(deployed.contains("version 4"), "{deployed}");
}

/// Without the token, or with a wrong one, every admin call answers 401
/// and changes nothing; probes need no token; the generated token is
/// private.
#[tokio::test]
async fn admin_calls_need_the_token() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let app = versioned_app("guarded", "one", "/");
    host.deploy(app.path(), &[]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(host.token_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let token = host.token();
    let wrong_tokens = [
        None,
        Some("wrong".to_owned()),
        Some(token[..token.len() - 1].to_owned()),
        Some(format!("{token}x")),
        Some(token.to_uppercase()),
    ];
    let blob = b"an upload without the token".to_vec();
    let digest = sha256(&blob);
    for wrong in &wrong_tokens {
        let wrong = wrong.as_deref();
        for (method, path, body) in [
            ("DELETE", "/v1/apps/guarded".to_owned(), Vec::new()),
            ("POST", "/v1/apps/guarded/rollback".to_owned(), Vec::new()),
            ("PUT", format!("/v1/blobs/{digest}"), blob.clone()),
            (
                "POST",
                "/v1/apps/guarded/versions".to_owned(),
                b"{}".to_vec(),
            ),
            ("GET", "/v1/apps".to_owned(), Vec::new()),
        ] {
            let reply = host.call(method, &path, wrong, body).await;
            assert_eq!(reply.status, 401, "{method} {path} with {wrong:?}");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert!(
        !state
            .path()
            .join("blobs/sha256")
            .join(&digest[7..])
            .exists()
    );
    assert_eq!(host.get("/").await.text(), "hello from one\n");
    assert_eq!(host.version("guarded"), Some(1));
    let health = get(&format!("{}/healthz", host.admin)).await;
    assert_eq!(health.status, 200);

    // The client says what is wrong.
    let output = ferry()
        .args(["apps", "--host", &host.admin])
        .env_remove("FERRY_TOKEN")
        .output()
        .unwrap();
    assert!(
        text(&output.stderr).contains("no admin token"),
        "{}",
        text(&output.stderr)
    );
    let output = ferry()
        .args(["apps", "--host", &host.admin])
        .env("FERRY_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(
        text(&output.stderr).contains("401"),
        "{}",
        text(&output.stderr)
    );
    // A token given with --admin-token-file is used instead.
    let given = state.path().join("given-token");
    std::fs::write(&given, "a-token-chosen-by-the-operator\n").unwrap();
    let other_state = tempfile::tempdir().unwrap();
    let other = Host::start(
        other_state.path(),
        &["--admin-token-file", given.to_str().unwrap()],
    );
    let reply = other
        .call(
            "GET",
            "/v1/apps",
            Some("a-token-chosen-by-the-operator"),
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!other_state.path().join("admin-token").exists());
}

/// `/readyz` answers 503 until every app in the state directory has been
/// restored, while `ferry apps` shows them `restoring`; then 200.
#[tokio::test]
async fn readyz_waits_for_the_restore() {
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = ["--cache-dir", cache.path().to_str().unwrap()];
    let host = Host::start(state.path(), &cache_arg);
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    for i in 0..8 {
        let app = versioned_app(&format!("app{i}"), &format!("app{i}"), &format!("/app{i}"));
        // Each a different component (a custom section of its own), so
        // each restore compiles.
        let name = format!("ferry-test-{i}");
        let mut distinct = wasm.clone();
        distinct.push(0);
        distinct.push(u8::try_from(name.len() + 1).unwrap());
        distinct.push(u8::try_from(name.len()).unwrap());
        distinct.extend_from_slice(name.as_bytes());
        std::fs::write(app.path().join("guest.wasm"), distinct).unwrap();
        host.deploy(app.path(), &[]);
    }
    host.kill_9();
    // A fresh cache: the restore compiles all eight.
    let cache = tempfile::tempdir().unwrap();
    let host = Host::start(
        state.path(),
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    let first = get(&format!("{}/readyz", host.admin)).await;
    assert_eq!(first.status, 503, "{}", first.text());
    let apps = host.apps();
    assert!(
        apps["apps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "restoring"),
        "{apps:#}"
    );
    host.until_ready().await;
    let apps = host.apps();
    for (i, app) in apps["apps"].as_array().unwrap().iter().enumerate() {
        assert_eq!(app["status"], "serving", "{app:#}");
        assert_eq!(
            host.get(&format!("/app{i}/")).await.text(),
            format!("hello from app{i}\n")
        );
    }
}

/// A live host's `/metrics` needs the token, counts deploys, rollbacks and
/// their failures, and an app's request counts go on across its versions.
#[tokio::test]
async fn metrics_count_deploys_and_requests_across_versions() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let app = versioned_app("counted", "one", "/");
    host.deploy(app.path(), &[]);
    for _ in 0..2 {
        assert_eq!(host.get("/").await.text(), "hello from one\n");
    }
    std::fs::write(app.path().join("guest.wasm"), b"not wasm").unwrap();
    assert!(
        !host
            .client(&["deploy", app.path().to_str().unwrap()])
            .status
            .success()
    );
    std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
    write_manifest(&app, "counted", "two", "/");
    host.deploy(app.path(), &[]);
    for _ in 0..3 {
        assert_eq!(host.get("/").await.text(), "hello from two\n");
    }
    assert!(host.client(&["rollback", "counted"]).status.success());

    let anonymous = host.call("GET", "/metrics", None, Vec::new()).await;
    assert_eq!(anonymous.status, 401);
    // A request's series are written once its body is sent, just after the
    // client has read it: read until the last one shows.
    let scrape = crate::metrics::settled_by(
        || async {
            let reply = host
                .call("GET", "/metrics", Some(&host.token()), Vec::new())
                .await;
            assert_eq!(reply.status, 200);
            crate::metrics::Scrape::parse(&reply.text())
        },
        &[("app", "counted")],
    )
    .await;
    let app = ("app", "counted");
    assert_eq!(
        scrape.value("ferry_deploys_total", &[app, ("result", "ok")]),
        2.0
    );
    assert_eq!(
        scrape.value("ferry_deploys_total", &[app, ("result", "failed")]),
        1.0
    );
    assert_eq!(
        scrape.value("ferry_rollbacks_total", &[app, ("result", "ok")]),
        1.0
    );
    assert_eq!(
        scrape.value(
            "ferry_requests_total",
            &[app, ("route", "/..."), ("status", "2xx")]
        ),
        5.0
    );
    // Compiled once; every later version found it in the cache.
    assert!(scrape.value("ferry_component_loads_total", &[("result", "cached")]) >= 2.0);
}

/// `ferry logs` prints an app's guest lines with their request ids, and
/// `--follow` goes on with new ones as they are written.
#[tokio::test]
async fn logs_show_and_follow_an_apps_guest_lines() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("talker", "one", "/t").path(), &[]);
    host.deploy(versioned_app("quiet", "quiet", "/quiet").path(), &[]);
    let first = host.get("/t/print").await;
    let first_id = first.header("x-request-id").unwrap().to_owned();
    assert_eq!(host.get("/quiet/print").await.status, 200);

    let json_lines = |output: &Output| -> Vec<serde_json::Value> {
        text(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let output = host.client(&["logs", "talker", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["app"] == "talker"
        && l["component"] == "guest"
        && l["route"] == "/t/..."
        && l["request_id"] == first_id.as_str()));
    assert_eq!(lines[0]["message"], "a line on stdout from one");
    assert_eq!(lines[0]["stream"], "stdout");
    assert_eq!(lines[1]["stream"], "stderr");
    // For people: one line each, with the request id.
    let readable = text(&host.client(&["logs", "talker"]).stdout);
    assert!(
        readable.contains(&format!(
            "guest /t/... {first_id} stdout: a line on stdout from one"
        )),
        "{readable}"
    );

    let mut follower = host
        .command(&["logs", "talker", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let followed = collect_lines(follower.stdout.take().unwrap());
    // Line `n` (from 0) that `ferry logs --follow` printed, parsed.
    let line = async |n: usize, what: &str| -> serde_json::Value {
        let what = format!("line {n} ({what}) from ferry logs --follow");
        let line = eventually(&what, || async {
            let lines = followed.lock().unwrap().clone();
            lines.get(n).cloned().ok_or(lines)
        })
        .await;
        serde_json::from_str(&line).unwrap()
    };
    // The kept lines first ...
    assert_eq!(line(0, "kept").await["request_id"], first_id.as_str());
    assert_eq!(line(1, "kept").await["request_id"], first_id.as_str());
    // ... then each new one, and only this app's.
    assert_eq!(host.get("/quiet/print").await.status, 200);
    let second = host.get("/t/print").await;
    let second_id = second.header("x-request-id").unwrap().to_owned();
    let line = line(2, "followed").await;
    assert_eq!(line["request_id"], second_id.as_str(), "{line}");
    assert_eq!(line["app"], "talker");
    let _ = follower.kill();
    let _ = follower.wait();

    let output = host.client(&["logs", "nobody"]);
    assert!(
        text(&output.stderr).contains("404"),
        "{}",
        text(&output.stderr)
    );
}

/// The dashboard, in a real headless browser (the system Chromium, driven
/// by Playwright: `tests/dashboard/check.mjs`): it loads with no console
/// errors, shows the deployed app, its request count rises with traffic, a
/// trap shows up among the errors, and its rollback button serves the
/// previous version. Screenshots are left in the target directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_traffic_errors_and_rolls_back() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let app = versioned_app("shop", "one", "/");
    host.deploy(app.path(), &[]);
    write_manifest(&app, "shop", "two", "/");
    host.deploy(app.path(), &[]);
    assert_eq!(host.get("/").await.text(), "hello from two\n");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/dashboard/check.mjs");
    assert!(
        root.join("tests/dashboard/node_modules/playwright-core")
            .is_dir(),
        "Playwright is not installed: run scripts/setup"
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new("node")
            .arg(&script)
            .env("ADMIN_URL", &host.admin)
            .env("APPS_URL", &host.url)
            .env("TOKEN", host.token())
            .env("APP", "shop")
            .env("SHOTS", &shots)
            .output()
            .unwrap()
    });
    assert!(
        output.status.success(),
        "the dashboard check failed:\n{}{}\nhost log:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        host.logs()
    );
    assert!(
        text(&output.stdout).contains("after rollback the app answers: hello from one"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(host.version("shop"), Some(1));
    for shot in [
        "1-login.png",
        "2-traffic-and-error.png",
        "3-rolled-back.png",
    ] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }
}
