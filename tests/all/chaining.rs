//! Service chaining: a guest's request to `http://<component>.spin.internal/…`
//! reaches that component of its own app in process, granted as Spin grants
//! it, answered as a routed request would be, and bounded in depth.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

/// `front` may chain to `back` (private: no route of its own); `wide` is
/// granted every host and `self`, which grant no chaining; `relay` may chain
/// to any component, itself included.
fn chaining_app() -> TestApp {
    TestApp::new(&format!(
        "[[trigger.http]]\nroute = \"/front/...\"\ncomponent = \"front\"\n\n\
         [[trigger.http]]\nroute = {{ private = true }}\ncomponent = \"back\"\n\n\
         [[trigger.http]]\nroute = \"/wide/...\"\ncomponent = \"wide\"\n\n\
         [[trigger.http]]\nroute = \"/relay/...\"\ncomponent = \"relay\"\n\n{}{}{}{}",
        http_component(
            "front",
            "allowed_outbound_hosts = [\"http://back.spin.internal\"]"
        ),
        http_component("back", ""),
        http_component(
            "wide",
            "allowed_outbound_hosts = [\"*://*:*\", \"http://self\"]"
        ),
        http_component(
            "relay",
            "allowed_outbound_hosts = [\"http://*.spin.internal\"]"
        ),
    ))
}

/// What the guest at `route` says of its GET to `url`.
async fn fetched(ferry: &Ferry, route: &str, url: &str) -> String {
    let reply = get(&format!("{}{route}/outbound?url={url}", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reaches_another_of_its_app_in_process_as_granted() {
    let app = chaining_app();
    let ferry = Ferry::start(&app, &[]);
    let mark = ferry.log_mark();
    assert_eq!(
        fetched(&ferry, "/front", "http://back.spin.internal/").await,
        "status 200: hello from back\n"
    );
    // Spin's headers, as for a route `/...` of `back`, its URL on the host
    // Spin gives it, and no client address.
    let headers = fetched(&ferry, "/front", "http://back.spin.internal/headers?x=1").await;
    assert!(!headers.contains("spin-client-addr"), "{headers}");
    for line in [
        "path: /headers?x=1",
        "spin-path-info: /headers",
        "spin-full-url: http://back.spin.internal/headers?x=1",
        "spin-matched-route: /...",
    ] {
        assert!(headers.contains(line), "{line} in {headers}");
    }
    ferry
        .wait_for_log(
            mark,
            &["ferry::chain", "chained request", "component=\"back\""],
        )
        .await;
    // A trap in the callee is its caller's 500, not the caller's trap.
    assert!(
        fetched(&ferry, "/front", "http://back.spin.internal/trap")
            .await
            .starts_with("status 500:")
    );

    // Not granted: another component, or by the wildcard and `self`.
    assert_eq!(
        fetched(&ferry, "/front", "http://relay.spin.internal/").await,
        "error: ErrorCode::HttpRequestDenied\n"
    );
    assert_eq!(
        fetched(&ferry, "/wide", "http://back.spin.internal/").await,
        "error: ErrorCode::HttpRequestDenied\n"
    );
    // Granted every component, but there is no such one.
    assert_eq!(
        fetched(&ferry, "/relay", "http://nope.spin.internal/").await,
        "error: ErrorCode::DestinationNotFound\n"
    );

    // `back` is private: nothing from outside reaches it, by path or by
    // naming its chaining host.
    assert_eq!(get(&format!("{}/back/", ferry.url)).await.status, 404);
    let spoofed = send(
        http::Request::get(format!("{}/", ferry.url))
            .header("host", "back.spin.internal")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(spoofed.status, 404, "{}", spoofed.text());
    // And the host a routed request names is never `*.spin.internal`.
    let shown = send(
        http::Request::get(format!("{}/front/headers", ferry.url))
            .header("host", "front.spin.internal")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .text();
    assert!(!shown.contains("spin.internal"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_chained_requests_stops_at_the_depth_limit() {
    let app = chaining_app();
    let ferry = Ferry::start(&app, &[]);
    // `relay` asking itself to ask itself … twelve deep.
    let mut url = "http://relay.spin.internal/".to_owned();
    for _ in 0..11 {
        url = format!("http://relay.spin.internal/outbound?url={url}");
    }
    let answer = fetched(&ferry, "/relay", &url).await;
    assert_eq!(
        answer.matches("status 200: ").count(),
        ferry_runtime::MAX_CHAIN_DEPTH as usize,
        "{answer}"
    );
    assert!(answer.ends_with("status 508: Loop Detected\n"), "{answer}");
}

/// WASI 0.2 and WASI 0.3 components chain to each other: a 0.3 caller
/// awaits a 0.2 callee's answer, and a 0.2 caller reads a 0.3 callee's
/// body, streamed after its handler returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_0_2_and_0_3_components_chain_to_each_other() {
    let app = TestApp::new(&format!(
        "[[trigger.http]]\nroute = \"/front/...\"\ncomponent = \"front\"\n\n\
         [[trigger.http]]\nroute = \"/p3/...\"\ncomponent = \"p3\"\n\n\
         [component.front]\nsource = {HTTP_GUEST:?}\nenvironment = {{ NAME = \"front\" }}\n\
         allowed_outbound_hosts = [\"http://p3.spin.internal\"]\n\n\
         [component.p3]\nsource = {HTTP_P3_GUEST:?}\nenvironment = {{ NAME = \"p3\" }}\n\
         allowed_outbound_hosts = [\"http://front.spin.internal\"]\n"
    ));
    let ferry = Ferry::start(&app, &[]);
    assert_eq!(
        fetched(&ferry, "/p3", "http://front.spin.internal/").await,
        "status 200: hello from front\n"
    );
    assert_eq!(
        fetched(&ferry, "/front", "http://p3.spin.internal/").await,
        "status 200: hello from p3 over WASI 0.3\n"
    );
    let streamed = fetched(&ferry, "/front", "http://p3.spin.internal/stream").await;
    assert!(
        streamed.starts_with("status 200: chunk 0\n") && streamed.ends_with("chunk 63\n"),
        "{streamed}"
    );
}

/// An app `name` under `base` whose `front` may chain to its private
/// `back`, which answers `hello from <back>`.
fn two_part_app(app: &TestApp, name: &str, base: &str, back: &str) {
    app.write(
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\n\
             [application.trigger.http]\nbase = \"{base}\"\n\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"front\"\n\n\
             [[trigger.http]]\nroute = {{ private = true }}\ncomponent = \"back\"\n\n\
             [component.front]\nsource = \"guest.wasm\"\nenvironment = {{ NAME = \"front\" }}\n\
             allowed_outbound_hosts = [\"http://back.spin.internal\"]\n\n\
             [component.back]\nsource = \"guest.wasm\"\nenvironment = {{ NAME = \"{back}\" }}\n"
        ),
    );
}

/// On a live host, a chain stays in the caller's app and version: two apps
/// each have a `back`, and each `front` reaches its own; after a deploy,
/// the new version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_live_host_a_chain_stays_in_its_app_and_version() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let (one, two) = (TestApp::new(""), TestApp::new(""));
    for (app, name, base, back) in [
        (&one, "one", "/one", "one-v1"),
        (&two, "two", "/two", "two-v1"),
    ] {
        std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
        two_part_app(app, name, base, back);
        host.deploy(app.path(), &[]);
    }
    let chained = async |base: &str| {
        let reply = host
            .get(&format!("{base}/outbound?url=http://back.spin.internal/"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.text()
    };
    assert_eq!(chained("/one").await, "status 200: hello from one-v1\n");
    assert_eq!(chained("/two").await, "status 200: hello from two-v1\n");
    two_part_app(&one, "one", "/one", "one-v2");
    host.deploy(one.path(), &[]);
    assert_eq!(chained("/one").await, "status 200: hello from one-v2\n");
    assert_eq!(chained("/two").await, "status 200: hello from two-v1\n");
}

#[test]
fn ferry_check_shows_what_each_component_may_chain_to() {
    let app = chaining_app();
    let out = ferry_check(&app);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    // Each component's block, up to the next.
    let block = |id: &str| {
        let start = shown
            .find(&format!("component `{id}`"))
            .unwrap_or_else(|| panic!("{id} in {shown}"));
        let rest = &shown[start + 1..];
        rest[..rest.find("\ncomponent `").unwrap_or(rest.len())].to_owned()
    };
    assert!(block("front").contains("chains to  `back`\n"), "{shown}");
    assert!(
        block("relay").contains("chains to  `front`, `back`, `wide`, `relay`\n"),
        "{shown}"
    );
    // `*://*:*` and `self` grant no chaining.
    assert!(!block("wide").contains("chains to"), "{shown}");
    assert!(!block("back").contains("chains to"), "{shown}");
}
