//! A wasi:http (0.2) component that imports `ferry:compose/greet` and
//! `ferry:compose/probe` (world `app` in `wit/compose.wit`), which Ferry
//! satisfies at load time by plugging in a dependency component
//! (`compose-dep` in the tests). Each route is one question, its query string
//! the argument (not percent-decoded), asked either of the dependency or of
//! the app itself, so that tests can compare what each one is granted:
//!
//! - `/greet?NAME`: `greet(NAME)`
//! - `/dep-outbound?URL`, `/own-outbound?URL`: `ok STATUS` or `err MESSAGE`
//!   for a GET of URL by the dependency (`probe.outbound`) or by the app
//! - `/dep-env?NAME`, `/own-env?NAME`: `some VALUE` or `none` for the
//!   environment variable NAME in the dependency (`probe.env`) or in the app
//! - `/hold-both?N`: N MiB held in the app's memory, then N MiB in the
//!   dependency's: `app held|refused, dependency held|refused`
//!
//! The route is matched on `spin-path-info` (the path after the trigger's
//! route) when the request has it, otherwise on the request's path.

use std::io::Read as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

use ferry::compose::{greet, probe};

#[path = "../compose.rs"]
mod compose;

wit_bindgen::generate!({ world: "app" });

struct App;

wasi::http::proxy::export!(App);

impl wasi::exports::http::incoming_handler::Guest for App {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let pq = request.path_with_query().unwrap_or_default();
        let (path, arg) = pq.split_once('?').unwrap_or((&pq, ""));
        let path_info = request
            .headers()
            .get("spin-path-info")
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| path.to_owned());
        let outcome = |result: Result<u16, String>| match result {
            Ok(status) => format!("ok {status}"),
            Err(message) => format!("err {message}"),
        };
        let value = |value: Option<String>| match value {
            Some(value) => format!("some {value}"),
            None => "none".to_owned(),
        };
        match path_info.as_str() {
            "/greet" => respond(out, 200, &greet::greet(arg)),
            "/dep-outbound" => respond(out, 200, &outcome(probe::outbound(arg))),
            "/dep-env" => respond(out, 200, &value(probe::env(arg))),
            "/own-outbound" => respond(out, 200, &outcome(compose::get(arg))),
            "/own-env" => respond(out, 200, &value(std::env::var(arg).ok())),
            // `N`: N MiB in the app's memory, then N MiB in the dependency's.
            "/hold-both" => {
                let mib = arg.parse().unwrap_or(0);
                let held = |ok: bool| if ok { "held" } else { "refused" };
                let own = held(compose::hold(mib));
                let dep = held(probe::hold(mib));
                respond(out, 200, &format!("app {own}, dependency {dep}"))
            }
            other => respond(out, 404, &format!("no route {other:?}\n")),
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    headers
        .append("content-type", b"text/plain")
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream");
    // `blocking-write-and-flush` takes at most 4096 bytes at a time.
    for chunk in body.as_bytes().chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish");
}

fn main() {
    // Unused: the component is entered through the exported handler.
    let _ = std::io::stdin().read(&mut []);
}
