//! Event triggers: a real Spin app (`spin-apps/rust-events`: an HTTP
//! component, a spin-sdk 5 `#[redis_component]` and a cron component, one
//! key-value store) built by `ferry build`, served by `ferry up` and by a
//! live host, against a real `redis-server` on loopback; the async Redis
//! handlers of spin-sdk 7 (`rust-sdk7-redis`) and the Python SDK
//! (`python-redis`). What each
//! component did is read back over HTTP, as a user would check it.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ferry_store::testing::{NatsCluster, RedisServer};

use crate::metrics::{metrics_url, read_metrics};
use crate::support::*;

/// The app, built once for every test that serves it.
pub(crate) fn events_app() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let app = spin_app("rust-events");
            for manifest in ["spin.toml", "spin.mqtt.toml"] {
                let output = ferry()
                    .arg("build")
                    .arg(app.join(manifest))
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "ferry build {manifest} failed:\n{}\n{}",
                    text(&output.stdout),
                    text(&output.stderr)
                );
            }
            app
        })
        .clone()
}

/// Publishes each of `payloads` on `channel`, in order, with one
/// `redis-cli`; returns how many subscribers each reached, summed.
pub(crate) fn publish(redis: &RedisServer, channel: &str, payloads: &[String]) -> u64 {
    let mut cli = Command::new("redis-cli")
        .args(["-u", &redis.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli (part of Debian's redis-server)");
    {
        let mut stdin = cli.stdin.take().unwrap();
        for payload in payloads {
            writeln!(stdin, "PUBLISH {channel} {payload}").unwrap();
        }
    }
    let output = cli.wait_with_output().unwrap();
    assert!(output.status.success());
    text(&output.stdout)
        .lines()
        .map(|l| l.trim().parse::<u64>().expect("PUBLISH answers a count"))
        .sum()
}

/// `seen N dup M` from the app.
async fn seen(url: &str) -> (u64, u64) {
    let reply = get(&format!("{url}/seen")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let words: Vec<&str> = text.split_whitespace().collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

async fn wait_until_subscribed(ferry: &Ferry, mark: LogMark) {
    ferry
        .wait_for_log(mark, &["ferry::trigger", "subscribed", "messages"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redis_message_runs_once_and_failures_are_logged_with_their_message() {
    let app = events_app();
    let redis = RedisServer::start();
    let ferry = Ferry::start_at(
        &app,
        &[
            "--variable",
            &format!("redis_address={}", redis.url),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    wait_until_subscribed(&ferry, LogMark::default()).await;
    let mark = ferry.log_mark();
    // Every tenth message makes the guest trap, and every tenth of the
    // others return the interface's error value.
    let payloads: Vec<String> = (1..=1000)
        .map(|i| match i {
            i if i % 10 == 0 => format!("trap:{i}"),
            i if i % 10 == 5 => format!("fail:{i}"),
            i => format!("m{i}"),
        })
        .collect();
    assert_eq!(publish(&redis, "messages", &payloads), 1000);
    let (handled, dup) = eventually("the 800 good messages to be recorded", || async {
        match seen(&ferry.url).await {
            (800, dup) => Ok((800, dup)),
            other => Err(other),
        }
    })
    .await;
    assert_eq!((handled, dup), (800, 0), "each message once, none twice");

    // Each failure is logged with its message id and what went wrong; the
    // trigger went on after every one.
    let failures = eventually("a log line for each of the 200 failures", || async {
        let lines: Vec<String> = ferry
            .logs_since(mark)
            .into_iter()
            .filter(|l| l.contains("invocation failed"))
            .collect();
        if lines.len() == 200 {
            Ok(lines)
        } else {
            Err(lines.len())
        }
    })
    .await;
    let traps = failures
        .iter()
        .filter(|l| l.contains("kind=\"trap\""))
        .count();
    let errors = failures
        .iter()
        .filter(|l| l.contains("kind=\"error_code\"") && l.contains("`error`"))
        .count();
    assert_eq!((traps, errors), (100, 100), "{failures:#?}");
    assert!(
        failures
            .iter()
            .all(|l| l.contains("message_id=\"on-message-redis-trigger-")
                && l.contains("app=\"rust-events\"")),
        "{failures:#?}"
    );
    // The guest's own panic message reaches the log with the same id.
    let trap = failures
        .iter()
        .find(|l| l.contains("kind=\"trap\""))
        .unwrap();
    let id = trap
        .split("message_id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(
        ferry
            .logs_since(mark)
            .iter()
            .any(|l| l.contains("trapping on message") && l.contains(id)),
        "no guest output for {id}"
    );

    // Counted as requests are: invocations, failures by kind, latency. An
    // invocation is counted when its guest has ended, just after what it
    // wrote is visible: read once all 1000 are counted.
    let labels = [
        ("app", "rust-events"),
        ("component", "on-message"),
        ("trigger", "on-message-redis-trigger"),
    ];
    let url = metrics_url(&ferry);
    let scrape = eventually("the metrics to count 1000 invocations", || async {
        let scrape = read_metrics(&url).await;
        let counted = scrape.value("ferry_trigger_invocations_total", &labels);
        if counted == 1000.0 {
            Ok(scrape)
        } else {
            Err(counted)
        }
    })
    .await;
    assert_eq!(
        scrape.value("ferry_trigger_duration_seconds_count", &labels),
        1000.0
    );
    let kind = |kind| {
        let mut labels = labels.to_vec();
        labels.push(("kind", kind));
        scrape.value("ferry_trigger_failures_total", &labels)
    };
    assert_eq!((kind("trap"), kind("error_code")), (100.0, 100.0));
    assert_eq!(scrape.value("ferry_trigger_connected", &labels), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_reconnected_and_http_serves_throughout() {
    let app = events_app();
    let mut redis = RedisServer::start();
    let ferry = Ferry::start_at(
        &app,
        &["--variable", &format!("redis_address={}", redis.url)],
    );
    wait_until_subscribed(&ferry, LogMark::default()).await;
    assert_eq!(publish(&redis, "messages", &["before".into()]), 1);
    eventually("the first message", || async {
        match seen(&ferry.url).await {
            (1, 0) => Ok(()),
            other => Err(other),
        }
    })
    .await;

    let mark = ferry.log_mark();
    let url = redis.url.clone();
    redis.stop();
    ferry
        .wait_for_log(
            mark,
            &["ferry::trigger", "cannot subscribe", "trying again"],
        )
        .await;
    // The app's HTTP side does not notice.
    assert_eq!(seen(&ferry.url).await, (1, 0));

    let mark = ferry.log_mark();
    let redis = RedisServer::start_at(&url);
    wait_until_subscribed(&ferry, mark).await;
    assert_eq!(publish(&redis, "messages", &["after".into()]), 1);
    eventually("the message sent after the restart", || async {
        match seen(&ferry.url).await {
            (2, 0) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// The host reads a subscription only so far ahead of its component: a
/// component slower than its channel leaves what it has not reached in
/// the server's buffer for the subscriber (beyond what the kernel's socket
/// buffers take), not in the host's memory; and then handles every
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_component_leaves_its_backlog_on_the_server() {
    let app = events_app();
    let redis = RedisServer::start();
    // So that the server keeps all of it (by default it would cut a
    // subscriber 32 MiB behind off, as the module docs say).
    let config = Command::new("redis-cli")
        .args([
            "-u",
            &redis.url,
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 0 0 0",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&config.stdout).trim(), "OK");
    // One message at a time, each up to 2 MiB: Ferry reads at most 8 MiB
    // ahead of it.
    let dir = tempfile::tempdir().unwrap();
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[component.on-message.limits]\nmax_concurrent_requests = 1\nmax_request_body = \"2 MiB\"\n",
    )
    .unwrap();
    let ferry = Ferry::start_at(
        &app,
        &[
            "--variable",
            &format!("redis_address={}", redis.url),
            "--runtime-config-file",
            runtime_config.to_str().unwrap(),
        ],
    );
    wait_until_subscribed(&ferry, LogMark::default()).await;
    let mark = ferry.log_mark();
    // Messages of 1 MiB, each taking its component 100 ms: as many as
    // Ferry reads ahead (8 MiB), the kernel's socket buffers between the
    // server and Ferry may hold (their largest sizes, autotuned), and 24
    // MiB more, which only the server can then hold.
    let largest = |file: &str| -> usize {
        let text = std::fs::read_to_string(file).unwrap();
        text.split_whitespace().last().unwrap().parse().unwrap()
    };
    let buffers =
        (largest("/proc/sys/net/ipv4/tcp_rmem") + largest("/proc/sys/net/ipv4/tcp_wmem")) >> 20;
    let count = 8 + 2 + buffers + 24;
    let padding = "p".repeat(1 << 20);
    let messages: Vec<String> = (0..count).map(|i| format!("slow:{i}:{padding}")).collect();
    assert_eq!(publish(&redis, "messages", &messages), count as u64);
    let url = redis.url.clone();
    let held = eventually_blocking("the server to hold 16 MiB for the subscriber", || {
        let clients = Command::new("redis-cli")
            .args(["-u", &url, "CLIENT", "LIST"])
            .output()
            .unwrap();
        let listed = text(&clients.stdout);
        let held: u64 = listed
            .lines()
            .filter(|l| l.contains(" sub=1 "))
            .filter_map(|l| {
                l.split(" omem=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        if held >= 16 << 20 {
            Ok(held)
        } else {
            Err(listed)
        }
    });
    assert!(held <= (count as u64) << 20, "{held}");
    eventually("all the messages to be handled", || async {
        match seen(&ferry.url).await {
            (n, 0) if n == count as u64 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let again: Vec<String> = ferry
        .logs_since(mark)
        .into_iter()
        .filter(|l| l.contains("subscribing again"))
        .collect();
    assert!(again.is_empty(), "{again:#?}");

    // A message over the component's `max_request_body` is dropped with a
    // log line; one so large that its size shows it is not even read: the
    // subscription is dropped as its header arrives, and made again.
    let mark = ferry.log_mark();
    let over = format!("big:{}", "p".repeat((2 << 20) + (10 << 10)));
    assert_eq!(publish(&redis, "messages", &[over]), 1);
    ferry
        .wait_for_log(
            mark,
            &[
                "ferry::trigger",
                "over its components' max_request_body",
                "dropped",
            ],
        )
        .await;
    let mark = ferry.log_mark();
    let huge = format!("huge:{}", "p".repeat(3 << 20));
    assert_eq!(publish(&redis, "messages", &[huge]), 1);
    ferry
        .wait_for_log(
            mark,
            &[
                "ferry::trigger",
                "sent a reply over Ferry's limit of 2162688 bytes",
                "subscribing again",
            ],
        )
        .await;
    wait_until_subscribed(&ferry, mark).await;
    assert_eq!(publish(&redis, "messages", &["after".into()]), 1);
    eventually("the message after them", || async {
        match seen(&ferry.url).await {
            (n, 0) if n == count as u64 + 1 => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_component_runs_every_second_on_time() {
    let app = events_app();
    // No Redis: the Redis trigger keeps trying while cron and HTTP run.
    let ferry = Ferry::start_at(&app, &["--variable", "redis_address=redis://127.0.0.1:9"]);
    let ticks = eventually("ten cron ticks", || async {
        let reply = get(&format!("{}/ticks", ferry.url)).await;
        let ticks: Vec<(u64, u64)> = reply
            .text()
            .lines()
            .map(|l| {
                let (scheduled, ran) = l.split_once(' ').unwrap();
                (scheduled.parse().unwrap(), ran.parse().unwrap())
            })
            .collect();
        if ticks.len() >= 10 {
            Ok(ticks)
        } else {
            Err(ticks)
        }
    })
    .await;
    // Each scheduled second at most once, in order, each run within a
    // second of its schedule (more on a slow machine: `scaled`).
    for pair in ticks.windows(2) {
        assert!(
            pair[1].0 > pair[0].0,
            "a tick twice or out of order: {ticks:?}"
        );
    }
    let tolerance = scaled(std::time::Duration::from_secs(1)).as_millis() as u64;
    for (scheduled, ran) in &ticks {
        let late = ran.abs_diff(scheduled * 1000);
        assert!(
            late <= tolerance,
            "tick {scheduled} ran at {ran}: {late} ms off"
        );
    }
    // Every second, not every other: a tick may be skipped only where the
    // process stalled past it (a loaded machine), never as the schedule.
    let span = ticks.last().unwrap().0 - ticks[0].0 + 1;
    assert!(
        (span as f64) < 2.0 * ticks.len() as f64 * crate::support::time_scale(),
        "{} ticks over {span} s: {ticks:?}",
        ticks.len()
    );
}

#[test]
fn check_prints_each_trigger_and_refuses_a_bad_schedule() {
    let app = events_app();
    let output = ferry().arg("check").arg(&app).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for expected in [
        "trigger    redis `on-message-redis-trigger`: channel `{{ redis_channel }}` on {{ redis_address }}",
        "serves     fermyon:spin/inbound-redis",
        "trigger    cron `tick-cron-trigger`: schedule `* * * * * *` (UTC)",
        "serves     handle-cron-event",
        "OK: 3 component(s), 1 route(s), 2 event trigger(s)",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }

    // A five-field schedule (no seconds), as the cron plugin refuses it.
    let copy = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(app.join("spin.toml"))
        .unwrap()
        .replace("\"* * * * * *\"", "\"* * * * *\"")
        .replace(
            "source = \"target/",
            &format!("source = \"{}/target/", app.display()),
        );
    std::fs::write(copy.path().join("spin.toml"), manifest).unwrap();
    let output = ferry().arg("check").arg(copy.path()).output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invalid cron expression `* * * * *`") && stderr.contains("seconds first"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_host_swaps_and_stops_triggers_with_their_app() {
    let app = events_app();
    let redis = RedisServer::start();
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let address = format!("redis_address={}", redis.url);
    host.deploy(&app, &["--name", "events", "--variable", &address]);
    eventually("the host to subscribe", || async {
        host.logs().contains("channels=\"messages\"").then_some(())
    })
    .await;
    let url = host.addr();
    let url = format!("http://{url}");
    assert_eq!(publish(&redis, "messages", &["one".into()]), 1);
    eventually("the message on version 1", || async {
        match seen(&url).await {
            (1, 0) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    // The dashboard shows the trigger, connected, with its invocation, in
    // a real browser.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("trigger-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let checked = tokio::task::block_in_place(|| {
        Command::new("node")
            .arg(root.join("tests/dashboard/triggers.mjs"))
            .env("ADMIN_URL", &host.admin)
            .env("TOKEN", host.token())
            .env("APP", "events")
            .env("TRIGGER", "on-message-redis-trigger")
            .env("INVOCATIONS", "1")
            .env("FAILURES", "0")
            .env("SHOTS", &shots)
            .output()
            .unwrap()
    });
    assert!(
        checked.status.success(),
        "the dashboard's trigger check failed:\n{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );

    // Version 2 listens on another channel: once it serves, the first
    // channel has no subscriber left, and the new one has exactly one.
    host.deploy(
        &app,
        &[
            "--name",
            "events",
            "--variable",
            &address,
            "--variable",
            "redis_channel=other",
        ],
    );
    let subscribers = |channel: &'static str| {
        let url = redis.url.clone();
        move || {
            let output = Command::new("redis-cli")
                .args(["-u", &url, "PUBSUB", "NUMSUB", channel])
                .output()
                .unwrap();
            text(&output.stdout)
                .lines()
                .nth(1)
                .map(|n| n.trim().parse::<u64>().unwrap())
        }
    };
    eventually_blocking(
        "`messages` to lose its subscriber and `other` to gain one",
        || match (subscribers("messages")(), subscribers("other")()) {
            (Some(0), Some(1)) => Ok(()),
            other => Err(other),
        },
    );
    assert_eq!(publish(&redis, "messages", &["lost".into()]), 0);
    assert_eq!(publish(&redis, "other", &["two".into()]), 1);
    eventually("the message on version 2", || async {
        match seen(&url).await {
            (2, 0) => Ok(()),
            other => Err(other),
        }
    })
    .await;

    // Deleted: nothing is subscribed any more, and its triggers' series
    // are gone from the metrics (the trigger kept across the two versions
    // had them until then).
    let trigger_series = || async {
        let reply = host
            .call("GET", "/metrics", Some(&host.token()), Vec::new())
            .await;
        assert_eq!(reply.status, 200);
        reply
            .text()
            .lines()
            .filter(|l| l.starts_with("ferry_trigger_") && l.contains("app=\"events\""))
            .count()
    };
    assert!(
        trigger_series().await > 0,
        "the metrics have the app's triggers"
    );
    let output = host.client(&["delete", "events"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    eventually_blocking("the deleted app to unsubscribe", || {
        match subscribers("other")() {
            Some(0) => Ok(()),
            other => Err(other),
        }
    });
    eventually("the deleted app's trigger series to go", || async {
        match trigger_series().await {
            0 => Ok(()),
            left => Err(left),
        }
    })
    .await;
}

/// `ferry up` of the NATS variant of the app (`spin.nats.toml`) on
/// `cluster`, with its data in `state`, once its consumer reads.
async fn up_on_nats(cluster: &NatsCluster, state: &std::path::Path) -> Ferry {
    let app = events_app().join("spin.nats.toml");
    let ferry = Ferry::start_at(
        &app,
        &[
            "--variable",
            &format!("nats_url={}", cluster.urls()),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    ferry
        .wait_for_log(
            LogMark::default(),
            &["ferry::trigger", "consuming", "orders.>"],
        )
        .await;
    ferry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_trigger_retries_dead_letters_and_loses_nothing_across_a_restart() {
    use futures_util::StreamExt as _;

    let cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let state = tempfile::tempdir().unwrap();
    let ferry = up_on_nats(&cluster, state.path()).await;
    let servers: Vec<async_nats::ServerAddr> = cluster
        .urls()
        .split(',')
        .map(|u| u.parse().unwrap())
        .collect();
    let client = async_nats::connect(servers).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut dead = client.subscribe("dead.orders").await.unwrap();
    client.flush().await.unwrap();
    let publish = async |subject: &str, payload: String| {
        js.publish(subject.to_owned(), payload.into())
            .await
            .unwrap()
            .await
            .expect("stored by the trigger's stream");
    };
    let mark = ferry.log_mark();
    for i in 1..=20 {
        publish("orders.new", format!("m{i}")).await;
    }
    publish("orders.new", "flaky:1".into()).await;
    publish("orders.eu.new", "fail:1".into()).await;

    // Every good message once; the flaky one on its second try.
    eventually("21 messages handled", || async {
        match seen(&ferry.url).await {
            (21, 0) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    ferry
        .wait_for_log(mark, &["try 1 of 3 failed", "nats-trigger"])
        .await;
    // The failing one: three tries, then the dead-letter subject, with
    // where it came from and why.
    let letter = tokio::time::timeout(scaled(std::time::Duration::from_secs(60)), dead.next())
        .await
        .expect("a dead letter within a minute")
        .unwrap();
    assert_eq!(&letter.payload[..], b"fail:1");
    let headers = letter.headers.expect("headers");
    assert_eq!(
        headers.get("Ferry-Subject").unwrap().as_str(),
        "orders.eu.new"
    );
    assert_eq!(headers.get("Ferry-Deliveries").unwrap().as_str(), "3");
    assert!(
        headers
            .get("Ferry-Error")
            .unwrap()
            .as_str()
            .contains("`error`"),
        "{headers:?}"
    );
    let tries = ferry
        .logs_since(mark)
        .iter()
        .filter(|l| l.contains("invocation failed") && l.contains("kind=\"error_code\""))
        .count();
    // Two for the failing message's first tries, one for the flaky one,
    // and one for the last try, given up.
    assert_eq!(tries, 4, "{:#?}", ferry.logs_since(mark));
    ferry
        .wait_for_log(
            mark,
            &["given up after 3 tries; published to `dead.orders`"],
        )
        .await;

    // Published while Ferry is down: handled when it is back.
    assert!(ferry.terminate().success());
    for i in 1..=10 {
        publish("orders.new", format!("while-down-{i}")).await;
    }
    let ferry = up_on_nats(&cluster, state.path()).await;
    eventually("the 10 messages sent while Ferry was down", || async {
        match seen(&ferry.url).await {
            (31, 0) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// A `mosquitto` broker (Debian's; `scripts/setup` installs it) on a free
/// loopback port, anonymous, sessions kept in memory while it runs.
struct Mosquitto {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        Self::start_with("")
    }

    /// A broker that takes TLS only, with `ca`'s certificate.
    fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(&format!(
            "certfile {}\nkeyfile {}\n",
            ca.cert.display(),
            ca.key.display()
        ))
    }

    fn start_with(listener: &str) -> Self {
        let port = ferry_store::testing::free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\n{listener}allow_anonymous true\npersistence false\n"
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install mosquitto; scripts/setup does)");
        eventually_blocking("mosquitto to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Publishes `payload` on `topic` at QoS 1 with `mosquitto_pub`.
    fn publish(&self, topic: &str, payload: &str) {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-m", payload])
            .status()
            .expect("mosquitto_pub (Debian's mosquitto-clients)");
        assert!(status.success());
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn mqtt_seen(url: &str) -> Vec<String> {
    let reply = get(&format!("{url}/mqtt")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_run_the_component_with_their_topic_and_qos_1_survives_a_restart() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let up = || {
        Ferry::start_at(
            &events_app().join("spin.mqtt.toml"),
            &[
                "--variable",
                &format!("mqtt_address=mqtt://127.0.0.1:{}", broker.port),
                "--state-dir",
                state.path().to_str().unwrap(),
            ],
        )
    };
    let ferry = up();
    ferry
        .wait_for_log(
            LogMark::default(),
            &["ferry::trigger", "subscribed", "sensors/#"],
        )
        .await;
    let mark = ferry.log_mark();
    broker.publish("sensors/kitchen", "21.5");
    broker.publish("sensors/hall/door", "open");
    broker.publish("elsewhere", "not for us");
    broker.publish("sensors/kitchen", "fail");
    let want = ["sensors/hall/door:open", "sensors/kitchen:21.5"];
    eventually(
        "both sensor messages recorded with their topics",
        || async {
            let seen = mqtt_seen(&ferry.url).await;
            (seen == want).then_some(()).ok_or(seen)
        },
    )
    .await;
    ferry
        .wait_for_log(mark, &["invocation failed", "failing on sensors/kitchen"])
        .await;

    // Published by the app's own HTTP component through Spin's outbound
    // MQTT (QoS 1, answered once the broker acknowledged it), then handled
    // by its MQTT trigger; a broker outside its allowed_outbound_hosts is
    // refused before any connection.
    let url = ferry.url.clone();
    let publish = |path: String| {
        let url = url.clone();
        async move {
            let reply = send(
                http::Request::post(format!("{url}{path}"))
                    .body(bytes::Bytes::from("via-http").into())
                    .unwrap(),
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.text()
        }
    };
    assert_eq!(
        publish("/mqtt/publish/sensors/outbound".into()).await,
        "()\n"
    );
    eventually("the message published through outbound MQTT", || async {
        let seen = mqtt_seen(&ferry.url).await;
        seen.contains(&"sensors/outbound:via-http".to_owned())
            .then_some(())
            .ok_or(seen)
    })
    .await;
    let denied = publish(format!(
        "/mqtt/publish/sensors/x?mqtt://localhost:{}?client_id=x",
        broker.port
    ))
    .await;
    assert!(
        denied.starts_with("error: Error::ConnectionFailed(") && denied.contains("not permitted"),
        "{denied}"
    );

    // QoS 1 with a persistent session: what arrives while Ferry is down is
    // kept by the broker and handled when Ferry is back.
    assert!(ferry.terminate().success());
    broker.publish("sensors/garage", "while-down");
    let ferry = up();
    eventually("the message published while Ferry was down", || async {
        let seen = mqtt_seen(&ferry.url).await;
        seen.contains(&"sensors/garage:while-down".to_owned())
            .then_some(())
            .ok_or(seen)
    })
    .await;
}

/// The MQTT plugin's 0.8 entry point (`spin:mqtt-trigger@3.0.0`, an async
/// `handle-message`): a WASI 0.3 guest, run on the concurrent engine, that
/// awaits a timer inside the call; each message runs it with its topic,
/// and its error value is a failed invocation that the next message
/// survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_mqtt_handler_runs_on_each_message() {
    let broker = Mosquitto::start();
    let app = TestApp::new(&format!(
        "[application.trigger.mqtt]\naddress = \"mqtt://127.0.0.1:{}\"\n\n\
         [[trigger.mqtt]]\ncomponent = \"handler\"\ntopic = \"sensors/+\"\nqos = \"1\"\n\n\
         [component.handler]\nsource = \"handler.wasm\"\n",
        broker.port
    ));
    std::fs::copy(
        ferry_test_programs::MQTT3_GUEST,
        app.path().join("handler.wasm"),
    )
    .unwrap();
    let ferry = Ferry::start(&app, &[]);
    ferry
        .wait_for_log(
            LogMark::default(),
            &["ferry::trigger", "subscribed", "sensors/+"],
        )
        .await;
    let mark = ferry.log_mark();
    broker.publish("sensors/a", "hello");
    broker.publish("sensors/b", "fail");
    broker.publish("sensors/c", "after");
    ferry
        .wait_for_log(mark, &["invocation failed", "failing on sensors/b"])
        .await;
    for line in ["mqtt3 sensors/a hello", "mqtt3 sensors/c after"] {
        ferry.wait_for_log(mark, &[line]).await;
    }
}

/// `mqtts://`: the MQTT trigger and outbound MQTT over TLS to a real
/// mosquitto whose certificate a test CA signed for `localhost`. Trusted
/// through `SSL_CERT_FILE`, the trigger subscribes and the guest publishes
/// over TLS; the certificate is checked for the name the address gives,
/// and without the CA it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_checks_the_brokers_certificate() {
    let ca = TestCa::new(&["localhost"]);
    let broker = Mosquitto::start_tls(&ca);
    let ca_file = ca.ca.to_str().unwrap();
    let address = format!("mqtt_address=mqtts://localhost:{}", broker.port);
    let ferry = Ferry::start_with_env(
        &events_app().join("spin.mqtt.toml"),
        &["--variable", &address],
        &[("SSL_CERT_FILE", ca_file)],
    );
    ferry
        .wait_for_log(
            LogMark::default(),
            &["ferry::trigger", "subscribed", "sensors/#"],
        )
        .await;
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &broker.port.to_string(),
            "--cafile",
            ca_file,
        ])
        .args(["-q", "1", "-t", "sensors/tls", "-m", "sealed"])
        .status()
        .unwrap();
    assert!(status.success());
    let publish = |ferry: &Ferry, address: String| {
        let url = format!("{}/mqtt/publish/sensors/outbound?{address}", ferry.url);
        async move {
            let reply = send(
                http::Request::post(url)
                    .body(bytes::Bytes::from("via-tls").into())
                    .unwrap(),
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.text()
        }
    };
    let port = broker.port;
    assert_eq!(
        publish(&ferry, format!("mqtts://localhost:{port}?client_id=tls")).await,
        "()\n"
    );
    eventually("both messages handled, each with its topic", || async {
        let seen = mqtt_seen(&ferry.url).await;
        (seen == ["sensors/outbound:via-tls", "sensors/tls:sealed"])
            .then_some(())
            .ok_or(seen)
    })
    .await;
    // The certificate names `localhost`, not the address.
    let wrong_name = publish(&ferry, format!("mqtts://127.0.0.1:{port}?client_id=ip")).await;
    assert!(
        wrong_name.starts_with("error: Error::ConnectionFailed(")
            && wrong_name.contains("certificate not valid for name"),
        "{wrong_name}"
    );

    // Not trusted: refused on the certificate, by the trigger and the guest.
    let untrusting = Ferry::start_at(
        &events_app().join("spin.mqtt.toml"),
        &["--variable", &address],
    );
    let refused = publish(&untrusting, format!("mqtts://localhost:{port}?client_id=u")).await;
    assert!(
        refused.starts_with("error: Error::ConnectionFailed(") && refused.contains("UnknownIssuer"),
        "{refused}"
    );
    untrusting
        .wait_for_log(
            LogMark::default(),
            &[
                "ferry::trigger",
                "the MQTT connection failed",
                "UnknownIssuer",
            ],
        )
        .await;
}

/// An app whose one component, `cmd`, is the command `guest`.
fn command_app(guest: &str) -> TestApp {
    let app = TestApp::new(
        "[[trigger.command]]\ncomponent = \"cmd\"\n\n[component.cmd]\nsource = \"cmd.wasm\"\n",
    );
    std::fs::copy(guest, app.path().join("cmd.wasm")).unwrap();
    app
}

/// `ferry up APP -- ARGS`, its stdin `input`, to the end.
pub(crate) fn run_command(
    app: &TestApp,
    state: &std::path::Path,
    args: &[&str],
    input: &[u8],
) -> std::process::Output {
    let mut child = ferry()
        .arg("up")
        .arg(app.path())
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .arg("--")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_command_runs_once_with_its_arguments_and_stdio_and_exits_with_its_status() {
    let app = command_app(ferry_test_programs::COMMAND_GUEST);
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run_command(&app, state.path(), args, b"from the terminal");
    let output = run(&["hello world", "0"]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("arg cmd\narg hello world\narg 0\nstdin from the terminal\n"),
        "{stdout}"
    );
    assert!(text(&output.stderr).contains("to stderr"));
    // WASI 0.2's `exit` says success or failure, not a number: a command
    // that exits with 3 fails, and `ferry up` exits with 1.
    let output = run(&["3"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));

    // A live host serves apps; it does not run commands.
    let host_state = tempfile::tempdir().unwrap();
    let host = Host::start(host_state.path(), &[]);
    let output = host.client(&["deploy", app.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("a command trigger runs once, from `ferry up`"),
        "{}",
        text(&output.stderr)
    );
}

/// A WASI 0.3 command (`wasi:cli/run@0.3.0`, an async `run` that awaits a
/// timer and writes through WASI 0.3's stdout stream) runs once with its
/// arguments, and `run`'s error is `ferry up`'s failure.
#[test]
fn a_wasi_0_3_command_runs_once_with_its_arguments() {
    let app = command_app(ferry_test_programs::COMMAND_P3_GUEST);
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run_command(&app, state.path(), args, b"");
    let output = run(&["hello world", "ok"]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("arg cmd\narg hello world\narg ok\n"),
        "{stdout}"
    );
    let output = run(&["fail"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("arg fail\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_sdk_7_redis_subscriber_runs_and_writes_through_outbound_redis_3() {
    let (redis, _ferry) = async_redis_subscriber("rust-sdk7-redis", "sdk7").await;
    assert_eq!(publish(&redis, "sdk7", &["a=1".into(), "b=two".into()]), 2);
    // The guest (async, WASI 0.3) wrote each back through
    // spin:redis/redis@3.0.0.
    assert_eq!(written(&redis, "sdk7:a"), "1");
    assert_eq!(written(&redis, "sdk7:b"), "two");
}

/// The test app `name`, whose component exports the async
/// `spin:redis/inbound-redis@3.0.0` (as `ferry check` says), built and
/// served against a Redis server of its own until it has subscribed to
/// `channel`.
async fn async_redis_subscriber(name: &str, channel: &str) -> (RedisServer, Ferry) {
    let app = spin_app(name);
    let output = ferry().arg("build").arg(&app).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let check = ferry().arg("check").arg(&app).output().unwrap();
    assert!(
        text(&check.stdout).contains("serves     spin:redis/inbound-redis@3.0.0"),
        "{}",
        text(&check.stdout)
    );
    let redis = RedisServer::start();
    let ferry = Ferry::start_at(
        &app,
        &["--variable", &format!("redis_address={}", redis.url)],
    );
    ferry
        .wait_for_log(
            LogMark::default(),
            &["ferry::trigger", "subscribed", channel],
        )
        .await;
    (redis, ferry)
}

/// The value a guest wrote to `key` on `redis`, once it is there.
fn written(redis: &RedisServer, key: &str) -> String {
    eventually_blocking(&format!("{key} to be written"), || {
        let output = Command::new("redis-cli")
            .args(["-u", &redis.url, "GET", key])
            .output()
            .unwrap();
        let value = text(&output.stdout).trim().to_owned();
        (!value.is_empty()).then_some(value)
    })
}

/// The Python SDK's Redis trigger (componentize-py, an async
/// `spin:redis/inbound-redis@3.0.0` export): each message runs the guest,
/// which writes it back through the SDK's outbound Redis; a message it
/// raises on is logged as a failed invocation, and the next one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_redis_handler_runs_on_each_message() {
    let (redis, ferry) = async_redis_subscriber("python-redis", "python").await;
    let mark = ferry.log_mark();
    assert_eq!(
        publish(
            &redis,
            "python",
            &["a=1".into(), "no-pair".into(), "b=two".into()]
        ),
        3
    );
    assert_eq!(written(&redis, "py:a"), "1");
    assert_eq!(written(&redis, "py:b"), "two");
    // The second message's invocation failed (an exception the SDK turns
    // into a trap), logged under its message id with the guest's own
    // account of why.
    ferry
        .wait_for_log(
            mark,
            &[
                "redis trigger's invocation failed",
                "message_id=\"on-message-redis-trigger-2\"",
                "kind=\"trap\"",
            ],
        )
        .await;
    ferry
        .wait_for_log(
            mark,
            &[
                "ValueError: not key=value: no-pair",
                "request_id=\"on-message-redis-trigger-2\"",
            ],
        )
        .await;
}
