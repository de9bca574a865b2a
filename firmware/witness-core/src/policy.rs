//! Access decisions: may this user reach this target now, with which rights, and the one-line
//! message a refused user reads on their terminal.

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
        }
    }
}

/// Decides access of `user` to `target` at `now` (unix seconds). `target_exists` and `grant` are
/// looked up by the caller; the decision itself has no I/O.
pub fn decide(
    user: &str,
    target: Option<&str>,
    target_exists: bool,
    grant: Option<GrantFacts>,
    now: i64,
) -> Result<Access, Denial> {
    let Some(target) = target else {
        return Err(Denial::NoTarget { user: user.to_owned() });
    };
    if !target_exists {
        return Err(Denial::UnknownTarget { target: target.to_owned() });
    }
    let grant = grant.ok_or_else(|| Denial::NoGrant { user: user.to_owned(), target: target.to_owned() })?;
    if grant.expires_at.is_some_and(|t| now >= t) {
        return Err(Denial::Expired { user: user.to_owned(), target: target.to_owned() });
    }
    Ok(Access { until: grant.expires_at, allow_forwarding: grant.allow_forwarding })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDING: GrantFacts = GrantFacts { expires_at: None, allow_forwarding: false };

    #[test]
    fn decisions() {
        assert_eq!(
            decide("a", Some("t"), true, Some(STANDING), 0),
            Ok(Access { until: None, allow_forwarding: false })
        );
        let jit = GrantFacts { expires_at: Some(100), allow_forwarding: true };
        assert_eq!(decide("a", Some("t"), true, Some(jit), 99).unwrap().until, Some(100));
        assert_eq!(decide("a", Some("t"), true, Some(jit), 100).unwrap_err().kind(), "grant_expired");
        assert_eq!(decide("a", Some("t"), true, None, 0).unwrap_err().kind(), "no_grant");
        assert_eq!(decide("a", Some("t"), false, Some(STANDING), 0).unwrap_err().kind(), "unknown_target");
        assert_eq!(decide("a", None, true, Some(STANDING), 0).unwrap_err().kind(), "no_target");
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
