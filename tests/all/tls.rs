//! HTTPS on the apps and admin listeners (`--tls-cert`, `--tls-key`,
//! `--admin-tls-cert`, `--admin-tls-key`): certificates made by the test,
//! fetched by curl, a real client that verifies them, over HTTP/2 and
//! HTTP/1.1 as ALPN settles; a renewed certificate is served without a
//! restart.

use std::path::Path;
use std::process::Output;

use crate::support::*;

/// What `curl` made of `url`, trusting only `ca` (none: the system's
/// store): whether it succeeded, the body, the HTTP version it spoke and
/// what it said on stderr.
struct Fetched {
    ok: bool,
    body: String,
    version: String,
    stderr: String,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={} version={} body={:?} stderr={:?}",
            self.ok, self.version, self.body, self.stderr
        )
    }
}

fn curl(url: &str, ca: Option<&Path>, extra: &[&str]) -> Fetched {
    let mut command = std::process::Command::new("curl");
    command.args(["-sS", "--max-time", "30", "-w", "\n%{http_version}"]);
    if let Some(ca) = ca {
        // Only this authority: not the system's store as well.
        command
            .arg("--cacert")
            .arg(ca)
            .arg("--capath")
            .arg("/nonexistent");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.args(extra).arg(url).output().expect("running curl");
    let out = text(&stdout);
    let (body, version) = out.rsplit_once('\n').unwrap_or(("", &out));
    Fetched {
        ok: status.success(),
        body: body.trim_end().to_owned(),
        version: version.to_owned(),
        stderr: text(&stderr),
    }
}

fn tls_args(ca: &TestCa) -> Vec<&str> {
    vec![
        "--tls-cert",
        ca.cert.to_str().unwrap(),
        "--tls-key",
        ca.key.to_str().unwrap(),
    ]
}

#[test]
fn ferry_up_serves_https_over_http2_and_http1_to_a_client_that_verifies_it() {
    let ca = TestCa::new(&["localhost", "127.0.0.1"]);
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "allowed_outbound_hosts = [\"http://self\"]")
    ));
    let ferry = Ferry::start(&app, &tls_args(&ca));
    let base = &ferry.url;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let port = base.rsplit(':').next().unwrap();

    // HTTP/2, chosen by ALPN; the guest sees an https request.
    let h2 = curl(&format!("{base}/headers?q=1"), Some(&ca.ca), &[]);
    assert!(h2.ok, "{h2:?}");
    assert_eq!(h2.version, "2", "{h2:?}");
    for line in [
        "scheme: https",
        &format!("spin-full-url: https://127.0.0.1:{port}/headers?q=1"),
    ] {
        assert!(h2.body.contains(line), "{line} in {h2:?}");
    }
    // HTTP/1.1 when the client offers only that, and by a name the
    // certificate holds.
    let h1 = curl(
        &format!("https://localhost:{port}/"),
        Some(&ca.ca),
        &["--http1.1"],
    );
    assert!(h1.ok, "{h1:?}");
    assert_eq!(
        (h1.version.as_str(), h1.body.as_str()),
        ("1.1", "hello from web")
    );

    // A client that does not trust the authority refuses the connection,
    // and plain HTTP gets no HTTP answer.
    let untrusted = curl(&format!("{base}/"), None, &[]);
    assert!(!untrusted.ok, "{untrusted:?}");
    assert!(
        untrusted.stderr.contains("certificate"),
        "{}",
        untrusted.stderr
    );
    let plain = curl(&format!("http://127.0.0.1:{port}/"), None, &[]);
    assert!(!plain.ok && !plain.body.contains("hello"), "{plain:?}");

    // `http://self` still reaches the app (over loopback, inside the host).
    let own = curl(
        &format!("{base}/outbound?url=http://self/"),
        Some(&ca.ca),
        &[],
    );
    assert_eq!(own.body, "status 200: hello from web", "{own:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let first = TestCa::new(&["127.0.0.1"]);
    let second = TestCa::new(&["127.0.0.1"]);
    // The files Ferry serves from, overwritten in place below.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let ferry = Ferry::start(
        &app,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("{}/", ferry.url);
    let served = curl(&url, Some(&first.ca), &[]);
    assert_eq!(served.body, "hello from web", "{served:?}");
    let mark = ferry.log_mark();

    // Renewed: the next connections get the new certificate.
    std::fs::copy(&second.key, &key).unwrap();
    std::fs::copy(&second.cert, &cert).unwrap();
    eventually_blocking("the renewed certificate to be served", || {
        let fetched = curl(&url, Some(&second.ca), &[]);
        if fetched.ok {
            Ok(fetched)
        } else {
            Err(fetched)
        }
    });
    ferry
        .wait_for_log(mark, &["TLS certificate reloaded"])
        .await;
    let old = curl(&url, Some(&first.ca), &[]);
    assert!(!old.ok, "the old certificate is still served: {old:?}");

    // A broken renewal (a key that is not the certificate's) is logged,
    // once, and the current certificate kept. Files are looked at when a
    // client connects.
    let mark = ferry.log_mark();
    std::fs::copy(&first.key, &key).unwrap();
    eventually_blocking("the broken renewal to be logged", || {
        let kept = curl(&url, Some(&second.ca), &[]);
        assert_eq!(kept.body, "hello from web", "{kept:?}");
        let logs = ferry.logs_since(mark).join("\n");
        if logs.contains("keeping the current TLS certificate") {
            Ok(logs)
        } else {
            Err(logs)
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let kept = curl(&url, Some(&second.ca), &[]);
    assert_eq!(kept.body, "hello from web", "{kept:?}");
    let warnings = ferry.logs_since(mark).join("\n");
    assert_eq!(
        warnings
            .matches("keeping the current TLS certificate")
            .count(),
        1,
        "{warnings}"
    );
    assert!(warnings.contains("does not go with"), "{warnings}");

    // A FIFO in the certificate's place is not waited on (it would hold
    // the reader for good): refused, and the current pair kept.
    let mark = ferry.log_mark();
    std::fs::remove_file(&cert).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&cert)
        .status()
        .unwrap();
    assert!(made.success());
    eventually_blocking("the FIFO to be refused", || {
        let logs = ferry.logs_since(mark).join("\n");
        if logs.contains("it is not a regular file") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    let kept = curl(&url, Some(&second.ca), &[]);
    assert_eq!(kept.body, "hello from web", "{kept:?}");
}

#[test]
fn unusable_certificate_files_stop_ferry_with_a_clear_error() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let other = TestCa::new(&["127.0.0.1"]);
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let up = |args: &[&str]| {
        let output = ferry()
            .arg("up")
            .arg(app.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{output:?}");
        text(&output.stderr)
    };
    let (cert, key) = (ca.cert.to_str().unwrap(), ca.key.to_str().unwrap());
    let stray_key = other.key.to_str().unwrap();
    let missing = app.path().join("nope.pem");
    let missing = missing.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--tls-cert", cert, "--tls-key", stray_key],
            format!("the TLS private key {stray_key} does not go with the certificate {cert}"),
        ),
        (
            vec!["--tls-cert", missing, "--tls-key", key],
            format!("reading the TLS certificate {missing}"),
        ),
        // A key where the certificate should be.
        (
            vec!["--tls-cert", key, "--tls-key", key],
            format!("the TLS certificate {key} holds no PEM `CERTIFICATE` block"),
        ),
        (vec!["--tls-cert", cert], "--tls-key <FILE>".to_owned()),
    ] {
        let stderr = up(&args);
        assert!(stderr.contains(&expected), "{expected}\nin:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_host_serves_apps_and_its_admin_api_over_https() {
    let apps_ca = TestCa::new(&["127.0.0.1"]);
    let admin_ca = TestCa::new(&["127.0.0.1"]);
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(
        state.path(),
        &[
            "--tls-cert",
            apps_ca.cert.to_str().unwrap(),
            "--tls-key",
            apps_ca.key.to_str().unwrap(),
            "--admin-tls-cert",
            admin_ca.cert.to_str().unwrap(),
            "--admin-tls-key",
            admin_ca.key.to_str().unwrap(),
        ],
    );
    assert!(host.url.starts_with("https://"), "{}", host.url);
    assert!(host.admin.starts_with("https://"), "{}", host.admin);

    // The client verifies the admin API's certificate against the trust
    // store; here that store is the test's authority (`SSL_CERT_FILE`).
    let app = versioned_app("web", "web", "/");
    let mut deploy = host.command(&["deploy", app.path().to_str().unwrap()]);
    let untrusted = deploy.output().unwrap();
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("certificate"),
        "{}",
        text(&untrusted.stderr)
    );
    let deployed = deploy.env("SSL_CERT_FILE", &admin_ca.ca).output().unwrap();
    assert!(
        deployed.status.success(),
        "{}{}",
        text(&deployed.stderr),
        host.logs()
    );
    let url = format!("{}/", host.url);
    let served = eventually_blocking("the deployed app to be served over HTTPS", || {
        let fetched = curl(&url, Some(&apps_ca.ca), &[]);
        if fetched.ok && fetched.body == "hello from web" {
            Ok(fetched)
        } else {
            Err(fetched)
        }
    });
    assert_eq!(served.version, "2");
    // The admin listener serves its own certificate, not the apps'.
    let wrong = curl(&format!("{}/healthz", host.admin), Some(&apps_ca.ca), &[]);
    assert!(!wrong.ok, "{wrong:?}");
}
