//! `ferry build` and `ferry up --build`: build commands run as a user would
//! see them run.

use std::process::Output;

use crate::support::*;

fn run(app: &TestApp, args: &[&str]) -> Output {
    ferry()
        .arg("build")
        .arg(app.path())
        .args(args)
        .output()
        .unwrap()
}

/// Three components: `first` with two steps, `second` in a work directory,
/// `plain` with no build; the sources are what the builds write.
fn three_components() -> TestApp {
    let app = TestApp::new(
        r#"[[trigger.http]]
route = "/second"
component = "second"

[[trigger.http]]
route = "/first"
component = "first"

[[trigger.http]]
route = "/plain"
component = "plain"

[component.first]
source = "first.wasm"
[component.first.build]
command = ["echo step one; echo to stderr >&2", "echo step two > first.wasm"]

[component.second]
source = "sub/second.wasm"
[component.second.build]
command = "pwd > second.wasm && printf 'no newline at the end'"
workdir = "sub"

[component.plain]
source = "plain.wasm"
"#,
    );
    std::fs::create_dir(app.path().join("sub")).unwrap();
    app
}

#[test]
fn build_runs_every_command_in_manifest_order_with_prefixed_output() {
    let app = three_components();
    let output = run(&app, &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| *l == needle)
            .unwrap_or_else(|| panic!("no line {needle:?} in:\n{stdout}"))
    };
    // Components in the order the manifest defines them, steps in order.
    let first =
        position("Building component `first` (step 1/2) with `echo step one; echo to stderr >&2`");
    let one = position("[first] step one");
    let second_step =
        position("Building component `first` (step 2/2) with `echo step two > first.wasm`");
    let second = position(
        "Building component `second` with `pwd > second.wasm && printf 'no newline at the end'`",
    );
    let unterminated = position("[second] no newline at the end");
    let plain = position("Component `plain` has no build command");
    assert!(first < one && one < second_step && second_step < second);
    assert!(second < unterminated && unterminated < plain);
    assert!(
        stdout.contains("Finished building 2 component(s)"),
        "{stdout}"
    );
    assert!(
        stderr.lines().any(|l| l == "[first] to stderr"),
        "the command's stderr goes to ours, prefixed:\n{stderr}"
    );

    // Each command ran in its work directory.
    assert_eq!(
        std::fs::read_to_string(app.path().join("first.wasm")).unwrap(),
        "step two\n"
    );
    let pwd = std::fs::read_to_string(app.path().join("sub/second.wasm")).unwrap();
    assert_eq!(
        std::path::Path::new(pwd.trim()).canonicalize().unwrap(),
        app.path().join("sub").canonicalize().unwrap()
    );
}

#[test]
fn component_id_selects_what_is_built() {
    let app = three_components();
    let output = run(&app, &["--component-id", "second"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(app.path().join("sub/second.wasm").is_file());
    assert!(!app.path().join("first.wasm").exists());

    let output = run(&app, &["-c", "third", "-c", "first"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!app.path().join("first.wasm").exists(), "nothing is built");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no component `third`") && stderr.contains("`first`, `second`, `plain`"),
        "{stderr}"
    );
}

#[test]
fn the_first_failure_stops_the_build_with_its_exit_code() {
    let app = TestApp::new(
        r#"[[trigger.http]]
route = "/..."
component = "a"

[[trigger.http]]
route = "/b"
component = "b"

[component.a]
source = "a.wasm"
build = { command = ["echo before", "echo failing >&2; exit 7", "touch a-step-three"] }

[component.b]
source = "b.wasm"
build = { command = "touch b-built" }
"#,
    );
    let output = run(&app, &[]);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "error: component `a`: build command `echo failing >&2; exit 7` failed with exit code 7"
        ),
        "{stderr}"
    );
    assert!(!app.path().join("a-step-three").exists());
    assert!(!app.path().join("b-built").exists());
}

#[test]
fn a_broken_build_table_is_a_manifest_error() {
    let app = TestApp::new(
        r#"[[trigger.http]]
route = "/..."
component = "a"

[component.a]
source = "a.wasm"
[component.a.build]
command = 42
workdir = "/tmp"
"#,
    );
    let output = run(&app, &[]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "`component.a.build.command` must be a command line or a list of them, found integer"
        ) && stderr.contains("`workdir` must be relative to the manifest's directory"),
        "{stderr}"
    );
}

#[tokio::test]
async fn up_build_builds_then_serves() {
    let app = TestApp::new(&format!(
        "{}[component.guest]\nsource = \"out/guest.wasm\"\nenvironment = {{ NAME = \"built\" }}\n[component.guest.build]\ncommand = \"mkdir -p out && cp '{HTTP_GUEST}' out/guest.wasm\"\n",
        trigger("/...", "guest")
    ));
    // Without --build the missing source is an error that says what to do.
    let output = ferry().arg("up").arg(app.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains("run `ferry build` (or `ferry up --build`) first"),
        "{}",
        text(&output.stderr)
    );

    let ferry = Ferry::start(&app, &["--build"]);
    let stdout = ferry.stdout.lock().unwrap().join("\n");
    assert!(
        stdout.contains("Building component `guest` with `mkdir -p out"),
        "{stdout}"
    );
    let reply = get(&format!("{}/", ferry.url)).await;
    assert_eq!(reply.text(), "hello from built\n");
}

#[test]
fn a_step_that_leaves_a_process_running_does_not_hang_the_build() {
    // The step leaves a process in the background that holds the output
    // pipe open for a minute (scaled), then leaves a mark in the app.
    let seconds = scaled(std::time::Duration::from_secs(60)).as_secs().max(1);
    let app = TestApp::new(&format!(
        r#"[[trigger.http]]
route = "/..."
component = "a"

[component.a]
source = "a.wasm"
build = {{ command = ["(sleep {seconds}; touch background-done) & printf 'compiling 50%%\rcompiling 100%%\n'", "echo next step"] }}
"#
    ));
    let mut child = ferry()
        .arg("build")
        .arg(app.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard, not a timing: the build must be over while the
    // background process still runs, whenever that is.
    let status = wait_for_exit(&mut child, "`ferry build` to exit");
    assert!(
        !app.path().join("background-done").exists(),
        "ferry build waited for a background process the step left running"
    );
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    // A carriage return ends a relayed line, so progress bars stay readable.
    for expected in ["[a] compiling 50%", "[a] compiling 100%", "[a] next step"] {
        assert!(lines.contains(&expected), "no {expected:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn files_the_build_makes_can_be_mounted() {
    let app = TestApp::new(&format!(
        "{}[component.guest]\nsource = \"out/guest.wasm\"\nenvironment = {{ NAME = \"site\" }}\nfiles = [{{ source = \"out/site\", destination = \"/\" }}]\n[component.guest.build]\ncommand = \"mkdir -p out/site && cp '{HTTP_GUEST}' out/guest.wasm && echo built > out/site/index.html\"\n",
        trigger("/...", "guest")
    ));
    // Neither the source nor the placed directory exists before the build.
    let output = run(&app, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let ferry = Ferry::start(&app, &[]);
    let reply = get(&format!("{}/file?path=/index.html", ferry.url)).await;
    assert_eq!(reply.text(), "built\n");
}
