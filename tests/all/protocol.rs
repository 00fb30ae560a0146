//! HTTP/1.1 keep-alive, HTTP/2, graceful shutdown and the compile cache.

use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::*;

fn app() -> TestApp {
    TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")))
}

fn client_port(headers_dump: &str) -> String {
    headers_dump
        .lines()
        .find_map(|l| l.strip_prefix("spin-client-addr: "))
        .expect("spin-client-addr")
        .to_owned()
}

#[tokio::test]
async fn http1_keep_alive_serves_many_requests_on_one_connection() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut peers = Vec::new();
    for _ in 0..3 {
        let request = http::Request::get("/headers")
            .header("host", ferry.addr())
            .body(Full::<bytes::Bytes>::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        peers.push(client_port(&String::from_utf8_lossy(&body)));
    }
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "all on one connection: {peers:?}"
    );
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut responses = Vec::new();
    for i in 0..4 {
        let request = http::Request::get(format!("{}/status?code={}", ferry.url, 200 + i))
            .body(Full::<bytes::Bytes>::default())
            .unwrap();
        responses.push(sender.send_request(request));
    }
    for (i, response) in responses.into_iter().enumerate() {
        let response = response.await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200 + i as u16);
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let url = format!("{}/sleep?ms=1500", ferry.url);
    let mark = ferry.log_mark();
    let in_flight = tokio::spawn(async move { get(&url).await });
    ferry.wait_for_log(mark, &["sleeping 1500 ms"]).await;
    let addr = ferry.addr();
    let status = tokio::task::spawn_blocking(move || ferry.terminate())
        .await
        .unwrap();
    assert!(
        status.success(),
        "ferry should exit 0 after SIGTERM, got {status}"
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "slept 1500 ms\n")
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener must be closed"
    );
}

/// Whether `ferry up` printed a line starting with `prefix` (a slow compile
/// also prints progress lines before it).
fn printed(ferry: &Ferry, prefix: &str) -> bool {
    ferry
        .stdout
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with(prefix))
}

#[tokio::test]
async fn compiled_code_is_cached_across_runs() {
    let app = app();
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap();
    let first = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(
        printed(&first, "Compiled `guest`"),
        "{:?}",
        first.stdout.lock().unwrap()
    );
    drop(first);
    let second = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(
        printed(&second, "Loaded `guest`"),
        "{:?}",
        second.stdout.lock().unwrap()
    );
    assert_eq!(
        get(&format!("{}/", second.url)).await.text(),
        "hello from guest\n"
    );
    // A corrupt cache entry is recompiled, not trusted.
    drop(second);
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(
        printed(&third, "Compiled `guest`"),
        "{:?}",
        third.stdout.lock().unwrap()
    );
    assert_eq!(
        get(&format!("{}/", third.url)).await.text(),
        "hello from guest\n"
    );
}

/// Compiled code from the cache runs inside Ferry, so the cache is only
/// used where nobody else could have written it: Ferry creates the
/// directory private (0700), and a directory or entry that others may write
/// is not loaded from: Ferry compiles instead and says why.
#[tokio::test]
async fn a_compile_cache_others_could_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = app();
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };

    let first = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(printed(&first, "Compiled `guest`"));
    drop(first);
    assert_eq!(
        mode(&cache),
        0o700,
        "the cache directory is created private"
    );
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(mode(entry) & 0o022, 0, "entries are written private");

    // A directory anyone may write into: not used at all.
    chmod(&cache, 0o777);
    let ferry = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(printed(&ferry, "Compiled `guest`"), "{:?}", ferry.stdout);
    assert!(
        ferry.logs().contains("not using the compile cache"),
        "{}",
        ferry.logs()
    );
    assert_eq!(
        get(&format!("{}/", ferry.url)).await.text(),
        "hello from guest\n"
    );
    drop(ferry);
    chmod(&cache, 0o700);

    // An entry its group may write: recompiled, not loaded.
    chmod(entry, 0o664);
    let ferry = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(printed(&ferry, "Compiled `guest`"), "{:?}", ferry.stdout);
    assert!(
        ferry.logs().contains("not loading a compile cache entry")
            && ferry.logs().contains("mode 664"),
        "{}",
        ferry.logs()
    );
    drop(ferry);

    // The same entry, private again: loaded.
    chmod(entry, 0o600);
    let ferry = Ferry::start(&app, &["--cache-dir", cache_arg]);
    assert!(printed(&ferry, "Loaded `guest`"), "{:?}", ferry.stdout);
}
