//! Test support shared by this crate's tests and Ferry's integration tests:
//! real servers to run against — a Redis server, a NATS JetStream cluster.
//! Not part of the store's API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own on a free loopback port (the Debian
/// package; `scripts/setup` installs it), stopped when dropped. Nothing is
/// persisted.
pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::on_port(free_port())
    }

    /// A server again at `url` (one this process started and stopped):
    /// a restart, as clients see it.
    pub fn start_at(url: &str) -> Self {
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a redis://127.0.0.1:PORT url");
        Self::on_port(port)
    }

    /// A server that speaks TLS only, with the certificate chain `cert`
    /// and its `key` (PEM files; `ca` the root they chain to), at
    /// `rediss://localhost:PORT`. Clients need no certificate.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Self {
        let port = free_port();
        let tls = [
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            cert.display().to_string(),
            "--tls-key-file".to_owned(),
            key.display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            ca.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut server = Self::spawn(port, &tls);
        server.url = format!("rediss://localhost:{port}");
        server
    }

    fn on_port(port: u16) -> Self {
        Self::spawn(port, &["--port".to_owned(), port.to_string()])
    }

    fn spawn(port: u16, listen: &[String]) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(listen)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; scripts/setup does)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl RedisServer {
    /// Kills the server (as a crash would) and waits for it to go.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago, for a server of a test's own, and
/// never handed out before in this process (tests run side by side: two
/// servers told the same port would meet).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The nats-server `scripts/setup` installs (the official static binary,
/// pinned by version and hash in `scripts/nats-server.txt`), unless
/// `FERRY_NATS_SERVER` names another.
pub fn nats_server_binary() -> std::path::PathBuf {
    std::env::var_os("FERRY_NATS_SERVER").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/nats/bin/nats-server")
        },
        std::path::PathBuf::from,
    )
}

/// One server of a [`NatsCluster`].
pub struct NatsNode {
    /// None while it is stopped.
    child: Option<Child>,
    config: std::path::PathBuf,
    pub name: String,
    /// Where clients connect: `nats://127.0.0.1:PORT`.
    pub url: String,
    /// The monitoring endpoint: `http://127.0.0.1:PORT`.
    pub monitor: String,
}

/// A NATS cluster of the test's own on loopback: `size` nats-server
/// processes with JetStream, each write synced before it is acknowledged
/// (`sync_interval: always`, without which acknowledged writes can be lost
/// on a crash), every server listing every route. Stopped, and its data
/// removed, when dropped.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    _data: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts the servers and waits (leader elections take 5–15 s on two
    /// cores) until JetStream has formed: every server in the meta group and
    /// a leader elected.
    pub fn start(size: usize) -> Self {
        let binary = nats_server_binary();
        assert!(
            binary.exists(),
            "{} is missing (scripts/setup installs it)",
            binary.display()
        );
        let ports: Vec<[u16; 3]> = (0..size)
            .map(|_| [free_port(), free_port(), free_port()])
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|[_, _, route]| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let data = tempfile::tempdir().unwrap();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, [client, monitor, route])| {
                let name = format!("n{}", i + 1);
                let store = data.path().join(&name);
                let config = data.path().join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\n\
                         listen: 127.0.0.1:{client}\n\
                         http: 127.0.0.1:{monitor}\n\
                         jetstream {{ store_dir: {store:?}, sync_interval: always }}\n\
                         cluster {{ name: ferry-{cluster}, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                        routes.join(", "),
                        // Its own name: never joined by another test's cluster.
                        cluster = ports[0][2],
                    ),
                )
                .unwrap();
                let mut node = NatsNode {
                    child: None,
                    config,
                    name,
                    url: format!("nats://127.0.0.1:{client}"),
                    monitor: format!("http://127.0.0.1:{monitor}"),
                };
                node.start();
                node
            })
            .collect();
        let cluster = Self { nodes, _data: data };
        cluster.wait_formed();
        cluster
    }

    /// Waits until JetStream has formed on every running server: each sees
    /// the whole cluster and a meta leader.
    pub fn wait_formed(&self) {
        let size = self.nodes.len() as u64;
        let started = Instant::now();
        loop {
            let formed = self.nodes.iter().filter(|n| n.running()).all(|node| {
                node.healthy()
                    && node.jetstream().is_some_and(|jsz| {
                        jsz["meta_cluster"]["cluster_size"].as_u64() == Some(size)
                            && jsz["meta_cluster"]["leader"]
                                .as_str()
                                .is_some_and(|leader| !leader.is_empty())
                    })
            });
            if formed {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the NATS cluster did not form in 60 s; last seen: {:?}",
                self.nodes
                    .iter()
                    .map(NatsNode::jetstream)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every server's client URL, comma-separated (as `--cluster` takes
    /// them).
    pub fn urls(&self) -> String {
        let urls: Vec<&str> = self.nodes.iter().map(|n| n.url.as_str()).collect();
        urls.join(",")
    }
}

impl NatsNode {
    /// Starts the server (again: its data is where it left it).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        self.child = Some(child);
    }

    /// Kills the server (`kill -9`: no goodbye to its peers or clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// What the server's monitoring endpoint says of JetStream (`/jsz`), if
    /// it answers.
    pub fn jetstream(&self) -> Option<serde_json::Value> {
        self.monitoring("/jsz")
    }

    /// Whether the server says it is healthy (`/healthz`: JetStream
    /// current, its meta group caught up).
    pub fn healthy(&self) -> bool {
        self.monitoring("/healthz")
            .is_some_and(|health| health["status"] == "ok")
    }

    /// What the monitoring endpoint answers at `path`, if it answers JSON.
    pub fn monitoring(&self, path: &str) -> Option<serde_json::Value> {
        use std::io::{Read as _, Write as _};
        let address = self.monitor.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
