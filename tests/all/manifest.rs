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
        "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n\n[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"missing.wasm\"\nai_models = [\"llama2-chat\"]\n",
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
        stderr.contains("this is a WASI command module, but the `http` executor needs a wasi:http component (for a CGI program, use `executor = { type = \"wagi\" }`)"),
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
        "serves     wasi:http/incoming-handler@0.2",
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

#[test]
fn check_passes_a_manifest_using_every_accepted_field() {
    let app = TestApp::new(&format!(
        r#"version = "1.0.0"
targets = ["spin-up:3.3"]

[application.tool.spin-test]
source = "tests.wasm"

[[trigger.http]]
id = "api"
route = "api/..."
component = "api"
executor = {{ type = "spin" }}

[[trigger.http]]
route = "/health"
static_response = {{ status_code = 204, headers = {{ x-served-by = "ferry" }} }}

[[trigger.http]]
id = "site"
route = "/..."
component = {{ source = {HTTP_GUEST:?}, files = [{{ source = "public", destination = "/" }}] }}

[component.api]
source = {HTTP_GUEST:?}
description = "the API"
allowed_http_hosts = ["example.com"]
allowed_outbound_hosts = ["*://10.0.0.0/8:8000..8100"]
key_value_stores = []
sqlite_databases = []
ai_models = []
dependencies = {{}}
dependencies_inherit_configuration = false
targets = ["spin-up:3.3"]
[component.api.build]
command = ["echo one", "echo two"]
workdir = "."
watch = ["src/**/*.rs"]
[component.api.tool.spin-test]
source = "api-tests.wasm"
"#
    ));
    std::fs::create_dir(app.path().join("public")).unwrap();
    let (code, stdout, stderr) = run(&["check"], &app);
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "component `api`",
        "route      /api/... (wasi:http)",
        "outbound   *://10.0.0.0/8:8000..8100, http://example.com, https://example.com",
        "component `site-component`",
        "files      public -> / (read-only)",
        "static response\n  route      /health (204, 0 B, headers: x-served-by)",
        "OK: 2 component(s), 3 route(s)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        stderr.contains("warning: `component.api.allowed_http_hosts` is deprecated"),
        "{stderr}"
    );
}
