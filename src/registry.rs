//! `ferry registry push | pull | login`, and the pull behind `ferry up -f
//! REF` and `ferry deploy REF`: arguments and what is printed; the work is
//! `ferry-registry`'s.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ferry_api::human::human_size;
use ferry_control::download::Downloader;
use ferry_manifest::parse_size;
use ferry_registry::auth::Credentials;
use ferry_registry::{Artifact, PullOptions, Registry};
use ferry_runtime::CompileCache;

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Push an app to an OCI registry as Spin's artifact: `ferry registry
    /// push ghcr.io/me/app:1.0`. Only the layers the registry lacks are
    /// uploaded.
    Push(PushArgs),
    /// Pull an app from an OCI registry into the cache, and print where
    /// (`ferry up -f REF` pulls by itself).
    Pull(PullArgs),
    /// Keep credentials for a registry (checked against it first), for
    /// pushes and pulls; Spin's `spin registry login` and Docker's
    /// `config.json` are read too.
    Login(LoginArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// Where to push: REGISTRY/REPOSITORY:TAG.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// The app: a manifest file or a directory containing one.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The app, as Spin's `spin registry push -f` names it (instead of PATH).
    #[arg(
        short = 'f',
        long = "from",
        value_name = "APP",
        conflicts_with = "path"
    )]
    from: Option<PathBuf>,
    /// Run every component's build command first.
    #[arg(long)]
    build: bool,
    /// An annotation on the artifact's manifest (repeatable); overrides
    /// the ones made from the app (`org.opencontainers.image.title`,
    /// `.version`, `.description`, `.authors`).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = crate::cli::parse_env)]
    annotations: Vec<(String, String)>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// Where pulled apps are kept [default: $XDG_CACHE_HOME/ferry or
    /// ~/.cache/ferry].
    #[arg(long, value_name = "DIR", env = "FERRY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry: its host (and port), e.g. ghcr.io.
    #[arg(value_name = "SERVER")]
    server: String,
    #[arg(short = 'u', long)]
    username: String,
    /// The password or token (visible to other users in the process list:
    /// prefer --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password or token from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Talk to the registry over plain HTTP.
    #[arg(short = 'k', long)]
    insecure: bool,
}

/// How to reach a registry, for every command that does.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectionArgs {
    /// Talk to the registry over plain HTTP (Spin's `-k`), for a registry
    /// on this machine or a private network.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Largest artifact pulled (all its layers together).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_pull_size: u64,
}

pub(crate) fn run(command: RegistryCommand) -> anyhow::Result<std::process::ExitCode> {
    let mut out = std::io::stdout();
    match command {
        RegistryCommand::Push(args) => {
            let path = args.from.as_deref().unwrap_or(&args.path);
            if args.build {
                let app = ferry_manifest::load_app_to_build(path)?;
                crate::build::build_app(&app, &[])?;
            }
            let downloads = Downloader::new(
                CompileCache::default_dir().as_deref(),
                args.connection.max_pull_size,
                std::time::Duration::from_secs(300),
            );
            let mut stderr = std::io::stderr();
            let artifact = Artifact::of_app(path, &args.annotations, &mut |component, source| {
                downloads.read(component, source, &mut stderr)
            })?;
            let registry = Registry::connect(&args.reference, args.connection.insecure, true)?;
            let pushed = runtime()?.block_on(ferry_registry::push(&registry, artifact))?;
            writeln!(
                out,
                "Pushed {} ({} of {} blobs uploaded, {}; the rest were there)",
                args.reference,
                pushed.uploaded,
                pushed.blobs,
                human_size(pushed.uploaded_bytes)
            )?;
            writeln!(out, "Digest: {}", pushed.digest)?;
        }
        RegistryCommand::Pull(args) => {
            let dir = pull(
                &args.reference,
                &args.connection,
                args.cache_dir.clone(),
                &mut out,
            )?;
            writeln!(out, "{}", dir.display())?;
        }
        RegistryCommand::Login(args) => {
            let password = match (args.password, args.password_stdin) {
                (Some(password), _) => password,
                (None, true) => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("reading the password from standard input")?;
                    text.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => {
                    return Err(ferry_api::Failure::usage(
                        "give the password with --password-stdin (or -p)".into(),
                    )
                    .into());
                }
            };
            let credentials = Credentials {
                username: args.username,
                password,
            };
            let file = runtime()?.block_on(ferry_registry::login(
                &args.server,
                &credentials,
                args.insecure,
            ))?;
            writeln!(
                out,
                "Logged in to {}; credentials kept in {}",
                args.server,
                file.display()
            )?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Pulls `reference` (printing what it fetched) and returns the pulled
/// app's manifest.
pub(crate) fn pull(
    reference: &str,
    connection: &ConnectionArgs,
    cache_dir: Option<PathBuf>,
    out: &mut dyn Write,
) -> anyhow::Result<PathBuf> {
    let cache_dir = match cache_dir.or_else(CompileCache::default_dir) {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("ferry-pulled-")
            .tempdir()?
            .keep(),
    };
    let registry = Registry::connect(reference, connection.insecure, true)?;
    let options = PullOptions {
        cache_dir,
        max_size: connection.max_pull_size,
    };
    let pulled = runtime()?.block_on(ferry_registry::pull(&registry, &options))?;
    writeln!(
        out,
        "Pulled {reference} ({}, {} layers fetched, {})",
        pulled.digest,
        pulled.fetched,
        human_size(pulled.fetched_bytes)
    )?;
    Ok(pulled.manifest())
}

/// Whether `path`, as given for an app, names a registry reference rather
/// than something on disk.
pub(crate) fn is_reference(path: &Path) -> bool {
    !path.exists() && ferry_registry::looks_like_reference(&path.to_string_lossy())
}

/// [`pull`] for an app given where a path could be: a failure says that it
/// was taken for a reference (a mistyped path looks like one). `build`
/// (the command's `--build`) is refused: a pulled app is built already,
/// and what it carries is never run as a build command.
pub(crate) fn pull_app(
    path: &Path,
    connection: &ConnectionArgs,
    cache_dir: Option<PathBuf>,
    build: bool,
) -> anyhow::Result<PathBuf> {
    if build {
        return Err(ferry_api::Failure::usage(
            "--build builds an app on disk; one from a registry is built already".into(),
        )
        .into());
    }
    let reference = path.to_string_lossy();
    pull(&reference, connection, cache_dir, &mut std::io::stdout()).with_context(|| {
        format!(
            "`{reference}` is no file or directory here, so it was pulled as a registry reference"
        )
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
