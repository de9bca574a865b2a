//! TLS on both legs: the box's own certificate towards clients (generated at `init`, replaceable
//! by any PEM certificate and key), and a client towards targets that accepts whatever certificate
//! the target shows so the caller can pin it, like SSH host keys, by fingerprint.

use crate::RdpError;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider, chosen explicitly: with both `ring` and `aws-lc-rs` linked into the box,
/// rustls cannot pick one by itself.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A new self-signed certificate and key (PEM) for the box's RDP listener.
pub fn generate_identity(hostname: &str) -> Result<(String, String), RdpError> {
    let certified = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])
        .map_err(|e| RdpError::Certificate(e.to_string()))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// The box's TLS server side: the acceptor and what CredSSP binds to (the certificate's public
/// key), plus a fingerprint to show admins.
#[derive(Clone)]
pub struct TlsIdentity {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) public_key: Vec<u8>,
    pub fingerprint: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads a PEM certificate chain (leaf first) and its private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, RdpError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| RdpError::Certificate(format!("{what}: {e}"));
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("reading the certificate", &e))?;
        let leaf = chain.first().ok_or_else(|| RdpError::Certificate("no certificate in the file".into()))?;
        let public_key = public_key_of(leaf).map_err(RdpError::Certificate)?;
        let fingerprint = fingerprint(leaf);
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("reading the private key", &e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("tls versions", &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| bad("certificate and key", &e))?;
        Ok(Self { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), public_key, fingerprint })
    }
}

/// `sha256:HEX` of a certificate's DER, the form pinned in the index.
pub(crate) fn fingerprint(cert: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(cert)))
}

/// The subjectPublicKey bits, which CredSSP binds the NTLM exchange to.
pub(crate) fn public_key_of(cert: &[u8]) -> Result<Vec<u8>, String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert).map_err(|e| format!("parsing the certificate: {e}"))?;
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "the certificate's public key is not byte-aligned".to_owned())
}

/// Accepts any certificate during the handshake (the caller pins it afterwards), but still checks
/// that the target signed the handshake with that certificate's key.
#[derive(Debug)]
struct PinLater(Arc<CryptoProvider>);

impl ServerCertVerifier for PinLater {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client towards targets.
pub(crate) fn target_connector() -> Result<tokio_rustls::TlsConnector, RdpError> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RdpError::Certificate(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinLater(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_loads_and_binds_its_key() {
        let (cert, key) = generate_identity("witness").unwrap();
        let id = TlsIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        // P-256: an uncompressed point, 0x04 then two 32-byte coordinates.
        assert_eq!(id.public_key.len(), 65);
        assert_eq!(id.public_key[0], 0x04);
        assert!(id.fingerprint.starts_with("sha256:") && id.fingerprint.len() == 7 + 64);
        assert!(TlsIdentity::from_pem(cert.as_bytes(), b"not a key").is_err());
        let (_, other_key) = generate_identity("witness").unwrap();
        assert!(TlsIdentity::from_pem(cert.as_bytes(), other_key.as_bytes()).is_err(), "mismatched key accepted");
    }
}
