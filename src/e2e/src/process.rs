//! Child processes that cannot outlive the test: output to a log file, killed with their whole
//! process group and reaped when the guard drops (also while a failing test unwinds).
//!
//! Children are forked by one long-lived spawner thread, not by the calling test thread. Envoy sets
//! `PR_SET_PDEATHSIG` (SIGTERM), which fires when the *thread* that forked it exits; with the test
//! harness running each test on its own thread, a child forked there would die with that thread.

use crate::{Context as _, Error, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

fn spawner() -> Result<Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let cell = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        // Lives as long as the test binary: every child's parent thread.
        let _ = std::thread::Builder::new()
            .name("fapi-e2e-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    });
    cell.lock()
        .map(|s| s.clone())
        .map_err(|_| Error("spawner lock poisoned".into()))
}

/// A running child process. Dropping it stops it: SIGTERM to its process group, up to 5 s to exit,
/// then SIGKILL; always reaped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args` in its own process group with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        let out = File::create(log).ctx(format!("creating {}", log.display()))?;
        let err = out.try_clone().ctx("cloning the log file handle")?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let (tx, rx) = channel();
        spawner()?
            .send((cmd, tx))
            .map_err(|_| Error("the spawner thread is gone".into()))?;
        let child = rx
            .recv()
            .map_err(|_| Error("the spawner thread is gone".into()))?
            .ctx(format!("starting {name} ({})", program.display()))?;
        Ok(Process {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            exit: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status if the process has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        crate::util::wait_until(timeout, &format!("{name} to exit"), || Ok(self.exited()))
    }

    /// Stops the process (see the type's doc) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(s) = self.exit {
            return Some(s);
        }
        let pgid = child.id() as libc::pid_t;
        signal_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    signal_group(pgid, libc::SIGKILL);
                    break child.wait().ok();
                }
            }
        };
        // Whatever else is left in the group (helpers the child forked) goes too.
        signal_group(pgid, libc::SIGKILL);
        self.exit = status;
        status
    }
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the child
        // (process_group(0) made the child its leader); no memory is touched.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
