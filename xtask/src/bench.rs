//! `cargo xtask bench`: Ferry side by side with a native hyper server and
//! `wasmtime serve`, on the same guest, in one run.
//!
//! Servers are pinned to the first CPU and `wrk` to the second when the
//! machine has two or more; runs alternate between servers (A B C A B C) so
//! that drift in the machine's speed shows up in every column alike. The
//! figures, with the machine, versions and commands, are printed and written
//! into BENCHMARKS.md between two marker lines; everything started is stopped
//! on the way out, error or not.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::native::HELLO;
use crate::process::{self, Process, pinned};
use crate::report::{self, Machine, Report};
use crate::wrk::{self, Load, WrkResult};

/// The wasmtime version Ferry pins (Cargo.toml): `wasmtime serve` of the
/// same engine is the baseline.
pub const WASMTIME_VERSION: &str = "48.0.8";

#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub connections: u32,
    pub rounds: u32,
    /// How many distinct components the many-components run loads.
    pub components: usize,
    /// `wasmtime` to use instead of finding or installing one.
    pub wasmtime: Option<PathBuf>,
    /// Where to write the report; `None` prints it only.
    pub output: Option<PathBuf>,
    /// Run only this part (and write only its part of BENCHMARKS.md).
    pub only: Option<report::Section>,
    /// Idle keep-alive connections the overload part holds open.
    pub idle_connections: usize,
}

/// Where everything lives for one run.
pub(crate) struct Setup {
    pub root: PathBuf,
    pub work: PathBuf,
    pub ferry: PathBuf,
    /// `None` when only the state section runs, which needs no baseline
    /// server.
    wasmtime: Option<PathBuf>,
    pub hello: PathBuf,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_owned();
    for tool in ["wrk", "taskset"] {
        ensure!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()?
                .status
                .success(),
            "`{tool}` is not installed (apt-get install wrk util-linux)"
        );
    }
    let runs = |section| options.only.is_none_or(|only| only == section);
    let wasmtime = match &options.wasmtime {
        Some(path) => Some(path.clone()),
        None if runs(report::Section::Serving) => Some(find_or_install_wasmtime()?),
        None => None,
    };
    let ferry = build_ferry(&root)?;
    let work = root.join("target").join("xtask-bench");
    let _ = std::fs::remove_dir_all(work.join("run"));
    std::fs::create_dir_all(work.join("run"))?;
    let hello = PathBuf::from(ferry_test_programs::HELLO);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_cpus, client_cpus) = if cores >= 2 {
        (Some("0".to_owned()), Some((cores - 1).to_string()))
    } else {
        (None, None)
    };
    let setup = Setup {
        root,
        work,
        ferry,
        wasmtime,
        hello,
        server_cpus,
        client_cpus,
    };
    let machine = Machine::read(&setup.root, setup.wasmtime.as_deref());

    let mut sections = Vec::new();
    if runs(report::Section::Serving) {
        let mut report = Report {
            machine: machine.clone(),
            options: options.clone(),
            server_cpus: setup.server_cpus.clone(),
            client_cpus: setup.client_cpus.clone(),
            hello_bytes: std::fs::metadata(&setup.hello)?.len(),
            ..Report::default()
        };
        eprintln!("== throughput on one server core");
        report.throughput = throughput(&setup, options)?;
        eprintln!("== one server core against two");
        report.scaling = scaling(&setup, options)?;
        eprintln!("== start-up");
        report.startup = startup(&setup)?;
        eprintln!("== {} components", options.components);
        report.many = many_components(&setup, options.components)?;
        sections.push((report::Section::Serving, report.to_markdown()));
    }
    if runs(report::Section::State) {
        eprintln!("== key-value stores through a guest");
        let state = crate::state::run(&setup, options)?;
        sections.push((
            report::Section::State,
            report::state_markdown(&machine, options, &setup, &state),
        ));
    }
    if runs(report::Section::Overload) {
        eprintln!("== overload");
        let overload = crate::overload::run(&setup, options)?;
        sections.push((
            report::Section::Overload,
            report::overload_markdown(&machine, options, &overload),
        ));
    }
    if runs(report::Section::Host) {
        eprintln!("== live host");
        let host = crate::host::run(&setup, options)?;
        sections.push((
            report::Section::Host,
            report::host_markdown(&machine, options, &host),
        ));
    }

    if runs(report::Section::Cluster) {
        eprintln!("== cluster");
        let cluster = crate::cluster::run(&setup, options)?;
        sections.push((
            report::Section::Cluster,
            report::cluster_markdown(&machine, options, &cluster),
        ));
    }

    if runs(report::Section::Triggers) {
        eprintln!("== event triggers");
        let triggers = crate::triggers::run(&setup, options)?;
        sections.push((
            report::Section::Triggers,
            report::triggers_markdown(&machine, options, &triggers),
        ));
    }

    for (section, markdown) in sections {
        println!("{markdown}");
        if let Some(output) = &options.output {
            report::write_into(output, section, &markdown)?;
            eprintln!("wrote the figures into {}", output.display());
        }
    }
    Ok(())
}

/// `wasmtime` of the pinned version from PATH or ~/.cargo/bin, installed
/// with `cargo install` when missing (a long build: ~10 minutes on 2 cores).
fn find_or_install_wasmtime() -> anyhow::Result<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("wasmtime"));
    let candidates = [Some(PathBuf::from("wasmtime")), cargo_bin];
    for candidate in candidates.iter().flatten() {
        if let Ok(output) = Command::new(candidate).arg("--version").output()
            && String::from_utf8_lossy(&output.stdout).contains(WASMTIME_VERSION)
        {
            return Ok(candidate.clone());
        }
    }
    eprintln!("installing wasmtime-cli {WASMTIME_VERSION} (cargo install; takes several minutes)");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "--locked",
            "wasmtime-cli",
            "--version",
            WASMTIME_VERSION,
        ])
        .status()?;
    ensure!(status.success(), "cargo install wasmtime-cli failed");
    candidates
        .into_iter()
        .flatten()
        .last()
        .context("cannot tell where cargo installed wasmtime")
}

fn build_ferry(root: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("building ferry (release)");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    without_cargo_package_env(&mut command);
    let status = command
        .current_dir(root)
        .args(["build", "--release", "--locked", "--quiet", "-p", "ferry"])
        .status()?;
    ensure!(status.success(), "building ferry failed");
    Ok(root.join("target").join("release").join("ferry"))
}

/// Removes the package variables `cargo run` gave this process from a
/// command that runs cargo: build scripts that watch them (ring's does)
/// would see a change and rebuild half of the dependency graph, and again
/// on the next plain `cargo build`.
pub(crate) fn without_cargo_package_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
}

/// Writes an app serving the hello guests: `/...` the wasi:http component,
/// `/wagi` the C WAGI module.
fn write_hello_app(dir: &Path, hello: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(hello, dir.join("hello.wasm"))?;
    std::fs::copy(
        ferry_test_programs::WAGI_HELLO_C,
        dir.join("wagi-hello.wasm"),
    )?;
    std::fs::write(
        dir.join("spin.toml"),
        r#"spin_manifest_version = 2

[application]
name = "bench"

[[trigger.http]]
route = "/..."
component = "hello"

[[trigger.http]]
route = "/wagi"
component = "wagi-hello"
executor = { type = "wagi" }

[component.hello]
source = "hello.wasm"

[component.wagi-hello]
source = "wagi-hello.wasm"
"#,
    )?;
    Ok(())
}

/// A server under test and the URLs it is loaded at.
pub(crate) struct Running {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Setup {
    pub fn log(&self, name: &str) -> PathBuf {
        self.work.join("run").join(format!("{name}.log"))
    }

    fn start_native(&self) -> anyhow::Result<Running> {
        let port = process::free_port()?;
        let mut command = pinned(self.server_cpus.as_deref(), std::env::current_exe()?);
        command.args(["native-hello", "--listen", &format!("127.0.0.1:{port}")]);
        self.start("native", command, port)
    }

    fn start_wasmtime(&self) -> anyhow::Result<Running> {
        let port = process::free_port()?;
        let wasmtime = self.wasmtime.as_ref().context("no wasmtime for this run")?;
        let mut command = pinned(self.server_cpus.as_deref(), wasmtime);
        command
            .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
            .arg(&self.hello);
        self.start("wasmtime-serve", command, port)
    }

    /// `ferry up` of `app` on `cpus`, with its own compile cache.
    pub fn ferry_command(
        &self,
        app: &Path,
        cpus: Option<&str>,
        port: u16,
        cache: &Path,
    ) -> Command {
        let mut command = pinned(cpus, &self.ferry);
        command
            .arg("up")
            .arg(app)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--cache-dir")
            .arg(cache);
        command
    }

    pub fn start_ferry(
        &self,
        name: &str,
        cpus: Option<&str>,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Running> {
        let app = self.work.join("run").join("app");
        if !app.exists() {
            write_hello_app(&app, &self.hello)?;
        }
        let port = process::free_port()?;
        let mut command = self.ferry_command(&app, cpus, port, &self.work.join("cache"));
        configure(&mut command);
        self.start(name, command, port)
    }

    pub fn start(&self, name: &str, command: Command, port: u16) -> anyhow::Result<Running> {
        let mut process = Process::spawn(name, command, &self.log(name))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        process::wait_until_serving(&mut process, addr, "/")?;
        Ok(Running { process, addr })
    }

    pub fn load(&self, cpus: Option<&str>, options: &Options) -> Load {
        Load {
            connections: options.connections,
            duration: options.duration,
            cpus: cpus.map(str::to_owned),
        }
    }
}

/// One column of the throughput table.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub runs: Vec<WrkResult>,
    /// Server CPU time used per run, where it was measured.
    pub cpu_seconds: Vec<f64>,
}

impl Series {
    pub fn requests_per_sec(&self) -> f64 {
        self.runs.iter().map(|r| r.requests_per_sec).sum::<f64>() / self.runs.len().max(1) as f64
    }

    pub fn p50(&self) -> Duration {
        let total: Duration = self.runs.iter().map(|r| r.p50).sum();
        total / u32::try_from(self.runs.len().max(1)).unwrap_or(1)
    }

    /// The worst run's p99.
    pub fn p99(&self) -> Duration {
        self.runs.iter().map(|r| r.p99).max().unwrap_or_default()
    }
}

/// One server and request that a run of `wrk` loads, and where its
/// figures go.
pub(crate) struct Target<'a> {
    pub series: &'a mut Series,
    pub server: &'a Running,
    pub path: &'a str,
    /// A wrk Lua script that makes the requests instead (method, body,
    /// paths).
    pub script: Option<&'a Path>,
}

impl<'a> Target<'a> {
    pub fn get(series: &'a mut Series, server: &'a Running, path: &'a str) -> Self {
        Self {
            series,
            server,
            path,
            script: None,
        }
    }

    fn run(&self, load: &Load) -> anyhow::Result<WrkResult> {
        wrk::run(
            &format!("http://{}{}", self.server.addr, self.path),
            self.script,
            load,
        )
    }
}

/// Loads each target in turn, `rounds` times.
pub(crate) fn alternate(
    targets: &mut [Target<'_>],
    load: &Load,
    rounds: u32,
) -> anyhow::Result<()> {
    let warm_up = Load {
        duration: Duration::from_secs(1),
        ..load.clone()
    };
    for target in targets.iter() {
        target.run(&warm_up)?;
    }
    for round in 1..=rounds {
        for target in targets.iter_mut() {
            let server = target.server;
            let before = server.process.cpu_time()?;
            let result = target.run(load)?;
            let cpu = server.process.cpu_time()? - before;
            let series = &mut *target.series;
            eprintln!(
                "  round {round}: {:<36} {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  server CPU {:.2} s",
                series.name,
                result.requests_per_sec,
                result.p50.as_secs_f64() * 1e3,
                result.p99.as_secs_f64() * 1e3,
                cpu.as_secs_f64(),
            );
            ensure!(
                result.errors == 0,
                "{}: {} failed requests in a run; see {}",
                series.name,
                result.errors,
                server.process.name
            );
            series.runs.push(result);
            series.cpu_seconds.push(cpu.as_secs_f64());
        }
    }
    Ok(())
}

/// Checks that a server answers `path` with the hello bytes.
fn check_hello(server: &Running, path: &str) -> anyhow::Result<process::Reply> {
    let reply = process::get(server.addr, path)?;
    ensure!(
        reply.status == 200 && reply.body == HELLO,
        "{} answered {} {:?} to {path}, not the hello bytes",
        server.process.name,
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    Ok(reply)
}

#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub native: Series,
    pub wasmtime: Series,
    pub ferry: Series,
    pub wagi: Series,
    pub ferry_backtrace: Series,
}

fn throughput(setup: &Setup, options: &Options) -> anyhow::Result<Throughput> {
    let cpus = setup.server_cpus.as_deref();
    let native = setup.start_native()?;
    let wasmtime = setup.start_wasmtime()?;
    let ferry = setup.start_ferry("ferry", cpus, |_| {})?;
    let ferry_backtrace = setup.start_ferry("ferry-backtrace", cpus, |c| {
        c.env("RUST_BACKTRACE", "1");
    })?;
    for server in [&native, &wasmtime, &ferry] {
        check_hello(server, "/")?;
    }
    check_hello(&ferry, "/wagi")?;
    // Isolation is not traded for speed: every request sees a fresh
    // instance, whose counter is 1.
    for server in [&ferry, &wasmtime] {
        for _ in 0..3 {
            let reply = check_hello(server, "/")?;
            ensure!(
                reply.header("x-instance-requests") == Some("1"),
                "{} reused an instance: x-instance-requests {:?}",
                server.process.name,
                reply.header("x-instance-requests")
            );
        }
    }

    let mut result = Throughput {
        native: named("native hyper"),
        wasmtime: named(&format!("wasmtime serve -Scli {WASMTIME_VERSION}")),
        ferry: named("Ferry, wasi:http hello (Rust)"),
        wagi: named("Ferry, WAGI hello (C)"),
        ferry_backtrace: named("Ferry, wasi:http, RUST_BACKTRACE=1"),
    };
    let load = setup.load(setup.client_cpus.as_deref(), options);
    alternate(
        &mut [
            Target::get(&mut result.native, &native, "/"),
            Target::get(&mut result.wasmtime, &wasmtime, "/"),
            Target::get(&mut result.ferry, &ferry, "/"),
            Target::get(&mut result.wagi, &ferry, "/wagi"),
            Target::get(&mut result.ferry_backtrace, &ferry_backtrace, "/"),
        ],
        &load,
        options.rounds,
    )?;
    Ok(result)
}

pub(crate) fn named(name: &str) -> Series {
    Series {
        name: name.to_owned(),
        ..Series::default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Scaling {
    pub one: Series,
    pub two: Series,
}

/// Ferry on one core against Ferry on two, the load generator unpinned:
/// on a two-core machine it shares the cores with the two-core server.
fn scaling(setup: &Setup, options: &Options) -> anyhow::Result<Scaling> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut result = Scaling {
        one: named("Ferry, 1 core"),
        two: named("Ferry, 2 cores"),
    };
    if cores < 2 {
        eprintln!("  skipped: this machine has one core");
        return Ok(result);
    }
    let one = setup.start_ferry("ferry-1-core", Some("0"), |_| {})?;
    let two = setup.start_ferry("ferry-2-cores", Some("0,1"), |_| {})?;
    let load = setup.load(None, options);
    alternate(
        &mut [
            Target::get(&mut result.one, &one, "/"),
            Target::get(&mut result.two, &two, "/"),
        ],
        &load,
        options.rounds,
    )?;
    Ok(result)
}

#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// Per run: the time `ferry up` printed for compiling the hello guest.
    pub first_compile: Vec<Duration>,
    /// Per run: from the first accepted connection to the first response,
    /// with the compile cache warm.
    pub first_request_after_listen: Vec<Duration>,
    /// Per run: from starting the process to the first response.
    pub first_request_after_spawn: Vec<Duration>,
}

fn startup(setup: &Setup) -> anyhow::Result<Startup> {
    let app = setup.work.join("run").join("startup-app");
    std::fs::create_dir_all(&app)?;
    std::fs::copy(&setup.hello, app.join("hello.wasm"))?;
    std::fs::write(
        app.join("spin.toml"),
        "spin_manifest_version = 2\n\n[application]\nname = \"startup\"\n\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n\n\
         [component.hello]\nsource = \"hello.wasm\"\n",
    )?;
    let mut result = Startup::default();
    let cache = setup.work.join("run").join("startup-cache");
    for run in 0..3 {
        // An empty cache each time: this is the first compile.
        let _ = std::fs::remove_dir_all(&cache);
        let port = process::free_port()?;
        let command = setup.ferry_command(&app, None, port, &cache);
        let mut ferry = Process::spawn("ferry-first-compile", command, &setup.log("startup"))?;
        let line = ferry.wait_for_line(Duration::from_secs(60), |l| {
            l.starts_with("Compiled `hello`")
        })?;
        let took = parse_printed_duration(&line)
            .with_context(|| format!("reading the compile time in `{line}`"))?;
        eprintln!("  first compile, run {}: {took:?}", run + 1);
        result.first_compile.push(took);
    }
    for run in 0..5 {
        let port = process::free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let command = setup.ferry_command(&app, None, port, &cache);
        let spawned = Instant::now();
        let _ferry = Process::spawn("ferry-first-request", command, &setup.log("startup"))?;
        let (mut stream, listening) = loop {
            if let Ok(stream) = std::net::TcpStream::connect(addr) {
                break (stream, Instant::now());
            }
            ensure!(
                spawned.elapsed() < Duration::from_secs(30),
                "ferry did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        let reply = process::get_on(&mut stream, addr, "/")?;
        ensure!(
            reply.status == 200 && reply.body == HELLO,
            "bad first reply"
        );
        let after_listen = listening.elapsed();
        let after_spawn = spawned.elapsed();
        eprintln!(
            "  first request, run {}: {after_listen:?} after the listener opened, {after_spawn:?} after spawning",
            run + 1
        );
        result.first_request_after_listen.push(after_listen);
        result.first_request_after_spawn.push(after_spawn);
    }
    Ok(result)
}

/// `Compiled `hello` (71.3 KiB) in 97.2 ms` → 97.2 ms.
pub(crate) fn parse_printed_duration(line: &str) -> anyhow::Result<Duration> {
    let (_, tail) = line.rsplit_once(" in ").context("no ` in `")?;
    let (number, unit) = tail.trim().split_once(' ').context("no unit")?;
    let number: f64 = number.parse()?;
    Ok(Duration::from_secs_f64(match unit {
        "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => bail!("unknown unit `{unit}`"),
    }))
}

#[derive(Debug, Clone, Default)]
pub struct Many {
    pub components: usize,
    pub startup: Duration,
    pub idle_rss: process::Rss,
    pub rss_after_requests: process::Rss,
    /// Each component's first request, over a new connection.
    pub first_requests: Vec<Duration>,
}

/// `count` distinct components (the hello guest, each with a different
/// custom section, so each is compiled and loaded on its own), one route
/// each, in one app.
fn many_components(setup: &Setup, count: usize) -> anyhow::Result<Many> {
    let app = setup.work.join("many-app");
    let hello = std::fs::read(&setup.hello)?;
    std::fs::create_dir_all(&app)?;
    let mut manifest =
        String::from("spin_manifest_version = 2\n\n[application]\nname = \"many\"\n\n");
    for i in 0..count {
        writeln!(
            manifest,
            "[[trigger.http]]\nroute = \"/c{i}\"\ncomponent = \"c{i}\"\n\n\
             [component.c{i}]\nsource = \"c{i}.wasm\"\n"
        )?;
        let path = app.join(format!("c{i}.wasm"));
        let wasm = with_custom_section(&hello, "ferry-bench-variant", i.to_string().as_bytes());
        if std::fs::read(&path).ok().as_deref() != Some(wasm.as_slice()) {
            std::fs::write(&path, wasm)?;
        }
    }
    std::fs::write(app.join("spin.toml"), manifest)?;
    // Compile what the (kept) cache lacks first, so `ferry up` below
    // measures loading, not compiling.
    let cache = setup.work.join("many-cache");
    let compiled = Instant::now();
    let status = Command::new(&setup.ferry)
        .arg("check")
        .arg(&app)
        .arg("--cache-dir")
        .arg(&cache)
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "ferry check of {count} components failed");
    eprintln!(
        "  compiled or checked {count} components in {:?}",
        compiled.elapsed()
    );

    let port = process::free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let command = setup.ferry_command(&app, setup.server_cpus.as_deref(), port, &cache);
    let spawned = Instant::now();
    let mut ferry = Process::spawn("ferry-many", command, &setup.log("many"))?;
    ferry.wait_for_line(Duration::from_secs(600), |l| l.starts_with("Serving "))?;
    let startup = spawned.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = ferry.rss()?;
    let mut first_requests = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let reply = process::get(addr, &format!("/c{i}"))?;
        first_requests.push(started.elapsed());
        ensure!(
            reply.status == 200 && reply.body == HELLO,
            "component c{i} answered {}",
            reply.status
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_requests = ferry.rss()?;
    eprintln!(
        "  started in {startup:?}; idle RSS {} MiB, {} MiB after one request each",
        idle_rss.total >> 20,
        rss_after_requests.total >> 20
    );
    Ok(Many {
        components: count,
        startup,
        idle_rss,
        rss_after_requests,
        first_requests,
    })
}

/// `wasm` with a custom section appended (valid at the end of a module or
/// a component), which makes it a different program to every cache.
pub(crate) fn with_custom_section(wasm: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_compile_time_ferry_prints() {
        assert_eq!(
            parse_printed_duration("Compiled `hello` (71.3 KiB) in 97.5 ms").unwrap(),
            Duration::from_secs_f64(0.0975)
        );
        assert_eq!(
            parse_printed_duration("Compiled `big` (12.4 MiB) in 41.00 s").unwrap(),
            Duration::from_secs(41)
        );
    }

    #[test]
    fn custom_sections_are_encoded_with_their_lengths() {
        let out = with_custom_section(b"\0asm", "ab", &[7; 200]);
        // id 0, size 203 (LEB128: 0xcb 0x01), name length 2, "ab", data.
        assert_eq!(&out[..9], b"\0asm\0\xcb\x01\x02a");
        assert_eq!(out.len(), 4 + 1 + 2 + 1 + 2 + 200);
    }
}
