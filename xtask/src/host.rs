//! The live-host part of `cargo xtask bench`: `ferry serve` with apps
//! deployed by the real `ferry deploy` client, as a user deploys them.
//!
//! Three measurements, each on a host of its own with a new state directory
//! (so its compile cache starts empty):
//!
//! - redeploying one app: from `ferry deploy` returning to the first 200
//!   with the new version's body, and the whole client's wall time, for a
//!   changed manifest (the component found compiled) and for a component
//!   the host never compiled (the same Wasm with a custom section
//!   appended);
//! - requests per second of one app while another app is redeployed back
//!   to back, against the same app with nothing deployed, runs alternated;
//! - many apps in one host (`--components`, 1,000 by default), each with a
//!   base of its own and the same Wasm: the deploys' time, the host's
//!   resident memory after them, and each app's first request.
//!
//! The redeployed guest is `http-guest`, which answers `/` with `hello from
//! $NAME`: each version's answer differs, so the first answer from the new
//! version is told from the old one's. The loaded app and the many apps
//! serve the hello component the other parts serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::bench::{Options, Series, Setup, named, parse_printed_duration, with_custom_section};
use crate::native::HELLO;
use crate::process::{self, Process, Rss, pinned};
use crate::wrk::{self, WrkResult};

/// Redeploys of a changed manifest, its component found compiled.
pub const CACHED_SAMPLES: usize = 20;

/// Redeploys of a component the host has not compiled.
pub const UNCACHED_SAMPLES: usize = 5;

/// What the live-host runs measured.
#[derive(Debug, Clone, Default)]
pub struct LiveHost {
    /// Where the loaded host and the load generator ran (`taskset -c`).
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    /// Bytes of the redeployed guest (`http-guest`) and of the hello guest.
    pub guest_bytes: u64,
    pub hello_bytes: u64,
    pub cached: Vec<Sample>,
    pub uncached: Vec<Sample>,
    pub under_redeploys: UnderRedeploys,
    pub many: ManyApps,
}

/// One redeploy.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The `ferry deploy` process, from spawning it to its exit.
    pub wall: Duration,
    /// The activation time the host answered (`elapsed_ms`), as the client
    /// printed it.
    pub host: Duration,
    /// From the client's exit to the first 200 with the new version's body.
    pub to_first_200: Duration,
    /// Requests it took to see the new version (1: the first one did).
    pub tries: u32,
    /// Whether the host found the component compiled.
    pub from_cache: bool,
}

/// Requests per second of one app, quiet and while another is redeployed.
#[derive(Debug, Clone, Default)]
pub struct UnderRedeploys {
    pub quiet: Series,
    /// Redeployed by `ferry deploy` processes beside the load generator.
    pub by_client: Busy,
    /// Redeployed by the benchmark itself through the admin API: the
    /// host's share of a deploy, without client processes beside wrk.
    pub by_api: Busy,
    pub duration: Duration,
}

/// The runs with redeploys of one kind.
#[derive(Debug, Clone, Default)]
pub struct Busy {
    pub series: Series,
    /// Per run: the deploys of the other app that completed while wrk ran.
    pub deploys: Vec<usize>,
    /// Every one of those deploys' wall time.
    pub walls: Vec<Duration>,
}

impl UnderRedeploys {
    /// The busy runs' requests per second against the quiet runs'.
    pub fn ratio(&self, busy: &Busy) -> f64 {
        busy.series.requests_per_sec() / self.quiet.requests_per_sec()
    }

    /// Deploys per second during the busy runs.
    pub fn deploy_rate(&self, busy: &Busy) -> f64 {
        busy.deploys.iter().sum::<usize>() as f64
            / (busy.deploys.len().max(1) as f64 * self.duration.as_secs_f64())
    }

    /// The server's CPU time per deploy: the busy runs' CPU time less what
    /// their requests took at the quiet runs' cost per request.
    pub fn cpu_per_deploy(&self, busy: &Busy) -> Duration {
        let requests = |s: &Series| s.runs.iter().map(|r| r.requests).sum::<u64>() as f64;
        let cpu = |s: &Series| s.cpu_seconds.iter().sum::<f64>();
        let per_request = cpu(&self.quiet) / requests(&self.quiet).max(1.0);
        let deploys = busy.deploys.iter().sum::<usize>().max(1) as f64;
        let left = cpu(&busy.series) - requests(&busy.series) * per_request;
        Duration::from_secs_f64((left / deploys).max(0.0))
    }

    /// How much of one core the server used in `series`' runs.
    pub fn cores_busy(&self, series: &Series) -> f64 {
        series.cpu_seconds.iter().sum::<f64>()
            / (series.cpu_seconds.len().max(1) as f64 * self.duration.as_secs_f64())
    }
}

/// Many apps deployed into one host.
#[derive(Debug, Clone, Default)]
pub struct ManyApps {
    pub count: usize,
    /// From the first deploy's start to the last one's return.
    pub total: Duration,
    /// Each `ferry deploy` process, in order.
    pub walls: Vec<Duration>,
    /// The activation time the host answered for each.
    pub host_times: Vec<Duration>,
    /// Deploys whose component the host compiled (the first, only).
    pub compiled: usize,
    pub idle_rss: Rss,
    pub rss_after_requests: Rss,
    /// Mappings of compiled code from the compile cache after the
    /// requests, and how many distinct cache files they map.
    pub cache_mappings: usize,
    pub cache_files: usize,
    /// Each app's first request, over a new connection.
    pub first_requests: Vec<Duration>,
}

pub fn run(setup: &Setup, options: &Options) -> anyhow::Result<LiveHost> {
    let guest = std::fs::read(ferry_test_programs::HTTP_GUEST)?;
    let hello = std::fs::read(&setup.hello)?;
    let mut result = LiveHost {
        server_cpus: setup.server_cpus.clone(),
        client_cpus: setup.client_cpus.clone(),
        guest_bytes: guest.len() as u64,
        hello_bytes: hello.len() as u64,
        ..LiveHost::default()
    };
    eprintln!("  redeploying one app");
    (result.cached, result.uncached) = redeploys(setup, &guest)?;
    eprintln!("  one app's requests/s while another is redeployed");
    result.under_redeploys = under_redeploys(setup, options, &guest, &hello)?;
    eprintln!("  {} apps in one host", options.components);
    result.many = many_apps(setup, options.components, &hello)?;
    Ok(result)
}

/// A running `ferry serve`.
pub(crate) struct Served {
    process: Process,
    /// The apps listener.
    pub(crate) apps: SocketAddr,
    pub(crate) client: Client,
}

/// How `ferry deploy` reaches a host.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    ferry: PathBuf,
    pub(crate) admin: String,
    pub(crate) token_file: PathBuf,
}

/// What one `ferry deploy` did.
pub(crate) struct Deployed {
    pub(crate) wall: Duration,
    /// When the process had exited.
    returned: Instant,
    host: Duration,
    /// Per component: whether it was found compiled.
    from_cache: Vec<bool>,
}

/// `ferry serve` on `cpus` with a new state directory.
fn start(setup: &Setup, name: &str, cpus: Option<&str>) -> anyhow::Result<Served> {
    start_with(setup, name, cpus, &[])
}

/// [`start`] with `extra` arguments (a cluster's, say).
pub(crate) fn start_with(
    setup: &Setup,
    name: &str,
    cpus: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<Served> {
    let state = setup.work.join("run").join(format!("{name}-state"));
    let _ = std::fs::remove_dir_all(&state);
    let mut command = pinned(cpus, &setup.ferry);
    command.arg("serve").arg("--state-dir").arg(&state).args([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    command.args(extra);
    let mut process = Process::spawn(name, command, &setup.log(name))?;
    let timeout = Duration::from_secs(60);
    let serving = process.wait_for_line(timeout, |l| l.starts_with("Serving apps on "))?;
    let admin = process.wait_for_line(timeout, |l| l.starts_with("Admin API on "))?;
    let apps: SocketAddr = serving
        .trim_start_matches("Serving apps on http://")
        .trim()
        .parse()
        .with_context(|| format!("reading the address in `{serving}`"))?;
    let admin = admin
        .strip_prefix("Admin API on ")
        .and_then(|rest| rest.split(' ').next())
        .with_context(|| format!("reading the address in `{admin}`"))?
        .to_owned();
    let admin_addr: SocketAddr = admin.trim_start_matches("http://").parse()?;
    let deadline = Instant::now() + timeout;
    while !process::get(admin_addr, "/readyz").is_ok_and(|r| r.status == 200) {
        ensure!(
            Instant::now() < deadline,
            "{name} was not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Served {
        process,
        apps,
        client: Client {
            ferry: setup.ferry.clone(),
            admin,
            token_file: state.join("admin-token"),
        },
    })
}

impl Client {
    /// `ferry deploy app` (on `cpus`), which must succeed.
    fn deploy(&self, app: &Path, cpus: Option<&str>) -> anyhow::Result<Deployed> {
        self.deploy_with(app, cpus, &[])
            .map(|(deployed, _)| deployed)
    }

    /// [`deploy`](Self::deploy) with `extra` arguments (`--wait`), and
    /// what it printed.
    pub(crate) fn deploy_with(
        &self,
        app: &Path,
        cpus: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<(Deployed, String)> {
        let mut command = pinned(cpus, &self.ferry);
        command
            .arg("deploy")
            .arg(app)
            .args(extra)
            .arg("--host")
            .arg(&self.admin)
            .arg("--token-file")
            .arg(&self.token_file);
        let started = Instant::now();
        let output = command.output().context("running ferry deploy")?;
        let returned = Instant::now();
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "ferry deploy {} failed ({}):\n{stdout}{}",
            app.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let deployed = stdout
            .lines()
            .find(|l| l.starts_with("Deployed "))
            .with_context(|| format!("ferry deploy printed no `Deployed` line:\n{stdout}"))?;
        let from_cache = stdout
            .lines()
            .map(str::trim_start)
            .filter_map(|l| {
                if l.starts_with("loaded compiled `") {
                    Some(true)
                } else if l.starts_with("compiled `") {
                    Some(false)
                } else {
                    None
                }
            })
            .collect();
        Ok((
            Deployed {
                wall: returned - started,
                returned,
                host: parse_printed_duration(deployed)
                    .with_context(|| format!("reading the time in `{deployed}`"))?,
                from_cache,
            },
            stdout.into_owned(),
        ))
    }
}

/// Polls `GET path` (a new connection each time) until it answers 200 with
/// `body`; the time since `since`, and the requests it took.
fn first_200(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    since: Instant,
) -> anyhow::Result<(Duration, u32)> {
    let mut tries = 0;
    loop {
        tries += 1;
        if let Ok(reply) = process::get(addr, path)
            && reply.status == 200
            && reply.body == body
        {
            return Ok((since.elapsed(), tries));
        }
        ensure!(
            since.elapsed() < Duration::from_secs(30),
            "GET {path} did not answer {:?} within 30 s",
            String::from_utf8_lossy(body)
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Writes an app of one component, `guest.wasm` (`wasm`), answering at
/// `base`, with `NAME` set to `greeting`.
pub(crate) fn write_app(
    dir: &Path,
    name: &str,
    base: &str,
    wasm: &[u8],
    greeting: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("guest.wasm");
    if std::fs::read(&path).ok().as_deref() != Some(wasm) {
        std::fs::write(&path, wasm)?;
    }
    write_manifest(dir, name, base, greeting)
}

pub(crate) fn write_manifest(
    dir: &Path,
    name: &str,
    base: &str,
    greeting: &str,
) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\n\
             [application.trigger.http]\nbase = \"{base}\"\n\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"guest\"\n\n\
             [component.guest]\nsource = \"guest.wasm\"\n\
             environment = {{ NAME = \"{greeting}\" }}\n"
        ),
    )?;
    Ok(())
}

/// Redeploys of one app, the host unpinned and nothing else running:
/// [`CACHED_SAMPLES`] of a changed manifest, then [`UNCACHED_SAMPLES`] of
/// a component never compiled.
fn redeploys(setup: &Setup, guest: &[u8]) -> anyhow::Result<(Vec<Sample>, Vec<Sample>)> {
    let host = start(setup, "ferry-serve-redeploy", None)?;
    let app = setup.work.join("run").join("host-redeploy-app");
    write_app(&app, "swap", "/swap", guest, "v0")?;
    let first = host.client.deploy(&app, None)?;
    first_200(host.apps, "/swap/", b"hello from v0\n", first.returned)?;
    let sample = |greeting: &str| -> anyhow::Result<Sample> {
        let deployed = host.client.deploy(&app, None)?;
        let expected = format!("hello from {greeting}\n");
        let (to_first_200, tries) =
            first_200(host.apps, "/swap/", expected.as_bytes(), deployed.returned)?;
        let sample = Sample {
            wall: deployed.wall,
            host: deployed.host,
            to_first_200,
            tries,
            from_cache: deployed.from_cache.iter().all(|c| *c),
        };
        eprintln!(
            "    {greeting}: ferry deploy {:.2} ms (host {:.2} ms, {}), first 200 {:.3} ms later ({} tries)",
            sample.wall.as_secs_f64() * 1e3,
            sample.host.as_secs_f64() * 1e3,
            if sample.from_cache {
                "found compiled"
            } else {
                "compiled"
            },
            sample.to_first_200.as_secs_f64() * 1e3,
            sample.tries,
        );
        Ok(sample)
    };
    let mut cached = Vec::with_capacity(CACHED_SAMPLES);
    for i in 1..=CACHED_SAMPLES {
        let greeting = format!("cached-{i}");
        write_manifest(&app, "swap", "/swap", &greeting)?;
        cached.push(sample(&greeting)?);
    }
    // Unique to this run, so no compile cache (a new one: a new state
    // directory) holds it.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let mut uncached = Vec::with_capacity(UNCACHED_SAMPLES);
    for i in 1..=UNCACHED_SAMPLES {
        let greeting = format!("uncached-{i}");
        let wasm = with_custom_section(
            guest,
            "ferry-bench-uncached",
            format!("{nonce}-{i}").as_bytes(),
        );
        write_app(&app, "swap", "/swap", &wasm, &greeting)?;
        uncached.push(sample(&greeting)?);
    }
    Ok((cached, uncached))
}

/// How the busy runs redeploy app `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redeployer {
    None,
    /// `ferry deploy` processes, one after another.
    Client,
    /// The admin API called from here: `POST /v1/blobs/missing`, then
    /// `POST /v1/apps/b/versions`, the blobs already stored.
    Api,
}

/// App `a` (hello) loaded by wrk, quiet and while app `b` is redeployed
/// back to back, by `ferry deploy` and through the admin API, runs
/// alternated; the host on the server core, wrk and the deploy client on
/// the client's.
fn under_redeploys(
    setup: &Setup,
    options: &Options,
    guest: &[u8],
    hello: &[u8],
) -> anyhow::Result<UnderRedeploys> {
    let host = start(setup, "ferry-serve-busy", setup.server_cpus.as_deref())?;
    let client_cpus = setup.client_cpus.as_deref();
    let dir = setup.work.join("run");
    let a = dir.join("host-busy-a");
    write_app(&a, "a", "/a", hello, "a")?;
    let b = [dir.join("host-busy-b1"), dir.join("host-busy-b2")];
    write_app(&b[0], "b", "/b", guest, "one")?;
    write_app(&b[1], "b", "/b", guest, "two")?;
    for app in [&a, &b[0], &b[1]] {
        host.client.deploy(app, client_cpus)?;
    }
    let hello_reply = process::get(host.apps, "/a/")?;
    ensure!(
        hello_reply.status == 200 && hello_reply.body == HELLO,
        "app a answered {} to /a/",
        hello_reply.status
    );
    let b_reply = process::get(host.apps, "/b/")?;
    ensure!(
        b_reply.status == 200 && b_reply.body == b"hello from two\n",
        "app b answered {} to /b/",
        b_reply.status
    );
    let api = ApiDeploys::new(&host.client, &b)?;

    let mut result = UnderRedeploys {
        quiet: named("quiet (nothing deployed)"),
        by_client: Busy {
            series: named("`b` redeployed by `ferry deploy`, back to back"),
            ..Busy::default()
        },
        by_api: Busy {
            series: named("`b` redeployed through the admin API, back to back"),
            ..Busy::default()
        },
        duration: options.duration,
    };
    let load = setup.load(client_cpus, options);
    let url = format!("http://{}/a/", host.apps);
    wrk::run(
        &url,
        None,
        &wrk::Load {
            duration: Duration::from_secs(1),
            ..load.clone()
        },
    )?;
    let client = &host.client;
    for round in 1..=options.rounds {
        for redeployer in [Redeployer::None, Redeployer::Client, Redeployer::Api] {
            let before = host.process.cpu_time()?;
            let stop = AtomicBool::new(false);
            let (wrk, deploys) = std::thread::scope(|s| {
                let thread = (redeployer != Redeployer::None).then(|| {
                    s.spawn(|| -> anyhow::Result<Vec<(Instant, Duration)>> {
                        let mut done = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let version = done.len() % 2;
                            done.push(if redeployer == Redeployer::Client {
                                let deployed = client.deploy(&b[version], client_cpus)?;
                                (deployed.returned, deployed.wall)
                            } else {
                                api.deploy(version)?
                            });
                        }
                        Ok(done)
                    })
                });
                let wrk = wrk::run(&url, None, &load);
                let ended = Instant::now();
                stop.store(true, Ordering::Relaxed);
                let deploys = match thread {
                    Some(thread) => thread
                        .join()
                        .map_err(|_| anyhow::anyhow!("the redeploy thread panicked"))
                        .and_then(|d| d)
                        .map(|d| {
                            d.into_iter()
                                .filter(|(returned, _)| *returned <= ended)
                                .map(|(_, wall)| wall)
                                .collect::<Vec<_>>()
                        }),
                    None => Ok(Vec::new()),
                };
                (wrk, deploys)
            });
            let wrk: WrkResult = wrk?;
            let deploys = deploys?;
            let cpu = host.process.cpu_time()? - before;
            let (series, busy) = match redeployer {
                Redeployer::None => (&mut result.quiet, None),
                Redeployer::Client => {
                    let busy = &mut result.by_client;
                    (&mut busy.series, Some((&mut busy.deploys, &mut busy.walls)))
                }
                Redeployer::Api => {
                    let busy = &mut result.by_api;
                    (&mut busy.series, Some((&mut busy.deploys, &mut busy.walls)))
                }
            };
            eprintln!(
                "    round {round}: {:<52} {:>9.0} req/s  p99 {:>7.3} ms  {} not 2xx or failed, server CPU {:.2} s, {} deploys of b",
                series.name,
                wrk.requests_per_sec,
                wrk.p99.as_secs_f64() * 1e3,
                wrk.errors,
                cpu.as_secs_f64(),
                deploys.len(),
            );
            series.runs.push(wrk);
            series.cpu_seconds.push(cpu.as_secs_f64());
            if let Some((counts, walls)) = busy {
                counts.push(deploys.len());
                walls.extend(deploys);
            }
        }
    }
    Ok(result)
}

/// Redeploys of app `b`'s two versions through the admin API, as
/// `ferry deploy` makes them when every blob is stored already.
struct ApiDeploys {
    admin: SocketAddr,
    authorization: String,
    /// Per version: the `/v1/blobs/missing` and `/v1/apps/b/versions`
    /// bodies.
    bodies: [(String, String); 2],
}

impl ApiDeploys {
    fn new(client: &Client, apps: &[PathBuf; 2]) -> anyhow::Result<Self> {
        let token = std::fs::read_to_string(&client.token_file)?;
        let body = |app: &PathBuf| -> anyhow::Result<(String, String)> {
            let manifest = app.join("spin.toml");
            let guest = app.join("guest.wasm");
            let digests = sha256(&[&manifest, &guest])?;
            Ok((
                format!("{{\"digests\":[\"{}\",\"{}\"]}}", digests[0], digests[1]),
                format!(
                    "{{\"manifest\":\"spin.toml\",\"files\":{{\"spin.toml\":\"{}\",\"guest.wasm\":\"{}\"}},\"hostnames\":[]}}",
                    digests[0], digests[1]
                ),
            ))
        };
        Ok(Self {
            admin: client.admin.trim_start_matches("http://").parse()?,
            authorization: format!("Bearer {}", token.trim()),
            bodies: [body(&apps[0])?, body(&apps[1])?],
        })
    }

    /// Deploys `version` (0 or 1); when it returned, and how long it took.
    fn deploy(&self, version: usize) -> anyhow::Result<(Instant, Duration)> {
        let (missing, create) = &self.bodies[version];
        let headers = [
            ("Authorization", self.authorization.as_str()),
            ("Content-Type", "application/json"),
        ];
        let started = Instant::now();
        let reply = process::request_with(
            self.admin,
            "POST",
            "/v1/blobs/missing",
            &headers,
            missing.as_bytes(),
        )?;
        ensure!(
            reply.status == 200 && String::from_utf8_lossy(&reply.body).contains("\"missing\": []"),
            "POST /v1/blobs/missing answered {} {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let reply = process::request_with(
            self.admin,
            "POST",
            "/v1/apps/b/versions",
            &headers,
            create.as_bytes(),
        )?;
        ensure!(
            reply.status == 201,
            "POST /v1/apps/b/versions answered {} {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let returned = Instant::now();
        Ok((returned, returned - started))
    }
}

/// `sha256:<hex>` of each file, by `sha256sum` (coreutils).
fn sha256(paths: &[&Path]) -> anyhow::Result<Vec<String>> {
    let output = std::process::Command::new("sha256sum")
        .args(paths)
        .output()
        .context("running sha256sum")?;
    ensure!(output.status.success(), "sha256sum failed");
    let digests: Vec<String> = String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    ensure!(
        digests.len() == paths.len(),
        "sha256sum printed too few digests"
    );
    Ok(digests)
}

/// `count` apps, `/app<N>` each, the same hello Wasm, deployed one after
/// another by `ferry deploy`; then each app's first request.
fn many_apps(setup: &Setup, count: usize, hello: &[u8]) -> anyhow::Result<ManyApps> {
    let host = start(setup, "ferry-serve-many", None)?;
    let app = setup.work.join("run").join("host-many-app");
    let mut result = ManyApps {
        count,
        walls: Vec::with_capacity(count),
        host_times: Vec::with_capacity(count),
        first_requests: Vec::with_capacity(count),
        ..ManyApps::default()
    };
    let started = Instant::now();
    for i in 0..count {
        write_app(
            &app,
            &format!("app{i}"),
            &format!("/app{i}"),
            hello,
            &format!("app{i}"),
        )?;
        let deployed = host.client.deploy(&app, None)?;
        result.walls.push(deployed.wall);
        result.host_times.push(deployed.host);
        result.compiled += deployed.from_cache.iter().filter(|c| !**c).count();
        if (i + 1) % 100 == 0 {
            eprintln!(
                "    {} deployed in {:.1} s (the last: {:.1} ms, the host's {:.1} ms)",
                i + 1,
                started.elapsed().as_secs_f64(),
                deployed.wall.as_secs_f64() * 1e3,
                deployed.host.as_secs_f64() * 1e3,
            );
        }
    }
    result.total = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    result.idle_rss = host.process.rss()?;
    for i in 0..count {
        let started = Instant::now();
        let reply = process::get(host.apps, &format!("/app{i}/"))?;
        result.first_requests.push(started.elapsed());
        ensure!(
            reply.status == 200 && reply.body == HELLO,
            "app{i} answered {} to its first request",
            reply.status
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    result.rss_after_requests = host.process.rss()?;
    (result.cache_mappings, result.cache_files) = host.process.mappings_of(".cwasm")?;
    eprintln!(
        "    {count} apps deployed in {:.1} s; RSS {} MiB idle, {} MiB after one request each",
        result.total.as_secs_f64(),
        result.idle_rss.total >> 20,
        result.rss_after_requests.total >> 20
    );
    Ok(result)
}
