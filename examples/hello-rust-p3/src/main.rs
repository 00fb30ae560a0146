//! A WASI 0.3 `wasi:http/service` hello world: an async handler whose
//! response body streams. Build: `cargo build --release --target
//! wasm32-wasip2`.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Hello;

wasip3::http::service::export!(Hello);

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
            .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut body, body_rx) = wit_stream::new();
        let (_trailers, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
        // The body is written after the response is returned: it streams.
        wasip3::spawn(async move {
            let text = format!("Hello from Rust on WASI 0.3! You asked for {path}\n");
            body.write_all(text.into_bytes()).await;
        });
        Ok(response)
    }
}

fn main() {}
