//! Misbehaving guests get an error response and one log line; the server
//! keeps serving everyone else.

use crate::support::*;

/// Each failure is answered with its status, and the log says why: every
/// check looks only at lines written after its own request, and names the
/// cause it expects (a panic's message, the allocation that failed), so one
/// request's line cannot stand in for another's.
#[tokio::test]
async fn guest_failures_are_answered_logged_and_forgotten() {
    let app = TestApp::new(&format!(
        "{}{}[[trigger.http]]\nroute = \"/cgi/...\"\ncomponent = \"cgi\"\nexecutor = {{ type = \"wagi\" }}\n\n[component.cgi]\nsource = {WAGI_C:?}\n",
        trigger("/g/...", "guest"),
        http_component("guest", "")
    ));
    let ferry = Ferry::start(
        &app,
        &[
            "--request-timeout",
            "2s",
            "--max-memory",
            "64MiB",
            "--max-response-body",
            "32MiB",
        ],
    );
    let trapped = "guest trapped: wasm trap: ";
    // (path, status, lines the log must gain: each all of its needles)
    let cases: [(&str, u16, &[&[&str]]); 10] = [
        (
            "/g/trap",
            500,
            &[&[trapped, "wasm `unreachable` instruction executed"]],
        ),
        (
            "/g/panic",
            500,
            &[
                &["the guest panicked on purpose", "stream=\"stderr\""],
                &[trapped, "wasm `unreachable` instruction executed"],
            ],
        ),
        (
            "/g/oom",
            500,
            &[
                &[
                    "memory allocation of 16777216 bytes failed",
                    "stream=\"stderr\"",
                ],
                &[trapped, "wasm `unreachable` instruction executed"],
            ],
        ),
        // Rust's shadow stack lives in linear memory: overflowing it is an
        // out-of-bounds access before wasm's own call stack is exhausted.
        (
            "/g/stack-overflow",
            500,
            &[&[trapped, "out of bounds memory access"]],
        ),
        (
            "/g/no-response",
            500,
            &[&["guest returned without setting a response"]],
        ),
        (
            "/g/big?mb=100&declared=1",
            500,
            &[&["response body larger than the limit of 33554432 bytes"]],
        ),
        ("/g/loop", 504, &[&["exceeded the request timeout of 2s"]]),
        (
            "/cgi/trap",
            500,
            &[&[trapped, "wasm `unreachable` instruction executed"]],
        ),
        (
            "/cgi/big",
            500,
            &[&["response body larger than the limit of 33554432 bytes"]],
        ),
        ("/cgi/loop", 504, &[&["exceeded the request timeout of 2s"]]),
    ];
    for (path, status, lines) in cases {
        let mark = ferry.log_mark();
        let reply = get(&format!("{}{path}", ferry.url)).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        let (component, route) = if path.starts_with("/cgi") {
            ("cgi", "/cgi/...")
        } else {
            ("guest", "/g/...")
        };
        let component = format!("component=\"{component}\"");
        let route = format!("route=\"{route}\"");
        for needles in lines {
            // A guest's own output names its component; Ferry's line about
            // the failure names the app and the route too.
            let mut all: Vec<&str> = needles.to_vec();
            all.push(&component);
            if !needles.iter().any(|n| n.starts_with("stream=")) {
                all.extend([route.as_str(), "app=\"test-app\""]);
            }
            ferry.wait_for_log(mark, &all).await;
        }
        // Everyone else is still served.
        assert_eq!(
            get(&format!("{}/g/", ferry.url)).await.text(),
            "hello from guest\n"
        );
    }
}

/// With `--max-response-body`, a streamed response that goes over it after
/// its head was sent ends abnormally for the client, and both the error line
/// and the access line say it was cut short.
#[tokio::test]
async fn a_streamed_response_past_the_limit_is_cut_short() {
    let app = TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(
        &app,
        &["--max-response-body", "1MiB", "--log-format", "json"],
    );
    let mark = ferry.log_mark();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let response = client
        .get(format!("{}/big?mb=8", ferry.url).parse().unwrap())
        .await
        .unwrap();
    // The head was already sent when the guest started streaming.
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(body.is_err(), "the client must see the body end abnormally");
    ferry
        .wait_for_log(
            mark,
            &[
                "exceeded the limit of 1048576 bytes",
                "\"component\":\"guest\"",
            ],
        )
        .await;
    let access = ferry.access_line(mark, "/big").await;
    assert_eq!(access["status"], 200);
    assert_eq!(
        access["outcome"],
        "cut short: body larger than the limit of 1048576 bytes"
    );
    let bytes = access["bytes"].as_u64().unwrap();
    assert!(bytes > 0 && bytes <= 1 << 20, "{access}");
    assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
}

/// By default a streamed response is never cut, whatever its size: a 100 MiB
/// download arrives whole, and its access line has the bytes, the time to
/// the head and the (longer) time to the end.
#[tokio::test]
async fn a_large_streamed_download_arrives_whole_by_default() {
    let app = TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(&app, &["--log-format", "json"]);
    let mark = ferry.log_mark();
    let reply = get(&format!("{}/big?mb=100", ferry.url)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 100 << 20);
    assert!(reply.body.iter().all(|b| *b == b'x'));
    let access = ferry.access_line(mark, "/big").await;
    assert_eq!(access["outcome"], "complete", "{access}");
    assert_eq!(access["bytes"], 100u64 << 20);
    let (head, total) = (
        access["head_us"].as_u64().unwrap(),
        access["total_us"].as_u64().unwrap(),
    );
    assert!(head < total, "{access}");
}

/// A declared `Content-Length` over an explicit limit is a 500 before any
/// byte of the body is sent.
#[tokio::test]
async fn a_declared_length_over_an_explicit_limit_is_refused_before_sending() {
    let app = TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(
        &app,
        &["--max-response-body", "1MiB", "--log-format", "json"],
    );
    let mark = ferry.log_mark();
    let reply = get(&format!("{}/big?mb=2&declared=1", ferry.url)).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), "Internal Server Error");
    let access = ferry.access_line(mark, "/big").await;
    assert_eq!(access["status"], 500);
    assert_eq!(access["outcome"], "complete");
}

/// A client that goes away mid-download: the access line says the response
/// was cut short and how much was sent.
#[tokio::test]
async fn a_client_leaving_mid_download_is_logged_as_cut_short() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(&app, &["--log-format", "json"]);
    let mark = ferry.log_mark();
    let mut stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    stream
        .write_all(b"GET /big?mb=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 256 << 10];
    stream.read_exact(&mut buf).await.unwrap();
    drop(stream);
    let access = ferry.access_line(mark, "/big").await;
    assert_eq!(
        access["outcome"], "cut short: the connection closed before the body was sent",
        "{access}"
    );
    assert!(access["bytes"].as_u64().unwrap() < 100 << 20, "{access}");
}
