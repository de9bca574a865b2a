//! The HTTPS accept loop: TLS handshakes off the accept path, one tracked task per connection,
//! graceful stop on cancellation.

use crate::Console;
use crate::api::{self, State};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

#[derive(Clone)]
pub struct WebSettings {
    pub tls: Arc<rustls::ServerConfig>,
    /// Shown on the pages (the box's name).
    pub box_name: String,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings").field("box_name", &self.box_name).finish_non_exhaustive()
    }
}

/// How long a client may take for the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long open requests (live streams, downloads) get once the console is stopping.
const DRAIN: Duration = Duration::from_secs(3);
/// How long a client may take to send a request's headers, the first and every next one on a
/// kept-alive connection (an idle connection is closed after this too).
const HEADERS: Duration = Duration::from_secs(15);

/// Serves the console on `listener` until `cancel`.
pub async fn serve(listener: TcpListener, settings: WebSettings, console: Arc<dyn Console>, cancel: CancellationToken) {
    let acceptor = tokio_rustls::TlsAcceptor::from(settings.tls.clone());
    let state = State::new(console, settings.box_name.clone(), cancel.clone());
    let app = api::router(state);
    let tracker = TaskTracker::new();
    let places = witness_core::gate::PreAuth::with_limits(
        witness_core::gate::WEB_PREAUTH_PER_SOURCE,
        witness_core::gate::WEB_PREAUTH_TOTAL,
    );
    let mut last_full_log = None::<std::time::Instant>;
    loop {
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "web accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Limits before TLS: silent or slow clients cannot hold the descriptors the box needs.
        let slot = match places.enter(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                if last_full_log.is_none_or(|t: std::time::Instant| t.elapsed() > Duration::from_secs(10)) {
                    let (pre_auth, all) = places.counts();
                    warn!(%peer, pre_auth, all, "web connection refused: too many {}", full.as_str());
                    last_full_log = Some(std::time::Instant::now());
                }
                continue;
            }
        };
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tracker.spawn(
            async move {
                let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(socket)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return debug!(error = %e, "tls handshake failed"),
                    Err(_) => return debug!("tls handshake timed out"),
                };
                // The slot stays as it is for the connection's life: a console connection counts
                // against its source's limit whether or not it ever logs in (requests are
                // authenticated one by one), so no source can hold more than its share.
                let _slot = slot;
                let service = hyper_util::service::TowerToHyperService::new(
                    app.layer(axum::Extension(api::Peer(peer))).into_service::<hyper::body::Incoming>(),
                );
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADERS);
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r { debug!(error = %e, "web connection ended") },
                    _ = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(DRAIN, conn).await;
                    }
                }
            }
            .instrument(info_span!("web", %peer)),
        );
    }
    tracker.close();
    tracker.wait().await;
    info!("web console stopped");
}
