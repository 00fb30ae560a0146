//! An HTTP component (wasi:http 0.2) that imports `example:greeter/greet`.
//! It does not know where the greeting comes from: `spin.toml` names the
//! component that satisfies the import, and Ferry composes the two at load.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({ path: "../wit", world: "app" });

struct App;

wasi::http::proxy::export!(App);

impl wasi::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        // `/?name=Ada` greets Ada.
        let query = request.path_with_query().unwrap_or_default();
        let name = query
            .split_once("name=")
            .map(|(_, name)| name.split('&').next().unwrap_or_default())
            .unwrap_or_default();
        let body = format!("{}\n", example::greeter::greet::greet(name));

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
}
