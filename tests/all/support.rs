//! The test harness: apps in temporary directories, a running `ferry up`
//! or `ferry serve` whose logs are captured, and an HTTP client.
//!
//! Every wait goes through [`eventually`] (or [`eventually_blocking`]):
//! retried every 20 ms up to [`WAIT_LIMIT`], and on failure it says what it
//! waited for, how long, and what it saw last. Every time limit, that one
//! and each operation's, is [`scaled`] by `FERRY_TEST_TIME_SCALE`, so a
//! slow machine is given more time in one place:
//! `FERRY_TEST_TIME_SCALE=3 cargo test --test all`.

use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use ferry_test_programs::{HTTP_GUEST, HTTP_P3_GUEST, WAGI_C, WAGI_RUST};

/// An app directory with a `spin.toml`.
pub struct TestApp {
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// `body` is everything after `[application]`'s name: triggers and components.
    pub fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("spin.toml"),
            format!("spin_manifest_version = 2\n\n[application]\nname = \"test-app\"\n\n{body}"),
        )
        .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// A TOML component table for the wasi:http test guest, named `id`, with `NAME = id`.
pub fn http_component(id: &str, extra: &str) -> String {
    format!(
        "[component.{id}]\nsource = {HTTP_GUEST:?}\nenvironment = {{ NAME = \"{id}\" }}\n{extra}\n"
    )
}

pub fn trigger(route: &str, component: &str) -> String {
    format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{component}\"\n\n")
}

/// The compile cache shared by every test run, so each guest compiles once.
/// A Spin app's directory in `crates/test-programs/spin-apps`, or one of
/// its manifests.
pub fn spin_app(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/test-programs/spin-apps")
        .join(path)
}

pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferry-test-cache")
}

/// `ferry check` on `app`, with the shared compile cache.
pub fn ferry_check(app: &TestApp) -> Output {
    ferry_check_with(app, &[])
}

/// [`ferry_check`] with `args` added.
pub fn ferry_check_with(app: &TestApp, args: &[&str]) -> Output {
    ferry()
        .arg("check")
        .arg(app.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(args)
        .output()
        .unwrap()
}

pub fn ferry() -> Command {
    ferry_env(Command::new(env!("CARGO_BIN_EXE_ferry")))
}

/// `ferry`, run by `ip netns exec` in the network namespace `namespace`.
pub fn ferry_in(namespace: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", namespace, env!("CARGO_BIN_EXE_ferry")]);
    ferry_env(command)
}

/// The environment every `ferry` of the tests runs with.
fn ferry_env(mut cmd: Command) -> Command {
    cmd.env("FERRY_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        // Build commands (`ferry build`) inherit our environment; what cargo
        // set for this test run must not reach a guest's own cargo build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

/// A position in a [`Ferry`]'s log.
/// The default is the log's start.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogMark(usize);

/// A running `ferry up`.
pub struct Ferry {
    child: Child,
    pub url: String,
    pub stdout: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<Vec<String>>>,
    /// The state directory the test did not choose: a fresh one, removed
    /// with the test, so no run writes into a source tree.
    _state: Option<tempfile::TempDir>,
}

impl Ferry {
    pub fn start(app: &TestApp, args: &[&str]) -> Self {
        Self::start_at(app.path(), args)
    }

    pub fn start_at(path: &Path, args: &[&str]) -> Self {
        Self::start_with_env(path, args, &[])
    }

    /// `ferry up` with `env` added to its environment.
    pub fn start_with_env(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_up(&[path.as_os_str()], args, env)
    }

    /// `ferry up -f PATH`, as Spin users name the app.
    pub fn start_from(path: &Path, args: &[&str]) -> Self {
        Self::start_from_with_env(path.as_os_str(), args, &[])
    }

    /// `ferry up -f APP` (a path or a registry reference) with `env` added
    /// to its environment.
    pub fn start_from_with_env(app: &std::ffi::OsStr, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_up(&["-f".as_ref(), app], args, env)
    }

    fn spawn_up(app: &[&std::ffi::OsStr], args: &[&str], env: &[(&str, &str)]) -> Self {
        let state = (!args.contains(&"--state-dir")).then(|| tempfile::tempdir().unwrap());
        let mut command = ferry();
        command
            .envs(env.iter().copied())
            .arg("up")
            .args(app)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(state) = &state {
            command.arg("--state-dir").arg(state.path());
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ferry");
        let logs = collect_lines(child.stderr.take().unwrap());
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = stdout_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Serving ") {
                    let _ = tx.send(url.to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        // Generous: `--build` may run a cold npm or cargo build first.
        let url = match rx.recv_timeout(scaled(Duration::from_secs(600))) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "ferry did not start serving.\nstdout:\n{}\nstderr:\n{}",
                    stdout_lines.lock().unwrap().join("\n"),
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            child,
            url,
            stdout: stdout_lines,
            logs,
            _state: state,
        }
    }

    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Where the log ends now: a check that passes this mark to
    /// [`wait_for_log`](Self::wait_for_log) sees only lines written after
    /// it, so it cannot be satisfied by an earlier request's line.
    pub fn log_mark(&self) -> LogMark {
        LogMark(self.logs.lock().unwrap().len())
    }

    /// Waits ([`eventually`]) for a log line written after `mark` that
    /// contains every one of `needles`, letting the test's other tasks run
    /// meanwhile; a failure shows the lines written after `mark`.
    pub async fn wait_for_log(&self, mark: LogMark, needles: &[&str]) -> String {
        let what = format!("a log line with {needles:?} after line {}", mark.0);
        eventually(&what, || async {
            let lines = self.logs_since(mark);
            match lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                Some(line) => Ok(line.clone()),
                None => Err(lines),
            }
        })
        .await
    }

    /// The access-log line (`--log-format json`) written after `mark` for
    /// `path`, parsed: waits ([`eventually`]) for it, and fails on any line
    /// after `mark` that is not one JSON object.
    pub async fn access_line(&self, mark: LogMark, path: &str) -> serde_json::Value {
        let what = format!("an access line for {path} after line {}", mark.0);
        eventually(&what, || async {
            let lines = self.logs_since(mark);
            for line in &lines {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
                if value["target"] == "ferry::access" && value["path"] == path {
                    return Ok(value);
                }
            }
            Err(lines)
        })
        .await
    }

    /// The log lines written after `mark` so far.
    pub fn logs_since(&self, mark: LogMark) -> Vec<String> {
        self.logs.lock().unwrap()[mark.0..].to_vec()
    }

    /// Sends SIGTERM and waits ([`wait_for_exit`]) for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_for_exit(&mut self.child, "`ferry up` to exit after SIGTERM")
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- ferry log ---\n{}\n--- end of ferry log ---",
                self.logs()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn get(url: &str) -> Reply {
    send(http::Request::get(url).body(Full::default()).unwrap()).await
}

pub async fn send(request: http::Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(scaled(Duration::from_secs(60)), client.request(request))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("reading the body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// POSTs `chunks` chunks of `chunk_size` bytes to `url` without a
/// content-length (chunk `i` is filled with the byte `i`), and returns the
/// response unread, so a test can check how it streams.
pub async fn post_streamed(
    url: &str,
    chunks: u8,
    chunk_size: usize,
) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
    let frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = (0..chunks)
        .map(|i| Ok(hyper::body::Frame::data(Bytes::from(vec![i; chunk_size]))))
        .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let client = Client::builder(TokioExecutor::new()).build_http();
    client
        .request(http::Request::post(url).body(body).unwrap())
        .await
}

/// A plain HTTP/1.1 server on 127.0.0.1 that answers every request with
/// 200 and `body`, for guests' outbound requests to reach.
pub struct TextServer {
    pub port: u16,
}

impl TextServer {
    pub fn start(body: &'static str) -> Self {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Self { port }
    }
}

pub use ferry_store::testing::{NatsCluster, RedisServer};

/// Reads the rest of a raw HTTP/1.1 response from `stream`, of which
/// `first` was read already: its head, lowercased, and its body as sent
/// (chunked framing included).
pub async fn finish_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    first: Vec<u8>,
) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let mut rest = Vec::new();
    tokio::time::timeout(
        scaled(Duration::from_secs(60)),
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("the stream finishes")
    .unwrap();
    let whole = [first, rest].concat();
    let split = whole
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&whole[..split]).to_ascii_lowercase();
    (head, whole[split + 4..].to_vec())
}

/// How long [`eventually`] waits before it fails, before [`scaled`]:
/// generous, since a loaded two-core machine is slow, and a passing test
/// never waits that long.
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// How often [`eventually`] checks again.
const RETRY: Duration = Duration::from_millis(20);

/// The factor every time limit of the tests is multiplied by: the
/// environment variable `FERRY_TEST_TIME_SCALE`, a positive number (`3`
/// gives a slow machine three times as long; `0.01` makes a wait that will
/// fail fail at once), or 1 when it is not set. Any other value fails the
/// test that asks, saying so.
pub fn time_scale() -> f64 {
    const NAME: &str = "FERRY_TEST_TIME_SCALE";
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var(NAME) {
        Err(std::env::VarError::NotPresent) => 1.0,
        Err(std::env::VarError::NotUnicode(value)) => {
            panic!("{NAME} must be a positive number, not {value:?}")
        }
        Ok(value) => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|scale| scale.is_finite() && *scale > 0.0)
            .unwrap_or_else(|| panic!("{NAME} must be a positive number, not {value:?}")),
    })
}

/// `limit` times [`time_scale`]. Every limit the tests put on how long
/// something may take goes through here: [`WAIT_LIMIT`], and the timeouts
/// of single operations (a request, a stream read to its end, a process
/// starting). Not a limit that is itself what a test checks, such as how
/// soon the server cuts a slow client off: scaling that would change what
/// the test asserts.
pub fn scaled(limit: Duration) -> Duration {
    limit.mul_f64(time_scale())
}

/// What a check given to [`eventually`] returns: either the value that
/// ends the wait, or what it saw instead, for the failure message.
///
/// - `Option<T>`: `Some(value)` ends the wait; `None` is "nothing yet",
///   with nothing worth showing.
/// - `Result<T, E>`: `Ok(value)` ends the wait; `Err(seen)` carries what
///   was seen instead (a reply, a count, the lines so far), and the last one
///   is shown (`Debug`) if the wait fails.
pub trait Seen {
    /// What the wait gives once it is over.
    type Value;
    /// What a check that has not succeeded yet saw instead.
    type Instead;
    /// `Ok` ends the wait.
    fn seen(self) -> Result<Self::Value, Self::Instead>;
    /// How the failure message shows what was last seen, if at all.
    fn show(instead: &Self::Instead) -> Option<String>;
}

impl<T> Seen for Option<T> {
    type Value = T;
    type Instead = ();

    fn seen(self) -> Result<T, ()> {
        self.ok_or(())
    }

    fn show(_: &()) -> Option<String> {
        None
    }
}

impl<T, E: Debug> Seen for Result<T, E> {
    type Value = T;
    type Instead = E;

    fn seen(self) -> Result<T, E> {
        self
    }

    /// On one line when it is short, else pretty-printed.
    fn show(instead: &E) -> Option<String> {
        let line = format!("{instead:?}");
        Some(if line.len() <= 100 {
            line
        } else {
            format!("{instead:#?}")
        })
    }
}

/// Waits until `check` succeeds, checking every 20 ms, and returns its
/// value; fails after [`WAIT_LIMIT`] ([`scaled`]) with a message naming
/// `what` it waited for, how long, and what the last check saw (see
/// [`Seen`]):
///
/// ```text
/// waited 120s for the app to serve `hello from two`; last seen: Reply { status: 503, .. }
/// ```
///
/// `what` completes "waited 120s for …". Every wait of the tests goes
/// through here (or [`eventually_blocking`]): never a loop of its own.
pub async fn eventually<S, F, Fut>(what: &str, mut check: F) -> S::Value
where
    S: Seen,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let limit = scaled(WAIT_LIMIT);
    let started = Instant::now();
    loop {
        match check().await.seen() {
            Ok(value) => return value,
            Err(instead) if started.elapsed() >= limit => gave_up::<S>(what, limit, &instead),
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    }
}

/// [`eventually`] for a test or thread that is not async: the same limit
/// and message, sleeping the thread between checks.
pub fn eventually_blocking<S: Seen>(what: &str, mut check: impl FnMut() -> S) -> S::Value {
    let limit = scaled(WAIT_LIMIT);
    let started = Instant::now();
    loop {
        match check().seen() {
            Ok(value) => return value,
            Err(instead) if started.elapsed() >= limit => gave_up::<S>(what, limit, &instead),
            Err(_) => std::thread::sleep(RETRY),
        }
    }
}

fn gave_up<S: Seen>(what: &str, limit: Duration, instead: &S::Instead) -> ! {
    // Tenths of a second: "120s", or "1.2s" under a small scale.
    let waited = (limit.as_secs_f64() * 10.0).round() / 10.0;
    match S::show(instead) {
        Some(seen) => panic!("waited {waited}s for {what}; last seen: {seen}"),
        None => panic!("waited {waited}s for {what}, in vain"),
    }
}

/// Waits (as [`eventually_blocking`]) for `child` to exit, `what` naming
/// the exit; a child that does not is killed before the test fails, so
/// that no process outlives it.
pub fn wait_for_exit(child: &mut Child, what: &str) -> ExitStatus {
    struct KillOnUnwind<'a>(&'a mut Child);
    impl Drop for KillOnUnwind<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let guard = KillOnUnwind(child);
    eventually_blocking(what, || guard.0.try_wait().unwrap())
}

/// The lines `reader` gives, collected as they come by a thread of their
/// own (a process's log, say).
pub fn collect_lines(reader: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A running `ferry serve` on a state directory it may share with the
/// next one (to restart on it).
pub struct Host {
    pub child: Child,
    pub url: String,
    pub admin: String,
    pub state: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Host {
    pub fn start(state: &Path, args: &[&str]) -> Self {
        Self::start_with_env(state, args, &[])
    }

    /// [`Host::start`] with `env` added to the host's environment.
    pub fn start_with_env(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = ferry();
        command.envs(env.iter().copied());
        Self::spawn(command, "127.0.0.1", state, args)
    }

    /// `command` (a `ferry`, maybe in a network namespace) serving with
    /// `state` on `ip` (free ports), with `args` added.
    pub fn spawn(mut command: Command, ip: &str, state: &Path, args: &[&str]) -> Self {
        let (listen, admin) = (format!("{ip}:0"), format!("{ip}:0"));
        let mut child = command
            .arg("serve")
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &listen, "--admin-listen", &admin])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ferry serve");
        let logs = collect_lines(child.stderr.take().unwrap());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        let mut admin = None;
        while admin.is_none() {
            let line = lines.next().and_then(Result::ok).unwrap_or_else(|| {
                panic!("ferry serve stopped:\n{}", logs.lock().unwrap().join("\n"))
            });
            if let Some(rest) = line.strip_prefix("Serving apps on ") {
                url = Some(rest.to_owned());
            }
            if let Some(rest) = line.strip_prefix("Admin API on ") {
                admin = rest.split(' ').next().map(str::to_owned);
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            url: url.expect("the apps URL"),
            admin: admin.unwrap(),
            state: state.to_owned(),
            logs,
        }
    }

    pub fn token_file(&self) -> PathBuf {
        self.state.join("admin-token")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.token_file())
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The command `ferry <args>` against this host (its admin API and
    /// token), as a user runs it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = ferry();
        command
            .args(args)
            .arg("--host")
            .arg(&self.admin)
            .arg("--token-file")
            .arg(self.token_file());
        command
    }

    /// [`command`](Self::command), run to its end.
    pub fn client(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `ferry deploy PATH ARGS`, which must succeed; what it printed.
    pub fn deploy(&self, path: &Path, args: &[&str]) -> String {
        let mut all = vec!["deploy", path.to_str().unwrap()];
        all.extend_from_slice(args);
        let output = self.client(&all);
        assert!(
            output.status.success(),
            "ferry deploy failed:\n{}{}\nhost log:\n{}",
            text(&output.stdout),
            text(&output.stderr),
            self.logs()
        );
        text(&output.stdout)
    }

    /// `ferry apps --json`, parsed.
    pub fn apps(&self) -> serde_json::Value {
        let output = self.client(&["apps", "--json"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The version of `name` serving, by `ferry apps`.
    pub fn version(&self, name: &str) -> Option<u64> {
        self.apps()["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .and_then(|a| a["version"].as_u64())
    }

    /// An admin API call with `token` (none: no `Authorization` header).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        send(request.body(Full::new(Bytes::from(body))).unwrap()).await
    }

    /// Uploads `bytes` as a blob; its digest.
    pub async fn upload(&self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let reply = self
            .call(
                "PUT",
                &format!("/v1/blobs/{digest}"),
                Some(&self.token()),
                bytes.to_vec(),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        digest
    }

    /// `POST /v1/apps/{name}/versions` with `files` (path, contents).
    pub async fn deploy_raw(&self, name: &str, manifest: &str, files: &[(&str, &[u8])]) -> Reply {
        let mut listed = serde_json::Map::new();
        for (path, bytes) in files {
            listed.insert((*path).to_owned(), self.upload(bytes).await.into());
        }
        let body = serde_json::json!({ "manifest": manifest, "files": listed });
        self.call(
            "POST",
            &format!("/v1/apps/{name}/versions"),
            Some(&self.token()),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        get(&format!("{}{path}", self.url)).await
    }

    pub async fn get_host(&self, path: &str, host: &str) -> Reply {
        self.app_call(host, "GET", path, "").await
    }

    /// A request to the app reached by `hostname`.
    pub async fn app_call(&self, hostname: &str, method: &str, path: &str, body: &str) -> Reply {
        send(
            http::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.url))
                .header("host", hostname)
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
    }

    /// The apps' listener, as `host:port`.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits for `/readyz` to answer 200 (503 until then).
    pub async fn until_ready(&self) {
        eventually("the host's /readyz to answer 200", || async {
            let reply = get(&format!("{}/readyz", self.admin)).await;
            let ready: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(ready["ready"], reply.status == 200, "{}", reply.text());
            assert!(
                reply.status == 200 || reply.status == 503,
                "{}",
                reply.text()
            );
            if reply.status == 200 {
                Ok(())
            } else {
                Err(reply.text())
            }
        })
        .await
    }

    pub fn kill_9(mut self) {
        signal(self.child.id(), "KILL");
        let _ = self.child.wait();
    }

    /// Stops the host as an operator does (SIGTERM), which must exit 0.
    pub fn stop(mut self) {
        signal(self.child.id(), "TERM");
        let status = wait_for_exit(&mut self.child, "`ferry serve` to exit after SIGTERM");
        assert!(status.success(), "{status}:\n{}", self.logs());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- ferry serve log ---\n{}\n--- end ---", self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// An app called `name` whose guest (copied in, so the bundle holds it)
/// answers `/` with `hello from <greeting>`, at `base`.
pub fn versioned_app(name: &str, greeting: &str, base: &str) -> TestApp {
    let app = TestApp::new("");
    std::fs::copy(HTTP_GUEST, app.path().join("guest.wasm")).unwrap();
    write_manifest(&app, name, greeting, base);
    app
}

pub fn write_manifest(app: &TestApp, name: &str, greeting: &str, base: &str) {
    app.write(
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\n\
             [application.trigger.http]\nbase = \"{base}\"\n\n{}\
             [component.guest]\nsource = \"guest.wasm\"\nenvironment = {{ NAME = \"{greeting}\" }}\n",
            trigger("/...", "guest")
        ),
    );
}

/// A PostgreSQL server of a test's own on loopback (Debian's `postgresql`;
/// scripts/setup installs it): a fresh cluster in a temporary directory,
/// password authentication for `postgres` (password `secret`), killed when
/// dropped. PostgreSQL refuses to run as root, so as root it runs as the
/// package's `postgres` user (`setpriv`, which execs: the child is the
/// server itself).
pub struct PostgresServer {
    child: Child,
    bin: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PostgresServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that also takes TLS (`sslmode=require`), with `ca`'s server
    /// certificate.
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL (apt-get install postgresql; scripts/setup does)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("postgres").exists())
            .max()
            .expect("a PostgreSQL server under /usr/lib/postgresql");
        let dir = tempfile::tempdir().unwrap();
        let root = text(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0";
        let as_owner = |program: &Path| {
            if root {
                let mut command = Command::new("setpriv");
                command
                    .args([
                        "--reuid=postgres",
                        "--regid=postgres",
                        "--init-groups",
                        "--",
                    ])
                    .arg(program);
                command
            } else {
                Command::new(program)
            }
        };
        if root {
            let owned = Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success(), "chown postgres: {}", dir.path().display());
        }
        std::fs::write(dir.path().join("password"), "secret\n").unwrap();
        let data = dir.path().join("data");
        let init = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!(
                "--pwfile={}",
                dir.path().join("password").display()
            ))
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {}", text(&init.stderr));
        let mut ssl = Vec::new();
        if let Some(ca) = tls {
            // The server's own files, readable by it alone.
            for (from, to) in [(&ca.cert, "server.crt"), (&ca.key, "server.key")] {
                std::fs::copy(from, data.join(to)).unwrap();
                if root {
                    let owned = Command::new("chown")
                        .arg("postgres:")
                        .arg(data.join(to))
                        .status()
                        .unwrap();
                    assert!(owned.success());
                }
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
            }
            ssl = vec!["-c", "ssl=on"];
        }
        let port = ferry_store::testing::free_port();
        let child = as_owner(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(&ssl)
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "TimeZone=UTC"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            bin,
            port,
            _dir: dir,
        };
        eventually_blocking("PostgreSQL to take connections", || {
            let ready = Command::new(server.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .unwrap();
            if ready.status.success() {
                Ok(())
            } else {
                Err(text(&ready.stdout))
            }
        });
        server
    }

    /// The address a guest opens: `postgres` on database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:secret@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// What `psql` answers to `sql`, unaligned, one row a line.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-At", "-c", sql])
            .env("PGPASSWORD", "secret")
            .output()
            .unwrap();
        assert!(output.status.success(), "psql: {}", text(&output.stderr));
        text(&output.stdout)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // An immediate shutdown: the server takes its sessions with it.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A MariaDB server of a test's own on loopback (Debian's `mariadb-server`;
/// scripts/setup installs it): a fresh data directory, a user `ferry`
/// (password `secret`) with a database `app`, killed when dropped.
pub struct MysqlServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl MysqlServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that also takes TLS, with `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let install = Command::new("mariadb-install-db")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--auth-root-authentication-method=socket"])
            .arg("--skip-test-db")
            .output()
            .expect("mariadb-install-db (apt-get install mariadb-server; scripts/setup does)");
        assert!(
            install.status.success(),
            "mariadb-install-db: {}",
            text(&install.stderr)
        );
        let port = ferry_store::testing::free_port();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("socket").display()))
            .args(["--user=root", "--bind-address=127.0.0.1", "--skip-log-bin"])
            .arg(format!("--port={port}"))
            .args(["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M"])
            .args(tls.map_or_else(Vec::new, |ca| {
                vec![
                    format!("--ssl-cert={}", ca.cert.display()),
                    format!("--ssl-key={}", ca.key.display()),
                    format!("--ssl-ca={}", ca.ca.display()),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port, dir };
        eventually_blocking("MariaDB to take connections", || {
            server.try_sql(
                "CREATE USER IF NOT EXISTS 'ferry'@'%' IDENTIFIED BY 'secret'; \
                 GRANT ALL ON *.* TO 'ferry'@'%'; CREATE DATABASE IF NOT EXISTS app",
            )
        });
        server
    }

    /// The address a guest opens: `ferry` on database `app`.
    pub fn url(&self) -> String {
        format!("mysql://ferry:secret@127.0.0.1:{}/app", self.port)
    }

    /// What the `mariadb` client answers to `sql` in database `app`, one
    /// row a line, tab separated.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(&format!("USE app; {sql}"))
            .unwrap_or_else(|e| panic!("mariadb: {e}"))
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("socket").display()
            ))
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .output()
            .unwrap();
        if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(text(&output.stderr))
        }
    }
}

impl Drop for MysqlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority made for a test and a server certificate it
/// signed, as PEM files in a directory of their own.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    /// A new authority, and a certificate of its for `names` (DNS names or
    /// IP addresses).
    pub fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ferry test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let server = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            cert: write("cert.pem", server.pem()),
            key: write("key.pem", key.serialize_pem()),
            _dir: dir,
        }
    }
}
