//! A wasi:http test guest with one behaviour per path (the part of the path
//! after its route, from `spin-path-info`), so that one compiled component
//! serves most integration tests. `NAME` in its environment tells instances
//! apart in routing tests.

use std::io::Read as _;
use std::sync::atomic::{AtomicU32, Ordering};

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use wasi::io::streams::StreamError;

#[path = "../capability.rs"]
mod capability;

struct Guest;

wasi::http::proxy::export!(Guest);

/// Counts requests seen by this instance: with a fresh instance per request
/// it is always 1.
static REQUESTS: AtomicU32 = AtomicU32::new(0);

impl wasi::exports::http::incoming_handler::Guest for Guest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let count = REQUESTS.fetch_add(1, Ordering::SeqCst) + 1;
        let headers: Vec<(String, Vec<u8>)> = request.headers().entries();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let path_info = header("spin-path-info").unwrap_or_default();
        let pq = request.path_with_query().unwrap_or_default();
        let query = pq
            .split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default();
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| v.to_owned())
            })
        };
        let name = std::env::var("NAME").unwrap_or_else(|_| "unnamed".into());

        if let Some((status, body)) = capability::answer(&path_info, param) {
            return respond(out, status, &body);
        }
        match path_info.as_str() {
            "" | "/" => respond(out, 200, &format!("hello from {name}\n")),
            "/headers" => {
                let scheme = match request.scheme() {
                    Some(Scheme::Http) => "http".to_owned(),
                    Some(Scheme::Https) => "https".to_owned(),
                    Some(Scheme::Other(other)) => other,
                    None => "none".to_owned(),
                };
                let mut text = format!(
                    "method: {:?}\nscheme: {scheme}\npath: {pq}\n",
                    request.method()
                );
                let mut sorted = headers.clone();
                sorted.sort();
                for (k, v) in sorted {
                    text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(&v)));
                }
                respond(out, 200, &text)
            }
            "/echo" => echo(request, out),
            "/length" => {
                // Reads the whole body before answering, as most handlers
                // do, and (naively) takes a read error for its end.
                let incoming = request.consume().expect("request body");
                let input = incoming.stream().expect("request stream");
                let mut length = 0;
                while let Ok(chunk) = input.blocking_read(64 * 1024) {
                    length += chunk.len();
                }
                respond(out, 200, &format!("{length} bytes\n"))
            }
            "/counter" => respond(out, 200, &format!("{count}\n")),
            "/trap" => core::arch::wasm32::unreachable(),
            "/panic" => panic!("the guest panicked on purpose"),
            "/loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/stack-overflow" => {
                #[allow(unconditional_recursion)]
                fn recurse(n: u64) -> u64 {
                    let pad = std::hint::black_box([n; 64]);
                    recurse(pad[3] + 1) + pad[7]
                }
                respond(out, 200, &recurse(0).to_string())
            }
            "/big" => {
                let mb: u64 = param("mb").and_then(|m| m.parse().ok()).unwrap_or(100);
                let declared = param("declared").is_some();
                big(out, mb, declared)
            }
            "/no-response" => {}
            "/sleep" => {
                let ms: u64 = param("ms").and_then(|m| m.parse().ok()).unwrap_or(100);
                // Tests wait for this line to know the request is in flight.
                println!("sleeping {ms} ms");
                wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                // ... and for this one to know it is about to end.
                println!("slept {ms} ms");
                respond(out, 200, &format!("slept {ms} ms\n"))
            }
            "/chatty" => {
                let lines: u64 = param("lines").and_then(|m| m.parse().ok()).unwrap_or(10);
                for i in 0..lines {
                    println!("chatty line {i}");
                }
                respond(out, 200, &format!("printed {lines} lines\n"))
            }
            "/print" => {
                println!("a line on stdout from {name}");
                eprintln!("a line on stderr from {name}");
                respond(out, 200, "printed\n")
            }
            "/status" => {
                let code: u16 = param("code").and_then(|m| m.parse().ok()).unwrap_or(200);
                respond(out, code, &format!("status {code}\n"))
            }
            "/outbound" => {
                let url = param("url").unwrap_or_default();
                respond(out, 200, &(outbound(&url) + "\n"))
            }
            other => respond(out, 404, &format!("no test behaviour at {other:?}\n")),
        }
    }
}

/// Every response names the component instance (`NAME`) in `x-guest-name`.
fn response(status: u16, headers: &[(&str, &str)]) -> OutgoingResponse {
    let fields = Fields::new();
    let name = std::env::var("NAME").unwrap_or_else(|_| "unnamed".into());
    fields
        .append("x-guest-name", name.as_bytes())
        .expect("valid header");
    for (k, v) in headers {
        fields.append(k, v.as_bytes()).expect("valid header");
    }
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).expect("valid status");
    response
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let response = response(status, &[("content-type", "text/plain")]);
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    write_all(&outgoing, body.as_bytes());
    OutgoingBody::finish(outgoing, None).expect("finish");
}

fn write_all(body: &OutgoingBody, bytes: &[u8]) {
    let stream = body.write().expect("stream");
    write_stream(&stream, bytes).expect("write");
}

/// `blocking-write-and-flush` takes at most 4096 bytes at a time.
fn write_stream(
    stream: &wasi::io::streams::OutputStream,
    mut bytes: &[u8],
) -> Result<(), StreamError> {
    while !bytes.is_empty() {
        let n = bytes.len().min(4096);
        stream.blocking_write_and_flush(&bytes[..n])?;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Streams the request body back as it arrives.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let response = response(200, &[("content-type", "application/octet-stream")]);
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    let incoming = request.consume().expect("request body");
    let input = incoming.stream().expect("request stream");
    let output = outgoing.write().expect("response stream");
    loop {
        match input.blocking_read(64 * 1024) {
            Ok(chunk) => {
                write_stream(&output, &chunk).expect("write");
            }
            Err(StreamError::Closed) => break,
            Err(e) => panic!("reading the request body failed: {e:?}"),
        }
    }
    drop(output);
    drop(input);
    OutgoingBody::finish(outgoing, None).expect("finish");
}

fn big(out: ResponseOutparam, mb: u64, declared: bool) {
    let len = (mb << 20).to_string();
    let mut headers = vec![("content-type", "application/octet-stream")];
    if declared {
        headers.push(("content-length", &len));
    }
    let response = response(200, &headers);
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream");
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..(mb << 4) {
        if write_stream(&stream, &chunk).is_err() {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Sends a GET to `url` (`http://host:port/path`) and describes the outcome.
fn outbound(url: &str) -> String {
    let Some((https, authority, path)) = capability::split_url(url) else {
        return format!("bad url {url:?}");
    };
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let future = match outgoing_handler::handle(request, None) {
        Ok(f) => f,
        Err(code) => return format!("error: {code:?}"),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => {
            let status = response.status();
            let body = response.consume().expect("body");
            let stream = body.stream().expect("stream");
            let mut text = Vec::new();
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                text.extend(chunk);
            }
            format!(
                "status {status}: {}",
                String::from_utf8_lossy(&text).trim_end()
            )
        }
        Some(Ok(Err(code))) => format!("error: {code:?}"),
        other => format!("error: unexpected {other:?}"),
    }
}

fn main() {
    // Unused: the component is entered through the exported handler.
    let _ = std::io::stdin().read(&mut []);
}
