//! Access decisions: may this user reach this target now, with which rights, and the one-line
//! message a refused user reads on their terminal.

use crate::Protocol;
use thiserror::Error;

/// The facts of one grant, as the index holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantFacts {
    /// Unix seconds after which the grant no longer holds (`None`: standing access).
    pub expires_at: Option<i64>,
    /// Whether `-L` port forwards through the target are allowed.
    pub allow_forwarding: bool,
}

/// What a user may do on a target for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub until: Option<i64>,
    pub allow_forwarding: bool,
}

/// Why access was refused. The `Display` text is shown to the user, so it names the fix and never
/// carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Denial {
    #[error("no target named; log in as {user}@TARGET (for example: ssh -p 2222 {user}@web01@box)")]
    NoTarget { user: String },
    #[error("unknown target {target:?}")]
    UnknownTarget { target: String },
    #[error("{user} has no grant for target {target}")]
    NoGrant { user: String, target: String },
    #[error("{user}'s grant for target {target} has expired")]
    Expired { user: String, target: String },
    #[error(
        "ssh -J opens an end-to-end tunnel the box cannot record; log in as {user}@TARGET instead (ssh -p 2222 {user}@TARGET@box)"
    )]
    Tunnel { user: String },
    #[error("port forwarding to {target} is not allowed by {user}'s grant")]
    NoForwarding { user: String, target: String },
    #[error("{target} is an {} target; {}", .protocol.as_str().to_uppercase(), protocol_hint(*.protocol))]
    WrongProtocol { target: String, protocol: Protocol },
    #[error(
        "{user} may not log in over RDP: RDP cannot ask for {user}'s one-time code (an admin can allow it: witness user rdp {user} allow)"
    )]
    RdpNotAllowed { user: String },
    #[error("{user}'s grant for {target} does not allow forwarding to {destination}; allowed: {allowed}")]
    ForwardDestination { user: String, target: String, destination: String, allowed: String },
}

fn protocol_hint(p: Protocol) -> &'static str {
    match p {
        Protocol::Rdp => "connect with an RDP client",
        Protocol::Ssh => "connect with ssh, scp or sftp",
    }
}

impl Denial {
    /// A short machine-readable kind for audit events.
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::NoTarget { .. } => "no_target",
            Denial::UnknownTarget { .. } => "unknown_target",
            Denial::NoGrant { .. } => "no_grant",
            Denial::Expired { .. } => "grant_expired",
            Denial::Tunnel { .. } => "tunnel_refused",
            Denial::NoForwarding { .. } => "forwarding_refused",
            Denial::WrongProtocol { .. } => "wrong_protocol",
            Denial::ForwardDestination { .. } => "forward_destination_refused",
            Denial::RdpNotAllowed { .. } => "rdp_not_allowed",
        }
    }
}

/// Decides access of `user` to `target` over `wanted` at `now` (unix seconds), for SSH and RDP
/// alike. `target_protocol` (`None`: no such target) and `grant` are looked up by the caller; the
/// decision itself has no I/O.
pub fn decide(
    user: &str,
    target: Option<&str>,
    wanted: Protocol,
    target_protocol: Option<Protocol>,
    grant: Option<GrantFacts>,
    now: i64,
) -> Result<Access, Denial> {
    let Some(target) = target else {
        return Err(Denial::NoTarget { user: user.to_owned() });
    };
    let Some(protocol) = target_protocol else {
        return Err(Denial::UnknownTarget { target: target.to_owned() });
    };
    if protocol != wanted {
        return Err(Denial::WrongProtocol { target: target.to_owned(), protocol });
    }
    let grant = grant.ok_or_else(|| Denial::NoGrant { user: user.to_owned(), target: target.to_owned() })?;
    if grant.expires_at.is_some_and(|t| now >= t) {
        return Err(Denial::Expired { user: user.to_owned(), target: target.to_owned() });
    }
    Ok(Access { until: grant.expires_at, allow_forwarding: grant.allow_forwarding })
}

/// Hosts that name the target itself, as seen from the target (`ssh -L 8080:localhost:80`).
const SELF_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1", "[::1]"];

/// Decides a forward (`-L`, `-W`, `-J` through the target) to `host:port`, opened from the target.
/// `destinations` are the grant's `HOST:PORT` entries (`HOST:*` for any port); none means only
/// the target's own address (`target_host`, or `localhost` as the target sees it).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    user: &str,
    target: &str,
    access: &Access,
    destinations: &[String],
    target_host: &str,
    target_ssh_port: u16,
    host: &str,
    port: u32,
) -> Result<(), Denial> {
    if !access.allow_forwarding {
        return Err(Denial::NoForwarding { user: user.to_owned(), target: target.to_owned() });
    }
    let host_l = host.trim_matches(|c| c == '[' || c == ']').to_ascii_lowercase();
    let is_self = SELF_HOSTS.iter().any(|h| h.trim_matches(|c| c == '[' || c == ']') == host_l)
        || host_l == target_host.trim_matches(|c| c == '[' || c == ']').to_ascii_lowercase();
    let ok = if destinations.is_empty() {
        // The target itself, but never its own SSH server: that would be an end-to-end SSH
        // session inside the tunnel, which the box cannot record.
        is_self && port != u32::from(target_ssh_port)
    } else {
        destinations.iter().any(|d| match d.rsplit_once(':') {
            Some((h, p)) => {
                h.trim_matches(|c| c == '[' || c == ']').eq_ignore_ascii_case(&host_l)
                    && (p == "*" || p.parse::<u32>().ok() == Some(port))
            }
            None => false,
        })
    };
    if ok {
        return Ok(());
    }
    let allowed = if destinations.is_empty() {
        format!("only the target itself (localhost or {target_host}), not its SSH port {target_ssh_port}")
    } else {
        destinations.join(", ")
    };
    Err(Denial::ForwardDestination {
        user: user.to_owned(),
        target: target.to_owned(),
        destination: format!("{host}:{port}"),
        allowed,
    })
}

/// Checks a forward destination as an admin writes it (`HOST:PORT` or `HOST:*`).
pub fn parse_destination(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not HOST:PORT (or HOST:* for any port)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    let port_ok = port == "*" || port.parse::<u16>().is_ok_and(|p| p > 0);
    if host_ok && port_ok { Ok(text.to_ascii_lowercase()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDING: GrantFacts = GrantFacts { expires_at: None, allow_forwarding: false };

    #[test]
    fn decisions() {
        const SSH: Option<Protocol> = Some(Protocol::Ssh);
        let d = |t, p, g, now| decide("a", t, Protocol::Ssh, p, g, now);
        assert_eq!(d(Some("t"), SSH, Some(STANDING), 0), Ok(Access { until: None, allow_forwarding: false }));
        let jit = GrantFacts { expires_at: Some(100), allow_forwarding: true };
        assert_eq!(d(Some("t"), SSH, Some(jit), 99).unwrap().until, Some(100));
        assert_eq!(d(Some("t"), SSH, Some(jit), 100).unwrap_err().kind(), "grant_expired");
        assert_eq!(d(Some("t"), SSH, None, 0).unwrap_err().kind(), "no_grant");
        assert_eq!(d(Some("t"), None, Some(STANDING), 0).unwrap_err().kind(), "unknown_target");
        assert_eq!(d(None, SSH, Some(STANDING), 0).unwrap_err().kind(), "no_target");
        let wrong = d(Some("win01"), Some(Protocol::Rdp), Some(STANDING), 0).unwrap_err();
        assert_eq!(wrong.to_string(), "win01 is an RDP target; connect with an RDP client");
        let wrong = decide("a", Some("web01"), Protocol::Rdp, SSH, Some(STANDING), 0).unwrap_err();
        assert_eq!(wrong.kind(), "wrong_protocol", "checked before the grant, both ways");
    }

    #[test]
    fn forwards_go_only_where_granted() {
        let on = Access { until: None, allow_forwarding: true };
        let off = Access { until: None, allow_forwarding: false };
        let f = |a: &Access, d: &[&str], host: &str, port| {
            let d: Vec<String> = d.iter().map(|s| s.to_string()).collect();
            forward("alice", "web01", a, &d, "10.0.0.5", 22, host, port)
        };
        assert_eq!(f(&off, &[], "localhost", 80).unwrap_err().kind(), "forwarding_refused");
        assert!(f(&on, &[], "localhost", 80).is_ok(), "the target itself");
        assert!(f(&on, &[], "10.0.0.5", 5432).is_ok());
        assert!(f(&on, &[], "localhost", 22).is_err(), "the target's own sshd: an unrecordable SSH in the tunnel");
        assert!(f(&on, &[], "10.0.0.5", 22).is_err());
        let e = f(&on, &[], "db01", 22).unwrap_err();
        assert_eq!(e.kind(), "forward_destination_refused");
        assert!(e.to_string().contains("db01:22") && e.to_string().contains("localhost"), "{e}");
        let listed = ["db01:5432", "cache:*"];
        assert!(f(&on, &listed, "DB01", 5432).is_ok());
        assert!(f(&on, &listed, "cache", 6379).is_ok());
        assert!(f(&on, &listed, "db01", 22).is_err(), "-J to the database's ssh is not granted");
        assert!(f(&on, &listed, "localhost", 80).is_err(), "a list replaces the default");
        assert!(f(&on, &listed, "db01:5432", 5432).is_err());
    }

    #[test]
    fn destinations_are_checked() {
        assert_eq!(parse_destination("DB01:5432").unwrap(), "db01:5432");
        assert!(parse_destination("cache:*").is_ok());
        assert!(parse_destination("[::1]:22").is_ok());
        for bad in ["db01", "db01:0", "db01:99999", ":22", "a b:22", "db01:x"] {
            assert!(parse_destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_name_the_fix() {
        let m = Denial::Tunnel { user: "alice".into() }.to_string();
        assert!(m.contains("alice@TARGET"), "{m}");
        assert_eq!(
            Denial::NoGrant { user: "alice".into(), target: "web01".into() }.to_string(),
            "alice has no grant for target web01"
        );
    }
}
