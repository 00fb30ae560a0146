//! Routing, route parameters and Spin's request headers.

use crate::support::*;

fn routing_app() -> TestApp {
    let mut body = String::from("[application.trigger.http]\nbase = \"/base\"\n\n");
    for (route, component) in [
        ("/...", "catch-all"),
        ("/api/...", "api"),
        ("/api/users/:id", "user"),
        ("/api/users/me", "me"),
        ("/p/:id/...", "params"),
        ("/exact", "exact"),
    ] {
        body.push_str(&trigger(route, component));
    }
    body.push_str("[[trigger.http]]\nroute = { private = true }\ncomponent = \"hidden\"\n\n");
    for id in [
        "catch-all",
        "api",
        "user",
        "me",
        "params",
        "exact",
        "hidden",
    ] {
        body.push_str(&http_component(id, ""));
    }
    TestApp::new(&body)
}

#[tokio::test]
async fn most_specific_route_wins() {
    let app = routing_app();
    let ferry = Ferry::start(&app, &[]);
    for (path, expected) in [
        ("/base", Some("catch-all")),
        ("/base/anything/else", Some("catch-all")),
        ("/base/api", Some("api")),
        ("/base/api/things", Some("api")),
        ("/base/api/users/42", Some("user")),
        ("/base/api/users/me", Some("me")),
        ("/base/exact", Some("exact")),
        ("/base/exact/", Some("exact")),
        ("/outside-the-base", None),
    ] {
        let reply = get(&format!("{}{path}", ferry.url)).await;
        assert_eq!(
            reply.header("x-guest-name"),
            expected,
            "{path}: {}",
            reply.text()
        );
        if expected.is_none() {
            assert_eq!(reply.status, 404, "{path}");
        }
    }
    // A private component has no route at all.
    assert!(
        !ferry
            .stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("  hidden:"))
    );
}

#[tokio::test]
async fn spin_headers_describe_the_match() {
    let app = routing_app();
    let ferry = Ferry::start(&app, &[]);
    let reply = send(
        http::Request::get(format!("{}/base/p/42/headers?x=1&y=2", ferry.url))
            .header("spin-path-info", "/spoofed")
            .header("spin-path-match-id", "spoofed")
            .header("x-custom", "kept")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let addr = ferry.addr();
    for line in [
        format!("spin-full-url: http://{addr}/base/p/42/headers?x=1&y=2"),
        "spin-path-info: /headers".into(),
        "spin-matched-route: /base/p/:id/...".into(),
        "spin-base-path: /base".into(),
        "spin-raw-component-route: /p/:id/...".into(),
        "spin-component-route: /p/:id".into(),
        "spin-path-match-id: 42".into(),
        "spin-client-addr: 127.0.0.1:".into(),
        "x-custom: kept".into(),
        "path: /base/p/42/headers?x=1&y=2".into(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("spoofed"),
        "client-sent spin-* headers must be dropped:\n{text}"
    );
}

#[tokio::test]
async fn static_responses_answer_without_a_component() {
    let app = TestApp::new(&format!(
        r#"[[trigger.http]]
route = "/health"
static_response = {{ status_code = 204, headers = {{ x-served-by = "ferry", cache-control = "no-store" }} }}

[[trigger.http]]
route = "/moved/..."
static_response = {{ status_code = 301, headers = {{ location = "/new" }}, body = "moved\n" }}

[[trigger.http]]
route = "/robots.txt"
static_response = {{ body = "User-agent: *\nDisallow: /\n" }}

{}{}"#,
        trigger("/...", "guest"),
        http_component("guest", "")
    ));
    let ferry = Ferry::start(&app, &[]);
    let mark = ferry.log_mark();
    let reply = get(&format!("{}/health", ferry.url)).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("x-served-by"), Some("ferry"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(reply.body.is_empty());

    let reply = get(&format!("{}/moved/a/b", ferry.url)).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/new"));
    assert_eq!(reply.text(), "moved\n");

    let reply = get(&format!("{}/robots.txt", ferry.url)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "User-agent: *\nDisallow: /\n");

    // Everything else still reaches the component.
    assert_eq!(
        get(&format!("{}/other", ferry.url))
            .await
            .header("x-guest-name"),
        Some("guest")
    );
    let line = ferry
        .wait_for_log(mark, &["ferry::access", "path=\"/health\"", "status=204"])
        .await;
    assert!(line.contains("component=\"-\""), "{line}");
}

#[tokio::test]
async fn of_two_routes_for_the_same_paths_the_later_wins() {
    let app = TestApp::new(&format!(
        "{}{}{}{}",
        trigger("/users/:id", "first"),
        trigger("/users/:id", "second"),
        http_component("first", ""),
        http_component("second", "")
    ));
    let ferry = Ferry::start(&app, &[]);
    assert_eq!(
        get(&format!("{}/users/7", ferry.url))
            .await
            .header("x-guest-name"),
        Some("second")
    );
    let logs = ferry.logs();
    assert!(
        logs.contains("warning: duplicate route `/users/:id`: the trigger at line 7 (component `first`) serves the same paths and is never used")
            && logs.contains("as in Spin, the later trigger wins"),
        "{logs}"
    );
}

/// Spin's `/.well-known/spin/` paths are answered by Ferry before any
/// route, even a catch-all, on `ferry up` and on a live host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_spin_paths_are_answered_before_any_route() {
    // Still `[application]`: its version.
    let app = TestApp::new(&format!(
        "version = \"1.2.3\"\n\n{}{}",
        trigger("/...", "all"),
        http_component("all", "")
    ));
    let ferry = Ferry::start(&app, &[]);
    let health = get(&format!("{}/.well-known/spin/health", ferry.url)).await;
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));
    let info = get(&format!("{}/.well-known/spin/info", ferry.url)).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.header("content-type"), Some("application/json"));
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(
        info,
        serde_json::json!({ "name": "test-app", "version": "1.2.3" })
    );
    let other = get(&format!("{}/.well-known/spin/other", ferry.url)).await;
    assert_eq!(other.status, 404);
    // Anything else is the app's: the guest answers.
    let routed = get(&format!("{}/.well-known/other", ferry.url)).await;
    assert_eq!(
        routed.text(),
        "no test behaviour at \"/.well-known/other\"\n"
    );

    // A live host with two apps on its shared listener names neither.
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("one", "one", "/one").path(), &[]);
    assert_eq!(
        host.get("/.well-known/spin/info").await.text(),
        "{\n  \"name\": \"one\"\n}"
    );
    host.deploy(versioned_app("two", "two", "/two").path(), &[]);
    assert_eq!(host.get("/.well-known/spin/info").await.status, 404);
    assert_eq!(host.get("/.well-known/spin/health").await.text(), "OK");
}
