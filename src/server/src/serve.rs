//! The listeners: browser-facing TLS, mTLS (client certificate required, any issuer), plain-HTTP
//! health; graceful shutdown on SIGTERM/SIGINT (stop accepting, let requests in flight finish).
//!
//! Every request on a TLS listener carries, in its extensions, the connection's
//! [`PeerCertificate`] and its TCP peer address as [`ClientAddr`].
//!
//! What a stranger can make a listener hold is bounded ([`ConnLimits`], config `[limits]`):
//! - connections open at once: over the cap a new connection is closed as soon as it is accepted,
//!   per listener, so the health listener (counted apart, with its own small cap) still answers
//!   when the TLS listeners are full;
//! - the TLS handshake and the request head each have a deadline (hyper's `header_read_timeout`,
//!   which also bounds how long an idle keep-alive connection waits for its next request);
//! - a finished connection's task is reaped at once, so the set of tasks does not grow with the
//!   number of connections served;
//! - a failing `accept` (EMFILE at the open-files limit, ENOBUFS, ...) backs off, 1 ms doubling to
//!   1 s, logged once per run of failures, instead of spinning.

use crate::tls::PeerCertificate;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The TCP peer address of the connection a request came on (a proxy's, when there is one in front:
/// `frontchannel::limits` then believes `X-Forwarded-For` only from `login.trusted_proxies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// How much one listener lets its clients hold (from config `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once; a connection over the cap is closed when accepted.
    pub max_connections: usize,
    /// Time a client has to send a whole request head (and that an idle keep-alive connection
    /// waits for the next one).
    pub header_read_timeout: Duration,
    /// Time a client has to complete the TLS handshake (TLS listeners only).
    pub tls_handshake_timeout: Duration,
}

impl ConnLimits {
    /// The limits of a TLS listener.
    pub fn tls(c: &crate::config::Limits) -> Self {
        ConnLimits {
            max_connections: c.max_connections.max(1),
            header_read_timeout: Duration::from_secs(c.header_read_timeout.max(1)),
            tls_handshake_timeout: Duration::from_secs(c.tls_handshake_timeout.max(1)),
        }
    }

    /// The limits of the plain-HTTP health listener: its own cap, so health checks get through
    /// when the TLS listeners are full.
    pub fn health(c: &crate::config::Limits) -> Self {
        ConnLimits {
            max_connections: c.health_max_connections.max(1),
            ..Self::tls(c)
        }
    }
}

/// Live figures of one listener (rendered by `/metrics`, read by tests).
#[derive(Debug, Default)]
pub struct ConnStats {
    accepted: AtomicU64,
    open: AtomicUsize,
    tasks: AtomicUsize,
    refused: AtomicU64,
    accept_errors: AtomicU64,
}

impl ConnStats {
    /// Connections accepted so far (those closed at once over the cap included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Connections open now (accepted, not yet closed).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    /// Connection tasks the listener still tracks (finished ones are reaped).
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
    }
    /// Connections closed at accept because the listener was at its cap.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Failed `accept` calls.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<ConnStats>);

impl OpenGuard {
    fn new(stats: Arc<ConnStats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(stats)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pause after a failed `accept`: 1 ms, doubling per consecutive failure up to 1 s; back to
/// the start after a success. Failing at once again (EMFILE stays until a descriptor is freed)
/// would otherwise spin a core.
#[derive(Debug, Default, Clone)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(1);
    pub const MAX: Duration = Duration::from_secs(1);

    /// Records a failure: how long to pause, and whether it starts a run of failures (the one
    /// to log).
    pub fn failed(&mut self) -> (Duration, bool) {
        let first = self.failures == 0;
        let pause = Self::FIRST
            .saturating_mul(1u32 << self.failures.min(10))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        (pause, first)
    }

    /// Records a success; returns how many failures the run that ended had.
    pub fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` turns true.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    accept_loop(listener, limits, stats, shutdown, move |tcp, peer_addr, stop| {
        let acceptor = acceptor.clone();
        let app = app.clone();
        async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.as_ref().to_vec()));
            let peer = Some(PeerCertificate(cert));
            serve_connection(stream, app, peer, ClientAddr(peer_addr), limits, stop).await;
        }
    })
    .await;
}

/// Serves plain HTTP (health only) until `shutdown`.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, limits, stats, shutdown, move |tcp, peer_addr, stop| {
        serve_connection(tcp, app.clone(), None, ClientAddr(peer_addr), limits, stop)
    })
    .await;
}

/// Where connections come from: a TCP listener, or in tests a source that fails.
trait Incoming {
    type Conn;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Incoming for TcpListener {
    type Conn = TcpStream;
    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// Accepts until `shutdown`: caps the connections, reaps finished ones, backs off on errors; then
/// lets the connections in flight finish, up to a bound.
async fn accept_loop<L, F, Fut>(
    listener: L,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    mut shutdown: watch::Receiver<bool>,
    connection: F,
) where
    L: Incoming,
    F: Fn(L::Conn, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                stats.tasks.store(tasks.len(), Ordering::Relaxed);
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let (tcp, peer_addr) = match accepted {
            Ok(a) => {
                let failures = backoff.succeeded();
                if failures > 0 {
                    tracing::info!(failures, "accept works again");
                }
                a
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                let (pause, first) = backoff.failed();
                if first {
                    tracing::warn!(error = %e, "accept failed; backing off (1 ms doubling to 1 s) until it works again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        // Over the cap: closed now rather than held (or left in the backlog) for a client that
        // may never send anything.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let open = OpenGuard::new(stats.clone());
        let work = connection(tcp, peer_addr, shutdown.clone());
        tasks.spawn(async move {
            work.await;
            drop(open);
            drop(permit);
        });
        stats.tasks.store(tasks.len(), Ordering::Relaxed);
    }
    // New connections are refused from now on, not left waiting in the backlog.
    drop(listener);
    // Let requests in flight finish, up to a bound.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {
            stats.tasks.store(tasks.len(), Ordering::Relaxed);
        }
    })
    .await;
    stats.tasks.store(tasks.len(), Ordering::Relaxed);
}

/// HTTP/1.1 on one connection (the only protocol the TLS listeners offer by ALPN), with the head
/// read under `limits.header_read_timeout`.
async fn serve_connection<I>(
    io: I,
    app: Router,
    peer: Option<PeerCertificate>,
    addr: ClientAddr,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        req.extensions_mut().insert(addr);
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // On shutdown the request in flight finishes, then the connection closes: idle
        // keep-alive connections (a proxy's pool, e.g. Envoy fetching /jwks and the feed)
        // would otherwise hold the shutdown until the bound in `accept_loop`.
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_grows_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let (first, log) = b.failed();
        assert_eq!(first, Duration::from_millis(1));
        assert!(log, "the first failure of a run is logged");
        let mut pauses = vec![first];
        for _ in 0..15 {
            let (p, log) = b.failed();
            assert!(!log, "later failures of the run are not logged again");
            pauses.push(p);
        }
        assert_eq!(pauses[1], Duration::from_millis(2));
        assert_eq!(pauses[2], Duration::from_millis(4));
        assert!(
            pauses.windows(2).all(|w| w[0] <= w[1]),
            "never shrinks: {pauses:?}"
        );
        assert_eq!(*pauses.last().unwrap_or(&Duration::ZERO), Duration::from_secs(1));
        assert!(pauses.iter().all(|p| *p <= AcceptBackoff::MAX));
        assert_eq!(b.succeeded(), 16);
        assert_eq!(
            b.failed(),
            (Duration::from_millis(1), true),
            "a new run starts over"
        );
    }

    /// A source whose accept always fails as at the open-files limit (EMFILE).
    struct OutOfDescriptors(Arc<AtomicU64>);

    impl Incoming for OutOfDescriptors {
        type Conn = ();
        fn accept(&self) -> impl Future<Output = std::io::Result<((), SocketAddr)>> + Send {
            self.0.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err(std::io::Error::from_raw_os_error(24)))
        }
    }

    /// The accept loop, fed a source that fails, pauses between attempts instead of spinning:
    /// a handful of attempts in 5 s (of the paused test clock) where a spinning loop makes
    /// millions; and it still stops on shutdown.
    #[tokio::test(start_paused = true)]
    async fn failing_accepts_are_paced_and_shutdown_still_stops_the_loop() {
        let attempts = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(ConnStats::default());
        let (tx, rx) = watch::channel(false);
        let limits = ConnLimits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(1),
            tls_handshake_timeout: Duration::from_secs(1),
        };
        let running = tokio::spawn(accept_loop(
            OutOfDescriptors(attempts.clone()),
            limits,
            stats.clone(),
            rx,
            |_conn: (), _addr, _stop| async {},
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let n = attempts.load(Ordering::Relaxed);
        // 1+2+...+512 ms ≈ 1 s for the first ten, then one a second: 14 or so.
        assert!((10..=16).contains(&n), "{n} accept attempts in 5 s");
        assert_eq!(stats.accept_errors(), n);
        assert_eq!(stats.open(), 0);
        let _ = tx.send(true);
        assert!(tokio::time::timeout(Duration::from_secs(2), running)
            .await
            .is_ok());
    }
}
