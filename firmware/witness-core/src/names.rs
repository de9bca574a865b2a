//! Parsing of the login name a user gives the box (`alice@web01`, `alice:web01`) and checks on
//! the names of users and targets.

use thiserror::Error;

/// Why a name or a login could not be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("name {name:?} may only contain letters, digits, '.', '_' and '-'")]
    BadCharacter { name: String },
}

/// Longest user or target name the box accepts.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a user or target name: ASCII letters, digits, `.`, `_`, `-`; not starting with `-`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { max: MAX_NAME_LEN });
    }
    let ok =
        name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) && !name.starts_with('-');
    if ok { Ok(()) } else { Err(NameError::BadCharacter { name: name.to_owned() }) }
}

/// What a login name asks for: a box user and, usually, the target to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSpec {
    pub user: String,
    /// `None` when the user logged in without naming a target (e.g. the jump leg of `ssh -J`).
    pub target: Option<String>,
}

/// Splits `USER@TARGET` or `USER:TARGET` (first separator wins, so a target never contains one).
/// A bare `USER` yields no target. Names are not validated here: an unknown name is a policy
/// decision, reported as such.
pub fn parse_login(login: &str) -> LoginSpec {
    match login.find(['@', ':']) {
        Some(i) => {
            let target = &login[i + 1..];
            LoginSpec { user: login[..i].to_owned(), target: (!target.is_empty()).then(|| target.to_owned()) }
        }
        None => LoginSpec { user: login.to_owned(), target: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(login: &str, user: &str, target: Option<&str>) {
        assert_eq!(parse_login(login), LoginSpec { user: user.into(), target: target.map(Into::into) }, "{login}");
    }

    #[test]
    fn logins() {
        check("alice@web01", "alice", Some("web01"));
        check("alice:web01", "alice", Some("web01"));
        check("alice", "alice", None);
        check("alice@", "alice", None);
        check("alice@web01@box", "alice", Some("web01@box"));
        check("", "", None);
    }

    #[test]
    fn names() {
        assert!(validate_name("web-01.prod_a").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(validate_name("-rf"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(validate_name("a b"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(validate_name(&"a".repeat(65)), Err(NameError::TooLong { .. })));
    }
}
