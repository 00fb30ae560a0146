//! OpenTelemetry traces, received the way a collector receives them: an
//! OTLP/HTTP receiver written here, decoding what Ferry sends with the
//! protocol's own protobuf types, checked for the spans and their links.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::support::*;

/// A request as it came: its path, headers (names lower-case) and body.
type Recorded = (String, Vec<(String, String)>, Vec<u8>);

/// A plain HTTP/1.1 server on 127.0.0.1 that takes every request whole and
/// answers 200 with `answer`, keeping what came.
struct Recorder {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    fn start(answer: &'static [u8], content_type: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    // Keep-alive: request after request on one connection.
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                        let mut headers = Vec::new();
                        loop {
                            let mut header = String::new();
                            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                                return;
                            }
                            let header = header.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = header.split_once(':') {
                                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                            }
                        }
                        let length: usize = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        sink.lock().unwrap().push((path, headers, body));
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        if writer.write_all(head.as_bytes()).is_err()
                            || writer.write_all(answer).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, requests }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let requests = self.requests.lock().unwrap();
        let mut spans = Vec::new();
        for (path, headers, body) in requests.iter() {
            assert_eq!(path, "/v1/traces");
            assert!(
                headers
                    .iter()
                    .any(|(k, v)| k == "content-type" && v == "application/x-protobuf"),
                "{headers:?}"
            );
            let export = ExportTraceServiceRequest::decode(&body[..]).expect("OTLP protobuf");
            for resource in export.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.clone());
                assert_eq!(service, Some(Value::StringValue("ferry".into())));
                spans.extend(resource.scope_spans.into_iter().flat_map(|s| s.spans));
            }
        }
        spans
    }
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.clone())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans received so far, by name and trace: what a failed wait shows.
fn names(spans: &[Span]) -> Vec<(String, String)> {
    spans
        .iter()
        .map(|s| (s.name.clone(), hex(&s.trace_id)))
        .collect()
}

/// Waits ([`eventually_blocking`]) until `count` spans of trace `trace_id`
/// arrived.
fn spans_of(receiver: &Recorder, trace_id: &str, count: usize) -> Vec<Span> {
    let what = format!("{count} spans of trace {trace_id}");
    eventually_blocking(&what, || {
        let spans: Vec<Span> = receiver
            .spans()
            .into_iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        if spans.len() >= count {
            Ok(spans)
        } else {
            Err(names(&spans))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_a_span_that_continues_its_callers_trace() {
    let receiver = Recorder::start(b"", "application/x-protobuf");
    let upstream = Recorder::start(b"upstream says hi", "text/plain");
    let app = TestApp::new(
        &(trigger("/...", "guest")
            + &http_component(
                "guest",
                &format!(
                    "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
                    upstream.port
                ),
            )),
    );
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let ferry = Ferry::start_with_env(
        app.path(),
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );

    // A caller's trace: the request's span is its child, and the guest's
    // outbound request carries the trace on.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let reply = send(
        http::Request::get(format!(
            "{}/outbound?url=http://127.0.0.1:{}/called",
            ferry.url, upstream.port
        ))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .body(Full::new(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains("upstream says hi"),
        "{}",
        reply.text()
    );
    let request_id = reply.header("x-request-id").unwrap().to_owned();

    let spans = tokio::task::block_in_place(|| spans_of(&receiver, trace_id, 2));
    let request = spans
        .iter()
        .find(|s| s.name == "GET /...")
        .unwrap_or_else(|| panic!("no request span in {spans:?}"));
    assert_eq!(hex(&request.parent_span_id), caller_span);
    assert_eq!(
        attribute(request, "http.route"),
        Some(Value::StringValue("/...".into()))
    );
    assert_eq!(
        attribute(request, "ferry.app"),
        Some(Value::StringValue("test-app".into()))
    );
    assert_eq!(
        attribute(request, "ferry.component"),
        Some(Value::StringValue("guest".into()))
    );
    assert_eq!(
        attribute(request, "ferry.request_id"),
        Some(Value::StringValue(request_id))
    );
    assert_eq!(
        attribute(request, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    let instantiate = spans
        .iter()
        .find(|s| s.name == "instantiate")
        .unwrap_or_else(|| panic!("no instantiation span in {spans:?}"));
    assert_eq!(instantiate.parent_span_id, request.span_id);
    assert!(instantiate.start_time_unix_nano >= request.start_time_unix_nano);
    assert!(instantiate.end_time_unix_nano <= request.end_time_unix_nano);

    let called = upstream.requests.lock().unwrap().clone();
    let (_, headers, _) = called
        .iter()
        .find(|(path, _, _)| path == "/called")
        .expect("the guest called upstream");
    let traceparent = headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone())
        .expect("the outbound request carries the trace");
    assert_eq!(
        traceparent,
        format!("00-{trace_id}-{}-01", hex(&request.span_id))
    );

    // Without a caller, a request starts a trace of its own; a failing one
    // says it failed.
    let reply = get(&format!("{}/trap", ferry.url)).await;
    assert_eq!(reply.status, 500);
    let failed = eventually("a span for the failed request", || async {
        let spans = receiver.spans();
        match spans
            .iter()
            .find(|s| s.name == "GET /..." && hex(&s.trace_id) != trace_id)
        {
            Some(span) => Ok(span.clone()),
            None => Err(names(&spans)),
        }
    })
    .await;
    assert!(failed.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        attribute(&failed, "http.response.status_code"),
        Some(Value::IntValue(500))
    );
    let status = failed.status.expect("a status");
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert_eq!(status.message, "trap");
}
