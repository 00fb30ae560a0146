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
        if seen { Ok(()) } else { Err(reply) }
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
    took.sort();
    eprintln!(
        "deploy --wait to three nodes: p50 {:?}, max {:?} over {} deploys",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
}
