//! What a tenant can do to the operator and to the host's own admin
//! listener: its output reaches `ferry logs` with every control character
//! escaped; its route names, whatever characters they hold, move no figure
//! of another app on the dashboard; the admin API's streams (`logs?follow`,
//! `/v1/events`) are bounded, end when their client leaves or their app is
//! deleted, and a deleted app's late lines never show under a new app of
//! its name; and no guest, whatever its `allowed_outbound_hosts`, connects
//! to the admin listener.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::*;

/// An app called `name`, under `base`, of one component (`guest`, the
/// wasi:http test guest, copied in) whose `NAME` is `greeting` (a TOML
/// string's contents, escapes allowed) and with `extra` lines in its
/// component table; `routes` are its triggers (all `/...` if none).
fn guest_app(name: &str, base: &str, greeting: &str, extra: &str, routes: &[&str]) -> TestApp {
    let app = TestApp::new("");
    std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
    let routes = if routes.is_empty() {
        &["/..."][..]
    } else {
        routes
    };
    let triggers: String = routes.iter().map(|r| trigger(r, "guest")).collect();
    app.write(
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\n\
             [application.trigger.http]\nbase = \"{base}\"\n\n{triggers}\
             [component.guest]\nsource = \"guest.wasm\"\nenvironment = {{ NAME = \"{greeting}\" }}\n{extra}\n"
        ),
    );
    app
}

/// Whether `text` holds a character a terminal may act on: any control
/// character but newline and tab.
fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// `ferry logs` of an app whose guest prints a window-title change, a
/// screen clear, a bell, a carriage return and an 8-bit CSI: what reaches
/// the operator's terminal holds none of them raw, only their escaped
/// spellings (the host log's), with or without `--json`.
#[tokio::test]
async fn ferry_logs_shows_a_guests_control_characters_escaped() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let hostile = r"\u001b]0;owned\u0007\u001b[2Jcleared\rhidden\u009b31mred";
    host.deploy(guest_app("noisy", "/n", hostile, "", &[]).path(), &[]);
    // The guest prints its `NAME`, then fails (it cannot put such a name
    // in its `x-guest-name` header): what it printed is logged all the same.
    host.get("/n/print").await;

    let output = host.client(&["logs", "noisy"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let readable = text(&output.stdout);
    assert!(
        !has_control(&readable),
        "raw control characters: {readable:?}"
    );
    assert!(
        readable.contains(
            r"stdout: a line on stdout from \x1b]0;owned\x07\x1b[2Jcleared\x0dhidden\u{9b}31mred"
        ),
        "{readable:?}"
    );

    let output = host.client(&["logs", "noisy", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json = text(&output.stdout);
    assert!(!has_control(&json), "raw control characters: {json:?}");
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["message"],
        r"a line on stdout from \x1b]0;owned\x07\x1b[2Jcleared\x0dhidden\u{9b}31mred",
        "{json}"
    );
    // The host's own log shows the line escaped the same way.
    assert!(
        host.logs()
            .contains(r"a line on stdout from \x1b]0;owned\x07\x1b[2Jcleared\x0dhidden"),
        "{}",
        host.logs()
    );
}

/// A tenant whose routes are named like label sets
/// (`/e1,app=victim,component=guest,route=/v/...`) takes traffic; the
/// dashboard still shows the victim app's route with exactly the victim's
/// requests, and each hostile route as the tenant's own, with its own.
#[tokio::test]
async fn route_names_like_labels_move_no_figure_between_apps_on_the_dashboard() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(guest_app("victim", "/v", "victim", "", &[]).path(), &[]);
    let hostile: Vec<String> = (1..=3)
        .map(|i| format!("/e{i},app=victim,component=guest,route=/v/..."))
        .collect();
    let routes: Vec<&str> = hostile.iter().map(String::as_str).collect();
    host.deploy(guest_app("evil", "/", "evil", "", &routes).path(), &[]);

    for _ in 0..2 {
        assert_eq!(host.get("/v/").await.text(), "hello from victim\n");
    }
    for route in &hostile {
        let path = route.trim_end_matches("...");
        for _ in 0..5 {
            assert_eq!(host.get(path).await.text(), "hello from evil\n", "{path}");
        }
    }
    // Counted (when each access line was written): read as Prometheus'
    // own text, where each label value is one quoted, escaped string.
    let series = |app: &str, route: &str, count: u32| {
        format!(
            "ferry_requests_total{{app=\"{app}\",component=\"guest\",route=\"{route}\",status=\"2xx\"}} {count}\n"
        )
    };
    let mut expected = vec![series("victim", "/v/...", 2)];
    expected.extend(hostile.iter().map(|route| series("evil", route, 5)));
    eventually("/metrics to count every request", || async {
        let reply = host
            .call("GET", "/metrics", Some(&host.token()), Vec::new())
            .await;
        let text = reply.text();
        expected.iter().all(|s| text.contains(s)).then_some(())
    })
    .await;

    let mut events = Streamed::open(&host, "/v1/events").await;
    assert_eq!(events.status, 200);
    let snapshot = events.next_event().await;
    let routes = snapshot["routes"].as_array().unwrap();
    let of = |app: &str| -> Vec<&serde_json::Value> {
        routes.iter().filter(|r| r["app"] == app).collect()
    };
    let victim = of("victim");
    assert_eq!(victim.len(), 1, "{routes:#?}");
    assert_eq!(victim[0]["route"], "/v/...");
    assert_eq!(victim[0]["component"], "guest");
    assert_eq!(victim[0]["requests"]["2xx"], 2, "{routes:#?}");
    let duration_count = victim[0]["duration_buckets"]
        .as_array()
        .and_then(|b| b.last())
        .map(|last| last[1].clone());
    assert_eq!(duration_count, Some(serde_json::json!(2)), "{routes:#?}");
    let evil = of("evil");
    assert_eq!(evil.len(), 3, "{routes:#?}");
    for route in &hostile {
        let figures = evil
            .iter()
            .find(|r| r["route"] == route.as_str())
            .unwrap_or_else(|| panic!("no figures for {route}: {routes:#?}"));
        assert_eq!(figures["requests"]["2xx"], 5, "{route}");
    }
}

/// `logs?follow` and `/v1/events` answer at most 64 and 16 clients at once
/// (a 429 beyond, saying so), and a stream whose client left frees its place
/// even when its app writes nothing.
#[tokio::test]
async fn admin_streams_are_bounded_and_freed_when_their_client_leaves() {
    const FOLLOWERS: usize = 64;
    const EVENT_STREAMS: usize = 16;
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(guest_app("quiet", "/q", "quiet", "", &[]).path(), &[]);

    let mut followers = Vec::new();
    for _ in 0..FOLLOWERS {
        let follower = Streamed::open(&host, "/v1/apps/quiet/logs?follow").await;
        assert_eq!(follower.status, 200);
        followers.push(follower);
    }
    let mut refused = Streamed::open(&host, "/v1/apps/quiet/logs?follow").await;
    assert_eq!(refused.status, 429, "follower {}", FOLLOWERS + 1);
    let error = refused.whole_json().await;
    assert!(error["error"].as_str().unwrap().contains("64"), "{error}");

    let mut streams = Vec::new();
    for _ in 0..EVENT_STREAMS {
        let stream = Streamed::open(&host, "/v1/events").await;
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }
    let mut refused = Streamed::open(&host, "/v1/events").await;
    assert_eq!(refused.status, 429, "event stream {}", EVENT_STREAMS + 1);
    assert!(
        refused.whole_json().await["error"]
            .as_str()
            .unwrap()
            .contains("16")
    );

    // The clients leave; the app stays quiet, so nothing is written to
    // them: their places come free all the same.
    drop(followers);
    drop(streams);
    let mut back = Vec::new();
    for (path, count) in [
        ("/v1/apps/quiet/logs?follow", FOLLOWERS),
        ("/v1/events", EVENT_STREAMS),
    ] {
        for _ in 0..count {
            let stream = eventually(&format!("a place for GET {path}"), || async {
                let stream = Streamed::open(&host, path).await;
                (stream.status == 200).then_some(stream)
            })
            .await;
            back.push(stream);
        }
    }
}

/// Deleting an app ends its followers' streams; a request of it still
/// running writes on, but a new app of the same name shows none of the old
/// one's lines, neither kept nor late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_apps_followers_end_and_its_successor_shows_none_of_its_lines() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(guest_app("talker", "/t", "first", "", &[]).path(), &[]);
    assert_eq!(host.get("/t/print").await.status, 200);

    let mut follower = Streamed::open(&host, "/v1/apps/talker/logs?follow").await;
    assert_eq!(follower.status, 200);
    follower
        .read_until("the kept lines", |s| {
            s.text()
                .contains("a line on stderr from first")
                .then_some(())
        })
        .await;

    // A request that goes on past the delete, and prints when it ends.
    let url = format!("{}/t/sleep?ms=3000", host.url);
    let sleeping = tokio::spawn(async move { get(&url).await });
    eventually("the guest to start sleeping", || async {
        host.logs().contains("sleeping 3000 ms").then_some(())
    })
    .await;
    let output = tokio::task::block_in_place(|| host.client(&["delete", "talker"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    follower
        .read_until("the deleted app's follower to end", |s| {
            s.ended.then_some(())
        })
        .await;

    let app = guest_app("talker", "/t", "second", "", &[]);
    tokio::task::block_in_place(|| host.deploy(app.path(), &[]));
    let slept = sleeping.await.unwrap();
    assert_eq!(slept.text(), "slept 3000 ms\n");
    eventually("the old request's last line in the host log", || async {
        host.logs().contains("slept 3000 ms").then_some(())
    })
    .await;
    assert_eq!(host.get("/t/print").await.status, 200);

    let output = tokio::task::block_in_place(|| host.client(&["logs", "talker", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let messages: Vec<String> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "\"a line on stdout from second\"",
            "\"a line on stderr from second\""
        ],
        "the new app's lines only"
    );
}

/// A guest granted every port of `127.0.0.1` and of `localhost` reaches
/// another server on loopback, but not the admin listener: by its address,
/// by a name that resolves to it, or by `0.0.0.0`, it gets the denial a host
/// outside its grants gets, and the host logs why.
#[tokio::test]
async fn no_guest_connects_to_the_admin_listener() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let other = TextServer::start("another loopback server");
    let grants = r#"allowed_outbound_hosts = ["http://127.0.0.1:*", "http://localhost:*", "http://0.0.0.0:*"]"#;
    host.deploy(guest_app("prober", "/p", "prober", grants, &[]).path(), &[]);
    let admin_port = host.admin.rsplit(':').next().unwrap().trim_end_matches('/');
    let probe = |url: String| {
        let host = &host;
        async move { host.get(&format!("/p/outbound?url={url}")).await.text() }
    };

    assert_eq!(
        probe(format!("http://127.0.0.1:{}/", other.port)).await,
        "status 200: another loopback server\n"
    );
    assert_eq!(
        probe(format!("http://localhost:{}/", other.port)).await,
        "status 200: another loopback server\n"
    );
    let mark = host.logs.lock().unwrap().len();
    for url in [
        format!("http://127.0.0.1:{admin_port}/healthz"),
        format!("http://localhost:{admin_port}/readyz"),
        format!("http://0.0.0.0:{admin_port}/dashboard"),
    ] {
        assert_eq!(
            probe(url.clone()).await,
            "error: ErrorCode::HttpRequestDenied\n",
            "{url}"
        );
    }
    let logged = eventually("a log line for each denial", || async {
        let logged = host.logs.lock().unwrap()[mark..].join("\n");
        (logged.matches("outbound request denied").count() == 3).then_some(logged)
    })
    .await;
    assert_eq!(
        logged.matches("reaches this host's admin listener").count(),
        3,
        "{logged}"
    );
    assert!(logged.contains("component=\"guest\""), "{logged}");
}

/// One admin request on a connection of its own, read as it streams: the
/// head, then the body (chunked or sized) as it comes, until it ends.
/// Dropping it closes the connection, as a client that leaves does.
struct Streamed {
    tcp: TcpStream,
    /// Read but not yet decoded.
    raw: Vec<u8>,
    status: u16,
    chunked: bool,
    /// What is left of a sized body.
    left: usize,
    body: Vec<u8>,
    /// The body ended (its last chunk, or all its bytes, came).
    ended: bool,
}

impl Streamed {
    /// Sends `GET path` with the host's token and reads the answer's head.
    async fn open(host: &Host, path: &str) -> Self {
        let addr = host
            .admin
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\r\n",
            host.token()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut streamed = Self {
            tcp,
            raw: Vec::new(),
            status: 0,
            chunked: false,
            left: 0,
            body: Vec::new(),
            ended: false,
        };
        streamed
            .read_until(&format!("the head of GET {path}"), |s| {
                (s.status != 0).then_some(())
            })
            .await;
        streamed
    }

    fn text(&self) -> String {
        text(&self.body)
    }

    /// Reads on until `done` says so.
    async fn read_until<T>(&mut self, what: &str, done: impl Fn(&Self) -> Option<T>) -> T {
        let this = tokio::sync::Mutex::new(self);
        eventually(what, || async {
            let mut this = this.lock().await;
            if let Some(value) = done(&this) {
                return Some(value);
            }
            this.read_some().await;
            done(&this)
        })
        .await
    }

    /// The whole (sized) body, as JSON.
    async fn whole_json(&mut self) -> serde_json::Value {
        self.read_until("the whole body", |s| s.ended.then_some(()))
            .await;
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The next server-sent event's data, as JSON.
    async fn next_event(&mut self) -> serde_json::Value {
        let data = self
            .read_until("an event", |s| {
                let body = s.text();
                let end = body.find("\n\n")?;
                let data = body[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))?
                    .to_owned();
                Some((end, data))
            })
            .await;
        self.body.drain(..data.0 + 2);
        serde_json::from_str(&data.1).unwrap()
    }

    /// Reads what has come (waiting a little for it) and decodes it.
    async fn read_some(&mut self) {
        let mut buf = [0; 64 * 1024];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(50), self.tcp.read(&mut buf)).await
        {
            let read = read.unwrap_or(0);
            if read == 0 {
                // Closed: whatever was not read whole never will be.
                self.ended = true;
            }
            self.raw.extend_from_slice(&buf[..read]);
        }
        self.decode();
    }

    fn decode(&mut self) {
        if self.status == 0 {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = text(&self.raw[..end]).to_ascii_lowercase();
            self.raw.drain(..end + 4);
            self.status = head[9..12].parse().unwrap();
            self.chunked = head.contains("transfer-encoding: chunked");
            self.left = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if !self.chunked && self.left == 0 {
                self.ended = true;
            }
        }
        if !self.chunked {
            let take = self.left.min(self.raw.len());
            self.body.extend(self.raw.drain(..take));
            self.left -= take;
            if self.left == 0 {
                self.ended = true;
            }
            return;
        }
        // Each whole chunk: its size in hex, CRLF, its bytes, CRLF.
        while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(text(&self.raw[..line_end]).trim(), 16).unwrap();
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
            if size == 0 {
                self.ended = true;
                return;
            }
        }
    }
}
