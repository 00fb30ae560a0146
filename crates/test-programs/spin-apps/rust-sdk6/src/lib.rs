//! A Spin HTTP component on spin-sdk 6.0.0 (what Spin 4's Rust template
//! uses), whose async `#[http_service]` exports
//! `wasi:http/handler@0.3.0-rc-2026-03-15`, a release candidate of WASI 0.3;
//! Ferry's tests build it with `ferry build` and serve it, for
//! `wasm32-wasip2` (a component) and, as Spin's own examples build it, for
//! `wasm32-wasip1` (a core module Ferry componentizes). `/variables?<name>`
//! reads a variable through the async `spin:variables` interface and answers
//! with its value or the error.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_service;

/// Answers with the request path, and echoes the `spin-path-info` header back
/// as `x-path-info` so a test can see that Spin's headers reach the guest.
#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    if req.uri().path() == "/variables" {
        let name = req.uri().query().unwrap_or_default().to_owned();
        let answer = match spin_sdk::variables::get(name).await {
            Ok(value) => value,
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::builder().status(200).body(answer)?);
    }
    let path_info = req
        .headers()
        .get("spin-path-info")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("x-path-info", path_info)
        .body(format!("Hello from spin-sdk 6.0.0: {}\n", req.uri().path()))?;
    Ok(response)
}
