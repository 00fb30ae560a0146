//! A WASI 0.3 `wasi:http/service` test guest. Behaviour by the path after its
//! route (`spin-path-info`), as in `http-guest.rs`; the capability paths
//! are the same code as that guest's (`capability.rs`), and `/outbound`
//! answers in the same words, so one suite checks both.

use std::sync::atomic::{AtomicU32, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
use wasip3::{wit_future, wit_stream};

#[path = "../capability.rs"]
mod capability;

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
        let query = request
            .get_path_with_query()
            .and_then(|pq| pq.split_once('?').map(|(_, q)| q.to_owned()))
            .unwrap_or_default();
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| v.to_owned())
            })
        };
        if let Some((status, body)) = capability::answer(&path_info, param) {
            return status_text(&name, status, body);
        }
        match path_info.as_str() {
            "/outbound" => {
                let url = param("url").unwrap_or_default();
                text(&name, outbound(&url).await + "\n")
            }
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
            "/mw-echo" => {
                // The primary handler behind HTTP middleware: shows the
                // header `mw-header` adds to the request on its way in.
                let values: Vec<String> = request
                    .get_headers()
                    .get("x-middleware")
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                let value = if values.is_empty() {
                    "none".to_owned()
                } else {
                    values.join(", ")
                };
                text(
                    &name,
                    format!("x-middleware={value}\nhello from the primary handler\n"),
                )
            }
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
    status_text(name, 200, body)
}

fn status_text(name: &str, status: u16, body: String) -> Result<Response, ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(headers(name, "text/plain"), Some(rx), trailers_rx);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some(format!("bad status {status}"))))?;
    wasip3::spawn(async move {
        tx.write_all(body.into_bytes()).await;
    });
    Ok(response)
}

/// Sends a GET to `url` (`http://host:port/path`) through `wasi:http/client`
/// and describes the outcome, as `http-guest.rs`'s `/outbound` does.
async fn outbound(url: &str) -> String {
    let Some((https, authority, path)) = capability::split_url(url) else {
        return format!("bad url {url:?}");
    };
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    if request.set_scheme(Some(&scheme)).is_err()
        || request.set_authority(Some(authority)).is_err()
        || request.set_path_with_query(Some(path)).is_err()
    {
        return format!("bad url {url:?}");
    }
    match wasip3::http::client::send(request).await {
        Ok(response) => {
            let status = response.get_status_code();
            let (_result_tx, result_rx) = wit_future::new(|| Ok(()));
            let (body, _trailers) = Response::consume_body(response, result_rx);
            let body = body.collect().await;
            format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body).trim_end()
            )
        }
        Err(code) => format!("error: {code:?}"),
    }
}

fn main() {}
