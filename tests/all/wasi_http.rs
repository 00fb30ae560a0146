//! wasi:http components: streaming bodies, a fresh instance per request,
//! the environment and guest output.

use http_body_util::BodyExt;

use crate::support::*;

fn app() -> TestApp {
    TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")))
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    for _ in 0..5 {
        let reply = get(&format!("{}/counter", ferry.url)).await;
        assert_eq!(reply.text(), "1\n");
    }
}

#[tokio::test]
async fn request_and_response_bodies_stream() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    // 4 MiB sent in chunks without a content-length, echoed back while it arrives.
    let response = post_streamed(&format!("{}/echo", ferry.url), 64, 64 * 1024)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "the response should stream"
    );
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), 64 * 64 * 1024);
    for (i, chunk) in echoed.chunks(64 * 1024).enumerate() {
        assert!(chunk.iter().all(|b| *b == i as u8), "chunk {i} corrupted");
    }
}

#[tokio::test]
async fn guest_output_goes_to_the_log_with_the_component_id() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let mark = ferry.log_mark();
    assert_eq!(get(&format!("{}/print", ferry.url)).await.status, 200);
    ferry
        .wait_for_log(
            mark,
            &[
                "a line on stdout from guest",
                "component=\"guest\"",
                "stream=\"stdout\"",
            ],
        )
        .await;
    ferry
        .wait_for_log(
            mark,
            &[
                "a line on stderr from guest",
                "component=\"guest\"",
                "stream=\"stderr\"",
            ],
        )
        .await;
    let access = ferry
        .wait_for_log(mark, &["ferry::access", "path=\"/print\""])
        .await;
    assert!(
        access.contains("status=200") && access.contains("component=\"guest\""),
        "{access}"
    );
}

/// `--log-format json`: every line is one JSON object, and the access line
/// has each field with its type.
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let app = app();
    let ferry = Ferry::start(&app, &["--log-format", "json"]);
    let mark = ferry.log_mark();
    let reply = get(&format!("{}/print", ferry.url)).await;
    assert_eq!(reply.status, 200);
    let request_id = reply
        .header("x-request-id")
        .expect("a request id")
        .to_owned();
    assert_eq!(request_id.len(), 32, "{request_id}");
    let access = ferry.access_line(mark, "/print").await;
    assert_eq!(access["request_id"], request_id.as_str());
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 200);
    assert_eq!(access["app"], "test-app");
    assert_eq!(access["component"], "guest");
    assert_eq!(access["outcome"], "complete");
    assert_eq!(access["bytes"], "printed\n".len());
    assert!(access["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let (head, total) = (
        access["head_us"].as_u64().unwrap(),
        access["total_us"].as_u64().unwrap(),
    );
    assert!(head <= total, "{access}");
    // The guest's own output is JSON too, with its component and stream.
    let lines: Vec<serde_json::Value> = ferry
        .logs()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // ... and says which app, route and request it is from.
    assert!(lines.iter().any(|l| l["target"] == "ferry::guest"
        && l["app"] == "test-app"
        && l["component"] == "guest"
        && l["route"] == "/..."
        && l["request_id"] == request_id.as_str()
        && l["stream"] == "stdout"
        && l["message"] == "a line on stdout from guest"));
    // Every request has an id of its own.
    let other = get(&format!("{}/print", ferry.url)).await;
    assert_ne!(other.header("x-request-id"), Some(request_id.as_str()));
}

/// A guest that prints without end gets its first 1,000 lines per request
/// logged, then one warning; the next request starts afresh.
#[tokio::test]
async fn a_chatty_guest_cannot_flood_the_log() {
    let ferry = Ferry::start(&app(), &["--log-format", "json"]);
    for _ in 0..2 {
        let reply = get(&format!("{}/chatty?lines=1500", ferry.url)).await;
        assert_eq!(reply.text(), "printed 1500 lines\n");
        let id = reply.header("x-request-id").unwrap().to_owned();
        // Its guest lines come before its access line: wait for that. Seen
        // meanwhile: its (guest lines, warnings) so far.
        let what = format!("the access line of request {id}");
        let (printed, warned) = eventually(&what, || async {
            let lines: Vec<serde_json::Value> = ferry
                .logs()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .filter(|l: &serde_json::Value| l["request_id"] == id.as_str())
                .collect();
            let printed = lines
                .iter()
                .filter(|l| l["target"] == "ferry::guest" && l["level"] == "INFO")
                .count();
            let warned = lines
                .iter()
                .filter(|l| l["target"] == "ferry::guest" && l["level"] == "WARN")
                .count();
            let done = lines.iter().any(|l| l["target"] == "ferry::access");
            if done {
                Ok((printed, warned))
            } else {
                Err((printed, warned))
            }
        })
        .await;
        assert_eq!(printed, 1000);
        assert_eq!(warned, 1);
    }
}

#[tokio::test]
async fn wasi_03_service_components_are_served() {
    let app = TestApp::new(&format!(
        "{}{}[component.p3]\nsource = {HTTP_P3_GUEST:?}\nenvironment = {{ NAME = \"p3\" }}\n",
        trigger("/v2/...", "guest"),
        trigger("/v3/...", "p3") + &http_component("guest", ""),
    ));
    let ferry = Ferry::start(&app, &["--request-timeout", "1s"]);
    let hello = get(&format!("{}/v3/", ferry.url)).await;
    assert_eq!(hello.text(), "hello from p3 over WASI 0.3\n");
    for _ in 0..3 {
        assert_eq!(
            get(&format!("{}/v3/counter", ferry.url)).await.text(),
            "1\n"
        );
    }
    // A body written after the handler returned arrives whole.
    let streamed = get(&format!("{}/v3/stream", ferry.url)).await;
    let expected: String = (0..64).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(streamed.text(), expected);
    // The request body streams through the guest into the response.
    let response = post_streamed(&format!("{}/v3/echo", ferry.url), 32, 64 * 1024)
        .await
        .unwrap();
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), 32 * 64 * 1024);
    assert!(
        echoed
            .chunks(64 * 1024)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8))
    );
    // Limits hold for 0.3 guests too.
    assert_eq!(get(&format!("{}/v3/loop", ferry.url)).await.status, 504);
    // A trap is a 500 with a log line, and both kinds of guest keep serving.
    let mark = ferry.log_mark();
    assert_eq!(get(&format!("{}/v3/trap", ferry.url)).await.status, 500);
    ferry
        .wait_for_log(mark, &["guest trapped", "component=\"p3\""])
        .await;
    assert_eq!(get(&format!("{}/v3/", ferry.url)).await.status, 200);
    assert_eq!(
        get(&format!("{}/v2/", ferry.url)).await.text(),
        "hello from guest\n"
    );
}
