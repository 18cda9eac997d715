//! Child processes with bounded lifetimes: long-running servers ([`Proc`], killed on drop) and
//! one-shot commands ([`run`], killed at a deadline).
//!
//! Signals go through the shell's `kill` with the child's own PID: the workspace forbids `unsafe`,
//! and we never signal anything we did not start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// A server process. Dropping it kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to the given files
    /// (the same path for both is fine).
    pub fn spawn(name: &str, mut cmd: Command, stdout: &Path, stderr: &Path) -> Proc {
        let out = append(stdout);
        let err = if stdout == stderr {
            out.try_clone().expect("dup log fd")
        } else {
            append(stderr)
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {cmd:?}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// `Some(status)` once the process has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        signal(child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "[harness] {} (pid {}) ignored SIGTERM for {grace:?}; SIGKILL",
            self.name,
            child.id()
        );
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Sends a signal (name without `SIG`) to one PID that we started, with the shell's `kill`
/// builtin (always there, unlike procps' `/usr/bin/kill`).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("/bin/sh")
        .args(["-c", "kill -s \"$1\" \"$2\"", "sh", sig])
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What a one-shot command did.
#[derive(Debug, Clone)]
pub struct CmdOut {
    pub cmdline: String,
    /// `None` if it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the command line, status and both outputs unless it exited 0.
    pub fn expect_ok(self, what: &str) -> CmdOut {
        assert!(self.ok(), "{what} failed:\n{self}");
        self
    }
}

impl std::fmt::Display for CmdOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed at the deadline".to_owned(),
        };
        write!(
            f,
            "$ {}\n  status: {status} after {:.1?}\n  stdout: {}\n  stderr: {}",
            self.cmdline,
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` to completion with stdin closed, capturing stdout and stderr (through anonymous
/// files, so a grandchild holding them open cannot block us); kills it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> CmdOut {
    let cmdline = format!("{cmd:?}");
    let mut out = tempfile::tempfile().expect("tempfile");
    let mut err = tempfile::tempfile().expect("tempfile");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("dup")))
        .stderr(Stdio::from(err.try_clone().expect("dup")));
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmdline}: {e}"));
    let deadline = start + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("wait for {cmdline}: {e}"),
        }
    };
    CmdOut {
        cmdline,
        status,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
        elapsed: start.elapsed(),
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut s);
    String::from_utf8_lossy(&s).into_owned()
}
