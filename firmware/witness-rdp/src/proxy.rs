//! The connection sequence on both legs and the relay. Per client: X.224 negotiation (NLA
//! required), TLS with the box's certificate, CredSSP as the server — the NTLM exchange proves the
//! box user's password, and before the box answers it the grant is checked and the target leg is
//! opened (X.224 with the client's requested protocols, TLS with a pinned certificate, CredSSP as
//! the client for NLA targets) — then the PDU relay through [`Filter`] until either side ends.
//! Every refusal reaches the client as an RDP failure (a negotiation failure code, a CredSSP
//! error code, or an Early User Authorization denial), never as a silent hang.

use crate::filter::{Filter, Injection, Verdict};
use crate::login::{parse_rdp_login, parse_rdp_login_on_port};
use crate::tls::{TlsIdentity, fingerprint, public_key_of, target_connector};
use crate::{AuditEvent, Broker, RdpError, RdpPlan};
use bytes::{Bytes, BytesMut};
use ironrdp_async::{FramedWrite, NetworkClient};
use ironrdp_connector::sspi::credssp::{
    CredSspServer, CredentialsProxy, EarlyUserAuthResult, NStatusCode, ServerError, ServerMode, ServerState, TsRequest,
};
use ironrdp_connector::sspi::generator::GeneratorState;
use ironrdp_connector::sspi::{self, AuthIdentity, NTLM_HASH_PREFIX, NetworkRequest, Username, UsernameParts};
use ironrdp_connector::{ConnectorResult, Credentials, ServerName, credssp::CredsspSequence};
use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::PduHint;
use ironrdp_pdu::nego::{
    ConnectionConfirm, ConnectionRequest, FailureCode, NegoRequestData, ResponseFlags, SecurityProtocol,
};
use ironrdp_pdu::x224::X224;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use witness_core::gate::{LOGIN_GRACE_SECS, PreAuth, Slot, loggable_name};
use witness_core::policy::Denial;

type ClientTls = tokio_rustls::server::TlsStream<TcpStream>;
type TargetTls = tokio_rustls::client::TlsStream<TcpStream>;

/// How the RDP listener runs.
#[derive(Debug, Clone)]
pub struct RdpSettings {
    pub identity: TlsIdentity,
    /// How long shutdown waits for sessions to end.
    pub shutdown_grace: Duration,
    /// The time a target gets to answer each connection step.
    pub connect_timeout: Duration,
}

/// What one RDP listener leads to.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// A target's own port: logins need not name the target, and may name no other.
    pub target: Option<String>,
    /// Stops accepting on this listener while its sessions go on (a port taken off a target);
    /// `None` accepts until `cancel`.
    pub accepting: Option<CancellationToken>,
}

/// Serves RDP clients on `listener` until `cancel`; then ends every session and waits for them
/// (up to the grace time). A route's `accepting` token closes the listener earlier: its sessions
/// then run to their own end (or `cancel`).
pub async fn serve<B: Broker>(
    listener: TcpListener,
    route: Route,
    settings: RdpSettings,
    broker: Arc<B>,
    cancel: CancellationToken,
) -> Result<(), RdpError> {
    let settings = Arc::new(settings);
    let port_target: Option<Arc<str>> = route.target.map(Into::into);
    let accepting = route.accepting.unwrap_or_else(|| cancel.clone());
    let tracker = TaskTracker::new();
    let places = PreAuth::default();
    let mut last_full_log = None::<std::time::Instant>;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = accepting.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Limits before login: handshakes that never finish cannot take the
                    // descriptors the box needs.
                    let slot = match places.enter(peer.ip()) {
                        Ok(slot) => slot,
                        Err(full) => {
                            if last_full_log.is_none_or(|t: std::time::Instant| t.elapsed() > Duration::from_secs(10)) {
                                let (pre_auth, all) = places.counts();
                                warn!(%peer, pre_auth, all, "rdp connection refused: too many {}", full.as_str());
                                last_full_log = Some(std::time::Instant::now());
                            }
                            continue;
                        }
                    };
                    let (settings, broker, cancel) = (settings.clone(), broker.clone(), cancel.child_token());
                    let port_target = port_target.clone();
                    tracker.spawn(async move { connection(stream, peer, slot, port_target, settings, broker, cancel).await });
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving, but do not spin.
                    warn!(error = %e, "rdp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    let grace = async {
        cancel.cancelled().await;
        tokio::time::sleep(settings.shutdown_grace).await;
    };
    tokio::select! {
        _ = tracker.wait() => {}
        _ = grace => warn!("rdp sessions did not end within the shutdown grace time"),
    }
    Ok(())
}

/// Why a connection did not become a session; shown in logs and audit events, never a secret.
#[derive(Debug)]
struct Refusal {
    /// Audit kind.
    kind: &'static str,
    /// What the admin reads.
    message: String,
    user: Option<String>,
    target: Option<String>,
}

impl Refusal {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), user: None, target: None }
    }
}

async fn connection<B: Broker>(
    stream: TcpStream,
    peer: SocketAddr,
    mut slot: Slot,
    port_target: Option<Arc<str>>,
    settings: Arc<RdpSettings>,
    broker: Arc<B>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(
        Duration::from_secs(LOGIN_GRACE_SECS),
        handshake(stream, peer, port_target.as_deref(), &settings, &*broker),
    );
    let ready = tokio::select! {
        _ = cancel.cancelled() => return,
        r = handshake => r.unwrap_or_else(|_| Err(Refusal::new("rdp_handshake_failed", "the client did not finish the connection sequence in time"))),
    };
    let session = match ready {
        Ok(s) => s,
        Err(r) => {
            // Only bounded, escaped names reach the log and the audit log.
            let (user, target) = (r.user.as_deref().map(loggable_name), r.target.as_deref().map(loggable_name));
            warn!(%peer, kind = r.kind, user = user.as_deref(), target = target.as_deref(), reason = %r.message, "rdp connection refused");
            broker.audit(AuditEvent {
                kind: r.kind,
                user,
                target,
                session_id: None,
                detail: serde_json::json!({ "protocol": "rdp", "client": peer.to_string(), "reason": r.message }),
            });
            return;
        }
    };
    slot.logged_in();
    run_session(session, peer, &*broker, cancel).await;
}

/// A client and a target, both authenticated, ready for the relay.
struct Ready {
    user: String,
    plan: RdpPlan,
    client: ClientTls,
    client_leftover: BytesMut,
    target: TargetTls,
    target_leftover: BytesMut,
    target_protocol: SecurityProtocol,
}

async fn handshake<B: Broker>(
    stream: TcpStream,
    peer: SocketAddr,
    port_target: Option<&str>,
    settings: &RdpSettings,
    broker: &B,
) -> Result<Ready, Refusal> {
    let io = |what: &'static str| move |e: std::io::Error| Refusal::new("rdp_handshake_failed", format!("{what}: {e}"));
    let mut framed = ironrdp_tokio::TokioFramed::new(stream);
    let (_, frame) = framed.read_pdu().await.map_err(io("reading the connection request"))?;
    let request = decode::<X224<ConnectionRequest>>(&frame)
        .map_err(|e| Refusal::new("rdp_handshake_failed", format!("not an rdp connection request: {e}")))?
        .0;
    debug!(%peer, protocols = ?request.protocol, "rdp connection request");
    if !request.protocol.intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX) {
        // The box must learn and check the user before it picks a target: that takes NLA.
        let failure = X224(ConnectionConfirm::Failure { code: FailureCode::HYBRID_REQUIRED_BY_SERVER });
        let _ = write_pdu(&mut framed, &failure).await;
        return Err(Refusal::new(
            "rdp_nla_required",
            "the client does not offer network level authentication (NLA), which the box requires",
        ));
    }
    // Plain HYBRID whenever offered: FreeRDP 2 offers HYBRID_EX with `+sec-ext` but cannot
    // continue once a server selects it, and refusals reach the client as CredSSP status codes
    // either way (HYBRID_EX would only add the Early User Authorization Result).
    let client_protocol = if request.protocol.contains(SecurityProtocol::HYBRID) {
        SecurityProtocol::HYBRID
    } else {
        SecurityProtocol::HYBRID_EX
    };
    let confirm = X224(ConnectionConfirm::Response {
        flags: ResponseFlags::EXTENDED_CLIENT_DATA_SUPPORTED,
        protocol: client_protocol,
    });
    write_pdu(&mut framed, &confirm).await.map_err(io("answering the connection request"))?;
    let stream = framed.into_inner_no_leftover();
    let tls = settings.identity.acceptor.accept(stream).await.map_err(io("tls with the client"))?;

    // CredSSP as the server. The NTLM lookup tells who is logging in.
    let login = Arc::new(Mutex::new(None::<(String, String)>));
    let no_credential = Arc::new(Mutex::new(None::<&'static str>));
    let ticket = Arc::new(Mutex::new(None));
    let attempt = Attempt { broker, peer, ticket: ticket.clone(), user: login.clone() };
    let lookup = Lookup {
        broker,
        port_target,
        peer,
        login: login.clone(),
        no_credential: no_credential.clone(),
        attempt: ticket,
    };
    let no_credential = || *no_credential.lock().unwrap_or_else(|p| p.into_inner());
    let mut server = CredSspServer::new(
        settings.identity.public_key.clone(),
        lookup,
        ServerMode::Ntlm(sspi::ntlm::NtlmConfig::new("witness".to_owned())),
    )
    .map_err(|e| Refusal::new("rdp_handshake_failed", format!("credssp: {e}")))?;
    let mut framed = ironrdp_tokio::TokioFramed::new(tls);
    let mut opened: Option<(RdpPlan, TargetLeg)> = None;
    loop {
        let pdu = framed.read_by_hint(&TS_REQUEST_HINT).await.map_err(io("reading credssp from the client"))?;
        let ts_request = TsRequest::from_buffer(&pdu)
            .map_err(|e| Refusal::new("rdp_handshake_failed", format!("credssp from the client: {e}")))?;
        let result = run_server_generator(&mut server, ts_request);
        let who = login.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match result {
            Ok(ServerState::ReplyNeeded(reply)) if reply.pub_key_auth.is_some() && no_credential().is_some() => {
                // NTLM cannot have matched a random hash; should it ever say so, refuse anyway.
                attempt.settle(false);
                let denial = TsRequest { error_code: Some(NStatusCode::LOGON_FAILURE), ..TsRequest::default() };
                let _ = write_ts_request(&mut framed, &denial).await;
                let mut refusal = Refusal::new("login_failed", no_credential().unwrap_or_default());
                refusal.user = who.as_ref().map(|(u, _)| u.clone());
                refusal.target = who.map(|(_, t)| t).filter(|t| !t.is_empty());
                return Err(refusal);
            }
            Ok(ServerState::ReplyNeeded(reply)) => {
                if reply.pub_key_auth.is_some() && opened.is_none() {
                    // NTLM has checked the password; only now may the box look at targets.
                    attempt.settle(true);
                    let (user, target) = who
                        .clone()
                        .ok_or_else(|| Refusal::new("rdp_handshake_failed", "credssp finished without a user"))?;
                    match open(broker, &user, &target, port_target, settings, &request).await {
                        Ok(o) => opened = Some(o),
                        Err((code, mut refusal)) => {
                            let denial = TsRequest { error_code: Some(code), ..TsRequest::default() };
                            let _ = write_ts_request(&mut framed, &denial).await;
                            refusal.user = Some(user);
                            refusal.target = (!target.is_empty()).then_some(target);
                            return Err(refusal);
                        }
                    }
                }
                write_ts_request(&mut framed, &reply).await.map_err(io("writing credssp to the client"))?;
            }
            Ok(ServerState::Finished(_)) => break,
            Err(ServerError { ts_request, error }) => {
                if let Some(mut reply) = ts_request.map(|b| *b) {
                    if error.error_type == sspi::ErrorKind::LogonDenied {
                        reply.error_code = Some(NStatusCode::LOGON_FAILURE);
                    }
                    let _ = write_ts_request(&mut framed, &reply).await;
                }
                let mut refusal = Refusal::new("login_failed", "wrong user name or password");
                // Any failed check counts, however NTLM noticed it (a wrong password without the
                // MIC fails only at pubKeyAuth as `MessageAltered`): a guess is a guess.
                attempt.settle(false);
                if let Some(why) = no_credential() {
                    refusal.message = why.into();
                } else if error.error_type != sspi::ErrorKind::LogonDenied {
                    refusal.message = format!("credssp failed: {error}");
                }
                refusal.user = who.as_ref().map(|(u, _)| u.clone());
                refusal.target = who.map(|(_, t)| t).filter(|t| !t.is_empty());
                return Err(refusal);
            }
        }
    }
    let (plan, target) =
        opened.ok_or_else(|| Refusal::new("rdp_handshake_failed", "credssp ended before authentication"))?;
    let user = login.lock().unwrap_or_else(|p| p.into_inner()).clone().map(|(u, _)| u).unwrap_or_default();
    if client_protocol == SecurityProtocol::HYBRID_EX {
        let mut buf = vec![0; 4];
        EarlyUserAuthResult::Success.to_buffer(&mut buf[..]).map_err(io("encoding the authorization result"))?;
        framed.write_all(&buf).await.map_err(io("writing the authorization result"))?;
    }
    let (client, client_leftover) = framed.into_inner();
    Ok(Ready {
        user,
        plan,
        client,
        client_leftover,
        target: target.stream,
        target_leftover: target.leftover,
        target_protocol: target.protocol,
    })
}

/// Drives one step of the CredSSP server. NTLM needs no network, so a suspended generator (a
/// Kerberos request) is an error.
fn run_server_generator<C: CredentialsProxy<AuthenticationData = AuthIdentity> + Send>(
    server: &mut CredSspServer<C>,
    request: TsRequest,
) -> Result<ServerState, ServerError> {
    let mut generator = server.process(request);
    match generator.start() {
        GeneratorState::Completed(r) => r,
        GeneratorState::Suspended(_) => Err(ServerError {
            ts_request: None,
            error: sspi::Error::new(sspi::ErrorKind::UnsupportedFunction, "kerberos is not supported"),
        }),
    }
}

/// The CredSSP server's user lookup: the NT hash of the box user named in the NTLM message.
struct Lookup<'a, B: Broker> {
    broker: &'a B,
    port_target: Option<&'a str>,
    peer: SocketAddr,
    login: Arc<Mutex<Option<(String, String)>>>,
    /// Why the named user cannot log in whatever NTLM says (no NT hash, throttled, a bad name).
    no_credential: Arc<Mutex<Option<&'static str>>>,
    /// The throttle's reservation for this attempt, settled by the handshake.
    attempt: Arc<Mutex<Option<crate::Ticket>>>,
}

/// Settles (or, dropped undecided, gives back) the throttle's reservation of an RDP login.
struct Attempt<'a, B: Broker> {
    broker: &'a B,
    peer: SocketAddr,
    ticket: Arc<Mutex<Option<crate::Ticket>>>,
    user: Arc<Mutex<Option<(String, String)>>>,
}

impl<B: Broker> Attempt<'_, B> {
    fn settle(&self, ok: bool) {
        if let Some(t) = self.ticket.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let user = self.user.lock().unwrap_or_else(|p| p.into_inner()).clone().map(|(u, _)| u).unwrap_or_default();
            self.broker.end_login(t, ok, self.peer, &user);
        }
    }
}

impl<B: Broker> Drop for Attempt<'_, B> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.broker.release_login(t);
        }
    }
}

impl<B: Broker> std::fmt::Debug for Lookup<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookup")
    }
}

impl<B: Broker> CredentialsProxy for Lookup<'_, B> {
    type AuthenticationData = AuthIdentity;

    fn auth_data_by_user(&mut self, username: &Username) -> std::io::Result<AuthIdentity> {
        let parts = username.parts();
        let (account, domain) = match &parts {
            UsernameParts::UserPrincipalName(upn) => (upn.upn(), None),
            UsernameParts::DownLevelLogonName(dl) => (dl.account_name(), dl.netbios_domain()),
        };
        let spec = match self.port_target {
            Some(t) => parse_rdp_login_on_port(account, t),
            None => parse_rdp_login(account, domain),
        };
        let target = spec.target.clone().unwrap_or_default();
        *self.login.lock().unwrap_or_else(|p| p.into_inner()) = Some((spec.user.clone(), target));
        // The box's throttle first: a throttled or unbounded name is never compared.
        let hash = match self.broker.begin_login(self.peer, &spec.user) {
            Ok(ticket) => {
                *self.attempt.lock().unwrap_or_else(|p| p.into_inner()) = ticket;
                self.broker.nt_hash(&spec.user).ok_or("no such user, or the user has no password usable for RDP")
            }
            Err(crate::Refusal::Throttled { .. }) => Err("too many failed logins; not checked"),
            Err(_) => Err("login name too long or not printable"),
        };
        // Absence of a credential is a refusal, never a default value: NTLM is handed a fresh
        // random hash that no client can know (so an unknown user fails exactly like a wrong
        // password, in the same time), and the handshake refuses this login whatever NTLM says.
        let hash = match hash {
            Ok(h) => h,
            Err(why) => {
                *self.no_credential.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                hex::encode(rand::random::<[u8; 16]>())
            }
        };
        Ok(AuthIdentity { username: username.clone(), password: format!("{NTLM_HASH_PREFIX}{hash}").into() })
    }

    fn auth_data(&mut self) -> std::io::Result<Vec<AuthIdentity>> {
        Ok(Vec::new())
    }
}

#[derive(Clone, Copy, Debug)]
struct TsRequestHint;

const TS_REQUEST_HINT: TsRequestHint = TsRequestHint;

impl PduHint for TsRequestHint {
    fn find_size(&self, bytes: &[u8]) -> ironrdp_core::DecodeResult<Option<(bool, usize)>> {
        match TsRequest::read_length(bytes) {
            Ok(length) => Ok(Some((true, length))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(ironrdp_core::other_err!("TsRequestHint", source: e)),
        }
    }
}

async fn write_ts_request<S: AsyncRead + AsyncWrite + Unpin + Send + Sync>(
    framed: &mut ironrdp_tokio::TokioFramed<S>,
    request: &TsRequest,
) -> std::io::Result<()> {
    let len = usize::from(request.buffer_len().map_err(std::io::Error::other)?);
    let mut buf = Vec::with_capacity(len);
    request.encode_ts_request(&mut buf)?;
    framed.write_all(&buf).await
}

async fn write_pdu<S, T>(framed: &mut ironrdp_tokio::TokioFramed<S>, pdu: &T) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync,
    T: ironrdp_core::Encode,
{
    let buf = encode_vec(pdu).map_err(std::io::Error::other)?;
    framed.write_all(&buf).await
}

/// NTSTATUS codes the client reads in CredSSP's errorCode (FreeRDP and mstsc name them).
const STATUS_ACCESS_DENIED: NStatusCode = NStatusCode(0xc000_0022);

/// The target leg after TLS (and CredSSP for NLA targets).
struct TargetLeg {
    stream: TargetTls,
    leftover: BytesMut,
    protocol: SecurityProtocol,
}

/// Checks policy, then opens the target leg. `Err` carries the status code the client reads.
async fn open<B: Broker>(
    broker: &B,
    user: &str,
    target: &str,
    port_target: Option<&str>,
    settings: &RdpSettings,
    client_request: &ConnectionRequest,
) -> Result<(RdpPlan, TargetLeg), (NStatusCode, Refusal)> {
    let denied = |kind, message: String| (STATUS_ACCESS_DENIED, Refusal::new(kind, message));
    if target.is_empty() {
        return Err(denied("access_denied", format!("no target named; log in as {user}@TARGET (or TARGET\\{user})")));
    }
    if let Some(p) = port_target.filter(|p| *p != target) {
        return Err(denied("access_denied", format!("this port leads to target {p}; the login names {target}")));
    }
    let plan = broker.plan(user, target).map_err(|d: Denial| denied("access_denied", d.to_string()))?;
    broker.admit().map_err(|m| denied("session_refused", m.to_string()))?;
    let leg = connect_target(broker, &plan, settings, client_request).await?;
    Ok((plan, leg))
}

async fn connect_target<B: Broker>(
    broker: &B,
    plan: &RdpPlan,
    settings: &RdpSettings,
    client_request: &ConnectionRequest,
) -> Result<TargetLeg, (NStatusCode, Refusal)> {
    let addr = format!("{}:{}", plan.host, plan.port);
    let name = &plan.name;
    let limit = settings.connect_timeout;
    let unreachable = |why: String| {
        (
            NStatusCode::NO_LOGON_SERVERS,
            Refusal::new("target_unreachable", format!("target {name} ({addr}) is unreachable: {why}")),
        )
    };
    let timed = |_| unreachable("timed out".into());
    let tcp = tokio::time::timeout(limit, TcpStream::connect(&addr))
        .await
        .map_err(timed)?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let mut framed = ironrdp_tokio::TokioFramed::new(tcp);
    // The client's requested protocols go to the target unchanged: strict clients check that the
    // target saw what they sent (mstsc fails with 0x609 otherwise).
    let request = ConnectionRequest {
        nego_data: Some(NegoRequestData::cookie(plan.login.clone())),
        flags: client_request.flags,
        protocol: client_request.protocol,
        correlation_info: None,
    };
    write_pdu(&mut framed, &X224(request)).await.map_err(|e| unreachable(e.to_string()))?;
    let (_, frame) =
        tokio::time::timeout(limit, framed.read_pdu()).await.map_err(timed)?.map_err(|e| unreachable(e.to_string()))?;
    let confirm = decode::<X224<ConnectionConfirm>>(&frame).map_err(|e| unreachable(format!("not rdp: {e}")))?.0;
    let protocol = match confirm {
        ConnectionConfirm::Response { protocol, .. } => protocol,
        ConnectionConfirm::Failure { code } => {
            return Err(unreachable(format!("it refused the negotiation ({code:?})")));
        }
    };
    if !protocol.intersects(SecurityProtocol::SSL | SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX) {
        return Err(unreachable(format!("it selected {protocol:?}; the box speaks only TLS and NLA")));
    }
    let tcp = framed.into_inner_no_leftover();
    let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(plan.host.clone())
        .map_err(|e| unreachable(format!("bad host name: {e}")))?;
    let connector = target_connector().map_err(|e| unreachable(e.to_string()))?;
    let tls = tokio::time::timeout(limit, connector.connect(server_name, tcp))
        .await
        .map_err(timed)?
        .map_err(|e| unreachable(format!("tls: {e}")))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| unreachable("it showed no certificate".into()))?;
    check_pin(broker, plan, &fingerprint(&cert))?;
    if !protocol.intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX) {
        // TLS only (xrdp): the credential goes into the Client Info PDU during the relay.
        return Ok(TargetLeg { stream: tls, leftover: BytesMut::new(), protocol });
    }
    let refused = |why: String| {
        (
            STATUS_ACCESS_DENIED,
            Refusal::new("target_login_failed", format!("target {name} ({addr}) refused the box's credential: {why}")),
        )
    };
    let public_key = public_key_of(&cert).map_err(refused)?;
    let (sequence, first) = CredsspSequence::init(
        Credentials::UsernamePassword { username: plan.login.clone(), password: plan.password.clone() },
        plan.domain.as_deref(),
        protocol,
        ServerName::new(plan.host.clone()),
        public_key,
        None,
    )
    .map_err(|e| refused(e.to_string()))?;
    let mut framed = ironrdp_tokio::TokioFramed::new(tls);
    let mut buf = ironrdp_core::WriteBuf::new();
    tokio::time::timeout(limit, ironrdp_async::perform_credssp(&mut framed, &mut NoNetwork, &mut buf, sequence, first))
        .await
        .map_err(timed)?
        .map_err(|e| refused(e.to_string()))?;
    let (stream, leftover) = framed.into_inner();
    Ok(TargetLeg { stream, leftover, protocol })
}

/// Compares the target's certificate with the pinned one, pinning it on first use.
fn check_pin<B: Broker>(broker: &B, plan: &RdpPlan, offered: &str) -> Result<(), (NStatusCode, Refusal)> {
    let changed = |pinned: &str| {
        (
            STATUS_ACCESS_DENIED,
            Refusal::new(
                "certificate_changed",
                format!(
                    "certificate of target {} ({}:{}) has changed (pinned {pinned}, offered {offered}); refusing to connect, an admin must re-pin it",
                    plan.name, plan.host, plan.port
                ),
            ),
        )
    };
    match &plan.certificate {
        Some(pinned) if pinned == offered => Ok(()),
        Some(pinned) => Err(changed(pinned)),
        None => match broker.pin_certificate(&plan.name, offered) {
            Ok(true) => {
                info!(target = %plan.name, fingerprint = offered, "pinned the target's rdp certificate on first use");
                broker.audit(AuditEvent {
                    kind: "certificate_pinned",
                    user: None,
                    target: Some(plan.name.clone()),
                    session_id: None,
                    detail: serde_json::json!({ "protocol": "rdp", "fingerprint": offered }),
                });
                Ok(())
            }
            Ok(false) => Err(changed("by a concurrent connection")),
            Err(e) => Err((NStatusCode::NO_LOGON_SERVERS, Refusal::new("certificate_pin_failed", e))),
        },
    }
}

/// NTLM towards targets needs no network; Kerberos (which would) is not offered.
struct NoNetwork;

impl NetworkClient for NoNetwork {
    async fn send(&mut self, _request: &NetworkRequest) -> ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!("the box does not reach a kdc"))
    }
}

/// How one direction of the relay ended.
enum End {
    Closed,
    /// The peer reset the connection: what a killed client or a closed mstsc window sends when
    /// bytes were still in flight. A disconnect, not a fault of the box.
    Reset,
    Refused(&'static str),
}

async fn run_session<B: Broker>(ready: Ready, peer: SocketAddr, broker: &B, cancel: CancellationToken) {
    let Ready { user, plan, client, client_leftover, target, target_leftover, target_protocol } = ready;
    let session_id = match broker.session_started(&user, &plan.name, crate::Protocol::Rdp, Some(peer)) {
        Ok(id) => id,
        Err(e) => {
            warn!(%peer, user, target = %plan.name, error = %e, "rdp session could not start");
            return;
        }
    };
    info!(session_id, user, target = %plan.name, ?target_protocol, "rdp session started");
    let audit = |kind, detail| {
        broker.audit(AuditEvent {
            kind,
            user: Some(user.clone()),
            target: Some(plan.name.clone()),
            session_id: Some(session_id.clone()),
            detail,
        })
    };
    audit(
        "rdp_session_started",
        serde_json::json!({ "client": peer.to_string(), "target_protocol": format!("{target_protocol:?}") }),
    );
    let (client_r, mut client_w) = tokio::io::split(client);
    let (target_r, mut target_w) = tokio::io::split(target);
    // Nothing is relayed that the box does not record.
    let recorder = match broker.start_screen_recording(&session_id) {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("the box cannot record this session ({e}); session refused");
            audit("recording_failed", serde_json::json!({ "protocol": "rdp", "reason": reason }));
            let close = async { tokio::join!(client_w.shutdown(), target_w.shutdown()) };
            let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
            warn!(session_id, user, target = %plan.name, reason, "rdp session ended");
            broker.session_ended(&session_id, &reason);
            return;
        }
    };
    let (inject_tx, mut inject_rx) = tokio::sync::mpsc::channel(4);
    let (tap, mut recording) = crate::record::start(recorder, inject_tx, session_id.clone());
    let filter = Mutex::new(
        Filter::new(
            target_protocol,
            plan.redirection,
            Injection { username: plan.login.clone(), domain: plan.domain.clone(), password: plan.password.clone() },
        )
        .with_client_address(peer.ip()),
    );
    let announce = |kind: &str, decisions: &[(&str, bool)]| {
        let allowed: Vec<_> = decisions.iter().filter(|d| d.1).map(|d| d.0).collect();
        let blocked: Vec<_> = decisions.iter().filter(|d| !d.1).map(|d| d.0).collect();
        info!(session_id, kind, ?allowed, ?blocked, "rdp virtual channels");
        audit("rdp_channels", serde_json::json!({ "kind": kind, "allowed": allowed, "blocked": blocked }));
    };
    let client_side = Side { from_client: true, filter: &filter, announce: &announce, tap: &tap };
    let target_side = Side { from_client: false, filter: &filter, announce: &announce, tap: &tap };
    let from_client = pump(client_r, &mut target_w, client_leftover, client_side, Some(&mut inject_rx));
    let from_target = pump(target_r, &mut client_w, target_leftover, target_side, None);
    let recheck = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Err(d) = broker.recheck(&user, &plan.name, crate::Protocol::Rdp) {
                return d;
            }
        }
    };
    let termination = broker.termination(&session_id);
    let terminated = async {
        match &termination {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let mut outcome = None;
    let reason = tokio::select! {
        r = from_client => match r {
            Ok(End::Closed) => "client disconnected".to_owned(),
            Ok(End::Reset) => "client disconnected (connection reset)".to_owned(),
            Ok(End::Refused(why)) => {
                audit("rdp_policy_refused", serde_json::json!({ "from": "client", "reason": why }));
                why.to_owned()
            }
            Err(e) => format!("client connection failed: {e}"),
        },
        r = from_target => match r {
            Ok(End::Closed) => "target disconnected".to_owned(),
            Ok(End::Reset) => format!("connection to target {} was lost: connection reset", plan.name),
            Ok(End::Refused(why)) => {
                let kind = if why == crate::filter::REDIRECTED { "rdp_redirection_refused" } else { "rdp_policy_refused" };
                audit(kind, serde_json::json!({ "from": "target", "reason": why }));
                why.to_owned()
            }
            Err(e) => format!("connection to target {} was lost: {e}", plan.name),
        },
        o = &mut recording => {
            let o = o.unwrap_or_else(|e| crate::record::Outcome::panicked(&e));
            let reason = format!("{}; session ended", o.fatal.clone().unwrap_or_else(|| "the recording stopped".into()));
            audit("recording_failed", serde_json::json!({ "protocol": "rdp", "reason": reason }));
            outcome = Some(o);
            reason
        }
        d = recheck => {
            let reason = format!("{d}; session ended");
            audit("session_terminated", serde_json::json!({ "protocol": "rdp", "reason": reason }));
            reason
        }
        _ = cancel.cancelled() => "the box is shutting down".to_owned(),
        _ = terminated => broker
            .termination_reason(&session_id)
            .unwrap_or_else(|| "an administrator ended the session from the console".to_owned()),
    };
    // Close both legs with a TLS close_notify, so neither side reads the end as an error.
    let close = async { tokio::join!(client_w.shutdown(), target_w.shutdown()) };
    let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
    // The recording ends with the relay: its last frames are in the file before the session is
    // marked ended (and before a shutdown lets the box stop).
    drop(tap);
    let outcome = match outcome {
        Some(o) => o,
        None => recording.await.unwrap_or_else(|e| crate::record::Outcome::panicked(&e)),
    };
    info!(
        session_id,
        user,
        target = %plan.name,
        reason,
        skipped_screen_pdus = outcome.gaps.skipped_screen_pdus,
        undecodable_screen_pdus = outcome.gaps.undecodable_screen_pdus,
        skipped_input_pdus = outcome.gaps.skipped_input_pdus,
        refreshes = outcome.gaps.refreshes,
        "rdp session ended"
    );
    broker.session_ended(&session_id, &reason);
}

/// Announces channel decisions (`static` or `dynamic`): names and whether each is allowed.
type Announce<'a> = dyn Fn(&str, &[(&str, bool)]) + Sync + 'a;

/// One direction of the relay and what it shares with the other.
struct Side<'a> {
    from_client: bool,
    filter: &'a Mutex<Filter>,
    announce: &'a Announce<'a>,
    tap: &'a crate::record::Tap,
}

/// Moves whole PDUs from `r` to `w` through the filter until `r` ends, showing each one passed to
/// the recording; between PDUs it writes what `inject` brings (the recording's refresh requests).
async fn pump<R, W>(
    mut r: R,
    w: &mut W,
    buf: BytesMut,
    side: Side<'_>,
    mut inject: Option<&mut tokio::sync::mpsc::Receiver<Vec<u8>>>,
) -> Result<End, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Side { from_client, filter, announce, tap } = side;
    let mut buf = buf;
    let mut announced = from_client;
    loop {
        let mut wrote = false;
        loop {
            let info = match ironrdp_pdu::find_size(&buf) {
                Ok(Some(info)) if buf.len() >= info.length => info,
                Ok(_) => break,
                Err(e) => return Err(format!("malformed pdu: {e}")),
            };
            let frame = buf.split_to(info.length).freeze();
            let verdict = {
                let mut f = filter.lock().unwrap_or_else(|p| p.into_inner());
                let v = if from_client { f.from_client(&frame) } else { f.from_target(&frame) };
                if !announced && f.channels_known() {
                    announced = true;
                    let decisions: Vec<_> = f.decisions().iter().map(|d| (d.name.as_str(), d.allowed)).collect();
                    announce("static", &decisions);
                }
                let dynamic = f.take_dynamic_decisions();
                if !dynamic.is_empty() {
                    let decisions: Vec<_> = dynamic.iter().map(|d| (d.name.as_str(), d.allowed)).collect();
                    announce("dynamic", &decisions);
                }
                v.map_err(|e| e.to_string())?
            };
            let out = match verdict {
                Verdict::Forward => frame,
                Verdict::Replace(v) => Bytes::from(v),
                Verdict::Drop => continue,
                Verdict::Refuse(why) => return Ok(End::Refused(why)),
            };
            // Queued before it is written: the target's answer can never reach the decoder
            // ahead of the client PDU it answers. A replacement may hold several PDUs: the
            // decoder gets them one by one.
            let mut rest = out.clone();
            while let Ok(Some(info)) = ironrdp_pdu::find_size(&rest) {
                if info.length == 0 || info.length > rest.len() {
                    break;
                }
                tap.observe(from_client, rest.split_to(info.length)).await;
            }
            w.write_all(&out).await.map_err(|e| e.to_string())?;
            wrote = true;
        }
        if wrote {
            w.flush().await.map_err(|e| e.to_string())?;
        }
        buf.reserve(16 * 1024);
        let read = loop {
            let Some(rx) = inject.as_deref_mut() else { break r.read_buf(&mut buf).await };
            tokio::select! {
                // `read_buf` is cancel safe: a lost race reads nothing.
                read = r.read_buf(&mut buf) => break read,
                pdu = rx.recv() => match pdu {
                    Some(pdu) => {
                        w.write_all(&pdu).await.map_err(|e| e.to_string())?;
                        w.flush().await.map_err(|e| e.to_string())?;
                    }
                    None => inject = None,
                },
            }
        };
        match read {
            Ok(0) => return Ok(End::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(End::Closed),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(End::Reset),
            Err(e) => return Err(e.to_string()),
        }
    }
}
