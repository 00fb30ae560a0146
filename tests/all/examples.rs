//! The examples build with their own `[component.<id>.build]` tables and
//! serve, each with the one command the README gives: `ferry up --build`.
//! The hello examples are `ferry new`'s templates, and are built and served
//! as a user starts from one: `ferry new TEMPLATE my-app`.

use std::path::Path;

use crate::support::*;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

/// `ferry up --build` on an example, as a user runs it.
fn build_and_serve(example: &str) -> Ferry {
    Ferry::start_at(&examples().join(example), &["--build"])
}

/// `ferry new TEMPLATE my-app`, then `ferry up --build` in the new app, as
/// a user starts. Each template is one of the examples under a new name, so
/// this builds and serves the example too. The directory lives as long as
/// the returned handle.
fn new_and_serve(template: &str) -> (tempfile::TempDir, Ferry) {
    let parent = tempfile::tempdir().unwrap();
    let created = ferry()
        .current_dir(parent.path())
        .args(["new", template, "my-app"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(
        text(&created.stdout).contains("Next: cd my-app && ferry up --build"),
        "{}",
        text(&created.stdout)
    );
    let app = parent.path().join("my-app");
    let manifest = std::fs::read_to_string(app.join("spin.toml")).unwrap();
    assert!(manifest.contains("name = \"my-app\""), "{manifest}");
    let ferry = Ferry::start_at(&app, &["--build"]);
    (parent, ferry)
}

/// The README's first command, in the example's own directory.
#[tokio::test]
async fn rust_example_serves() {
    let ferry = build_and_serve("hello-rust");
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from Rust on Ferry! You asked for /some/path?x=1\n"
    );
}

#[tokio::test]
async fn rust_template_serves() {
    let (_app, ferry) = new_and_serve("http-rust");
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from Rust on Ferry! You asked for /some/path?x=1\n"
    );
}

#[tokio::test]
async fn rust_wasi_0_3_example_streams() {
    let (_app, ferry) = new_and_serve("http-rust-p3");
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from Rust on WASI 0.3! You asked for /some/path?x=1\n"
    );
}

#[tokio::test]
async fn c_example_serves() {
    let (_app, ferry) = new_and_serve("http-c");
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(reply.text(), "Hello from C on Ferry! GET /some/path?x=1\n");
}

#[tokio::test]
async fn javascript_example_serves() {
    let (_app, ferry) = new_and_serve("http-js");
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from JavaScript on Ferry! You asked for /some/path?x=1\n"
    );
    let posted = send(
        http::Request::post(format!("{}/upload", ferry.url))
            .body(http_body_util::Full::from("abcdef"))
            .unwrap(),
    )
    .await;
    assert_eq!(
        posted.text(),
        "Hello from JavaScript on Ferry! You asked for /upload, sent 6 bytes\n"
    );
}

#[tokio::test]
async fn python_example_serves() {
    let (_app, ferry) = new_and_serve("http-py");
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from Python on Ferry! You asked for /some/path?x=1\n"
    );
}

/// Spin's shape of a stateful app: two components in two languages share
/// one counter in the default key-value store.
#[tokio::test]
async fn counter_example_counts_across_languages() {
    let ferry = build_and_serve("counter");
    let visit = |path: &'static str| {
        let url = format!("{}{path}", ferry.url);
        async move { get(&url).await.text() }
    };
    assert_eq!(visit("/rust").await, "Rust counted visit 1\n");
    assert_eq!(visit("/python").await, "Python counted visit 2\n");
    assert_eq!(visit("/rust").await, "Rust counted visit 3\n");
}

#[tokio::test]
async fn middleware_example_serves_only_what_its_middleware_lets_through() {
    let ferry = build_and_serve("middleware");
    let url = format!("{}/some/path?x=1", ferry.url);
    let refused = get(&url).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "unauthorized\n");
    let reply = send(
        http::Request::get(&url)
            .header("authorization", "Bearer let-me-in")
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "Hello from behind the middleware! You asked for /some/path?x=1\n"
    );
}

#[tokio::test]
async fn dependencies_example_composes_its_greeter_into_the_app() {
    let ferry = build_and_serve("dependencies");
    let reply = get(&format!("{}/?name=Ada", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello, Ada! (from the greeter component)\n");
}

#[test]
fn pipeline_example_runs_its_stages_once_and_exits() {
    let state = tempfile::tempdir().unwrap();
    let output = ferry()
        .arg("up")
        .arg(examples().join("pipeline"))
        .args(["--build", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.ends_with("   8 the\n   4 stage\n   3 one\n   3 program\n   2 and\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn chaining_example_reaches_its_private_back_end_in_process() {
    let ferry = build_and_serve("chaining");
    let reply = get(&format!("{}/hello?x=1", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "front asked back for /hello?x=1: the back end answered /hello?x=1\n"
    );
}
