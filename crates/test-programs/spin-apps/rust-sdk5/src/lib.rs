//! A Spin HTTP component on spin-sdk 5.2.0, whose `#[http_component]`
//! exports `wasi:http/incoming-handler@0.2.0`; Ferry's tests build it with
//! `ferry build` and serve it.
//!
//! - `/kv` opens the default key-value store (Spin's
//!   `fermyon:spin/key-value@2.0.0`) and answers with what happened;
//! - `/kv/<key>`: `GET` answers with the value (404 if absent), `PUT` stores
//!   the body, `DELETE` deletes; `GET /kv-keys` lists the keys;
//!   `/kv-open?<label>` opens another store and reports the outcome;
//! - `/wasi-kv/...` does the same through `wasi:keyvalue@0.2.0-draft2`:
//!   `POST /wasi-kv/incr/<key>` increments a counter and answers with it,
//!   `POST /wasi-kv/append/<key>` appends the body with compare-and-swap
//!   (retrying until it lands), `GET /wasi-kv/<key>` reads a value,
//!   `GET /wasi-kv-batch` exercises `batch` and `list-keys`;
//! - `POST /sql` runs the body as a statement on the default SQLite
//!   database (`fermyon:spin/sqlite@2.0.0`) and answers with the columns and
//!   rows; `/sql-values` round-trips every value type through parameters with
//!   `spin:sqlite@3.0.0` (`sqlite3`), reporting `last-insert-rowid` and
//!   `changes`; `/sql-open?<label>` opens another database;
//! - `/llm` asks Spin's LLM interface (`fermyon:spin/llm@2.0.0`, which Ferry
//!   links but does not provide) and answers with what happened;
//! - `/variables?<name>` reads a variable through
//! `fermyon:spin/variables@2.0.0` and answers with its value or the error.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

/// Answers with the request path, and echoes the `spin-path-info` header back
/// as `x-path-info` so a test can see that Spin's headers reach the guest.
#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    if req.path() == "/variables" {
        let answer = match spin_sdk::variables::get(req.query()) {
            Ok(value) => value,
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::new(200, answer));
    }
    if req.path() == "/llm" {
        let outcome = match spin_sdk::llm::infer(spin_sdk::llm::InferencingModel::Llama2Chat, "hi")
        {
            Ok(_) => "inferred".to_owned(),
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::new(200, format!("{outcome}\n")));
    }
    if req.path() == "/sql" {
        let statement = String::from_utf8(req.body().to_vec())?;
        let connection = spin_sdk::sqlite::Connection::open_default()?;
        return Ok(match connection.execute(&statement, &[]) {
            Ok(result) => {
                let rows: Vec<String> = result
                    .rows
                    .iter()
                    .map(|row| format!("{:?}", row.values))
                    .collect();
                Response::new(
                    200,
                    format!("{}: {}", result.columns.join(","), rows.join(" ")),
                )
            }
            Err(error) => Response::new(500, format!("error: {error:?}")),
        });
    }
    if req.path() == "/sql-open" {
        let outcome = match spin_sdk::sqlite::Connection::open(req.query()) {
            Ok(_) => "opened".to_owned(),
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::new(200, outcome));
    }
    if req.path() == "/sql-values" {
        use spin_sdk::sqlite3::{Connection, Value};
        let connection = Connection::open("default")?;
        connection.execute(
            "CREATE TABLE IF NOT EXISTS typed (id INTEGER PRIMARY KEY, i, r, t, b, n)",
            &[],
        )?;
        let values = [
            Value::Integer(i64::MIN),
            Value::Real(-0.5),
            Value::Text("naïve ✓".into()),
            Value::Blob(vec![0, 1, 254, 255]),
            Value::Null,
        ];
        connection.execute(
            "INSERT INTO typed (i, r, t, b, n) VALUES (?, ?, ?, ?, ?)",
            &values,
        )?;
        let (id, changes) = (connection.last_insert_rowid(), connection.changes());
        let back = connection.execute(
            "SELECT i, r, t, b, n FROM typed WHERE id = ?",
            &[Value::Integer(id)],
        )?;
        // The bindings' values have Debug but not PartialEq.
        let same =
            back.rows.len() == 1 && format!("{:?}", back.rows[0].values) == format!("{values:?}");
        return Ok(Response::new(
            200,
            format!("row {id}, {changes} changed, round trip equal: {same}"),
        ));
    }
    if req.path() == "/kv" {
        let outcome = match Store::open_default() {
            Ok(_) => "opened".to_owned(),
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::new(200, format!("{outcome}\n")));
    }
    if req.path() == "/kv-open" {
        let outcome = match Store::open(req.query()) {
            Ok(_) => "opened".to_owned(),
            Err(error) => format!("error: {error:?}"),
        };
        return Ok(Response::new(200, outcome));
    }
    if req.path() == "/kv-keys" {
        let keys = Store::open_default()?.get_keys()?;
        return Ok(Response::new(200, keys.join(",")));
    }
    if req.path().starts_with("/wasi-kv") {
        return wasi_key_value(&req);
    }
    if let Some(key) = req.path().strip_prefix("/kv/") {
        let store = Store::open_default()?;
        return Ok(match req.method() {
            Method::Get => match store.get(key)? {
                Some(value) => Response::new(200, value),
                None => Response::new(404, "absent"),
            },
            Method::Put => {
                store.set(key, req.body())?;
                Response::new(200, "stored")
            }
            Method::Delete => {
                store.delete(key)?;
                Response::new(200, "deleted")
            }
            _ => Response::new(405, "method not allowed"),
        });
    }
    let path_info = req
        .header("spin-path-info")
        .and_then(|value| value.as_str())
        .unwrap_or("")
        .to_owned();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("x-path-info", path_info)
        .body(format!("Hello from spin-sdk 5.2.0: {}\n", req.path()))
        .build())
}

/// The `/wasi-kv` routes, on `wasi:keyvalue@0.2.0-draft2`.
fn wasi_key_value(req: &Request) -> anyhow::Result<Response> {
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let bucket = store::open("default")?;
    if let Some(key) = req.path().strip_prefix("/wasi-kv/incr/") {
        let value = atomics::increment(&bucket, key, 1)?;
        return Ok(Response::new(200, value.to_string()));
    }
    if let Some(key) = req.path().strip_prefix("/wasi-kv/append/") {
        let mut cas = atomics::Cas::new(&bucket, key)?;
        loop {
            let mut value = cas.current()?.unwrap_or_default();
            value.extend_from_slice(req.body());
            match atomics::swap(cas, &value) {
                Ok(()) => return Ok(Response::new(200, value)),
                Err(atomics::CasError::CasFailed(retry)) => cas = retry,
                Err(atomics::CasError::StoreError(e)) => return Err(e.into()),
            }
        }
    }
    if req.path() == "/wasi-kv-batch" {
        batch::set_many(
            &bucket,
            &[("x".into(), b"1".to_vec()), ("y".into(), b"2".to_vec())],
        )?;
        let got = batch::get_many(&bucket, &["x".into(), "y".into(), "z".into()])?;
        batch::delete_many(&bucket, &["x".into()])?;
        let listed = bucket.list_keys(None)?;
        let got: Vec<String> = got
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or("-".into())
                )
            })
            .collect();
        return Ok(Response::new(
            200,
            format!(
                "{}; keys {}; more {}",
                got.join(","),
                listed.keys.join(","),
                listed.cursor.is_some()
            ),
        ));
    }
    let key = req.path().trim_start_matches("/wasi-kv/");
    Ok(match bucket.get(key)? {
        Some(value) => Response::new(200, value),
        None => Response::new(404, "absent"),
    })
}
