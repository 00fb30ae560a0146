//! The command line itself: what a shell completes.

use std::process::Command;

use crate::support::*;

/// `ferry completions bash`, sourced into a real bash, completes
/// subcommands and a subcommand's flags.
#[test]
fn bash_completes_subcommands_and_flags() {
    let script = ferry().args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success(), "{}", text(&script.stderr));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    let complete = |line: &[&str]| {
        let words = line
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={}; _ferry ferry '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display(),
                line.len() - 1,
                line[line.len() - 1],
                line[line.len() - 2],
            ))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let subcommands = complete(&["ferry", "p"]);
    assert_eq!(
        subcommands.lines().collect::<Vec<_>>(),
        ["pipe"],
        "{subcommands}"
    );
    let flags = complete(&["ferry", "up", "--wat"]);
    assert_eq!(flags.lines().collect::<Vec<_>>(), ["--watch"], "{flags}");
}

#[test]
fn completions_exist_for_zsh_and_fish_and_refuse_other_shells() {
    for shell in ["zsh", "fish"] {
        let script = ferry().args(["completions", shell]).output().unwrap();
        assert!(script.status.success(), "{shell}: {}", text(&script.stderr));
        assert!(text(&script.stdout).contains("ferry"), "{shell}");
    }
    let unknown = ferry().args(["completions", "cmd.exe"]).output().unwrap();
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("invalid value 'cmd.exe'"),
        "{}",
        text(&unknown.stderr)
    );
}

/// Spin's `spin up` habits: a bare component served alone, `-e` for every
/// component's environment, `-f` for the app, `--max-instance-memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_up_flags_work_as_in_spin() {
    let alone = Ferry::start_at(
        std::path::Path::new(HTTP_GUEST),
        &[
            "-e",
            "MODE=spin",
            "--env",
            "EMPTY=",
            "--max-instance-memory",
            "64MiB",
        ],
    );
    // The component answers every path (`/...`), with the `-e` variables.
    let any = get(&format!("{}/any/path", alone.url)).await;
    assert_eq!(any.text(), "no test behaviour at \"/any/path\"\n");
    let env = get(&format!("{}/env", alone.url)).await.text();
    assert!(env.lines().any(|l| l == "MODE=spin"), "{env}");
    assert!(env.lines().any(|l| l == "EMPTY="), "{env}");

    // `-f` names the app; `-e` overrides a component's own value.
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let checked = ferry()
        .args(["check", "--cache-dir"])
        .arg(cache_dir())
        .arg("-f")
        .arg(app.path())
        .args(["-e", "NAME=from-flag"])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains("component `web`"));
    let from = Ferry::start_from(app.path(), &["-e", "NAME=from-flag"]);
    let env = get(&format!("{}/env", from.url)).await.text();
    assert!(env.lines().any(|l| l == "NAME=from-flag"), "{env}");
    assert!(!env.lines().any(|l| l == "NAME=web"), "{env}");

    // A registry reference is refused, saying why; a bad -e too.
    for (args, expected) in [
        (
            vec!["up", "-f", "ghcr.io/example/app:1.0"],
            "looks like a registry reference",
        ),
        (vec!["up", ".", "-e", "NOEQUALS"], "is not KEY=VALUE"),
    ] {
        let out = ferry().args(&args).output().unwrap();
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `--find-free-port` moves on from a taken port, as Spin's does; without
/// it a taken port is a clear error.
#[test]
fn a_taken_port_is_an_error_unless_ferry_may_find_a_free_one() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let state = tempfile::tempdir().unwrap();
    let up = |extra: &[&str]| {
        let mut command = ferry();
        command
            .arg("up")
            .arg(app.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state-dir")
            .arg(state.path())
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let refused = up(&[]).output().unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is in use (`--find-free-port` tries the next ports)"),
        "{}",
        text(&refused.stderr)
    );
    let mut child = up(&["--find-free-port"]).spawn().unwrap();
    let stdout = collect_lines(child.stdout.take().unwrap());
    let serving = eventually_blocking("ferry up to say where it serves", || {
        stdout.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("Serving http://127.0.0.1:")
                .map(str::to_owned)
        })
    });
    let _ = child.kill();
    let _ = child.wait();
    let found: u16 = serving.parse().unwrap();
    assert!(found > port && found <= port + 20, "{found} after {port}");
}

/// `-q` leaves the components' own lines out of `ferry up`'s output (as
/// `spin up -q`), not Ferry's access lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_silences_the_components_output() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    for (flags, shown) in [(&[][..], true), (&["-q"][..], false)] {
        let ferry = Ferry::start(&app, flags);
        let mark = ferry.log_mark();
        assert_eq!(get(&format!("{}/print", ferry.url)).await.status, 200);
        ferry
            .wait_for_log(mark, &["ferry::access", "path=\"/print\""])
            .await;
        let logs = ferry.logs_since(mark).join("\n");
        assert_eq!(
            logs.contains("a line on stdout from web"),
            shown,
            "{flags:?}: {logs}"
        );
    }
}
