//! Deny by default: environment, files, outbound HTTP and sockets only as
//! granted.
//!
//! One suite, every executor: each test below takes the [`Executor`] whose
//! guest it drives, and `suite!` generates it once per executor (as
//! wasmtime's test-programs generate one test per guest). The three test
//! guests answer the same capability paths alike (`/env`, `/file`,
//! `/write-file`, `/list`, `/outbound`, `/socket`). WASI preview 1, which
//! WAGI modules target, has no sockets or outbound HTTP, so its suite has no
//! network tests: there is nothing there to deny.

use crate::support::*;

/// One kind of guest: how its component and trigger are declared.
#[derive(Clone, Copy)]
struct Executor {
    /// The component's `source`.
    source: &'static str,
    /// Fields its triggers need (`executor = …`).
    trigger_fields: &'static str,
    /// Whether `/env` lists only the environment (a WAGI guest's also has
    /// the CGI variables and argv).
    env_is_exact: bool,
}

const WASI_0_2: Executor = Executor {
    source: HTTP_GUEST,
    trigger_fields: "",
    env_is_exact: true,
};

const WASI_0_3: Executor = Executor {
    source: HTTP_P3_GUEST,
    trigger_fields: "",
    env_is_exact: true,
};

const WAGI: Executor = Executor {
    source: WAGI_C,
    trigger_fields: "executor = { type = \"wagi\" }\n",
    env_is_exact: false,
};

impl Executor {
    /// A trigger for `route` and a component `id` of this executor with
    /// `environment` (`NAME = id` added) and `extra` fields.
    fn component_with_env(&self, route: &str, id: &str, environment: &str, extra: &str) -> String {
        format!(
            "[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{id}\"\n{}\n\
             [component.{id}]\nsource = {:?}\nenvironment = {{ NAME = \"{id}\"{environment} }}\n{extra}\n\n",
            self.trigger_fields, self.source
        )
    }

    fn component(&self, route: &str, id: &str, extra: &str) -> String {
        self.component_with_env(route, id, "", extra)
    }
}

/// What the guest answers to `/file?path=<path>`.
fn read_file(ferry: &Ferry, path: &str) -> impl Future<Output = Reply> + use<> {
    let url = format!("{}/file?path={path}", ferry.url);
    async move { get(&url).await }
}

macro_rules! suite {
    ($module:ident, $executor:expr, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($executor).await;
                }
            )*
        }
    };
}

suite!(
    wasi_0_2,
    super::WASI_0_2,
    [
        environment_is_only_what_the_manifest_lists,
        files_are_read_only_and_cannot_be_escaped,
        without_files_the_guest_sees_no_filesystem,
        outbound_http_is_enforced_per_destination,
        sockets_are_denied,
    ]
);
suite!(
    wasi_0_3,
    super::WASI_0_3,
    [
        environment_is_only_what_the_manifest_lists,
        files_are_read_only_and_cannot_be_escaped,
        without_files_the_guest_sees_no_filesystem,
        outbound_http_is_enforced_per_destination,
        sockets_are_denied,
    ]
);
suite!(
    wagi,
    super::WAGI,
    [
        environment_is_only_what_the_manifest_lists,
        files_are_read_only_and_cannot_be_escaped,
        without_files_the_guest_sees_no_filesystem,
    ]
);

/// The guest sees the variables the manifest lists and nothing of the
/// host's environment.
async fn environment_is_only_what_the_manifest_lists(executor: Executor) {
    let app = TestApp::new(&executor.component_with_env(
        "/...",
        "guest",
        ", GREETING = \"hi there\"",
        "",
    ));
    let ferry = Ferry::start_with_env(
        app.path(),
        &[],
        &[("FERRY_TEST_HOST_SECRET", "must not leak")],
    );
    let env = get(&format!("{}/env", ferry.url)).await.text();
    if executor.env_is_exact {
        assert_eq!(env, "GREETING=hi there\nNAME=guest\n");
    } else {
        assert!(
            env.lines().any(|l| l == "GREETING=hi there") && env.lines().any(|l| l == "NAME=guest"),
            "{env}"
        );
    }
    for host in ["FERRY_TEST_HOST_SECRET=", "PATH=", "HOME=", "RUST_LOG="] {
        assert!(
            !env.lines().any(|l| l.starts_with(host)),
            "{host} leaked into the guest: {env}"
        );
    }
    assert!(!env.contains("must not leak"), "{env}");
}

async fn files_are_read_only_and_cannot_be_escaped(executor: Executor) {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "top secret").unwrap();
    let app = TestApp::new(&executor.component(
        "/...",
        "guest",
        "files = [\"*.txt\", \"docs/**/*.md\", { source = \"assets\", destination = \"/assets\" }]\nexclude_files = [\"private.txt\"]",
    ));
    app.write("hello.txt", "hello file\n");
    app.write("private.txt", "excluded\n");
    app.write("docs/a/b.md", "# nested\n");
    app.write("docs/skip.txt", "not matched\n");
    app.write("assets/style.css", "body {}\n");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        app.path().join("leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), app.path().join("assets/escape")).unwrap();
    let ferry = Ferry::start(&app, &[]);
    let read = |path: &str| read_file(&ferry, path);

    assert_eq!(read("/hello.txt").await.text(), "hello file\n");
    assert_eq!(read("/docs/a/b.md").await.text(), "# nested\n");
    assert_eq!(read("/assets/style.css").await.text(), "body {}\n");
    for denied in [
        "/private.txt",
        "/docs/skip.txt",
        "/leak.txt",
        "/assets/escape/secret.txt",
        "/../secret.txt",
        "/assets/../../etc/passwd",
        "/etc/passwd",
        "/spin.toml",
    ] {
        let reply = read(denied).await;
        assert_eq!(
            reply.status,
            404,
            "{denied} must not be readable: {}",
            reply.text()
        );
        assert!(!reply.text().contains("top secret"));
    }
    let listing = get(&format!("{}/list?path=/", ferry.url)).await;
    assert_eq!(listing.text(), "assets\ndocs\nhello.txt\n");
    for path in ["/hello.txt", "/new.txt", "/assets/new.css"] {
        let write = get(&format!("{}/write-file?path={path}", ferry.url)).await;
        assert_eq!(
            write.status,
            403,
            "files must be read-only ({path}): {}",
            write.text()
        );
    }
    assert_eq!(read("/hello.txt").await.text(), "hello file\n");
    assert!(!app.path().join("new.txt").exists());
}

async fn without_files_the_guest_sees_no_filesystem(executor: Executor) {
    let app = TestApp::new(&executor.component("/...", "guest", ""));
    app.write("hello.txt", "not granted\n");
    let ferry = Ferry::start(&app, &[]);
    assert_eq!(get(&format!("{}/list?path=/", ferry.url)).await.status, 404);
    for path in ["/etc/passwd", "/hello.txt", "hello.txt"] {
        assert_eq!(
            get(&format!("{}/file?path={path}", ferry.url)).await.status,
            404,
            "{path}"
        );
    }
    assert_eq!(
        get(&format!("{}/write-file?path=/x.txt", ferry.url))
            .await
            .status,
        403
    );
}

/// The caller is the executor's guest; what it calls is a plain WASI 0.2
/// guest (the target's kind is not what is tested).
async fn outbound_http_is_enforced_per_destination(executor: Executor) {
    let app = TestApp::new(&format!(
        "{}{}{}",
        executor.component(
            "/caller/...",
            "caller",
            "allowed_outbound_hosts = [\"http://self\", \"https://example.com\"]",
        ),
        trigger("/target/...", "target"),
        http_component("target", ""),
    ));
    let ferry = Ferry::start(&app, &[]);
    let call = |url: String| {
        let ferry_url = ferry.url.clone();
        async move {
            get(&format!("{ferry_url}/caller/outbound?url={url}"))
                .await
                .text()
        }
    };
    // `self` reaches the app itself.
    assert_eq!(
        call("http://self/target/".into()).await,
        "status 200: hello from target\n"
    );
    // The same listener by address is `self` too, so it is allowed.
    assert_eq!(
        call(format!("http://{}/target/", ferry.addr())).await,
        "status 200: hello from target\n"
    );
    // Anything not listed is refused inside the guest, with a log line.
    let mark = ferry.log_mark();
    for denied in [
        "http://127.0.0.1:1/",
        "http://example.com/",
        "https://example.org/",
        "https://example.com:8443/",
    ] {
        assert_eq!(
            call(denied.into()).await,
            "error: ErrorCode::HttpRequestDenied\n",
            "{denied}"
        );
    }
    ferry
        .wait_for_log(
            mark,
            &[
                "outbound request denied",
                "component=\"caller\"",
                "example.org",
            ],
        )
        .await;
    // A component without grants can reach nothing, not even `self`.
    let app = TestApp::new(&executor.component("/...", "lonely", ""));
    let ferry = Ferry::start(&app, &[]);
    let reply = get(&format!("{}/outbound?url=http://self/", ferry.url)).await;
    assert_eq!(reply.text(), "error: ErrorCode::HttpRequestDenied\n");
}

/// Outbound HTTP grants no sockets: even with every host allowed, a guest
/// cannot open a TCP connection of its own.
async fn sockets_are_denied(executor: Executor) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app = TestApp::new(&executor.component(
        "/...",
        "guest",
        "allowed_outbound_hosts = [\"*://*:*\"]",
    ));
    let ferry = Ferry::start(&app, &[]);
    let reply = get(&format!("{}/socket?addr={addr}", ferry.url)).await;
    assert!(
        reply.text().starts_with("socket denied"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn spin_files_forms_merge_into_one_tree_with_exclusions() {
    let app = TestApp::new(
        &(trigger("/...", "guest")
            + &http_component(
                "guest",
                "files = [\"static\", \"./*.md\", { source = \"assets\", destination = \"/assets\" }, { source = \"config/app.json\", destination = \"/assets/app.json\" }, { source = \"site\", destination = \"/\" }]\nexclude_files = [\"static/drafts/**\", \"site/.env\", \"assets/*.bak\"]",
            )),
    );
    app.write("static/index.html", "<h1>hi</h1>\n");
    app.write("static/css/site.css", "body {}\n");
    app.write("static/drafts/wip.html", "not yet\n");
    app.write("README.md", "# app\n");
    app.write("assets/logo.svg", "<svg/>\n");
    app.write("assets/logo.bak", "old\n");
    app.write("config/app.json", "{}\n");
    app.write("config/other.json", "[]\n");
    app.write("site/about.html", "about\n");
    app.write("site/.env", "SECRET=1\n");
    let ferry = Ferry::start(&app, &[]);
    let read = |path: &str| read_file(&ferry, path);
    // A plain directory path brings its whole tree, at the same path; `./`
    // globs match as Spin's do.
    assert_eq!(read("/static/index.html").await.text(), "<h1>hi</h1>\n");
    assert_eq!(read("/static/css/site.css").await.text(), "body {}\n");
    assert_eq!(read("/README.md").await.text(), "# app\n");
    // Placements merge with everything else: a file inside a placed
    // directory, and a directory placed at `/`.
    assert_eq!(read("/assets/logo.svg").await.text(), "<svg/>\n");
    assert_eq!(read("/assets/app.json").await.text(), "{}\n");
    assert_eq!(read("/about.html").await.text(), "about\n");
    // Exclusions apply to every entry, placements included.
    for absent in [
        "/static/drafts/wip.html",
        "/.env",
        "/assets/logo.bak",
        "/config/app.json",
        "/config/other.json",
    ] {
        assert_eq!(read(absent).await.status, 404, "{absent}");
    }
}

#[tokio::test]
async fn spin_grant_forms_reach_what_they_name() {
    let server = TextServer::start("from the server\n");
    let port = server.port;
    let app = TestApp::new(&format!(
        "{}{}{}{}",
        trigger("/legacy/...", "legacy"),
        trigger("/modern/...", "modern"),
        // Spin's legacy form: each host grants http and https, `self` the app.
        http_component(
            "legacy",
            &format!("allowed_http_hosts = [\"self\", \"127.0.0.1:{port}\"]")
        ),
        // A CIDR block and a port range whose end is excluded, as in Spin.
        http_component(
            "modern",
            &format!(
                "allowed_outbound_hosts = [\"http://127.0.0.0/8:{port}..{}\"]",
                port + 1
            )
        ),
    ));
    let ferry = Ferry::start(&app, &[]);
    let call = |from: &str, url: String| {
        let request = format!("{}/{from}/outbound?url={url}", ferry.url);
        async move { get(&request).await.text() }
    };
    let server_url = format!("http://127.0.0.1:{port}/");
    assert_eq!(
        call("legacy", server_url.clone()).await,
        "status 200: from the server\n"
    );
    assert_eq!(
        call("legacy", "http://self/modern/".into()).await,
        "status 200: hello from modern\n"
    );
    assert_eq!(
        call("modern", server_url).await,
        "status 200: from the server\n"
    );
    for (from, denied) in [
        ("legacy", format!("http://127.0.0.1:{}/", port + 1)),
        ("modern", format!("http://127.0.0.1:{}/", port + 1)),
        ("modern", format!("http://localhost:{port}/")),
        ("modern", "http://self/legacy/".into()),
    ] {
        assert_eq!(
            call(from, denied.clone()).await,
            "error: ErrorCode::HttpRequestDenied\n",
            "{from} -> {denied}"
        );
    }
    // The legacy field is honoured with a warning saying what to write.
    assert!(
        ferry
            .logs()
            .contains("warning: `component.legacy.allowed_http_hosts` is deprecated") && ferry.logs().contains(&format!(
            "replace it with `allowed_outbound_hosts = [\"http://self\", \"http://127.0.0.1:{port}\", \"https://127.0.0.1:{port}\"]`"
        )),
        "{}",
        ferry.logs()
    );
}
