//! The listeners: browser-facing TLS, mTLS (client certificate required, any issuer), plain-HTTP
//! health; graceful shutdown on SIGTERM/SIGINT (stop accepting, let requests in flight finish).
//!
//! Every request on a TLS listener carries, in its extensions, the connection's
//! [`PeerCertificate`] and its TCP peer address as [`ClientAddr`].

use crate::tls::PeerCertificate;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The TCP peer address of the connection a request came on (a proxy's, when there is one in front:
/// `frontchannel::limits` then believes `X-Forwarded-For` only from `login.trusted_proxies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Serves `app` over TLS on `listener` until `shutdown` turns true.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, peer_addr)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.as_ref().to_vec()));
            let peer = PeerCertificate(cert);
            let addr = ClientAddr(peer_addr);
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(addr);
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // On shutdown the request in flight finishes, then the connection closes: idle
                // keep-alive connections (a proxy's pool, e.g. Envoy fetching /jwks and the feed)
                // would otherwise hold the shutdown until the bound below.
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // New connections are refused from now on, not left waiting in the backlog.
    drop(listener);
    // Let requests in flight finish, up to a bound.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Serves plain HTTP (health only) until `shutdown`.
pub async fn serve_plain(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
}
