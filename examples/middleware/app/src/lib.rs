//! The app behind the middleware: a WASI 0.3 HTTP handler that knows nothing
//! of authentication. Only requests the middleware lets through reach it.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

struct App;

wasip3::http::service::export!(App);

impl wasip3::exports::http::handler::Guest for App {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let body = format!("Hello from behind the middleware! You asked for {path}\n");
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
            .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut tx, rx) = wit_stream::new();
        let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _) = Response::new(headers, Some(rx), trailers_rx);
        wasip3::spawn(async move {
            tx.write_all(body.into_bytes()).await;
        });
        Ok(response)
    }
}
