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
