//! The recorded SSH jump path. Users connect with stock OpenSSH clients to a russh server and log
//! in as `USER@TARGET`; the box checks them through a [`Broker`], connects to the target with a
//! russh client and the vaulted credential, and relays each channel, handing every byte the user
//! sees to a recorder first. This crate is the only one that knows russh; everything it needs
//! from the rest of the box (users, grants, targets, recordings, audit) comes through [`Broker`].

mod keys;
mod relay;
mod server;
mod sink;
mod target;

pub use keys::{HostKey, KeyError, check_private_key, generate_host_key, parse_public_key};
pub use server::{SshSettings, serve};

use std::net::SocketAddr;
use witness_core::policy::{Access, Denial};
pub use witness_gate::{AuditEvent, Gate, Protocol, Refusal, Unavailable};
use witness_recorder::{CastRecorder, RecordError, Summary};

/// How a user proves who they are.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Password(&'a str),
    /// An OpenSSH public key line (`ssh-ed25519 AAAA…`) whose ownership russh has verified.
    PublicKey(&'a str),
}

/// The credential the box injects on the target.
#[derive(Clone)]
pub enum TargetSecret {
    Password(String),
    /// OpenSSH private key text.
    PrivateKey(String),
}

impl std::fmt::Debug for TargetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetSecret(<redacted>)")
    }
}

/// Everything needed to reach a target a user was granted.
#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub secret: TargetSecret,
    /// The pinned host key (OpenSSH public key line); `None`: trust on first use.
    pub host_key: Option<String>,
    pub access: Access,
    /// Where forwards through the target may go (`HOST:PORT`, `HOST:*`); empty: only the target
    /// itself, when the grant allows forwarding at all.
    pub forward: Vec<String>,
    /// What file transfers leave in the recording.
    pub transfers: witness_core::Transfers,
}

/// What kind of channel a recording is of.
#[derive(Debug, Clone)]
pub struct RecordingMeta {
    /// `shell`, `exec`.
    pub kind: &'static str,
    pub command: Option<String>,
    pub term: Option<String>,
    pub cols: u32,
    pub rows: u32,
}

/// What the SSH proxy needs from the rest of the box beyond the [`Gate`] every door shares.
/// Calls are short (index look-ups) except [`Broker::authenticate`] and
/// [`Broker::second_factor`], which the proxy runs on a blocking thread.
pub trait Broker: Gate {
    /// Checks a box user's credential through the box's gate (throttled per source and name,
    /// password checks bounded box-wide).
    fn authenticate(&self, user: &str, credential: Credential<'_>, peer: Option<SocketAddr>) -> Result<(), Refusal>;
    /// The user's access epoch (it changes whenever their access shrinks); `None`: unknown user.
    /// A login whose user's epoch changed between its first factor and its session is refused.
    fn access_epoch(&self, _user: &str) -> Option<i64> {
        None
    }
    /// Whether `user` must also give a one-time code (TOTP) after the password or key.
    fn needs_second_factor(&self, _user: &str) -> bool {
        false
    }
    /// Checks a one-time code through the gate (single use; a wrong one counts as a failure).
    fn second_factor(&self, _user: &str, _code: &str, _peer: Option<SocketAddr>) -> Result<(), Refusal> {
        Err(Refusal::Wrong)
    }
    /// Decides whether `user` may reach `target` now and, if so, how.
    fn plan(&self, user: &str, target: Option<&str>) -> Result<TargetPlan, Denial>;
    /// Pins a target's host key on first use; `false` if another key was pinned meanwhile.
    fn pin_host_key(&self, target: &str, key: &str) -> Result<bool, String>;
    /// Creates a recording for a channel of `session_id` and starts its writer.
    fn start_recording(&self, session_id: &str, meta: &RecordingMeta) -> Result<(String, CastRecorder), RecordError>;
    /// Records how a recording ended (`Err`: the writer failed; what it wrote is still kept).
    fn recording_finished(&self, recording_id: &str, outcome: Result<Summary, RecordError>);
}

/// Errors of the SSH proxy's own set-up (a connection's errors stay in that connection).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh listener: {0}")]
    Listen(#[source] std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
}
