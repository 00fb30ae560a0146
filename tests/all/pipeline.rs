//! `ferry pipe`: WASI commands connected stdout → stdin as a shell pipeline
//! connects programs, each in its own sandbox, streaming, exiting with the
//! first failing stage's status.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::support::*;

/// Runs `ferry pipe` over `stages` (each "`<pipe-stage>` ARGS…"), feeding
/// `input` to the first.
fn pipe(stages: &[&str], input: Vec<u8>) -> Output {
    let stages: Vec<String> = stages
        .iter()
        .map(|args| format!("{} {args}", ferry_test_programs::PIPE_STAGE))
        .collect();
    let mut child = ferry()
        .arg("pipe")
        .args(&stages)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Fed while the output is read: the pipeline streams.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    output
}

/// 16 MiB of lines, every tenth with `ERROR` in it; and what `grep ERROR`
/// keeps of them.
fn log_lines() -> (Vec<u8>, Vec<u8>) {
    let mut all = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0u64;
    while all.len() < 16 << 20 {
        let line = if i.is_multiple_of(10) {
            format!("{i:08} ERROR something failed here\n")
        } else {
            format!("{i:08} INFO all is well, nothing to see\n")
        };
        if i.is_multiple_of(10) {
            errors.extend_from_slice(line.as_bytes());
        }
        all.extend_from_slice(line.as_bytes());
        i += 1;
    }
    (all, errors)
}

#[test]
fn three_stages_stream_a_large_input_through_their_sandboxes() {
    let (input, errors) = log_lines();
    let output = pipe(&["cat", "grep ERROR", "count"], input);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines = errors.iter().filter(|b| **b == b'\n').count();
    assert_eq!(
        text(&output.stdout),
        format!("bytes {} lines {lines}\n", errors.len())
    );
}

#[test]
fn a_failing_middle_stage_fails_the_pipeline_and_the_rest_see_its_end() {
    let (input, _) = log_lines();
    let output = pipe(&["cat", "fail-after 1048576", "count"], input);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // The stage after it read what it wrote, then the end of its input.
    assert!(
        text(&output.stdout).starts_with("bytes 1048576 lines "),
        "{}",
        text(&output.stdout)
    );
    // The failure named is the middle stage's (the first stage only failed
    // writing to it afterwards).
    let first = stderr
        .lines()
        .find(|l| l.contains("failed"))
        .unwrap_or_default();
    assert!(
        first.contains("stage 2 (") && first.contains("fail-after"),
        "{stderr}"
    );
}

/// Every stage is loaded before any runs: one that is not a WASI command
/// fails the pipeline with what is wrong, and nothing of it ran.
#[test]
fn a_stage_that_cannot_be_loaded_is_refused_before_anything_runs() {
    let app = TestApp::new("");
    let not_wasm = app.write("notes.wasm", "plain text\n");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("pipe")
        .arg(format!("{} cat", ferry_test_programs::PIPE_STAGE))
        .arg(not_wasm.to_str().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("notes.wasm") && stderr.contains("not a WebAssembly file"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// The manifest form: `[[trigger.pipeline]]`, each stage a component with
/// its own grants, run once by `ferry up`.
#[test]
fn a_manifest_pipeline_runs_each_stage_with_its_own_grants() {
    let stage = ferry_test_programs::PIPE_STAGE;
    let app = |stages: &str| {
        let app = TestApp::new(&format!(
            "[[trigger.pipeline]]\nstages = {stages}\n\n\
             [component.reader]\nsource = {stage:?}\nfiles = [{{ source = \"data.txt\", destination = \"/data.txt\" }}]\n\n\
             [component.tagger]\nsource = {stage:?}\nenvironment = {{ TAG = \"from-tagger\" }}\n"
        ));
        app.write("data.txt", "first line\nsecond line\n");
        app
    };
    let state = tempfile::tempdir().unwrap();
    // The reader has the file and no TAG; the tagger the reverse. The same
    // component may be two stages.
    let granted = app(
        "[{ component = \"reader\", args = [\"file\", \"/data.txt\"] }, { component = \"reader\", args = [\"tag\"] }, { component = \"tagger\", args = [\"tag\"] }]",
    );
    let output = crate::triggers::run_command(&granted, state.path(), &[], b"");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout)
            .ends_with("from-tagger: untagged: first line\nfrom-tagger: untagged: second line\n"),
        "{}",
        text(&output.stdout)
    );
    // The tagger was granted no files; `ferry up -- ARGS` are the first
    // stage's.
    let denied = app("[\"tagger\", { component = \"reader\", args = [\"cat\"] }]");
    let output = crate::triggers::run_command(&denied, state.path(), &["file", "/data.txt"], b"");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("cannot read /data.txt:"),
        "{}",
        text(&output.stdout)
    );
    // A failing stage fails the run.
    let failing = app("[{ component = \"reader\", args = [\"fail-after\", \"0\"] }, \"tagger\"]");
    let output = crate::triggers::run_command(&failing, state.path(), &[], b"input");
    assert_ne!(output.status.code(), Some(0));
    assert!(
        text(&output.stderr).contains("ferry up: stage 1 (reader fail-after 0) failed"),
        "{}",
        text(&output.stderr)
    );
}
