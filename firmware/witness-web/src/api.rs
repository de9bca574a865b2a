//! Routes: the JSON API under `/api/v1/`, `/healthz`, `/metrics` and the embedded pages. Role
//! rules live here: `user` sees only their own sessions, `auditor` views, plays and downloads,
//! `admin` also watches live and terminates. Unknown or foreign ids answer 404 alike.

use crate::LoginRefusal;
use crate::auth::{self, Sessions, StreamSlot, Streams, Viewings, WebSession};
use crate::{
    AuditQuery, Chunks, Console, ConsoleError, Download, Part, Role, SessionDetail, SessionQuery, assets, live,
};
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The client's address, added per connection by the server.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

#[derive(Clone)]
pub struct State {
    pub console: Arc<dyn Console>,
    /// Evidence bundles made for download: which login made each, for which session.
    pub bundles: Arc<std::sync::Mutex<std::collections::HashMap<String, MadeBundle>>>,
    pub sessions: Arc<Sessions>,
    pub viewings: Arc<Viewings>,
    /// Content streams open now, bounded.
    pub streams: Arc<Streams>,
    /// Live views open now, bounded on their own.
    pub live_views: Arc<Streams>,
    /// Recordings whose download figures are being worked out now: a request that comes
    /// meanwhile waits for them instead of reading the recording whole again.
    pub figuring: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// People with an evidence bundle being made now (one at a time each: every bundle is a
    /// full copy of a session's recordings).
    pub making: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// What each finished recording's download is (length, SHA-256), with the row's state it
    /// was worked out for: made once per recording, not at every page view.
    pub downloads: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, Download)>>>,
    pub box_name: String,
    /// The box's time zone (IANA name): the console shows and takes times in it unless the
    /// viewer switches to their own.
    pub time_zone: String,
    pub cancel: CancellationToken,
}

impl State {
    pub fn new(console: Arc<dyn Console>, box_name: String, cancel: CancellationToken) -> Self {
        Self {
            console,
            bundles: Default::default(),
            sessions: Default::default(),
            viewings: Default::default(),
            streams: Default::default(),
            live_views: Arc::new(Streams::new(auth::LIVE_PER_PERSON, auth::LIVE_TOTAL)),
            figuring: Default::default(),
            making: Default::default(),
            downloads: Default::default(),
            box_name,
            time_zone: box_time_zone(),
            cancel,
        }
    }

    /// Audits a play, download or live view (`kind`) once per viewing ([`Viewings`]): attributed
    /// to the person, the recorded session and the console login, whatever ranges or query
    /// strings its requests carry.
    pub fn viewed(
        &self,
        who: &WebSession,
        kind: &'static str,
        session_id: &str,
        recording_id: &str,
        mut detail: Value,
    ) {
        if self.viewings.starts(&who.id, recording_id, kind, now()) {
            detail["recording_id"] = json!(recording_id);
            detail["web_session"] = json!(who.id);
            self.console.audit(kind, &who.user, Some(session_id), detail);
        }
    }
}

/// A made evidence bundle: the login that made it, the session, the archive's name, the person
/// (account) who made it and when (a count: the order bundles were made in).
pub type MadeBundle = (String, String, String, String, u64);

/// At most this many of one person's evidence bundles wait on the box for their download: each
/// is a full copy of a session's recordings on the recordings' own disk, so making more drops
/// their oldest (made again, it is the same evidence).
pub const BUNDLES_PER_PERSON: usize = 3;

pub fn now() -> u64 {
    witness_core::clock::unix_secs() as u64
}

pub fn router(state: State) -> Router {
    let api = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", get(session))
        .route("/history.csv", get(sessions_csv))
        .route("/sessions/{id}/live", get(live::stream))
        .route("/sessions/{id}/hits", get(hits))
        .route("/sessions/{id}/evidence", post(make_evidence))
        .route("/evidence/{id}", get(evidence_download))
        .route("/sessions/{id}/terminate", post(terminate))
        .route("/live", get(live_sessions))
        .route("/recordings/{id}/content", get(content))
        .route("/recordings/{id}/download", get(download_facts))
        .route("/recordings/{id}/thumbnails", get(thumbnail_times))
        .route("/recordings/{id}/thumbnails/{n}", get(thumbnail))
        .route("/store", get(store))
        .route("/audit", get(audit_log))
        .route("/audit/chain", get(audit_chain))
        .route("/health", get(health))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") });
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "ok\n") }))
        .route("/metrics", get(metrics))
        .route("/", get(assets::page))
        .route("/sessions", get(assets::page))
        .route("/sessions/{id}", get(assets::page))
        .route("/live", get(assets::page))
        .route("/audit", get(assets::page))
        .route("/health", get(assets::page))
        .route("/assets/{file}", get(assets::asset))
        // Any other path is the console's own "no such page", not raw JSON.
        .fallback(|| async { (StatusCode::NOT_FOUND, assets::page().await).into_response() })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A place for one more content stream of this login's person, or the refusal: the box serves
/// a bounded number at once (readers that never read cannot take its memory).
fn stream_slot(state: &State, who: &WebSession) -> Result<StreamSlot, Box<Response>> {
    state.streams.enter(&who.user).ok_or_else(|| {
        warn!(user = %who.user, "a content stream refused: too many open");
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "too many recordings being read at once; try again shortly");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        Box::new(r)
    })
}

pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn console_error(e: ConsoleError) -> Response {
    match e {
        ConsoleError::NotFound => error(StatusCode::NOT_FOUND, "not found"),
        ConsoleError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, &m),
        ConsoleError::Internal(m) => {
            warn!(error = %m, "console error");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the box's log")
        }
    }
}

/// Security headers on every response; CSRF checks on every state-changing request.
/// The longest a client may take to send a request's body, and the largest body the API takes
/// (logins and terminations are small JSON): a body that never ends cannot hold a connection.
const BODY_TIME: std::time::Duration = std::time::Duration::from_secs(10);
const BODY_MAX: usize = 64 * 1024;

async fn guard(axum::extract::State(state): axum::extract::State<State>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(refusal) = csrf_refusal(&state, &req) {
            return with_headers(refusal);
        }
        // Read the whole body now, in bounded time and size, before any handler sees it.
        let (parts, body) = req.into_parts();
        let bytes = match tokio::time::timeout(BODY_TIME, axum::body::to_bytes(body, BODY_MAX)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return with_headers(error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")),
            Err(_) => return with_headers(error(StatusCode::REQUEST_TIMEOUT, "request body too slow")),
        };
        return with_headers(next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await);
    }
    with_headers(next.run(req).await)
}

/// Why a state-changing request is refused, if it is.
fn csrf_refusal(state: &State, req: &Request) -> Option<Response> {
    let h = req.headers();
    // A cross-site page can't make a browser send JSON or custom headers without a CORS
    // preflight, which this server never grants; an Origin that is not ours is refused outright.
    if let (Some(origin), Some(host)) = (h.get(header::ORIGIN), h.get(header::HOST))
        && origin.as_bytes() != format!("https://{}", host.to_str().unwrap_or("")).as_bytes()
    {
        return Some(error(StatusCode::FORBIDDEN, "cross-origin request refused"));
    }
    if req.uri().path() == "/api/v1/login" {
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        return (!json).then(|| error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the login as JSON"));
    }
    let session = token(h).and_then(|t| state.sessions.get(t, now()));
    let sent = h.get("x-csrf-token").and_then(|v| v.to_str().ok());
    match (session, sent) {
        (Some(s), Some(sent)) if auth::same_secret(&s.csrf, sent) => None,
        (None, _) => Some(error(StatusCode::UNAUTHORIZED, "log in first")),
        _ => Some(error(StatusCode::FORBIDDEN, "missing or wrong CSRF token")),
    }
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "cache-control", "no-store");
    r
}

fn token(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(auth::token_from_cookies)
}

/// A logged-in request; the account's current role (a changed role applies at once).
pub struct Auth(pub WebSession);

impl FromRequestParts<State> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let unauthorized = || error(StatusCode::UNAUTHORIZED, "log in first");
        let t = token(&parts.headers).ok_or_else(unauthorized)?;
        let mut s = state.sessions.get(t, now()).ok_or_else(unauthorized)?;
        // The account as it is now: removed, or its access changed since this login (password,
        // keys, role, a new person under the same name), ends the login.
        match state.console.account(&s.user) {
            Some(a) if a.epoch == s.epoch => s.role = a.role,
            _ => {
                state.sessions.close(t);
                return Err(unauthorized());
            }
        }
        Ok(Auth(s))
    }
}

impl Auth {
    /// The refusal when the account's role is below `role`.
    fn lacks(&self, role: Role) -> Option<Response> {
        let rank = |r: Role| match r {
            Role::User => 0,
            Role::Auditor => 1,
            Role::Admin => 2,
        };
        (rank(self.0.role) < rank(role))
            .then(|| error(StatusCode::FORBIDDEN, &format!("this needs the {} role", role.as_str())))
    }

    /// A `user` is never told which of their sessions are under a legal hold.
    fn hide_holds(&self, list: &mut [crate::SessionHit]) {
        if self.0.role == Role::User {
            for hit in list {
                hit.session.held = false;
            }
        }
    }

    /// Whether this account may see a session of `owner`.
    fn may_see(&self, owner: &str) -> bool {
        self.0.role != Role::User || self.0.user == owner
    }
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

async fn login(
    axum::extract::State(state): axum::extract::State<State>,
    Extension(Peer(peer)): Extension<Peer>,
    Json(body): Json<LoginBody>,
) -> Response {
    let console = state.console.clone();
    let (user, password, totp) = (body.user.clone(), body.password, body.totp);
    // Password hashing is deliberately slow: keep it off the async threads.
    let outcome =
        tokio::task::spawn_blocking(move || console.authenticate(&user, &password, totp.as_deref(), Some(peer.ip())))
            .await
            .unwrap_or(Err(LoginRefusal::Wrong));
    let shown = witness_core::gate::loggable_name(&body.user);
    let refuse = |why: &str| {
        state.console.audit("web_login_failed", &shown, None, json!({ "from": peer.to_string(), "reason": why }));
        info!(user = %shown, %peer, reason = why, "console login refused");
        error(StatusCode::UNAUTHORIZED, "wrong user name, password or code")
    };
    let account = match outcome {
        Ok(a) => a,
        Err(LoginRefusal::Throttled { retry_after }) => {
            // The gate audited the lockout and the first throttled attempt.
            let mut r =
                error(StatusCode::TOO_MANY_REQUESTS, &format!("too many failed logins; try again in {retry_after} s"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return r;
        }
        Err(LoginRefusal::BadName) => {
            state.console.audit(
                "web_login_failed",
                &shown,
                None,
                json!({ "from": peer.to_string(), "reason": "user name too long or not printable" }),
            );
            return error(StatusCode::BAD_REQUEST, "user name too long or not printable");
        }
        Err(LoginRefusal::NeedsCode) => {
            state.console.audit(
                "web_login_failed",
                &shown,
                None,
                json!({ "from": peer.to_string(), "reason": "one-time code missing" }),
            );
            return error(StatusCode::UNAUTHORIZED, "this account needs its one-time code (totp)");
        }
        Err(LoginRefusal::Wrong) => return refuse("wrong user, password or one-time code"),
    };
    let (token, s) = state.sessions.open(&account.name, account.role, account.epoch, now());
    state.console.audit("web_login", &account.name, None, json!({ "from": peer.to_string() }));
    let mut r = Json(json!({ "user": s.user, "role": s.role.as_str(), "csrf": s.csrf })).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&auth::cookie(Some(&token))).expect("cookie text"));
    r
}

async fn logout(axum::extract::State(state): axum::extract::State<State>, headers: HeaderMap) -> Response {
    if let Some(t) = token(&headers) {
        state.sessions.close(t);
    }
    let mut r = Json(json!({ "ok": true })).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&auth::cookie(None)).expect("cookie text"));
    r
}

async fn me(axum::extract::State(state): axum::extract::State<State>, Auth(s): Auth) -> Response {
    Json(json!({
        "user": s.user, "role": s.role.as_str(), "csrf": s.csrf, "box": state.box_name, "time_zone": state.time_zone,
    }))
    .into_response()
}

/// The box's time zone as the C library finds it: `TZ`, else `/etc/timezone`, else the zone
/// `/etc/localtime` links to; UTC when none names one.
fn box_time_zone() -> String {
    let link = std::fs::read_link("/etc/localtime").ok();
    zone_name(
        std::env::var("TZ").ok().as_deref(),
        std::fs::read_to_string("/etc/timezone").ok().as_deref(),
        link.as_deref().and_then(|p| p.to_str()),
    )
}

/// The first of `tz`, `etc_timezone` and the `zoneinfo/` tail of `localtime_link` that is an
/// IANA zone name (letters, digits, `/`, `_`, `+`, `-`); "UTC" otherwise.
fn zone_name(tz: Option<&str>, etc_timezone: Option<&str>, localtime_link: Option<&str>) -> String {
    let iana = |z: &str| {
        let z = z.trim().trim_start_matches(':');
        let ok = !z.is_empty()
            && z.len() <= 64
            && !z.starts_with('/')
            && !z.contains("..")
            && z.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        ok.then(|| z.to_owned())
    };
    let linked = localtime_link.and_then(|l| l.split_once("zoneinfo/").map(|(_, z)| z));
    [tz, etc_timezone, linked].into_iter().flatten().find_map(iana).unwrap_or_else(|| "UTC".to_owned())
}

/// Ids are the box's own (UUIDs); anything else is not one of ours.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A history query as the login may ask it: a `user` sees their own sessions only; blank
/// search words are no search.
fn scoped(auth: &Auth, mut q: SessionQuery) -> SessionQuery {
    if auth.0.role == Role::User {
        q.user = Some(auth.0.user.clone());
    }
    if q.q.as_deref().is_some_and(|t| t.trim().is_empty()) {
        q.q = None;
    }
    q
}

async fn sessions(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Query(q): Query<SessionQuery>,
) -> Response {
    let q = scoped(&auth, q);
    match state.console.sessions(&q) {
        Ok(mut list) => {
            auth.hide_holds(&mut list);
            if let Some(text) = &q.q {
                // The words themselves are session content: the audit log keeps that a search was
                // made, and whose sessions' text it showed (each hit's line around the match).
                let words = text.split_whitespace().count();
                let shown: Vec<&str> = list.iter().filter(|h| h.hit.is_some()).map(|h| h.session.id.as_str()).collect();
                state.console.audit(
                    "web_search",
                    &auth.0.user,
                    None,
                    json!({ "words": words, "hits": list.len(), "sessions": shown, "web_session": auth.0.id }),
                );
            }
            Json(list).into_response()
        }
        Err(e) => console_error(e),
    }
}

/// The history as filtered (the same filters as `/sessions`), as CSV for a spreadsheet: times in
/// UTC, newest first. A `user` gets their own sessions only. Audited with the row count.
async fn sessions_csv(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Query(q): Query<SessionQuery>,
) -> Response {
    let q = scoped(&auth, q);
    let mut list = match state.console.sessions(&q) {
        Ok(list) => list,
        Err(e) => return console_error(e),
    };
    auth.hide_holds(&mut list);
    state.console.audit(
        "web_history_exported",
        &auth.0.user,
        None,
        json!({ "rows": list.len(), "searched": q.q.is_some(), "web_session": auth.0.id }),
    );
    let mut out = String::from(witness_core::history::CSV_HEADER);
    for hit in list.iter().rev() {
        out.push_str(&witness_core::history::csv_row(&hit.session, hit.live));
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"witness-sessions.csv\""));
    (StatusCode::OK, h, out).into_response()
}

async fn session(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    match state.console.session(&id) {
        Ok(mut d) if auth.may_see(&d.session.user) => {
            state.console.audit("web_session_viewed", &auth.0.user, Some(&id), json!({ "web_session": auth.0.id }));
            if auth.0.role == Role::User {
                as_seen_by_its_user(&mut d);
            }
            Json(d).into_response()
        }
        Ok(_) | Err(ConsoleError::NotFound) => error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => console_error(e),
    }
}

/// Makes the session's evidence bundle (auditors and admins): audited with the archive's
/// SHA-256, which the page shows before the download.
async fn make_evidence(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = auth.lacks(Role::Auditor) {
        return r;
    }
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    // One bundle at a time per person, held until the making ends (even if this request is
    // gone): bundles made at once were each a full copy on the box's disk before any was dropped.
    if !state.making.lock().unwrap_or_else(|p| p.into_inner()).insert(auth.0.user.clone()) {
        return error(StatusCode::CONFLICT, "an evidence bundle of yours is being made; wait for it");
    }
    let making = Making(state.making.clone(), auth.0.user.clone());
    let console = state.console.clone();
    let sid = id.clone();
    let made = match tokio::task::spawn_blocking(move || {
        let _making = making;
        console.evidence(&sid)
    })
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return console_error(e),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the box's log"),
    };
    state.console.audit(
        "web_evidence_exported",
        &auth.0.user,
        Some(&id),
        json!({ "bundle": made.id, "bytes": made.bytes, "sha256": made.sha256, "web_session": auth.0.id }),
    );
    let dropped = {
        let mut bundles = state.bundles.lock().unwrap_or_else(|p| p.into_inner());
        let order = bundles.values().map(|b| b.4 + 1).max().unwrap_or(0);
        bundles.insert(made.id.clone(), (auth.0.id.clone(), id, made.file_name.clone(), auth.0.user.clone(), order));
        let mut own: Vec<(u64, String)> =
            bundles.iter().filter(|(_, b)| b.3 == auth.0.user).map(|(k, b)| (b.4, k.clone())).collect();
        own.sort();
        let extra = own.len().saturating_sub(BUNDLES_PER_PERSON);
        let dropped: Vec<String> = own.into_iter().take(extra).map(|(_, k)| k).collect();
        for k in &dropped {
            bundles.remove(k);
        }
        dropped
    };
    if !dropped.is_empty() {
        let console = state.console.clone();
        // File work: off the async threads.
        tokio::task::spawn_blocking(move || dropped.iter().for_each(|b| console.drop_evidence(b)));
    }
    let url = format!("/api/v1/evidence/{}", made.id);
    Json(json!({ "id": made.id, "bytes": made.bytes, "sha256": made.sha256, "file_name": made.file_name, "url": url }))
        .into_response()
}

/// A person's evidence bundle being made; the person may make another once it is dropped.
struct Making(Arc<std::sync::Mutex<std::collections::HashSet<String>>>, String);

impl Drop for Making {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

/// A made bundle, to the login that made it.
async fn evidence_download(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    let known = state.bundles.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
    let Some((login, session_id, file_name, _, _)) = known.filter(|(login, ..)| *login == auth.0.id) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let slot = match stream_slot(&state, &auth.0) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let console = state.console.clone();
    let bid = id.clone();
    let (file, len) = match tokio::task::spawn_blocking(move || console.evidence_file(&bid)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return console_error(e),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the box's log"),
    };
    state.viewed(&auth.0, "web_evidence_downloaded", &session_id, &id, json!({ "web_login": login }));
    let mut file = file;
    let chunks: Chunks = Box::new(std::iter::from_fn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(buf))
            }
            Err(e) => Some(Err(ConsoleError::Internal(e.to_string()))),
        }
    }));
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let v = format!("attachment; filename=\"{}.tar\"", file_name.replace(['"', '\\'], "_"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("attachment")));
    (StatusCode::OK, h, stream(chunks, slot)).into_response()
}

#[derive(Deserialize)]
struct HitsQuery {
    q: String,
}

/// Every place a search matched in one session, for the player's next and previous.
async fn hits(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
    Query(hq): Query<HitsQuery>,
) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    match state.console.session(&id) {
        Ok(d) if auth.may_see(&d.session.user) => {}
        Ok(_) | Err(ConsoleError::NotFound) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => return console_error(e),
    }
    match state.console.hits(&id, &hq.q) {
        Ok(list) => {
            let words = hq.q.split_whitespace().count();
            state.console.audit("web_search", &auth.0.user, Some(&id), json!({ "words": words, "hits": list.len() }));
            Json(list).into_response()
        }
        Err(e) => console_error(e),
    }
}

/// What a `user` sees of their own session: no legal hold (a case may be being built against
/// them) and, of its audit events, only what they did themselves: not who watched, downloaded,
/// held or terminated it.
fn as_seen_by_its_user(d: &mut SessionDetail) {
    d.hold = None;
    d.session.held = false;
    let user = d.session.user.clone();
    d.audit.retain(|e| e.actor.as_deref() == Some(&user));
}

async fn live_sessions(axum::extract::State(state): axum::extract::State<State>, auth: Auth) -> Response {
    let q = SessionQuery { user: (auth.0.role == Role::User).then(|| auth.0.user.clone()), ..Default::default() };
    match state.console.sessions(&q) {
        Ok(mut list) => {
            auth.hide_holds(&mut list);
            Json(list.into_iter().filter(|s| s.live).collect::<Vec<_>>()).into_response()
        }
        Err(e) => console_error(e),
    }
}

async fn terminate(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = auth.lacks(Role::Admin) {
        state.console.audit(
            "web_terminate_refused",
            &auth.0.user,
            valid_id(&id).then_some(&*id),
            json!({ "role": auth.0.role.as_str() }),
        );
        return r;
    }
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    match state.console.terminate(&id, &auth.0.user) {
        Ok(true) => Json(json!({ "terminated": id })).into_response(),
        Ok(false) => error(StatusCode::CONFLICT, "the session is not running"),
        Err(e) => console_error(e),
    }
}

#[derive(Deserialize)]
struct ContentQuery {
    /// `?download=1` (any value but `0`/`false`): as an attachment.
    download: Option<String>,
}

impl ContentQuery {
    fn download(&self) -> bool {
        self.download.as_deref().is_some_and(|v| v != "0" && v != "false")
    }
}

/// Who may play a finished recording may see its timeline (a running one has none yet): the
/// same check as [`content`], and seeing it is part of the same viewing, audited once.
fn may_play(state: &State, auth: &Auth, id: &str) -> Result<String, Box<Response>> {
    if !valid_id(id) {
        return Err(Box::new(error(StatusCode::NOT_FOUND, "not found")));
    }
    match state.console.recording(id) {
        Ok(r) if auth.may_see(&r.user) && r.status == witness_core::RecordingStatus::Recording => {
            Err(Box::new(error(StatusCode::CONFLICT, STILL_RUNNING)))
        }
        Ok(r) if auth.may_see(&r.user) => Ok(r.session_id),
        Ok(_) | Err(ConsoleError::NotFound) => Err(Box::new(error(StatusCode::NOT_FOUND, "not found"))),
        Err(e) => Err(Box::new(console_error(e))),
    }
}

async fn thumbnail_times(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    let session_id = match may_play(&state, &auth, &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match state.console.thumbnail_times(&id) {
        Ok(times) => {
            state.viewed(&auth.0, "web_recording_played", &session_id, &id, json!({ "timeline": times.len() }));
            Json(times).into_response()
        }
        Err(e) => console_error(e),
    }
}

async fn thumbnail(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path((id, n)): Path<(String, usize)>,
) -> Response {
    let session_id = match may_play(&state, &auth, &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match state.console.thumbnail(&id, n) {
        Ok(png) => {
            state.viewed(&auth.0, "web_recording_played", &session_id, &id, json!({ "timeline": true }));
            ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=3600")], png)
                .into_response()
        }
        Err(e) => console_error(e),
    }
}

async fn content(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
    Query(cq): Query<ContentQuery>,
    headers: HeaderMap,
) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let (live, session_id) = match state.console.recording(&id) {
        // A recording still being written is the live view: admins only.
        // Its bytes are not final: what was downloaded could not be checked against anything.
        Ok(r) if auth.may_see(&r.user) && r.status == witness_core::RecordingStatus::Recording && cq.download() => {
            return error(StatusCode::CONFLICT, STILL_RUNNING);
        }
        Ok(r) if auth.may_see(&r.user) && r.status == witness_core::RecordingStatus::Recording => {
            if let Some(refused) = auth.lacks(Role::Admin) {
                return refused;
            }
            (true, r.session_id)
        }
        Ok(r) if auth.may_see(&r.user) => (false, r.session_id),
        Ok(_) | Err(ConsoleError::NotFound) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => return console_error(e),
    };
    // Taken before the recording is opened: the threads making it count too.
    let slot = match stream_slot(&state, &auth.0) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let console = state.console.clone();
    let rid = id.clone();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Decrypting (or fetching from the store) is file and network work.
    let content = match tokio::task::spawn_blocking(move || console.recording_content(&rid, range.as_deref())).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return console_error(e),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the box's log"),
    };
    let len = content.len;
    // Every request that gives bytes is part of a viewing, and every viewing is audited once.
    if content.part != Part::Unsatisfiable {
        let kind = match (live, cq.download()) {
            (true, _) => "web_live_viewed",
            (false, true) => "web_recording_downloaded",
            (false, false) => "web_recording_played",
        };
        state.viewed(&auth.0, kind, &session_id, &id, json!({ "bytes": len }));
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content.content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if cq.download() {
        let v = format!("attachment; filename=\"{}\"", content.file_name.replace(['"', '\\'], "_"));
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("attachment")),
        );
    }
    let (start, end) = content.part.bounds(len);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    let status = match content.part {
        Part::Whole => StatusCode::OK,
        Part::Bytes(first, last) => {
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")).expect("ascii"),
            );
            StatusCode::PARTIAL_CONTENT
        }
        Part::Unsatisfiable => {
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
    };
    (status, h, stream(content.chunks, slot)).into_response()
}

const STILL_RUNNING: &str =
    "the recording is still running; it can be downloaded once the session has ended and the recording is finished";

/// What a recording's download is, byte for byte (length and SHA-256 of exactly the bytes
/// `?download=1` gives), worked out through the same reader as the download, once per finished
/// recording: kept in the index for the sealed file it was worked out from, so a restart does not
/// read every recording again. Refused while the recording runs: its bytes are not final.
async fn download_facts(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let row = match state.console.recording(&id) {
        Ok(r) if auth.may_see(&r.user) => r,
        Ok(_) | Err(ConsoleError::NotFound) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => return console_error(e),
    };
    if row.status == witness_core::RecordingStatus::Recording {
        return error(StatusCode::CONFLICT, STILL_RUNNING);
    }
    // What the served bytes follow from. A sealed file: its size, digest and recovery (uploading
    // and pruning serve the same bytes, verified); a file sealed anew is worked out anew. Not
    // sealed (yet): the row as it is, and the figures are kept in memory only.
    let sealed = sealed_file(&row);
    let stamp =
        sealed.clone().unwrap_or_else(|| format!("{}|{}|{:?}|{}", row.status, row.bytes, row.sha256, row.recovered));
    let known =
        || state.downloads.lock().unwrap_or_else(|p| p.into_inner()).get(&id).filter(|(s, _)| *s == stamp).cloned();
    if let Some((_, d)) = known() {
        return Json(d).into_response();
    }
    // One request at a time works a recording's figures out; the others wait and take them.
    let turn = state.figuring.lock().unwrap_or_else(|p| p.into_inner()).entry(id.clone()).or_default().clone();
    let _turn = turn.lock().await;
    if let Some((_, d)) = known() {
        return Json(d).into_response();
    }
    if let Some(of) = &sealed {
        match state.console.download_figures(&id, of) {
            Ok(Some(d)) => {
                state.downloads.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (stamp, d.clone()));
                return Json(d).into_response();
            }
            Ok(None) => {}
            Err(e) => return console_error(e),
        }
    }
    // Reading a recording whole is a content stream's work: it takes a place among them.
    let slot = match stream_slot(&state, &auth.0) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let console = state.console.clone();
    let rid = id.clone();
    let made = tokio::task::spawn_blocking(move || -> Result<Download, ConsoleError> {
        use sha2::Digest;
        let _slot = slot;
        let content = console.recording_content(&rid, None)?;
        let (mut hash, mut bytes) = (sha2::Sha256::new(), 0u64);
        for chunk in content.chunks {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            hash.update(&chunk);
        }
        if bytes != content.len {
            return Err(ConsoleError::Internal(format!(
                "recording {rid} gave {bytes} bytes where {} were announced",
                content.len
            )));
        }
        info!(recording_id = %rid, bytes, "download figures worked out (the recording read whole)");
        let d = Download { bytes, sha256: hex::encode(hash.finalize()), file_name: content.file_name };
        if let Some(of) = &sealed
            && let Err(e) = console.keep_download_figures(&rid, of, &d)
        {
            // Shown all the same; worked out again next time.
            warn!(recording_id = %rid, error = %e, "download figures not kept");
        }
        Ok(d)
    })
    .await;
    {
        let mut figuring = state.figuring.lock().unwrap_or_else(|p| p.into_inner());
        if figuring.get(&id).is_some_and(|t| Arc::ptr_eq(t, &turn)) {
            figuring.remove(&id);
        }
    }
    match made {
        Ok(Ok(d)) => {
            state.downloads.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (stamp, d.clone()));
            Json(d).into_response()
        }
        Ok(Err(e)) => console_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the box's log"),
    }
}

/// The sealed file a recording's download is made from (`SIZE|SHA256|RECOVERED`), `None` before
/// it is sealed.
fn sealed_file(row: &witness_core::rows::RecordingRow) -> Option<String> {
    row.sha256.as_ref().map(|sha| format!("{}|{sha}|{}", row.bytes, row.recovered))
}

/// A page of the box-wide audit log (auditors and admins): `?kind=`, `?user=`, `?from=`,
/// `?to=`, `?before=` (an id: the next page), `?limit=`.
async fn audit_log(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Some(r) = auth.lacks(Role::Auditor) {
        return r;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match state.console.audit_log(&AuditQuery { limit: Some(limit), ..q }) {
        Ok(events) => {
            // The oldest shown is where the next page starts, when this one is full.
            let next = (events.len() as u32 == limit).then(|| events.last().map(|e| e.row.id)).flatten();
            Json(json!({ "events": events, "next_before": next })).into_response()
        }
        Err(e) => console_error(e),
    }
}

/// The audit log's hash chain walked now (auditors and admins).
async fn audit_chain(axum::extract::State(state): axum::extract::State<State>, auth: Auth) -> Response {
    if let Some(r) = auth.lacks(Role::Auditor) {
        return r;
    }
    let console = state.console.clone();
    match tokio::task::spawn_blocking(move || console.audit_chain()).await {
        Ok(Ok(c)) => Json(c).into_response(),
        Ok(Err(e)) => console_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the box's log"),
    }
}

/// The box's health (admins): disk, store backlog, encoder, keys.
async fn health(axum::extract::State(state): axum::extract::State<State>, auth: Auth) -> Response {
    if let Some(r) = auth.lacks(Role::Admin) {
        return r;
    }
    match state.console.health() {
        Ok(h) => Json(h).into_response(),
        Err(e) => console_error(e),
    }
}

/// How long a reader may leave a made chunk untaken before its response is ended (its stream's
/// place is then given back).
pub const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A response body made as the client reads it: the chunks are made on a blocking thread, two
/// at most ahead of the client, and no more once it has gone or has taken nothing for
/// [`STALL`]. The stream holds its `slot` until then.
fn stream(chunks: Chunks, slot: StreamSlot) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        for chunk in chunks {
            let chunk = chunk.map_err(|e| {
                warn!(error = %e, "a recording could not be served to its end");
                std::io::Error::other(e.to_string())
            });
            let failed = chunk.is_err();
            match runtime.block_on(tokio::time::timeout(STALL, tx.send(chunk))) {
                Ok(Ok(())) if !failed => {}
                Ok(_) => break,
                Err(_) => {
                    info!("a content stream ended: its reader took nothing for {} s", STALL.as_secs());
                    break;
                }
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// One `bytes=` range (the only kind browsers send for media) as inclusive offsets; `None` when
/// it cannot be satisfied.
pub fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (s, "") => (s.parse().ok()?, len - 1),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

async fn store(axum::extract::State(state): axum::extract::State<State>, auth: Auth) -> Response {
    if let Some(r) = auth.lacks(Role::Auditor) {
        return r;
    }
    match state.console.store() {
        Ok(s) => Json(s).into_response(),
        Err(e) => console_error(e),
    }
}

async fn metrics(axum::extract::State(state): axum::extract::State<State>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bearer.is_empty() || !state.console.metrics_token_ok(bearer.trim()) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "metrics need the box's token (Authorization: Bearer; `witness metrics token` prints it)",
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let m = match state.console.metrics() {
        Ok(m) => m,
        Err(e) => return console_error(e),
    };
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, lines: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    metric("witness_sessions_active", "Sessions open now.", "gauge", vec![(String::new(), m.sessions_active)]);
    metric(
        "witness_recordings",
        "Recordings in the index by status.",
        "gauge",
        m.recordings_by_status.iter().map(|(s, n)| (format!("{{status=\"{s}\"}}"), *n)).collect(),
    );
    metric(
        "witness_upload_backlog_bytes",
        "Bytes of recordings waiting for the store.",
        "gauge",
        vec![(String::new(), m.upload_backlog_bytes)],
    );
    metric(
        "witness_upload_backlog_recordings",
        "Recordings waiting for the store.",
        "gauge",
        vec![(String::new(), m.upload_backlog_recordings)],
    );
    metric(
        "witness_encoder_info",
        "The video encoder in use.",
        "gauge",
        vec![(format!("{{encoder=\"{}\"}}", m.encoder), 1)],
    );
    metric(
        "witness_disk_used_percent",
        "Use of the recordings file system.",
        "gauge",
        vec![(String::new(), m.disk_used_percent as u64)],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_box_zone_is_named_as_the_c_library_finds_it() {
        assert_eq!(super::zone_name(Some(":Europe/Berlin"), Some("Asia/Tokyo\n"), None), "Europe/Berlin");
        assert_eq!(super::zone_name(None, Some("Asia/Tokyo\n"), None), "Asia/Tokyo");
        assert_eq!(super::zone_name(None, None, Some("/usr/share/zoneinfo/America/New_York")), "America/New_York");
        assert_eq!(super::zone_name(None, None, Some("../usr/share/zoneinfo/Etc/UTC")), "Etc/UTC");
        // Not a zone name (a path, a POSIX rule with spaces or markup): the next source, or UTC.
        assert_eq!(super::zone_name(Some("/etc/localtime"), None, None), "UTC");
        assert_eq!(super::zone_name(Some("<script>"), Some("EST5EDT"), None), "EST5EDT");
        assert_eq!(super::zone_name(None, None, None), "UTC");
    }

    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=2-5", 10), Some((2, 5)));
        assert_eq!(parse_range("bytes=2-50", 10), Some((2, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-2", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
    }

    #[test]
    fn a_user_sees_only_their_own_doing_on_their_session() {
        let entry = |kind: &str, user: Option<&str>, detail: Value| {
            crate::AuditEntry::from(crate::AuditRow {
                id: 1,
                at: String::new(),
                kind: kind.into(),
                user: user.map(Into::into),
                target: None,
                session_id: Some("s1".into()),
                detail,
            })
        };
        let mut d = SessionDetail {
            session: serde_json::from_value(json!({
                "id": "s1", "session_id": "s1", "user": "alice", "target": "web01", "protocol": "ssh",
                "client": null, "started_at": "", "ended_at": null, "end_reason": null, "status": "completed",
                "recovered": false, "recordings": 0, "bytes": 0
            }))
            .unwrap(),
            live: false,
            recordings: Vec::new(),
            audit: vec![
                entry("session_started", Some("alice"), json!({})),
                entry("web_session_viewed", Some("audrey"), json!({})),
                entry("web_recording_downloaded", Some("alice"), json!({})),
                entry("hold_set", Some("alice"), json!({ "reason": "case 1" })),
                entry("session_terminated", Some("alice"), json!({ "by": "adam" })),
                entry("recording_uploaded", None, json!({})),
            ],
            hold: Some(crate::HoldView { reason: "case 1".into(), set_at: String::new() }),
        };
        as_seen_by_its_user(&mut d);
        assert!(d.hold.is_none());
        let kinds: Vec<&str> = d.audit.iter().map(|e| e.row.kind.as_str()).collect();
        assert_eq!(kinds, ["session_started", "web_recording_downloaded"]);
    }

    #[test]
    fn ids() {
        assert!(valid_id("01a20786-0a2a-77e9-9527-0aea372f480f"));
        for bad in ["", "../etc/passwd", "a/b", "a%2Fb", "x".repeat(65).as_str()] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
