//! The box's own identities, made at `init` and again at a factory reset: the web console's
//! self-signed certificate and the RDP certificate (the SSH host key is written beside them by
//! `provision`). Their keys are private files (`witness_keys::write_private`).

use anyhow::{Context, Result};
use std::path::Path;

/// Makes the console's self-signed certificate if there is none (new box, factory reset, or a
/// data directory from before the console). Returns whether it made one.
pub fn ensure_certificate(root: &Path) -> Result<bool> {
    let (cert, key) = (root.join(crate::datadir::WEB_CERT), root.join(crate::datadir::WEB_KEY));
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.insert(0, h.trim().to_owned());
    }
    let (cert_pem, key_pem) = witness_web::tls::generate(&names)?;
    witness_keys::write_private(&key, key_pem.as_bytes()).context("writing the console's TLS key")?;
    std::fs::write(&cert, cert_pem).context("writing the console's TLS certificate")?;
    Ok(true)
}

/// The SHA-256 fingerprint of the console's certificate, as browsers show it.
pub fn certificate_fingerprint(root: &Path) -> Option<String> {
    use sha2::Digest;
    let pem = std::fs::read_to_string(root.join(crate::datadir::WEB_CERT)).ok()?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok()?;
    let d = sha2::Sha256::digest(der);
    Some(d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

/// The certificate RDP clients see (PEM, leaf first); replace both files to use another one.
pub const RDP_CERT: &str = "keys/rdp_tls.crt";
pub const RDP_KEY: &str = "keys/rdp_tls.key";

/// Creates the box's RDP certificate unless one is there; returns its fingerprint.
pub fn ensure_identity(root: &Path) -> Result<String> {
    let (cert, key) = (root.join(RDP_CERT), root.join(RDP_KEY));
    if !cert.exists() || !key.exists() {
        let (cert_pem, key_pem) = witness_rdp::generate_identity("witness")?;
        witness_keys::write_private(&key, key_pem.as_bytes())?;
        std::fs::write(&cert, cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    }
    Ok(load_identity(root)?.fingerprint)
}

/// A new RDP certificate (factory reset).
pub fn replace_identity(root: &Path) -> Result<String> {
    let _ = std::fs::remove_file(root.join(RDP_CERT));
    let _ = std::fs::remove_file(root.join(RDP_KEY));
    ensure_identity(root)
}

/// The box's RDP certificate and key, as the listener serves them.
pub fn load_identity(root: &Path) -> Result<witness_rdp::TlsIdentity> {
    let (cert, key) = (root.join(RDP_CERT), root.join(RDP_KEY));
    let cert_pem = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
    Ok(witness_rdp::TlsIdentity::from_pem(&cert_pem, &key_pem)?)
}
