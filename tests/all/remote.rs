//! Remote component sources (`source = { url, digest }`), served by a local
//! HTTP server the test starts: downloads are verified, cached and reused
//! offline, and every way a download can fail leaves nothing behind.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::*;

/// A one-purpose HTTP/1.1 server on 127.0.0.1 that serves the test guest
/// in the ways a real server may fail. It records each request line, so a
/// test can tell whether a request went through it as a proxy.
pub(crate) struct ComponentServer {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ComponentServer {
    pub(crate) fn start(wasm: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let wasm = Arc::new(wasm);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (wasm, log) = (wasm.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &wasm, &log));
            }
        });
        Self { addr, requests }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, wasm: &[u8], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the head.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    log.lock().unwrap().push(request_line.trim_end().to_owned());
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let path = target.rsplit('/').next().unwrap_or_default();
    let head = |status: &str, length: usize| {
        format!("HTTP/1.1 {status}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n")
    };
    let _ = match path {
        "guest.wasm" => stream
            .write_all(head("200 OK", wasm.len()).as_bytes())
            .and_then(|()| stream.write_all(wasm)),
        // Half the announced body, then the connection closes.
        "truncated.wasm" => stream
            .write_all(head("200 OK", wasm.len()).as_bytes())
            .and_then(|()| stream.write_all(&wasm[..wasm.len() / 2])),
        // The whole body with no length announced (chunked encoding).
        "chunked.wasm" => stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            )
            .and_then(|()| {
                for part in wasm.chunks(4096) {
                    write!(stream, "{:x}\r\n", part.len())?;
                    stream.write_all(part)?;
                    stream.write_all(b"\r\n")?;
                }
                stream.write_all(b"0\r\n\r\n")
            }),
        // The whole body, in four parts a second apart.
        "trickle.wasm" => stream
            .write_all(head("200 OK", wasm.len()).as_bytes())
            .and_then(|()| {
                for part in wasm.chunks(wasm.len().div_ceil(4)) {
                    stream.write_all(part)?;
                    stream.flush()?;
                    std::thread::sleep(Duration::from_millis(1000));
                }
                Ok(())
            }),
        // A little of the body, then nothing for longer than any test waits.
        "stalled.wasm" => stream
            .write_all(head("200 OK", wasm.len()).as_bytes())
            .and_then(|()| stream.write_all(&wasm[..100]))
            .map(|()| std::thread::sleep(Duration::from_secs(60))),
        _ => stream.write_all(head("404 Not Found", 0).as_bytes()),
    };
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The test guest, served by a [`ComponentServer`], and its digest.
struct Served {
    wasm: Vec<u8>,
    digest: String,
    server: ComponentServer,
}

impl Served {
    fn new() -> Self {
        let wasm = std::fs::read(HTTP_GUEST).unwrap();
        Self {
            digest: sha256(&wasm),
            server: ComponentServer::start(wasm.clone()),
            wasm,
        }
    }

    /// An app whose component is the server's `path`, with the right digest.
    fn app(&self, path: &str) -> TestApp {
        remote_app(&self.server.url(path), &self.digest)
    }
}

/// An app whose one component is downloaded from `url` with `digest`.
fn remote_app(url: &str, digest: &str) -> TestApp {
    TestApp::new(&format!(
        "{}[component.web]\nsource = {{ url = {url:?}, digest = \"sha256:{digest}\" }}\nenvironment = {{ NAME = \"web\" }}\n",
        trigger("/...", "web")
    ))
}

/// `ferry check` with its own, empty cache directory and no proxy settings
/// from the environment.
fn check(app: &TestApp, cache: &Path, args: &[&str]) -> Output {
    ferry()
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .arg("check")
        .arg(app.path())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap()
}

/// The files in the download cache, temporary ones included.
fn downloads(cache: &Path) -> Vec<String> {
    match std::fs::read_dir(cache.join("downloads")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn a_verified_download_is_cached_and_served_offline() {
    let Served {
        wasm,
        digest,
        server,
    } = Served::new();
    let app = remote_app(&server.url("/components/guest.wasm"), &digest);
    let cache = tempfile::tempdir().unwrap();

    let output = check(&app, cache.path(), &[]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "Downloading `web` from {}",
            server.url("/components/guest.wasm")
        )) && stdout.contains(&format!("sha256:{digest} verified")),
        "{stdout}"
    );
    assert_eq!(downloads(cache.path()), [format!("sha256-{digest}.wasm")]);
    assert_eq!(
        std::fs::read(cache.path().join(format!("downloads/sha256-{digest}.wasm"))).unwrap(),
        wasm
    );
    assert_eq!(server.requests().len(), 1);

    // The cached copy serves from then on: no second request.
    let ferry = Ferry::start(&app, &["--cache-dir", cache.path().to_str().unwrap()]);
    let reply = get(&format!("{}/", ferry.url)).await;
    assert_eq!(reply.text(), "hello from web\n");
    assert_eq!(server.requests().len(), 1, "served from the cache");
}

#[test]
fn a_slow_download_shows_its_progress() {
    let served = Served::new();
    let app = served.app("/trickle.wasm");
    let cache = tempfile::tempdir().unwrap();
    let output = check(&app, cache.path(), &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let total = format!("{:.1} KiB", served.wasm.len() as f64 / 1024.0);
    let progress: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(&format!(" / {total} (")))
        .collect();
    assert!(!progress.is_empty(), "no progress lines in:\n{stdout}");
}

#[test]
fn no_cache_keeps_no_download() {
    let served = Served::new();
    let app = served.app("/guest.wasm");
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = check(&app, cache.path(), &["--no-cache"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    assert_eq!(served.server.requests().len(), 2, "downloaded every time");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn a_cached_file_that_no_longer_matches_is_fetched_again() {
    let Served {
        wasm,
        digest,
        server,
    } = Served::new();
    let app = remote_app(&server.url("/guest.wasm"), &digest);
    let cache = tempfile::tempdir().unwrap();
    let cached = cache.path().join(format!("downloads/sha256-{digest}.wasm"));
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"\0asm tampered").unwrap();

    let output = check(&app, cache.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("a cached download does not match its digest"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(std::fs::read(&cached).unwrap(), wasm);
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_is_kept() {
    let Served { wasm, server, .. } = Served::new();
    let url = server.url("/guest.wasm");
    let expected = "ab".repeat(32);
    let app = remote_app(&url, &expected);
    let cache = tempfile::tempdir().unwrap();

    let output = check(&app, cache.path(), &[]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("component `web`: downloading {url} failed"))
            && stderr.contains(&format!("expected sha256:{expected}"))
            && stderr.contains(&format!("actual   sha256:{}", sha256(&wasm)))
            && stderr.contains("nothing was cached or run"),
        "{stderr}"
    );
    assert_eq!(downloads(cache.path()), Vec::<String>::new());
}

#[test]
fn failed_downloads_say_why_and_leave_nothing_behind() {
    let served = Served::new();
    for (path, args, why) in [
        (
            "/missing.wasm",
            &[][..],
            "the server answered 404 Not Found",
        ),
        ("/truncated.wasm", &[], "the connection failed after"),
        (
            "/stalled.wasm",
            &["--download-timeout", "1s"],
            "it took longer than 1.00 s (--download-timeout)",
        ),
        (
            "/guest.wasm",
            &["--max-download-size", "1KiB"],
            "more than the 1.0 KiB allowed (--max-download-size)",
        ),
        (
            "/chunked.wasm",
            &["--max-download-size", "10KiB"],
            "the body is larger than the 10.0 KiB allowed (--max-download-size)",
        ),
    ] {
        let app = served.app(path);
        let cache = tempfile::tempdir().unwrap();
        let output = check(&app, cache.path(), args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{path}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "component `web`: downloading {} failed",
                served.server.url(path)
            )) && stderr.contains(why),
            "{path}: expected {why:?} in:\n{stderr}"
        );
        assert_eq!(downloads(cache.path()), Vec::<String>::new(), "{path}");
    }
}

#[test]
fn downloads_go_through_the_proxy_the_environment_names() {
    let Served {
        digest,
        server: proxy,
        ..
    } = Served::new();
    // A host that does not resolve: only the proxy can fetch it.
    let url = "http://components.invalid/releases/guest.wasm";
    let app = remote_app(url, &digest);

    let cache = tempfile::tempdir().unwrap();
    let output = ferry()
        .env("HTTP_PROXY", format!("http://{}", proxy.addr))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .arg("check")
        .arg(app.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(proxy.requests(), [format!("GET {url} HTTP/1.1")]);

    // NO_PROXY exempts the host: the download goes direct, and fails.
    let cache = tempfile::tempdir().unwrap();
    let output = ferry()
        .env("HTTP_PROXY", format!("http://{}", proxy.addr))
        .env("NO_PROXY", "components.invalid")
        .arg("check")
        .arg(app.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(proxy.requests().len(), 1, "the proxy was not used again");
}
