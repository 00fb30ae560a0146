//! A wasi:http hello world. Build: `cargo build --release --target wasm32-wasip2`.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasi::http::proxy::export!(Hello);

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let headers =
            Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream
            .blocking_write_and_flush(
                format!("Hello from Rust on Ferry! You asked for {path}\n").as_bytes(),
            )
            .unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

fn main() {}
