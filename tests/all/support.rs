//! The test harness: apps in temporary directories, a running `ferry up`
//! whose logs are captured, and an HTTP client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
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
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferry-test-cache")
}

pub fn ferry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
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
#[derive(Debug, Clone, Copy)]
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
        let state = (!args.contains(&"--state-dir")).then(|| tempfile::tempdir().unwrap());
        let mut command = ferry();
        command
            .envs(env.iter().copied())
            .arg("up")
            .arg(path)
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
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
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
        let url = match rx.recv_timeout(Duration::from_secs(600)) {
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

    /// Waits (up to 10 s) for a log line written after `mark` that contains
    /// every one of `needles`, letting the test's other tasks run meanwhile.
    pub async fn wait_for_log(&self, mark: LogMark, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.logs.lock().unwrap()[mark.0..]
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} after line {} in:\n{}",
                mark.0,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The access-log line (`--log-format json`) written after `mark` for
    /// `path`, parsed: waits up to 10 s for it, and fails on any line after
    /// `mark` that is not one JSON object.
    pub async fn access_line(&self, mark: LogMark, path: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for line in self.logs_since(mark) {
                let value: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
                if value["target"] == "ferry::access" && value["path"] == path {
                    return value;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no access line for {path} after line {} in:\n{}",
                mark.0,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The log lines written after `mark` so far.
    pub fn logs_since(&self, mark: LogMark) -> Vec<String> {
        self.logs.lock().unwrap()[mark.0..].to_vec()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ferry did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
    let response = tokio::time::timeout(Duration::from_secs(60), client.request(request))
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

pub use ferry_store::testing::RedisServer;

/// How long [`wait_until`] waits before it fails: generous, since a loaded
/// two-core machine is slow, and a passing test never waits that long.
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Waits until `check` gives a value, trying every 20 ms, and returns it;
/// fails after [`WAIT_LIMIT`] naming `what` it waited for. Every wait in
/// the tests goes through here, so each failure says what never happened.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "waited {}s for {what}, in vain",
            WAIT_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
        let mut child = ferry()
            .arg("serve")
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ferry serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
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

    /// `ferry <args>` against this host, as a user runs it.
    pub fn client(&self, args: &[&str]) -> Output {
        ferry()
            .args(args)
            .arg("--host")
            .arg(&self.admin)
            .arg("--token-file")
            .arg(self.token_file())
            .output()
            .unwrap()
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
        send(
            http::Request::get(format!("{}{path}", self.url))
                .header("host", host)
                .body(Full::default())
                .unwrap(),
        )
        .await
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits for `/readyz` to answer 200 (503 until then).
    pub async fn until_ready(&self) {
        wait_until("the host's /readyz to answer 200", || async {
            let reply = get(&format!("{}/readyz", self.admin)).await;
            let ready: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(ready["ready"], reply.status == 200, "{}", reply.text());
            assert!(
                reply.status == 200 || reply.status == 503,
                "{}",
                reply.text()
            );
            (reply.status == 200).then_some(())
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
        let status = self.child.wait().unwrap();
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
