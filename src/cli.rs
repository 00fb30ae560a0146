//! Command-line arguments and the `up`, `check` and `build` commands.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_manifest::{
    App, EventSource, Executor, Handler, Limits, Route, parse_duration, parse_size,
};
use ferry_runtime::{CompileCache, EngineOptions, Runtime};
use ferry_server::tls::{self, Tls, TlsFiles};
use ferry_server::{LiveApps, ServerConfig, Target};
use tokio::net::TcpListener;

use ferry_api::Failure;
use ferry_api::human::human_size;
use ferry_api::listed;
use ferry_control::assemble::{self, Assembler, Mode, SizedBy, off_runtime};
use ferry_control::guest_logs::{GuestFiles, GuestLogs};
use ferry_control::metrics::Metrics;
use ferry_control::stores;
use ferry_control::summary::{Variables, summarize};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Serve WebAssembly HTTP apps, one fresh sandbox per request"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an app: ./spin.toml (or ./ferry.toml), a directory holding one, or a manifest file.
    Up(UpArgs),
    /// Validate an app's manifest and components, and show what each is granted.
    Check(CheckArgs),
    /// Run each component's build command (`[component.<id>.build]`), in manifest order.
    Build(BuildArgs),
    /// Run a live host: many apps on one listener, deployed, rolled back
    /// and deleted through the admin API without a restart.
    Serve(ServeArgs),
    /// Upload an app to a live host and swap it in once it has compiled.
    Deploy(DeployArgs),
    /// List the apps on a live host.
    Apps(AppsArgs),
    /// List the nodes of a live host's cluster: each one's last heartbeat,
    /// the version of each app it serves, and what it is behind on.
    Nodes(NodesArgs),
    /// Commands about one app on a live host.
    #[command(subcommand)]
    App(AppCommand),
    /// Serve an app's previous version (or `--to` one) again.
    Rollback(RollbackArgs),
    /// Take an app out of a live host, with its versions and data.
    Delete(DeleteArgs),
    /// Print an app's recent guest log lines (stdout and stderr) from a
    /// live host; `--follow` goes on printing new ones.
    Logs(LogsArgs),
    /// Run WASI commands as a shell pipeline: each stage's stdout into the
    /// next one's stdin, each in a sandbox of its own granted nothing; exit
    /// with the status of the first stage to fail.
    Pipe(PipeArgs),
    /// Print a completion script for a shell: `ferry completions bash >
    /// /etc/bash_completion.d/ferry`, or into zsh's `fpath`, or fish's
    /// `~/.config/fish/completions/ferry.fish`.
    Completions(CompletionsArgs),
    /// Start a new app from a template: `ferry new http-rust my-app`, then
    /// `cd my-app && ferry up --build`. `--list` shows the templates.
    New(NewArgs),
    /// Push apps to and pull them from OCI registries, as Spin's artifacts.
    #[command(subcommand)]
    Registry(crate::registry::RegistryCommand),
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The template, then the new app's name (as `spin new`; with
    /// `-t`, only the name).
    #[arg(value_name = "TEMPLATE NAME", num_args = 0..=2)]
    words: Vec<String>,
    /// The template (Spin's `spin new -t`).
    #[arg(short = 't', long = "template", value_name = "TEMPLATE")]
    template: Option<String>,
    /// Where to write the app [default: ./NAME]; it must not exist or be
    /// empty.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,
    /// List the templates and what each makes.
    #[arg(long, conflicts_with_all = ["words", "template", "output"])]
    list: bool,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
struct PipeArgs {
    /// Each stage as one word: a command component (`.wasm`) and its
    /// arguments, separated by spaces (`"grep.wasm ERROR"`).
    #[arg(required = true, value_name = "STAGE")]
    stages: Vec<String>,
    /// `--max-memory` is each stage's; no timeout applies.
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Debug, Args)]
struct LogsArgs {
    name: String,
    /// Keep printing new lines as the app's guests write them.
    #[arg(short, long)]
    follow: bool,
    /// Print each line as the host's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// An app's components, routes, grants and version history.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the host keeps its apps, their versions and data, and the
    /// admin token [default: $XDG_STATE_HOME/ferry or ~/.local/state/ferry].
    #[arg(long, value_name = "DIR", env = "FERRY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Address the apps are served on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Address of the admin API (keep it private); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3001")]
    admin_listen: SocketAddr,
    /// A file holding the admin token [default: admin-token in the state
    /// directory, generated on first start].
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Serve the admin API over HTTPS with this PEM certificate chain;
    /// reloaded when the file changes. Needs `--admin-tls-key`.
    #[arg(long, value_name = "FILE", requires = "admin_tls_key")]
    admin_tls_cert: Option<PathBuf>,
    /// The PEM private key of `--admin-tls-cert`.
    #[arg(long, value_name = "FILE", requires = "admin_tls_cert")]
    admin_tls_key: Option<PathBuf>,
    /// Versions kept per app, the serving one included (older ones are
    /// removed, with files no kept version uses).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    keep_versions: u32,
    /// Largest bundle one deploy may bring, all files together.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    max_bundle_size: u64,
    /// Most files in one bundle.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_bundle_files: usize,
    /// Give every app that declares the variable NAME (as manifests write
    /// it: `api_host`) its value from this host's environment,
    /// FERRY_VARIABLE_API_HOST, else SPIN_VARIABLE_API_HOST, read at start
    /// (repeatable). Without it no app gets anything from the host's
    /// environment: each app's values come with its deploy (`ferry deploy
    /// --variable`), which wins over this.
    #[arg(long = "host-variable", value_name = "NAME")]
    host_variables: Vec<String>,
    /// Join a cluster: the NATS servers (with JetStream) through which
    /// every node shares apps and versions, `nats://HOST:PORT`, comma
    /// separated. A deploy to any node is then served by every node; this
    /// node keeps a copy in --state-dir and serves it while cut off.
    #[arg(long, value_name = "URLS", env = "FERRY_CLUSTER")]
    cluster: Option<String>,
    /// This node's name in the cluster, unique there [default: the
    /// machine's host name].
    #[arg(long, value_name = "NAME", requires = "cluster")]
    node_name: Option<String>,
    /// Copies JetStream keeps of the cluster's state, each on another
    /// server [default: 3, or as many servers as --cluster names if fewer].
    #[arg(long, value_name = "N", requires = "cluster", value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: Option<u8>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    listener: ListenerArgs,
}

/// How to reach a live host's admin API.
#[derive(Debug, Args)]
struct HostArgs {
    /// The admin API's URL.
    #[arg(
        long = "host",
        value_name = "URL",
        env = "FERRY_HOST",
        default_value = "http://127.0.0.1:3001"
    )]
    url: String,
    /// A file holding the admin token (else `FERRY_TOKEN`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[arg(long, env = "FERRY_TOKEN", hide = true)]
    token: Option<String>,
}

impl HostArgs {
    fn client(&self) -> anyhow::Result<ferry_client::Client> {
        ferry_client::Client::new(&self.url, self.token_file.as_deref(), self.token.as_deref())
    }
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// The app: a manifest file, a directory containing spin.toml or
    /// ferry.toml, or a registry reference (pulled first).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The name to deploy it as [default: the manifest's `application.name`].
    #[arg(long)]
    name: Option<String>,
    /// A host name (`Host:` header) the app is reached by (repeatable);
    /// without one it is reached by its routes on any host name.
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
    /// Run every component's build command first (as `ferry build` does).
    #[arg(long)]
    build: bool,
    /// A value for an application variable: NAME=VALUE, NAME=@FILE (the
    /// file's contents), or @FILE.json / @FILE.toml (a table of them).
    /// Stored with this version, private to the app: every deploy gives all
    /// of its values (none are taken from an earlier version), and a
    /// rollback uses that version's own. Never shown by the host.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// On a cluster, wait until every live node serves the new version (or
    /// says why it cannot), printing each node's outcome; fails if one
    /// does not within --wait-timeout.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "wait")]
    wait_timeout: std::time::Duration,
    #[command(flatten)]
    connection: crate::registry::ConnectionArgs,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Args)]
struct NodesArgs {
    /// Print the host's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Args)]
struct AppsArgs {
    /// Print the host's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    name: String,
    /// Print the host's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Args)]
struct RollbackArgs {
    name: String,
    /// The version to serve [default: the one before the serving one].
    #[arg(long, value_name = "VERSION")]
    to: Option<u64>,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    name: String,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, Clone, Args)]
struct AppArgs {
    /// The app: a manifest file, a directory containing spin.toml or
    /// ferry.toml, or a component (`.wasm`), served alone at `/...`.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The app, as Spin's `spin up -f` names it (instead of PATH).
    #[arg(
        short = 'f',
        long = "from",
        value_name = "APP",
        conflicts_with = "path"
    )]
    from: Option<PathBuf>,
    /// An environment variable for every component, on top of its own
    /// `environment` (repeatable), as Spin's `spin up -e`.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Run only this component's triggers (repeatable), and load only it
    /// and the components its dependencies take; as Spin's `spin up -c`.
    #[arg(short = 'c', long = "component-id", value_name = "ID")]
    component_id: Vec<String>,
    /// Per-component limits; defaults to runtime-config.toml beside the manifest.
    #[arg(long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// A value for an application variable: NAME=VALUE, NAME=@FILE (the
    /// file's contents), or @FILE.json / @FILE.toml (a table of them).
    /// Overrides SPIN_VARIABLE_<NAME> / FERRY_VARIABLE_<NAME> and `.env`.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    #[command(flatten)]
    connection: crate::registry::ConnectionArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// How components are fetched, compiled and limited.
#[derive(Debug, Clone, Args)]
struct EngineArgs {
    /// Where compiled code is cached [default: $XDG_CACHE_HOME/ferry or
    /// ~/.cache/ferry; for `ferry serve`, cache/ in the state directory].
    #[arg(long, value_name = "DIR", env = "FERRY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every component afresh and keep nothing on disk (remote
    /// sources are downloaded every time).
    #[arg(long)]
    no_cache: bool,
    /// Largest component download (`source = { url, digest }`).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    max_download_size: u64,
    /// How long one component download may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    download_timeout: Duration,
    /// Instances alive at once across all components: the size of the
    /// preallocated instance pool (requests beyond it get 503).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_instances: u32,
    /// Give each instance memory of its own instead of a slot from the
    /// preallocated pool: no address space reserved up front and no
    /// `--max-instances` limit, but each request maps and unmaps its memory
    /// (as `spin up --disable-pooling`).
    #[arg(long)]
    disable_pooling: bool,
    /// Where components' `files` are copied to be mounted [default: the
    /// system's temporary directory] (as `spin up --temp`).
    #[arg(long, value_name = "DIR")]
    temp: Option<PathBuf>,
    /// Mount `{ source, destination }` directories in place instead of
    /// copying them, for a component whose `files` are only such and that
    /// excludes nothing (as `spin up --direct-mounts`; a single directory is
    /// always mounted in place).
    #[arg(long)]
    direct_mounts: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

impl EngineArgs {
    /// The settings apps are loaded with; `default_cache` where no
    /// `--cache-dir` is given.
    fn settings(
        &self,
        default_cache: Option<PathBuf>,
        variables: ferry_control::variables::Sources,
    ) -> assemble::Settings {
        assemble::Settings {
            limits: self.limits.limits(),
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache_dir.clone().or(default_cache)
            },
            max_download_size: self.max_download_size,
            download_timeout: self.download_timeout,
            variables,
            environment: Vec::new(),
            component_ids: Vec::new(),
            registry_credentials: true,
        }
    }
}

impl AppArgs {
    fn settings(&self) -> assemble::Settings {
        assemble::Settings {
            environment: self.env.clone(),
            component_ids: self.component_id.clone(),
            ..self.engine.settings(
                CompileCache::default_dir(),
                ferry_control::variables::Sources::Local(self.variables.clone()),
            )
        }
    }

    /// Settles which app to load: `-f` instead of PATH; a component
    /// (`.wasm`) becomes a one-component app at `/...` named after the
    /// file, whose manifest is written to a directory of its own; a
    /// registry reference is pulled, and its pulled manifest served
    /// (`build`, the command's `--build`, is refused for one).
    fn resolve(&mut self, build: bool) -> anyhow::Result<()> {
        if let Some(from) = self.from.take() {
            self.path = from;
        }
        if crate::registry::is_reference(&self.path) {
            self.path = crate::registry::pull_app(
                &self.path,
                &self.connection,
                self.engine.cache_dir.clone(),
                build,
            )?;
            return Ok(());
        }
        if self.path.extension().is_none_or(|e| e != "wasm") {
            return Ok(());
        }
        let wasm = self
            .path
            .canonicalize()
            .with_context(|| format!("opening {}", self.path.display()))?;
        let stem = wasm
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("app")
            .to_ascii_lowercase();
        // A component id from the name: Spin's kebab words, else `app`.
        let id: String = stem
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let id = if id.starts_with(|c: char| c.is_ascii_alphabetic()) {
            id
        } else {
            "app".into()
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-wasm-app-")
            .tempdir()?
            .keep();
        let manifest = dir.join("spin.toml");
        std::fs::write(
            &manifest,
            format!(
                "spin_manifest_version = 2\n\n[application]\nname = {id:?}\n\n[[trigger.http]]\nroute = \"/...\"\ncomponent = {id:?}\n\n[component.{id}]\nsource = {:?}\n",
                wasm.display().to_string()
            ),
        )?;
        self.path = manifest;
        Ok(())
    }
}

/// `KEY=VALUE` for `-e`.
pub(crate) fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// How the apps listener treats connections.
#[derive(Debug, Clone, Args)]
struct ListenerArgs {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How long a client may take to send request headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Largest request header section (at least 8 KiB).
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = parse_header_size)]
    max_header_size: u64,
    /// After SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Threads serving requests, each with its own event loop [default: the CPUs ferry may use].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
    /// Send a span per request to this OpenTelemetry collector (OTLP over
    /// HTTP, protobuf; spans go to `<URL>/v1/traces`) [default: none, no
    /// spans are made].
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (HTTP/2 or HTTP/1.1 by
    /// ALPN); reloaded when the file changes. Needs `--tls-key`.
    #[arg(
        long,
        value_name = "FILE",
        env = "FERRY_TLS_CERT",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(
        long,
        value_name = "FILE",
        env = "FERRY_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
}

impl ListenerArgs {
    /// The tracer provider, if an OTLP endpoint is given.
    fn traces(&self) -> anyhow::Result<Option<ferry_control::traces::Traces>> {
        self.otlp_endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .map(ferry_control::traces::start)
            .transpose()
    }

    /// The server's settings; reads the TLS certificate and key, if given.
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let tls = tls_files(self.tls_cert.as_ref(), self.tls_key.as_ref())
            .map(|files| Tls::load(&files, &[tls::H2, tls::HTTP1, tls::HTTP10]))
            .transpose()?;
        Ok(ServerConfig {
            header_read_timeout: self.header_read_timeout,
            max_header_size: usize::try_from(self.max_header_size).unwrap_or(usize::MAX),
            shutdown_timeout: self.shutdown_timeout,
            workers: self
                .workers
                .map_or(ServerConfig::default().workers, |n| n as usize),
            tls,
        })
    }
}

fn tls_files(cert: Option<&PathBuf>, key: Option<&PathBuf>) -> Option<TlsFiles> {
    Some(TlsFiles {
        cert: cert?.clone(),
        key: key?.clone(),
    })
}

/// `http` or `https`, as a listener serves.
fn scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Where guests' `http://self` requests go. Without TLS, the apps listener
/// itself. With TLS, a second, plain-HTTP listener on loopback serving the
/// same apps: a guest's client would not trust the certificate for an IP
/// address, and `self` never leaves the machine.
struct SelfListener {
    addr: SocketAddr,
    own: Option<TcpListener>,
}

impl SelfListener {
    fn bind(
        tokio: &tokio::runtime::Runtime,
        apps_addr: SocketAddr,
        config: &ServerConfig,
    ) -> anyhow::Result<Self> {
        if config.tls.is_none() {
            return Ok(Self {
                addr: apps_addr,
                own: None,
            });
        }
        let loopback = if apps_addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        };
        let own = bind(tokio, SocketAddr::new(loopback, 0))?;
        Ok(Self {
            addr: own.local_addr()?,
            own: Some(own),
        })
    }

    /// Serves `apps` on the listener's own socket, if it has one, until the
    /// process ends.
    fn serve(self, tokio: &tokio::runtime::Runtime, apps: Arc<LiveApps>, config: &ServerConfig) {
        let Some(own) = self.own else { return };
        let config = ServerConfig {
            tls: None,
            ..config.clone()
        };
        tokio.spawn(async move {
            if let Err(e) =
                ferry_server::serve(own, apps, &config, std::future::pending::<()>()).await
            {
                tracing::error!("the listener for `http://self` stopped: {e:#}");
            }
        });
    }
}

/// Defaults for every component; runtime-config.toml can override them.
#[derive(Debug, Clone, Args)]
struct LimitArgs {
    /// Linear memory per instance, all its memories together (Spin's
    /// `--max-instance-memory` is the same).
    #[arg(long, alias = "max-instance-memory", value_name = "SIZE", default_value = "128MiB", value_parser = parse_size)]
    max_memory: u64,
    /// Wall-clock time per request (504 beyond it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Request body size (413 beyond it).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    max_request_body: u64,
    /// Response body size (500 beyond it, or a cut-short stream once the head
    /// was sent) [default: none for streamed responses; a WAGI guest's
    /// buffered output is bounded at 32 MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_response_body: Option<u64>,
    /// Requests one component runs at once; more wait in its queue.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_requests: u32,
    /// Requests that may wait, first come first served, for one of a
    /// component's slots (503 with Retry-After beyond it).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_queued_requests: u32,
    /// How long a request may wait in that queue (503 with Retry-After beyond it).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    queue_timeout: Duration,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_memory: self.max_memory,
            request_timeout: self.request_timeout,
            max_request_body: self.max_request_body,
            max_response_body: self.max_response_body,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            max_queued_requests: self.max_queued_requests as usize,
            queue_timeout: self.queue_timeout,
        }
    }
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Run every component's build command first (as `ferry build` does).
    #[arg(long)]
    build: bool,
    /// Reload the app in place when its manifest, runtime config, `.env`,
    /// a component's Wasm or a `files` entry changes; the listener stays
    /// open and a version that fails to load leaves the old one serving.
    #[arg(long)]
    watch: bool,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// When the `--listen` port is taken, try the next ones (up to
    /// 20 more), as Spin's `spin up --find-free-port` does.
    #[arg(long)]
    find_free_port: bool,
    /// Silence the components' own output (their stdout and stderr lines),
    /// as Spin's `spin up -q` does; Ferry's log lines stay.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Also append each component's output lines to
    /// `DIR/<component>_stdout.txt` and `DIR/<component>_stderr.txt` (made
    /// if missing), as Spin's `spin up -L` does; `-q` does not stop them.
    #[arg(short = 'L', long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on `GET /metrics` at this address (no
    /// token: keep it private).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Where the app's state lives: key-value stores and SQLite databases
    /// that runtime-config.toml gives no path [default: .ferry beside the
    /// manifest].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Sets KEY to VALUE in the app's `default` key-value store before
    /// serving (repeatable).
    #[arg(long = "key-value", value_name = "KEY=VALUE")]
    key_values: Vec<String>,
    /// Runs a SQL statement, or a file of them (`@FILE`), against the app's
    /// `default` SQLite database before serving (repeatable, in order).
    #[arg(long = "sqlite", value_name = "STATEMENT|@FILE")]
    sqlite_statements: Vec<String>,
    #[command(flatten)]
    listener: ListenerArgs,
    /// For an app with a `[[trigger.command]]`: the command's arguments
    /// (after its name); `ferry up` runs it once and exits with its status.
    /// With a `[[trigger.pipeline]]`: more arguments for its first stage.
    #[arg(last = true, value_name = "ARGS")]
    command_args: Vec<String>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    app: AppArgs,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The app: a manifest file or a directory containing spin.toml or ferry.toml.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The app, as Spin's `spin build -f` names it (instead of PATH).
    #[arg(
        short = 'f',
        long = "from",
        value_name = "APP",
        conflicts_with = "path"
    )]
    from: Option<PathBuf>,
    /// Build only this component (repeatable); inline components have the ids `ferry check` shows.
    #[arg(short = 'c', long = "component-id", value_name = "ID")]
    component_id: Vec<String>,
    /// Then serve it, as `ferry up` with the arguments after `--` (Spin's
    /// `spin build --up`).
    #[arg(short = 'u', long)]
    up: bool,
    /// `ferry up`'s arguments, with `--up`.
    #[arg(last = true, value_name = "UP_ARGS", requires = "up")]
    up_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_header_size(s: &str) -> Result<u64, String> {
    let size = parse_size(s)?;
    if size < 8192 {
        return Err("must be at least 8 KiB".into());
    }
    Ok(size)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => up(args),
        Command::Pipe(args) => pipe(args),
        Command::Completions(args) => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "ferry",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::New(args) => new(args),
        Command::Registry(command) => crate::registry::run(command),
        Command::Check(args) => check(args),
        Command::Build(args) => build(args),
        Command::Serve(args) => serve(args),
        Command::Deploy(mut args) => {
            if crate::registry::is_reference(&args.path) {
                args.path =
                    crate::registry::pull_app(&args.path, &args.connection, None, args.build)?;
            }
            deploy(args)
        }
        Command::Nodes(args) => client_call(async move |out| {
            let nodes = args.host.client()?.nodes().await?;
            if args.json {
                writeln!(out, "{nodes:#}")?;
                return Ok(());
            }
            ferry_client::print_nodes(out, &ferry_client::typed(nodes)?)
        }),
        Command::Apps(args) => client_call(async move |out| {
            let apps = args.host.client()?.apps().await?;
            if args.json {
                writeln!(out, "{apps:#}")?;
                return Ok(());
            }
            ferry_client::print_apps(out, &ferry_client::typed(apps)?)
        }),
        Command::App(AppCommand::Show(args)) => client_call(async move |out| {
            let app = args.host.client()?.show(&args.name).await?;
            if args.json {
                writeln!(out, "{app:#}")?;
                return Ok(());
            }
            ferry_client::print_app(out, &ferry_client::typed(app)?)
        }),
        Command::Rollback(args) => client_call(async move |out| {
            let done = args.host.client()?.rollback(&args.name, args.to).await?;
            ferry_client::print_activated(out, &done, "Serving")
        }),
        Command::Logs(args) => client_call(async move |out| {
            args.host
                .client()?
                .logs(&args.name, args.follow, args.json, out)
                .await
        }),
        Command::Delete(args) => client_call(async move |out| {
            args.host.client()?.delete(&args.name).await?;
            writeln!(out, "Deleted `{}`", args.name)?;
            Ok(())
        }),
    }
}

/// `ferry deploy`: bundles the app and uploads it to the live host.
fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    client_call(async move |out| {
        if args.build {
            let app = ferry_manifest::load_app_to_build(&args.path)?;
            crate::build::build_app(&app, &[])?;
        }
        let bundle = ferry_client::Bundle::collect(&args.path)?;
        print_warnings(&bundle.app);
        let name = ferry_client::deploy_name(&bundle, args.name.as_deref())?;
        let variables = ferry_client::deploy_variables(&bundle, &args.variables)?;
        let client = args.host.client()?;
        let done = client
            .deploy(&bundle, &name, &args.hostnames, &variables, out)
            .await?;
        ferry_client::print_activated(out, &done, "Deployed")?;
        if args.wait {
            client
                .wait_for_nodes(&name, done.version, args.wait_timeout, out)
                .await?;
        }
        Ok(())
    })
}

/// Runs one admin API call on a runtime of its own, printing to stdout.
fn client_call(
    call: impl AsyncFnOnce(&mut dyn std::io::Write) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text);
    let tokio = current_thread_runtime()?;
    let mut stdout = std::io::stdout();
    tokio.block_on(call(&mut stdout))?;
    Ok(ExitCode::SUCCESS)
}

/// `ferry serve`: the apps listener and the admin listener, with every app
/// the state directory holds restored.
fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    ferry_server::raise_open_file_limit();
    let guest_logs = GuestLogs::new();
    init_logging_into(args.listener.log_format, Some(&guest_logs), false, None);
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            default_state_dir().context("no --state-dir, and no home directory to default to")?
        }
    };
    let local = ferry_control::state::StateDir::open(&state_dir)?;
    let token = local.admin_token(args.admin_token_file.as_deref())?;
    let tokio = current_thread_runtime()?;
    let state: Arc<dyn ferry_control::desired::DesiredState> = match &args.cluster {
        Some(urls) => {
            let node = args.node_name.clone().unwrap_or_else(host_name);
            ferry_api::valid_app_name(&node).map_err(|_| {
                Failure::usage(format!(
                    "--node-name: `{node}` is not a node name: use 1 to 64 letters, digits, `-` and `_`"
                ))
            })?;
            let options = ferry_control::cluster::ClusterOptions {
                urls: urls.clone(),
                node,
                replicas: args
                    .replicas
                    .map_or_else(|| urls.split(',').count().min(3), usize::from),
            };
            tokio
                .block_on(ferry_control::cluster::ClusterState::join(&options, local))
                .map_err(|e| Failure::usage(format!("--cluster: {e:#}")))?
        }
        None => Arc::new(local),
    };
    // The host's environment is no app's unless the operator names a
    // variable; each app's own values come with its deploy.
    let (environment, unset) = ferry_control::variables::host_environment(&args.host_variables)
        .map_err(|e| Failure::usage(format!("{e:#}")))?;
    for name in unset {
        tracing::warn!(
            variable = name.as_str(),
            "--host-variable {name}: neither FERRY_VARIABLE_{upper} nor SPIN_VARIABLE_{upper} is set, so no app gets a value for it from the host",
            upper = name.to_ascii_uppercase()
        );
    }
    let settings = assemble::Settings {
        // Tenants' registry packages are fetched anonymously.
        registry_credentials: false,
        ..args.engine.settings(
            Some(state_dir.join("cache")),
            ferry_control::variables::Sources::Host {
                environment,
                deployed: ferry_control::variables::Values::default(),
            },
        )
    };
    let runtime = Arc::new(new_runtime(
        &args.engine,
        &settings,
        args.engine.limits.max_memory,
    )?);
    // Dropped (flushing the last spans) after the runtime below has stopped.
    let traces = args.listener.traces()?;
    let config = args.listener.config()?;
    let admin_tls = tls_files(args.admin_tls_cert.as_ref(), args.admin_tls_key.as_ref())
        .map(|files| Tls::load(&files, &[tls::HTTP1, tls::HTTP10]))
        .transpose()?;
    let listener = bind(&tokio, args.listen)?;
    let admin_listener = bind(&tokio, args.admin_listen)?;
    // No guest may reach the admin API's unauthenticated pages.
    runtime.forbid_outbound_to(admin_listener.local_addr()?);
    let local = listener.local_addr()?;
    let self_listener = SelfListener::bind(&tokio, local, &config)?;
    let metrics = Metrics::new();
    metrics.watch_runtime(runtime.clone());
    let apps = LiveApps::observed(Some(metrics.server()), traces.is_some());
    let shared = state.shared();
    let host = Arc::new(ferry_control::host::Host::new(
        state,
        apps.clone(),
        assemble::Assembler {
            runtime,
            local: Some(self_listener.addr),
            tokio: tokio.handle().clone(),
            metrics: Some(metrics.clone()),
            sized_by: SizedBy::Flag,
            traces: traces.is_some(),
        },
        settings,
        ferry_control::host::BundleLimits {
            max_bundle_size: args.max_bundle_size,
            max_files: args.max_bundle_files,
        },
        args.keep_versions as usize,
        metrics.clone(),
    ));
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "Serving apps on {}://{local}",
        scheme(config.tls.as_ref())
    )?;
    writeln!(
        stdout,
        "Admin API on {}://{} (token: {})",
        scheme(admin_tls.as_ref()),
        admin_listener.local_addr()?,
        args.admin_token_file
            .clone()
            .unwrap_or_else(|| state_dir.join("admin-token"))
            .display()
    )?;
    stdout.flush()?;
    let admin = Arc::new(ferry_control::admin::Admin {
        host: host.clone(),
        metrics,
        guest_logs,
        token,
        max_blob: args.max_bundle_size,
    });
    tokio.spawn(ferry_control::admin::serve(
        admin_listener,
        admin,
        admin_tls,
    ));
    self_listener.serve(&tokio, apps.clone(), &config);
    // Restored off the runtime's threads while it serves (and drives the
    // stores' I/O); /readyz says when it is done.
    if shared {
        // Restored, then kept in step with the other nodes' decisions.
        let handle = tokio.handle().clone();
        let beating = host.clone();
        std::thread::Builder::new()
            .name("ferry-heartbeat".into())
            .spawn(move || beating.heartbeat(&handle))
            .context("starting the cluster heartbeat")?;
        let leading = host.clone();
        std::thread::Builder::new()
            .name("ferry-leases".into())
            .spawn(move || leading.lead_triggers())
            .context("starting the cluster's trigger leases")?;
        let watching = host.clone();
        std::thread::Builder::new()
            .name("ferry-lease-watch".into())
            .spawn(move || watching.watch_leases())
            .context("starting the cluster's trigger lease watch")?;
        let handle = tokio.handle().clone();
        std::thread::Builder::new()
            .name("ferry-follow".into())
            .spawn(move || host.follow(&handle))
            .context("starting the cluster follower")?;
    } else {
        tokio.spawn_blocking(move || host.restore());
    }
    tokio.block_on(ferry_server::serve(
        listener,
        apps,
        &config,
        shutdown_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The runtime a command's own I/O runs on (accepting, signals, admin
/// calls); requests are served by the server's worker threads.
fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The machine's host name, a cluster node's default name: its first
/// label, as a node name may be written.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|name| name.trim().split('.').next().map(str::to_owned))
        .map(|name| {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(64)
                .collect::<String>()
        })
        .filter(|name| name.starts_with(|c: char| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "ferry".into())
}

fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
        .map(|dir| dir.join("ferry"))
}

fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    if args.list {
        for template in crate::new::TEMPLATES {
            writeln!(stdout, "{:<14} {}", template.id, template.description)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut words = args.words.into_iter();
    let (template, name) = match (args.template, words.next(), words.next()) {
        (Some(template), Some(name), None) | (None, Some(template), Some(name)) => (template, name),
        (Some(_), Some(_), Some(_)) => {
            return Err(
                Failure::usage("with `-t TEMPLATE`, give only the app's name".into()).into(),
            );
        }
        _ => {
            return Err(Failure::usage(
                "give a template and a name: `ferry new http-rust my-app` (`ferry new --list` shows the templates)".into(),
            )
            .into());
        }
    };
    let template = crate::new::find(&template)?;
    let dir = args.output.unwrap_or_else(|| PathBuf::from(&name));
    let written = crate::new::create(template, &name, &dir)?;
    writeln!(
        stdout,
        "Created `{name}` from `{}` in {} ({} files)",
        template.id,
        dir.display(),
        written.len()
    )?;
    writeln!(
        stdout,
        "Next: cd {} && ferry up --build",
        shell_word(&dir.display().to_string())
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `text` as one shell word.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let path = args.from.unwrap_or(args.path);
    // `ferry up PATH [-c ID]… UP_ARGS…`, parsed as the command line would
    // be (so its errors read the same), before anything is built.
    let up_args = if args.up {
        let mut words: Vec<std::ffi::OsString> =
            vec!["ferry".into(), "up".into(), path.clone().into()];
        for id in &args.component_id {
            words.extend(["-c".into(), id.into()]);
        }
        words.extend(args.up_args.into_iter().map(Into::into));
        match Cli::try_parse_from(words) {
            Ok(Cli {
                command: Command::Up(up_args),
            }) => Some(up_args),
            Ok(_) => anyhow::bail!("`ferry up` did not parse as itself"),
            Err(e) => e.exit(),
        }
    } else {
        init_logging(LogFormat::Text);
        None
    };
    let app = ferry_manifest::load_app_to_build(&path)?;
    print_warnings(&app);
    match up_args {
        None => {
            crate::build::build_app(&app, &args.component_id)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(up_args) => {
            // What `ferry up -c` will load.
            let loaded = crate::build::loaded_by(&app, &args.component_id)?;
            crate::build::build_app(&app, &loaded)?;
            up(up_args)
        }
    }
}

/// Manifest warnings (legacy syntax and the like), rendered like errors.
fn print_warnings(app: &App) {
    if !app.warnings.is_empty() {
        eprintln!("{}\n", app.warnings);
    }
}

fn init_logging(format: LogFormat) {
    init_logging_into(format, None, false, None);
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or
/// JSON lines; with `guest_logs`, guests' lines are also kept there for
/// `ferry logs`, whatever `RUST_LOG` says. `quiet` leaves guests' own lines
/// out of stderr; `guest_files` (`-L`) gets them all the same.
fn init_logging_into(
    format: LogFormat,
    guest_logs: Option<&Arc<GuestLogs>>,
    quiet: bool,
    guest_files: Option<&Arc<GuestFiles>>,
) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if quiet {
        filter = filter.add_directive("ferry::guest=off".parse().expect("a valid directive"));
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let guests = guest_logs.map(|logs| {
        logs.layer()
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target() == "ferry::guest" || meta.target() == "ferry::failure"
            }))
    });
    let files = guest_files.map(|files| {
        files
            .layer()
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target() == "ferry::guest"
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(guests)
        .with(files)
        .try_init();
}

/// Reads and prepares the app `args` name (see [`assemble::prepare`]).
fn prepare(args: &AppArgs, out: &mut dyn std::io::Write) -> anyhow::Result<assemble::Prepared> {
    let prepared = assemble::prepare(
        &args.path,
        args.runtime_config_file.as_deref(),
        None,
        &args.settings(),
        out,
    )?;
    print_warnings(&prepared.app);
    Ok(prepared)
}

/// The engine: instance slots for `max_memory` each, the compile cache
/// `settings` name.
fn new_runtime(
    engine: &EngineArgs,
    settings: &assemble::Settings,
    max_memory: u64,
) -> anyhow::Result<Runtime> {
    Runtime::new(
        &EngineOptions {
            max_memory,
            max_instances: engine.max_instances,
            pooling: !engine.disable_pooling,
            staging_dir: engine.temp.clone(),
            direct_mounts: engine.direct_mounts,
        },
        CompileCache::new(settings.cache_dir.clone()),
    )
}

/// `ferry pipe`: the stages loaded, run as one pipeline, and the exit
/// status of the first to fail (in time: a stage that fails makes the ones
/// before it fail writing to it, and theirs is not the cause), 0 if none.
fn pipe(args: PipeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.engine.settings(
        CompileCache::default_dir(),
        ferry_control::variables::Sources::Local(Vec::new()),
    );
    let max_memory = args.engine.limits.max_memory;
    let runtime = new_runtime(&args.engine, &settings, max_memory)?;
    let limits = Limits {
        max_memory,
        ..Limits::default()
    };
    let (mut guests, mut stage_args) = (Vec::new(), Vec::new());
    for stage in &args.stages {
        let mut words = stage.split_whitespace();
        let path = words.next().context("an empty stage")?;
        guests.push(assemble::load_command_file(
            &runtime,
            Path::new(path),
            limits,
        )?);
        stage_args.push(words.map(str::to_owned).collect::<Vec<_>>());
    }
    let stages: Vec<(&ferry_runtime::Guest, Vec<String>)> = guests.iter().zip(stage_args).collect();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ends = tokio.block_on(ferry_runtime::pipeline(&stages));
    let status = pipeline_status("ferry pipe", ends, &args.stages);
    Ok(ExitCode::from(
        u8::try_from(status.clamp(0, 255)).unwrap_or(1),
    ))
}

/// A pipeline's exit status (`pipefail`): that of the first stage to fail,
/// in the order they ended (`ends`'), printing why each that could not run
/// failed; `names` says each stage for people.
fn pipeline_status(who: &str, ends: Vec<ferry_runtime::StageEnd>, names: &[String]) -> i32 {
    let mut status = 0;
    for end in ends {
        let code = match end.outcome {
            Ok(code) => code,
            Err(e) => {
                eprintln!(
                    "{who}: stage {} ({}) failed: {e}",
                    end.stage + 1,
                    names[end.stage]
                );
                1
            }
        };
        if status == 0 && code != 0 {
            status = code;
        }
    }
    status
}

fn up(mut args: UpArgs) -> anyhow::Result<ExitCode> {
    ferry_server::raise_open_file_limit();
    let files = args
        .log_dir
        .as_deref()
        .map(GuestFiles::new)
        .transpose()?
        .map(Arc::new);
    init_logging_into(args.listener.log_format, None, args.quiet, files.as_ref());
    args.app.resolve(args.build)?;
    if args.build {
        let app = ferry_manifest::load_app_to_build(&args.app.path)?;
        let loaded = crate::build::loaded_by(&app, &args.app.component_id)?;
        crate::build::build_app(&app, &loaded)?;
    }
    let mut stdout = std::io::stdout();
    let prepared = prepare(&args.app, &mut stdout)?;
    let runtime = Arc::new(new_runtime(
        &args.app.engine,
        &args.app.settings(),
        prepared.max_memory(),
    )?);
    // Dropped (flushing the last spans) after the runtime below has stopped.
    let traces = args.listener.traces()?;
    // This runtime accepts connections and waits for signals; requests are
    // served by the server's worker threads.
    let tokio = current_thread_runtime()?;
    // Bind before compiling so `http://self` knows its address and early
    // clients wait in the accept queue instead of being refused.
    let config = args.listener.config()?;
    let listener = bind_searching(&tokio, args.listen, args.find_free_port)?;
    let local = listener.local_addr()?;
    let self_listener = SelfListener::bind(&tokio, local, &config)?;
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let metrics = Metrics::new();
            metrics.watch_runtime(runtime.clone());
            let metrics_listener = bind(&tokio, addr)?;
            writeln!(
                stdout,
                "Metrics on http://{}/metrics",
                metrics_listener.local_addr()?
            )?;
            tokio.spawn(ferry_control::admin::serve_metrics(
                metrics_listener,
                metrics.clone(),
            ));
            Some(metrics)
        }
        None => None,
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| prepared.app.dir.join(".ferry"));
    tokio.block_on(stores::seed_default_store(
        &prepared.app,
        &prepared.config,
        &state_dir,
        &args.key_values,
    ))?;
    tokio.block_on(stores::run_sqlite_statements(
        &prepared.app,
        &prepared.config,
        &state_dir,
        &args.sqlite_statements,
    ))?;
    let loader = Loader {
        args: args.app.clone(),
        assembler: Assembler {
            runtime,
            local: Some(self_listener.addr),
            tokio: tokio.handle().clone(),
            metrics: metrics.clone(),
            sized_by: SizedBy::FirstLoad,
            traces: traces.is_some(),
        },
        state_dir,
        running: std::sync::Mutex::new(None),
        trigger_metrics: metrics.as_ref().map(|m| m.triggers().clone()),
        log_dir: args.log_dir.clone(),
    };
    let assembled = off_runtime(&tokio, || {
        loader.assembler.assemble(
            &prepared,
            Mode::Serve {
                data: &loader.state_dir,
                previous: None,
                cluster: None,
            },
            &mut stdout,
        )
    })?;
    let host = assembled.app;
    let commands = assembled.commands;
    // What `ferry up` runs once, if anything: the app's command, or its
    // pipeline's stages in order (a component may be more than one stage).
    let once: Option<Vec<(&ferry_runtime::Guest, Vec<String>)>> = prepared
        .app
        .event_triggers
        .iter()
        .find(|t| t.runs_once())
        .map(|trigger| {
            let guest = |id: &str| {
                commands
                    .iter()
                    .find(|g| g.id() == id)
                    .context("a command component was not loaded")
            };
            match &trigger.source {
                EventSource::Pipeline { stages } => stages
                    .iter()
                    .enumerate()
                    .map(|(n, stage)| {
                        let mut stage_args = stage.args.clone();
                        // `ferry up -- ARGS`: the first stage's.
                        if n == 0 {
                            stage_args.extend(args.command_args.iter().cloned());
                        }
                        Ok((guest(&stage.component)?, stage_args))
                    })
                    .collect::<anyhow::Result<Vec<_>>>(),
                _ => Ok(vec![(
                    guest(&trigger.component)?,
                    args.command_args.clone(),
                )]),
            }
        })
        .transpose()?;
    let watched = crate::watch::Watched::of(&prepared.app, args.app.runtime_config_file.as_deref())
        .ignoring(args.log_dir.as_deref());
    let apps = LiveApps::observed(metrics.as_ref().map(|m| m.server()), traces.is_some());
    apps.install(host, Vec::new())?;

    let url = format!("{}://{local}", scheme(config.tls.as_ref()));
    writeln!(stdout, "Serving {url}")?;
    writeln!(stdout, "Available routes:")?;
    let served = apps
        .app(&prepared.app.name)
        .context("the app just installed")?;
    for route in served.router().routes() {
        let (name, kind) = match &route.target {
            Target::Component { id, executor } => (
                id.as_str(),
                match executor {
                    Executor::Wagi(_) => " (wagi)",
                    _ => "",
                },
            ),
            Target::Static(_) => ("(static response)", ""),
        };
        writeln!(stdout, "  {name}: {url}{}{kind}", route.pattern.full())?;
    }
    print_triggers(&mut stdout, &assembled.triggers)?;
    stdout.flush()?;
    let running = {
        let _enter = tokio.enter();
        assembled
            .triggers
            .start(loader.trigger_metrics.as_ref(), loader.assembler.traces)
    };
    *loader.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);

    if args.watch {
        writeln!(stdout, "Watching the app's files for changes")?;
        stdout.flush()?;
        let live = apps.clone();
        let mut serving = prepared.app.name.clone();
        crate::watch::spawn(watched, move |changed| {
            loader.reload(&live, &mut serving, changed)
        })?;
    }
    self_listener.serve(&tokio, apps.clone(), &config);
    let served = ferry_server::serve(listener, apps, &config, shutdown_signal());
    let Some(once) = once else {
        tokio.block_on(served)?;
        return Ok(ExitCode::SUCCESS);
    };
    // The app's command (or pipeline) is its main: it runs while the app
    // serves, and `ferry up` exits with its status when it ends.
    let names: Vec<String> = once
        .iter()
        .map(|(guest, args)| {
            std::iter::once(guest.id().to_owned())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let status = tokio.block_on(async {
        tokio::select! {
            served = served => served.map(|()| 130),
            status = async {
                if let [(command, args)] = once.as_slice() {
                    command.run_command(args).await.map_err(|e| {
                        anyhow::anyhow!("the command `{}` failed: {e}", command.id())
                    })
                } else {
                    let ends = ferry_runtime::pipeline(&once).await;
                    Ok(pipeline_status("ferry up", ends, &names))
                }
            } => status,
        }
    })?;
    Ok(ExitCode::from(
        u8::try_from(status.clamp(0, 255)).unwrap_or(1),
    ))
}

/// Each event trigger, one line each (nothing when there are none).
fn print_triggers(
    out: &mut dyn std::io::Write,
    triggers: &ferry_trigger::Triggers,
) -> anyhow::Result<()> {
    if triggers.is_empty() {
        return Ok(());
    }
    writeln!(out, "Event triggers:")?;
    for trigger in triggers.iter() {
        writeln!(
            out,
            "  {}: {} trigger `{}`, {}",
            trigger.component,
            trigger.source.kind(),
            trigger.id,
            trigger.source.describe()
        )?;
    }
    Ok(())
}

fn bind(tokio: &tokio::runtime::Runtime, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    Ok(tokio
        .block_on(TcpListener::bind(addr))
        .map_err(|e| Failure::bind(format!("cannot listen on {addr}: {e}")))?)
}

/// Ports `--find-free-port` tries after the one asked for.
const FREE_PORT_TRIES: u16 = 20;

/// Binds `addr`; with `search`, the next ports too while each is taken.
fn bind_searching(
    tokio: &tokio::runtime::Runtime,
    addr: SocketAddr,
    search: bool,
) -> anyhow::Result<TcpListener> {
    let mut at = addr;
    loop {
        match tokio.block_on(TcpListener::bind(at)) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let tried = at.port() - addr.port();
                if !search {
                    return Err(Failure::bind(format!(
                        "cannot listen on {addr}: it is in use (`--find-free-port` tries the next ports)"
                    ))
                    .into());
                }
                if tried >= FREE_PORT_TRIES || at.port() == u16::MAX {
                    return Err(Failure::bind(format!(
                        "no free port from {} to {}",
                        addr.port(),
                        at.port()
                    ))
                    .into());
                }
                at.set_port(at.port() + 1);
            }
            Err(e) => return Err(Failure::bind(format!("cannot listen on {at}: {e}")).into()),
        }
    }
}

/// Loads versions of one app for `ferry up`: the first, and with `--watch`
/// each one after, into the same engine, state and listener.
struct Loader {
    args: AppArgs,
    assembler: Assembler,
    state_dir: PathBuf,
    /// The serving version's event triggers.
    running: std::sync::Mutex<Option<ferry_trigger::Running>>,
    trigger_metrics: Option<ferry_trigger::TriggerMetrics>,
    /// `-L`'s directory, which `--watch` leaves alone.
    log_dir: Option<PathBuf>,
}

impl Loader {
    /// Loads the app again and swaps it in for the version of `serving`
    /// (its name, which the new manifest may change) in `live`; what to
    /// watch from now on. On failure nothing changes.
    fn reload(
        &self,
        live: &LiveApps,
        serving: &mut String,
        changed: &[PathBuf],
    ) -> anyhow::Result<crate::watch::Watched> {
        let mut stdout = std::io::stdout();
        let prepared = prepare(&self.args, &mut stdout)?;
        let previous = live.app(serving);
        // The main thread drives the runtime (it serves), so the assembly
        // may wait on it from here.
        let assembled = self.assembler.assemble(
            &prepared,
            Mode::Serve {
                data: &self.state_dir,
                previous: previous.as_deref(),
                cluster: None,
            },
            &mut stdout,
        )?;
        live.replace(serving, assembled.app, Vec::new())?;
        // The old version's triggers stop taking events, then the new
        // one's start; the old ones finish what they had begun.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let stopped = running.take().map(ferry_trigger::Running::stop);
        *running = Some({
            let _enter = self.assembler.tokio.enter();
            assembled
                .triggers
                .start(self.trigger_metrics.as_ref(), self.assembler.traces)
        });
        drop(running);
        if let Some(stopped) = stopped {
            self.assembler.tokio.spawn(stopped);
        }
        print_triggers(&mut stdout, &assembled.triggers)?;
        serving.clone_from(&prepared.app.name);
        tracing::info!(changed = changed.len(), "reloaded the app");
        Ok(
            crate::watch::Watched::of(&prepared.app, self.args.runtime_config_file.as_deref())
                .ignoring(self.log_dir.as_deref()),
        )
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown signal received");
}

fn check(mut args: CheckArgs) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text);
    args.app.resolve(false)?;
    let mut out = std::io::stdout();
    let prepared = prepare(&args.app, &mut out)?;
    let runtime = new_runtime(
        &args.app.engine,
        &args.app.settings(),
        prepared.max_memory(),
    )?;
    let tokio = current_thread_runtime()?;
    let assembler = Assembler {
        runtime: Arc::new(runtime),
        local: None,
        tokio: tokio.handle().clone(),
        metrics: None,
        sized_by: SizedBy::FirstLoad,
        traces: false,
    };
    let assembled = off_runtime(&tokio, || {
        assembler.assemble(&prepared, Mode::Check, &mut out)
    })?;
    let (host, triggers) = (&assembled.app, &assembled.triggers);
    let app = &prepared.app;
    // In the order the triggers first use them.
    let guests: Vec<(&ferry_manifest::Component, &ferry_runtime::Guest)> =
        assemble::used_components(app)?
            .into_iter()
            .filter_map(|(c, _)| {
                host.guest(&c.id)
                    .or_else(|| triggers.guest(&c.id).map(|g| &**g))
                    .or(assembled.commands.iter().find(|g| g.id() == c.id))
                    .map(|guest| (c, guest))
            })
            .collect();
    writeln!(
        out,
        "\nApp `{}`{} at {}",
        app.name,
        app.version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        app.manifest_path.display()
    )?;
    for (component, guest) in &guests {
        summarize(
            app,
            component,
            guest,
            &app.dir,
            Variables::Resolved(prepared.variables.get(guest.id())),
        )
        .render(&mut out)?;
    }
    for trigger in &app.triggers {
        if let (Handler::Static(fixed), Route::Pattern(route)) = (&trigger.handler, &trigger.route)
        {
            let headers: Vec<&str> = fixed
                .headers
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            writeln!(
                out,
                "\nstatic response\n  route      {} ({}, {}, headers: {})",
                route.full(),
                fixed.status,
                human_size(fixed.body.len() as u64),
                listed(&headers)
            )?;
        }
    }
    writeln!(
        out,
        "\nOK: {} component(s), {} route(s), {} event trigger(s)",
        guests.len(),
        app.triggers.len(),
        app.event_triggers.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
