//! Misbehaving guests get an error response and one log line; the server
//! keeps serving everyone else.

use crate::support::*;

#[tokio::test]
async fn guest_failures_are_answered_logged_and_forgotten() {
    let app = TestApp::new(&format!(
        "{}{}[[trigger.http]]\nroute = \"/cgi/...\"\ncomponent = \"cgi\"\nexecutor = {{ type = \"wagi\" }}\n\n[component.cgi]\nsource = {WAGI_C:?}\n",
        trigger("/g/...", "guest"),
        http_component("guest", "")
    ));
    let ferry = Ferry::start(&app, &["--request-timeout", "2s", "--max-memory", "64MiB"]);
    for (path, status, log) in [
        ("/g/trap", 500, "wasm `unreachable` instruction executed"),
        ("/g/panic", 500, "guest trapped"),
        ("/g/oom", 500, "guest trapped"),
        // Rust's shadow stack lives in linear memory: overflowing it is an
        // out-of-bounds access before wasm's own call stack is exhausted.
        ("/g/stack-overflow", 500, "guest trapped"),
        (
            "/g/no-response",
            500,
            "guest returned without setting a response",
        ),
        (
            "/g/big?mb=100&declared=1",
            500,
            "response body larger than the limit",
        ),
        ("/g/loop", 504, "exceeded the request timeout of 2s"),
        ("/cgi/trap", 500, "guest trapped"),
        ("/cgi/big", 500, "response body larger than the limit"),
        ("/cgi/loop", 504, "exceeded the request timeout of 2s"),
    ] {
        let reply = get(&format!("{}{path}", ferry.url)).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        let component = if path.starts_with("/cgi") {
            "cgi"
        } else {
            "guest"
        };
        let route = if path.starts_with("/cgi") {
            "/cgi/..."
        } else {
            "/g/..."
        };
        ferry
            .wait_for_log(&[
                log,
                &format!("component=\"{component}\""),
                &format!("route={route}"),
                "app=\"test-app\"",
            ])
            .await;
        // Everyone else is still served.
        assert_eq!(
            get(&format!("{}/g/", ferry.url)).await.text(),
            "hello from guest\n"
        );
    }
}

#[tokio::test]
async fn a_streamed_response_past_the_limit_is_cut_short() {
    let app = TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(&app, &["--max-response-body", "1MiB"]);
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
        .wait_for_log(&["exceeded the limit of 1048576 bytes", "component=guest"])
        .await;
    assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
}
