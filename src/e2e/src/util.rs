//! Small helpers: free ports, polling with a deadline, scratch directories, the workspace root.

use crate::{Context as _, Error, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server the caller starts next.
///
/// It is taken from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), not by
/// binding port 0: a port from that range can be taken by any outgoing connection between this
/// check and the server's bind (seen in CI: "Address already in use" for a port a moment after it
/// was free). Ports handed out by this process are never handed out twice.
pub fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_500));
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    let mut given = GIVEN
        .lock()
        .map_err(|_| Error("free_port: lock poisoned".into()))?;
    for _ in 0..500 {
        // SplitMix64 step: a spread of candidates, different per process and per call.
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let port = from + ((z ^ (z >> 31)) % u64::from(to - from)) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    // Everything tried was busy: let the OS choose (from the ephemeral range).
    let l = TcpListener::bind("127.0.0.1:0").ctx("binding 127.0.0.1:0")?;
    Ok(l.local_addr().ctx("local_addr")?.port())
}

/// Polls `condition` every 50 ms until it returns `Some`, or fails after `timeout` with `what` and the
/// last state the condition reported. Use it instead of sleeping: it returns as soon as the thing
/// waited for happened.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> std::result::Result<Option<T>, String>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match condition() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_string(),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Error(format!(
                "timed out after {timeout:?} waiting for {what}; last: {last}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seconds since the Unix epoch (tokens sent to a real Envoy must use the real clock).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(crate_dir)
        .to_path_buf()
}

/// A scratch directory under the system temp dir. Removed on drop, except when the thread is
/// panicking (a failed test): then it stays, and its path is printed, so logs can be read.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "fapi-e2e-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).ctx(format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("FAPI_E2E_KEEP").is_some() {
            eprintln!("fapi-e2e: kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> crate::Result<()> {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(32768);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let p = free_port()?;
            assert!(seen.insert(p), "{p} handed out twice");
            assert!((10_000..low.max(10_500)).contains(&p), "{p}");
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
                "{p} not free"
            );
        }
        Ok(())
    }
}
