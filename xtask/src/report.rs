//! The benchmark's report: the machine it ran on, the figures, the ratios
//! against the baselines of the same run, and the targets, as
//! markdown for BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bench::{Many, Options, Scaling, Series, Setup, Startup, Throughput};
use crate::host::{CACHED_SAMPLES, LiveHost, Sample};
use crate::overload::{CONNECTIONS, Overload};
use crate::state::State;

/// A part of BENCHMARKS.md that the benchmark writes, between marker lines
/// of its own, so that running one part (`--only`) rewrites only that part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Throughput, scaling, start-up and many components.
    Serving,
    /// Key-value stores through a guest.
    State,
    /// Goodput at more connections than the host runs at once.
    Overload,
    /// `ferry serve`: redeploys, serving during them, many apps.
    Host,
    /// A cluster on NATS JetStream: deploys to every node, key-value on NATS.
    Cluster,
    /// Event triggers: messages per second through Redis and NATS triggers.
    Triggers,
}

impl Section {
    fn markers(self) -> (&'static str, &'static str) {
        match self {
            Section::Serving => (
                "<!-- cargo xtask bench: begin (generated; edits here are overwritten) -->",
                "<!-- cargo xtask bench: end -->",
            ),
            Section::State => (
                "<!-- cargo xtask bench, key-value: begin (generated; edits here are overwritten) -->",
                "<!-- cargo xtask bench, key-value: end -->",
            ),
            Section::Overload => (
                "<!-- cargo xtask bench, overload: begin (generated; edits here are overwritten) -->",
                "<!-- cargo xtask bench, overload: end -->",
            ),
            Section::Host => (
                "<!-- cargo xtask bench, live host: begin (generated; edits here are overwritten) -->",
                "<!-- cargo xtask bench, live host: end -->",
            ),
            Section::Cluster => (
                "<!-- cargo xtask bench, cluster: begin (generated; edits here are overwritten) -->",
                "<!-- cargo xtask bench, cluster: end -->",
            ),
            Section::Triggers => (
                "<!-- cargo xtask bench, triggers: begin (generated; edits here are overwritten) -->",
                "<!-- cargo xtask bench, triggers: end -->",
            ),
        }
    }
}

/// Where and with what a run happened.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub rustc: String,
    pub wasmtime: String,
    pub wrk: String,
    pub ferry_commit: String,
}

fn command_output(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    /// `Run <date> on <machine>; Ferry <commit> …`, for sections without a
    /// `wasmtime` baseline.
    fn run_line(&self) -> String {
        format!(
            "Run {} on {} × {} ({}), {}; Ferry {} (release profile), {}.",
            self.date, self.cores, self.cpu, self.kernel, self.rustc, self.ferry_commit, self.wrk,
        )
    }

    pub fn read(root: &Path, wasmtime: Option<&Path>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown CPU".into(), |(_, v)| v.trim().to_owned());
        let root = root.to_string_lossy();
        let commit = command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
        let dirty = !command_output("git", &["-C", &root, "status", "--porcelain"]).is_empty();
        Self {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: command_output("uname", &["-sr"]),
            rustc: command_output("rustc", &["-V"]),
            wasmtime: wasmtime.map_or_else(
                || "no wasmtime".into(),
                |wasmtime| command_output(wasmtime, &["--version"]),
            ),
            wrk: crate::wrk::version(),
            ferry_commit: if dirty {
                format!("{commit} + uncommitted changes")
            } else {
                commit
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub machine: Machine,
    pub options: Options,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub hello_bytes: u64,
    pub throughput: Throughput,
    pub scaling: Scaling,
    pub startup: Startup,
    pub many: Many,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(8),
            connections: 32,
            rounds: 2,
            components: 1000,
            wasmtime: None,
            output: None,
            only: None,
            idle_connections: 10_000,
        }
    }
}

/// `381 µs`, `1.67 ms`, `2.10 s`.
fn time(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

fn rss(rss: &crate::process::Rss) -> String {
    format!(
        "{} ({} anonymous, {} file-backed)",
        mib(rss.total),
        mib(rss.anonymous),
        mib(rss.file)
    )
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let o = &self.options;
        let t = &self.throughput;
        let _ = writeln!(out, "## Side by side: `cargo xtask bench`\n");
        let _ = writeln!(
            out,
            "Run {} on {} × {} ({}), {}; Ferry {} (release profile), {}, {}.\n",
            m.date, m.cores, m.cpu, m.kernel, m.rustc, m.ferry_commit, m.wasmtime, m.wrk,
        );
        let _ = writeln!(
            out,
            "Command: `cargo xtask bench` ({} rounds of `wrk -t1 -c{} -d{}s --latency` per server, alternating \
             A B C…; servers on {}, wrk on {}; every server started without `RUST_BACKTRACE` except the row that \
             says so). Guests: `crates/test-programs/guests/src/bin/hello.rs` ({} bytes, wasm32-wasip2, \
             opt-level z + LTO) and `crates/test-programs/c/hello.c` (WAGI); the native server is \
             `cargo xtask native-hello` (hyper 1.x, one current-thread runtime). All answer `Hello, world!\\n`.\n",
            o.rounds,
            o.connections,
            o.duration.as_secs(),
            pin(&self.server_cpus),
            pin(&self.client_cpus),
            self.hello_bytes,
        );

        let _ = writeln!(out, "### Throughput and latency, one server core\n");
        let _ = writeln!(
            out,
            "| server | req/s per run | mean req/s | p50 | p99 (worst run) | server CPU per request | vs `wasmtime serve` | vs native |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        let wasmtime_rps = t.wasmtime.requests_per_sec();
        let native_rps = t.native.requests_per_sec();
        for series in [
            &t.native,
            &t.wasmtime,
            &t.ferry,
            &t.wagi,
            &t.ferry_backtrace,
        ] {
            let rps = series.requests_per_sec();
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {:.2}x | {:.0}% |",
                series.name,
                runs(series),
                rps,
                time(series.p50()),
                time(series.p99()),
                cpu_per_request(series),
                rps / wasmtime_rps,
                100.0 * rps / native_rps,
            );
        }

        let s = &self.scaling;
        let _ = writeln!(out, "\n### One server core against two\n");
        let _ = writeln!(
            out,
            "Both Ferry servers serve the hello guest; wrk is unpinned, so with two server cores on a two-core \
             machine it competes with the server for CPU. \"Server cores busy\" is the server's CPU time divided \
             by the run's length.\n"
        );
        let _ = writeln!(
            out,
            "| server | req/s per run | mean req/s | p99 (worst run) | server cores busy | server CPU per request |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for series in [&s.one, &s.two] {
            let busy = series.cpu_seconds.iter().sum::<f64>()
                / (series.cpu_seconds.len().max(1) as f64 * o.duration.as_secs_f64());
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {:.2} | {} |",
                series.name,
                runs(series),
                series.requests_per_sec(),
                time(series.p99()),
                busy,
                cpu_per_request(series),
            );
        }

        let st = &self.startup;
        let many = &self.many;
        let _ = writeln!(out, "\n### Start-up and many components\n");
        let _ = writeln!(
            out,
            "| measurement | runs | result |\n|---|---|---|\n\
             | first compile of the hello component (empty cache; the time `ferry up` prints) | {} | median {} |\n\
             | first response after the listener accepts, compile cache warm | {} | median {}, worst {} |\n\
             | first response after starting `ferry up`, cache warm | {} | median {} |\n\
             | `ferry up` of {} distinct components until `Serving`, cache warm | 1 | {} |\n\
             | RSS, idle after loading {} components | 1 | {} |\n\
             | RSS after each component served one request | 1 | {} |\n\
             | each component's first request (new connection each) | {} | p50 {}, p99 {}, worst {} |",
            st.first_compile.len(),
            time(median(&st.first_compile)),
            st.first_request_after_listen.len(),
            time(median(&st.first_request_after_listen)),
            time(
                st.first_request_after_listen
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default()
            ),
            st.first_request_after_spawn.len(),
            time(median(&st.first_request_after_spawn)),
            many.components,
            time(many.startup),
            many.components,
            rss(&many.idle_rss),
            rss(&many.rss_after_requests),
            many.first_requests.len(),
            time(percentile(&many.first_requests, 0.5)),
            time(percentile(&many.first_requests, 0.99)),
            time(
                many.first_requests
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default()
            ),
        );

        let ferry_rps = t.ferry.requests_per_sec();
        let scaling = s.two.requests_per_sec() / s.one.requests_per_sec();
        let worst_first = many
            .first_requests
            .iter()
            .max()
            .copied()
            .unwrap_or_default();
        let worst_listen = st
            .first_request_after_listen
            .iter()
            .max()
            .copied()
            .unwrap_or_default();
        let _ = writeln!(out, "\n### Targets (issue #3)\n");
        let _ = writeln!(out, "| # | target | measured | met |\n|---|---|---|---|");
        let many_rss = format!("{} components: idle RSS under 300 MB", many.components);
        let many_first = format!(
            "{} components: each first request under 1 ms",
            many.components
        );
        let rows: [(&str, &str, String, bool); 9] = [
            (
                "1",
                "hello world ≥ 5x `wasmtime serve`, per core",
                format!("{:.2}x", ferry_rps / wasmtime_rps),
                ferry_rps >= 5.0 * wasmtime_rps,
            ),
            (
                "1",
                "hello world ≥ 40% of native hyper, per core",
                format!("{:.0}%", 100.0 * ferry_rps / native_rps),
                ferry_rps >= 0.4 * native_rps,
            ),
            (
                "2",
                "p99 under 2 ms at 32 connections",
                time(t.ferry.p99()),
                t.ferry.p99() < Duration::from_millis(2),
            ),
            (
                "3",
                "WAGI hello (C) ≥ 3x `wasmtime serve`'s hello world",
                format!("{:.2}x", t.wagi.requests_per_sec() / wasmtime_rps),
                t.wagi.requests_per_sec() >= 3.0 * wasmtime_rps,
            ),
            (
                "4",
                "two server cores ≥ 1.8x one",
                format!("{scaling:.2}x"),
                scaling >= 1.8,
            ),
            (
                "5",
                "first request under 10 ms after the listener opens (cache warm)",
                format!("worst {}", time(worst_listen)),
                worst_listen < Duration::from_millis(10),
            ),
            (
                "5",
                "first compile of the hello component under 150 ms",
                time(median(&st.first_compile)),
                median(&st.first_compile) < Duration::from_millis(150),
            ),
            (
                "6",
                &many_rss,
                format!(
                    "{} ({:.0} MB)",
                    mib(many.idle_rss.total),
                    many.idle_rss.total as f64 / 1e6
                ),
                many.idle_rss.total < 300_000_000,
            ),
            (
                "6",
                &many_first,
                format!("worst {}", time(worst_first)),
                worst_first < Duration::from_millis(1),
            ),
        ];
        for (number, target, measured, ok) in rows {
            let _ = writeln!(out, "| {number} | {target} | {measured} | {} |", met(ok));
        }
        out
    }
}

/// The overload section: goodput and refusals as connections grow, and the
/// targets of issue #10.
pub fn overload_markdown(machine: &Machine, options: &Options, overload: &Overload) -> String {
    let mut out = String::new();
    let m = machine;
    let _ = writeln!(out, "## Overload: `cargo xtask bench`\n");
    let _ = writeln!(out, "{}\n", m.run_line());
    let _ = writeln!(
        out,
        "Command: `cargo xtask bench --only overload` (or the overload part of `cargo xtask bench`): \
         `ferry up --workers 2 --header-read-timeout {}` serving the hello component with its default limits \
         (256 requests run at once per component, up to 4,096 wait), `wrk -t1 -c<N> -d{}s` from the same \
         machine, both unpinned. The last row adds {} idle HTTP/1.1 keep-alive connections held by the \
         benchmark, each having sent one request (the longer timeout keeps them open through the run; one \
         the server closes for idleness would connect again, and the row counts those).\n",
        crate::overload::IDLE_TIMEOUT,
        options.duration.as_secs(),
        overload.idle,
    );
    let _ = writeln!(
        out,
        "| connections | req/s | 2xx/s (goodput) | not 2xx or failed | p50 | p99 | server CPU per request |\n|---|---|---|---|---|---|---|"
    );
    let row = |out: &mut String, what: &str, run: &crate::overload::Run| {
        let wrk = &run.wrk;
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.0} | {:.2}% | {} | {} | {:.1} µs |",
            wrk.requests_per_sec,
            wrk.goodput(),
            100.0 * wrk.errors as f64 / wrk.requests.max(1) as f64,
            time(wrk.p50),
            time(wrk.p99),
            run.cpu_per_request().as_secs_f64() * 1e6,
        );
    };
    for (connections, run) in &overload.runs {
        row(&mut out, &connections.to_string(), run);
    }
    if let Some(run) = &overload.with_idle {
        row(
            &mut out,
            &format!(
                "1000 + {} idle ({} open at the end, {} reconnects)",
                overload.idle, overload.idle_open_at_end, overload.idle_reconnects
            ),
            run,
        );
    }
    let base = overload
        .runs
        .iter()
        .find(|(c, _)| *c == CONNECTIONS[0])
        .map_or(0.0, |(_, r)| r.wrk.goodput());
    let _ = writeln!(out, "\n### Targets (issue #10)\n");
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    let mut target = |what: &str, run: Option<&crate::overload::Run>| {
        let Some(run) = run.map(|r| &r.wrk) else {
            return;
        };
        let ok_share = 1.0 - run.errors as f64 / run.requests.max(1) as f64;
        let ratio = run.goodput() / base;
        let _ = writeln!(
            out,
            "| {what}: ≥ 99% 2xx | {:.2}% | {} |\n\
             | {what}: goodput ≥ 90% of 64 connections' | {:.0}% ({:.0} against {base:.0}/s) | {} |",
            100.0 * ok_share,
            met(ok_share >= 0.99),
            100.0 * ratio,
            run.goodput(),
            met(ratio >= 0.9),
        );
    };
    target(
        "1,000 connections",
        overload
            .runs
            .iter()
            .find(|(c, _)| *c == 1000)
            .map(|(_, r)| r),
    );
    target(
        &format!("1,000 connections + {} idle", overload.idle),
        overload.with_idle.as_ref(),
    );
    out
}

/// Each run's requests per second, as a list.
fn runs(series: &Series) -> String {
    let runs: Vec<String> = series
        .runs
        .iter()
        .map(|r| format!("{:.0}", r.requests_per_sec))
        .collect();
    runs.join(", ")
}

/// Where a process ran: `CPU 0`, or `unpinned`.
fn pin(cpus: &Option<String>) -> String {
    cpus.as_deref()
        .map_or_else(|| "unpinned".into(), |c| format!("CPU {c}"))
}

fn cpu_per_request(series: &Series) -> String {
    let requests: u64 = series.runs.iter().map(|r| r.requests).sum();
    let cpu: f64 = series.cpu_seconds.iter().sum();
    if requests == 0 {
        return "-".into();
    }
    format!("{:.1} µs", cpu * 1e6 / requests as f64)
}

/// Replaces `section` of `path` (between its markers) with `markdown`, or
/// appends it when the file has no markers for it yet.
pub fn write_into(path: &Path, section: Section, markdown: &str) -> anyhow::Result<()> {
    let (begin_marker, end_marker) = section.markers();
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let generated = format!("{begin_marker}\n{markdown}{end_marker}\n");
    let updated = match (existing.find(begin_marker), existing.find(end_marker)) {
        (Some(begin), Some(end)) if begin < end => {
            let rest = &existing[end + end_marker.len()..];
            format!(
                "{}{generated}{}",
                &existing[..begin],
                rest.strip_prefix('\n').unwrap_or(rest)
            )
        }
        _ => format!("{}\n\n{generated}", existing.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// The key-value section: the guest's three routes, the in-process
/// baselines of the same run, and the targets of issue #9.
pub fn state_markdown(
    machine: &Machine,
    options: &Options,
    setup: &Setup,
    state: &State,
) -> String {
    let mut out = String::new();
    let m = machine;
    let _ = writeln!(
        out,
        "## Key-value stores through a guest: `cargo xtask bench`\n"
    );
    let _ = writeln!(out, "{}\n", m.run_line());
    let _ = writeln!(
        out,
        "Command: `cargo xtask bench --only state` (or the key-value part of `cargo xtask bench`): {} rounds \
         of `wrk -t1 -c{} -d{}s --latency` per route, alternating; `ferry up` on {}, wrk on {}, without \
         `RUST_BACKTRACE`. Guest: `crates/test-programs/spin-apps/rust-sdk5` (spin-sdk 5.2, \
         `fermyon:spin/key-value@2.0.0`, built by `ferry build`), its default store on embedded SQLite in a \
         new state directory. The in-process rows run `xtask/src/baseline.rs` (also \
         `cargo xtask group-commit`) in the same run, after the server stopped, on the \
         same filesystem, with {} concurrent writers.\n",
        options.rounds,
        options.connections,
        options.duration.as_secs(),
        pin(&setup.server_cpus),
        pin(&setup.client_cpus),
        state.writers,
    );
    let _ = writeln!(
        out,
        "| through the guest | req/s per run | mean req/s | time per request | p50 | p99 (worst run) | server CPU per request |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for series in [&state.hello, &state.get, &state.set] {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} µs | {} | {} | {} |",
            series.name,
            runs(series),
            series.requests_per_sec(),
            State::seconds_per_request(series) * 1e6,
            time(series.p50()),
            time(series.p99()),
            cpu_per_request(series),
        );
    }
    let micros = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6);
    let _ = writeln!(out, "\n| in-process, no guest | result |\n|---|---|");
    if let Some(get) = &state.get_cost {
        let _ = writeln!(
            out,
            "| `get` through the store (read cache) | {} |\n\
             | `get` through the store, no cache (blocking pool) | {} |\n\
             | `get`: the same query on one SQLite connection directly | {} |",
            micros(get.cached),
            micros(get.uncached),
            micros(get.direct),
        );
    }
    let _ = writeln!(
        out,
        "| durable sets, one fsync per write | {:.0}/s |\n\
         | durable sets, group commit | {:.0}/s ({:.1}x) |",
        state.one_fsync_per_write,
        state.group_commit,
        state.group_commit / state.one_fsync_per_write,
    );

    let adds = state.get_adds();
    let _ = writeln!(out, "\n### Targets (issue #9)\n");
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| a `get` adds under 10 µs to the plain request | {:+.2} µs per request ({:.1} against {:.1} µs) | {} |",
        adds * 1e6,
        State::seconds_per_request(&state.get) * 1e6,
        State::seconds_per_request(&state.hello) * 1e6,
        met(adds < 10e-6),
    );
    let in_process = state.group_commit / state.one_fsync_per_write;
    let _ = writeln!(
        out,
        "| durable `set` with {} concurrent writers ≥ 5x one fsync per write, in-process | {in_process:.2}x | {} |",
        state.writers,
        met(in_process >= 5.0),
    );
    let _ = writeln!(
        out,
        "| the same through the guest, {} connections, one server core | {:.2}x ({:.0} against {:.0}/s; \
         the plain request's own rate, the most any route reaches on this core, is {:.2}x) | {} |",
        options.connections,
        state.set_ratio(),
        state.set.requests_per_sec(),
        state.one_fsync_per_write,
        state.hello.requests_per_sec() / state.one_fsync_per_write,
        met(state.set_ratio() >= 5.0),
    );
    out
}

/// The command line that ran the live-host part: `--only host` and every
/// option that was not its default.
fn host_command(options: &Options) -> String {
    let defaults = Options::default();
    let mut command = String::from("cargo xtask bench --only host");
    if options.duration != defaults.duration {
        let _ = write!(command, " --duration {}", options.duration.as_secs());
    }
    if options.rounds != defaults.rounds {
        let _ = write!(command, " --rounds {}", options.rounds);
    }
    if options.connections != defaults.connections {
        let _ = write!(command, " --connections {}", options.connections);
    }
    if options.components != defaults.components {
        let _ = write!(command, " --components {}", options.components);
    }
    command
}

/// `median / p90` of `values`.
fn median_p90(values: &[Duration]) -> String {
    format!(
        "{} / {}",
        time(percentile(values, 0.5)),
        time(percentile(values, 0.9))
    )
}

/// The live-host section: redeploys, one app's throughput while another is
/// redeployed, many apps in one host, and their targets.
pub fn host_markdown(machine: &Machine, options: &Options, host: &LiveHost) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Live host: `cargo xtask bench`\n");
    let _ = writeln!(out, "{}\n", machine.run_line());
    let _ = writeln!(
        out,
        "Command: `{}` (or the live-host part of `cargo xtask bench`). Each measurement starts `ferry serve` \
         with a new state directory (so its compile cache starts empty) and deploys with the real client, \
         `ferry deploy APP --host … --token-file …`, one process per deploy: it hashes the bundle, asks the \
         host which blobs it lacks, uploads those, creates the version and returns once the new version \
         serves. Guests: `crates/test-programs/guests/src/bin/http-guest.rs` ({} bytes; answers `/` with \
         `hello from $NAME`, so each version's answer differs) for the redeployed apps, the hello component \
         ({} bytes) for the loaded app and the many apps. Every app has a base of its own \
         (`[application.trigger.http] base`) on the one apps listener.\n",
        host_command(options),
        host.guest_bytes,
        host.hello_bytes,
    );

    let _ = writeln!(out, "### Redeploying one app\n");
    let _ = writeln!(
        out,
        "The host unpinned, nothing else running. A cached redeploy changes only the manifest (the \
         component's `NAME`), so the host finds the component compiled; an uncached one also appends a \
         custom section to the Wasm (a component the host never compiled). \"Whole `ferry deploy`\" is the \
         client process from spawning it to its exit; \"the host's activation\" is the `elapsed_ms` it \
         answered (loading, compiling or finding compiled, and the swap); \"returned → first 200\" is from \
         the client's exit to the first 200 with the new version's body (a new connection per try).\n"
    );
    let _ = writeln!(
        out,
        "| redeploy | samples | whole `ferry deploy`, median / p90 | the host's activation, median / p90 | \
         returned → first 200 from the new version, median / p90 | requests until the new version answered (worst) | \
         components found compiled |\n|---|---|---|---|---|---|---|"
    );
    let row = |out: &mut String, what: &str, samples: &[Sample]| {
        let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
        let hosts: Vec<Duration> = samples.iter().map(|s| s.host).collect();
        let firsts: Vec<Duration> = samples.iter().map(|s| s.to_first_200).collect();
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | {} | {} of {} |",
            samples.len(),
            median_p90(&walls),
            median_p90(&hosts),
            median_p90(&firsts),
            samples.iter().map(|s| s.tries).max().unwrap_or_default(),
            samples.iter().filter(|s| s.from_cache).count(),
            samples.len(),
        );
    };
    row(&mut out, "cached (manifest changed)", &host.cached);
    row(&mut out, "uncached (Wasm never compiled)", &host.uncached);

    let busy = &host.under_redeploys;
    let _ = writeln!(out, "\n### Serving one app while another is redeployed\n");
    let _ = writeln!(
        out,
        "`ferry serve` on {server}; `wrk -t1 -c{} -d{}s --latency` on {client} loads app `a` (hello, `GET /a/`). \
         During the busy runs app `b` (http-guest at `/b`, two versions alternately, both already deployed, so \
         every blob is stored and the component found compiled) is redeployed back to back for the whole run: \
         by `ferry deploy` processes on {client} beside wrk (the issue's case), and, to tell the host's share \
         from the client processes', by the benchmark itself through the admin API (`POST /v1/blobs/missing`, \
         then `POST /v1/apps/b/versions`: what the client sends when it has nothing to upload). {} rounds, the \
         three kinds of run alternated. \"Server CPU per deploy\" is a busy run's server CPU time less its \
         requests at the quiet runs' CPU per request, divided by its deploys.\n",
        options.connections,
        options.duration.as_secs(),
        options.rounds,
        server = pin(&host.server_cpus),
        client = pin(&host.client_cpus),
    );
    let _ = writeln!(
        out,
        "| app `a` | req/s per run | mean req/s | vs quiet | p99 (worst run) | not 2xx or failed | server cores busy | \
         server CPU per request | deploys of `b` per run | each deploy, median / p90 | server CPU per deploy |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    let row = |out: &mut String, series: &Series, busy_runs: Option<&crate::host::Busy>| {
        let deploys = busy_runs.map_or_else(
            || ["-".to_owned(), "-".to_owned(), "-".to_owned()],
            |b| {
                let per_run: Vec<String> = b.deploys.iter().map(ToString::to_string).collect();
                [
                    format!("{} ({:.1}/s)", per_run.join(", "), busy.deploy_rate(b)),
                    median_p90(&b.walls),
                    time(busy.cpu_per_deploy(b)),
                ]
            },
        );
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2}x | {} | {} | {:.2} | {} | {} | {} | {} |",
            series.name,
            runs(series),
            series.requests_per_sec(),
            series.requests_per_sec() / busy.quiet.requests_per_sec(),
            time(series.p99()),
            series.runs.iter().map(|r| r.errors).sum::<u64>(),
            busy.cores_busy(series),
            cpu_per_request(series),
            deploys[0],
            deploys[1],
            deploys[2],
        );
    };
    row(&mut out, &busy.quiet, None);
    row(&mut out, &busy.by_client.series, Some(&busy.by_client));
    row(&mut out, &busy.by_api.series, Some(&busy.by_api));

    let many = &host.many;
    let _ = writeln!(out, "\n### {} apps in one host\n", many.count);
    let _ = writeln!(
        out,
        "Apps `app0` … `app{}`, each at its own base `/app<N>`, all the same hello Wasm: the first deploy \
         compiles it, the others share the code the host already loaded (its in-process compile cache), and \
         each app is an instance-pool user of its own. Deployed one after another, each by its own `ferry deploy` process (the real client, through \
         the admin API: each uploads only its new manifest), the host unpinned; then each app's first \
         request, in order, over a new connection. The deploy rows other than the first leave the first \
         deploy (the one that compiles) out. PSS divides each shared page among the mappings sharing it; \
         the compile cache's files are mapped only where a component is loaded from disk, not shared from \
         memory.\n",
        many.count.saturating_sub(1),
    );
    let max = |values: &[Duration]| values.iter().max().copied().unwrap_or_default();
    let rest = many.walls.get(1..).unwrap_or_default();
    let rest_host = many.host_times.get(1..).unwrap_or_default();
    let first_100 = &rest[..rest.len().min(100)];
    let last_100 = &rest[rest.len().saturating_sub(100)..];
    let (worst_app, worst_first) = many
        .first_requests
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| **d)
        .map_or((0, Duration::ZERO), |(i, d)| (i, *d));
    let _ = writeln!(
        out,
        "| measurement | result |\n|---|---|\n\
         | deploying {} apps, one after another | {} in all ({:.0} deploys/s) |\n\
         | the first deploy (compiles the component) | {} (the host's activation {}) |\n\
         | each later `ferry deploy` (the whole client) | median {}, p90 {}, worst {}; median of the first 100 {}, of the last 100 {} |\n\
         | the host's activation per later app | median {}, p90 {}, worst {}; median of the first 100 {}, of the last 100 {} |\n\
         | deploys that compiled | {} |\n\
         | RSS after the deploys, idle | {}; PSS {} |\n\
         | RSS after each app served one request | {}; PSS {} |\n\
         | mappings of compiled code from the compile cache | {} of {} distinct file(s) |\n\
         | each app's first request (new connection each) | median {}, p90 {}, worst {} (`app{worst_app}`) |",
        many.count,
        time(many.total),
        many.count as f64 / many.total.as_secs_f64(),
        time(many.walls.first().copied().unwrap_or_default()),
        time(many.host_times.first().copied().unwrap_or_default()),
        time(percentile(rest, 0.5)),
        time(percentile(rest, 0.9)),
        time(max(rest)),
        time(percentile(first_100, 0.5)),
        time(percentile(last_100, 0.5)),
        time(percentile(rest_host, 0.5)),
        time(percentile(rest_host, 0.9)),
        time(max(rest_host)),
        time(percentile(&rest_host[..rest_host.len().min(100)], 0.5)),
        time(percentile(
            &rest_host[rest_host.len().saturating_sub(100)..],
            0.5
        )),
        many.compiled,
        rss(&many.idle_rss),
        mib(many.idle_rss.proportional),
        rss(&many.rss_after_requests),
        mib(many.rss_after_requests.proportional),
        many.cache_mappings,
        many.cache_files,
        time(percentile(&many.first_requests, 0.5)),
        time(percentile(&many.first_requests, 0.9)),
        time(worst_first),
    );

    let cached_first: Vec<Duration> = host.cached.iter().map(|s| s.to_first_200).collect();
    let cached_wall: Vec<Duration> = host.cached.iter().map(|s| s.wall).collect();
    let first_p90 = percentile(&cached_first, 0.9);
    let wall_p90 = percentile(&cached_wall, 0.9);
    let _ = writeln!(out, "\n### Targets (live host)\n");
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| cached redeploy: `ferry deploy` returned → first 200 from the new version under 10 ms | p90 {} ({CACHED_SAMPLES} samples) | {} |\n\
         | cached redeploy: the whole `ferry deploy` under 10 ms (the stricter reading: it returns only after the swap) | p90 {} | {} |",
        time(first_p90),
        met(first_p90 < Duration::from_millis(10)),
        time(wall_p90),
        met(wall_p90 < Duration::from_millis(10)),
    );
    for (what, b) in [
        ("by `ferry deploy`, back to back", &busy.by_client),
        ("through the admin API, back to back", &busy.by_api),
    ] {
        let ratio = busy.ratio(b);
        let _ = writeln!(
            out,
            "| one app's requests/s while another is redeployed ({what}) ≥ 0.9 of quiet | {ratio:.2}x ({:.0} against {:.0}/s, {:.1} deploys/s) | {} |",
            b.series.requests_per_sec(),
            busy.quiet.requests_per_sec(),
            busy.deploy_rate(b),
            met(ratio >= 0.9),
        );
    }
    out
}

/// The cluster section: deploys reaching every node, and key-value through
/// a guest on NATS against embedded SQLite.
pub fn cluster_markdown(
    machine: &Machine,
    options: &Options,
    cluster: &crate::cluster::Cluster,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Cluster: `cargo xtask bench --only cluster`\n");
    let _ = writeln!(out, "{}\n", machine.run_line());
    let _ = writeln!(
        out,
        "Three nats-server 2.12.8 processes on loopback (JetStream, `sync_interval: always`, \
         buckets on 3 replicas with reads from the leader), all on this one machine with everything else.\n"
    );
    let _ = writeln!(out, "### A deploy reaching every node\n");
    let _ = writeln!(
        out,
        "Three `ferry serve --cluster` nodes, unpinned. {} deploys of one app (the http guest, its \
         manifest alternating two greetings, so every node finds the component compiled), each through the \
         next node with `ferry deploy --wait`: the client process from its start to its exit, which is \
         once every live node reports the new version (checked after each: every node answers with it). \
         \"Answer → last node\" is what the client printed: from the deploying node's answer to the last \
         node serving.\n",
        cluster.deploys.len()
    );
    let _ = writeln!(
        out,
        "| deploys | `ferry deploy --wait`, p50 / p99 | answer → last node, p50 / p99 |\n|---|---|---|"
    );
    let p50_p99 = |values: &[Duration]| {
        format!(
            "{} / {}",
            time(percentile(values, 0.5)),
            time(percentile(values, 0.99))
        )
    };
    let _ = writeln!(
        out,
        "| {} | {} | {} |",
        cluster.deploys.len(),
        p50_p99(&cluster.deploys),
        p50_p99(&cluster.spread)
    );
    let _ = writeln!(
        out,
        "\n### One node's throughput while the others converge\n"
    );
    let _ = writeln!(
        out,
        "The same three nodes. `wrk -t1 -c{} -d{}s --latency` on the other CPU loads node a's hello app \
         (`/loaded/`); during the converging runs the app above is deployed through node b back to back \
         (`ferry deploy --wait`, so every node, a included, converges on each), {} rounds alternated.\n",
        options.connections,
        options.duration.as_secs(),
        options.rounds,
    );
    let _ = writeln!(
        out,
        "| node a | req/s per run | mean req/s | vs quiet | p99 (worst run) | deploys per run |\n|---|---|---|---|---|---|"
    );
    for (series, deploys) in [
        (&cluster.quiet, None),
        (&cluster.converging, Some(&cluster.deploys_during)),
    ] {
        let runs: Vec<String> = series
            .runs
            .iter()
            .map(|r| format!("{:.0}", r.requests_per_sec))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2}x | {} | {} |",
            series.name,
            runs.join(", "),
            series.requests_per_sec(),
            series.requests_per_sec() / cluster.quiet.requests_per_sec(),
            time(series.p99()),
            deploys.map_or_else(
                || "-".to_owned(),
                |d| d
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let _ = writeln!(
        out,
        "\n### Key-value through a guest: NATS against embedded SQLite\n"
    );
    let _ = writeln!(
        out,
        "`crates/test-programs/spin-apps/rust-sdk5` served by two `ferry up` at once on CPU 0, its `default` \
         store on embedded SQLite in one and on the NATS cluster (`type = \"nats\"`) in the other; \
         `wrk -t1 -c{} -d{}s --latency` on the other CPU, {} rounds, the four runs alternated. A `set` is answered \
         once durable: one fsync on SQLite (group commit), a majority of three servers' fsyncs on NATS.\n",
        options.connections,
        options.duration.as_secs(),
        options.rounds,
    );
    let _ = writeln!(
        out,
        "| through the guest | req/s per run | mean req/s | NATS against SQLite | p50 | p99 (worst run) |\n|---|---|---|---|---|---|"
    );
    let row = |out: &mut String, series: &Series, against: Option<&Series>| {
        let runs: Vec<String> = series
            .runs
            .iter()
            .map(|r| format!("{:.0}", r.requests_per_sec))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} |",
            series.name,
            runs.join(", "),
            series.requests_per_sec(),
            against.map_or_else(
                || "-".to_owned(),
                |a| format!("{:.2}x", series.requests_per_sec() / a.requests_per_sec())
            ),
            time(series.p50()),
            time(series.p99()),
        );
    };
    row(&mut out, &cluster.sqlite_get, None);
    row(&mut out, &cluster.nats_get, Some(&cluster.sqlite_get));
    row(&mut out, &cluster.sqlite_set, None);
    row(&mut out, &cluster.nats_set, Some(&cluster.sqlite_set));
    out
}

/// The event-trigger section: messages per second through Ferry's Redis
/// and NATS triggers against a native subscriber doing the same work.
pub fn triggers_markdown(
    machine: &Machine,
    options: &Options,
    triggers: &crate::triggers::Triggers,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Event triggers: `cargo xtask bench --only triggers`\n"
    );
    let _ = writeln!(out, "{}\n", machine.run_line());
    let _ = writeln!(
        out,
        "{} messages per run, {} rounds alternated. The work per message, both sides: open the app's \
         `default` key-value store (embedded SQLite, durable writes, group commit), ask whether \
         `seen:<payload>` exists, write it, with at most 256 messages in hand at once. Ferry runs it in \
         the `on-message` guest of `spin-apps/rust-events` (spin-sdk 5 `#[redis_component]`, a fresh \
         instance per message) under `ferry up` pinned to the server CPU (one core); the native \
         subscriber is Rust in the benchmark's own process, unpinned (both cores: the ratio flatters \
         native by up to 2x), with the `redis` and `async-nats` clients Ferry uses and `ferry-store` \
         called directly. \
         Redis: every message published in one pipelined burst once subscribed, timed from the burst's \
         start to the last message handled. NATS: every message stored first in a stream (one of three \
         servers, file storage, `sync_interval: always`), then consumed by a durable pull consumer that \
         acknowledges each after its work, timed from the consumer's start.\n",
        crate::triggers::MESSAGES,
        options.rounds,
    );
    let _ = writeln!(
        out,
        "| trigger | Ferry, messages/s per run | native, messages/s per run | Ferry vs native |\n|---|---|---|---|"
    );
    let mean = |runs: &[f64]| runs.iter().sum::<f64>() / runs.len().max(1) as f64;
    let runs = |runs: &[f64]| {
        runs.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, ferry, native) in [
        (
            "Redis (`[[trigger.redis]]`)",
            &triggers.redis,
            &triggers.redis_native,
        ),
        (
            "NATS JetStream (`[[trigger.nats]]`)",
            &triggers.nats,
            &triggers.nats_native,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.2}x |",
            runs(ferry),
            runs(native),
            mean(ferry) / mean(native)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_section_is_replaced_not_duplicated() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("BENCHMARKS.md");
        std::fs::write(&path, "# Benchmarks\n\nnotes\n").unwrap();
        write_into(&path, Section::Serving, "first\n").unwrap();
        write_into(&path, Section::State, "state\n").unwrap();
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "\n## Analysis\n",
        )
        .unwrap();
        write_into(&path, Section::Serving, "second\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (begin, end) = Section::Serving.markers();
        let (state_begin, state_end) = Section::State.markers();
        assert_eq!(
            text,
            format!(
                "# Benchmarks\n\nnotes\n\n{begin}\nsecond\n{end}\n\n\
                 {state_begin}\nstate\n{state_end}\n\n## Analysis\n"
            )
        );
    }

    #[test]
    fn percentiles_pick_from_sorted_values() {
        let values: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(median(&values), Duration::from_millis(51));
    }
    #[test]
    fn the_host_command_names_the_options_that_differ() {
        assert_eq!(
            host_command(&Options::default()),
            "cargo xtask bench --only host"
        );
        let options = Options {
            duration: Duration::from_secs(5),
            rounds: 3,
            ..Options::default()
        };
        assert_eq!(
            host_command(&options),
            "cargo xtask bench --only host --duration 5 --rounds 3"
        );
    }

    #[test]
    fn the_host_section_renders_without_figures() {
        let markdown = host_markdown(
            &Machine::default(),
            &Options::default(),
            &LiveHost::default(),
        );
        assert!(markdown.starts_with("## Live host: `cargo xtask bench`\n"));
        assert!(markdown.contains("### Targets (live host)"));
    }
}
