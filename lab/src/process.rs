//! A process running inside a lab host, with its output captured line by line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::LabError;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

#[derive(Debug, Default)]
struct Captured {
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_closed: bool,
    stderr_closed: bool,
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

/// How long [`LabProcess::wait_with_output`] waits for the pipes to close after the exit.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// A child process started in a lab host. Its stdout and stderr are read by two threads
/// into memory; dropping the handle kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct LabProcess {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Shared,
    stdout_cursor: usize,
}

fn pump(reader: impl Read + Send + 'static, shared: Shared, stream: OutputStream) {
    thread::spawn(move || {
        let reader = BufReader::new(reader);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let (lock, cvar) = &*shared;
            let Ok(mut captured) = lock.lock() else {
                return;
            };
            match stream {
                OutputStream::Stdout => captured.stdout.push(text),
                OutputStream::Stderr => captured.stderr.push(text),
            }
            cvar.notify_all();
        }
        let (lock, cvar) = &*shared;
        if let Ok(mut captured) = lock.lock() {
            match stream {
                OutputStream::Stdout => captured.stdout_closed = true,
                OutputStream::Stderr => captured.stderr_closed = true,
            }
        }
        cvar.notify_all();
    });
}

impl LabProcess {
    /// Starts `command` (already wrapped for its namespace) with piped stdio.
    pub(crate) fn start(label: String, mut command: Command) -> Result<Self, LabError> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| LabError::Spawn {
            command: format!("{command:?}"),
            source,
        })?;
        let shared: Shared = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        if let Some(stdout) = child.stdout.take() {
            pump(stdout, shared.clone(), OutputStream::Stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            pump(stderr, shared.clone(), OutputStream::Stderr);
        }
        let stdin = child.stdin.take();
        Ok(LabProcess {
            label,
            child,
            stdin,
            shared,
            stdout_cursor: 0,
        })
    }

    /// `host/program`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process ID (of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The write end of its stdin; `None` once taken.
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    /// Takes its stdin (dropping the handle closes the child's stdin).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The next stdout line after the ones already returned, waiting up to `timeout`.
    /// `Ok(None)` when stdout closed.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, LabError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut captured = lock
            .lock()
            .map_err(|_| LabError::Agent("output reader panicked".into()))?;
        loop {
            if let Some(line) = captured.stdout.get(self.stdout_cursor) {
                self.stdout_cursor += 1;
                return Ok(Some(line.clone()));
            }
            if captured.stdout_closed {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LabError::Timeout {
                    after: timeout,
                    what: format!("a line from {}", self.label),
                });
            }
            captured = cvar
                .wait_timeout(captured, deadline - now)
                .map_err(|_| LabError::Agent("output reader panicked".into()))?
                .0;
        }
    }

    /// Reads stdout lines (from where [`next_line`](Self::next_line) left off) until one
    /// satisfies `matches`, and returns it; errors at `timeout` or when stdout closes,
    /// quoting stderr.
    pub fn wait_for_stdout(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<String, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Ok(Some(line)) if matches(&line) => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(LabError::Agent(format!(
                        "{} closed stdout before the awaited line; stderr:\n{}",
                        self.label,
                        self.stderr_text()
                    )));
                }
                Err(LabError::Timeout { .. }) => {
                    return Err(LabError::Timeout {
                        after: timeout,
                        what: format!(
                            "a matching line from {}; stderr:\n{}",
                            self.label,
                            self.stderr_text()
                        ),
                    });
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Waits until some stderr line satisfies `matches` (stderr is not consumed).
    pub fn wait_for_stderr(
        &self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<String, LabError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut captured = lock
            .lock()
            .map_err(|_| LabError::Agent("output reader panicked".into()))?;
        loop {
            if let Some(line) = captured.stderr.iter().find(|l| matches(l)) {
                return Ok(line.clone());
            }
            let now = Instant::now();
            if captured.stderr_closed || now >= deadline {
                return Err(LabError::Timeout {
                    after: timeout,
                    what: format!("a matching stderr line from {}", self.label),
                });
            }
            captured = cvar
                .wait_timeout(captured, deadline - now)
                .map_err(|_| LabError::Agent("output reader panicked".into()))?
                .0;
        }
    }

    /// Every stdout line captured so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.shared
            .0
            .lock()
            .map(|c| c.stdout.clone())
            .unwrap_or_default()
    }

    /// Everything captured from stderr so far.
    pub fn stderr_text(&self) -> String {
        self.shared
            .0
            .lock()
            .map(|c| c.stderr.join("\n"))
            .unwrap_or_default()
    }

    /// Sends SIGTERM (through the shell's `kill`, keeping this crate free of unsafe code).
    pub fn terminate(&self) -> Result<(), LabError> {
        crate::cmd::kill("TERM", &[&self.pid().to_string()])
    }

    /// Whether it has exited, without blocking.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, LabError> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for the process to exit (polling its status every 10 ms).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    after: timeout,
                    what: format!("{} to exit", self.label),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit like [`wait_timeout`](Self::wait_timeout), then (up to 2 s) for the
    /// output readers to reach end of file, so every line is captured.
    pub fn wait_with_output(&mut self, timeout: Duration) -> Result<ExitStatus, LabError> {
        let status = self.wait_timeout(timeout)?;
        // Output still in the pipes arrives within moments of the exit; only a grandchild
        // holding them open keeps them longer, and its output is not waited for.
        let deadline = Instant::now() + PIPE_DRAIN;
        let (lock, cvar) = &*self.shared;
        let mut captured = lock
            .lock()
            .map_err(|_| LabError::Agent("output reader panicked".into()))?;
        while !(captured.stdout_closed && captured.stderr_closed) {
            let now = Instant::now();
            if now >= deadline {
                // A grandchild may hold the pipes open; the exit status is what matters.
                break;
            }
            captured = cvar
                .wait_timeout(captured, deadline - now)
                .map_err(|_| LabError::Agent("output reader panicked".into()))?
                .0;
        }
        Ok(status)
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
