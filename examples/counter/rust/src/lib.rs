//! Counts visits in the default key-value store, atomically, with
//! `wasi:keyvalue`'s `increment`: the Python component of this app
//! increments the same key.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

#[http_component]
fn handle(_req: Request) -> anyhow::Result<impl IntoResponse> {
    let bucket = store::open("default")?;
    let visits = atomics::increment(&bucket, "visits", 1)?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("Rust counted visit {visits}\n"))
        .build())
}
