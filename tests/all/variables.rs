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
