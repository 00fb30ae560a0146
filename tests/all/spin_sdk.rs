//! Real Spin SDK apps, unchanged: each is built by `ferry build` from its own
//! `[component.<id>.build]` table, as `spin build` would, then served.
//! Their sources are in `crates/test-programs/spin-apps`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

/// `ferry build` on the app, `ferry check` (which must name what the
/// component exports, and how Ferry adapted it), then `ferry up` and one
/// request. Returns the running app and what `ferry check` printed.
async fn build_and_serve(app: &str, greeting: &str, serves: &str) -> (Ferry, String) {
    let app = spin_app(app);
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(
        output.status.success(),
        "ferry build {} failed:\n{}\n{}",
        app.display(),
        text(&output.stdout),
        text(&output.stderr)
    );
    let output = ferry().arg("check").arg(&app).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains(&format!("serves     {serves}\n")),
        "expected `serves     {serves}` in:\n{stdout}"
    );

    let ferry = Ferry::start_at(&app, &[]);
    // `ferry check` compiled it: this start (adapting included) is a cache
    // hit.
    let started = ferry.stdout.lock().unwrap().join("\n");
    assert!(started.contains("Loaded `"), "{started}");
    let reply = get(&format!("{}/hello/world?x=1", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), format!("{greeting}: /hello/world\n"));
    // Spin's request headers reach the guest through the SDK.
    assert_eq!(reply.header("x-path-info"), Some("/hello/world"));
    (ferry, stdout)
}

/// An interface Ferry links but does not provide (LLM inferencing): it is
/// listed as such, the app loads, and a call answers with the interface's
/// own error, which the app reports.
async fn unsupported_interface_answers_with_its_error(
    (ferry, check): &(Ferry, String),
    interface: &str,
    path: &str,
    error: &str,
) {
    let linked = check
        .lines()
        .skip_while(|l| !l.contains("linked, not supported"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        linked.split(", ").any(|i| i.trim() == interface),
        "{interface} is not listed as linked, not supported:\n{check}"
    );
    let reply = get(&format!("{}{path}", ferry.url)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), format!("error: {error}\n"));
}

/// `fermyon:spin/key-value@2.0.0` is implemented: linked, not listed as
/// unsupported, and a component without `key_value_stores` is denied.
async fn key_value_is_denied_without_a_grant((ferry, check): (Ferry, String)) {
    assert!(
        !check.contains("fermyon:spin/key-value@2.0.0\n"),
        "still listed as linked, not supported:\n{check}"
    );
    let reply = get(&format!("{}/kv", ferry.url)).await;
    assert_eq!(reply.text(), "error: Error::AccessDenied\n");
}

/// `ferry` with a request body.
async fn send_to(ferry: &Ferry, method: &str, path: &str, body: &str) -> Reply {
    send(
        http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", ferry.url))
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn rust_on_spin_sdk_5_exporting_wasi_http_0_2() {
    let (ferry, check) = build_and_serve(
        "rust-sdk5",
        "Hello from spin-sdk 5.2.0",
        "wasi:http/incoming-handler@0.2.0",
    )
    .await;
    // `fermyon:spin/variables@2.0.0`: a default, and a secret from `.env`.
    assert!(
        check.contains("  variables  greeting = \"Hello, variables\", token = (secret)\n"),
        "{check}"
    );
    assert!(!check.contains("s3cr3t"), "a secret was shown:\n{check}");
    assert_eq!(variable_at(&ferry, "greeting").await, "Hello, variables");
    assert_eq!(
        variable_at(&ferry, "token").await,
        "Bearer from-dotenv-s3cr3t"
    );
    // Only the component's own keys, under Spin's name rules.
    for (name, error) in [
        (
            "api_token",
            "error: Error::Undefined(\"the component has no variable `api_token`",
        ),
        ("Greeting", "error: Error::InvalidName("),
    ] {
        let answer = variable_at(&ferry, name).await;
        assert!(answer.starts_with(error), "{name}: {answer}");
    }
    assert!(!ferry.logs().contains("s3cr3t"), "{}", ferry.logs());
    unsupported_interface_answers_with_its_error(
        &(ferry, check),
        "fermyon:spin/llm@2.0.0",
        "/llm",
        "Error::RuntimeError(\"fermyon:spin/llm@2.0.0#infer is not available in Ferry\")",
    )
    .await;

    // Environment over `.env` and defaults; `--variable` over the environment.
    let app = spin_app("rust-sdk5");
    let ferry = Ferry::start_with_env(
        &app,
        &["--variable", "greeting_word=Howdy"],
        &[
            ("SPIN_VARIABLE_GREETING_WORD", "Hi"),
            ("FERRY_VARIABLE_API_TOKEN", "from-env-s3cr3t"),
        ],
    );
    assert_eq!(variable_at(&ferry, "greeting").await, "Howdy, variables");
    assert_eq!(variable_at(&ferry, "token").await, "Bearer from-env-s3cr3t");
}

async fn variable_at(ferry: &Ferry, name: &str) -> String {
    get(&format!("{}/variables?{name}", ferry.url)).await.text()
}

/// Spin 2's Rust template: a core module whose SDK exports the 2023-10-18
/// release candidate of WASI 0.2. Its request and response, bodies both ways
/// and outbound requests all go through the candidate's interfaces.
#[tokio::test]
async fn rust_on_spin_sdk_2_exporting_the_wasi_0_2_candidate() {
    let (ferry, check) = build_and_serve(
        "rust-sdk2",
        "Hello from spin-sdk 2.2.0",
        "wasi:http/incoming-handler@0.2.0-rc-2023-10-18 (componentized from a WASI preview 1 core module)",
    )
    .await;

    // A body larger than one read: the guest reads the candidate's stream
    // until it ends.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let reply = send(
        http::Request::post(format!("{}/echo", ferry.url))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(&reply.body[..5], b"POST ");
    assert!(reply.body[5..] == body[..], "the echoed body differs");

    // Outbound through the candidate's outgoing-handler, to an allowed host
    // and to one the manifest does not allow.
    let upstream = TextServer::start("from upstream");
    let reply = get(&format!(
        "{}/outbound?http://127.0.0.1:{}/x",
        ferry.url, upstream.port
    ))
    .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "200 from upstream")
    );
    let reply = get(&format!(
        "{}/outbound?http://localhost:{}/x",
        ferry.url, upstream.port
    ))
    .await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "send failed: Error::UnexpectedError(\"the destination is not in the component's allowed_outbound_hosts\")"
    );

    key_value_is_denied_without_a_grant((ferry, check)).await;
}

/// As Spin 3.x's templates build it: `cargo build --target wasm32-wasip1`,
/// a core module that Ferry turns into a component.
#[tokio::test]
async fn rust_on_spin_sdk_5_built_as_a_wasip1_core_module() {
    let app = build_and_serve(
        "rust-sdk5/spin.wasip1.toml",
        "Hello from spin-sdk 5.2.0",
        "wasi:http/incoming-handler@0.2.0 (componentized from a WASI preview 1 core module)",
    )
    .await;
    key_value_is_denied_without_a_grant(app).await;
}

/// Spin 4's Rust template: the WASI 0.3 release candidate.
#[tokio::test]
async fn rust_on_spin_sdk_6_exporting_the_wasi_http_0_3_candidate() {
    let (ferry, _) = build_and_serve(
        "rust-sdk6",
        "Hello from spin-sdk 6.0.0",
        "wasi:http/handler@0.3.0 (built for WASI 0.3.0-rc-2026-03-15, served as 0.3.0)",
    )
    .await;
    assert_eq!(variable_at(&ferry, "message").await, "I'm a teapot");
}

/// As spin-rust-sdk's own examples (`examples/variables`) build spin-sdk 6:
/// `cargo build --target wasm32-wasip1`, a core module whose metadata holds
/// WASI 0.3's async types. Componentized, it needs the engine with
/// component-model concurrency, and its release-candidate names renamed.
#[tokio::test]
async fn rust_on_spin_sdk_6_built_as_a_wasip1_core_module() {
    let (ferry, _) = build_and_serve(
        "rust-sdk6/spin.wasip1.toml",
        "Hello from spin-sdk 6.0.0",
        "wasi:http/handler@0.3.0 (componentized from a WASI preview 1 core module built for WASI 0.3.0-rc-2026-03-15, served as 0.3.0)",
    )
    .await;
    assert_eq!(variable_at(&ferry, "message").await, "I'm a teapot");
    assert_eq!(
        variable_at(&ferry, "undeclared").await,
        "error: Error::Undefined(\"the component has no variable `undeclared` (declare it under `[component.<id>.variables]`)\")"
    );
}

#[tokio::test]
async fn rust_on_spin_sdk_7_exporting_wasi_http_0_3() {
    let app = build_and_serve(
        "rust-sdk7",
        "Hello from spin-sdk 7.0.0",
        "wasi:http/handler@0.3.0",
    )
    .await;
    // The async `spin:variables/variables@3.0.0`.
    assert_eq!(variable_at(&app.0, "greeting").await, "Hello, variables");
    let missing = variable_at(&app.0, "missing").await;
    assert!(missing.starts_with("error: Error::Undefined("), "{missing}");
    // The async `spin:key-value@3.0.0`, keys streamed back by the host.
    let (ferry, _) = app;
    assert_eq!(send_to(&ferry, "GET", "/kv", "").await.text(), "opened\n");
    assert_eq!(
        send_to(&ferry, "PUT", "/kv/a", "one").await.text(),
        "stored"
    );
    assert_eq!(
        send_to(&ferry, "PUT", "/kv/b", "two").await.text(),
        "stored"
    );
    assert_eq!(send_to(&ferry, "GET", "/kv/a", "").await.text(), "one");
    assert_eq!(send_to(&ferry, "GET", "/kv/c", "").await.status, 404);
    assert_eq!(send_to(&ferry, "GET", "/kv-keys", "").await.text(), "a,b");
    // The async `spin:sqlite@3.1.0`, rows streamed by the host.
    let sql = |statement: &'static str| send_to(&ferry, "POST", "/sql", statement);
    assert_eq!(
        sql("CREATE TABLE t (n INTEGER, s TEXT)").await.text(),
        ": ; rowid 0, 0 changed"
    );
    assert_eq!(
        sql("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
            .await
            .text(),
        ": ; rowid 2, 2 changed"
    );
    // A query changes neither count, and a connection opened in another
    // request starts from zero: nothing of one request's inserts shows in
    // another's.
    assert_eq!(
        sql("SELECT n, s FROM t ORDER BY n").await.text(),
        "n,s: [Value::Integer(1), Value::Text(\"one\")] [Value::Integer(2), Value::Text(\"two\")]; rowid 0, 0 changed"
    );
    let error = sql("SELECT nope FROM t").await.text();
    assert!(
        error.starts_with("error: Error::Io(\"no such column: nope"),
        "{error}"
    );
    // Results a guest leaves unread are held for it only so far: 20 rows
    // of 1 MB each, five times, unread: the fourth is over the 64 MiB a
    // store may hold unread, and once the guest drops them, a run is read
    // whole again.
    let held = send_to(
        &ferry,
        "POST",
        "/sql-hold?5",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) \
         SELECT x, zeroblob(1000000) FROM c",
    )
    .await
    .text();
    let lines: Vec<&str> = held.lines().collect();
    assert_eq!(lines[..3], ["held"; 3], "{held}");
    for over in &lines[3..5] {
        assert!(
            over.starts_with("error: Error::Io(\"this result (")
                && over.contains("over Ferry's limit of 67108864 bytes held for a guest"),
            "{held}"
        );
    }
    assert_eq!(lines[5..], ["then 20 rows"], "{held}");
}

#[tokio::test]
async fn javascript_on_the_spin_js_sdk() {
    let _ = build_and_serve(
        "js-sdk",
        "Hello from the Spin JS SDK",
        "wasi:http/incoming-handler@0.2.3",
    )
    .await;
}

/// The Python SDK imports every Spin interface, WASI 0.2 and both 0.3
/// versions, whatever the app uses: it must load, and its calls fail as the
/// interfaces' own errors.
#[tokio::test]
async fn python_on_the_spin_python_sdk() {
    let app = build_and_serve(
        "python-sdk",
        "Hello from the Spin Python SDK",
        "wasi:http/handler@0.3.0",
    )
    .await;
    // The SDK's key-value store, `spin:key-value@3.0.0`, on Ferry's store.
    let reply = get(&format!("{}/kv", app.0.url)).await;
    assert_eq!(reply.text(), "written by Python\n");
}

/// spin-sdk 5's key-value store on Ferry's embedded SQLite: values written in
/// one request are read in the next and after a restart; another label than
/// the granted one is denied.
#[tokio::test]
async fn spin_sdk_key_value_store_is_durable_and_granted_per_label() {
    let app = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let ferry = Ferry::start_at(&app, &["--state-dir", state_dir]);

    assert_eq!(send_to(&ferry, "GET", "/kv/a", "").await.status, 404);
    for (key, value) in [("a", "1"), ("b", "two"), ("c", "")] {
        let reply = send_to(&ferry, "PUT", &format!("/kv/{key}"), value).await;
        assert_eq!(reply.text(), "stored");
    }
    assert_eq!(send_to(&ferry, "GET", "/kv/b", "").await.text(), "two");
    assert_eq!(send_to(&ferry, "PUT", "/kv/b", "2").await.text(), "stored");
    assert_eq!(
        send_to(&ferry, "DELETE", "/kv/c", "").await.text(),
        "deleted"
    );
    assert_eq!(send_to(&ferry, "GET", "/kv-keys", "").await.text(), "a,b");
    assert_eq!(
        send_to(&ferry, "GET", "/kv-open?cache", "").await.text(),
        "error: Error::AccessDenied"
    );
    // SIGKILL: no shutdown, no flush. Every answered write is on disk.
    drop(ferry);

    let ferry = Ferry::start_at(&app, &["--state-dir", state_dir]);
    assert_eq!(send_to(&ferry, "GET", "/kv-keys", "").await.text(), "a,b");
    assert_eq!(send_to(&ferry, "GET", "/kv/b", "").await.text(), "2");
}

/// `wasi:keyvalue@0.2.0-draft2` from a real guest (spin-sdk 5's bindings):
/// atomics, compare-and-swap, batch and key listing, on the same stores as
/// Spin's own interface; 1,000 increments from 8 concurrent clients count
/// exactly 1,000.
#[tokio::test]
async fn wasi_keyvalue_on_spin_sdk_5_is_atomic_under_concurrency() {
    let app = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Embedded SQLite, then a real Redis server as the default store, then
    // NATS JetStream.
    wasi_keyvalue_is_atomic(&Ferry::start_at(&app, &[])).await;
    let redis = RedisServer::start();
    let config = tempfile::tempdir().unwrap();
    let config = config.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url
        ),
    )
    .unwrap();
    let config_file = config.to_str().unwrap();
    wasi_keyvalue_is_atomic(&Ferry::start_at(
        &app,
        &["--runtime-config-file", config_file],
    ))
    .await;
    // NATS JetStream, a cluster of three servers.
    let nats = NatsCluster::start(3);
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"nats\"\nurl = \"{}\"\n",
            nats.urls()
        ),
    )
    .unwrap();
    wasi_keyvalue_is_atomic(&Ferry::start_at(
        &app,
        &["--runtime-config-file", config_file],
    ))
    .await;
}

async fn wasi_keyvalue_is_atomic(ferry: &Ferry) {
    assert_eq!(
        send_to(ferry, "POST", "/wasi-kv/incr/n", "").await.text(),
        "1"
    );
    assert_eq!(
        send_to(ferry, "POST", "/wasi-kv/incr/n", "").await.text(),
        "2"
    );
    assert_eq!(
        send_to(ferry, "POST", "/wasi-kv/append/s", "ab")
            .await
            .text(),
        "ab"
    );
    assert_eq!(
        send_to(ferry, "POST", "/wasi-kv/append/s", "cd")
            .await
            .text(),
        "abcd"
    );
    assert_eq!(
        send_to(ferry, "GET", "/wasi-kv-batch", "").await.text(),
        "x=1,y=2,z=-; keys n,s,y; more false"
    );
    // One store behind both interfaces.
    send_to(ferry, "PUT", "/kv/shared", "from spin").await;
    assert_eq!(
        send_to(ferry, "GET", "/wasi-kv/shared", "").await.text(),
        "from spin"
    );

    let url = ferry.url.clone();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..125 {
                    let reply = send(
                        http::Request::post(format!("{url}/wasi-kv/incr/counter"))
                            .body(Full::default())
                            .unwrap(),
                    )
                    .await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        send_to(ferry, "POST", "/wasi-kv/incr/counter", "")
            .await
            .text(),
        "1001"
    );
    // Concurrent compare-and-swap appends all land.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                send(
                    http::Request::post(format!("{url}/wasi-kv/append/log"))
                        .body(Full::new(Bytes::from(i.to_string())))
                        .unwrap(),
                )
                .await
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap().status, 200);
    }
    let mut log: Vec<u8> = send_to(ferry, "GET", "/wasi-kv/log", "")
        .await
        .body
        .to_vec();
    log.sort();
    assert_eq!(log, b"01234567");
}

/// Durability under a crash: clients write over HTTP while ferry is killed
/// with SIGKILL at an arbitrary moment; after a restart, every key whose
/// write was answered 200 is there with its value.
#[tokio::test]
async fn every_acknowledged_write_survives_sigkill() {
    let app = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let ferry = Ferry::start_at(&app, &["--state-dir", state_dir]);

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (url, acknowledged) = (ferry.url.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http();
                for n in 0.. {
                    let key = format!("w{writer}-{n}");
                    let request = http::Request::put(format!("{url}/kv/{key}"))
                        .body(Full::new(Bytes::from(format!("value of {key}"))))
                        .unwrap();
                    match client.request(request).await {
                        Ok(reply) if reply.status() == 200 => {
                            acknowledged.lock().unwrap().push(key)
                        }
                        // Killed: this write was never acknowledged.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // An arbitrary moment, 100–600 ms into the writes.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    tokio::time::sleep(Duration::from_millis(100 + u64::from(nanos % 500))).await;
    drop(ferry); // SIGKILL
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 8,
        "too few writes: {}",
        acknowledged.len()
    );

    let ferry = Ferry::start_at(&app, &["--state-dir", state_dir]);
    let keys = send_to(&ferry, "GET", "/kv-keys", "").await.text();
    let stored: std::collections::HashSet<&str> = keys.split(',').collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|key| !stored.contains(key.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    for key in acknowledged.iter().step_by(37) {
        let value = send_to(&ferry, "GET", &format!("/kv/{key}"), "")
            .await
            .text();
        assert_eq!(value, format!("value of {key}"));
    }
}

/// `ferry up --key-value KEY=VALUE` seeds the default store before serving,
/// as Spin's flag does; a pair without `=` is a usage error.
#[tokio::test]
async fn key_value_flag_seeds_the_default_store() {
    let app = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let seeded = Ferry::start_at(
        &app,
        &[
            "--key-value",
            "greeting=hello=world",
            "--key-value",
            "empty=",
        ],
    );
    assert_eq!(
        send_to(&seeded, "GET", "/kv/greeting", "").await.text(),
        "hello=world"
    );
    assert_eq!(
        send_to(&seeded, "GET", "/kv-keys", "").await.text(),
        "empty,greeting"
    );

    let state = tempfile::tempdir().unwrap();
    let output = ferry()
        .arg("up")
        .arg(&app)
        .args(["--state-dir", state.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--key-value", "novalue"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("`--key-value novalue`: expected KEY=VALUE"));
}

/// spin-sdk 5's SQLite databases on Ferry's embedded SQLite: migrations from
/// `--sqlite` (a file and a statement) run first; queries see them, every
/// value type round-trips through parameters (`spin:sqlite@3.0.0`), a bad
/// statement is the guest's error, data survives a restart, another label is
/// denied, and another app sharing the state directory sees none of it.
#[tokio::test]
async fn spin_sdk_sqlite_databases_with_migrations() {
    let app = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    let state_dir = state_dir.to_str().unwrap();
    let migration = state.path().join("migration.sql");
    std::fs::write(
        &migration,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\nINSERT INTO notes (body) VALUES ('from a migration');\n",
    )
    .unwrap();
    let migration = format!("@{}", migration.display());
    let ferry = Ferry::start_at(
        &app,
        &[
            "--state-dir",
            state_dir,
            "--sqlite",
            &migration,
            "--sqlite",
            "INSERT INTO notes (body) VALUES ('inline')",
        ],
    );
    let select = "SELECT id, body FROM notes ORDER BY id";
    let rows = "id,body: [Value::Integer(1), Value::Text(\"from a migration\")] [Value::Integer(2), Value::Text(\"inline\")]";
    assert_eq!(send_to(&ferry, "POST", "/sql", select).await.text(), rows);
    assert_eq!(
        send_to(&ferry, "GET", "/sql-values", "").await.text(),
        "row 1, 1 changed, round trip equal: true"
    );
    let reply = send_to(&ferry, "POST", "/sql", "SELEC nonsense").await;
    assert_eq!(reply.status, 500);
    assert!(
        reply
            .text()
            .starts_with("error: Error::Io(\"near \\\"SELEC\\\": syntax error"),
        "{}",
        reply.text()
    );
    assert_eq!(
        send_to(&ferry, "GET", "/sql-open?other", "").await.text(),
        "error: Error::AccessDenied"
    );
    drop(ferry);

    let ferry = Ferry::start_at(&app, &["--state-dir", state_dir]);
    assert_eq!(send_to(&ferry, "POST", "/sql", select).await.text(), rows);
    drop(ferry);

    // The same component in an app of another name, on the same state
    // directory: its default database is its own.
    let other = TestApp::new(&format!(
        "{}[component.other]\nsource = {:?}\nsqlite_databases = [\"default\"]\n",
        trigger("/...", "other"),
        app.join("target/wasm32-wasip2/release/rust_sdk5.wasm")
    ));
    let ferry = Ferry::start(&other, &["--state-dir", state_dir]);
    let reply = send_to(&ferry, "POST", "/sql", select).await;
    assert!(
        reply.text().contains("no such table: notes"),
        "{}",
        reply.text()
    );
}
