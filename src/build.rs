//! `ferry build`: runs each component's `[component.<id>.build]` commands.
//!
//! Commands run one at a time, in manifest order, through the platform shell
//! (`sh -c`), in the component's `workdir` (the manifest's directory unless
//! set), with Ferry's own environment (Spin's build table has none of its
//! own).
//! Their output streams as it comes, each line prefixed with the component's
//! id, so a multi-component build stays readable. The first command that fails
//! stops the build; `ferry build` then exits with that command's exit code.
//!
//! A command is done when it exits, not when its output pipes close: a build
//! step that leaves a background process holding them (a compiler server, a
//! watcher) must not hang the build, so the relays get a moment to drain and
//! are then left to finish on their own.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_manifest::{App, Build, Component};

use ferry_api::Failure;
use ferry_api::human::human_duration;

/// Runs the build commands of the components named in `only` (every
/// component when empty), printing progress to stdout.
pub fn build_app(app: &App, only: &[String]) -> anyhow::Result<()> {
    let selected = select(app, only)?;
    let started = Instant::now();
    let mut built = 0;
    for component in selected {
        let Some(build) = &component.build else {
            say(format_args!(
                "Component `{}` has no build command",
                component.id
            ));
            continue;
        };
        build_component(component, build)?;
        built += 1;
    }
    say(format_args!(
        "Finished building {built} component(s) in {}",
        human_duration(started.elapsed())
    ));
    Ok(())
}

/// What `ferry up -c IDS --build` builds: the components `-c` loads, that
/// is the chosen ones and those their dependencies and middleware take
/// Wasm from (by their manifest ids). No ids: every component.
pub fn loaded_by(app: &App, ids: &[String]) -> anyhow::Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut kept = app.clone();
    kept.keep_components(ids).map_err(Failure::usage)?;
    let mut built = Vec::new();
    for component in &kept.components {
        let id = component.copy_of.as_ref().unwrap_or(&component.id);
        if !built.contains(id) {
            built.push(id.clone());
        }
    }
    Ok(built)
}

/// A progress line on stdout. A closed stdout (`ferry build | head -1`) is
/// not a reason to stop building.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// The components to build, in manifest order. An unknown id is an error
/// naming the ids there are.
fn select<'a>(app: &'a App, only: &[String]) -> anyhow::Result<Vec<&'a Component>> {
    if let Some(unknown) = only.iter().find(|id| app.component(id).is_none()) {
        let known: Vec<String> = app
            .components
            .iter()
            .map(|c| format!("`{}`", c.id))
            .collect();
        return Err(Failure::usage(format!(
            "no component `{unknown}` in {} (its components: {})",
            app.manifest_path.display(),
            known.join(", ")
        ))
        .into());
    }
    Ok(app
        .components
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.id))
        .collect())
}

fn build_component(component: &Component, build: &Build) -> anyhow::Result<()> {
    let id = &component.id;
    let count = build.commands.len();
    let started = Instant::now();
    for (index, command) in build.commands.iter().enumerate() {
        if count > 1 {
            say(format_args!(
                "Building component `{id}` (step {}/{count}) with `{command}`",
                index + 1
            ));
        } else {
            say(format_args!("Building component `{id}` with `{command}`"));
        }
        run_command(id, command, build)?;
    }
    say(format_args!(
        "Built component `{id}` in {}",
        human_duration(started.elapsed())
    ));
    Ok(())
}

/// How long output still in the pipes may take to arrive once a command has
/// exited.
const DRAIN: Duration = Duration::from_millis(500);

/// Runs one build command, relaying its output; a failure is a [`Failure`]
/// carrying the command's exit code.
fn run_command(id: &str, command: &str, build: &Build) -> anyhow::Result<()> {
    if !build.workdir.is_dir() {
        return Err(Failure::build(
            1,
            format!(
                "component `{id}`: the build's workdir {} is not a directory",
                build.workdir.display()
            ),
        )
        .into());
    }
    // stdin is the user's, as with Spin: a step may ask a question.
    let mut child = shell(command)
        .current_dir(&build.workdir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure::build(
                1,
                format!(
                    "component `{id}`: cannot run `{command}` in {}: {e}",
                    build.workdir.display()
                ),
            )
        })?;
    let (done, drained) = mpsc::channel();
    let relays = [
        relay(child.stdout.take(), std::io::stdout, id, done.clone()),
        relay(child.stderr.take(), std::io::stderr, id, done),
    ];
    let status = child.wait()?;
    // Both relays end at end-of-file, unless something the command left
    // running still holds the pipes; then they carry on without us.
    let deadline = Instant::now() + DRAIN;
    for _ in relays.iter().flatten() {
        let left = deadline.saturating_duration_since(Instant::now());
        if drained.recv_timeout(left).is_err() {
            break;
        }
    }
    if status.success() {
        return Ok(());
    }
    let (code, how) = match status.code() {
        Some(code) => (code, format!("exit code {code}")),
        None => (1, describe_signal(&status)),
    };
    // Our own exit code is the command's, so scripts can tell build failures
    // apart; a code outside 1..=255 (a signal) becomes 1.
    let exit_code = u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1);
    Err(Failure::build(
        exit_code,
        format!("component `{id}`: build command `{command}` failed with {how}"),
    )
    .into())
}

/// The command line run through the platform's shell, as Spin does: build
/// commands are written for a shell (`npm install && npm run build`).
fn shell(command: &str) -> Command {
    #[cfg(unix)]
    {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command);
        cmd
    }
    #[cfg(not(unix))]
    {
        let mut cmd = Command::new("cmd");
        cmd.arg("/C").arg(command);
        cmd
    }
}

/// The longest line relayed whole; a longer one is passed on in pieces, so a
/// command cannot make Ferry buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// Copies `from` to the stream `to` gives, line by line, each line prefixed
/// with `[id] ` and written whole, so the two streams never interleave
/// mid-line. A carriage return ends a line too (progress bars). Sends on
/// `done` at end of file.
fn relay<W: Write + 'static>(
    from: Option<impl Read + Send + 'static>,
    to: fn() -> W,
    id: &str,
    done: mpsc::Sender<()>,
) -> Option<std::thread::JoinHandle<()>> {
    let from = from?;
    let prefix = format!("[{id}] ").into_bytes();
    let relay = move || {
        let mut reader = BufReader::new(from);
        let mut line = prefix.clone();
        // Once our own output is gone (a closed pipe), keep draining the
        // command's so that it never blocks on a full pipe.
        let mut writable = true;
        loop {
            let buffer = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(buffer) => buffer,
            };
            let room = MAX_LINE + prefix.len() - line.len();
            let (taken, ended) = match buffer
                .iter()
                .take(room)
                .position(|&b| b == b'\n' || b == b'\r')
            {
                Some(end) => (end + 1, true),
                None => (
                    buffer.len().min(room),
                    line.len() + buffer.len() >= MAX_LINE + prefix.len(),
                ),
            };
            line.extend_from_slice(&buffer[..taken]);
            reader.consume(taken);
            if ended {
                if writable {
                    writable = write_line(to(), &mut line);
                }
                line.truncate(prefix.len());
            }
        }
        if line.len() > prefix.len() && writable {
            write_line(to(), &mut line);
        }
        let _ = done.send(());
    };
    Some(std::thread::spawn(relay))
}

/// Writes one relayed line, ending it with `\n`; false once the stream is
/// closed.
fn write_line(mut to: impl Write, line: &mut Vec<u8>) -> bool {
    match line.last() {
        Some(b'\r') => *line.last_mut().expect("a byte") = b'\n',
        Some(b'\n') => {}
        _ => line.push(b'\n'),
    }
    to.write_all(line).and_then(|()| to.flush()).is_ok()
}

fn describe_signal(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    format!("{status}")
}
