//! An HTTP middleware component (WASI 0.3): it exports
//! `wasi:http/handler@0.3.0` and imports the same interface as the next
//! handler in the chain. It adds `x-middleware: header-in` to the request
//! before passing it on (a new request with the same method, target, body
//! and trailers, since a request's headers are immutable), and returns the
//! next handler's response as is.

#![no_main]

use wasip3::http::types::{ErrorCode, Request, Response};
use wasip3::wit_future;

#[path = "../middleware.rs"]
mod middleware;

struct Header;

wasip3::http::service::export!(Header);

impl wasip3::exports::http::handler::Guest for Header {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let internal = |what: &str| ErrorCode::InternalError(Some(what.to_owned()));
        // `clone` gives a mutable copy of the (immutable) request headers.
        let headers = request.get_headers().clone();
        headers
            .append("x-middleware", b"header-in")
            .map_err(|e| internal(&format!("adding x-middleware: {e:?}")))?;
        let method = request.get_method();
        let scheme = request.get_scheme();
        let authority = request.get_authority();
        let path_with_query = request.get_path_with_query();
        let options = request.get_options();
        // The body streams through: the new request reads the old one's.
        let (_result_tx, result_rx) = wit_future::new(|| Ok(()));
        let (body, trailers) = Request::consume_body(request, result_rx);
        let (request, _) = Request::new(headers, Some(body), trailers, options);
        request
            .set_method(&method)
            .map_err(|()| internal("set-method"))?;
        request
            .set_scheme(scheme.as_ref())
            .map_err(|()| internal("set-scheme"))?;
        request
            .set_authority(authority.as_deref())
            .map_err(|()| internal("set-authority"))?;
        request
            .set_path_with_query(path_with_query.as_deref())
            .map_err(|()| internal("set-path-with-query"))?;
        middleware::next(request).await
    }
}
