//! Real Spin SDK apps, unchanged: each is built by `ferry build` from its own
//! `[component.<id>.build]` table, as `spin build` would, then served.
//! Their sources are in `crates/test-programs/spin-apps`.

use std::path::{Path, PathBuf};

use crate::support::*;

fn spin_app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/test-programs/spin-apps")
        .join(name)
}

/// `ferry build` on the app, then `ferry up`, then one request.
async fn build_and_serve(name: &str, greeting: &str) {
    let dir = spin_app(name);
    let output = ferry().arg("build").arg(&dir).output().unwrap();
    assert!(
        output.status.success(),
        "ferry build {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let ferry = Ferry::start_at(&dir, &[]);
    let reply = get(&format!("{}/hello/world?x=1", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), format!("{greeting}: /hello/world\n"));
    // Spin's request headers reach the guest through the SDK.
    assert_eq!(reply.header("x-path-info"), Some("/hello/world"));
}

#[tokio::test]
async fn rust_on_spin_sdk_5_exporting_wasi_http_0_2() {
    build_and_serve("rust-sdk5", "Hello from spin-sdk 5.2.0").await;
}

#[tokio::test]
async fn rust_on_spin_sdk_7_exporting_wasi_http_0_3() {
    build_and_serve("rust-sdk7", "Hello from spin-sdk 7.0.0").await;
}

#[tokio::test]
async fn javascript_on_the_spin_js_sdk() {
    build_and_serve("js-sdk", "Hello from the Spin JS SDK").await;
}
