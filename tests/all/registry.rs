//! Apps through an OCI registry (`ferry registry push | pull | login`,
//! `ferry up -f REF`, `ferry deploy REF`), against the CNCF distribution
//! registry (Debian's `docker-registry`) started on loopback, with TLS and
//! basic auth or plain HTTP.
//!
//! What Ferry pushes is checked against Spin's layout (media types, the
//! locked app as the last layer, small files inline, the image config's
//! label) by reading the registry with curl; what Spin pushes is made here
//! by hand, byte for byte as Spin writes it, and served.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};

use ferry_test_programs::{COMPOSE_APP, COMPOSE_DEP};

use crate::support::*;

/// A distribution registry on a free loopback port, removed on drop.
struct RegistryServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// For curl: `--cacert` and `-u` as needed.
    curl_args: Vec<String>,
    scheme: &'static str,
    _dir: tempfile::TempDir,
}

impl RegistryServer {
    fn start(tls: Option<&TestCa>, user: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let mut curl_args = Vec::new();
        if let Some(ca) = tls {
            config.push_str(&format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                ca.cert.display(),
                ca.key.display()
            ));
            curl_args.extend(["--cacert".into(), ca.ca.display().to_string()]);
        }
        if let Some((name, password)) = user {
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .expect("htpasswd (apt-get install apache2-utils; scripts/setup does)");
            assert!(htpasswd.status.success(), "{}", text(&htpasswd.stderr));
            std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: ferry-test, path: {}}}\n",
                dir.path().join("htpasswd").display()
            ));
            curl_args.extend(["-u".into(), format!("{name}:{password}")]);
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry; scripts/setup does)");
        let server = Self {
            child,
            addr,
            curl_args,
            scheme: if tls.is_some() { "https" } else { "http" },
            _dir: dir,
        };
        eventually_blocking("the registry to answer /v2/", || {
            let (status, _) = server.curl(&["-o", "/dev/null"], "/v2/", None);
            (status == "200").then_some(())
        });
        server
    }

    /// A reference to `repository:tag` on this registry.
    fn reference(&self, repository_tag: &str) -> String {
        format!("{}/{repository_tag}", self.addr)
    }

    /// curl on `path` (under the registry's URL) with `body` as its
    /// stdin (`--data-binary @-`); the status and the body answered.
    fn curl(&self, args: &[&str], path: &str, body: Option<&[u8]>) -> (String, Vec<u8>) {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
            .args(&self.curl_args)
            .args(args)
            .arg(format!("{}://{}{path}", self.scheme, self.addr))
            .stdout(Stdio::piped())
            .stdin(Stdio::piped());
        if body.is_some() {
            command.args(["--data-binary", "@-"]);
        }
        let mut child = command.spawn().expect("running curl");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            if let Some(body) = body {
                stdin.write_all(body).unwrap();
            }
        }
        let output = child.wait_with_output().unwrap();
        let mut out = output.stdout;
        let at = out.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let status = text(&out[at..]).trim().to_owned();
        out.truncate(at);
        (status, out)
    }

    /// Uploads `bytes` as a blob of `repository` (a POST, then one PUT of
    /// it all); its digest.
    fn upload(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let (status, headers) = self.curl(
            &["-X", "POST", "-D", "-", "-o", "/dev/null"],
            &format!("/v2/{repository}/blobs/uploads/"),
            None,
        );
        assert_eq!(status, "202", "starting an upload: {}", text(&headers));
        let headers = text(&headers);
        let location = headers
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_owned())
            })
            .expect("the upload's Location");
        let base = format!("{}://{}", self.scheme, self.addr);
        let path = location.strip_prefix(&base).unwrap_or(&location);
        let separator = if path.contains('?') { '&' } else { '?' };
        let (status, body) = self.curl(
            &["-X", "PUT", "-H", "Content-Type: application/octet-stream"],
            &format!("{path}{separator}digest={digest}"),
            Some(bytes),
        );
        assert_eq!(status, "201", "uploading a blob: {}", text(&body));
        digest
    }

    /// Puts `manifest` (an OCI image manifest) at `repository:tag`.
    fn put_manifest(&self, repository: &str, tag: &str, manifest: &Value) {
        let (status, body) = self.curl(
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
            ],
            &format!("/v2/{repository}/manifests/{tag}"),
            Some(&serde_json::to_vec(manifest).unwrap()),
        );
        assert_eq!(status, "201", "putting a manifest: {}", text(&body));
    }

    /// Pushes `wasm` as the package `repository:tag`, as `wkg publish`
    /// lays one out: a `application/vnd.wasm.config.v0+json` config and the
    /// Wasm as the one `application/wasm` layer.
    fn put_package(&self, repository: &str, tag: &str, wasm: &[u8]) {
        let digest = self.upload(repository, wasm);
        let config = serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [digest],
        }))
        .unwrap();
        let config_digest = self.upload(repository, &config);
        self.put_manifest(
            repository,
            tag,
            &json!({
                "schemaVersion": 2,
                "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": "application/wasm", "digest": digest, "size": wasm.len()}],
            }),
        );
    }

    fn manifest(&self, repository: &str, tag: &str) -> Value {
        let (status, body) = self.curl(
            &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
            &format!("/v2/{repository}/manifests/{tag}"),
            None,
        );
        assert_eq!(status, "200", "{}", text(&body));
        serde_json::from_slice(&body).unwrap()
    }

    fn blob(&self, repository: &str, digest: &str) -> Vec<u8> {
        let (status, body) = self.curl(&["-L"], &format!("/v2/{repository}/blobs/{digest}"), None);
        assert_eq!(status, "200", "{}", text(&body));
        body
    }

    /// Pushes an artifact in Spin's layout by hand: `wasm` and `data`
    /// layers, then `locked` as the last layer, and the image config
    /// pointing at it.
    fn put_spin_artifact(
        &self,
        repository: &str,
        tag: &str,
        wasm: &[&[u8]],
        data: &[&[u8]],
        locked: &Value,
    ) {
        let mut layers: Vec<(&str, &[u8])> = Vec::new();
        layers.extend(
            wasm.iter()
                .map(|w| ("application/vnd.wasm.content.layer.v1+wasm", *w)),
        );
        layers.extend(
            data.iter()
                .map(|d| ("application/vnd.wasm.content.layer.v1+data", *d)),
        );
        self.put_spin_layers(repository, tag, &layers, locked);
    }

    /// [`put_spin_artifact`](Self::put_spin_artifact) with the layers
    /// before the locked app given with their media types.
    fn put_spin_layers(
        &self,
        repository: &str,
        tag: &str,
        blobs: &[(&str, &[u8])],
        locked: &Value,
    ) {
        let mut layers = Vec::new();
        for (media_type, blob) in blobs {
            let digest = self.upload(repository, blob);
            layers.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        }
        let locked = serde_json::to_vec(locked).unwrap();
        let locked_digest = self.upload(repository, &locked);
        layers.push(json!({
            "mediaType": "application/vnd.fermyon.spin.application.v1+config",
            "digest": locked_digest,
            "size": locked.len(),
        }));
        let config = serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "config": {"Labels": {"com.fermyon.spin.lockedAppDigest": locked_digest}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_digest = self.upload(repository, &config);
        self.put_manifest(
            repository,
            tag,
            &json!({
                "schemaVersion": 2,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": config.len(),
                },
                "layers": layers,
            }),
        );
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A home of its own for `ferry`: where credentials are kept and read
/// (Ferry's, Spin's and Docker's), and the trust store.
struct Home {
    dir: tempfile::TempDir,
    ca: Option<PathBuf>,
}

impl Home {
    fn new(ca: Option<&TestCa>) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca: ca.map(|ca| ca.ca.clone()),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let home = self.dir.path();
        let mut env = vec![
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                home.join("config").display().to_string(),
            ),
            (
                "DOCKER_CONFIG".into(),
                home.join("docker").display().to_string(),
            ),
            // Pulls land here, not in the shared compile cache.
            (
                "FERRY_CACHE_DIR".into(),
                home.join("cache").display().to_string(),
            ),
        ];
        if let Some(ca) = &self.ca {
            env.push(("SSL_CERT_FILE".into(), ca.display().to_string()));
        }
        env
    }

    fn ferry(&self, args: &[&str]) -> Output {
        self.ferry_with_stdin(args, b"")
    }

    fn ferry_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut command = ferry();
        command
            .envs(self.env())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(stdin).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn up(&self, reference: &str, args: &[&str]) -> Ferry {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Ferry::start_from_with_env(reference.as_ref(), args, &env)
    }

    fn credentials_file(&self) -> PathBuf {
        self.dir.path().join("config/ferry/registry-auth.json")
    }
}

/// `entry` (a path under `dir`) as a gzipped tar, made by `tar` as Spin's
/// archive layers are: entries named `./…`.
fn tar_gz(dir: &Path, entry: &str) -> Vec<u8> {
    let archive = dir.join("layer.tar.gz");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-czf")
        .arg(&archive)
        .arg(entry)
        .status()
        .unwrap();
    assert!(packed.success());
    std::fs::read(&archive).unwrap()
}

/// `ferry registry pull -k --max-pull-size LIMIT REF`, which must fail;
/// what it said.
fn pull_over_limit(home: &Home, reference: &str, limit: &str, what: &str) -> String {
    failed(
        &home.ferry(&[
            "registry",
            "pull",
            "-k",
            "--max-pull-size",
            limit,
            reference,
        ]),
        what,
    )
}

fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn failed(output: &Output, what: &str) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// An app of one wasi:http component with files (one small enough to go
/// inline, one not, one nested), variables and grants.
fn app_with_files() -> TestApp {
    let app = TestApp::new(&format!(
        r#"version = "1.2.0"
description = "pushed by a test"
authors = ["Ferry Tests <tests@example.com>"]

[variables]
greeting = {{ default = "hello", description = "what to say" }}
token = {{ required = true, secret = true }}

[[trigger.http]]
route = "/..."
component = "web"

[component.web]
source = {HTTP_GUEST:?}
files = ["static/**/*"]
environment = {{ NAME = "web" }}
key_value_stores = ["default"]
allowed_outbound_hosts = ["https://example.com"]

[component.web.variables]
message = "{{{{ greeting }}}} world"
"#
    ));
    app.write("static/small.txt", "small\n");
    app.write("static/big.txt", &"b".repeat(300));
    app.write("static/nested/deep.txt", &"d".repeat(200));
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_pushed_with_login_over_tls_is_spins_artifact_and_serves_from_the_registry() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let registry = RegistryServer::start(Some(&ca), Some(("ferry", "s3cret")));
    let home = Home::new(Some(&ca));
    let app = app_with_files();
    let reference = registry.reference("tests/files-app:v1");
    let app_path = app.path().to_str().unwrap();

    // No credentials yet, then wrong ones: clear errors, nothing kept.
    let stderr = failed(
        &home.ferry(&["registry", "push", &reference, app_path]),
        "push without login",
    );
    assert!(
        stderr.contains("needs credentials") && stderr.contains("ferry registry login"),
        "{stderr}"
    );
    let login = [
        "registry",
        "login",
        &registry.addr,
        "-u",
        "ferry",
        "--password-stdin",
    ];
    let stderr = failed(
        &home.ferry_with_stdin(&login, b"wrong\n"),
        "a login with a wrong password",
    );
    assert!(
        stderr.contains("refused these credentials; nothing was saved"),
        "{stderr}"
    );
    assert!(!home.credentials_file().exists());
    succeeded(&home.ferry_with_stdin(&login, b"s3cret\n"), "login");
    let kept = std::fs::metadata(home.credentials_file()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&kept.permissions()) & 0o777,
        0o600
    );

    let stdout = succeeded(
        &home.ferry(&["registry", "push", &reference, app_path]),
        "push",
    );
    // Two Wasm-free data layers and the Wasm, the locked app and the config.
    assert!(stdout.contains("(5 of 5 blobs uploaded"), "{stdout}");
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .expect("the pushed digest")
        .to_owned();

    // The artifact, read as Spin reads it.
    let manifest = registry.manifest("tests/files-app", "v1");
    let (_, raw) = registry.curl(
        &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
        "/v2/tests/files-app/manifests/v1",
        None,
    );
    assert_eq!(sha256(&raw), digest, "the digest printed is the manifest's");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "test-app"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        "1.2.0"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.wasm.content.layer.v1+wasm",
            "application/vnd.wasm.content.layer.v1+data",
            "application/vnd.wasm.content.layer.v1+data",
            "application/vnd.fermyon.spin.application.v1+config",
        ]
    );
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    assert_eq!(layers[0]["digest"], sha256(&wasm));
    let locked_digest = layers[3]["digest"].as_str().unwrap();
    let config: Value = serde_json::from_slice(&registry.blob(
        "tests/files-app",
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(
        config["config"]["Labels"]["com.fermyon.spin.lockedAppDigest"],
        locked_digest
    );
    let locked: Value =
        serde_json::from_slice(&registry.blob("tests/files-app", locked_digest)).unwrap();
    assert_eq!(locked["spin_lock_version"], 0);
    assert_eq!(locked["metadata"]["name"], "test-app");
    assert_eq!(locked["metadata"]["trigger"]["type"], "http");
    assert_eq!(
        locked["variables"]["greeting"],
        json!({"default": "hello", "description": "what to say"})
    );
    assert_eq!(locked["variables"]["token"], json!({"secret": true}));
    assert_eq!(
        locked["triggers"],
        json!([{"id": "web-http-trigger", "trigger_type": "http", "trigger_config": {"route": "/...", "component": "web"}}])
    );
    let web = &locked["components"][0];
    assert_eq!(web["id"], "web");
    assert_eq!(
        web["source"],
        json!({"content_type": "application/wasm", "digest": sha256(&wasm)})
    );
    assert_eq!(web["env"], json!({"NAME": "web"}));
    assert_eq!(web["config"], json!({"message": "{{ greeting }} world"}));
    assert_eq!(web["metadata"]["key_value_stores"], json!(["default"]));
    assert_eq!(
        web["metadata"]["allowed_outbound_hosts"],
        json!(["https://example.com"])
    );
    let files = web["files"].as_array().unwrap();
    let file = |path: &str| files.iter().find(|f| f["path"] == path).unwrap().clone();
    assert_eq!(
        file("static/small.txt"),
        json!({"path": "static/small.txt", "inline": "c21hbGwK", "digest": sha256(b"small\n")})
    );
    let big = sha256("b".repeat(300).as_bytes());
    assert_eq!(
        file("static/big.txt"),
        json!({"path": "static/big.txt", "digest": big})
    );
    let deep = sha256("d".repeat(200).as_bytes());
    assert_eq!(file("static/nested/deep.txt")["digest"], deep);
    let mut data: Vec<&str> = layers[1..3]
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    data.sort_unstable();
    let mut expected = [big.as_str(), deep.as_str()];
    expected.sort_unstable();
    assert_eq!(data, expected, "one data layer a file over 128 bytes");
    assert_eq!(files.len(), 3);

    // Pushing again uploads nothing: every blob is there already.
    let stdout = succeeded(
        &home.ferry(&["registry", "push", &reference, app_path]),
        "a second push",
    );
    assert!(stdout.contains("(0 of 5 blobs uploaded"), "{stdout}");
    assert!(
        stdout.contains(&digest),
        "the same app gives the same digest: {stdout}"
    );

    // A client that does not trust the registry's certificate is refused.
    let untrusting = Home::new(None);
    let stderr = failed(
        &untrusting.ferry(&["registry", "pull", &reference]),
        "a pull that does not trust the registry",
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // Served from the registry as it was from the directory.
    let ferry = home.up(&reference, &["--variable", "token=t0ken"]);
    let reply = get(&format!("{}/file?path=/static/small.txt", ferry.url)).await;
    assert_eq!((reply.status, reply.text()), (200, "small\n".into()));
    let reply = get(&format!("{}/file?path=/static/nested/deep.txt", ferry.url)).await;
    assert_eq!(reply.text(), "d".repeat(200));
    let reply = get(&format!("{}/env", ferry.url)).await;
    assert!(reply.text().contains("NAME=web\n"), "{}", reply.text());
    drop(ferry);

    // Docker's config.json is enough on its own.
    let docker = Home::new(Some(&ca));
    let auth = base64::engine::general_purpose::STANDARD.encode("ferry:s3cret");
    std::fs::create_dir_all(docker.dir.path().join("docker")).unwrap();
    std::fs::write(
        docker.dir.path().join("docker/config.json"),
        json!({"auths": {registry.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let stdout = succeeded(
        &docker.ferry(&["registry", "pull", &reference]),
        "a pull with Docker's credentials",
    );
    assert!(stdout.contains("4 layers fetched"), "{stdout}");
    let pulled = PathBuf::from(stdout.lines().last().unwrap());
    assert!(pulled.is_file(), "{}", pulled.display());
    let check = docker.ferry(&[
        "check",
        pulled.to_str().unwrap(),
        "--variable",
        "token=t0ken",
    ]);
    succeeded(&check, "ferry check on the pulled app");
}

/// The locked app Spin 4 writes for a one-component HTTP app, as text.
fn spin_locked_app(wasm_digest: &str, data_digest: &str) -> Value {
    json!({
        "spin_lock_version": 0,
        "metadata": {
            "authors": ["Jane <j@example.com>"],
            "description": "Demo",
            "name": "hello",
            "trigger": {"type": "http"},
            "triggers": {},
            "version": "0.1.0"
        },
        "variables": {"greeting": {"default": "hi"}},
        "triggers": [{
            "id": "hello-http-trigger",
            "trigger_type": "http",
            "trigger_config": {"component": "hello", "route": "/..."}
        }],
        "components": [{
            "id": "hello",
            "metadata": {"allowed_outbound_hosts": ["https://api.example.com"], "key_value_stores": ["default"]},
            "source": {"content_type": "application/wasm", "digest": wasm_digest},
            "env": {"NAME": "spin"},
            "files": [
                {"digest": data_digest, "path": "static/index.html"},
                {"inline": "aGkK", "digest": sha256(b"hi\n"), "path": "robots.txt"}
            ],
            "config": {"message": "{{ greeting }} world"}
        }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_in_spins_layout_is_served_over_plain_http_with_insecure() {
    let registry = RegistryServer::start(None, None);
    let home = Home::new(None);
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    let index = "<h1>".to_owned() + &"x".repeat(200) + "</h1>\n";
    let locked = spin_locked_app(&sha256(&wasm), &sha256(index.as_bytes()));
    registry.put_spin_artifact("spin/hello", "v1", &[&wasm], &[index.as_bytes()], &locked);
    let reference = registry.reference("spin/hello:v1");

    // Without -k, Ferry speaks HTTPS, which a plain-HTTP registry does not.
    failed(
        &home.ferry(&["registry", "pull", &reference]),
        "a pull over HTTPS from a plain-HTTP registry",
    );

    let ferry = home.up(&reference, &["-k"]);
    let reply = get(&format!("{}/file?path=/robots.txt", ferry.url)).await;
    assert_eq!((reply.status, reply.text()), (200, "hi\n".into()));
    let reply = get(&format!("{}/file?path=/static/index.html", ferry.url)).await;
    assert_eq!(reply.text(), index);
    let reply = get(&format!("{}/", ferry.url)).await;
    assert_eq!(reply.text(), "hello from spin\n");
    drop(ferry);

    // The pulled manifest is the app's, grants and variables included.
    let stdout = succeeded(&home.ferry(&["registry", "pull", "-k", &reference]), "pull");
    assert!(
        stdout.contains("0 layers fetched"),
        "pulled once already: {stdout}"
    );
    let pulled = PathBuf::from(stdout.lines().last().unwrap());
    let check = succeeded(
        &home.ferry(&["check", pulled.to_str().unwrap()]),
        "ferry check",
    );
    for granted in ["https://api.example.com", "default", "message"] {
        assert!(check.contains(granted), "{granted} in:\n{check}");
    }

    // Spin's older layout: the locked app as the image config itself.
    let locked = serde_json::to_vec(&locked).unwrap();
    let config_digest = registry.upload("spin/hello", &locked);
    let wasm_digest = sha256(&wasm);
    let index_digest = sha256(index.as_bytes());
    registry.put_manifest(
        "spin/hello",
        "old",
        &json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.fermyon.spin.application.v1+config", "digest": config_digest, "size": locked.len()},
            "layers": [
                {"mediaType": "application/vnd.wasm.content.layer.v1+wasm", "digest": wasm_digest, "size": wasm.len()},
                {"mediaType": "application/vnd.wasm.content.layer.v1+data", "digest": index_digest, "size": index.len()}
            ]
        }),
    );
    let ferry = home.up(&registry.reference("spin/hello:old"), &["-k"]);
    let reply = get(&format!("{}/file?path=/robots.txt", ferry.url)).await;
    assert_eq!(reply.text(), "hi\n");
    drop(ferry);

    // Spin's archive layers (what it writes for an app of more than 499
    // files): the files inside a gzipped tar of the component's tree, each
    // still listed by its digest.
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("static")).unwrap();
    std::fs::write(tree.path().join("static/index.html"), &index).unwrap();
    let archive = tar_gz(tree.path(), "./static");
    registry.put_spin_layers(
        "spin/hello",
        "archived",
        &[
            ("application/vnd.wasm.content.layer.v1+wasm", &wasm),
            ("application/vnd.wasm.content.bundle.v1.tar+gzip", &archive),
        ],
        &spin_locked_app(&wasm_digest, &index_digest),
    );
    let ferry = home.up(&registry.reference("spin/hello:archived"), &["-k"]);
    let reply = get(&format!("{}/file?path=/static/index.html", ferry.url)).await;
    assert_eq!((reply.status, reply.text()), (200, index.clone()));
}

#[test]
fn hostile_artifacts_are_refused_and_write_nothing_outside_the_cache() {
    let registry = RegistryServer::start(None, None);
    let home = Home::new(None);
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    let data = "y".repeat(300);
    let base = spin_locked_app(&sha256(&wasm), &sha256(data.as_bytes()));
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "escape",
            Box::new(|l| l["components"][0]["files"][1]["path"] = json!("../../../escaped.txt")),
            "not a plain relative path",
        ),
        (
            "absolute",
            Box::new(|l| l["components"][0]["files"][1]["path"] = json!("/etc/escaped.txt")),
            "not a plain relative path",
        ),
        (
            "inline-component",
            Box::new(|l| {
                l["triggers"][0]["trigger_config"]["component"] = json!({"source": "/etc/passwd"})
            }),
            "names a component by a table",
        ),
        (
            // A pipeline's stage could carry an inline component too: one
            // with a build command and a host file as its source.
            "pipeline-stage",
            Box::new(|l| {
                l["triggers"] = json!([{
                    "id": "p",
                    "trigger_type": "pipeline",
                    "trigger_config": {"stages": [{"component": {
                        "source": "/etc/hostname",
                        "build": {"command": "touch /tmp/ferry-registry-pwned"}
                    }}, {"component": "hello"}]}
                }]);
            }),
            "names a component by a table",
        ),
        (
            "middleware",
            Box::new(|l| {
                l["triggers"][0]["trigger_config"]["dependencies"] =
                    json!({"middleware": [{"path": "/etc/hostname"}]})
            }),
            "has `dependencies`",
        ),
        (
            "unlisted-digest",
            Box::new(|l| l["components"][0]["source"]["digest"] = json!(sha256(b"elsewhere"))),
            "is not a layer of",
        ),
        (
            "bad-id",
            Box::new(|l| l["components"][0]["id"] = json!("../x")),
            "not a plain name",
        ),
        (
            "inline-mismatch",
            Box::new(|l| l["components"][0]["files"][1]["inline"] = json!("bm9wZQo")),
            "does not match its digest",
        ),
        (
            "must-understand",
            Box::new(|l| {
                l["spin_lock_version"] = json!(1);
                l["must_understand"] = json!(["time_travel"]);
            }),
            "understands `time_travel`",
        ),
    ];
    for (tag, change, expected) in cases {
        let mut locked = base.clone();
        change(&mut locked);
        registry.put_spin_artifact("hostile/app", tag, &[&wasm], &[data.as_bytes()], &locked);
        let stderr = failed(
            &home.ferry(&[
                "registry",
                "pull",
                "-k",
                &registry.reference(&format!("hostile/app:{tag}")),
            ]),
            tag,
        );
        assert!(
            stderr.contains(expected),
            "{tag}: expected {expected:?} in:\n{stderr}"
        );
    }
    // Nothing landed outside the cache, and no half-made app stayed in it.
    let cache = home.dir.path().join("cache");
    for escaped in [
        home.dir.path().join("escaped.txt"),
        cache.join("escaped.txt"),
        cache.join("registry/escaped.txt"),
        PathBuf::from("/etc/escaped.txt"),
    ] {
        assert!(!escaped.exists(), "{}", escaped.display());
    }
    let apps = std::fs::read_dir(cache.join("registry/apps"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(apps, 0, "no app directory is left by a refused pull");

    assert!(!Path::new("/tmp/ferry-registry-pwned").exists());

    // One layer placed at many paths counts each time against
    // --max-pull-size, so an artifact cannot fill the disk from a small
    // layer.
    let mut many = base.clone();
    many["components"][0]["files"] = Value::Array(
        (0..3000)
            .map(|i| json!({"digest": sha256(data.as_bytes()), "path": format!("copy{i}.txt")}))
            .collect(),
    );
    registry.put_spin_artifact("hostile/app", "many", &[&wasm], &[data.as_bytes()], &many);
    let stderr = pull_over_limit(
        &home,
        &registry.reference("hostile/app:many"),
        "600KiB",
        "a layer placed 3000 times",
    );
    assert!(
        stderr.contains("counting each place a layer is used"),
        "{stderr}"
    );

    // An archive layer is bounded by what it unpacks to, not by its size.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("zeros"), vec![0u8; 4 << 20]).unwrap();
    let archive = tar_gz(tree.path(), "./zeros");
    let mut bomb = base.clone();
    bomb["components"][0]["files"] =
        json!([{"digest": sha256(&vec![0u8; 4 << 20]), "path": "zeros"}]);
    registry.put_spin_layers(
        "hostile/app",
        "bomb",
        &[
            ("application/vnd.wasm.content.layer.v1+wasm", &wasm),
            ("application/vnd.wasm.content.bundle.v1.tar+gzip", &archive),
        ],
        &bomb,
    );
    let stderr = pull_over_limit(
        &home,
        &registry.reference("hostile/app:bomb"),
        "1MiB",
        "an archive that unpacks past the limit",
    );
    assert!(stderr.contains("unpacks to more than"), "{stderr}");

    // Layers adding up to more than --max-pull-size are not fetched.
    registry.put_spin_artifact("hostile/app", "fine", &[&wasm], &[data.as_bytes()], &base);
    let stderr = pull_over_limit(
        &home,
        &registry.reference("hostile/app:fine"),
        "4KiB",
        "a pull over the size limit",
    );
    assert!(stderr.contains("more than the 4.0 KiB allowed"), "{stderr}");
    succeeded(
        &home.ferry(&[
            "registry",
            "pull",
            "-k",
            &registry.reference("hostile/app:fine"),
        ]),
        "the same artifact unchanged",
    );
}

#[test]
fn deploy_takes_an_app_straight_from_a_registry_to_a_live_host() {
    let registry = RegistryServer::start(None, None);
    let home = Home::new(None);
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let reference = registry.reference("live/web:1");
    succeeded(
        &home.ferry(&[
            "registry",
            "push",
            "-k",
            &reference,
            app.path().to_str().unwrap(),
        ]),
        "push",
    );
    // A pulled app is built already: `--build` is refused (by the pull
    // `ferry up -f` shares), as nothing it carries may run as a build
    // command.
    let stderr = failed(
        &home.ferry(&["deploy", "--build", "-k", &reference]),
        "--build with a registry reference",
    );
    assert!(
        stderr.contains("--build builds an app on disk; one from a registry is built already"),
        "{stderr}"
    );

    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let mut deploy = host.command(&["deploy", &reference, "-k"]);
    deploy.envs(home.env());
    let output = deploy.output().unwrap();
    let stdout = succeeded(&output, "deploy from the registry");
    assert!(stdout.contains("Pulled"), "{stdout}");
    let reply = eventually_blocking("the deployed app to answer", || {
        let reply = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(get(&format!("http://{}/", host.addr())));
        (reply.status == 200).then_some(reply)
    });
    assert_eq!(reply.text(), "hello from web\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_packages_serve_as_component_sources_and_dependencies() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let registry = RegistryServer::start(Some(&ca), Some(("ferry", "s3cret")));
    let home = Home::new(Some(&ca));
    let login = [
        "registry",
        "login",
        &registry.addr,
        "-u",
        "ferry",
        "--password-stdin",
    ];
    succeeded(&home.ferry_with_stdin(&login, b"s3cret\n"), "login");
    let web = std::fs::read(HTTP_GUEST).unwrap();
    let dependency = std::fs::read(COMPOSE_DEP).unwrap();
    // Versions on either side of the ones asked for are not Wasm that
    // works here, so picking one of them fails the test.
    registry.put_package("ferry/web", "1.0.0", &web);
    registry.put_package("ferry/web", "1.1.0", b"not the 1.0.0 asked for");
    registry.put_package("ferry/compose", "0.1.0", &web);
    registry.put_package("ferry/compose", "0.1.5", &dependency);
    registry.put_package("ferry/compose", "0.2.0", b"too new for 0.1");
    registry.put_package("ferry/compose", "latest", b"not a version");
    // `ferry:` packages come from this registry by wasm-pkg's configuration.
    let config = home.dir.path().join("config/wasm-pkg");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!("[namespace_registries]\nferry = \"{}\"\n", registry.addr),
    )
    .unwrap();
    let manifest = |requirement: &str| {
        format!(
            "{}{}[component.web]\nsource = {{ registry = \"{}\", package = \"ferry:web\", version = \"1.0.0\" }}\nenvironment = {{ NAME = \"web\" }}\n\n\
             [component.app]\nsource = {COMPOSE_APP:?}\ndependencies = {{ \"ferry:compose\" = \"{requirement}\" }}\n",
            trigger("/web/...", "web"),
            trigger("/composed/...", "app"),
            registry.addr
        )
    };
    let app = TestApp::new(&manifest("0.1"));
    let path = app.path().to_str().unwrap();

    // No version matches: the versions there are named.
    let unmatched = TestApp::new(&manifest("0.3"));
    let stderr = failed(
        &home.ferry(&["check", unmatched.path().to_str().unwrap()]),
        "a requirement no version meets",
    );
    assert!(
        stderr.contains("no version of `ferry:compose`")
            && stderr.contains("matches `0.3` (its versions: 0.1.0, 0.1.5, 0.2.0, latest)"),
        "{stderr}"
    );

    // A hundred more versions, all older: the one asked for is now on the
    // listing's second page.
    let (_, older) = registry.curl(
        &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
        "/v2/ferry/compose/manifests/0.1.0",
        None,
    );
    let older: Value = serde_json::from_slice(&older).unwrap();
    for patch in 1..=100 {
        registry.put_manifest("ferry/compose", &format!("0.0.{patch}"), &older);
    }

    let check = succeeded(&home.ferry(&["check", path]), "ferry check");
    for shown in [
        format!("package ferry:web@=1.0.0 from {}", registry.addr),
        "dependency `ferry:compose` from ferry:compose@0.1".to_owned(),
    ] {
        assert!(check.contains(&shown), "{shown:?} in:\n{check}");
    }
    let ferry = home.up(path, &[]);
    let reply = get(&format!("{}/web/", ferry.url)).await;
    assert_eq!(
        (reply.status, reply.text()),
        (200, "hello from web\n".into())
    );
    let reply = get(&format!("{}/composed/greet?composed", ferry.url)).await;
    assert_eq!(reply.text(), "hello, composed, from the dependency");
    drop(ferry);

    // A live host fetches a tenant's packages anonymously, even with
    // credentials for the registry on its machine: a manifest cannot reach
    // what the host's own credentials open.
    let state = tempfile::tempdir().unwrap();
    let env = home.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = Host::start_with_env(state.path(), &[], &env);
    let tenant = TestApp::new(&format!(
        "{}[component.web]\nsource = {{ registry = \"{}\", package = \"ferry:web\", version = \"1.0.0\" }}\n",
        trigger("/...", "web"),
        registry.addr
    ));
    let output = host.client(&["deploy", tenant.path().to_str().unwrap()]);
    let stderr = failed(
        &output,
        "a deploy whose package needs the host's credentials",
    );
    assert!(
        stderr.contains("needs credentials, and a live host fetches registry packages anonymously"),
        "{stderr}"
    );
    drop(host);

    // Pushed as an app, the packages are layers: the artifact needs no
    // package registry to run.
    let reference = registry.reference("tests/packaged:1");
    succeeded(&home.ferry(&["registry", "push", &reference, path]), "push");
    let manifest = registry.manifest("tests/packaged", "1");
    let digests: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    for wasm in [&web, &dependency] {
        assert!(digests.contains(&sha256(wasm).as_str()), "{digests:?}");
    }
}
