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

/// Sets sysctls (`key=value`, keys without dots inside their parts) inside `netns` by
/// writing /proc/sys, which shows the settings of the writer's network namespace; the
/// shell's builtins keep the lab free of a procps dependency.
pub(crate) fn sysctl(netns: &str, settings: &[&str]) -> Result<(), LabError> {
    let mut script = String::from("set -e");
    for setting in settings {
        let Some((key, value)) = setting.split_once('=') else {
            return Err(LabError::Agent(format!("bad sysctl setting {setting:?}")));
        };
        script.push_str(&format!(
            "; echo {value} > /proc/sys/{}",
            key.replace('.', "/")
        ));
    }
    run("ip", &["netns", "exec", netns, "sh", "-c", &script]).map(|_| ())
}

/// Sends `signal` (`KILL`, `TERM`) to `pids` with the shell's builtin `kill` (no procps).
pub(crate) fn kill(signal: &str, pids: &[&str]) -> Result<(), LabError> {
    if pids.is_empty() {
        return Ok(());
    }
    let script = format!("kill -{signal} \"$@\"");
    let mut args = vec!["-c", script.as_str(), "kill"];
    args.extend_from_slice(pids);
    run("sh", &args).map(|_| ())
}
