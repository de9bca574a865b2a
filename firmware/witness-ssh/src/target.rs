//! The box's leg towards a target: a russh client that checks the pinned host key (or pins it on
//! first use), logs in with the vaulted credential, and turns every failure into one sentence a
//! user can act on.

use crate::{AuditEvent, Broker, TargetPlan, TargetSecret};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in connection to a target.
pub(crate) type TargetHandle = client::Handle<TargetHandler>;

/// What the host key check saw, for the error message when it refuses.
#[derive(Debug, Default)]
struct KeyCheck {
    mismatch: Option<(String, String)>,
    pin_failed: Option<String>,
}

pub(crate) struct TargetHandler {
    target: String,
    expected: Option<PublicKey>,
    broker: Arc<dyn Broker>,
    user: String,
    session_id: String,
    check: Arc<Mutex<KeyCheck>>,
}

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server else {
            return Ok(false); // host certificates are not pinned; refuse rather than guess
        };
        let got = key.fingerprint(HashAlg::Sha256).to_string();
        let mut check = self.check.lock().unwrap_or_else(|p| p.into_inner());
        match &self.expected {
            Some(expected) if expected.key_data() == key.key_data() => Ok(true),
            Some(expected) => {
                check.mismatch = Some((expected.fingerprint(HashAlg::Sha256).to_string(), got));
                Ok(false)
            }
            None => {
                let line = key.to_openssh().unwrap_or_default();
                match self.broker.pin_host_key(&self.target, &line) {
                    Ok(true) => {
                        self.broker.audit(AuditEvent {
                            kind: "host_key_pinned",
                            user: Some(self.user.clone()),
                            target: Some(self.target.clone()),
                            session_id: Some(self.session_id.clone()),
                            detail: serde_json::json!({ "fingerprint": got, "how": "trust on first use" }),
                        });
                        Ok(true)
                    }
                    Ok(false) => {
                        check.pin_failed = Some("a different host key was pinned meanwhile".into());
                        Ok(false)
                    }
                    Err(e) => {
                        check.pin_failed = Some(e);
                        Ok(false)
                    }
                }
            }
        }
    }
}

/// Connects and logs in. The error is the one line the user reads.
pub(crate) async fn connect(
    plan: &TargetPlan,
    broker: Arc<dyn Broker>,
    user: &str,
    session_id: &str,
) -> Result<TargetHandle, String> {
    let expected = match &plan.host_key {
        Some(line) => Some(
            PublicKey::from_openssh(line)
                .map_err(|e| format!("the pinned host key of target {} is unusable: {e}", plan.name))?,
        ),
        None => None,
    };
    let check = Arc::new(Mutex::new(KeyCheck::default()));
    let handler = TargetHandler {
        target: plan.name.clone(),
        expected,
        broker,
        user: user.to_owned(),
        session_id: session_id.to_owned(),
        check: check.clone(),
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        preferred: prefer_aes_gcm(),
        ..Default::default()
    });
    let addr = (plan.host.as_str(), plan.port);
    let where_ = format!("target {} ({}:{})", plan.name, plan.host, plan.port);
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, client::connect(config, addr, handler)).await;
    let mut handle = match connecting {
        Err(_) => return Err(format!("{where_} is unreachable: no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let check = check.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((expected, got)) = &check.mismatch {
                return Err(format!(
                    "host key of {where_} has changed (pinned {expected}, offered {got}); refusing to connect, an admin must re-pin it"
                ));
            }
            if let Some(why) = &check.pin_failed {
                return Err(format!("could not pin the host key of {where_}: {why}"));
            }
            return Err(match e {
                russh::Error::IO(io) => format!("{where_} is unreachable: {}", io_reason(&io)),
                other => format!("{where_}: ssh handshake failed: {other}"),
            });
        }
    };
    let login = &plan.login;
    let auth = match &plan.secret {
        TargetSecret::Password(pw) => handle.authenticate_password(login, pw).await,
        TargetSecret::PrivateKey(text) => {
            let key = russh::keys::decode_secret_key(text, None)
                .map_err(|e| format!("the vaulted key of target {} is unusable: {e}", plan.name))?;
            let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
            handle.authenticate_publickey(login, PrivateKeyWithHashAlg::new(Arc::new(key), hash)).await
        }
    };
    match auth {
        Ok(r) if r.success() => Ok(handle),
        Ok(_) => {
            Err(format!("{where_} refused the box's credential for login {login:?}; an admin must update the target"))
        }
        Err(e) => Err(format!("{where_}: login failed: {e}")),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => e.to_string(),
    }
}

/// AES-GCM first: with AES-NI it costs the box the least CPU per relayed byte.
pub(crate) fn prefer_aes_gcm() -> russh::Preferred {
    let first = [russh::cipher::AES_128_GCM, russh::cipher::AES_256_GCM];
    let mut ciphers = first.to_vec();
    ciphers.extend(russh::Preferred::DEFAULT.cipher.iter().filter(|c| !first.contains(c)).copied());
    russh::Preferred { cipher: ciphers.into(), ..russh::Preferred::DEFAULT }
}
