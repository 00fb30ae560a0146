//! What a user sees for bad manifests and for `ferry check`.

use crate::support::*;

fn run(args: &[&str], app: &TestApp) -> (i32, String, String) {
    let output = ferry().args(args).arg(app.path()).output().unwrap();
    let scrub =
        |s: &[u8]| String::from_utf8_lossy(s).replace(app.path().to_str().unwrap(), "[APP]");
    (
        output.status.code().unwrap_or(-1),
        scrub(&output.stdout),
        scrub(&output.stderr),
    )
}

#[test]
fn manifest_errors_point_at_file_line_and_column() {
    let app = TestApp::new(
        "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n\n[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"missing.wasm\"\nkey_value_stores = [\"default\"]\n",
    );
    let (code, stdout, stderr) = run(&["up"], &app);
    assert_eq!(code, 3);
    assert_eq!(stdout, "");
    insta::assert_snapshot!(stderr);
}

#[test]
fn wrong_kind_of_wasm_is_a_load_error() {
    let app = TestApp::new(&format!(
        "{}[component.a]\nsource = {WAGI_C:?}\n",
        trigger("/", "a")
    ));
    let (code, _, stderr) = run(&["check"], &app);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("is a core module, but the `http` executor needs a wasi:http component"),
        "{stderr}"
    );
}

#[test]
fn check_prints_routes_imports_and_grants() {
    let app = TestApp::new(&format!(
        "{}[[trigger.http]]\nroute = \"/cgi\"\ncomponent = \"cgi\"\nexecutor = {{ type = \"wagi\" }}\n\n{}[component.cgi]\nsource = {WAGI_C:?}\n",
        trigger("/hello/...", "hello"),
        http_component(
            "hello",
            "allowed_outbound_hosts = [\"https://example.com\"]\nfiles = [\"*.txt\"]"
        ),
    ));
    let (code, stdout, stderr) = run(&["check"], &app);
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "component `hello`",
        "route      /hello/... (wasi:http)",
        "wasi:http/types@0.2",
        "env        NAME",
        "files      *.txt -> / (read-only)",
        "outbound   https://example.com",
        "limits     memory 128.0 MiB, timeout 30s",
        "component `cgi`",
        "route      /cgi (wagi, argv \"${SCRIPT_NAME} ${ARGS}\", entrypoint _start)",
        "imports    wasi_snapshot_preview1",
        "outbound   (none)",
        "OK: 2 component(s), 2 route(s)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn cannot_listen_exits_4() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = TestApp::new(&(trigger("/", "a") + &http_component("a", "")));
    let output = ferry()
        .args(["up", "--listen", &taken.local_addr().unwrap().to_string()])
        .arg(app.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen on"));
}
