//! A Spin HTTP component on spin-sdk 2.2.0, whose `#[http_component]`
//! exports `wasi:http/incoming-handler@0.2.0-rc-2023-10-18`, a release
//! candidate of WASI 0.2. Ferry's tests build it with `ferry build` and serve
//! it, exercising the candidate's request, body, response and outbound
//! interfaces:
//!
//! - `POST /echo` answers with the request's method and body;
//! - `/outbound?<url>` sends a GET to `<url>` and answers with what came back
//!   (or the error the SDK reports);
//! - `/kv` opens the default key-value store (Spin's
//!   `fermyon:spin/key-value@2.0.0`) and answers with what happened;
//! - anything else answers with the path, and echoes the `spin-path-info`
//!   header back as `x-path-info`.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    match req.path() {
        "/echo" => {
            let method = match req.method() {
                Method::Post => "POST",
                Method::Put => "PUT",
                _ => "other",
            };
            let mut body = format!("{method} ").into_bytes();
            body.extend_from_slice(req.body());
            Ok(Response::new(200, body))
        }
        "/outbound" => {
            let url = req.query().to_owned();
            let sent: Result<Response, _> = spin_sdk::http::send(Request::get(url)).await;
            Ok(match sent {
                Ok(reply) => Response::new(
                    200,
                    format!(
                        "{} {}",
                        reply.status(),
                        String::from_utf8_lossy(reply.body())
                    ),
                ),
                Err(error) => Response::new(502, format!("send failed: {error}")),
            })
        }
        "/kv" => {
            let outcome = match spin_sdk::key_value::Store::open_default() {
                Ok(_) => "opened".to_owned(),
                Err(error) => format!("error: {error:?}"),
            };
            Ok(Response::new(200, format!("{outcome}\n")))
        }
        path => {
            let path_info = req
                .header("spin-path-info")
                .and_then(|value| value.as_str())
                .unwrap_or("")
                .to_owned();
            Ok(Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .header("x-path-info", path_info)
                .body(format!("Hello from spin-sdk 2.2.0: {path}\n"))
                .build())
        }
    }
}
