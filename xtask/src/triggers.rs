//! The event-trigger part of `cargo xtask bench` (`--only triggers`):
//! messages per second through Ferry's Redis and NATS triggers, against a
//! native Rust subscriber doing the same work, in one run.
//!
//! The work per message, both sides: open the app's `default` key-value
//! store (embedded SQLite, durable writes with group commit), ask whether
//! `seen:<payload>` exists, write it. Ferry runs it in the `on-message`
//! guest of `spin-apps/rust-events` (spin-sdk 5 `#[redis_component]`, a
//! fresh instance per message, up to 256 at once); the native subscriber
//! calls `ferry_store` directly from a task per message, up to 256 at once.
//!
//! - Redis: [`MESSAGES`] messages published in one pipelined burst
//!   (`redis-cli --pipe`) once the subscriber is subscribed; timed from the
//!   burst's start to the last message handled.
//! - NATS JetStream: [`MESSAGES`] messages stored in a stream first (one
//!   server, file storage, every write synced), then consumed by a durable
//!   pull consumer acknowledging each after its work; timed from the
//!   consumer's start to the last message handled.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures_util::StreamExt as _;

use crate::bench::{Options, Setup};
use crate::process;

/// Messages per run.
pub const MESSAGES: usize = 20_000;

/// At most this many messages in hand at once, on both sides (Ferry's
/// default `max_concurrent_requests`).
const CONCURRENCY: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Triggers {
    /// Messages per second, per round.
    pub redis: Vec<f64>,
    pub redis_native: Vec<f64>,
    pub nats: Vec<f64>,
    pub nats_native: Vec<f64>,
}

pub fn run(setup: &Setup, options: &Options) -> anyhow::Result<Triggers> {
    let app = setup
        .root
        .join("crates/test-programs/spin-apps/rust-events");
    crate::state::build_app(setup, &app)?;
    let redis = ferry_store::testing::RedisServer::start();
    let nats = ferry_store::testing::NatsCluster::start(3);
    let nats_url = nats
        .urls()
        .split(',')
        .next()
        .context("no NATS server")?
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut result = Triggers::default();
    for round in 0..options.rounds {
        eprintln!("  round {}: Redis, through Ferry", round + 1);
        result
            .redis
            .push(ferry_redis(setup, &app, &redis.url, round)?);
        eprintln!("  round {}: Redis, native", round + 1);
        result
            .redis_native
            .push(runtime.block_on(native_redis(setup, &redis.url, round))?);
        let stream = format!("BENCH_{round}");
        runtime.block_on(fill_stream(&nats_url, &stream, round))?;
        eprintln!("  round {}: NATS, through Ferry", round + 1);
        result
            .nats
            .push(ferry_nats(setup, &app, &nats_url, &stream, round)?);
        eprintln!("  round {}: NATS, native", round + 1);
        result
            .nats_native
            .push(runtime.block_on(native_nats(setup, &nats_url, &stream, round))?);
    }
    Ok(result)
}

/// A manifest in the work directory serving the app's built components
/// with one event trigger (`trigger`, a TOML table).
fn write_manifest(
    setup: &Setup,
    app: &Path,
    name: &str,
    trigger: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let dir = setup.work.join("run").join(name);
    std::fs::create_dir_all(&dir)?;
    let wasm = |file: &str| app.join("target/wasm32-wasip2/release").join(file);
    std::fs::write(
        dir.join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\n\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"http\"\n\n{trigger}\n\
             [component.http]\nsource = {:?}\nkey_value_stores = [\"default\"]\n\n\
             [component.on-message]\nsource = {:?}\nkey_value_stores = [\"default\"]\n",
            wasm("events_http.wasm"),
            wasm("events_on_message.wasm"),
        ),
    )?;
    Ok(dir)
}

/// `ferry up` of `manifest_dir` on the server CPUs with a state directory
/// of its own, once its log has a line containing `ready`.
fn start_ferry(
    setup: &Setup,
    name: &str,
    manifest_dir: &Path,
    ready: &str,
) -> anyhow::Result<crate::bench::Running> {
    let port = process::free_port()?;
    let state = setup.work.join("run").join(format!("{name}-state"));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let mut command = setup.ferry_command(
        manifest_dir,
        setup.server_cpus.as_deref(),
        port,
        &setup.work.join("cache"),
    );
    command.arg("--state-dir").arg(&state);
    let mut process = process::Process::spawn(name, command, &setup.log(name))?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    process::wait_until_serving(&mut process, addr, "/seen")?;
    let running = crate::bench::Running { process, addr };
    let log = setup.log(name);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::read_to_string(&log).is_ok_and(|text| text.contains(ready)) {
            return Ok(running);
        }
        ensure!(
            Instant::now() < deadline,
            "{name} did not log `{ready}` within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the app's `/seen` says `count` messages were handled; the
/// time that took from `started`.
fn until_seen(
    addr: std::net::SocketAddr,
    count: usize,
    started: Instant,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let reply = process::get(addr, "/seen")?;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if text.starts_with(&format!("seen {count} ")) {
            return Ok(started.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "only `{}` after 10 minutes",
            text.trim()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every message of a round, in RESP for `redis-cli --pipe`.
fn publish_burst(url: &str, channel: &str, round: u32) -> anyhow::Result<()> {
    let mut resp = Vec::new();
    for i in 0..MESSAGES {
        let payload = format!("r{round}-{i}");
        write!(
            resp,
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
            channel.len(),
            payload.len()
        )?;
    }
    let mut cli = Command::new("redis-cli")
        .args(["-u", url, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("redis-cli")?;
    cli.stdin.take().context("stdin")?.write_all(&resp)?;
    ensure!(cli.wait()?.success(), "redis-cli --pipe failed");
    Ok(())
}

fn ferry_redis(setup: &Setup, app: &Path, url: &str, round: u32) -> anyhow::Result<f64> {
    let dir = write_manifest(
        setup,
        app,
        "bench-redis",
        &format!(
            "[[trigger.redis]]\naddress = {url:?}\nchannel = \"bench\"\ncomponent = \"on-message\"\n"
        ),
    )?;
    let ferry = start_ferry(setup, "ferry-redis", &dir, "subscribed")?;
    let started = Instant::now();
    publish_burst(url, "bench", round)?;
    let took = until_seen(ferry.addr, MESSAGES, started)?;
    drop(ferry);
    Ok(MESSAGES as f64 / took.as_secs_f64())
}

/// The native side's store: the same embedded SQLite, opened in process.
fn native_store(setup: &Setup, name: &str) -> anyhow::Result<Arc<dyn ferry_store::KeyValue>> {
    let dir = setup.work.join("run").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let database = ferry_store::SqliteDatabase::open(&dir.join("kv.db"))?;
    Ok(database.store("bench", "default"))
}

/// The guest's work, natively.
async fn handle(store: &dyn ferry_store::KeyValue, payload: &[u8]) -> anyhow::Result<()> {
    let key = format!("seen:{}", String::from_utf8_lossy(payload));
    if !store.exists(&key).await? {
        store.set(key, b"1".to_vec()).await?;
    }
    Ok(())
}

async fn native_redis(setup: &Setup, url: &str, round: u32) -> anyhow::Result<f64> {
    let store = native_store(setup, "native-redis")?;
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("bench").await?;
    let mut messages = pubsub.into_on_message();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let url = url.to_owned();
    let publisher = tokio::task::spawn_blocking(move || publish_burst(&url, "bench", round));
    for _ in 0..MESSAGES {
        let message = messages.next().await.context("the subscription ended")?;
        let permit = slots.clone().acquire_owned().await?;
        let store = store.clone();
        tasks.spawn(async move {
            let _permit = permit;
            handle(&*store, message.get_payload_bytes()).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let took = started.elapsed();
    publisher.await??;
    Ok(MESSAGES as f64 / took.as_secs_f64())
}

/// A stream `name` on `orders.<round>.>`'s subjects holding every message
/// of the round, stored before either side consumes it.
async fn fill_stream(url: &str, name: &str, round: u32) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("bench.{round}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let mut acks = Vec::with_capacity(1000);
    for i in 0..MESSAGES {
        let ack = js
            .publish(format!("bench.{round}.m"), format!("n{round}-{i}").into())
            .await?;
        acks.push(ack);
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

fn ferry_nats(
    setup: &Setup,
    app: &Path,
    url: &str,
    stream: &str,
    round: u32,
) -> anyhow::Result<f64> {
    let dir = write_manifest(
        setup,
        app,
        "bench-nats",
        &format!(
            "[[trigger.nats]]\nurl = {url:?}\nsubject = \"bench.{round}.>\"\nstream = {stream:?}\ncomponent = \"on-message\"\n"
        ),
    )?;
    // Timed from the consumer's start: the messages are already stored.
    let started = Instant::now();
    let ferry = start_ferry(setup, "ferry-nats", &dir, "consuming")?;
    let ready = started.elapsed();
    let took = until_seen(ferry.addr, MESSAGES, started)? - ready;
    drop(ferry);
    Ok(MESSAGES as f64 / took.as_secs_f64())
}

async fn native_nats(setup: &Setup, url: &str, stream: &str, round: u32) -> anyhow::Result<f64> {
    use async_nats::jetstream::consumer;
    let store = native_store(setup, "native-nats")?;
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(stream).await?;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(format!("native_{round}")),
            filter_subject: format!("bench.{round}.>"),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: CONCURRENCY as i64,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..MESSAGES {
        let message = messages
            .next()
            .await
            .context("the consumer ended")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let permit = slots.clone().acquire_owned().await?;
        let store = store.clone();
        tasks.spawn(async move {
            let _permit = permit;
            handle(&*store, &message.payload).await?;
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(MESSAGES as f64 / started.elapsed().as_secs_f64())
}
