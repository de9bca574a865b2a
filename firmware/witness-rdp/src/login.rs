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
}
