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

/// Starts `GET /sleep?ms=<ms>` and returns once the guest is running it,
/// holding one of its component's slots.
async fn hold_a_slot(ferry: &Ferry, ms: u64) -> tokio::task::JoinHandle<Reply> {
    let mark = ferry.log_mark();
    let slow = tokio::spawn(get_owned(format!("{}/sleep?ms={ms}", ferry.url)));
    ferry
        .wait_for_log(mark, &[&format!("sleeping {ms} ms")])
        .await;
    slow
}

/// Sends `GET /` expecting a 503 with `Retry-After` (`--log-format json`),
/// and returns the log mark taken before it and its access line.
async fn refused(ferry: &Ferry) -> (LogMark, serde_json::Value) {
    let mark = ferry.log_mark();
    let busy = get(&format!("{}/", ferry.url)).await;
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.header("retry-after"), Some("1"));
    (mark, ferry.access_line(mark, "/").await)
}

/// The app with `limits` as its component's runtime-config limits.
fn app_with_limits(limits: &str) -> TestApp {
    let app = app();
    app.write(
        "runtime-config.toml",
        &format!("[component.guest.limits]\n{limits}"),
    );
    app
}

/// A request that finds every slot busy waits its turn instead of being
/// refused: it runs once the slot frees, after the request holding it has
/// finished (the guest's own lines show the order).
#[tokio::test]
async fn a_request_over_the_concurrency_limit_waits_its_turn() {
    let app = app_with_limits("max_concurrent_requests = 1\n");
    let ferry = Ferry::start(&app, &[]);
    let mark = ferry.log_mark();
    let slow = hold_a_slot(&ferry, 1500).await;
    let queued = get(&format!("{}/sleep?ms=10", ferry.url)).await;
    assert_eq!(queued.status, 200, "{}", queued.text());
    assert_eq!(slow.await.unwrap().status, 200);
    let lines = ferry.logs_since(mark);
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {lines:#?}"))
    };
    assert!(
        at("slept 1500 ms") < at("sleeping 10 ms"),
        "the queued request ran beside the one holding the slot: {lines:#?}"
    );
}

/// A request that waits longer than `queue_timeout` is a 503 with
/// `Retry-After`, and its access line says why.
#[tokio::test]
async fn a_request_waiting_past_the_queue_timeout_answers_503() {
    let app = app_with_limits("max_concurrent_requests = 1\nqueue_timeout = \"200ms\"\n");
    let ferry = Ferry::start(&app, &["--log-format", "json"]);
    let slow = hold_a_slot(&ferry, 1500).await;
    let (_, access) = refused(&ferry).await;
    assert_eq!(
        access["error"],
        "waited 200ms in the queue without a free slot"
    );
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
}

/// With the queue full (here: no room at all), a request over the limit is
/// refused at once.
#[tokio::test]
async fn a_request_finding_the_queue_full_answers_503() {
    let app = app_with_limits("max_concurrent_requests = 1\nmax_queued_requests = 0\n");
    let ferry = Ferry::start(&app, &["--log-format", "json"]);
    let slow = hold_a_slot(&ferry, 1500).await;
    let (mark, access) = refused(&ferry).await;
    assert_eq!(
        access["error"],
        "every slot busy and the queue full (0 requests waiting)"
    );
    ferry
        .wait_for_log(mark, &["answering 503", "\"refused\":1"])
        .await;
    assert_eq!(slow.await.unwrap().status, 200);
}

/// `--max-instances` bounds the instance pool across all components: a
/// request that finds no free slot is a 503 with `Retry-After`, logged as
/// such (wasmtime's pool-limit error, recognised by its type), and the next
/// request after the slot frees is served.
#[tokio::test]
async fn a_full_instance_pool_answers_503() {
    let app = app();
    let ferry = Ferry::start(&app, &["--max-instances", "1"]);
    let slow = hold_a_slot(&ferry, 1500).await;
    let mark = ferry.log_mark();
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
