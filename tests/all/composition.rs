//! Composition: a component with dependencies (by path, by URL and digest,
//! and by another component of the app), what a dependency may reach of its
//! parent's grants, and HTTP middleware composed in front of a component.

use std::time::Duration;

use bytes::Bytes;
use ferry_test_programs::{COMPOSE_APP, COMPOSE_DEP, MW_AUTH, MW_HEADER, MW_UPPER};
use http_body_util::{BodyExt, Full};

use crate::remote::ComponentServer;
use crate::support::*;

/// `[component.<id>]` for the parent guest, with `extra` lines.
fn parent(id: &str, extra: &str) -> String {
    format!("[component.{id}]\nsource = {COMPOSE_APP:?}\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_is_composed_with_dependencies_by_path_url_and_app_component() {
    let dep = std::fs::read(COMPOSE_DEP).unwrap();
    let server = ComponentServer::start(dep.clone());
    let url = server.url("/guest.wasm");
    let app = TestApp::new(&format!(
        "{}{}{}{}{}{}\
         [component.greeter]\nsource = {COMPOSE_DEP:?}\n",
        trigger("/path/...", "by-path"),
        trigger("/url/...", "by-url"),
        trigger("/component/...", "by-component"),
        // One dependency per interface, by name and version.
        parent(
            "by-path",
            &format!(
                "[component.by-path.dependencies]\n\
                 \"ferry:compose/greet@0.1.0\" = {{ path = {COMPOSE_DEP:?} }}\n\
                 \"ferry:compose/probe\" = {{ path = {COMPOSE_DEP:?} }}"
            ),
        ),
        // The package's name: both of its interfaces.
        parent(
            "by-url",
            &format!(
                "dependencies = {{ \"ferry:compose\" = {{ url = {url:?}, digest = \"{}\" }} }}",
                sha256(&dep)
            ),
        ),
        parent(
            "by-component",
            "dependencies = { \"ferry:compose\" = { component = \"greeter\" } }",
        ),
    ));

    let check = ferry_check(&app);
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{shown}{}", text(&check.stderr));
    for line in [
        "composed   import `ferry:compose/greet@0.1.0` ← dependency `ferry:compose/greet@0.1.0` from ",
        "import `ferry:compose/probe@0.1.0` ← dependency `ferry:compose/probe` from ",
        "import `ferry:compose/greet@0.1.0` ← dependency `ferry:compose` from http://",
        "import `ferry:compose/probe@0.1.0` ← dependency `ferry:compose` from component `greeter`",
        // Denied to the dependency: what its parent was not asked to hand on.
        "`ferry:compose` denied: `wasi:http/outgoing-handler@0.2.",
    ] {
        assert!(shown.contains(line), "{line:?} in:\n{shown}");
    }
    // Renamed imports are shown as denied, not as imports.
    assert!(!shown.contains("ferry-denied:"), "{shown}");

    let ferry = Ferry::start(&app, &[]);
    for prefix in ["/path", "/url", "/component"] {
        let reply = get(&format!("{}{prefix}/greet?{}", ferry.url, &prefix[1..])).await;
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text());
        assert_eq!(
            reply.text(),
            format!("hello, {}, from the dependency", &prefix[1..])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cannot_use_what_its_parent_does_not_hand_on() {
    let upstream = TextServer::start("upstream says hi");
    let target = format!("http://127.0.0.1:{}/", upstream.port);
    let grants = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\nenvironment = {{ SECRET = \"parent-only\" }}",
        upstream.port
    );
    let dep = |inherit: &str| {
        format!("dependencies = {{ \"ferry:compose\" = {{ path = {COMPOSE_DEP:?}{inherit} }} }}")
    };
    let app = TestApp::new(&format!(
        "{}{}{}{}{}{}",
        trigger("/none/...", "none"),
        trigger("/network/...", "network"),
        trigger("/all/...", "all"),
        parent("none", &format!("{grants}\n{}", dep(""))),
        parent(
            "network",
            &format!(
                "{grants}\n{}",
                dep(", inherit_configuration = [\"allowed_outbound_hosts\"]")
            )
        ),
        parent(
            "all",
            &format!(
                "{grants}\ndependencies_inherit_configuration = true\n{}",
                dep("")
            )
        ),
    ));
    let ferry = Ferry::start(&app, &[]);
    let ask = |path: String| {
        let url = format!("{}{path}", ferry.url);
        async move {
            let reply = get(&url).await;
            assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            reply.text()
        }
    };
    for prefix in ["/none", "/network", "/all"] {
        // The parent has what it was granted, whatever its dependency gets.
        assert_eq!(
            ask(format!("{prefix}/own-outbound?{target}")).await,
            "ok 200",
            "{prefix}"
        );
        assert_eq!(
            ask(format!("{prefix}/own-env?SECRET")).await,
            "some parent-only",
            "{prefix}"
        );
    }
    // Handed on nothing: the dependency's request is denied, and its
    // environment is empty.
    assert_eq!(
        ask(format!("/none/dep-outbound?{target}")).await,
        "err ErrorCode::HttpRequestDenied"
    );
    assert_eq!(ask("/none/dep-env?SECRET".into()).await, "none");
    // Handed on the network only.
    assert_eq!(
        ask(format!("/network/dep-outbound?{target}")).await,
        "ok 200"
    );
    assert_eq!(ask("/network/dep-env?SECRET".into()).await, "none");
    // Handed on everything.
    assert_eq!(ask(format!("/all/dep-outbound?{target}")).await, "ok 200");
    assert_eq!(ask("/all/dep-env?SECRET".into()).await, "some parent-only");
}

#[test]
fn a_composition_that_cannot_be_made_is_refused_with_the_reason() {
    let checked = |body: String| {
        let out = ferry_check(&TestApp::new(&body));
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let with = |dependencies: &str| {
        format!(
            "{}{}",
            trigger("/...", "app"),
            parent("app", &format!("dependencies = {{ {dependencies} }}"))
        )
    };
    for (body, expected) in [
        (
            with(&format!("\"ferry:other\" = {{ path = {COMPOSE_DEP:?} }}")),
            "dependency `ferry:other` matches no import of component `app`",
        ),
        (
            with(&format!(
                "\"ferry:compose/greet\" = {{ path = {COMPOSE_DEP:?}, export = \"ferry:compose/nope@0.1.0\" }}"
            )),
            "does not export `ferry:compose/nope@0.1.0` to satisfy `ferry:compose/greet@0.1.0`",
        ),
        (
            // The probe interface where greet is imported.
            with(&format!(
                "\"ferry:compose/greet\" = {{ path = {COMPOSE_DEP:?}, export = \"ferry:compose/probe@0.1.0\" }}"
            )),
            "does not fit component `app`'s import `ferry:compose/greet@0.1.0`",
        ),
        (
            with(&format!(
                "\"ferry:compose\" = {{ path = {COMPOSE_DEP:?} }}, \"ferry:compose/greet\" = {{ path = {COMPOSE_DEP:?} }}"
            )),
            "is satisfied by two dependencies",
        ),
        (
            // Middleware in front of a WASI 0.2 component.
            format!(
                "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"app\"\ndependencies.middleware = [{{ path = {MW_HEADER:?} }}]\n\n{}",
                parent("app", "")
            ),
            "must export `wasi:http/handler@0.3.0`",
        ),
        (
            // A component that is not middleware, as middleware.
            format!(
                "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"app\"\ndependencies.middleware = [{{ path = {COMPOSE_DEP:?} }}]\n\n[component.app]\nsource = {HTTP_P3_GUEST:?}\n"
            ),
            "is not HTTP middleware",
        ),
    ] {
        let err = checked(body);
        assert!(err.contains(expected), "{expected:?} in:\n{err}");
    }
}

/// A request to the middleware chain's app, with the token `mw-auth` wants
/// when `authorized`.
fn request(url: &str, authorized: bool) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::get(url);
    if authorized {
        request = request.header("authorization", "Bearer let-me-in");
    }
    request.body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pass_through_a_three_stage_middleware_chain() {
    let app = TestApp::new(&format!(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"primary\"\n\
         dependencies.middleware = [{{ component = \"auth\" }}, {{ component = \"header\" }}, {{ path = {MW_UPPER:?} }}]\n\n\
         [[trigger.http]]\nroute = \"/plain/...\"\ncomponent = \"primary\"\n\n\
         [component.primary]\nsource = {HTTP_P3_GUEST:?}\nenvironment = {{ NAME = \"primary\" }}\n\n\
         [component.auth]\nsource = {MW_AUTH:?}\n\n\
         [component.header]\nsource = {MW_HEADER:?}\n"
    ));
    let check = ferry_check(&app);
    let shown = text(&check.stdout);
    assert!(check.status.success(), "{shown}{}", text(&check.stderr));
    assert!(
        shown.contains("middleware: `middleware[0]` (component `auth`) → `middleware[1]` (component `header`) → `middleware[2]` ("),
        "{shown}"
    );

    let ferry = Ferry::start(&app, &[]);
    // No token: the first middleware answers, and nothing behind it runs.
    let mark = ferry.log_mark();
    let refused = send(request(&format!("{}/mw-echo", ferry.url), false)).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "unauthorized\n");
    // Header in, body out, through each stage.
    let reply = send(request(&format!("{}/mw-echo", ferry.url), true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "X-MIDDLEWARE=HEADER-IN\nHELLO FROM THE PRIMARY HANDLER\n"
    );
    // The same component on a route without middleware: as it is.
    let plain = get(&format!("{}/plain/mw-echo", ferry.url)).await;
    assert_eq!(
        plain.text(),
        "x-middleware=none\nhello from the primary handler\n"
    );
    ferry
        .wait_for_log(mark, &["ferry::access", "path=\"/mw-echo\"", "status=401"])
        .await;

    // Under load: every request through the whole chain, none failing.
    let url = format!("{}/mw-echo", ferry.url);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let url = url.clone();
        tasks.spawn(async move {
            for n in 0..25 {
                let authorized = (worker + n) % 5 != 0;
                let reply = send(request(&url, authorized)).await;
                if authorized {
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    assert_eq!(
                        reply.text(),
                        "X-MIDDLEWARE=HEADER-IN\nHELLO FROM THE PRIMARY HANDLER\n"
                    );
                } else {
                    assert_eq!(reply.status, 401);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_streams_a_body_it_transforms() {
    let app = TestApp::new(&format!(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"primary\"\n\
         dependencies.middleware = [{{ path = {MW_AUTH:?} }}, {{ path = {MW_UPPER:?} }}]\n\n\
         [component.primary]\nsource = {HTTP_P3_GUEST:?}\nenvironment = {{ NAME = \"primary\" }}\n"
    ));
    let ferry = Ferry::start(&app, &[]);
    // The primary echoes the request body; each chunk comes back
    // uppercased before the next is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let frames = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk)),
                rx,
            )
        })
    }));
    let body = http_body_util::StreamBody::new(frames);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(
        http::Request::post(format!("{}/echo", ferry.url))
            .header("authorization", "Bearer let-me-in")
            .body(body)
            .unwrap(),
    );
    tx.send(Bytes::from_static(b"first chunk;")).await.unwrap();
    let response = tokio::time::timeout(scaled(Duration::from_secs(30)), response)
        .await
        .expect("the response's head before the request's end")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut seen = Vec::new();
    for (chunk, expected) in [
        (Some("second chunk;"), "FIRST CHUNK;"),
        (None, "FIRST CHUNK;SECOND CHUNK;"),
    ] {
        while seen.len() < expected.len() {
            let frame = tokio::time::timeout(scaled(Duration::from_secs(30)), body.frame())
                .await
                .unwrap_or_else(|_| panic!("waiting for {expected:?}, have {:?}", text(&seen)))
                .expect("the body ended early")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                seen.extend_from_slice(&data);
            }
        }
        assert_eq!(text(&seen), expected);
        if let Some(chunk) = chunk {
            tx.send(Bytes::from_static(chunk.as_bytes())).await.unwrap();
        }
    }
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_host_deploys_an_app_with_its_dependency_and_middleware_files() {
    let app = TestApp::new(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"app\"\n\n\
         [[trigger.http]]\nroute = \"/p3/...\"\ncomponent = \"primary\"\n\
         dependencies.middleware = [{ path = \"parts/mw-upper.wasm\" }]\n\n\
         [component.app]\nsource = \"parts/app.wasm\"\n\
         dependencies = { \"ferry:compose\" = { path = \"parts/dep.wasm\" } }\n\n\
         [component.primary]\nsource = \"parts/primary.wasm\"\nenvironment = { NAME = \"primary\" }\n",
    );
    std::fs::create_dir(app.path().join("parts")).unwrap();
    for (from, to) in [
        (COMPOSE_APP, "app.wasm"),
        (COMPOSE_DEP, "dep.wasm"),
        (MW_UPPER, "mw-upper.wasm"),
        (HTTP_P3_GUEST, "primary.wasm"),
    ] {
        std::fs::copy(from, app.path().join("parts").join(to)).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    // The bundle carries the dependency's and the middleware's files.
    host.deploy(app.path(), &[]);
    assert_eq!(
        host.get("/greet?host").await.text(),
        "hello, host, from the dependency"
    );
    assert_eq!(
        host.get("/p3/mw-echo").await.text(),
        "X-MIDDLEWARE=NONE\nHELLO FROM THE PRIMARY HANDLER\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composed_component_shares_one_memory_limit_among_its_parts() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "app"),
        parent(
            "app",
            &format!("dependencies = {{ \"ferry:compose\" = {{ path = {COMPOSE_DEP:?} }} }}")
        ),
    ));
    let ferry = Ferry::start(&app, &["--max-memory", "48MiB"]);
    let held = |mib: u32| {
        let url = format!("{}/hold-both?{mib}", ferry.url);
        async move {
            let reply = get(&url).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.text()
        }
    };
    // Both parts fit together...
    assert_eq!(held(16).await, "app held, dependency held");
    // ...but the dependency's memory is not a second 48 MiB: each part alone
    // would fit, both together do not.
    assert_eq!(held(28).await, "app held, dependency refused");
}
