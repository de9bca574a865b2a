//! SSH key handling the rest of the box needs without touching russh: generating and loading the
//! box's host key, parsing users' public keys.

use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("invalid private key: {0}")]
    Private(String),
    #[error("invalid public key: {0}")]
    Public(String),
}

/// The box's own host key.
#[derive(Clone)]
pub struct HostKey(pub(crate) PrivateKey);

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({})", self.fingerprint())
    }
}

impl HostKey {
    /// Parses an OpenSSH private key file's text.
    pub fn from_openssh(text: &str) -> Result<Self, KeyError> {
        russh::keys::decode_secret_key(text, None).map(HostKey).map_err(|e| KeyError::Private(e.to_string()))
    }

    pub fn fingerprint(&self) -> String {
        self.0.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The public half as an OpenSSH line, for users' `known_hosts`.
    pub fn public_openssh(&self) -> String {
        self.0.public_key().to_openssh().unwrap_or_default()
    }
}

/// A fresh Ed25519 host key as OpenSSH private key text.
pub fn generate_host_key() -> Result<String, KeyError> {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| KeyError::Private(e.to_string()))?;
    key.to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map(|s| s.to_string())
        .map_err(|e| KeyError::Private(e.to_string()))
}

/// Parses one OpenSSH public key line and returns it normalised (no comment) with its SHA-256
/// fingerprint.
pub fn parse_public_key(line: &str) -> Result<(String, String), KeyError> {
    let key = PublicKey::from_openssh(line.trim()).map_err(|e| KeyError::Public(e.to_string()))?;
    let fp = key.fingerprint(HashAlg::Sha256).to_string();
    let mut key = key;
    key.set_comment("");
    let text = key.to_openssh().map_err(|e| KeyError::Public(e.to_string()))?;
    Ok((text.trim().to_owned(), fp))
}

/// Checks that a private key (a target identity) parses, without keeping it.
pub fn check_private_key(text: &str) -> Result<(), KeyError> {
    HostKey::from_openssh(text).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips() {
        let text = generate_host_key().unwrap();
        let key = HostKey::from_openssh(&text).unwrap();
        let (public, fp) = parse_public_key(&format!("{} someone@example", key.public_openssh())).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert_eq!(fp, key.fingerprint());
        assert!(parse_public_key("ssh-ed25519 notbase64").is_err());
        assert!(check_private_key("nope").is_err());
    }
}
