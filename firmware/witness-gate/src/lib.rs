//! The one gate every door of the box asks. SSH and RDP (and whatever comes next) share this
//! trait for everything that is not about their protocol: may a session start, open and close
//! it, re-check its access, learn that it was ended, and write audit events. Each proxy's own
//! `Broker` trait extends it with only what its protocol needs (credentials, plans, pinning,
//! recorders), so a rule of the box lives in one implementation, not one per door.

pub mod password;

use std::net::SocketAddr;

pub use witness_core::Protocol;
pub use witness_core::gate::{Refusal, Ticket};
use witness_core::policy::{Access, Denial};

/// An audit event a door reports. `detail` never holds a secret; names in it are bounded by
/// the door (`witness_core::gate::loggable_name`).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: &'static str,
    pub user: Option<String>,
    pub target: Option<String>,
    pub session_id: Option<String>,
    pub detail: serde_json::Value,
}

/// Why the box takes no new session now (not a matter of who asks): the message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// Recording storage is full or above its watermark, or cannot be checked.
    #[error("{0}")]
    Storage(String),
    /// The index could not record the session.
    #[error("the box could not record the session in its index ({0})")]
    Index(String),
}

impl Unavailable {
    /// A short machine-readable kind for audit events.
    pub fn kind(&self) -> &'static str {
        match self {
            Unavailable::Storage(_) => "storage_unavailable",
            Unavailable::Index(_) => "index_unavailable",
        }
    }
}

/// What every door needs from the rest of the box.
pub trait Gate: Send + Sync + 'static {
    /// Whether a new session may start now (recording space available).
    fn admit(&self) -> Result<(), Unavailable>;
    /// Records a new session; returns its id.
    fn session_started(
        &self,
        user: &str,
        target: &str,
        protocol: Protocol,
        peer: Option<SocketAddr>,
    ) -> Result<String, Unavailable>;
    fn session_ended(&self, session_id: &str, reason: &str);
    /// Re-checks access of a running session (grant revoked or expired, protocol policy).
    fn recheck(&self, user: &str, target: &str, protocol: Protocol) -> Result<Access, Denial>;
    fn audit(&self, event: AuditEvent);
    /// Cancelled when the session is ended from outside (an administrator in the console, or
    /// the user's access taken away). `None`: sessions cannot be ended from outside.
    fn termination(&self, _session_id: &str) -> Option<tokio_util::sync::CancellationToken> {
        None
    }
    /// Why the box itself ended the session (access taken away), when it was not an
    /// administrator from the console; shown to the user.
    fn termination_reason(&self, _session_id: &str) -> Option<String> {
        None
    }
}
