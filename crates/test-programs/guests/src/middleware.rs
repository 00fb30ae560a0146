//! What the HTTP middleware guests (`mw-*`) share: the import of the next
//! handler in the chain, generated from `wit/middleware` with wasip3's own
//! `wasi:http/types`, so that the request and response a middleware gets
//! through wasip3's export are the ones it passes on and gets back.

use wasip3::http::types::{ErrorCode, Fields, Response};
use wasip3::{wit_future, wit_stream};

wit_bindgen::generate!({
    path: "wit/middleware",
    world: "next",
    with: {
        "wasi:http/types@0.3.0": wasip3::http::types,
        "wasi:clocks/types@0.3.0": wasip3::clocks::types,
        "wasi:http/handler@0.3.0": generate,
    },
});

/// Passes the request on to the next handler (`wasi:http/handler@0.3.0`,
/// imported) and returns its response.
pub use self::wasi::http::handler::handle as next;

/// A `text/plain` response with `body`.
#[allow(dead_code)]
pub fn text(status: u16, body: &str) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (mut tx, rx) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(headers, Some(rx), trailers_rx);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some(format!("bad status {status}"))))?;
    let body = body.as_bytes().to_vec();
    wasip3::spawn(async move {
        tx.write_all(body).await;
    });
    Ok(response)
}
