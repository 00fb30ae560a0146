//! A WASI 0.3 `wasi:http/service` test guest. Behaviour by the path after its
//! route (`spin-path-info`), as in `http-guest.rs`.

use std::sync::atomic::{AtomicU32, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Guest;

wasip3::http::service::export!(Guest);

/// With a fresh instance per request this is always 1.
static REQUESTS: AtomicU32 = AtomicU32::new(0);

impl wasip3::exports::http::handler::Guest for Guest {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let count = REQUESTS.fetch_add(1, Ordering::SeqCst) + 1;
        let name = std::env::var("NAME").unwrap_or_else(|_| "unnamed".into());
        let path_info = request
            .get_headers()
            .get("spin-path-info")
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        match path_info.as_str() {
            "/echo" => {
                // The request body stream becomes the response body: both
                // directions stream through the host without buffering.
                let (_result_tx, result_rx) = wit_future::new(|| Ok(()));
                let (body, trailers) = Request::consume_body(request, result_rx);
                let (response, _) = Response::new(
                    headers(&name, "application/octet-stream"),
                    Some(body),
                    trailers,
                );
                Ok(response)
            }
            "/length" => {
                // Reads the whole body before answering, and takes wherever
                // the stream ends for the end of the body.
                let (_result_tx, result_rx) = wit_future::new(|| Ok(()));
                let (body, _trailers) = Request::consume_body(request, result_rx);
                let length = body.collect().await.len();
                text(&name, format!("{length} bytes\n"))
            }
            "/counter" => text(&name, format!("{count}\n")),
            "/trap" => core::arch::wasm32::unreachable(),
            "/loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/stream" => {
                // The body is written after the handler has returned.
                let chunks: u32 = 64;
                let (mut tx, rx) = wit_stream::new();
                let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
                let (response, _) =
                    Response::new(headers(&name, "text/plain"), Some(rx), trailers_rx);
                wasip3::spawn(async move {
                    for i in 0..chunks {
                        let rest = tx.write_all(format!("chunk {i}\n").into_bytes()).await;
                        if !rest.is_empty() {
                            return;
                        }
                    }
                });
                Ok(response)
            }
            _ => text(&name, format!("hello from {name} over WASI 0.3\n")),
        }
    }
}

fn headers(name: &str, content_type: &str) -> Fields {
    Fields::from_list(&[
        ("content-type".to_string(), content_type.as_bytes().to_vec()),
        ("x-guest-name".to_string(), name.as_bytes().to_vec()),
    ])
    .expect("valid headers")
}

fn text(name: &str, body: String) -> Result<Response, ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(headers(name, "text/plain"), Some(rx), trailers_rx);
    wasip3::spawn(async move {
        tx.write_all(body.into_bytes()).await;
    });
    Ok(response)
}

fn main() {}
