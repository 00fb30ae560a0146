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

/// Sends `raw` on a new connection and reads until the server closes it or
/// `within` passes; returns what came back.
async fn exchange(ferry: &Ferry, raw: &[u8], within: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(ferry.addr()).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

/// The status of the first response in `reply`, if there is one.
fn status(reply: &str) -> Option<u16> {
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
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
            let reply = exchange(&ferry, raw.as_bytes(), Duration::from_secs(10)).await;
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
        let reply = exchange(&ferry, raw.as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(status(&reply), Some(200), "{path}: {reply}");
        assert!(
            reply.contains("11 bytes\n") || reply.contains("hello world"),
            "{path}: {reply}"
        );
        still_serves(&ferry).await;
    }
}
