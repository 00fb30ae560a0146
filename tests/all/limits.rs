//! Every limit, with the response a client sees when it is reached.

use std::time::Duration;

use http_body_util::Full;

use crate::support::*;

fn app() -> TestApp {
    TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")))
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413() {
    let app = app();
    let ferry = Ferry::start(&app, &["--max-request-body", "1MiB"]);
    // Declared with content-length: refused before the guest runs.
    let declared = send(
        http::Request::post(format!("{}/echo", ferry.url))
            .body(Full::from(vec![0u8; (1 << 20) + 1]))
            .unwrap(),
    )
    .await;
    assert_eq!(declared.status, 413);
    // Streamed without a length: refused once the limit is crossed.
    let streamed = post_streamed(&format!("{}/echo", ferry.url), 4, 512 * 1024).await;
    // The server may also close the connection while the client still sends.
    if let Ok(response) = streamed {
        assert!(
            response.status() == 413
                || http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .is_err(),
            "a streamed body over the limit must not be echoed in full"
        );
    }
    // At the limit is fine.
    let ok = send(
        http::Request::post(format!("{}/echo", ferry.url))
            .body(Full::from(vec![7u8; 1 << 20]))
            .unwrap(),
    )
    .await;
    assert_eq!((ok.status, ok.body.len()), (200, 1 << 20));
}

#[tokio::test]
async fn concurrency_limit_answers_503_with_retry_after() {
    let app = app();
    app.write(
        "runtime-config.toml",
        "[component.guest.limits]\nmax_concurrent_requests = 1\n",
    );
    let ferry = Ferry::start(&app, &[]);
    let mark = ferry.log_mark();
    let slow = tokio::spawn(get_owned(format!("{}/sleep?ms=1500", ferry.url)));
    ferry.wait_for_log(mark, &["sleeping 1500 ms"]).await;
    let busy = get(&format!("{}/", ferry.url)).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
}

/// `--max-instances` bounds the instance pool across all components: a
/// request that finds no free slot is a 503 with `Retry-After`, logged as
/// such (wasmtime's pool-limit error, recognised by its type), and the next
/// request after the slot frees is served.
#[tokio::test]
async fn a_full_instance_pool_answers_503() {
    let app = app();
    let ferry = Ferry::start(&app, &["--max-instances", "1"]);
    let mark = ferry.log_mark();
    let slow = tokio::spawn(get_owned(format!("{}/sleep?ms=1500", ferry.url)));
    ferry.wait_for_log(mark, &["sleeping 1500 ms"]).await;
    let busy = get(&format!("{}/", ferry.url)).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    ferry
        .wait_for_log(mark, &["no instance slot free", "component=\"guest\""])
        .await;
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
}

async fn get_owned(url: String) -> Reply {
    get(&url).await
}

#[tokio::test]
async fn wall_time_limit_gives_504() {
    let app = app();
    app.write(
        "runtime-config.toml",
        "[limits]\nrequest_timeout = \"500ms\"\n",
    );
    let ferry = Ferry::start(&app, &[]);
    let started = std::time::Instant::now();
    assert_eq!(
        get(&format!("{}/sleep?ms=5000", ferry.url)).await.status,
        504
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the guest was not interrupted"
    );
    assert_eq!(get(&format!("{}/sleep?ms=10", ferry.url)).await.status, 200);
}

#[tokio::test]
async fn memory_limit_stops_a_hungry_guest() {
    let app = app();
    let ferry = Ferry::start(&app, &["--max-memory", "32MiB"]);
    let mark = ferry.log_mark();
    assert_eq!(get(&format!("{}/oom", ferry.url)).await.status, 500);
    ferry
        .wait_for_log(mark, &["memory allocation of", "component=\"guest\""])
        .await;
    assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = app();
    let ferry = Ferry::start(&app, &["--max-header-size", "16KiB"]);
    let reply = send(
        http::Request::get(format!("{}/", ferry.url))
            .header("x-big", "a".repeat(32 * 1024))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 431);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app();
    let ferry = Ferry::start(&app, &["--header-read-timeout", "500ms"]);
    let mut stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection whose headers never finish"
    );
}
