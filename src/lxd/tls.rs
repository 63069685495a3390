//! TLS for HTTPS remotes: rustls (ring provider) with the client's certificate, and a server
//! certificate pinned byte for byte.
//!
//! LXD and Incus serve a self-signed certificate (`server.crt`), so there is no CA to chain
//! to and its names rarely match the address used: `lxc remote add` instead shows the
//! fingerprint, and once accepted keeps the certificate in `servercerts/NAME.crt` and later
//! accepts exactly that certificate. [`PinnedServer`] does the same: the end-entity
//! certificate must equal the pinned one (DER), and the handshake signatures are still
//! checked with that certificate's key, so only the holder of the pinned key gets through.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// A ready TLS client configuration for one remote.
#[derive(Clone)]
pub(crate) struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub verifier: Arc<PinnedServer>,
}

impl Tls {
    pub fn new(
        pinned: CertificateDer<'static>,
        client_chain: Vec<CertificateDer<'static>>,
        client_key: PrivateKeyDer<'static>,
    ) -> Result<Tls, String> {
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier = Arc::new(PinnedServer {
            pinned,
            provider: provider.clone(),
            presented: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(client_chain, client_key)
            .map_err(|e| e.to_string())?;
        Ok(Tls {
            config: Arc::new(config),
            verifier,
        })
    }
}

/// Accepts exactly one server certificate; see the module documentation.
#[derive(Debug)]
pub(crate) struct PinnedServer {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
    /// SHA-256 fingerprint of the last certificate that did not match, for the error message.
    presented: Mutex<Option<String>>,
}

impl PinnedServer {
    pub fn pinned_fingerprint(&self) -> String {
        fingerprint(&self.pinned)
    }

    /// The fingerprint of the last refused certificate.
    pub fn refused_fingerprint(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|g| g.clone())
    }
}

/// SHA-256 of a certificate's DER, in hex: the fingerprint `lxc remote add` and
/// `lxc config trust list` show.
pub(crate) fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The error [`PinnedServer`] returns for a certificate other than the pinned one; the
/// transport recognises it to report a mismatch rather than a failed connection.
pub(crate) const MISMATCH: rustls::Error =
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No hostname or expiry check: the pin is the whole trust decision, as for lxc (LXD's
        // certificate names its host, not the address clients use).
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            if let Ok(mut g) = self.presented.lock() {
                *g = Some(fingerprint(end_entity));
            }
            Err(MISMATCH)
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
