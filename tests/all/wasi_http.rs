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
    assert_eq!(get(&format!("{}/print", ferry.url)).await.status, 200);
    let access = ferry.access_line(mark, "/print").await;
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
    assert!(lines.iter().any(|l| l["target"] == "ferry::guest"
        && l["component"] == "guest"
        && l["stream"] == "stdout"
        && l["message"] == "a line on stdout from guest"));
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
