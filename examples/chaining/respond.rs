//! Both components' way of answering: a `text/plain` response with `body`.

use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};

pub fn respond(out: ResponseOutparam, body: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("a valid header");
    let response = OutgoingResponse::new(headers);
    let outgoing = response.body().expect("the response body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("the body stream");
    stream
        .blocking_write_and_flush(body.as_bytes())
        .expect("writing the body");
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finishing the body");
}
