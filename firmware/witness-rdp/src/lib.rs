//! The RDP jump path: a terminating proxy. Users connect with stock RDP clients (mstsc, FreeRDP)
//! and log in as `alice@web01` (or `web01\alice`); the box ends TLS with its own certificate,
//! checks the user's password with CredSSP/NLA, checks the grant through a [`Broker`], logs in to
//! the target with the vaulted credential (CredSSP for NLA targets, the Client Info PDU with
//! auto-logon for TLS-only ones) and relays the PDUs, rewriting the few that must change
//! ([`filter`]). This crate is the only one that knows IronRDP; everything it needs from the rest
//! of the box comes through [`Broker`].

pub use witness_rdp_core::{channels, decode, filter, keys, login};
mod proxy;
mod record;
mod tls;

pub use channels::{Class, Redirection, Switches};
pub use decode::{DecodeError, PassiveDecoder, Screen, Update};
pub use login::{parse_rdp_login, parse_rdp_login_on_port};
pub use proxy::{RdpSettings, Route, serve};
pub use record::{Gaps, ScreenRecorder};
pub use tls::{TlsIdentity, generate_identity};

use std::net::SocketAddr;
use witness_core::policy::{Access, Denial};
pub use witness_gate::{AuditEvent, Gate, Protocol, Refusal, Ticket, Unavailable};

/// Everything needed to reach a target a user was granted.
#[derive(Clone)]
pub struct RdpPlan {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub domain: Option<String>,
    pub password: String,
    /// The pinned certificate fingerprint (`sha256:HEX` of the leaf's DER); `None`: trust on
    /// first use.
    pub certificate: Option<String>,
    pub access: Access,
    pub redirection: Redirection,
}

impl std::fmt::Debug for RdpPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpPlan")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("login", &self.login)
            .field("domain", &self.domain)
            .field("certificate", &self.certificate)
            .field("access", &self.access)
            .field("redirection", &self.redirection)
            .finish_non_exhaustive()
    }
}

/// What the RDP proxy needs from the rest of the box. Every call is short (index look-ups); the
/// proxy makes them from its async tasks.
pub trait Broker: Gate {
    /// The NT hash (32 hex digits) of a box user's password, which NTLM needs to check it;
    /// `None`: no such user, or no password usable for RDP.
    fn nt_hash(&self, user: &str) -> Option<String>;
    /// Reserves a login attempt of `user` from `peer` with the box's throttle (NTLM then
    /// compares); `Err` refuses it unchecked. `None`: the box throttles nothing.
    fn begin_login(&self, _peer: SocketAddr, _user: &str) -> Result<Option<Ticket>, Refusal> {
        Ok(None)
    }
    /// Settles a reserved attempt with its outcome.
    fn end_login(&self, _ticket: Ticket, _ok: bool, _peer: SocketAddr, _user: &str) {}
    /// Gives back an attempt that was never decided (the client went away).
    fn release_login(&self, _ticket: Ticket) {}
    /// Decides whether `user` may reach `target` now and, if so, how.
    fn plan(&self, user: &str, target: &str) -> Result<RdpPlan, Denial>;
    /// Pins a target's certificate on first use; `false` if another one was pinned meanwhile.
    fn pin_certificate(&self, target: &str, fingerprint: &str) -> Result<bool, String>;
    /// Starts recording a session's screen (called once the session is open, before any PDU is
    /// relayed). `Err`: it cannot be recorded; the session ends with that reason.
    fn start_screen_recording(&self, session_id: &str) -> Result<Box<dyn ScreenRecorder>, String>;
}

/// The NT hash (MD4 of the UTF-16LE password) as NTLM uses it, in hex.
pub fn nt_hash(password: &str) -> String {
    use md4::{Digest, Md4};
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    hex::encode(Md4::digest(&utf16))
}

/// Errors of the RDP proxy's own set-up (a connection's errors stay in that connection).
#[derive(Debug, thiserror::Error)]
pub enum RdpError {
    #[error("rdp listener: {0}")]
    Listen(#[source] std::io::Error),
    #[error("rdp tls certificate: {0}")]
    Certificate(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn nt_hash_matches_the_known_vector() {
        // The NT hash of "password", as Windows and every NTLM implementation compute it.
        assert_eq!(super::nt_hash("password"), "8846f7eaee8fb117ad06bdd830b7586c");
    }
}
