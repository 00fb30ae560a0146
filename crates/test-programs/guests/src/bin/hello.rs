//! The benchmark guest: the smallest useful wasi:http component, answering
//! every request with the same 14 bytes the native baseline sends. It keeps a
//! counter like `http-guest` so the benchmark can check that each request
//! really got a fresh instance (the `x-instance-requests` header stays 1).

use std::sync::atomic::{AtomicU32, Ordering};

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasi::http::proxy::export!(Hello);

static REQUESTS: AtomicU32 = AtomicU32::new(0);

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let count = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
        let headers = Fields::from_list(&[
            ("content-type".into(), b"text/plain".to_vec()),
            ("x-instance-requests".into(), count.to_string().into_bytes()),
        ])
        .unwrap();
        let response = OutgoingResponse::new(headers);
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream.blocking_write_and_flush(b"Hello, world!\n").unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

fn main() {}
