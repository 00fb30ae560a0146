//! A Spin HTTP component on spin-sdk 7.0.0, whose async `#[http_service]`
//! exports `wasi:http/handler@0.3.0`; Ferry's tests build it with
//! `ferry build` and serve it. `/kv` opens the default key-value store
//! (Spin's async `spin:key-value/key-value@3.0.0`) and answers with what
//! happened; `/kv/<key>` reads (`GET`) or writes (`PUT`) a value and
//! `/kv-keys` lists the keys (streamed by the host); `POST /sql` runs the
//! body as a statement on the default SQLite database through
//! `spin:sqlite@3.1.0`'s async functions (rows streamed by the host) and
//! answers with the rows, `last-insert-rowid` and `changes`; `POST
//! /sql-hold?<n>` runs the body `n` times keeping every result unread, says
//! of each whether it came or the error, then drops them and reads one
//! more run whole (how many rows); `/variables?<name>` reads a variable
//! through the async `spin:variables/variables@3.0.0` and answers with its
//! value or the error.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_service;

/// Answers with the request path, and echoes the `spin-path-info` header back
/// as `x-path-info` so a test can see that Spin's headers reach the guest.
#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    if req.uri().path() == "/variables" {
        let name = req.uri().query().unwrap_or_default();
        let answer = match spin_sdk::variables::get(name).await {
            Ok(value) => value,
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::builder().status(200).body(answer)?);
    }
    if let Some(key) = req.uri().path().strip_prefix("/kv/").map(str::to_owned) {
        let store = spin_sdk::key_value::Store::open_default().await?;
        if req.method() == "PUT" {
            use spin_sdk::http::body::IncomingBodyExt as _;
            let body = req.into_body().bytes().await?;
            store.set(&key, &body).await?;
            return Ok(Response::builder().status(200).body("stored".to_owned())?);
        }
        return Ok(match store.get(&key).await? {
            Some(value) => Response::builder()
                .status(200)
                .body(String::from_utf8_lossy(&value).into_owned())?,
            None => Response::builder().status(404).body("absent".to_owned())?,
        });
    }
    if req.uri().path() == "/sql" {
        use spin_sdk::http::body::IncomingBodyExt as _;
        let statement = String::from_utf8(req.into_body().bytes().await?.to_vec())?;
        let connection = spin_sdk::sqlite::Connection::open_default().await?;
        let answer = match connection.execute(&statement, []).await {
            Ok(result) => {
                let columns = result.columns().join(",");
                let rows: Vec<String> = result
                    .collect()
                    .await?
                    .into_iter()
                    .map(|row| format!("{:?}", row.values))
                    .collect();
                format!(
                    "{columns}: {}; rowid {}, {} changed",
                    rows.join(" "),
                    connection.last_insert_rowid().await,
                    connection.changes().await
                )
            }
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::builder().status(200).body(answer)?);
    }
    if req.uri().path() == "/sql-hold" {
        use spin_sdk::http::body::IncomingBodyExt as _;
        let times: usize = req.uri().query().unwrap_or("1").parse()?;
        let statement = String::from_utf8(req.into_body().bytes().await?.to_vec())?;
        let connection = spin_sdk::sqlite::Connection::open_default().await?;
        let mut held = Vec::new();
        let mut said = Vec::new();
        for _ in 0..times {
            match connection.execute(&statement, []).await {
                Ok(result) => {
                    held.push(result);
                    said.push("held".to_owned());
                }
                Err(error) => said.push(format!("error: {error:?}")),
            }
        }
        drop(held);
        let again = match connection.execute(&statement, []).await {
            Ok(result) => format!("{} rows", result.collect().await?.len()),
            Err(error) => format!("error: {error:?}"),
        };
        said.push(format!("then {again}"));
        return Ok(Response::builder().status(200).body(said.join("\n"))?);
    }
    if req.uri().path() == "/kv-keys" {
        let store = spin_sdk::key_value::Store::open_default().await?;
        let keys = store.get_keys().await.collect().await?;
        return Ok(Response::builder().status(200).body(keys.join(","))?);
    }
    if req.uri().path() == "/kv" {
        let outcome = match spin_sdk::key_value::Store::open_default().await {
            Ok(_) => "opened".to_owned(),
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::builder()
            .status(200)
            .body(format!("{outcome}\n"))?);
    }
    let path_info = req
        .headers()
        .get("spin-path-info")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("x-path-info", path_info)
        .body(format!("Hello from spin-sdk 7.0.0: {}\n", req.uri().path()))?;
    Ok(response)
}
