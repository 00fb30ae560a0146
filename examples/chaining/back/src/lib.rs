//! The back end: reachable only by service chaining (its route is private),
//! so every request it gets comes from another component of its app.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

#[path = "../../respond.rs"]
mod respond;

struct Back;

wasi::http::proxy::export!(Back);

impl wasi::exports::http::incoming_handler::Guest for Back {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = format!("the back end answered {path}");
        respond::respond(out, &body);
    }
}
