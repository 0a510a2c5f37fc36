//! A throwaway PostgreSQL server for tests: `initdb` into a scratch directory, `postgres` on a free
//! port on 127.0.0.1 (trust authentication, user `fapi`), a database `fapi_test`; stopped (fast
//! shutdown) and deleted when the guard drops.
//!
//! - Binaries: `$FAPI_E2E_PG_BIN` if set, else the newest `/usr/lib/postgresql/*/bin` (Debian's
//!   `postgresql` package), else the directory of `initdb` on `PATH`.
//! - PostgreSQL refuses to run as root: when the test runs as root, `initdb` and `postgres` run as
//!   the `postgres` OS user through `setpriv` (util-linux), and the scratch directory is handed to
//!   that user.
//! - The cluster uses an ICU `en-US` collation by default, like a production database created with
//!   an `en_US.UTF-8` locale: text order is linguistic there (`'a' < 'B'`), not byte order as in
//!   SQLite, so tests see the difference a real deployment would.
//! - Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): a test cluster is lost
//!   anyway.

use crate::process::Process;
use crate::util::{free_port, ScratchDir};
use crate::{bail, Context as _, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The OS user PostgreSQL runs as when the test runs as root.
const OS_USER: &str = "postgres";
/// The database role (superuser, trust authentication).
pub const ROLE: &str = "fapi";
/// The database created at start.
pub const DATABASE: &str = "fapi_test";

/// The directory holding `initdb`, `postgres`, `pg_isready` and `createdb`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FAPI_E2E_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if initdb.is_file() {
            let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(parent) = real.parent() {
                return Ok(parent.to_path_buf());
            }
        }
    }
    bail!(
        "PostgreSQL not found: no /usr/lib/postgresql/*/bin/initdb and no initdb on PATH \
         (install it: apt-get install -y postgresql; or set FAPI_E2E_PG_BIN)"
    )
}

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// ICU locale of the default collation; `None` for the C (byte order) collation.
    pub icu_locale: Option<String>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            icu_locale: Some("en-US".into()),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// A running PostgreSQL server. Fields drop in order: the server stops before its directory goes.
#[derive(Debug)]
pub struct Postgres {
    process: Process,
    port: u16,
    bin: PathBuf,
    dir: ScratchDir,
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// `program` as a command run as the `postgres` OS user when we are root: (program, leading args).
fn as_db_user(program: &Path) -> (PathBuf, Vec<String>) {
    if is_root() {
        (
            PathBuf::from("setpriv"),
            vec![
                format!("--reuid={OS_USER}"),
                format!("--regid={OS_USER}"),
                "--init-groups".into(),
                "--".into(),
                program.display().to_string(),
            ],
        )
    } else {
        (program.to_path_buf(), Vec::new())
    }
}

fn run(what: &str, program: &Path, args: &[String]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .ctx(format!("running {what} ({})", program.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, text.trim());
    }
    Ok(text)
}

fn wait_ready(process: &mut Process, bin: &Path, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let isready = bin.join("pg_isready");
    let args: Vec<String> = [
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        ROLE,
        "-d",
        "postgres",
    ]
    .map(String::from)
    .to_vec();
    loop {
        if let Some(status) = process.exited() {
            bail!("postgres exited ({status}): {}", process.log().trim());
        }
        let ready = Command::new(&isready)
            .args(&args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        // pg_isready also answers for another server on a reused port: require our own log line.
        if ready && process.log().contains("ready to accept connections") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {timeout:?} waiting for postgres on port {}: {}",
                port,
                process.log().trim()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fast shutdown (SIGINT: sessions are ended, no waiting for clients), then the [`Process`]
/// guard's SIGTERM/SIGKILL if that takes more than 10 s. PostgreSQL's children run in their own
/// process groups, so a signal to the postmaster's group alone would orphan them.
fn fast_shutdown(process: &mut Process) {
    if process.exited().is_none() {
        if let Some(pid) = process.pid() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped (exited() is None), so
            // the pid cannot have been reused; no memory is touched.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
            let _ = process.wait_exit(Duration::from_secs(10));
        }
    }
    process.stop();
}

impl Postgres {
    /// `initdb`, start, wait until it accepts connections, create [`DATABASE`].
    pub fn start() -> Result<Self> {
        Self::start_with(&PostgresOptions::default())
    }

    pub fn start_with(options: &PostgresOptions) -> Result<Self> {
        let bin = bin_dir()?;
        let dir = ScratchDir::new("pg")?;
        if is_root() {
            run(
                "chown",
                Path::new("chown"),
                &[format!("{OS_USER}:"), dir.path().display().to_string()],
            )
            .map_err(|e| {
                Error(format!(
                    "{e} (PostgreSQL refuses to run as root and needs an OS user `{OS_USER}`: \
                     apt-get install -y postgresql creates it)"
                ))
            })?;
        }
        let data = dir.join("data");
        let (program, mut args) = as_db_user(&bin.join("initdb"));
        args.extend([
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            ROLE.into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C.UTF-8".into(),
            "--no-sync".into(),
        ]);
        if let Some(icu) = &options.icu_locale {
            args.extend(["--locale-provider=icu".into(), format!("--icu-locale={icu}")]);
        }
        let log = run("initdb", &program, &args)?;
        std::fs::write(dir.join("initdb.log"), log).ctx("writing initdb.log")?;

        // A free port may be taken between our probe and the server's bind: retry with another.
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port()?;
            let (program, mut args) = as_db_user(&bin.join("postgres"));
            args.extend(
                [
                    "-D",
                    &data.display().to_string(),
                    "-p",
                    &port.to_string(),
                    "-k",
                    &dir.path().display().to_string(),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ]
                .map(String::from),
            );
            let log = dir.join(&format!("postgres-{attempt}.log"));
            let mut process = Process::spawn("postgres", &program, &args, &log)?;
            match wait_ready(&mut process, &bin, port, options.start_timeout) {
                Ok(()) => {
                    let pg = Postgres {
                        process,
                        port,
                        bin,
                        dir,
                    };
                    pg.create_database(DATABASE)?;
                    return Ok(pg);
                }
                Err(e) => {
                    last = e.0;
                    fast_shutdown(&mut process);
                }
            }
        }
        bail!("PostgreSQL did not start: {last}")
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        run(
            "createdb",
            &self.bin.join("createdb"),
            &[
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                self.port.to_string(),
                "-U".into(),
                ROLE.into(),
                name.into(),
            ],
        )?;
        Ok(self.url_of(name))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://fapi@127.0.0.1:PORT/fapi_test`.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// The URL of database `name` on this server.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port)
    }

    /// The scratch directory (data directory, logs, socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Stops the server now (fast shutdown); dropping the guard does the same.
    pub fn shutdown(&mut self) {
        fast_shutdown(&mut self.process);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shutdown();
    }
}
