//! The box's TLS certificate for the console: generated self-signed at `init`, replaceable by an
//! operator's own PEM files, loaded into a rustls server configuration.

use crate::WebError;
use std::path::Path;
use std::sync::Arc;

/// A self-signed certificate and its key, PEM, for `names` (host names or IP addresses).
pub fn generate(names: &[String]) -> Result<(String, String), WebError> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| WebError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| WebError::Generate(e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "witness");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Witness recording jump host");
    // Ten years: an appliance must not stop serving its console because nobody renewed it.
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key).map_err(|e| WebError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads PEM certificate chain and key files into a server configuration (HTTP/1.1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WebError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|source| WebError::Certificate { path: p.display().to_string(), source });
    let chain = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebError::BadCertificate(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(WebError::BadCertificate(format!("{} holds no certificate", cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| WebError::BadCertificate(format!("{}: {e}", key.display())))?
        .ok_or_else(|| WebError::BadCertificate(format!("{} holds no private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebError::BadCertificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| WebError::BadCertificate(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_loads() {
        let dir = std::env::temp_dir().join(format!("witness-web-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("c.pem"), cert).unwrap();
        std::fs::write(dir.join("k.pem"), key).unwrap();
        server_config(&dir.join("c.pem"), &dir.join("k.pem")).unwrap();
        std::fs::write(dir.join("k.pem"), "not a key").unwrap();
        let err = server_config(&dir.join("c.pem"), &dir.join("k.pem")).unwrap_err().to_string();
        assert!(err.contains("holds no private key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
