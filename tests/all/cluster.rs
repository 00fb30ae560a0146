//! A cluster of Ferry nodes runs on NATS JetStream (issue 22). What every
//! cluster test stands on comes first: a JetStream cluster of three
//! servers on loopback, formed, with each write synced to disk before it
//! is acknowledged — the setting without which an acknowledged deploy or
//! write could be lost on a crash.

use crate::support::*;

#[test]
fn a_jetstream_cluster_of_three_forms_and_syncs_every_write() {
    let cluster = NatsCluster::start(3);
    let mut leaders = Vec::new();
    for node in &cluster.nodes {
        let jsz = node
            .jetstream()
            .unwrap_or_else(|| panic!("{} does not answer /jsz", node.name));
        assert_eq!(
            jsz["config"]["sync_always"], true,
            "{}: writes not synced before they are acknowledged: {jsz}",
            node.name
        );
        assert_eq!(
            jsz["meta_cluster"]["cluster_size"], 3,
            "{}: {jsz}",
            node.name
        );
        leaders.push(jsz["meta_cluster"]["leader"].as_str().unwrap().to_owned());
    }
    // One meta leader, the same for all, and one of the three.
    assert!(leaders.windows(2).all(|w| w[0] == w[1]), "{leaders:?}");
    assert!(
        cluster.nodes.iter().any(|n| n.name == leaders[0]),
        "{leaders:?}"
    );
    assert_eq!(cluster.urls().split(',').count(), 3);
}

/// Three `ferry serve` nodes joined to `nats` (named a, b, c), sharing one
/// admin token as a cluster's operator gives them.
fn nodes(nats: &NatsCluster, states: &[tempfile::TempDir; 3]) -> Vec<Host> {
    ["a", "b", "c"]
        .iter()
        .zip(states)
        .map(|(name, state)| node(nats, state, name, &[]))
        .collect()
}

/// The node `name` on `state` (started again on it after a kill), with
/// `args` added.
fn node(nats: &NatsCluster, state: &tempfile::TempDir, name: &str, args: &[&str]) -> Host {
    let token_file = state.path().join("admin-token");
    if !token_file.exists() {
        std::fs::write(&token_file, "cluster-token-0123456789abcdef\n").unwrap();
    }
    let urls = nats.urls();
    let mut all = vec!["--cluster", &urls, "--node-name", name];
    all.extend_from_slice(args);
    Host::start(state.path(), &all)
}

/// Waits until every node is ready and `ferry nodes` lists them all (each
/// has sent its first heartbeat): what `deploy --wait` waits for.
async fn until_joined(nodes: &[Host]) {
    for node in nodes {
        node.until_ready().await;
    }
    eventually("every node to be listed by `ferry nodes`", || async {
        let listed = tokio::task::block_in_place(|| nodes[0].client(&["nodes", "--json"]));
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
        let count = listed["nodes"].as_array().map_or(0, Vec::len);
        if count == nodes.len() {
            Ok(())
        } else {
            Err(listed)
        }
    })
    .await
}

/// Waits until `node` answers `/` with `body` (or, with `None`, answers 404).
async fn until_serving(node: &Host, body: Option<&str>) {
    let what = match body {
        Some(body) => format!("{} to answer {body:?}", node.url),
        None => format!("{} to answer 404", node.url),
    };
    eventually(&what, || async {
        let reply = node.get("/").await;
        let seen = match body {
            Some(body) => reply.status == 200 && reply.text() == body,
            None => reply.status == 404,
        };
        if seen {
            Ok(())
        } else {
            // On failure, the node's own account of why (its last lines).
            let logs = node.logs();
            let tail: Vec<String> = logs.lines().rev().take(40).map(str::to_owned).collect();
            Err((reply.status, reply.text(), tail))
        }
    })
    .await
}

/// A deploy, a rollback and a delete, each made through a different node,
/// reach every node; `ferry apps` on each agrees on the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_to_one_node_is_served_by_every_node() {
    let nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes = nodes(&nats, &states);
    until_joined(&nodes).await;
    let one = versioned_app("hello", "one", "/");
    let two = versioned_app("hello", "two", "/");
    tokio::task::block_in_place(|| nodes[0].deploy(one.path(), &[]));
    for node in &nodes {
        until_serving(node, Some("hello from one\n")).await;
    }
    // --wait: every node's outcome, once each serves it.
    let waited = tokio::task::block_in_place(|| nodes[1].deploy(two.path(), &["--wait"]));
    for name in ["a", "b", "c"] {
        assert!(
            waited.contains(&format!("node `{name}`: serving version 2 after")),
            "{waited}"
        );
    }
    for node in &nodes {
        until_serving(node, Some("hello from two\n")).await;
    }
    let listed = tokio::task::block_in_place(|| nodes[2].client(&["nodes", "--json"]));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["cluster"], true, "{listed:#}");
    let names: Vec<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"], "{listed:#}");
    for node in listed["nodes"].as_array().unwrap() {
        assert_eq!(node["behind"], serde_json::json!([]), "{listed:#}");
        assert_eq!(node["apps"][0]["version"], 2, "{listed:#}");
    }
    // Node c converged on b's decision, and says so in its metrics.
    let scrape = nodes[2]
        .call("GET", "/metrics", Some(&nodes[2].token()), Vec::new())
        .await;
    let scrape = crate::metrics::Scrape::parse(&scrape.text());
    assert_eq!(scrape.value("ferry_cluster_connected", &[]), 1.0);
    assert_eq!(
        scrape.value("ferry_app_serving_version", &[("app", "hello")]),
        2.0
    );
    assert_eq!(
        scrape.value(
            "ferry_cluster_converges_total",
            &[("app", "hello"), ("result", "ok")]
        ),
        2.0
    );
    // The dashboard of any node shows the cluster's nodes, in a real browser.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let checked = tokio::task::block_in_place(|| {
        std::process::Command::new("node")
            .arg(root.join("tests/dashboard/nodes.mjs"))
            .env("ADMIN_URL", &nodes[1].admin)
            .env("TOKEN", nodes[1].token())
            .env("NODES", "a,b,c")
            .env("APP", "hello")
            .env("VERSION", "2")
            .env("SHOTS", &shots)
            .output()
            .unwrap()
    });
    assert!(
        checked.status.success(),
        "the dashboard's nodes check failed:\n{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    let table = tokio::task::block_in_place(|| nodes[0].client(&["nodes"]));
    let table = text(&table.stdout);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(table.contains("hello@2"), "{table}");
    for node in &nodes {
        assert_eq!(
            tokio::task::block_in_place(|| node.version("hello")),
            Some(2),
            "{}",
            node.logs()
        );
    }
    let rolled_back = tokio::task::block_in_place(|| nodes[2].client(&["rollback", "hello"]));
    assert!(
        rolled_back.status.success(),
        "{}",
        text(&rolled_back.stderr)
    );
    for node in &nodes {
        until_serving(node, Some("hello from one\n")).await;
    }
    // Every node lists both versions, version 1 serving.
    let shown =
        tokio::task::block_in_place(|| nodes[1].client(&["app", "show", "hello", "--json"]));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let versions: Vec<(u64, bool)> = shown["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["current"] == true))
        .collect();
    assert_eq!(versions, [(1, true), (2, false)], "{shown:#}");
    let deleted = tokio::task::block_in_place(|| nodes[0].client(&["delete", "hello"]));
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    for node in &nodes {
        until_serving(node, None).await;
        assert_eq!(
            tokio::task::block_in_place(|| node.apps())["apps"],
            serde_json::json!([])
        );
    }
}

/// With every NATS server gone, every node serves on (one restarted
/// meanwhile from its own copy), and a deploy is refused at once with a
/// 503 saying why; once NATS is back, the next deploy reaches every node —
/// one killed with `kill -9` during it included, once restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_serves_on_and_catches_up() {
    let mut nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let mut nodes = nodes(&nats, &states);
    for node in &nodes {
        node.until_ready().await;
    }
    let one = versioned_app("hello", "one", "/");
    tokio::task::block_in_place(|| nodes[0].deploy(one.path(), &[]));
    for node in &nodes {
        until_serving(node, Some("hello from one\n")).await;
    }
    for server in &mut nats.nodes {
        server.kill();
    }
    for node in &nodes {
        until_serving(node, Some("hello from one\n")).await;
    }
    // Started while the cluster is out of reach: serves its own copy.
    nodes.pop().unwrap().kill_9();
    nodes.push(node(&nats, &states[2], "c", &[]));
    nodes[2].until_ready().await;
    until_serving(&nodes[2], Some("hello from one\n")).await;
    let two = versioned_app("hello", "two", "/");
    let started = std::time::Instant::now();
    let refused =
        tokio::task::block_in_place(|| nodes[1].client(&["deploy", two.path().to_str().unwrap()]));
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("503") && stderr.contains("the cluster is unreachable"),
        "{stderr}"
    );
    eprintln!(
        "a deploy cut off from the cluster was refused in {:?}",
        started.elapsed()
    );
    for node in &nodes {
        until_serving(node, Some("hello from one\n")).await;
    }
    for server in &mut nats.nodes {
        server.start();
    }
    nats.wait_formed();
    tokio::task::block_in_place(|| nodes[1].deploy(two.path(), &[]));
    for node in &nodes {
        until_serving(node, Some("hello from two\n")).await;
    }
    // Killed; a deploy while it is down; restarted: it serves that deploy.
    nodes.remove(0).kill_9();
    let three = versioned_app("hello", "three", "/");
    tokio::task::block_in_place(|| nodes[0].deploy(three.path(), &[]));
    nodes.insert(0, node(&nats, &states[0], "a", &[]));
    for node in &nodes {
        until_serving(node, Some("hello from three\n")).await;
    }
}

/// A version one node cannot activate (its engine is too small for the
/// memory the version asks) is served by the others; that node keeps
/// serving the version before, says why, and `deploy --wait` reports it
/// and fails. The next version it can run, it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_cannot_run_a_version_keeps_the_one_before() {
    let nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes = vec![
        node(&nats, &states[0], "a", &[]),
        node(&nats, &states[1], "b", &[]),
        node(&nats, &states[2], "c", &["--max-memory", "64MiB"]),
    ];
    until_joined(&nodes).await;
    let app = versioned_app("hello", "one", "/");
    tokio::task::block_in_place(|| nodes[0].deploy(app.path(), &["--wait"]));
    write_manifest(&app, "hello", "two", "/");
    app.write("runtime-config.toml", "[limits]\nmax_memory = \"100MiB\"\n");
    let waited = tokio::task::block_in_place(|| {
        nodes[0].client(&["deploy", app.path().to_str().unwrap(), "--wait"])
    });
    let stdout = text(&waited.stdout);
    assert!(!waited.status.success(), "{stdout}");
    assert!(
        text(&waited.stderr).contains("1 of 3 nodes cannot serve version 2 of `hello`"),
        "{}",
        text(&waited.stderr)
    );
    assert!(stdout.contains("node `a`: serving version 2"), "{stdout}");
    assert!(stdout.contains("node `b`: serving version 2"), "{stdout}");
    assert!(
        stdout.contains("node `c`: cannot serve version 2:") && stdout.contains("max_memory"),
        "{stdout}"
    );
    until_serving(&nodes[1], Some("hello from two\n")).await;
    until_serving(&nodes[2], Some("hello from one\n")).await;
    let apps = tokio::task::block_in_place(|| nodes[2].apps());
    assert_eq!(apps["apps"][0]["version"], 1, "{apps:#}");
    assert_eq!(apps["apps"][0]["status"], "serving", "{apps:#}");
    assert!(
        apps["apps"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot serve version 2 on this node")),
        "{apps:#}"
    );
    std::fs::remove_file(app.path().join("runtime-config.toml")).unwrap();
    write_manifest(&app, "hello", "three", "/");
    tokio::task::block_in_place(|| nodes[1].deploy(app.path(), &["--wait"]));
    for node in &nodes {
        until_serving(node, Some("hello from three\n")).await;
    }
}

/// A Spin SDK app keeping a counter in its `default` key-value store,
/// served by three nodes: the store lives on NATS, so the cluster has one
/// counter. 1,000 increments from 8 clients spread over the nodes count
/// 1,000; what one node writes, another reads. Its SQLite database is
/// refused until marked node-local.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_has_one_key_value_store_per_app() {
    let built = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&built).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let app = TestApp::new("");
    std::fs::copy(built.join("spin.toml"), app.path().join("spin.toml")).unwrap();
    let wasm = "target/wasm32-wasip2/release/rust_sdk5.wasm";
    std::fs::create_dir_all(app.path().join(wasm).parent().unwrap()).unwrap();
    std::fs::copy(built.join(wasm), app.path().join(wasm)).unwrap();
    let nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes = nodes(&nats, &states);
    until_joined(&nodes).await;
    let path = app.path().to_str().unwrap();
    let deploy = ["deploy", path, "--variable", "api_token=t", "--wait"];
    let refused = tokio::task::block_in_place(|| nodes[0].client(&deploy));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr)
            .contains("uses the SQLite database `default`, which a cluster does not replicate"),
        "{}",
        text(&refused.stderr)
    );
    app.write(
        "runtime-config.toml",
        "[sqlite_database.default]\ntype = \"spin\"\nnode_local = true\n",
    );
    let deployed = tokio::task::block_in_place(|| nodes[0].client(&deploy));
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let urls = urls.clone();
            tokio::spawn(async move {
                for i in 0..125 {
                    let url = &urls[(client + i) % urls.len()];
                    let reply = send(
                        http::Request::post(format!("{url}/wasi-kv/incr/counter"))
                            .body(Default::default())
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
    let last = send(
        http::Request::post(format!("{}/wasi-kv/incr/counter", nodes[2].url))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(last.text(), "1001");
    let put = send(
        http::Request::put(format!("{}/kv/shared", nodes[0].url))
            .body(bytes::Bytes::from("written through a").into())
            .unwrap(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let read = nodes[2].get("/wasi-kv/shared").await;
    assert_eq!(read.text(), "written through a");
    // Deleted with its data: deployed again under its name, it starts
    // empty, at a version number never given before.
    let deleted = tokio::task::block_in_place(|| nodes[1].client(&["delete", "rust-sdk5"]));
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    let deployed = tokio::task::block_in_place(|| nodes[1].client(&deploy));
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    assert!(
        text(&deployed.stdout).contains("Deployed `rust-sdk5` version 3"),
        "{}",
        text(&deployed.stdout)
    );
    for node in &nodes {
        assert_eq!(node.get("/wasi-kv/shared").await.text(), "absent");
    }
    let first = send(
        http::Request::post(format!("{}/wasi-kv/incr/counter", nodes[0].url))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(first.text(), "1");
}

/// 30 deploys alternating two versions, each through the next node and
/// waited for on every node, while a client per node sends requests
/// without a pause: not one request fails, and every body is exactly one
/// version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploys_under_load_on_every_node_fail_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes = nodes(&nats, &states);
    until_joined(&nodes).await;
    let one = versioned_app("swap", "one", "/");
    let two = versioned_app("swap", "two", "/");
    tokio::task::block_in_place(|| nodes[0].deploy(one.path(), &["--wait"]));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (stop, served, url) = (stop.clone(), served.clone(), node.url.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(&format!("{url}/")).await;
                    assert_eq!(reply.status, 200, "{url}: {}", reply.text());
                    let body = reply.text();
                    assert!(
                        body == "hello from one\n" || body == "hello from two\n",
                        "{url}: a body from neither version: {body:?}"
                    );
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut took = Vec::new();
    for i in 0..30 {
        let (app, expected) = if i % 2 == 0 {
            (&two, "two")
        } else {
            (&one, "one")
        };
        let started = std::time::Instant::now();
        tokio::task::block_in_place(|| nodes[i % 3].deploy(app.path(), &["--wait"]));

        took.push(started.elapsed());
        for node in &nodes {
            assert_eq!(
                node.get("/").await.text(),
                format!("hello from {expected}\n")
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .await
            .expect("a client saw a failed or mixed response");
    }
    assert!(
        served.load(Ordering::Relaxed) >= 30,
        "the clients ran throughout"
    );
    // Every node lets go of the versions the cluster no longer keeps (10,
    // --keep-versions; one more where a node activated the newest before
    // the deploying node pruned).
    for state in &states {
        let kept = std::fs::read_dir(state.path().join("apps/swap/versions"))
            .unwrap()
            .count();
        assert!(
            kept <= 11,
            "{} keeps {kept} versions",
            state.path().display()
        );
    }
    took.sort();
    eprintln!(
        "deploy --wait to three nodes: p50 {:?}, max {:?} over {} deploys",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
}

/// What one operation of a fault test came to, as a Jepsen history logs
/// it: acknowledged, refused, or unknown (no answer: it may have happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// The server leading the stream whose name starts with `prefix`, by the
/// servers' own monitoring.
fn stream_leader(nats: &NatsCluster, prefix: &str) -> Option<String> {
    nats.nodes.iter().filter(|n| n.running()).find_map(|node| {
        let jsz = node.monitoring("/jsz?accounts=true&streams=true")?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_owned))
    })
}

/// `kill -9` of the server leading the counter's bucket while 4 clients
/// increment through every node and deploys go on: afterwards every
/// acknowledged increment is counted, and no more than those plus the ones
/// whose outcome was unknown; the cluster agrees on the last acknowledged
/// deploy (or a later one whose answer was lost), and every node serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn killing_the_jetstream_leader_loses_no_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let built = spin_app("rust-sdk5");
    let output = ferry().arg("build").arg(&built).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let counter = TestApp::new("");
    std::fs::copy(built.join("spin.toml"), counter.path().join("spin.toml")).unwrap();
    let wasm = "target/wasm32-wasip2/release/rust_sdk5.wasm";
    std::fs::create_dir_all(counter.path().join(wasm).parent().unwrap()).unwrap();
    std::fs::copy(built.join(wasm), counter.path().join(wasm)).unwrap();
    counter.write(
        "runtime-config.toml",
        "[sqlite_database.default]\ntype = \"spin\"\nnode_local = true\n",
    );
    let mut nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes = nodes(&nats, &states);
    until_joined(&nodes).await;
    let path = counter.path().to_str().unwrap();
    let deployed = tokio::task::block_in_place(|| {
        nodes[0].client(&["deploy", path, "--variable", "api_token=t", "--wait"])
    });
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    // The counter's bucket exists once it has been written.
    let first = send(
        http::Request::post(format!("{}/wasi-kv/incr/n", nodes[0].url))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(first.text(), "1");
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (stop, history, urls) = (stop.clone(), history.clone(), urls.clone());
            tokio::spawn(async move {
                let http = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<http_body_util::Full<bytes::Bytes>>();
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let request = http::Request::post(format!("{}/wasi-kv/incr/n", urls[i % 3]))
                        .body(Default::default())
                        .unwrap();
                    // A request left without an answer is an unknown.
                    let outcome = match tokio::time::timeout(
                        std::time::Duration::from_secs(60),
                        http.request(request),
                    )
                    .await
                    {
                        Ok(Ok(response)) if response.status() == 200 => Outcome::Ok,
                        _ => Outcome::Unknown,
                    };
                    history.lock().unwrap().push(outcome);
                }
            })
        })
        .collect();
    // Deploys, through each node in turn, logged the same way.
    let deploys = {
        let stop = stop.clone();
        // The counter app itself, its greeting alternating: a deploy
        // under the increments' load.
        let commands: Vec<Vec<String>> = (0..30)
            .map(|i| {
                let word = if i % 2 == 0 { "Two" } else { "One" };
                ["deploy", path, "--variable", "api_token=t", "--variable"]
                    .iter()
                    .map(|a| (*a).to_owned())
                    .chain([format!("greeting_word={word}")])
                    .collect()
            })
            .collect();
        let hosts: Vec<(String, std::path::PathBuf)> = nodes
            .iter()
            .map(|n| (n.admin.clone(), n.token_file()))
            .collect();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for (i, args) in commands.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (admin, token) = &hosts[i % 3];
                let output = ferry()
                    .args(args)
                    .arg("--host")
                    .arg(admin)
                    .arg("--token-file")
                    .arg(token)
                    .output()
                    .unwrap();
                let stdout = text(&output.stdout);
                let version = stdout
                    .split_whitespace()
                    .skip_while(|w| *w != "version")
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok());
                let stderr = text(&output.stderr);
                let outcome = match (output.status.success(), version) {
                    (true, Some(_)) => Outcome::Ok,
                    // Refused before anything was written.
                    _ if stderr.contains("409") => Outcome::Fail,
                    _ => Outcome::Unknown,
                };
                log.push((outcome, version, i % 2 == 0));
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            log
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let leader = stream_leader(&nats, "KV_ferry_kv_9_rust-sdk5_")
        .expect("the counter's bucket has a leader");
    let killed = nats.nodes.iter().position(|n| n.name == leader).unwrap();
    nats.nodes[killed].kill();
    eprintln!("killed {leader}, the counter's stream leader");
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    nats.nodes[killed].start();
    tokio::task::block_in_place(|| nats.wait_formed());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let deploys = tokio::task::block_in_place(|| deploys.join().unwrap());
    let history = history.lock().unwrap().clone();
    let ok = history.iter().filter(|o| **o == Outcome::Ok).count() as i64;
    let unknown = history.iter().filter(|o| **o == Outcome::Unknown).count() as i64;
    // The first increment counted too; reading is one more increment.
    let read = eventually("the counter to answer after healing", || async {
        let reply = send(
            http::Request::post(format!("{}/wasi-kv/incr/n", nodes[1].url))
                .body(Default::default())
                .unwrap(),
        )
        .await;
        if reply.status == 200 {
            Ok(reply.text().parse::<i64>().unwrap())
        } else {
            Err(reply)
        }
    })
    .await;
    let counted = read - 2;
    eprintln!("increments: {ok} acknowledged, {unknown} unknown; counted {counted}");
    assert!(ok > 0, "some increments were acknowledged");
    assert!(
        counted >= ok && counted <= ok + unknown,
        "counted {counted}, with {ok} acknowledged and {unknown} unknown"
    );
    // Deploys: the last acknowledged one (or a later unknown one) serves
    // everywhere.
    let last_ok = deploys
        .iter()
        .rposition(|(o, _, _)| *o == Outcome::Ok)
        .expect("some deploys were acknowledged");
    let acked = deploys[last_ok].1.unwrap();
    eprintln!(
        "deploys: {:?}",
        deploys.iter().map(|(o, v, _)| (*o, *v)).collect::<Vec<_>>()
    );
    let agreed = eventually("every node to serve the same version", || async {
        let versions: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| tokio::task::block_in_place(|| n.version("rust-sdk5")))
            .collect();
        match versions[0] {
            Some(v) if versions.iter().all(|x| *x == Some(v)) => Ok(v),
            _ => Err(versions),
        }
    })
    .await;
    let later_unknown = deploys[last_ok + 1..]
        .iter()
        .any(|(o, _, _)| *o == Outcome::Unknown);
    assert!(
        agreed == acked || (agreed > acked && later_unknown),
        "the cluster serves version {agreed}; the last acknowledged deploy made {acked}"
    );
    if agreed == acked {
        let expected = if deploys[last_ok].2 { "Two" } else { "One" };
        for node in &nodes {
            let reply = node.get("/variables?greeting").await;
            assert_eq!(reply.text(), format!("{expected}, variables"));
        }
    }
}

/// The README's cluster walkthrough, `scripts/cluster-demo`, runs as
/// written: every node answers, a node killed and restarted serves the
/// deploy it missed.
#[test]
fn the_cluster_demo_runs() {
    let output = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-demo"),
    )
    .env("FERRY", env!("CARGO_BIN_EXE_ferry"))
    .env("FERRY_CACHE_DIR", cache_dir())
    // As `ferry()` does: this test run's cargo settings are not the
    // example's build's.
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET")
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for n in 1..=3 {
        assert!(
            stdout.contains(&format!("node {n} answers: Hello from Rust on Ferry!")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("node b answers for again.test: Hello from Rust on Ferry!"),
        "{stdout}"
    );
}

/// A network of its own for a partition test: one network namespace per
/// node, each with a veth into a bridge in this namespace (which the test
/// reaches every node through), cut by `iptables` inside the namespaces.
/// Removed when dropped.
struct Network {
    tag: String,
    subnet: u32,
    size: usize,
}

/// Runs `program args`, which must succeed.
fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        text(&output.stderr)
    );
}

impl Network {
    fn new(size: usize) -> Self {
        let pid = std::process::id();
        let network = Self {
            tag: format!("fy{}", pid % 100_000),
            subnet: 20 + pid % 200,
            size,
        };
        let bridge = network.tag.clone();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &bridge])
            .output();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        let gateway = format!("{}/24", network.ip(254));
        run("ip", &["addr", "add", &gateway, "dev", &bridge]);
        run("ip", &["link", "set", &bridge, "up"]);
        for n in 1..=size {
            let (ns, veth) = (network.namespace(n), format!("{}v{n}", network.tag));
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &ns])
                .output();
            run("ip", &["netns", "add", &ns]);
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            run("ip", &["link", "set", &veth, "master", &bridge, "up"]);
            let address = format!("{}/24", network.ip(n));
            run(
                "ip",
                &[
                    "netns", "exec", &ns, "ip", "addr", "add", &address, "dev", "eth0",
                ],
            );
            run(
                "ip",
                &["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"],
            );
            run(
                "ip",
                &["netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
            );
        }
        network
    }

    fn namespace(&self, n: usize) -> String {
        format!("{}n{n}", self.tag)
    }

    fn ip(&self, n: usize) -> String {
        format!("10.{}.0.{n}", self.subnet)
    }

    /// Node `n` and the others no longer hear each other (the test still
    /// reaches every node).
    fn cut_off(&self, n: usize) {
        for other in (1..=self.size).filter(|o| *o != n) {
            for (inside, from) in [(n, other), (other, n)] {
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &self.namespace(inside),
                        "iptables",
                        "-A",
                        "INPUT",
                        "-s",
                        &self.ip(from),
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
    }

    fn heal(&self) {
        for n in 1..=self.size {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.namespace(n),
                    "iptables",
                    "-F",
                    "INPUT",
                ],
            );
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for n in 1..=self.size {
            // The pair goes with either end.
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &format!("{}v{n}", self.tag)])
                .output();
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.namespace(n)])
                .output();
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.tag])
            .output();
    }
}

/// A nats-server in each namespace, clustered with the others; killed
/// when dropped.
struct NamespacedNats(Vec<std::process::Child>);

impl NamespacedNats {
    fn start(network: &Network, dir: &std::path::Path) -> Self {
        let routes: Vec<String> = (1..=network.size)
            .map(|n| format!("nats-route://{}:6222", network.ip(n)))
            .collect();
        let children = (1..=network.size)
            .map(|n| {
                let ip = network.ip(n);
                let config = dir.join(format!("n{n}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: n{n}\nlisten: {ip}:4222\nhttp: {ip}:8222\n\
                         jetstream {{ store_dir: {:?}, sync_interval: always }}\n\
                         cluster {{ name: ferry-partition, listen: {ip}:6222, routes: [{}] }}\n",
                        dir.join(format!("n{n}")),
                        routes.join(", ")
                    ),
                )
                .unwrap();
                std::process::Command::new("ip")
                    .args(["netns", "exec", &network.namespace(n)])
                    .arg(ferry_store::testing::nats_server_binary())
                    .arg("--config")
                    .arg(&config)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        Self(children)
    }
}

impl Drop for NamespacedNats {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a server's monitoring endpoint at `ip` answers at `path`.
fn monitoring(ip: &str, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect((ip, 8222)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
}

/// A partition: each node and its NATS server in a network namespace of
/// their own, and the one leading the apps' bucket cut off from the other
/// two. The cut-off node keeps serving and refuses writes (503); the
/// majority elects a new leader and takes a deploy; healed, all three
/// agree on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_minority_serves_on_and_the_majority_decides() {
    let network = Network::new(3);
    let dir = tempfile::tempdir().unwrap();
    let _nats = NamespacedNats::start(&network, dir.path());
    eventually_blocking("the namespaced NATS cluster to be healthy", || {
        let healthy: Vec<bool> = (1..=3)
            .map(|n| {
                monitoring(&network.ip(n), "/healthz").is_some_and(|h| h["status"] == "ok")
                    && monitoring(&network.ip(n), "/jsz")
                        .is_some_and(|j| j["meta_cluster"]["cluster_size"] == 3)
            })
            .collect();
        if healthy.iter().all(|h| *h) {
            Ok(())
        } else {
            Err(healthy)
        }
    });
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes: Vec<Host> = (1..=3)
        .map(|n| {
            let state = &states[n - 1];
            std::fs::write(
                state.path().join("admin-token"),
                "cluster-token-0123456789abcdef\n",
            )
            .unwrap();
            let cluster = format!("nats://{}:4222", network.ip(n));
            let name = ["a", "b", "c"][n - 1];
            Host::spawn(
                ferry_in(&network.namespace(n)),
                &network.ip(n),
                state.path(),
                &[
                    "--cluster",
                    &cluster,
                    "--node-name",
                    name,
                    "--replicas",
                    "3",
                ],
            )
        })
        .collect();
    until_joined(&nodes).await;
    let app = versioned_app("hello", "one", "/");
    tokio::task::block_in_place(|| nodes[0].deploy(app.path(), &["--wait"]));
    // The server leading the apps' bucket, and the node beside it.
    let leader = (1..=3)
        .find_map(|n| {
            let jsz = monitoring(&network.ip(n), "/jsz?accounts=true&streams=true")?;
            jsz["account_details"]
                .as_array()?
                .iter()
                .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
                .find(|s| s["name"] == "KV_ferry_apps")
                .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_owned))
        })
        .expect("the apps' bucket has a leader");
    let cut: usize = leader.trim_start_matches('n').parse().unwrap();
    let (minority, majority) = (&nodes[cut - 1], &nodes[cut % 3]);
    eprintln!("cutting off n{cut}, the apps' bucket's leader");
    network.cut_off(cut);

    // The majority elects and takes a deploy (retried while it elects).
    write_manifest(&app, "hello", "two", "/");
    let path = app.path().to_str().unwrap().to_owned();
    eventually_blocking("the majority to take a deploy", || {
        let output = majority.client(&["deploy", &path]);
        if output.status.success() {
            Ok(())
        } else {
            Err(text(&output.stderr))
        }
    });
    for node in nodes.iter().filter(|n| !std::ptr::eq(*n, minority)) {
        until_serving(node, Some("hello from two\n")).await;
    }
    // The minority serves what it had, and refuses a write.
    until_serving(minority, Some("hello from one\n")).await;
    write_manifest(&app, "hello", "three", "/");
    let refused = tokio::task::block_in_place(|| minority.client(&["deploy", &path]));
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "the minority took a deploy");
    assert!(stderr.contains("503"), "{stderr}");
    assert_eq!(minority.get("/").await.text(), "hello from one\n");

    // Healed: all three agree on what the majority decided.
    network.heal();
    for node in &nodes {
        until_serving(node, Some("hello from two\n")).await;
    }
    for node in &nodes {
        assert_eq!(
            tokio::task::block_in_place(|| node.version("hello")),
            Some(2)
        );
    }
}

/// An app's Redis and cron triggers run on one node of a cluster at a time
/// (the holder of the app's lease in NATS): each message and tick runs
/// once, not once per node. When that node dies, another takes the lease
/// once it lapses and runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_at_a_time_runs_an_apps_redis_and_cron_triggers() {
    use crate::triggers::{events_app, publish};
    let app = events_app();
    let redis = ferry_store::testing::RedisServer::start();
    let mut nats = NatsCluster::start(3);
    let states = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let mut nodes = nodes(&nats, &states);
    until_joined(&nodes).await;
    let address = format!("redis_address={}", redis.url);
    let deploy = [
        "deploy",
        app.to_str().unwrap(),
        "--variable",
        &address,
        "--wait",
    ];
    let deployed = tokio::task::block_in_place(|| nodes[0].client(&deploy));
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));

    let leader = sole_leader(&nodes).await;
    // Each message reaches one subscriber, and runs once.
    let payloads: Vec<String> = (0..20).map(|i| format!("first-{i}")).collect();
    assert_eq!(publish(&redis, "messages", &payloads), 20);
    let other = (leader + 1) % 3;
    eventually("the 20 messages to be seen once each", || async {
        let seen = nodes[other].get("/seen").await.text();
        if seen == "seen 20 dup 0\n" {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    // The cron trigger ticks on the leader only.
    for (i, node) in nodes.iter().enumerate() {
        let scrape = node
            .call("GET", "/metrics", Some(&node.token()), Vec::new())
            .await
            .text();
        let ticked = scrape.lines().any(|l| {
            l.starts_with("ferry_trigger_invocations_total") && l.contains("component=\"tick\"")
        });
        assert_eq!(
            ticked,
            i == leader,
            "node {i} (the leader is {leader}):\n{scrape}"
        );
    }
    assert_eq!(leaders(&nodes), [leader]);

    // The leader dies: once its lease lapses, another node takes it.
    nodes.remove(leader).kill_9();
    let next = sole_leader(&nodes).await;
    let payloads: Vec<String> = (0..5).map(|i| format!("second-{i}")).collect();
    assert_eq!(publish(&redis, "messages", &payloads), 5);
    eventually("the 5 later messages to be seen once each", || async {
        let seen = nodes[next].get("/seen").await.text();
        if seen == "seen 25 dup 0\n" {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;

    // Cut off from the cluster, a node cannot renew its lease: it stops the
    // triggers before the lease could lapse for another node to take.
    for server in &mut nats.nodes {
        server.kill();
    }
    eventually(
        "the cut-off leader to stop its one-node triggers",
        || async {
            let logs = nodes[next].logs();
            match logs.contains("this node no longer runs the app's Redis, MQTT and cron triggers")
            {
                true => Ok(()),
                false => Err(logs
                    .lines()
                    .rev()
                    .take(20)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()),
            }
        },
    )
    .await;
    eventually("no node to be subscribed", || async {
        match publish(&redis, "messages", &["unheard".to_owned()]) {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
}

/// Which of `nodes` said it runs an app's one-node triggers.
fn leaders(nodes: &[Host]) -> Vec<usize> {
    (0..nodes.len())
        .filter(|i| {
            nodes[*i]
                .logs()
                .contains("this node now runs the app's Redis, MQTT and cron triggers")
        })
        .collect()
}

/// Waits until exactly one of `nodes` runs an app's one-node triggers, its
/// Redis subscription made; returns which.
async fn sole_leader(nodes: &[Host]) -> usize {
    eventually("one node to run the app's one-node triggers", || async {
        match leaders(nodes)[..] {
            [one] if nodes[one].logs().contains("subscribed") => Ok(one),
            ref other => Err(other.to_vec()),
        }
    })
    .await
}
