//! An HTTP middleware component (WASI 0.3): it exports
//! `wasi:http/handler@0.3.0` and imports the same interface as the next
//! handler in the chain. It answers `401 unauthorized` itself, without calling
//! the next handler, unless the request has `authorization: Bearer let-me-in`;
//! an authorized request goes on unchanged and its response comes back as is.

#![no_main]

use wasip3::http::types::{ErrorCode, Request, Response};

#[path = "../middleware.rs"]
mod middleware;

struct Auth;

wasip3::http::service::export!(Auth);

impl wasip3::exports::http::handler::Guest for Auth {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let authorized = request
            .get_headers()
            .get("authorization")
            .iter()
            .any(|value| value == b"Bearer let-me-in");
        if !authorized {
            return middleware::text(401, "unauthorized\n");
        }
        middleware::next(request).await
    }
}
