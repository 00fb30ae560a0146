//! A WASI 0.3 `wasi:http/service` test guest. Behaviour by the path after its
//! route (`spin-path-info`), as in `http-guest.rs`; the capability paths
//! (`/env`, `/file`, `/write-file`, `/list`, `/outbound`, `/socket`) answer
//! exactly as that guest's do, so one suite checks both.

use std::sync::atomic::{AtomicU32, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
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
        match path_info.as_str() {
            "/env" => {
                let mut vars: Vec<String> =
                    std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                vars.sort();
                text(&name, vars.join("\n") + "\n")
            }
            "/file" => {
                let path = param("path").unwrap_or_default();
                match std::fs::read_to_string(&path) {
                    Ok(contents) => text(&name, contents),
                    Err(e) => status_text(&name, 404, format!("cannot read {path}: {e}\n")),
                }
            }
            "/write-file" => {
                let path = param("path").unwrap_or_default();
                match std::fs::write(&path, b"x") {
                    Ok(()) => text(&name, "written\n".into()),
                    Err(e) => status_text(&name, 403, format!("cannot write {path}: {e}\n")),
                }
            }
            "/list" => {
                let path = param("path").unwrap_or_else(|| "/".into());
                match std::fs::read_dir(&path) {
                    Ok(entries) => {
                        let mut names: Vec<String> = entries
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        names.sort();
                        text(&name, names.join("\n") + "\n")
                    }
                    Err(e) => status_text(&name, 404, format!("cannot list {path}: {e}\n")),
                }
            }
            "/outbound" => {
                let url = param("url").unwrap_or_default();
                text(&name, outbound(&url).await + "\n")
            }
            "/socket" => {
                let addr = param("addr").unwrap_or_else(|| "127.0.0.1:1".into());
                let answer = match std::net::TcpStream::connect(&addr) {
                    Ok(_) => format!("connected to {addr}\n"),
                    Err(e) => format!("socket denied: {e}\n"),
                };
                text(&name, answer)
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
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => return format!("bad url {url:?}"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
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
