//! HTTP middleware (WASI 0.3): exports `wasi:http/handler@0.3.0` and imports
//! the same interface, the next handler in the chain. A request without
//! `authorization: Bearer <token>` is answered `401` here and never reaches
//! the app; the token is the variable `api_token`, which the app's component
//! hands on to its middleware with `inherit_configuration = ["variables"]`.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

wit_bindgen::generate!({
    path: "wit",
    world: "auth",
    with: {
        "wasi:http/types@0.3.0": wasip3::http::types,
        "wasi:clocks/types@0.3.0": wasip3::clocks::types,
        "wasi:http/handler@0.3.0": generate,
        "wasi:config/store@0.2.0-draft-2024-09-27": generate,
    },
});

struct Auth;

wasip3::http::service::export!(Auth);

impl wasip3::exports::http::handler::Guest for Auth {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        // Without the variable (not handed on, or not set), nothing passes.
        let token = wasi::config::store::get("api_token").ok().flatten();
        let expected = token.map(|t| format!("Bearer {t}").into_bytes());
        let sent = request.get_headers().get("authorization");
        if expected.is_none() || !sent.iter().any(|v| Some(v) == expected.as_ref()) {
            return unauthorized();
        }
        wasi::http::handler::handle(request).await
    }
}

fn unauthorized() -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[
        ("content-type".into(), b"text/plain".to_vec()),
        ("www-authenticate".into(), b"Bearer".to_vec()),
    ])
    .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (mut tx, rx) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(headers, Some(rx), trailers_rx);
    response
        .set_status_code(401)
        .map_err(|()| ErrorCode::InternalError(Some("bad status".into())))?;
    wasip3::spawn(async move {
        tx.write_all(b"unauthorized\n".to_vec()).await;
    });
    Ok(response)
}
