//! Tenants on one live host (`ferry serve`): what one app can reach of
//! another app's data, of the host's files and of the host's secrets — and
//! that it cannot. Each test tries, as a hostile tenant would, one way out,
//! with real guests built from source on a real host.

mod admin;
mod bundle;
mod key_value;
mod sql;
mod variables;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::{Host, Reply, ferry, text};

/// A real Spin app (spin-sdk 7) whose `POST /sql` runs its body as one
/// statement on its `default` SQLite database and `/kv/<key>` reads or
/// writes its `default` key-value store: a tenant that runs whatever SQL
/// and key-value operations it is sent.
pub fn spin_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/test-programs/spin-apps/rust-sdk7")
}

/// [`spin_app`]'s Wasm, built once by `ferry build` (as its own tests build it).
pub fn spin_app_wasm() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let app = spin_app();
        let output = ferry().arg("build").arg(&app).output().unwrap();
        assert!(
            output.status.success(),
            "ferry build {}:\n{}{}",
            app.display(),
            text(&output.stdout),
            text(&output.stderr)
        );
        app.join("target/wasm32-wasip2/release/rust_sdk7.wasm")
    })
}

/// Deploys [`spin_app`] as `name`, reached by the host name `<name>.test`.
pub fn deploy_tenant(host: &Host, name: &str) {
    let hostname = format!("{name}.test");
    tokio::task::block_in_place(|| {
        host.deploy(
            &spin_app(),
            &["--build", "--name", name, "--hostname", &hostname],
        )
    });
}

/// A request to the tenant `name` (deployed by [`deploy_tenant`]).
pub async fn to_tenant(host: &Host, name: &str, method: &str, path: &str, body: &str) -> Reply {
    host.app_call(&format!("{name}.test"), method, path, body)
        .await
}

/// What the tenant `name` answers to `statement`: its columns, rows,
/// `last-insert-rowid` and `changes`, or `error: …`.
pub async fn sql(host: &Host, name: &str, statement: &str) -> String {
    let reply = to_tenant(host, name, "POST", "/sql", statement).await;
    assert_eq!(reply.status, 200, "{statement}: {}", reply.text());
    reply.text()
}
