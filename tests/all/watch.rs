//! `ferry up --watch`: the app is reloaded in place when its files change,
//! through the same swap a live host uses. The listener stays open, no
//! request fails across a reload, requests already running finish on the
//! version they started on, and a version that fails to load leaves the
//! running one serving.

use crate::support::*;

/// An app whose one component is the test guest copied into the app
/// directory (so a test can replace it), named `name`.
fn app(name: &str, limits: &str) -> TestApp {
    let app = TestApp::new(&manifest(name));
    std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
    if !limits.is_empty() {
        app.write(
            "runtime-config.toml",
            &format!("[component.guest.limits]\n{limits}"),
        );
    }
    app
}

fn manifest(name: &str) -> String {
    format!(
        "{}[component.guest]\nsource = \"guest.wasm\"\nenvironment = {{ NAME = \"{name}\" }}\n",
        trigger("/...", "guest")
    )
}

/// Rewrites the manifest as an editor saves: a temporary file renamed over
/// the old one.
fn save_manifest(app: &TestApp, body: &str) {
    let text = format!("spin_manifest_version = 2\n\n[application]\nname = \"test-app\"\n\n{body}");
    let tmp = app.path().join(".spin.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, app.path().join("spin.toml")).unwrap();
}

/// Polls `GET /` ([`eventually`]) until its body is `expected`; a failure
/// shows the last body and what `ferry up` had printed by then.
async fn until_served(ferry: &Ferry, expected: &str) {
    let what = format!("`GET /` to answer {expected:?} (seen: body, stdout)");
    eventually(&what, || async {
        let reply = get(&format!("{}/", ferry.url)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.text() == expected {
            Ok(())
        } else {
            Err((reply.text(), ferry.stdout.lock().unwrap().clone()))
        }
    })
    .await
}

/// An edit to the manifest is picked up on the same listener, while a
/// request that started before it finishes on the old version.
#[tokio::test]
async fn a_manifest_change_reloads_in_place() {
    let app = app("one", "");
    let ferry = Ferry::start(&app, &["--watch"]);
    until_served(&ferry, "hello from one\n").await;
    let mark = ferry.log_mark();
    let slow = tokio::spawn({
        let url = format!("{}/sleep?ms=2000", ferry.url);
        async move { get(&url).await }
    });
    ferry.wait_for_log(mark, &["sleeping 2000 ms"]).await;
    save_manifest(&app, &manifest("two"));
    until_served(&ferry, "hello from two\n").await;
    let slow = slow.await.unwrap();
    assert_eq!(
        (slow.status, slow.text().as_str()),
        (200, "slept 2000 ms\n")
    );
    assert_eq!(
        slow.header("x-guest-name"),
        Some("one"),
        "the request in flight finished on the version it started on"
    );
    let stdout = ferry.stdout.lock().unwrap().join("\n");
    assert!(stdout.contains("spin.toml; reloading"), "{stdout}");
    assert!(stdout.contains("Reloaded in"), "{stdout}");
}

/// A manifest that no longer loads, and a component that is not Wasm, leave
/// the running version serving, with the reason printed; fixing it reloads.
#[tokio::test]
async fn a_version_that_fails_to_load_leaves_the_old_one_serving() {
    let app = app("one", "");
    let ferry = Ferry::start(&app, &["--watch"]);
    until_served(&ferry, "hello from one\n").await;

    save_manifest(
        &app,
        &format!("{}\n[component.guest]\nsource = 7\n", manifest("x")),
    );
    wait_for_stdout(&ferry, "Reload failed", 1).await;
    assert!(
        ferry.logs().contains("error: the new version did not load"),
        "{}",
        ferry.logs()
    );
    assert_eq!(
        get(&format!("{}/", ferry.url)).await.text(),
        "hello from one\n"
    );

    std::fs::write(app.path().join("guest.wasm"), b"not wasm at all").unwrap();
    wait_for_stdout(&ferry, "Reload failed", 2).await;
    assert_eq!(
        get(&format!("{}/", ferry.url)).await.text(),
        "hello from one\n"
    );

    std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
    save_manifest(&app, &manifest("fixed"));
    until_served(&ferry, "hello from fixed\n").await;
}

/// Waits ([`eventually`]) until `ferry up` has printed a line containing
/// `needle` `count` times.
async fn wait_for_stdout(ferry: &Ferry, needle: &str, count: usize) {
    let what = format!("`ferry up` to print `{needle}` {count} time(s)");
    eventually(&what, || async {
        let stdout = ferry.stdout.lock().unwrap().clone();
        if stdout.iter().filter(|l| l.contains(needle)).count() >= count {
            Ok(())
        } else {
            Err(stdout)
        }
    })
    .await
}

/// A rebuilt component (its Wasm file replaced) is picked up: here the
/// WASI 0.2 guest is replaced by the WASI 0.3 one.
#[tokio::test]
async fn a_rebuilt_component_is_picked_up() {
    let app = app("one", "");
    let ferry = Ferry::start(&app, &["--watch"]);
    until_served(&ferry, "hello from one\n").await;
    let built = app.path().join(".guest.wasm.partial");
    std::fs::copy(HTTP_P3_GUEST, &built).unwrap();
    std::fs::rename(&built, app.path().join("guest.wasm")).unwrap();
    until_served(&ferry, "hello from one over WASI 0.3\n").await;
}

/// Four clients request continuously while the app is reloaded back and
/// forth: no request fails, and each answer is wholly one version's.
#[tokio::test]
async fn no_request_fails_across_reloads() {
    let app = app("even", "");
    let ferry = Ferry::start(&app, &["--watch"]);
    until_served(&ferry, "hello from even\n").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (format!("{}/", ferry.url), stop.clone());
            tokio::spawn(async move {
                let mut answers = std::collections::BTreeMap::<String, usize>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let reply = get(&url).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    *answers.entry(reply.text()).or_default() += 1;
                }
                answers
            })
        })
        .collect();
    for round in 0..6 {
        let name = if round % 2 == 0 { "odd" } else { "even" };
        save_manifest(&app, &manifest(name));
        until_served(&ferry, &format!("hello from {name}\n")).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeMap::new();
    for client in clients {
        for (answer, count) in client.await.unwrap() {
            *seen.entry(answer).or_insert(0) += count;
        }
    }
    let answers: Vec<&String> = seen.keys().collect();
    assert_eq!(
        answers,
        ["hello from even\n", "hello from odd\n"],
        "every answer is one version's: {seen:?}"
    );
}

/// A reload does not hand out a second set of slots: with one request
/// allowed at a time, a request to the new version waits for the one still
/// running on the old version.
#[tokio::test]
async fn a_reload_keeps_the_concurrency_limit() {
    let app = app("one", "max_concurrent_requests = 1\n");
    let ferry = Ferry::start(&app, &["--watch"]);
    until_served(&ferry, "hello from one\n").await;
    let mark = ferry.log_mark();
    let slow = tokio::spawn({
        let url = format!("{}/sleep?ms=3000", ferry.url);
        async move { get(&url).await }
    });
    ferry.wait_for_log(mark, &["sleeping 3000 ms"]).await;
    save_manifest(&app, &manifest("two"));
    wait_for_stdout(&ferry, "Reloaded in", 1).await;
    let queued = get(&format!("{}/sleep?ms=10", ferry.url)).await;
    assert_eq!(queued.header("x-guest-name"), Some("two"));
    assert_eq!(slow.await.unwrap().status, 200);
    let lines = ferry.logs_since(mark);
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {lines:#?}"))
    };
    assert!(
        at("slept 3000 ms") < at("sleeping 10 ms"),
        "the new version ran beside the old one past the limit: {lines:#?}"
    );
}

/// A response still streaming when a reload swaps in a new version (and its
/// old Wasm file is gone) completes intact on the version it started on.
#[tokio::test]
async fn a_streaming_response_survives_a_reload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app("one", "");
    let ferry = Ferry::start(&app, &["--watch"]);
    until_served(&ferry, "hello from one\n").await;
    let mut stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    stream
        .write_all(b"GET /big?mb=64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Read a little, so the response is under way and held back by TCP.
    let mut first = vec![0; 1 << 20];
    stream.read_exact(&mut first).await.unwrap();

    std::fs::remove_file(app.path().join("guest.wasm")).unwrap();
    std::fs::copy(HTTP_GUEST, app.path().join("guest-v2.wasm")).unwrap();
    save_manifest(
        &app,
        &manifest("two").replace("guest.wasm", "guest-v2.wasm"),
    );
    until_served(&ferry, "hello from two\n").await;

    let (head, body) = finish_response(&mut stream, first).await;
    assert!(head.contains("x-guest-name: one"), "{head}");
    // Chunked: the body's data is the 64 MiB of `x`, then the last chunk.
    let data = body.iter().filter(|b| **b == b'x').count();
    assert_eq!(data, 64 << 20, "the streamed body arrived whole");
    assert!(body.ends_with(b"0\r\n\r\n"), "the stream ended cleanly");
}

/// `-L DIR` inside the app, under a `files` pattern that matches its
/// `.txt` files: Ferry's own log lines are not a change to the app (each
/// logged line used to reload it), while the app's own files still are.
#[tokio::test]
async fn log_files_written_inside_the_app_do_not_reload_it() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "files = [\"**/*.txt\"]")
    ));
    app.write("page.txt", "first");
    let logs = app.path().join("logs");
    let ferry = Ferry::start(&app, &["--watch", "-L", logs.to_str().unwrap()]);
    for _ in 0..3 {
        assert_eq!(get(&format!("{}/print", ferry.url)).await.status, 200);
    }
    let log = logs.join("web_stdout.txt");
    eventually_blocking("the log file to hold three lines", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() == 3 {
            Ok(())
        } else {
            Err(text)
        }
    });
    app.write("page.txt", "second");
    wait_for_stdout(&ferry, "Reloaded in", 1).await;
    let stdout = ferry.stdout.lock().unwrap().join("\n");
    assert_eq!(stdout.matches("Changed:").count(), 1, "{stdout}");
    assert!(!stdout.contains("web_stdout.txt"), "{stdout}");
}
