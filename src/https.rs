//! What the two HTTP clients (the Entra key fetcher and `send`'s token and Graph requests)
//! share: rustls with the ring provider and the platform's certificate verifier, and errors
//! written out with their sources.

use std::sync::Arc;

/// Why TLS could not be set up for a client.
#[derive(Debug)]
pub(crate) enum TlsSetupError {
    /// The ring provider offers none of rustls's safe protocol versions.
    Protocols(rustls::Error),
    /// The system's certificates cannot be read, and the client needs them (an https URL).
    NoVerifier(rustls::Error),
}

/// A rustls client configuration over the ring provider that checks certificates with the
/// platform's verifier. When that verifier cannot be built and `needs_tls` is false (loopback
/// http only), a configuration that trusts no certificate is returned: an https request through
/// it then fails with a clear TLS error.
///
/// # Errors
///
/// [`TlsSetupError`] when the protocols cannot be set up, or the verifier cannot and `needs_tls`.
pub(crate) fn client_config(needs_tls: bool) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?;
    match rustls_platform_verifier::Verifier::new(provider) {
        Ok(verifier) => Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()),
        Err(e) if needs_tls => Err(TlsSetupError::NoVerifier(e)),
        Err(_) => Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()),
    }
}

/// An error and its sources on one line: reqwest's own message alone says little ("error
/// sending request").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
