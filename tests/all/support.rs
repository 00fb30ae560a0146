//! The test harness: apps in temporary directories, a running `ferry up`
//! whose logs are captured, and an HTTP client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
