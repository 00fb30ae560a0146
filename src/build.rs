//! `ferry build`: runs each component's `[component.<id>.build]` commands.
//!
//! Commands run one at a time, in manifest order, through the platform shell
//! (`sh -c`), in the component's `workdir` (the manifest's directory unless
//! set), with Ferry's own environment (Spin's build table has none of its
//! own).
//! Their output streams as it comes, each line prefixed with the component's
//! id, so a multi-component build stays readable. The first command that fails
//! stops the build; `ferry build` then exits with that command's exit code.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use ferry_manifest::{App, Build, Component};

use crate::load::{Failure, human_duration};

/// Runs the build commands of the components named in `only` (every
/// component when empty), printing progress to stdout.
pub fn build_app(app: &App, only: &[String]) -> anyhow::Result<()> {
    let selected = select(app, only)?;
    let started = Instant::now();
    let mut built = 0;
    for component in selected {
        let Some(build) = &component.build else {
            println!("Component `{}` has no build command", component.id);
            continue;
        };
        build_component(component, build)?;
        built += 1;
    }
    println!(
        "Finished building {built} component(s) in {}",
        human_duration(started.elapsed())
    );
    Ok(())
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
            println!(
                "Building component `{id}` (step {}/{count}) with `{command}`",
                index + 1
            );
        } else {
            println!("Building component `{id}` with `{command}`");
        }
        run_command(id, command, build)?;
    }
    println!(
        "Built component `{id}` in {}",
        human_duration(started.elapsed())
    );
    Ok(())
}

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
    let mut child = shell(command)
        .current_dir(&build.workdir)
        .stdin(Stdio::null())
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
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let status = std::thread::scope(|scope| {
        scope.spawn(|| relay(stdout, std::io::stdout(), id));
        scope.spawn(|| relay(stderr, std::io::stderr(), id));
        child.wait()
    })?;
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

/// Copies `from` to `to` line by line, each line prefixed with `[id] `. A
/// line is written whole, so the two streams never interleave mid-line.
fn relay(from: impl Read, mut to: impl Write, id: &str) {
    let mut reader = BufReader::new(from);
    let mut line = format!("[{id}] ").into_bytes();
    let prefix = line.len();
    // Once our own output is gone (a closed pipe), keep draining the child's
    // so that it never blocks on a full pipe.
    let mut writable = true;
    loop {
        line.truncate(prefix);
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if writable => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                writable = to.write_all(&line).and_then(|()| to.flush()).is_ok();
            }
            Ok(_) => {}
        }
    }
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
