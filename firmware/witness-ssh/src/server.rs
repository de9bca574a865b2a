//! The box's SSH server: the accept loop, one supervised task per connection, authentication of
//! box users, and the connection state every channel of that connection shares.

use crate::keys::HostKey;
use crate::relay;
use crate::sink::UserSink;
use crate::target::{self, TargetHandle};
use crate::{AuditEvent, Broker, Credential, Protocol, SshError, TargetPlan};
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};
use witness_core::channel::{ChannelPhase, Request, Verdict};
use witness_core::gate::{LOGIN_GRACE_SECS, MAX_LOGIN_LEN, PreAuth, Refusal, Slot, VERSION_LINE_SECS, loggable_name};
use witness_core::names::parse_login;
use witness_core::policy::Denial;

/// What the SSH proxy is configured with.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub host_key: HostKey,
    /// Environment variables a client may pass on (`*` suffix matches a prefix).
    pub env_allow: Vec<String>,
    /// Record what users type (`i` events) as well as what they see.
    pub record_input: bool,
    /// How long a shutdown waits for sessions to end and recordings to close.
    pub shutdown_grace: Duration,
}

impl SshSettings {
    pub(crate) fn env_allowed(&self, name: &str) -> bool {
        witness_core::config::env_allowed(&self.env_allow, name)
    }
}

/// Serves SSH on `listener` until `cancel` fires, then ends every session with a message, waits
/// (up to the grace period) for their recordings to close, and returns.
pub async fn serve(
    listener: TcpListener,
    settings: SshSettings,
    broker: Arc<dyn Broker>,
    cancel: CancellationToken,
) -> Result<(), SshError> {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    // Only as the second step of a user with a one-time code.
    methods.push(MethodKind::KeyboardInteractive);
    let config = Arc::new(server::Config {
        keys: vec![settings.host_key.0.clone()],
        methods,
        server_id: russh::SshId::Standard("SSH-2.0-Witness".into()),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        nodelay: true,
        max_auth_attempts: 6,
        preferred: target::prefer_aes_gcm(),
        ..Default::default()
    });
    let settings = Arc::new(settings);
    let tracker = TaskTracker::new();
    let places = PreAuth::default();
    let mut last_full_log = None::<std::time::Instant>;
    loop {
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the sessions we have.
                    warn!(error = %e, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Limits before login: a flood of silent or slow connections cannot take the
        // descriptors the sessions, recordings and health checks need.
        let slot = match places.enter(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                if last_full_log.is_none_or(|t: std::time::Instant| t.elapsed() > Duration::from_secs(10)) {
                    let (pre_auth, all) = places.counts();
                    warn!(%peer, limit = full.as_str(), pre_auth, all, "ssh connection refused: too many {}", full.as_str());
                    last_full_log = Some(std::time::Instant::now());
                }
                drop(socket);
                continue;
            }
        };
        // A second descriptor on the socket, kept for the connection's life, to cut it wherever
        // russh is waiting: no login within the grace time, or a client that does not take its
        // session's end.
        let (socket, killer) = match split_killer(socket) {
            Ok(pair) => pair,
            Err(e) => {
                warn!(error = %e, "ssh connection dropped: cannot duplicate its socket");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let conn = Arc::new(Conn {
            slot: Mutex::new(slot),
            killer: Mutex::new(Some(killer)),
            broker: broker.clone(),
            settings: settings.clone(),
            peer: Some(peer),
            login: OnceLock::new(),
            target: tokio::sync::OnceCell::new(),
            server: OnceLock::new(),
            channels: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            end_reason: Mutex::new(None),
            ending: AtomicBool::new(false),
        });
        let span = tracing::info_span!("ssh", %peer);
        tracker.spawn(supervise(conn, config.clone(), socket, cancel.clone()).instrument(span));
    }
    tracker.close();
    if tokio::time::timeout(settings.shutdown_grace, tracker.wait()).await.is_err() {
        warn!(grace = ?settings.shutdown_grace, "ssh sessions still open after the shutdown grace period");
    }
    Ok(())
}

/// The outcome of a login: either a session that may go ahead, or the reason it may not.
#[derive(Debug)]
pub(crate) enum Admission {
    Granted { plan: TargetPlan, session_id: String },
    Refused { denial: Option<Denial>, message: String },
}

#[derive(Debug)]
pub(crate) struct Login {
    pub user: String,
    pub admission: Admission,
}

fn split_killer(socket: tokio::net::TcpStream) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std_socket = socket.into_std()?;
    let killer = std_socket.try_clone()?;
    std_socket.set_nonblocking(true)?;
    Ok((tokio::net::TcpStream::from_std(std_socket)?, killer))
}

/// State shared by one connection's handler, channel tasks and supervisor.
pub(crate) struct Conn {
    /// The connection's place among the listener's connections (pre-login until logged in).
    slot: Mutex<Slot>,
    /// Shuts the socket down under russh: when the login grace time runs out, or when a
    /// session's end cannot reach a client that stopped reading.
    killer: Mutex<Option<std::net::TcpStream>>,
    pub broker: Arc<dyn Broker>,
    pub settings: Arc<SshSettings>,
    pub peer: Option<SocketAddr>,
    pub login: OnceLock<Login>,
    pub target: tokio::sync::OnceCell<Result<Arc<TargetHandle>, String>>,
    pub server: OnceLock<server::Handle>,
    /// Open client session channels, each through its sink (the only writer to it), to tell
    /// each why the session ends.
    pub channels: Mutex<HashMap<ChannelId, Arc<UserSink>>>,
    pub tasks: TaskTracker,
    pub end_reason: Mutex<Option<String>>,
    /// The box is ending the session: a target leg that goes away now was closed by us.
    ending: AtomicBool,
}

impl Conn {
    pub(crate) fn user(&self) -> Option<String> {
        self.login.get().map(|l| l.user.clone())
    }

    pub(crate) fn granted(&self) -> Option<(&TargetPlan, &str)> {
        match &self.login.get()?.admission {
            Admission::Granted { plan, session_id } => Some((plan, session_id)),
            Admission::Refused { .. } => None,
        }
    }

    pub(crate) fn audit(&self, kind: &'static str, detail: serde_json::Value) {
        let (target, session_id) = match self.granted() {
            Some((plan, id)) => (Some(plan.name.clone()), Some(id.to_owned())),
            None => (None, None),
        };
        self.broker.audit(AuditEvent { kind, user: self.user(), target, session_id, detail });
    }

    /// The target connection, made once per user connection and shared by its channels.
    pub(crate) async fn target(self: &Arc<Self>) -> Result<Arc<TargetHandle>, String> {
        let Some(login) = self.login.get() else { return Err("not logged in".into()) };
        let (plan, session_id) = match &login.admission {
            Admission::Granted { plan, session_id } => (plan, session_id),
            Admission::Refused { message, .. } => return Err(message.clone()),
        };
        self.target
            .get_or_init(|| async {
                let result = target::connect(plan, self.broker.clone(), &login.user, session_id).await;
                match &result {
                    Ok(_) => self.audit("target_connected", serde_json::json!({ "login": plan.login })),
                    Err(e) => {
                        self.audit("target_failed", serde_json::json!({ "error": e }));
                        self.set_end_reason(e);
                    }
                }
                result.map(Arc::new)
            })
            .await
            .clone()
    }

    /// Remembers the first notable reason the session is ending (the index keeps it).
    pub(crate) fn set_end_reason(&self, reason: &str) {
        let mut r = self.end_reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_owned());
        }
    }

    /// Login finished (granted or refused): the pre-login limits no longer apply.
    fn logged_in(&self) {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).logged_in();
    }

    /// The login grace time ran out: cut the socket under russh.
    fn cut(&self) {
        if let Some(k) = self.killer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = k.shutdown(std::net::Shutdown::Both);
        }
    }

    pub(crate) fn ending(&self) -> bool {
        self.ending.load(Ordering::Acquire)
    }

    /// Tells every open channel why, then disconnects the user. A client that does not take the
    /// message within [`END_NOTICE`] (it stopped reading: its window stays shut) has its
    /// connection cut, so the session's channels fail, end and close their recordings instead
    /// of waiting on it for ever.
    pub(crate) async fn end_with(&self, message: &str) {
        self.set_end_reason(message);
        self.ending.store(true, Ordering::Release);
        let sinks: Vec<Arc<UserSink>> =
            self.channels.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let told = tokio::time::timeout(END_NOTICE, async {
            for sink in sinks {
                sink.end(message, 1).await;
            }
            let Some(server) = self.server.get() else { return };
            let _ = server.disconnect(Disconnect::ByApplication, format!("witness: {message}"), "en".into()).await;
        })
        .await;
        if told.is_err() {
            warn!(secs = END_NOTICE.as_secs(), "the client did not take the session's end; connection cut");
            self.cut();
        }
    }
}

/// Runs one connection from handshake to the last recording closed.
async fn supervise(
    conn: Arc<Conn>,
    config: Arc<server::Config>,
    socket: tokio::net::TcpStream,
    cancel: CancellationToken,
) {
    let handler = SshHandler { conn: conn.clone(), phases: HashMap::new(), first_factor: None };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LOGIN_GRACE_SECS);
    // A client sends its version line at once: a silent connection goes after 10 s, not 30.
    let version_by = tokio::time::Instant::now() + Duration::from_secs(VERSION_LINE_SECS);
    let mut running = match tokio::time::timeout_at(version_by, server::run_stream(config, socket, handler)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            info!(error = %e, "ssh handshake failed");
            return;
        }
        Err(_) => {
            info!(grace_secs = LOGIN_GRACE_SECS, "ssh connection closed: no version line within the login grace time");
            return;
        }
    };
    let mut finished = false;
    let ended = tokio::select! {
        r = &mut running => {
            finished = true;
            match r {
                Ok(()) => "client disconnected".to_owned(),
                Err(e) => format!("connection error: {e}"),
            }
        }
        _ = cancel.cancelled() => {
            let msg = "the box is shutting down; the session was recorded up to here";
            conn.end_with(msg).await;
            msg.to_owned()
        }
        _ = terminated(&conn) => {
            let why = conn.granted().and_then(|(_, id)| conn.broker.termination_reason(id));
            let msg = match why {
                Some(why) => format!("{why}; it was recorded up to here"),
                None => "an administrator ended the session from the console; it was recorded up to here".to_owned(),
            };
            conn.end_with(&msg).await;
            msg
        }
        _ = login_deadline(&conn, deadline) => {
            info!(grace_secs = LOGIN_GRACE_SECS, "ssh connection closed: no login within the login grace time");
            conn.cut();
            "no login within the login grace time".to_owned()
        }
        denial = watch_access(&conn) => {
            let msg = format!("{denial}; session ended");
            conn.audit("session_terminated", serde_json::json!({ "reason": denial.kind() }));
            conn.end_with(&msg).await;
            msg
        }
    };
    // The russh session ends once the client is gone; don't let a stuck peer hold shutdown.
    if !finished {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut running).await;
    }
    if let Some(Ok(target)) = conn.target.get() {
        let _ = target.disconnect(Disconnect::ByApplication, "session ended", "en").await;
    }
    conn.tasks.close();
    if tokio::time::timeout(conn.settings.shutdown_grace, conn.tasks.wait()).await.is_err() {
        warn!("channel tasks still running after the grace period");
    }
    if let Some((_, session_id)) = conn.granted() {
        let reason = conn.end_reason.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or(ended);
        info!(session_id, reason, "session ended");
        conn.broker.session_ended(session_id, &reason);
    }
}

/// Resolves when the grace time is over and the connection has not logged in.
async fn login_deadline(conn: &Conn, deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
    if conn.granted().is_some() {
        std::future::pending::<()>().await;
    }
}

/// Resolves when an administrator terminates the session.
async fn terminated(conn: &Conn) {
    let session_id = loop {
        if let Some(login) = conn.login.get() {
            match &login.admission {
                Admission::Granted { session_id, .. } => break session_id.clone(),
                Admission::Refused { .. } => std::future::pending::<()>().await,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match conn.broker.termination(&session_id) {
        Some(token) => token.cancelled_owned().await,
        None => std::future::pending().await,
    }
}

/// Resolves when a running session's grant stops holding (expired or revoked).
async fn watch_access(conn: &Conn) -> Denial {
    // Logging in happens after the supervisor starts: wait for it without polling hot.
    let (user, target, until) = loop {
        if let Some(login) = conn.login.get() {
            match &login.admission {
                Admission::Granted { plan, .. } => break (login.user.clone(), plan.name.clone(), plan.access.until),
                Admission::Refused { .. } => std::future::pending::<()>().await,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut until = until;
    loop {
        let now = unix_now();
        // Sleep to the exact expiry, but re-check at least every few seconds for revocations.
        let nap = match until {
            Some(t) if t > now => Duration::from_secs((t - now) as u64).min(RECHECK),
            Some(_) => Duration::ZERO,
            None => RECHECK,
        };
        tokio::time::sleep(nap).await;
        match conn.broker.recheck(&user, &target, Protocol::Ssh) {
            Ok(access) => until = access.until,
            Err(denial) => return denial,
        }
    }
}

const RECHECK: Duration = Duration::from_secs(3);

/// How long a session's end waits for the client to take the message before the connection is
/// cut (a stop must end every session well within its deadline).
const END_NOTICE: Duration = Duration::from_secs(3);

pub(crate) use witness_core::clock::unix_secs as unix_now;

struct SshHandler {
    conn: Arc<Conn>,
    /// Each session channel's phase, as the relay keeps it too: answers agree with what is
    /// forwarded.
    phases: HashMap<ChannelId, ChannelPhase>,
    /// The login name and method whose first factor passed, waiting for the one-time code.
    first_factor: Option<(String, &'static str, Option<i64>)>,
}

impl SshHandler {
    /// Judges a channel request and answers it; refusals of anything but an environment
    /// variable outside the allow-list are audited.
    fn judge(&mut self, channel: ChannelId, request: Request<'_>, session: &mut Session) -> Result<(), russh::Error> {
        let verdict = self.phases.entry(channel).or_default().on_request(request);
        match verdict {
            Verdict::Allow | Verdict::Start(_) => session.channel_success(channel),
            Verdict::Refuse(reason) => {
                if !matches!(request, Request::Env { .. }) {
                    let mut detail = serde_json::json!({ "request": request.name(), "reason": reason });
                    if let Request::Subsystem(name) = request {
                        detail["subsystem"] = name.into();
                    }
                    self.conn.audit("channel_request_refused", detail);
                }
                session.channel_failure(channel)
            }
        }
    }

    async fn login(&mut self, login: &str, credential: Credential<'_>, method: &'static str) -> Auth {
        let spec = parse_login(login);
        // Taken before the credential is checked: access that shrinks during the login (a key
        // removed while the user types their code) refuses it.
        let epoch = if spec.user.len() <= MAX_LOGIN_LEN { self.conn.broker.access_epoch(&spec.user) } else { None };
        let broker = self.conn.broker.clone();
        let (user, peer) = (spec.user.clone(), self.conn.peer);
        let owned = match credential {
            Credential::Password(p) => (true, p.to_owned()),
            Credential::PublicKey(k) => (false, k.to_owned()),
        };
        // Password hashing is deliberately slow: keep it off the async threads.
        let outcome = tokio::task::spawn_blocking(move || {
            let cred = if owned.0 { Credential::Password(&owned.1) } else { Credential::PublicKey(&owned.1) };
            broker.authenticate(&user, cred, peer)
        })
        .await
        .unwrap_or(Err(Refusal::Wrong));
        if let Err(refusal) = outcome {
            let reason = match refusal {
                Refusal::Wrong => "wrong user or credential",
                Refusal::Throttled { .. } => "too many failed logins; not checked",
                Refusal::BadName => "login name too long or not printable",
            };
            // Only a bounded, escaped name reaches the audit log; a throttled flood is counted
            // by the gate's own events, not one row per attempt.
            if !matches!(refusal, Refusal::Throttled { .. }) {
                self.login_failed(&spec, method, reason);
            }
            return Auth::reject();
        }
        let broker = self.conn.broker.clone();
        let user = spec.user.clone();
        let second = tokio::task::spawn_blocking(move || broker.needs_second_factor(&user)).await.unwrap_or(true);
        if second {
            // The client asks the user for the code (OpenSSH prompts by itself).
            self.first_factor = Some((login.to_owned(), method, epoch));
            let mut next = MethodSet::empty();
            next.push(MethodKind::KeyboardInteractive);
            return Auth::Reject { proceed_with_methods: Some(next), partial_success: true };
        }
        self.complete(spec, method, epoch)
    }

    /// The audit event of a refused login: only bounded, escaped names reach the audit log.
    fn login_failed(&self, spec: &witness_core::names::LoginSpec, method: &str, reason: &str) {
        self.conn.broker.audit(AuditEvent {
            kind: "login_failed",
            user: Some(loggable_name(&spec.user)),
            target: spec.target.as_deref().map(loggable_name),
            session_id: None,
            detail: serde_json::json!({
                "method": method,
                "reason": reason,
                "peer": self.conn.peer.map(|p| p.to_string()),
            }),
        });
    }

    /// Both factors passed: decide access, open the session, connect to the target.
    fn complete(&mut self, spec: witness_core::names::LoginSpec, method: &'static str, epoch: Option<i64>) -> Auth {
        if self.conn.broker.access_epoch(&spec.user) != epoch {
            self.login_failed(&spec, method, "the user's access changed during the login");
            return Auth::reject();
        }
        let admission = self.admit(&spec.user, spec.target.as_deref());
        if let Admission::Refused { denial, message } = &admission {
            self.conn.broker.audit(AuditEvent {
                kind: "access_denied",
                user: Some(spec.user.clone()),
                target: spec.target.as_deref().map(loggable_name),
                session_id: None,
                detail: serde_json::json!({
                    "reason": denial.as_ref().map(|d| d.kind()).unwrap_or("refused"),
                    "message": witness_core::gate::bounded_text(message, 300),
                }),
            });
        }
        let granted = matches!(admission, Admission::Granted { .. });
        let _ = self.conn.login.set(Login { user: spec.user, admission });
        // A refused login stays pre-login: it counts against the caps and is cut at the grace
        // time, so logins without a grant cannot hold the box's connections.
        if granted {
            self.conn.logged_in();
        }
        if granted {
            self.conn.audit(
                "session_started",
                serde_json::json!({ "method": method, "peer": self.conn.peer.map(|p| p.to_string()) }),
            );
            // Connect to the target while the client sets up its channel.
            let conn = self.conn.clone();
            self.conn.tasks.spawn(async move {
                let _ = conn.target().await;
            });
        }
        Auth::Accept
    }

    fn admit(&self, user: &str, target: Option<&str>) -> Admission {
        let broker = &self.conn.broker;
        let plan = match broker.plan(user, target) {
            Ok(plan) => plan,
            Err(denial) => return Admission::Refused { message: denial.to_string(), denial: Some(denial) },
        };
        if let Err(message) = broker.admit() {
            return Admission::Refused { denial: None, message: message.to_string() };
        }
        match broker.session_started(user, &plan.name, Protocol::Ssh, self.conn.peer) {
            Ok(session_id) => Admission::Granted { plan, session_id },
            Err(message) => Admission::Refused { denial: None, message: message.to_string() },
        }
    }
}

impl server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.login(user, Credential::Password(password), "password").await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only a cheap pre-check: is this key one of the user's? Ownership is proven next.
        if user.len() > MAX_LOGIN_LEN {
            return Ok(Auth::reject());
        }
        let line = offer.public_key.to_openssh().unwrap_or_default();
        let spec = parse_login(user);
        let broker = self.conn.broker.clone();
        let known =
            tokio::task::spawn_blocking(move || broker.authenticate(&spec.user, Credential::PublicKey(&line), None))
                .await
                .is_ok_and(|r| r.is_ok());
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let line = key.public_key.to_openssh().unwrap_or_default();
        Ok(self.login(user, Credential::PublicKey(&line), "publickey").await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some((login, method, epoch)) = self.first_factor.clone().filter(|(l, _, _)| l == user) else {
            return Ok(Auth::reject()); // never a first factor
        };
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "witness".into(),
                instructions: "".into(),
                prompts: vec![("One-time code: ".into(), false)].into(),
            });
        };
        let code = response.next().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let spec = parse_login(&login);
        let (broker, name, peer) = (self.conn.broker.clone(), spec.user.clone(), self.conn.peer);
        let checked = tokio::task::spawn_blocking(move || broker.second_factor(&name, &code, peer))
            .await
            .unwrap_or(Err(Refusal::Wrong));
        if let Err(refusal) = checked {
            self.first_factor = None;
            if !matches!(refusal, Refusal::Throttled { .. }) {
                self.login_failed(&spec, method, "wrong or reused one-time code");
            }
            return Ok(Auth::reject());
        }
        self.first_factor = None;
        Ok(self.complete(spec, if method == "password" { "password+totp" } else { "publickey+totp" }, epoch))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let _ = self.conn.server.set(session.handle());
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let id = channel.id();
        let (from_client, to_client) = channel.split();
        let sink = Arc::new(UserSink::new(id, to_client));
        self.conn.channels.lock().unwrap_or_else(|p| p.into_inner()).insert(id, sink.clone());
        self.conn.tasks.spawn(relay::session_channel(self.conn.clone(), from_client, sink).in_current_span());
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = relay::ForwardRequest {
            host: host.to_owned(),
            port,
            originator: format!("{originator_address}:{originator_port}"),
        };
        self.conn.tasks.spawn(relay::direct_tcpip(self.conn.clone(), channel, reply, request).in_current_span());
        Ok(())
    }

    // Channel requests are answered here, when russh still knows whether this very request
    // wants a reply; the relay forwards them to the target without asking for one.

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _px: u32,
        _py: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.judge(channel, Request::Pty, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.conn.settings.env_allowed(name);
        self.judge(channel, Request::Env { allowed }, session)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.judge(channel, Request::Shell, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.judge(channel, Request::Exec, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.judge(channel, Request::Subsystem(name), session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _proto: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.judge(channel, Request::X11, session)
    }

    async fn agent_request(&mut self, channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        // russh answers this one itself from the return value.
        let verdict = self.phases.entry(channel).or_default().on_request(Request::AgentForward);
        if let Verdict::Refuse(reason) = verdict {
            self.conn
                .audit("channel_request_refused", serde_json::json!({ "request": "auth-agent-req", "reason": reason }));
        }
        Ok(false)
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.phases.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A Unix-socket forward is a path around the recording like any other tunnel.
        self.conn.audit(
            "forward_refused",
            serde_json::json!({ "socket": loggable_name(socket_path), "reason": "unix socket forwarding is not allowed" }),
        );
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn streamlocal_forward(&mut self, socket_path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        self.conn.audit("remote_forward_refused", serde_json::json!({ "socket": loggable_name(socket_path) }));
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.conn.audit("remote_forward_refused", serde_json::json!({ "address": address, "port": *port }));
        Ok(false)
    }
}
