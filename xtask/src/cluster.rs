//! The cluster part of `cargo xtask bench` (`--only cluster`): three
//! nats-server processes (JetStream, every write synced) on loopback, and
//!
//! - three `ferry serve --cluster` nodes: [`DEPLOYS`] deploys alternating
//!   two versions of one app, each through the next node with `--wait`,
//!   timed from the client's start to every node serving it;
//! - the key-value guest of the `state` part (`rust-sdk5`) served by
//!   `ferry up` twice at once, its `default` store on embedded SQLite and on
//!   NATS: a `get` and a durable `set` through the guest on each, wrk runs
//!   alternating.

use std::time::Duration;

use anyhow::ensure;

use crate::bench::{Options, Series, Setup, Target, alternate, named};
use crate::host::{start_with, write_app, write_manifest};
use crate::process;

/// Deploys timed.
pub const DEPLOYS: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Each `ferry deploy --wait`, client start to every node serving.
    pub deploys: Vec<Duration>,
    /// Each deploy's answer (the deploying node serving) to the last node
    /// serving, as the client printed it.
    pub spread: Vec<Duration>,
    pub sqlite_get: Series,
    pub nats_get: Series,
    pub sqlite_set: Series,
    pub nats_set: Series,
    /// Node a's hello app, quiet.
    pub quiet: Series,
    /// The same while another app is deployed through node b back to back
    /// (every node converging on each).
    pub converging: Series,
    /// Deploys made during each converging run.
    pub deploys_during: Vec<usize>,
}

pub fn run(setup: &Setup, options: &Options) -> anyhow::Result<Cluster> {
    let nats = ferry_store::testing::NatsCluster::start(3);
    let mut result = Cluster {
        sqlite_get: named("`GET /kv/a`, embedded SQLite"),
        nats_get: named("`GET /kv/a`, NATS JetStream (R3)"),
        sqlite_set: named("`PUT /kv/k<n>`, embedded SQLite"),
        nats_set: named("`PUT /kv/k<n>`, NATS JetStream (R3)"),
        quiet: named("node a, quiet"),
        converging: named("node a, while every node converges on deploys through node b"),
        ..Cluster::default()
    };
    deploys(setup, options, &nats, &mut result)?;
    key_value(setup, options, &nats, &mut result)?;
    Ok(result)
}

fn deploys(
    setup: &Setup,
    options: &Options,
    nats: &ferry_store::testing::NatsCluster,
    result: &mut Cluster,
) -> anyhow::Result<()> {
    eprintln!("  three nodes, {DEPLOYS} deploys with --wait");
    let urls = nats.urls();
    let nodes = ["a", "b", "c"]
        .iter()
        .map(|name| {
            start_with(
                setup,
                &format!("cluster-{name}"),
                None,
                &["--cluster", &urls, "--node-name", name],
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every node listed (its first heartbeat sent) before the first
    // `--wait`, which waits for the nodes it can see.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let output = std::process::Command::new(&setup.ferry)
            .args([
                "nodes",
                "--json",
                "--host",
                &nodes[0].client.admin,
                "--token-file",
            ])
            .arg(&nodes[0].client.token_file)
            .output()?;
        let listed = String::from_utf8_lossy(&output.stdout)
            .matches("\"heartbeat_at\"")
            .count();
        if listed == nodes.len() {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "`ferry nodes` listed {listed} of {} nodes after 60 s",
            nodes.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each deploy goes through its node's own admin token.
    let guest = std::fs::read(ferry_test_programs::HTTP_GUEST)?;
    let app = setup.work.join("run").join("cluster-app");
    write_app(&app, "swap", "/swap", &guest, "one")?;
    nodes[0].client.deploy_with(&app, None, &["--wait"])?;
    for i in 0..DEPLOYS {
        let greeting = if i % 2 == 0 { "two" } else { "one" };
        write_manifest(&app, "swap", "/swap", greeting)?;
        let node = &nodes[i % 3];
        let (deployed, stdout) = node.client.deploy_with(&app, None, &["--wait"])?;
        let nodes_serving = stdout
            .lines()
            .filter(|l| l.contains("serving version"))
            .count();
        ensure!(nodes_serving == 3, "not every node served it:\n{stdout}");
        let spread = stdout
            .lines()
            .filter(|l| l.contains("serving version"))
            // `  node `b`: serving version 7 after 38.5 ms`
            .filter_map(|l| l.rsplit_once(" after "))
            .filter_map(|(_, after)| {
                crate::bench::parse_printed_duration(&format!(" in {after}")).ok()
            })
            .max()
            .unwrap_or_default();
        result.deploys.push(deployed.wall);
        result.spread.push(spread);
        for node in &nodes {
            let reply = process::get(node.apps, "/swap/")?;
            ensure!(
                reply.body == format!("hello from {greeting}\n").as_bytes(),
                "a node answered {:?} after deploy --wait",
                String::from_utf8_lossy(&reply.body)
            );
        }
    }

    eprintln!("  node a's throughput, quiet and while every node converges");
    let hello = std::fs::read(&setup.hello)?;
    let loaded = setup.work.join("run").join("cluster-loaded");
    write_app(&loaded, "loaded", "/loaded", &hello, "loaded")?;
    nodes[0].client.deploy_with(&loaded, None, &["--wait"])?;
    let load = setup.load(setup.client_cpus.as_deref(), options);
    let url = format!("http://{}/loaded/", nodes[0].apps);
    for _ in 0..options.rounds {
        result.quiet.runs.push(crate::wrk::run(&url, None, &load)?);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (through_b, app) = (&nodes[1].client, &app);
        let (run, deploys) = std::thread::scope(|scope| {
            let deployer = scope.spawn(|| {
                let mut made = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let greeting = if made % 2 == 0 { "one" } else { "two" };
                    write_manifest(app, "swap", "/swap", greeting)?;
                    through_b.deploy_with(app, None, &["--wait"])?;
                    made += 1;
                }
                anyhow::Ok(made)
            });
            let run = crate::wrk::run(&url, None, &load);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let deploys = deployer.join().expect("the deployer panicked");
            (run, deploys)
        });
        result.converging.runs.push(run?);
        result.deploys_during.push(deploys?);
    }
    Ok(())
}

fn key_value(
    setup: &Setup,
    options: &Options,
    nats: &ferry_store::testing::NatsCluster,
    result: &mut Cluster,
) -> anyhow::Result<()> {
    eprintln!("  key-value through a guest: embedded SQLite against NATS");
    let app = setup.root.join("crates/test-programs/spin-apps/rust-sdk5");
    crate::state::build_app(setup, &app)?;
    let run = setup.work.join("run");
    let config = run.join("nats-runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"nats\"\nurl = \"{}\"\n",
            nats.urls()
        ),
    )?;
    let state = |name: &str| {
        let dir = run.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map(|()| dir)
    };
    let sqlite = crate::state::start_with(setup, "kv-sqlite", &app, &state("kv-sqlite")?, &[])?;
    let on_nats = crate::state::start_with(
        setup,
        "kv-nats",
        &app,
        &state("kv-nats")?,
        &["--runtime-config-file", config.to_str().unwrap_or_default()],
    )?;
    for server in [&sqlite, &on_nats] {
        let stored = process::request(server.addr, "PUT", "/kv/a", b"hello")?;
        ensure!(stored.status == 200, "PUT /kv/a answered {}", stored.status);
    }
    let script = run.join("cluster-put.lua");
    std::fs::write(&script, crate::state::put_script())?;
    let load = setup.load(setup.client_cpus.as_deref(), options);
    let set = |series, server| Target {
        series,
        server,
        path: "/",
        script: Some(&script),
    };
    alternate(
        &mut [
            Target::get(&mut result.sqlite_get, &sqlite, "/kv/a"),
            Target::get(&mut result.nats_get, &on_nats, "/kv/a"),
            set(&mut result.sqlite_set, &sqlite),
            set(&mut result.nats_set, &on_nats),
        ],
        &load,
        options.rounds,
    )?;
    let written = process::get(
        on_nats.addr,
        &format!("/kv/k{}", crate::state::SET_KEYS - 1),
    )?;
    ensure!(written.status == 200, "the NATS store kept no PUT");
    Ok(())
}
