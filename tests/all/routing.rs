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
