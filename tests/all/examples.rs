//! The examples build with their own instructions and serve from `ferry up`.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

#[tokio::test]
async fn rust_example_serves() {
    let dir = examples().join("hello-rust");
    let status = Command::new(env!("CARGO"))
        .current_dir(&dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(status.success());
    let ferry = Ferry::start_at(&dir, &[]);
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from Rust on Ferry! You asked for /some/path?x=1\n"
    );
}

#[tokio::test]
async fn c_example_serves() {
    let dir = examples().join("hello-c");
    let status = Command::new("make")
        .current_dir(&dir)
        .arg("-s")
        .status()
        .unwrap();
    assert!(status.success());
    let ferry = Ferry::start_at(&dir, &[]);
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(reply.text(), "Hello from C on Ferry! GET /some/path?x=1\n");
}

#[tokio::test]
async fn javascript_example_serves() {
    let dir = examples().join("hello-js");
    for args in [
        &["install", "--no-audit", "--no-fund"][..],
        &["run", "build"],
    ] {
        let status = Command::new("npm")
            .current_dir(&dir)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "npm {args:?} failed");
    }
    let ferry = Ferry::start_at(&dir, &[]);
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
    let dir = examples().join("hello-python");
    let status = Command::new(dir.join("build.sh")).status().unwrap();
    assert!(status.success());
    let ferry = Ferry::start_at(&dir, &[]);
    let reply = get(&format!("{}/some/path?x=1", ferry.url)).await;
    assert_eq!(
        reply.text(),
        "Hello from Python on Ferry! You asked for /some/path?x=1\n"
    );
}
