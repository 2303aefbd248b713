//! Running `ip`, `nft` and friends with errors that quote the command and its stderr.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::LabError;

fn describe(program: &str, args: &[&str]) -> String {
    let mut line = program.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Runs `program args…`, returning its stdout; a non-zero exit is an error carrying stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    run_with_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the command (for `nft -f -`).
pub(crate) fn run_with_stdin(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, LabError> {
    let command = describe(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if let Some(text) = stdin {
            stderr.push_str("\n--- input ---\n");
            stderr.push_str(text);
        }
        return Err(LabError::Command {
            command,
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip -n NS args…`.
pub(crate) fn ip(netns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Loads an nftables ruleset into `netns`.
pub(crate) fn nft(netns: &str, ruleset: &str) -> Result<(), LabError> {
    run_with_stdin(
        "ip",
        &["netns", "exec", netns, "nft", "-f", "-"],
        Some(ruleset),
    )
    .map(|_| ())
}

/// Sets sysctls (`key=value`) inside `netns`.
pub(crate) fn sysctl(netns: &str, settings: &[&str]) -> Result<(), LabError> {
    let mut args = vec!["netns", "exec", netns, "sysctl", "-q", "-w"];
    args.extend_from_slice(settings);
    run("ip", &args).map(|_| ())
}
