//! The front end: for each request it asks `back`, another component of the
//! same app, with an ordinary outbound request to
//! `http://back.spin.internal/…` — which Ferry serves in process, without a
//! socket — and wraps the answer.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme};

#[path = "../../respond.rs"]
mod respond;

struct Front;

wasi::http::proxy::export!(Front);

impl wasi::exports::http::incoming_handler::Guest for Front {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = match ask_back(&path) {
            Ok(answer) => format!("front asked back for {path}: {answer}\n"),
            Err(e) => format!("front could not reach back: {e}\n"),
        };
        respond::respond(out, &body);
    }
}

/// GETs `path` from the `back` component and returns its body.
fn ask_back(path: &str) -> Result<String, String> {
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "scheme")?;
    request
        .set_authority(Some("back.spin.internal"))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken")?
        .map_err(|e| format!("{e:?}"))?;
    let body = response.consume().map_err(|()| "body")?;
    let stream = body.stream().map_err(|()| "body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
