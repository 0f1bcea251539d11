//! Which server certificate the client accepts. There is no "accept anything" option.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// How to trust the relay's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Trust the certificates in this PEM file (for example the relay's generated
    /// `tickrelay-dev-cert.pem`), and nothing else.
    CertFile(PathBuf),
    /// Trust the certificates in this PEM text.
    CertPem(String),
    /// Trust exactly the certificate with this SHA-256 fingerprint (hex, colons
    /// optional), as the relay logs it at start-up.
    Fingerprint(String),
}

impl std::fmt::Display for Trust {
    /// What is trusted, for the reason of a refused certificate.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CertFile(path) => write!(f, "the certificate in {}", path.display()),
            Self::CertPem(_) => f.write_str("the PEM certificate it was given"),
            Self::Fingerprint(hex) => write!(f, "the certificate of SHA-256 fingerprint {hex}"),
        }
    }
}

/// The TLS client configuration for a [`Trust`], and what it trusts (for the reason
/// of a refused certificate).
pub(crate) struct Tls {
    pub config: Arc<ClientConfig>,
    pub trusted: String,
}

impl Tls {
    pub fn new(trust: &Trust) -> Result<Self, TrustError> {
        Ok(Self {
            config: client_config(trust)?,
            trusted: trust.to_string(),
        })
    }
}

/// Why the trust settings could not be used.
#[derive(Debug, thiserror::Error)]
#[error("certificate trust: {0}")]
pub struct TrustError(pub String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the TLS client configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TrustError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError(e.to_string()))?;
    let config = match trust {
        Trust::CertFile(path) => {
            let pem = std::fs::read(path).map_err(|e| TrustError(format!("{}: {e}", path.display())))?;
            builder.with_root_certificates(roots(&pem)?).with_no_client_auth()
        }
        Trust::CertPem(pem) => builder
            .with_root_certificates(roots(pem.as_bytes())?)
            .with_no_client_auth(),
        Trust::Fingerprint(hex) => {
            let wanted = parse_fingerprint(hex)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    wanted,
                    provider: provider(),
                }))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TrustError(e.to_string()))?;
        roots.add(cert).map_err(|e| TrustError(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TrustError("no certificate found".into()));
    }
    Ok(roots)
}

fn parse_fingerprint(hex: &str) -> Result<[u8; 32], TrustError> {
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    let bad = || TrustError(format!("`{hex}` is not a SHA-256 fingerprint"));
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The server's certificate is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("certificate fingerprint does not match the pinned one")]
struct FingerprintMismatch;

/// Accepts exactly one certificate, by fingerprint; signatures are still verified.
#[derive(Debug)]
struct Pinned {
    wanted: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.wanted {
            Ok(ServerCertVerified::assertion())
        } else {
            // A certificate error (not a general one), so the client knows retrying
            // cannot help.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                rustls::OtherError(Arc::new(FingerprintMismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "2D:B8:35:6F:3C:51:22:9E:73:11:24:F7:90:4E:56:53:11:55:6E:7B:62:4A:8E:C5:8D:3A:37:01:C9:28:DD:FC";
        let a = parse_fingerprint(hex).unwrap();
        let b = parse_fingerprint(&hex.replace(':', "")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], 0x2d);
        assert!(parse_fingerprint("abc").is_err());
    }
}
