//! Running a WASI preview 1 command module as a CGI/1.1 program (WAGI).
//!
//! Request metadata goes into the environment, the body onto stdin and the
//! argument list follows the executor's `argv` template. The program's stdout
//! is captured (up to the response limit) and parsed as a CGI response:
//! header lines, a blank line, then the body. Anything else is the guest's
//! fault and becomes a 500 with a log line.

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use ferry_manifest::WagiConfig;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime::{Engine, InstancePre, Linker, Module, Store, UpdateDeadline};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::body::{BodyTooLarge, BoxError, Limited, ResponseBody};
use crate::sandbox::{CapturedStdout, GuestLimiter, RequestLog, RequestStats, Sandbox};
use crate::{GuestError, Limits, RequestInfo};

pub(crate) struct WagiState {
    wasi: WasiP1Ctx,
    limits: GuestLimiter,
}

pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<WagiState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut WagiState| &mut s.wasi)?;
    Ok(linker)
}

pub(crate) fn pre(
    linker: &Linker<WagiState>,
    module: &Module,
    config: &WagiConfig,
) -> anyhow::Result<InstancePre<WagiState>> {
    anyhow::ensure!(
        module
            .exports()
            .any(|e| e.name() == config.entrypoint && e.ty().func().is_some()),
        "the module exports no function `{}` (the WAGI entrypoint)",
        config.entrypoint
    );
    Ok(linker.instantiate_pre(module)?)
}

/// Headers a CGI response may use to talk to the server rather than the client.
const STATUS: &str = "status";

#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle<B>(
    engine: &Engine,
    pre: &InstancePre<WagiState>,
    config: &WagiConfig,
    sandbox: &Sandbox,
    limits: &Limits,
    request: http::Request<B>,
    info: &RequestInfo,
) -> Result<http::Response<ResponseBody>, GuestError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let deadline = Instant::now() + limits.request_timeout;
    let (parts, body) = request.into_parts();
    let body = tokio::time::timeout_at(
        deadline.into(),
        Limited::new(body, limits.max_request_body).collect(),
    )
    .await
    .map_err(|_| GuestError::Timeout(limits.request_timeout))?
    .map_err(|e| {
        if e.is::<BodyTooLarge>() {
            GuestError::RequestBodyTooLarge(limits.max_request_body)
        } else {
            GuestError::BadRequest(format!("reading the request body: {e}"))
        }
    })?
    .to_bytes();

    let stdout = CapturedStdout::new(
        usize::try_from(limits.wagi_max_output())
            .unwrap_or(usize::MAX)
            .saturating_add(64 * 1024),
    );
    let mut builder = sandbox
        .wasi_builder(parts.extensions.get::<RequestLog>())
        .map_err(GuestError::Instantiation)?;
    builder
        .envs(&cgi_environment(&parts, body.len(), info))
        .args(&argv(
            &config.argv,
            info.script_name.as_str(),
            parts.uri.query(),
        ))
        .stdin(MemoryInputPipe::new(body))
        .stdout(stdout.clone());
    let stats = parts
        .extensions
        .get::<std::sync::Arc<RequestStats>>()
        .cloned();
    let state = WagiState {
        wasi: builder.build_p1(),
        limits: GuestLimiter::new(limits, stats.clone()),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));

    // The guest runs in a task of its own, like a wasi:http guest: on this
    // machine that costs the same instructions but markedly less time than
    // running its fiber inside the connection's task (see BENCHMARKS.md).
    let pre = pre.clone();
    let entrypoint = config.entrypoint.clone();
    let run = async move {
        let instantiating = Instant::now();
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| GuestError::from_instantiation(e.into()))?;
        if let Some(stats) = &stats {
            stats.instantiated(instantiating.elapsed());
        }
        let entry = instance
            .get_typed_func::<(), ()>(&mut store, &entrypoint)
            .map_err(|e| GuestError::Instantiation(e.into()))?;
        match entry.call_async(&mut store, ()).await {
            Ok(()) => Ok(()),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                // A CGI program may exit with any status after printing its response.
                Some(_) => Ok(()),
                None => Err(GuestError::Trap(e.into())),
            },
        }
    };
    let timeout = limits.request_timeout;
    tokio::spawn(async move {
        tokio::time::timeout_at(deadline.into(), run)
            .await
            .map_err(|_| GuestError::Timeout(timeout))?
    })
    .await
    .map_err(|e| GuestError::Trap(anyhow::anyhow!("the guest's task failed: {e}")))??;

    if stdout.overflowed() {
        return Err(GuestError::ResponseTooLarge(limits.wagi_max_output()));
    }
    let response = parse_cgi_response(stdout.take()).map_err(GuestError::BadCgiOutput)?;
    if response.body().len() as u64 > limits.wagi_max_output() {
        return Err(GuestError::ResponseTooLarge(limits.wagi_max_output()));
    }
    Ok(response.map(|body| {
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    }))
}

/// The CGI/1.1 meta-variables, plus WAGI's `X_*` extensions.
fn cgi_environment(
    parts: &http::request::Parts,
    body_len: usize,
    info: &RequestInfo,
) -> Vec<(Cow<'static, str>, String)> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path_info = percent_decode(&info.path_info);
    let remote_addr = info.client_addr.ip().to_string();
    let protocol = match parts.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    let mut env: Vec<(Cow<'static, str>, String)> =
        Vec::with_capacity(24 + parts.headers.keys_len());
    env.extend([
        ("AUTH_TYPE".into(), String::new()),
        ("CONTENT_LENGTH".into(), body_len.to_string()),
        ("CONTENT_TYPE".into(), header("content-type")),
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("PATH_INFO".into(), path_info.clone()),
        ("PATH_TRANSLATED".into(), path_info),
        (
            "QUERY_STRING".into(),
            parts.uri.query().unwrap_or("").into(),
        ),
        ("REMOTE_ADDR".into(), remote_addr.clone()),
        ("REMOTE_HOST".into(), remote_addr),
        ("REMOTE_USER".into(), String::new()),
        ("REQUEST_METHOD".into(), parts.method.as_str().to_owned()),
        ("SCRIPT_NAME".into(), info.script_name.clone()),
        ("SERVER_NAME".into(), info.server_name.clone()),
        ("SERVER_PORT".into(), info.server_port.to_string()),
        ("SERVER_PROTOCOL".into(), protocol.to_owned()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("Ferry/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("X_MATCHED_ROUTE".into(), info.matched_route.clone()),
        ("X_FULL_URL".into(), info.full_url.clone()),
        ("X_RAW_PATH_INFO".into(), info.path_info.clone()),
        ("X_COMPONENT_ROUTE".into(), info.component_route.clone()),
        (
            "X_RAW_COMPONENT_ROUTE".into(),
            info.raw_component_route.clone(),
        ),
        ("X_BASE_PATH".into(), info.base_path.clone()),
    ]);
    let fixed = env.len();
    for name in parts.headers.keys() {
        // Repeated headers are joined, as CGI servers do.
        let mut value = String::new();
        let mut readable = false;
        for v in parts.headers.get_all(name) {
            let Ok(v) = v.to_str() else { continue };
            if readable {
                value.push_str(", ");
            }
            value.push_str(v);
            readable = true;
        }
        if !readable {
            continue;
        }
        // Header names are lowercase ASCII: `x-forwarded-for` → `HTTP_X_FORWARDED_FOR`.
        let mut key = String::with_capacity(5 + name.as_str().len());
        key.push_str("HTTP_");
        for (index, part) in name.as_str().split('-').enumerate() {
            if index > 0 {
                key.push('_');
            }
            key.push_str(part);
        }
        key.make_ascii_uppercase();
        // `x-a` and `x_a` are different headers but one variable.
        match env[fixed..].iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => env.push((key.into(), value)),
        }
    }
    env
}

/// Expands the argv template: `${SCRIPT_NAME}` becomes the script name and
/// `${ARGS}` the query string's `&`-separated parts, percent-decoded.
fn argv(template: &str, script_name: &str, query: Option<&str>) -> Vec<String> {
    let args: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|a| !a.is_empty())
        .map(|a| percent_decode(&a.replace('+', " ")))
        .collect();
    let mut out = Vec::new();
    for word in template.split_whitespace() {
        if word == "${ARGS}" {
            out.extend(args.iter().cloned());
        } else {
            out.push(word.replace("${SCRIPT_NAME}", script_name));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Longest header section a CGI program may print.
const MAX_CGI_HEADERS: usize = 64 * 1024;

/// Parses CGI output: header lines (`\n` or `\r\n`), a blank line, the body.
pub fn parse_cgi_response(output: Bytes) -> Result<http::Response<Bytes>, String> {
    let (head_end, body_start) = find_head_end(&output).ok_or_else(|| {
        if output.is_empty() {
            "the program printed nothing (a CGI response needs headers, a blank line, then the body)".to_owned()
        } else {
            "no blank line ends the headers".to_owned()
        }
    })?;
    if head_end > MAX_CGI_HEADERS {
        return Err(format!(
            "header section larger than {MAX_CGI_HEADERS} bytes"
        ));
    }
    let head = std::str::from_utf8(&output[..head_end])
        .map_err(|_| "headers are not valid UTF-8".to_owned())?;
    let mut response = http::Response::new(output.slice(body_start..));
    let mut status = None;
    let mut saw_document_header = false;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        let value = value.trim();
        let name = name.trim();
        if name.eq_ignore_ascii_case(STATUS) {
            let code = value.split_whitespace().next().unwrap_or("");
            status = Some(
                code.parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("invalid Status {value:?}"))?,
            );
            saw_document_header = true;
            continue;
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name:?}"))?;
        if header == http::header::CONTENT_TYPE || header == http::header::LOCATION {
            saw_document_header = true;
        }
        if header == http::header::LOCATION && status.is_none() {
            status = Some(StatusCode::FOUND);
        }
        response.headers_mut().append(header, value);
    }
    if !saw_document_header {
        return Err("the response has none of Content-Type, Location or Status".into());
    }
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
    Ok(response)
}

fn find_head_end(output: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for (i, b) in output.iter().enumerate() {
        if *b == b'\n' {
            let line = &output[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some((line_start, i + 1));
            }
            line_start = i + 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_with_status_and_headers() {
        let r = parse_cgi_response(Bytes::from_static(
            b"Content-Type: text/plain\r\nStatus: 404 Not Found\r\nX-A: 1\r\n\r\nbody",
        ))
        .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.body(), "body");
    }

    #[test]
    fn location_alone_redirects() {
        let r = parse_cgi_response(Bytes::from_static(b"Location: /elsewhere\n\n")).unwrap();
        assert_eq!(r.status(), 302);
    }

    #[test]
    fn malformed_output_is_refused() {
        for bad in [
            &b""[..],
            b"hello world",
            b"Content-Type: text/plain\nno blank line",
            b"X-Only: 1\n\nbody",
            b"Status: banana\n\n",
            b"not a header\n\n",
        ] {
            assert!(
                parse_cgi_response(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A header line as a CGI program might print one, well-formed or
        /// not.
        fn header_line() -> impl Strategy<Value = String> {
            let name = prop_oneof![
                Just("Content-Type".to_owned()),
                Just("Status".to_owned()),
                Just("Location".to_owned()),
                Just("status".to_owned()),
                "[A-Za-z-]{1,12}",
                "[ -~]{0,12}",
                "\\PC{0,6}",
            ];
            let value = prop_oneof![
                Just("200 OK".to_owned()),
                Just("99999".to_owned()),
                Just("".to_owned()),
                "[ -~]{0,24}",
                "\\PC{0,8}",
            ];
            let ending = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
            (
                name,
                prop_oneof![Just(":"), Just(": "), Just("")],
                value,
                ending,
            )
                .prop_map(|(n, sep, v, end)| format!("{n}{sep}{v}{end}"))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn the_cgi_parser_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_cgi_response(Bytes::from(bytes));
            }

            /// Header-shaped output: a response's body is exactly what
            /// followed the blank line, and its status is a valid code.
            #[test]
            fn a_parsed_response_keeps_the_body_that_followed_the_headers(
                lines in proptest::collection::vec(header_line(), 0..6),
                blank in prop_oneof![Just("\n"), Just("\r\n"), Just("")],
                body in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut output = lines.concat().into_bytes();
                output.extend_from_slice(blank.as_bytes());
                output.extend_from_slice(&body);
                if let Ok(response) = parse_cgi_response(Bytes::from(output.clone())) {
                    prop_assert!(output.ends_with(response.body()));
                    prop_assert!((100..=999).contains(&response.status().as_u16()));
                }
            }
        }
    }

    #[test]
    fn argv_expands_the_template() {
        assert_eq!(
            argv("${SCRIPT_NAME} ${ARGS}", "/cgi", Some("a&b%20c&d+e")),
            vec!["/cgi", "a", "b c", "d e"]
        );
        assert_eq!(argv("${SCRIPT_NAME} -v", "/x", None), vec!["/x", "-v"]);
    }
}
