//! Which box user and which target an RDP login names, from the NTLM user and domain fields.

use witness_core::names::{LoginSpec, parse_login};

/// Reads the target out of what the client put in CredSSP's user and domain fields.
///
/// `alice@web01` (or `alice:web01`, as for SSH) names the target in the user field; clients that
/// split `web01\alice` send it as user `alice` with domain `web01`. A separator in the user field
/// wins over the domain, because some clients fill the domain on their own (a workgroup name).
pub fn parse_rdp_login(account: &str, domain: Option<&str>) -> LoginSpec {
    let spec = parse_login(account);
    if spec.target.is_some() {
        return spec;
    }
    let domain = domain.map(str::trim).filter(|d| !d.is_empty() && *d != ".");
    LoginSpec { user: spec.user, target: domain.map(str::to_owned) }
}

/// The login on a target's own listener port: the port names the target, so the user field is
/// the box user and a domain is ignored (clients fill in workgroups). A target named in the user
/// field is kept, for the proxy to refuse when it is not the port's.
pub fn parse_rdp_login_on_port(account: &str, port_target: &str) -> LoginSpec {
    let spec = parse_login(account);
    LoginSpec { user: spec.user, target: Some(spec.target.unwrap_or_else(|| port_target.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(account: &str, domain: Option<&str>, user: &str, target: Option<&str>) {
        assert_eq!(
            parse_rdp_login(account, domain),
            LoginSpec { user: user.into(), target: target.map(Into::into) },
            "{account} / {domain:?}"
        );
    }

    #[test]
    fn forms() {
        check("alice@web01", None, "alice", Some("web01"));
        check("alice@web01", Some(""), "alice", Some("web01"));
        check("alice:web01", None, "alice", Some("web01"));
        // `web01\alice` as clients split it.
        check("alice", Some("web01"), "alice", Some("web01"));
        // The user field wins over a domain the client filled by itself.
        check("alice@web01", Some("WORKGROUP"), "alice", Some("web01"));
        check("alice", None, "alice", None);
        check("alice", Some(""), "alice", None);
        check("alice", Some("."), "alice", None);
    }

    #[test]
    fn on_a_target_port() {
        let on = |account: &str| parse_rdp_login_on_port(account, "web01");
        assert_eq!(on("alice"), LoginSpec { user: "alice".into(), target: Some("web01".into()) });
        assert_eq!(on("alice@web01"), LoginSpec { user: "alice".into(), target: Some("web01".into()) });
        // Kept as named: the proxy refuses a login for another target on this port.
        assert_eq!(on("alice@web02"), LoginSpec { user: "alice".into(), target: Some("web02".into()) });
    }
}
