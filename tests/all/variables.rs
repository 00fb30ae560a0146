//! Application variables from the command line's side: a required variable
//! without a value stops the app, a secret never shows, a malformed
//! `--variable` is a usage error. (What guests read is in `spin_sdk.rs`.)

use crate::support::*;

fn app_with_secret() -> TestApp {
    TestApp::new(&format!(
        "[variables]\ntoken = {{ required = true, secret = true }}\nregion = {{ default = \"eu\" }}\n\n{}{}",
        trigger("/...", "a"),
        http_component(
            "a",
            "[component.a.variables]\nauth = \"Bearer {{ token }}\"\nregion = \"{{ region }}\"\n"
        )
    ))
}

#[test]
fn a_required_variable_without_a_value_stops_the_app() {
    let app = app_with_secret();
    for command in ["check", "up"] {
        let output = ferry().arg(command).arg(app.path()).output().unwrap();
        assert_eq!(output.status.code(), Some(3), "ferry {command}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("required variable `token` has no value"),
            "ferry {command}: {stderr}"
        );
    }
}

#[test]
fn a_secret_never_shows() {
    let app = app_with_secret();
    let output = ferry()
        .arg("check")
        .arg(app.path())
        .args(["--variable", "token=hunter2-secret"])
        .env("SPIN_VARIABLE_REGION", "us")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("  variables  auth = (secret), region = \"us\"\n"),
        "{stdout}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("hunter2"),
        "{stdout}{stderr}"
    );
}

#[test]
fn a_malformed_variable_flag_is_a_usage_error() {
    let app = app_with_secret();
    for flag in ["token", "Token=x", "@vars.yaml", "token=@/nonexistent/file"] {
        let output = ferry()
            .arg("check")
            .arg(app.path())
            .args(["--variable", flag])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "--variable {flag}");
        assert!(
            text(&output.stderr).contains("--variable"),
            "{}",
            text(&output.stderr)
        );
    }
}

/// `allowed_outbound_hosts` entries may be templates, filled in when the app
/// loads: the grant follows the variable's value.
#[tokio::test]
async fn allowed_hosts_can_come_from_variables() {
    let server = TextServer::start("from the server");
    let port = server.port;
    let app = TestApp::new(&format!(
        "[variables]\nupstream = {{ default = \"127.0.0.1:1\" }}\n\n{}{}",
        trigger("/...", "a"),
        http_component("a", "allowed_outbound_hosts = [\"http://{{ upstream }}\"]")
    ));
    let url = format!("http://127.0.0.1:{port}/");

    let by_default = Ferry::start(&app, &[]);
    let reply = get(&format!("{}/outbound?url={url}", by_default.url)).await;
    assert_eq!(reply.text(), "error: ErrorCode::HttpRequestDenied\n");

    let upstream = format!("upstream=127.0.0.1:{port}");
    let given = Ferry::start(&app, &["--variable", &upstream]);
    let reply = get(&format!("{}/outbound?url={url}", given.url)).await;
    assert_eq!(reply.text(), "status 200: from the server\n");

    // A value that makes no host is an error naming the entry as written.
    let output = ferry()
        .arg("check")
        .arg(app.path())
        .args(["--variable", "upstream=example.com/path"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains(
            "component `a`: `allowed_outbound_hosts` entry `http://{{ upstream }}` is not a valid host once its variables are filled in"
        ),
        "{}",
        text(&output.stderr)
    );
}
