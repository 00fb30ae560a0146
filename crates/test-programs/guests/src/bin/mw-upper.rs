//! An HTTP middleware component (WASI 0.3): it exports
//! `wasi:http/handler@0.3.0` and imports the same interface as the next
//! handler in the chain. It passes the request on unchanged and answers with
//! the next handler's response, status and headers kept, its body uppercased
//! (ASCII) chunk by chunk as it streams: a task copies the inner body to the
//! new one, so the response goes out before the inner body has ended.
//! `content-length` stays, since ASCII uppercasing keeps the length.

#![no_main]

use wasip3::http::types::{ErrorCode, Request, Response};
use wasip3::{wit_future, wit_stream};
use wit_bindgen::StreamResult;

#[path = "../middleware.rs"]
mod middleware;

struct Upper;

wasip3::http::service::export!(Upper);

impl wasip3::exports::http::handler::Guest for Upper {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let inner = middleware::next(request).await?;
        let status = inner.get_status_code();
        let headers = inner.get_headers();
        let (result_tx, result_rx) = wit_future::new(|| Ok(()));
        let (mut input, trailers) = Response::consume_body(inner, result_rx);
        let (mut output, body) = wit_stream::new();
        let (response, _) = Response::new(headers, Some(body), trailers);
        response
            .set_status_code(status)
            .map_err(|()| ErrorCode::InternalError(Some(format!("bad status {status}"))))?;
        wasip3::spawn(async move {
            loop {
                let (result, mut chunk) = input.read(Vec::with_capacity(16 * 1024)).await;
                chunk.make_ascii_uppercase();
                if !chunk.is_empty() && !output.write_all(chunk).await.is_empty() {
                    // Whoever reads the response has gone away.
                    break;
                }
                if !matches!(result, StreamResult::Complete(_)) {
                    break;
                }
            }
            // The inner body has been read (or abandoned): its writer learns
            // the outcome `Ok(())` when this drops.
            drop(result_tx);
        });
        Ok(response)
    }
}
