//! The box's answer to what the RDP proxy asks ([`witness_rdp::Broker`]), the RDP listener's
//! start and stop for `serve`, and the RDP parts of the admin commands (the box's TLS
//! certificate, RDP targets, NT hashes, redirections per grant).

use crate::daemon::broker::BoxBroker;
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};
use witness_core::Protocol;
use witness_core::policy::{Access, Denial};
use witness_index::{Secret, TargetRecord};
use witness_rdp::{RdpPlan, Redirection};

/// What `serve` needs to start the RDP listener; `None` when RDP is not asked for.
pub fn listener_settings(
    root: &Path,
    listen: Option<&str>,
    shutdown_grace: Duration,
) -> Result<Option<(SocketAddr, witness_rdp::RdpSettings)>> {
    let Some(listen) = listen else { return Ok(None) };
    let addr: SocketAddr =
        listen.parse().with_context(|| format!("--rdp-listen {listen:?} is not an address like 0.0.0.0:3389"))?;
    // A data directory made before RDP existed gets its certificate now.
    crate::identity::ensure_identity(root)?;
    let identity = crate::identity::load_identity(root)?;
    Ok(Some((addr, witness_rdp::RdpSettings { identity, shutdown_grace, connect_timeout: Duration::from_secs(10) })))
}

/// Binds and starts the RDP listener, and the targets' own ports beside it; they end with
/// `cancel`.
pub async fn start(
    settings: Option<(SocketAddr, witness_rdp::RdpSettings)>,
    broker: Arc<BoxBroker>,
    cancel: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some((addr, settings)) = settings else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening for rdp on {addr}"))?;
    info!(addr = %listener.local_addr()?, fingerprint = %settings.identity.fingerprint, "rdp jump path listening");
    let tracker = TaskTracker::new();
    let (s, b, c) = (settings.clone(), broker.clone(), cancel.clone());
    tracker.spawn(async move {
        if let Err(e) = witness_rdp::serve(listener, witness_rdp::Route::default(), s, b, c).await {
            error!(error = %e, "rdp listener failed");
        }
    });
    tracker.spawn(target_ports(addr.ip(), settings, broker, cancel, tracker.clone()));
    tracker.close();
    Ok(Some(tokio::spawn(async move { tracker.wait().await })))
}

/// How soon a port given to (or taken from) a target opens (or closes) in a running box.
const PORT_POLL: Duration = Duration::from_secs(2);

/// Keeps one listener open per target with its own port (`target listen-port`), on the main
/// listener's address, following the index. A port taken away stops accepting; its sessions go
/// on.
async fn target_ports(
    ip: IpAddr,
    settings: witness_rdp::RdpSettings,
    broker: Arc<BoxBroker>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let mut open: HashMap<u16, (String, CancellationToken)> = HashMap::new();
    // Ports that would not open, logged once per (port, target) rather than every poll.
    let mut failed: HashSet<(u16, String)> = HashSet::new();
    loop {
        match broker.dir.index.target_rdp_ports() {
            Ok(wanted) => {
                let wanted: HashMap<u16, String> = wanted.into_iter().collect();
                open.retain(|port, (target, accepting)| {
                    let keep = wanted.get(port) == Some(target);
                    if !keep {
                        accepting.cancel();
                        info!(port, target = %target, "rdp target port closed");
                    }
                    keep
                });
                failed.retain(|(p, t)| wanted.get(p) == Some(t));
                for (port, target) in wanted {
                    if open.contains_key(&port) {
                        continue;
                    }
                    let addr = SocketAddr::new(ip, port);
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => {
                            let accepting = cancel.child_token();
                            let route =
                                witness_rdp::Route { target: Some(target.clone()), accepting: Some(accepting.clone()) };
                            let (s, b, c) = (settings.clone(), broker.clone(), cancel.clone());
                            tracker.spawn(async move {
                                if let Err(e) = witness_rdp::serve(listener, route, s, b, c).await {
                                    error!(error = %e, "rdp target listener failed");
                                }
                            });
                            info!(%addr, target = %target, "rdp target port listening");
                            failed.remove(&(port, target.clone()));
                            open.insert(port, (target, accepting));
                        }
                        Err(e) => {
                            if failed.insert((port, target.clone())) {
                                error!(%addr, target = %target, error = %e, "rdp target port could not be opened; retrying");
                            }
                        }
                    }
                }
            }
            Err(e) => error!(error = %e, "index read failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PORT_POLL) => {}
        }
    }
}

impl BoxBroker {
    pub(crate) fn rdp_decide(&self, user: &str, target: &str) -> Result<(TargetRecord, Access), Denial> {
        let decided = self.decide(user, Some(target), Protocol::Rdp)?;
        // NLA has no second prompt: a user with a one-time code needs an explicit allow.
        let allowed = self.dir.index.rdp_allowed(user).unwrap_or_else(|e| {
            error!(error = %e, "index read failed");
            false
        });
        if !allowed {
            return Err(Denial::RdpNotAllowed { user: user.to_owned() });
        }
        Ok(decided)
    }
}

impl witness_rdp::Broker for BoxBroker {
    fn begin_login(&self, peer: SocketAddr, user: &str) -> Result<Option<witness_rdp::Ticket>, witness_rdp::Refusal> {
        match self.gate.reserve(Some(peer.ip()), user) {
            Ok(t) => Ok(Some(t)),
            Err((refusal, event)) => {
                if let Some(e) = event {
                    self.audit_gate(e);
                }
                Err(refusal)
            }
        }
    }

    fn end_login(&self, ticket: witness_rdp::Ticket, ok: bool, peer: SocketAddr, user: &str) {
        if let Some(e) = self.gate.settle(ticket, ok, Some(peer.ip()), user) {
            self.audit_gate(e);
        }
    }

    fn release_login(&self, ticket: witness_rdp::Ticket) {
        self.gate.release(ticket);
    }

    fn nt_hash(&self, user: &str) -> Option<String> {
        self.dir.index.nt_hash(user).unwrap_or_else(|e| {
            error!(error = %e, "index read failed");
            None
        })
    }

    fn plan(&self, user: &str, target: &str) -> Result<RdpPlan, Denial> {
        let (record, access) = self.rdp_decide(user, target)?;
        let Secret::Password(password) = record.secret else {
            return Err(Denial::UnknownTarget { target: target.to_owned() });
        };
        let domain = self.dir.index.target_domain(target).unwrap_or_else(|e| {
            error!(error = %e, "index read failed");
            None
        });
        let r = self.dir.index.rdp_redirection(user, target).ok().flatten().unwrap_or_default();
        Ok(RdpPlan {
            name: record.name,
            host: record.host,
            port: record.port,
            login: record.login,
            domain,
            password,
            certificate: record.host_key,
            access,
            redirection: Redirection::from_grant(witness_rdp::Switches {
                clipboard: r.clipboard,
                drives: r.drives,
                usb: r.usb,
                camera: r.camera,
                audio_input: r.audio_input,
                audio: r.audio,
            }),
        })
    }

    fn pin_certificate(&self, target: &str, fingerprint: &str) -> Result<bool, String> {
        self.dir.index.pin_host_key(target, fingerprint).map_err(|e| e.to_string())
    }

    fn start_screen_recording(&self, session_id: &str) -> Result<Box<dyn witness_rdp::ScreenRecorder>, String> {
        // Fail before the relay starts rather than at the first frame.
        // Probing (child processes, seconds) only when start-up has not recorded a choice yet;
        // off the runtime's worker so other sessions keep flowing.
        let chosen = crate::daemon::video::last_choice(&self.dir.root).and_then(|c| c.chosen).or_else(|| {
            tokio::task::block_in_place(|| crate::daemon::video::choose(&self.dir).ok().and_then(|c| c.chosen))
        });
        if chosen.is_none() {
            return Err("no H.264 encoder works on this box (see witness encoders)".into());
        }
        Ok(Box::new(crate::daemon::video::BoxScreen::new(self.dir.clone(), self.finisher.clone(), session_id)))
    }
}
