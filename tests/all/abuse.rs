//! Hostile clients, replayed: each case sends what an attacker or a broken
//! client would, over a raw TCP connection on loopback, asserts what the
//! client gets, and then checks that a normal request is still served.
//! Every case is bounded in time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One app with a route per executor, each reading the whole request body
/// before it answers: WASI 0.2, WASI 0.3 and WAGI.
fn app() -> TestApp {
    TestApp::new(&format!(
        "{}{}{}{}\
         [component.p3]\nsource = {HTTP_P3_GUEST:?}\nenvironment = {{ NAME = \"p3\" }}\n\n\
         [component.cgi]\nsource = {WAGI_C:?}\n",
        trigger("/v2/...", "guest"),
        trigger("/v3/...", "p3"),
        "[[trigger.http]]\nroute = \"/cgi/...\"\ncomponent = \"cgi\"\nexecutor = { type = \"wagi\" }\n\n",
        http_component("guest", ""),
    ))
}

/// Where each executor's body-reading path is.
const BODY_READERS: [&str; 3] = ["/v2/length", "/v3/length", "/cgi/echo"];

/// Sends `raw` on a new connection and reads until the server closes it
/// or `within` passes; returns what came back.
async fn exchange(ferry: &Ferry, raw: &[u8], within: Duration) -> String {
    read_reply(ferry, raw, within, |_| false).await
}

/// As [`exchange`], but also done as soon as one response with a
/// `Content-Length` has fully arrived (a server may keep the connection
/// open after it).
async fn exchange_one(ferry: &Ferry, raw: &[u8], within: Duration) -> String {
    read_reply(ferry, raw, within, one_whole_response).await
}

async fn read_reply(
    ferry: &Ferry,
    raw: &[u8],
    within: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> String {
    let mut stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    // The server may answer (and stop reading) before all of it is sent.
    let _ = stream.write_all(raw).await;
    let mut reply = Vec::new();
    let read = async {
        let mut chunk = [0; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
            }
            if done(&reply) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    String::from_utf8_lossy(&reply).into_owned()
}

/// Whether `reply` is exactly one response whose `Content-Length` body has
/// fully arrived.
fn one_whole_response(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .is_some_and(|len| body.len() == len)
}

/// The status of the first response in `reply`, if there is one.
fn status(reply: &str) -> Option<u16> {
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

type Http2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// An HTTP/2 (prior knowledge) connection to `ferry`, driven by a task
/// whose end is the connection's.
async fn http2(
    ferry: &Ferry,
) -> (
    Http2Sender,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

/// `GET url` on an HTTP/2 connection: the status and the whole body.
async fn http2_get(sender: &mut Http2Sender, url: &str) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    let response = sender
        .send_request(
            http::Request::get(url)
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

async fn still_serves(ferry: &Ferry) {
    assert_eq!(
        get(&format!("{}/v2/", ferry.url)).await.text(),
        "hello from guest\n"
    );
}

/// A chunked request body that is not valid chunked encoding never reaches
/// a guest as a shorter body it then answers 200 to: the client gets 400 and
/// the access line says why, on every executor.
#[tokio::test]
async fn malformed_chunked_bodies_are_400_on_every_executor() {
    let app = app();
    let ferry = Ferry::start(&app, &["--log-format", "json"]);
    let bodies: [(&str, &str); 6] = [
        ("a non-hex size", "zz\r\nhello\r\n0\r\n\r\n"),
        ("a negative size", "-5\r\nhello\r\n0\r\n\r\n"),
        (
            "a size past 64 bits",
            "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("a 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        (
            "more data than the size says",
            "5\r\nhello, and then some\r\n0\r\n\r\n",
        ),
        ("a bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
    ];
    for path in BODY_READERS {
        for (what, body) in bodies {
            let mark = ferry.log_mark();
            let raw = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            );
            let reply = exchange_one(&ferry, raw.as_bytes(), scaled(Duration::from_secs(10))).await;
            assert_eq!(status(&reply), Some(400), "{path}, {what}: {reply}");
            let access = ferry.access_line(mark, path).await;
            assert_eq!(access["status"], 400, "{path}, {what}");
            let error = access["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("request body"),
                "{path}, {what}: the access line must say why: {access}"
            );
        }
        // A well-formed chunked body of the same shape is read whole.
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        );
        let reply = exchange(&ferry, raw.as_bytes(), scaled(Duration::from_secs(10))).await;
        assert_eq!(status(&reply), Some(200), "{path}: {reply}");
        assert!(
            reply.contains("11 bytes\n") || reply.contains("hello world"),
            "{path}: {reply}"
        );
        still_serves(&ferry).await;
    }
}

/// Whether the server closes `stream` within `within` (reading whatever it
/// sends first); false if it is still open then.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// Connections that drip the HTTP/2 preface a byte at a time, or send half
/// of it and stall, or send nothing at all, are closed once the header-read
/// timeout passes from their first byte, as a slow HTTP/1 head is.
#[tokio::test]
async fn slow_or_silent_connections_are_closed_from_their_first_byte() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let app = app();
    let ferry = Ferry::start(&app, &["--header-read-timeout", "1s"]);
    let mut drippers = Vec::new();
    for i in 0..30 {
        let addr = ferry.addr();
        drippers.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            // Each connection drips from a different point of the preface,
            // one byte per 300 ms, for up to 20 s.
            for &byte in PREFACE.iter().skip(i % 20).take(10) {
                if stream.write_all(&[byte]).await.is_err() {
                    return true;
                }
                if closed_within(&mut stream, Duration::from_millis(300)).await {
                    return true;
                }
            }
            closed_within(&mut stream, Duration::from_secs(15)).await
        }));
    }
    let mut silent = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    half.write_all(&PREFACE[..12]).await.unwrap();
    let mut slow_http1 = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    slow_http1
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for (what, stream) in [
        ("silent", &mut silent),
        ("half a preface", &mut half),
        ("half an HTTP/1 head", &mut slow_http1),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(15)).await,
            "a connection with {what} was still open 15 s into a 1 s timeout"
        );
    }
    for (i, dripper) in drippers.into_iter().enumerate() {
        assert!(
            dripper.await.unwrap(),
            "dripping connection {i} was never closed"
        );
    }
    still_serves(&ferry).await;
}

/// Idle keep-alive connections do not stay open forever: HTTP/1 ones are
/// closed after the header-read timeout, HTTP/2 ones (which keep answering
/// pings) get GOAWAY once no request has been in flight that long.
#[tokio::test]
async fn idle_connections_are_closed() {
    let app = app();
    let ferry = Ferry::start(&app, &["--header-read-timeout", "1s"]);

    let mut http1 = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    http1
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0; 12];
    http1.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut http1, Duration::from_secs(15)).await,
        "an idle HTTP/1 keep-alive connection stayed open"
    );

    let (mut sender, connection) = http2(&ferry).await;
    let (status, _) = http2_get(&mut sender, &format!("{}/v2/", ferry.url)).await;
    assert_eq!(status, 200);
    // Open, answering pings, and idle: the server ends it.
    let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection stayed open 15 s into a 1 s idle limit"
    );
    still_serves(&ferry).await;
}

/// A streamed response longer than the header-read timeout is not cut by
/// the idle limit: a request in flight keeps an HTTP/2 connection busy.
#[tokio::test]
async fn a_long_request_on_http2_is_not_idle() {
    let app = app();
    let ferry = Ferry::start(&app, &["--header-read-timeout", "1s"]);
    let (mut sender, _connection) = http2(&ferry).await;
    let reply = http2_get(&mut sender, &format!("{}/v2/sleep?ms=2500", ferry.url)).await;
    assert_eq!(reply, (200, b"slept 2500 ms\n".to_vec()));
}

/// Header floods, absurd declared bodies, request smuggling and bad request
/// targets each get their 4xx, and never reach a guest as something else.
#[tokio::test]
async fn malformed_and_oversized_requests_get_their_4xx() {
    let app = app();
    let ferry = Ferry::start(&app, &["--max-header-size", "64KiB"]);
    let huge_header = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Flood: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..10_000)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, String, u16)> = vec![
        ("a 1 MiB header", huge_header, 431),
        ("10,000 headers", many_headers, 431),
        (
            "a declared 1 GiB body",
            "POST /v2/length HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n".into(),
            413,
        ),

        (
            "two different Content-Lengths",
            "POST /v2/length HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc".into(),
            400,
        ),
        (
            "a Transfer-Encoding that is not chunked",
            "POST /v2/length HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc".into(),
            400,
        ),
        (
            "a request target that is not a path",
            "GET nonsense HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "`*` for a method other than OPTIONS",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "a broken absolute target",
            "GET http://[::1/v2/ HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "a space in the target",
            "GET /v2/a b HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "an invalid Host",
            "GET /v2/ HTTP/1.1\r\nHost: a b\r\n\r\n".into(),
            400,
        ),
        (
            "no HTTP version",
            "GET /v2/\r\n\r\n".into(),
            400,
        ),
    ];
    for (what, raw, expected) in cases {
        let reply = exchange_one(&ferry, raw.as_bytes(), scaled(Duration::from_secs(10))).await;
        assert_eq!(status(&reply), Some(expected), "{what}: {reply}");
        assert_eq!(
            reply.matches("HTTP/1.1 ").count(),
            1,
            "{what}: exactly one response, nothing smuggled: {reply}"
        );
        still_serves(&ferry).await;
    }
}

/// `Content-Length` and `Transfer-Encoding` together, the classic
/// smuggling request: the body is read by its chunked encoding (RFC 9112,
/// 6.3), and the connection is closed after the response, so what was
/// smuggled behind it is never served.
#[tokio::test]
async fn a_request_with_two_lengths_smuggles_nothing() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let raw = "POST /v2/length HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
               0\r\n\r\nGET /v2/status?code=299 HTTP/1.1\r\nHost: x\r\n\r\n";
    let reply = exchange(&ferry, raw.as_bytes(), scaled(Duration::from_secs(10))).await;
    assert_eq!(status(&reply), Some(200), "{reply}");
    assert!(
        reply.contains("\r\n\r\n8\r\n0 bytes\n"),
        "read by chunked encoding: {reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "smuggled: {reply}");
    still_serves(&ferry).await;
}

/// A thousand requests pipelined on one connection get a thousand
/// responses, in order.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let mut raw = String::new();
    for i in 0..1000 {
        raw.push_str(&format!(
            "GET /v2/status?code={} HTTP/1.1\r\nHost: x\r\n\r\n",
            200 + i % 3
        ));
    }
    raw.push_str("GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let reply = exchange(&ferry, raw.as_bytes(), scaled(Duration::from_secs(60))).await;
    let statuses: Vec<u16> = reply
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r[..3].parse().unwrap())
        .collect();
    assert_eq!(
        statuses.len(),
        1001,
        "{}",
        &reply[reply.len().saturating_sub(500)..]
    );
    for (i, status) in statuses[..1000].iter().enumerate() {
        assert_eq!(*status, 200 + (i % 3) as u16, "response {i}");
    }
    still_serves(&ferry).await;
}

/// Hundreds of connections opened at once, each sending a request, are all
/// answered; none is dropped for the others.
#[tokio::test]
async fn a_connection_flood_is_served() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let clients: Vec<_> = (0..500)
        .map(|_| {
            let addr = ferry.addr();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut reply = Vec::new();
                let limit = scaled(Duration::from_secs(60));
                tokio::time::timeout(limit, stream.read_to_end(&mut reply))
                    .await
                    .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
                    .unwrap();
                status(&String::from_utf8_lossy(&reply))
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), Some(200));
    }
    still_serves(&ferry).await;
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and
/// cancels them at once, over and over, gets its connection closed, and
/// everyone else is still served.
#[tokio::test]
async fn http2_rapid_reset_is_cut_off() {
    use http_body_util::Full;
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let (mut sender, connection) = http2(&ferry).await;
    let mut cut_off = false;
    for _ in 0..5000 {
        if sender.ready().await.is_err() {
            cut_off = true;
            break;
        }
        let request = http::Request::get(format!("{}/v2/sleep?ms=50", ferry.url))
            .body(Full::<bytes::Bytes>::default())
            .unwrap();
        // Sent, then dropped before its response: the client resets it.
        let pending = sender.send_request(request);
        drop(pending);
        tokio::task::yield_now().await;
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
    assert!(
        cut_off || ended.is_ok(),
        "5,000 reset streams and the connection is still open"
    );
    still_serves(&ferry).await;
}
