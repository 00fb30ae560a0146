//! The command line itself: what a shell completes.

use std::process::Command;

use crate::support::*;
use ferry_test_programs::{COMPOSE_APP, COMPOSE_DEP, MW_HEADER};

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

    // A bad -e is refused, saying why (`-f REF` is `registry.rs`'s).
    let out = ferry()
        .args(["up", ".", "-e", "NOEQUALS"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not KEY=VALUE"),
        "{}",
        text(&out.stderr)
    );
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

/// `-c` runs only the chosen components' routes, and loads only them: a
/// broken component the user is not working on does not stop the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_id_runs_only_the_chosen_components() {
    let app = TestApp::new(&format!(
        "{}{}{}{}{}",
        trigger("/web/...", "web"),
        trigger("/other/...", "other"),
        trigger("/broken/...", "broken"),
        http_component("web", ""),
        http_component("other", ""),
    ));
    app.write("broken.wasm", "not wasm");
    let manifest = app.path().join("spin.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str("[component.broken]\nsource = \"broken.wasm\"\n");
    // One not built yet, with `files` that are not there either.
    toml.push_str(&format!(
        "{}[component.unbuilt]\nsource = \"target/unbuilt.wasm\"\nfiles = [{{ source = \"dist\", destination = \"/\" }}]\n[component.unbuilt.build]\ncommand = \"false\"\n",
        trigger("/unbuilt/...", "unbuilt")
    ));
    std::fs::write(&manifest, toml).unwrap();

    let whole = ferry()
        .arg("up")
        .arg(app.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!whole.status.success());
    assert!(
        text(&whole.stderr).contains("target/unbuilt.wasm"),
        "{}",
        text(&whole.stderr)
    );

    let two = Ferry::start(&app, &["-c", "web", "--component-id", "other"]);
    assert_eq!(
        get(&format!("{}/web/", two.url)).await.text(),
        "hello from web\n"
    );
    assert_eq!(
        get(&format!("{}/other/", two.url)).await.text(),
        "hello from other\n"
    );
    let only = Ferry::start(&app, &["-c", "web"]);
    assert_eq!(get(&format!("{}/web/", only.url)).await.status, 200);
    assert_eq!(get(&format!("{}/other/", only.url)).await.status, 404);

    // The runtime config may name a component `-c` leaves out.
    app.write(
        "runtime-config.toml",
        "[component.other.limits]\nmax_memory = \"64 MiB\"\n",
    );
    let configured = Ferry::start(&app, &["-c", "web"]);
    assert_eq!(get(&format!("{}/web/", configured.url)).await.status, 200);

    let unknown = ferry()
        .args(["up", "-c", "nope", "--listen", "127.0.0.1:0"])
        .arg(app.path())
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains(
            "the app has no component `nope` (its components: web, other, broken, unbuilt)"
        ),
        "{stderr}"
    );

    // Chosen, the unbuilt one is an error that says what to do.
    let unbuilt = ferry()
        .args(["up", "-c", "unbuilt", "--listen", "127.0.0.1:0"])
        .arg(app.path())
        .output()
        .unwrap();
    assert_eq!(unbuilt.status.code(), Some(3));
    let stderr = text(&unbuilt.stderr);
    assert!(
        stderr.contains("component `unbuilt`: its source")
            && stderr.contains("is not a file (build it: `ferry build -c unbuilt`"),
        "{stderr}"
    );
}

/// `-L DIR` keeps each component's output in its own files, as Spin's
/// `spin up -L` writes them, even when `-q` keeps it off the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_dir_keeps_each_components_output_in_files() {
    let app = TestApp::new(&format!(
        "{}{}{}{}",
        trigger("/a/...", "first"),
        trigger("/b/...", "second"),
        http_component("first", ""),
        http_component("second", ""),
    ));
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("made/by/ferry");
    let ferry = Ferry::start(&app, &["-q", "-L", dir.to_str().unwrap()]);
    let mark = ferry.log_mark();
    for path in ["/a/print", "/b/print", "/a/print"] {
        assert_eq!(get(&format!("{}{path}", ferry.url)).await.status, 200);
    }
    let file = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    eventually_blocking("three requests' output in the log files", || {
        let seen = (
            file("first_stdout.txt"),
            file("first_stderr.txt"),
            file("second_stdout.txt"),
            file("second_stderr.txt"),
        );
        if seen.0.lines().count() == 2 && seen.3.lines().count() == 1 {
            Ok(seen)
        } else {
            Err(seen)
        }
    });
    assert_eq!(
        file("first_stdout.txt"),
        "a line on stdout from first\na line on stdout from first\n"
    );
    assert_eq!(
        file("first_stderr.txt"),
        "a line on stderr from first\na line on stderr from first\n"
    );
    assert_eq!(file("second_stdout.txt"), "a line on stdout from second\n");
    assert_eq!(file("second_stderr.txt"), "a line on stderr from second\n");
    // Not on the terminal (`-q`).
    let terminal = ferry.logs_since(mark).join("\n");
    assert!(!terminal.contains("a line on stdout"), "{terminal}");
}

/// `--disable-pooling`: instances get memory of their own, so the pool's
/// `--max-instances` no longer turns requests away; the memory limit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_pooling_lifts_the_instance_pool_and_keeps_the_memory_limit() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let two_at_once = async |ferry: &Ferry| {
        let url = format!("{}/sleep?ms=400", ferry.url);
        let (a, b) = tokio::join!(get(&url), get(&url));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        statuses
    };
    let pooled = Ferry::start(&app, &["--max-instances", "1"]);
    assert_eq!(two_at_once(&pooled).await, [200, 503]);
    let unpooled = Ferry::start(&app, &["--max-instances", "1", "--disable-pooling"]);
    assert_eq!(two_at_once(&unpooled).await, [200, 200]);
    let oom = get(&format!("{}/oom", unpooled.url)).await;
    assert_eq!(oom.status, 500, "{}", oom.text());
    assert_eq!(get(&format!("{}/", unpooled.url)).await.status, 200);
}

/// `--temp` says where `files` are copied; `--direct-mounts` mounts
/// `{ source, destination }` directories in place instead, so the guest
/// reads the files as they are now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_and_direct_mounts_place_the_components_files() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component(
            "web",
            "files = [{ source = \"a\", destination = \"/a\" }, { source = \"b\", destination = \"/b\" }]"
        )
    ));
    let page = app.write("a/page.txt", "first");
    app.write("b/other.txt", "other");
    let read = async |ferry: &Ferry, path: &str| {
        get(&format!("{}/file?path={path}", ferry.url)).await.text()
    };

    let temp = tempfile::tempdir().unwrap();
    let copied = Ferry::start(&app, &["--temp", temp.path().to_str().unwrap()]);
    let staged: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(staged[0].join("a/page.txt").is_file(), "{staged:?}");
    let direct = Ferry::start(&app, &["--direct-mounts"]);
    for ferry in [&copied, &direct] {
        assert_eq!(read(ferry, "/a/page.txt").await, "first");
        assert_eq!(read(ferry, "/b/other.txt").await, "other");
    }

    std::fs::write(&page, "second").unwrap();
    assert_eq!(read(&copied, "/a/page.txt").await, "first");
    assert_eq!(read(&direct, "/a/page.txt").await, "second");

    // What is mounted in place is the directory there at start: swapped
    // for a symlink to elsewhere, the guest still reads that directory,
    // never what the link leads to.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("page.txt"), "secret").unwrap();
    std::fs::rename(app.path().join("a"), app.path().join("a-moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), app.path().join("a")).unwrap();
    assert_eq!(read(&direct, "/a/page.txt").await, "second");
    assert!(copied.terminate().success());
    let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert!(left.is_empty(), "the copy outlived ferry: {left:?}");
}

/// Ferry raises its soft open-files limit to the hard one: connections and
/// directories mounted in place each hold a descriptor, and services often
/// start with a soft limit of 1024.
#[test]
fn ferry_raises_its_open_file_limit_to_the_hard_one() {
    let app = TestApp::new(&format!(
        "{}{}",
        trigger("/...", "web"),
        http_component("web", "")
    ));
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=256:4096")
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(["up", "--listen", "127.0.0.1:0"])
        .arg(app.path())
        .env("FERRY_CACHE_DIR", cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("prlimit (util-linux)");
    let limits = format!("/proc/{}/limits", child.id());
    let line = eventually_blocking("ferry's open-files limit to be 4096", || {
        let text = std::fs::read_to_string(&limits).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))?
            .to_owned();
        line.split_whitespace()
            .nth(3)
            .is_some_and(|soft| soft == "4096")
            .then_some(line)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("4096"), "{line}");
}

/// `ferry new`'s refusals: each says why and writes nothing.
#[test]
fn new_refuses_what_it_cannot_make_and_writes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        ferry()
            .current_dir(parent.path())
            .arg("new")
            .args(args)
            .output()
            .unwrap()
    };
    let listed = run(&["--list"]);
    assert!(listed.status.success());
    let listed = text(&listed.stdout);
    for id in [
        "http-rust ",
        "http-rust-p3 ",
        "http-js ",
        "http-py ",
        "http-c ",
    ] {
        assert!(listed.contains(id), "{id} in {listed}");
    }
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/keep.txt"), "mine").unwrap();
    for (args, expected) in [
        (
            &["http-go", "app"][..],
            "there is no template `http-go`; the templates are http-rust, http-rust-p3, http-js, http-py, http-c",
        ),
        (
            &["http-rust", "My_App"][..],
            "`My_App` is not a usable app name",
        ),
        (
            &["http-rust", "../escape"][..],
            "`../escape` is not a usable app name",
        ),
        (
            &["http-rust", "taken"][..],
            "taken already exists and is not empty; nothing was written",
        ),
        (&["http-rust"][..], "give a template and a name"),
        (
            &["-t", "http-rust", "a", "b"][..],
            "with `-t TEMPLATE`, give only the app's name",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let left: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["taken"]);
    assert_eq!(
        std::fs::read_to_string(parent.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );

    // `-t` and `-o`, as `spin new -t … -o …`.
    let made = run(&["-t", "http-c", "web", "-o", "somewhere/web"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let manifest = std::fs::read_to_string(parent.path().join("somewhere/web/spin.toml")).unwrap();
    assert!(manifest.contains("name = \"web\""), "{manifest}");
}

/// `ferry build -f APP --up -- UP_ARGS`, as Spin's `spin build --up`:
/// builds, then serves what it built with `ferry up`'s arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_up_builds_then_serves() {
    let app = TestApp::new(&format!(
        "{}[component.web]\nsource = \"built.wasm\"\nenvironment = {{ NAME = \"built\" }}\n\
         [component.web.build]\ncommand = 'cp {HTTP_GUEST} built.wasm'\n",
        trigger("/...", "web")
    ));
    let state = tempfile::tempdir().unwrap();
    let mut child = ferry()
        .arg("build")
        .arg("-f")
        .arg(app.path())
        .args(["--up", "--", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = collect_lines(child.stdout.take().unwrap());
    let errors = collect_lines(child.stderr.take().unwrap());
    let url = eventually_blocking("ferry build --up to serve", || {
        let seen = lines.lock().unwrap().clone();
        seen.iter()
            .find_map(|l| l.strip_prefix("Serving ").map(str::to_owned))
            .ok_or_else(|| (seen, errors.lock().unwrap().clone()))
    });
    let reply = get(&format!("{url}/")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply.text(), "hello from built\n");
    assert!(app.path().join("built.wasm").is_file());
}

/// `-c ID` keeps a route that runs ID behind its own middleware (Ferry runs
/// a per-trigger copy of ID there), not only ID's plain routes.
#[test]
fn component_id_keeps_the_routes_that_run_it_behind_middleware() {
    let app = TestApp::new(&format!(
        "[[trigger.http]]\nid = \"guarded\"\nroute = \"/a/...\"\ncomponent = \"app\"\n\
         dependencies.middleware = [{{ path = {MW_HEADER:?} }}]\n\n\
         [[trigger.http]]\nroute = \"/b/...\"\ncomponent = \"app\"\n\n\
         [[trigger.http]]\nroute = \"/c/...\"\ncomponent = \"other\"\n\n\
         [component.app]\nsource = {HTTP_P3_GUEST:?}\n\n\
         [component.other]\nsource = {HTTP_P3_GUEST:?}\n"
    ));
    let checked = ferry_check_with(&app, &["-c", "app"]);
    let stdout = text(&checked.stdout);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    for route in ["/a/...", "/b/..."] {
        assert!(stdout.contains(route), "{route} in {stdout}");
    }
    assert!(!stdout.contains("/c/..."), "{stdout}");

    // As Spin, a chosen component that may chain to one left out is an
    // error naming both.
    let manifest = app.path().join("spin.toml");
    let toml = std::fs::read_to_string(&manifest).unwrap().replace(
        "[component.app]\n",
        "[component.app]\nallowed_outbound_hosts = [\"http://other.spin.internal\"]\n",
    );
    std::fs::write(&manifest, toml).unwrap();
    let refused = ferry_check_with(&app, &["-c", "app"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains(
            "component `app` may send requests to `other.spin.internal` (its allowed_outbound_hosts), which this choice of components leaves out: choose it too (`-c other`)"
        ),
        "{}",
        text(&refused.stderr)
    );
}

/// Without the pool, its table bound (200,000 elements) still holds: a
/// guest growing a table by 50 million elements is refused either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_pooling_keeps_tables_bounded() {
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (table $t 1 funcref)
          (data (i32.const 100) "Content-Type: text/plain\n\ngrown\n")
          (data (i32.const 200) "Content-Type: text/plain\n\nrefused\n")
          (func (export "_start")
            (if (i32.eq (table.grow $t (ref.null func) (i32.const 50000000)) (i32.const -1))
              (then (i32.store (i32.const 0) (i32.const 200))
                    (i32.store (i32.const 4) (i32.const 34)))
              (else (i32.store (i32.const 0) (i32.const 100))
                    (i32.store (i32.const 4) (i32.const 32))))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    let app = TestApp::new(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"grow\"\nexecutor = { type = \"wagi\" }\n\n\
         [component.grow]\nsource = \"grow.wasm\"\n",
    );
    std::fs::write(app.path().join("grow.wasm"), wasm).unwrap();
    for flags in [&[][..], &["--disable-pooling"][..]] {
        let ferry = Ferry::start(&app, flags);
        let reply = get(&format!("{}/", ferry.url)).await;
        assert_eq!(reply.text(), "refused\n", "{flags:?}");
    }
}

/// `--build -c ID` builds what `-c ID` loads: ID and the components its
/// dependencies take Wasm from; `ferry build --up` reads `ferry up`'s
/// arguments before it builds anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_with_component_id_builds_what_it_loads() {
    let app = TestApp::new(&format!(
        "{}[component.app]\nsource = \"app.wasm\"\n\
         dependencies = {{ \"ferry:compose\" = {{ component = \"greeter\" }} }}\n\
         [component.app.build]\ncommand = 'cp {COMPOSE_APP} app.wasm'\n\n\
         [component.greeter]\nsource = \"greeter.wasm\"\n\
         [component.greeter.build]\ncommand = 'cp {COMPOSE_DEP} greeter.wasm'\n\n\
         [component.unused]\nsource = \"unused.wasm\"\n\
         [component.unused.build]\ncommand = 'touch unused-built'\n",
        trigger("/...", "app")
    ));
    // Built once already (every source must be there to load).
    std::fs::copy(HTTP_GUEST, app.path().join("unused.wasm")).unwrap();
    let bad = ferry()
        .arg("build")
        .arg(app.path())
        .args(["--up", "--", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        !app.path().join("app.wasm").exists(),
        "built before the arguments were read"
    );

    let ferry = Ferry::start(&app, &["--build", "-c", "app"]);
    let reply = get(&format!("{}/greet?you", ferry.url)).await;
    assert_eq!(reply.text(), "hello, you, from the dependency");
    assert!(app.path().join("greeter.wasm").is_file());
    assert!(!app.path().join("unused-built").exists());
}
