//! The server's own TLS: rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1.
//!
//! The certificate and key are held in a [`Certificates`] that a reload swaps whole (see
//! [`reload`](super::reload)): a handshake started before the swap finishes with the old pair,
//! one started after gets the new pair, and no connection is dropped. A new pair that does not
//! load (unreadable, not PEM, a key that does not match the certificate) is refused and the old
//! one kept.
//!
//! With client certificates pinned, the server asks for one during the handshake but does not
//! require it (B2C with Basic credentials and Entra send none), and accepts any certificate at
//! the TLS level, verifying only that the client holds its key (the handshake signature). The
//! endpoint then checks the thumbprint and the dates (see
//! [`client_cert`](super::auth::client_cert)), so a refusal is a 401 with its reason in the log
//! rather than a failed handshake nobody can diagnose.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Where the certificate chain and the private key are read from (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks the pair: the chain parses, the key parses and matches the end-entity
    /// certificate.
    ///
    /// # Errors
    ///
    /// A message naming the file and what is wrong; never any of the key's content.
    pub fn load(&self) -> Result<CertifiedKey, String> {
        let chain = read_chain(&self.cert)?;
        let key = read_key(&self.key)?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => format!(
                "the private key in {} does not belong to the certificate in {}",
                self.key.display(),
                self.cert.display()
            ),
            other => format!(
                "the private key in {} cannot be used: {other}",
                self.key.display()
            ),
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read the certificate {}: {error}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            format!(
                "the certificate {} is not PEM ({error}); give the chain as PEM, the server's \
                 certificate first",
                path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "the certificate {} holds no BEGIN CERTIFICATE block",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|error| format!("cannot read the private key {}: {error}", path.display()))?,
    );
    // The parser's error names the PEM problem, never the key's bytes.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        format!(
            "the private key {} is not a PEM private key ({error}); give an unencrypted \
             PKCS#8, PKCS#1 or SEC1 key",
            path.display()
        )
    })
}

/// The ring provider, the one crypto provider of the crate.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The certificate and key in use, swapped whole by a reload.
pub struct Certificates {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    reloads: Family<ResultLabels, Counter>,
}

impl Certificates {
    /// Loads the pair from `files`.
    ///
    /// # Errors
    ///
    /// As [`TlsFiles::load`].
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let pair = files.load()?;
        let reloads = Family::default();
        for result in ["ok", "failed"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(pair),
            reloads,
        })
    }

    /// Registers the reload counters.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "tls_reloads",
            "Reloads of the TLS certificate and key, by result",
            self.reloads.clone(),
        );
    }

    /// The files the pair is read from.
    #[must_use]
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The end-entity certificate served now (DER).
    #[must_use]
    pub fn served(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }

    /// Reads the pair again: swaps it in, or keeps the old one and says why.
    ///
    /// # Errors
    ///
    /// As [`TlsFiles::load`]; the pair in use is unchanged.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = self.files.load();
        let result = if loaded.is_ok() { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.current.store(Arc::new(loaded?));
        Ok(())
    }

    /// The rustls server configuration serving this pair: TLS 1.2 and 1.3 with the ring
    /// provider's suites (all ECDHE or TLS 1.3), HTTP/1.1. With `ask_client_certificate`, a
    /// client certificate is asked for but not required; see the module documentation.
    ///
    /// # Errors
    ///
    /// When the provider offers none of the protocol versions (it does).
    pub fn server_config(
        self: &Arc<Self>,
        ask_client_certificate: bool,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = if ask_client_certificate {
            builder.with_client_cert_verifier(Arc::new(AnyClientCertificate { provider }))
        } else {
            builder.with_no_client_auth()
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

/// Asks for a client certificate, requires none, and accepts any at the TLS level once the
/// client has proved it holds the certificate's key. Which certificates are let in is decided
/// per endpoint, by pin.
#[derive(Debug)]
struct AnyClientCertificate {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hint: a client sends whatever certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Pinned, not chained: the endpoint compares the thumbprint and checks the dates.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
