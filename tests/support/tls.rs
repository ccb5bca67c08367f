//! TLS for the tests: certificates made on the spot (rcgen), and a blocking rustls client over
//! real TCP that can present a client certificate and says which certificate the server served.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha1::Digest as _;

/// A certificate and its key, PEM and DER.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pair {
    /// Writes the certificate and key to `cert` and `key`.
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }

    /// The SHA-1 thumbprint, upper-case hex, as the Azure portal shows it.
    pub fn sha1(&self) -> String {
        super::hex(&sha1::Sha1::digest(&self.der)).to_ascii_uppercase()
    }

    /// The SHA-256 thumbprint, lower-case hex.
    pub fn sha256(&self) -> String {
        super::hex(&sha2::Sha256::digest(&self.der))
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.der.clone())]
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        use rustls::pki_types::pem::PemObject as _;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, named `name`, valid from
/// `not_before` to `not_after`.
pub fn pair_valid(
    name: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Pair {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.not_before = not_before;
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A self-signed certificate valid from a day ago for a year.
pub fn pair(name: &str) -> Pair {
    let now = time::OffsetDateTime::now_utc();
    pair_valid(
        name,
        now - time::Duration::days(1),
        now + time::Duration::days(365),
    )
}

/// Accepts any server certificate (the tests check which one was served), still checking the
/// handshake signatures.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration: `version` only (TLS 1.2 or 1.3), presenting `client` if given.
pub fn client_config(
    version: &'static rustls::SupportedProtocolVersion,
    client: Option<&Pair>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let config = match client {
        Some(pair) => builder
            .with_client_auth_cert(pair.chain(), pair.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A TLS connection to a test server.
pub struct Connection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Connection {
    /// Connects to `addr` and finishes the handshake.
    pub fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        let server = ServerName::try_from("localhost").unwrap();
        let connection = rustls::ClientConnection::new(config, server).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(super::DEADLINE)).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Self { stream }
    }

    /// The certificate the server served (DER).
    pub fn served(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// The protocol version agreed.
    pub fn version(&self) -> rustls::ProtocolVersion {
        self.stream.conn.protocol_version().unwrap()
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads its answer: status and body.
    pub fn ask(&mut self, request: &str) -> (u16, String) {
        self.stream.write_all(request.as_bytes()).unwrap();
        self.stream.flush().unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed after {} bytes", buffer.len());
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(response) = super::response_in(&buffer) {
                return (response.status, response.body);
            }
        }
    }
}

/// One request on a new TLS 1.3 connection, presenting `client` if given.
pub fn ask(addr: SocketAddr, client: Option<&Pair>, request: &str) -> (u16, String) {
    Connection::open(addr, client_config(&rustls::version::TLS13, client)).ask(request)
}

/// The certificate a new connection to `addr` is served.
pub fn served(addr: SocketAddr) -> Vec<u8> {
    Connection::open(addr, client_config(&rustls::version::TLS13, None)).served()
}
