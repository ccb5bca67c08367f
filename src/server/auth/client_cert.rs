//! Client-certificate authentication of the B2C endpoints: the caller's certificate must have
//! a pinned thumbprint and be within its validity dates (with the leeway).
//!
//! The certificate comes one of two ways:
//! - native mutual TLS: the server asks for a certificate during the handshake (see
//!   [`tls`](crate::server::tls)) and the connection hands it to each request;
//! - the `X-ARR-ClientCert` header (base64 DER), which Azure App Service and Functions set
//!   when they terminate TLS. Anyone can send that header, so it is read only when the
//!   operator says the platform sets it ([`ClientCertAuth::trust_arr_header`]); otherwise it
//!   is ignored, and its first appearance logged.
//!
//! Thumbprints are SHA-1 (what the Azure portal shows) or SHA-256 of the certificate's DER,
//! written in hex, any case, colons or spaces allowed. A refusal names the SHA-1 thumbprint
//! seen, so the log says which certificate was sent.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use warp::http::HeaderValue;
use x509_cert::der::Decode as _;

use crate::server::labels::Refusal;

/// The header Azure App Service and Functions put the client certificate in.
pub const ARR_HEADER: &str = "x-arr-clientcert";

/// No certificate came with the request.
pub const MISSING: Refusal = Refusal::new(
    "no-client-certificate",
    "no client certificate was presented",
);
/// A certificate whose thumbprint is not pinned.
pub const UNKNOWN: Refusal = Refusal::new(
    "unknown-thumbprint",
    "the client certificate's thumbprint is not one of the pinned thumbprints",
);
/// A pinned certificate past its notAfter, beyond the leeway.
pub const EXPIRED: Refusal = Refusal::new(
    "certificate-expired",
    "the client certificate has expired (notAfter is past, beyond the leeway)",
);
/// A pinned certificate before its notBefore, beyond the leeway.
pub const NOT_YET_VALID: Refusal = Refusal::new(
    "certificate-not-yet-valid",
    "the client certificate is not valid yet (notBefore is ahead, beyond the leeway)",
);
/// An `X-ARR-ClientCert` header that is not base64 DER, or a certificate that does not parse.
pub const MALFORMED: Refusal = Refusal::new(
    "malformed-certificate",
    "the client certificate is not a DER X.509 certificate (X-ARR-ClientCert is base64 DER)",
);

/// A thumbprint that is not 40 or 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{shown:?} is not a certificate thumbprint: give 40 hex digits (SHA-1, as the Azure portal \
     shows) or 64 (SHA-256); colons and spaces are allowed"
)]
pub struct BadThumbprint {
    shown: String,
}

/// The pinned thumbprints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pins {
    sha1: Vec<[u8; 20]>,
    sha256: Vec<[u8; 32]>,
}

impl Pins {
    /// Parses thumbprints, each SHA-1 or SHA-256 in hex (any case, `:` or spaces between
    /// digits allowed). Empty entries are skipped.
    ///
    /// # Errors
    ///
    /// One [`BadThumbprint`] for each entry that is not a thumbprint.
    pub fn parse<'a>(list: impl IntoIterator<Item = &'a str>) -> Result<Self, Vec<BadThumbprint>> {
        let mut pins = Self::default();
        let mut bad = Vec::new();
        for entry in list {
            let digits: String = entry
                .chars()
                .filter(|c| !matches!(c, ':' | ' ' | '\t'))
                .collect();
            if digits.is_empty() {
                continue;
            }
            let bytes = hex(&digits);
            match bytes.as_deref().map(<[u8]>::len) {
                Some(20) => pins
                    .sha1
                    .extend(bytes.and_then(|b| <[u8; 20]>::try_from(b).ok())),
                Some(32) => pins
                    .sha256
                    .extend(bytes.and_then(|b| <[u8; 32]>::try_from(b).ok())),
                _ => bad.push(BadThumbprint {
                    shown: crate::server::auth::rejection::loggable(entry.trim()),
                }),
            }
        }
        if bad.is_empty() { Ok(pins) } else { Err(bad) }
    }

    /// How many thumbprints are pinned.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sha1.len() + self.sha256.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn admit(&self, der: &[u8]) -> bool {
        let sha1: [u8; 20] = Sha1::digest(der).into();
        if self.sha1.contains(&sha1) {
            return true;
        }
        let sha256: [u8; 32] = Sha256::digest(der).into();
        self.sha256.contains(&sha256)
    }
}

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Pins({} sha1, {} sha256)",
            self.sha1.len(),
            self.sha256.len()
        )
    }
}

fn hex(digits: &str) -> Option<Vec<u8>> {
    if !digits.len().is_multiple_of(2) || !digits.is_ascii() {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The certificates a request came with, put into its extensions by the connection: the TLS
/// client certificate, the `X-ARR-ClientCert` header. Only when client certificates are pinned,
/// and only when there is one.
#[derive(Debug, Clone)]
pub struct Presented {
    tls: Option<Arc<CertificateDer<'static>>>,
    arr: Option<HeaderValue>,
}

/// What one connection hands each of its requests: its TLS client certificate, if any, and
/// the `X-ARR-ClientCert` header of each request.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    tls: Option<Arc<CertificateDer<'static>>>,
}

impl Intake {
    /// For a connection whose client sent `tls` during the handshake (or none).
    #[must_use]
    pub fn new(tls: Option<CertificateDer<'static>>) -> Self {
        Self {
            tls: tls.map(Arc::new),
        }
    }

    /// Puts what `request` came with into its extensions, for [`Auth::check`](super::Auth).
    pub fn attach<B>(&self, request: &mut warp::http::Request<B>) {
        let arr = request.headers().get(ARR_HEADER).cloned();
        if self.tls.is_some() || arr.is_some() {
            request.extensions_mut().insert(Presented {
                tls: self.tls.clone(),
                arr,
            });
        }
    }
}

/// Set once the ignored header has been logged.
static ARR_IGNORED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Client certificates by pin.
#[derive(Clone)]
pub struct ClientCertAuth {
    pins: Pins,
    leeway: Duration,
    trust_arr_header: bool,
}

/// What a certificate check came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// A pinned certificate within its dates.
    Accepted,
    /// No certificate came (an untrusted `X-ARR-ClientCert` counts as none).
    Absent,
    /// A certificate came and is refused.
    Refused(Refusal),
}

impl ClientCertAuth {
    /// Accepts certificates pinned in `pins`, within their dates give or take `leeway`; reads
    /// `X-ARR-ClientCert` only with `trust_arr_header`.
    #[must_use]
    pub fn new(pins: Pins, leeway: Duration, trust_arr_header: bool) -> Self {
        Self {
            pins,
            leeway,
            trust_arr_header,
        }
    }

    /// Whether `X-ARR-ClientCert` is read.
    #[must_use]
    pub fn trust_arr_header(&self) -> bool {
        self.trust_arr_header
    }

    /// One phrase for the start-up log.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "client certificate ({} pinned thumbprint{}{})",
            self.pins.len(),
            if self.pins.len() == 1 { "" } else { "s" },
            if self.trust_arr_header {
                ", X-ARR-ClientCert trusted"
            } else {
                ""
            }
        )
    }

    /// Checks the certificate a request came with, at `now`.
    #[must_use]
    pub fn check(&self, presented: Option<&Presented>, now: SystemTime) -> Checked {
        let Some(presented) = presented else {
            return Checked::Absent;
        };
        if let Some(tls) = &presented.tls {
            return self.check_der(tls, now);
        }
        let Some(arr) = &presented.arr else {
            return Checked::Absent;
        };
        if !self.trust_arr_header {
            if !ARR_IGNORED_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "invitegate::auth",
                    "a request came with an X-ARR-ClientCert header, which is ignored: anyone \
                     can send it; pass --trust-arr-client-cert only when the platform in front \
                     (App Service, Functions) sets it (logged once)"
                );
            }
            return Checked::Absent;
        }
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(arr.as_bytes().trim_ascii())
        else {
            return Checked::Refused(MALFORMED);
        };
        self.check_der(&der, now)
    }

    fn check_der(&self, der: &[u8], now: SystemTime) -> Checked {
        let thumbprint: [u8; 20] = Sha1::digest(der).into();
        if !self.pins.admit(der) {
            return Checked::Refused(UNKNOWN.with_thumbprint(thumbprint));
        }
        let Ok(certificate) = x509_cert::certificate::CertificateInner::<Lenient>::from_der(der)
        else {
            return Checked::Refused(MALFORMED.with_thumbprint(thumbprint));
        };
        let validity = certificate.tbs_certificate().validity();
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        if now + self.leeway < validity.not_before.to_unix_duration() {
            return Checked::Refused(NOT_YET_VALID.with_thumbprint(thumbprint));
        }
        if now.saturating_sub(self.leeway) > validity.not_after.to_unix_duration() {
            return Checked::Refused(EXPIRED.with_thumbprint(thumbprint));
        }
        Checked::Accepted
    }
}

/// How a pinned certificate is parsed: only its dates are read (the pin is the trust), so a
/// serial number longer than RFC 5280 allows, as some tools make, is no reason to refuse it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Lenient;

impl x509_cert::certificate::Profile for Lenient {
    fn check_serial_number(
        _serial: &x509_cert::serial_number::SerialNumber<Self>,
    ) -> x509_cert::der::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for ClientCertAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertAuth")
            .field("pins", &self.pins)
            .field("leeway", &self.leeway)
            .field("trust_arr_header", &self.trust_arr_header)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_in_any_case_with_colons() {
        let sha1 = "AB:cd:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:AB:CD:EF:01";
        let sha256 = "00".repeat(32);
        let pins = Pins::parse([sha1, sha256.as_str(), " "]).unwrap();
        assert_eq!(pins.len(), 2);
        let bad = Pins::parse(["abc", "zz".repeat(20).as_str(), sha1]).unwrap_err();
        assert_eq!(bad.len(), 2);
        assert!(bad[0].to_string().contains("40 hex digits"), "{}", bad[0]);
    }

    /// A self-signed certificate valid from `not_before` to `not_after` (seconds from now),
    /// with a 30-byte serial number, longer than RFC 5280 allows.
    fn certificate(not_before: i64, not_after: i64) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::new(vec!["b2c".to_owned()]).unwrap();
        params.not_before = now + time::Duration::seconds(not_before);
        params.not_after = now + time::Duration::seconds(not_after);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42; 30]));
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn tls(der: &[u8]) -> Presented {
        Presented {
            tls: Some(Arc::new(CertificateDer::from(der.to_vec()))),
            arr: None,
        }
    }

    #[test]
    fn dates_are_checked_with_the_leeway_and_refusals_carry_the_thumbprint() {
        let fresh = certificate(-3600, 3600);
        let just_expired = certificate(-3600, -30);
        let long_expired = certificate(-7200, -3600);
        let early = certificate(30, 3600);
        let pins: Vec<String> = [&fresh, &just_expired, &long_expired, &early]
            .iter()
            .map(|der| {
                Sha256::digest(der)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        let pins = Pins::parse(pins.iter().map(String::as_str)).unwrap();
        let auth = ClientCertAuth::new(pins, Duration::from_secs(60), false);
        let now = SystemTime::now();
        for der in [&fresh, &just_expired, &early] {
            assert_eq!(auth.check(Some(&tls(der)), now), Checked::Accepted);
        }
        let Checked::Refused(refusal) = auth.check(Some(&tls(&long_expired)), now) else {
            panic!("an expired certificate was not refused");
        };
        assert_eq!(
            refusal,
            EXPIRED.with_thumbprint(Sha1::digest(&long_expired).into())
        );
        let strict = ClientCertAuth::new(auth.pins.clone(), Duration::ZERO, false);
        assert_eq!(
            strict.check(Some(&tls(&early)), now),
            Checked::Refused(NOT_YET_VALID.with_thumbprint(Sha1::digest(&early).into()))
        );
        let unknown = certificate(-10, 10);
        let Checked::Refused(refusal) = auth.check(Some(&tls(&unknown)), now) else {
            panic!("an unknown certificate was not refused");
        };
        let shown = refusal.thumbprint().unwrap();
        assert_eq!(shown.len(), 40);
        assert_eq!(
            refusal,
            UNKNOWN.with_thumbprint(Sha1::digest(&unknown).into())
        );
    }

    #[test]
    fn an_untrusted_header_counts_as_no_certificate() {
        let auth = ClientCertAuth::new(Pins::default(), Duration::ZERO, false);
        let presented = Presented {
            tls: None,
            arr: Some(HeaderValue::from_static("AAAA")),
        };
        assert_eq!(
            auth.check(Some(&presented), SystemTime::now()),
            Checked::Absent
        );
        let trusting = ClientCertAuth::new(Pins::default(), Duration::ZERO, true);
        let bad = Presented {
            tls: None,
            arr: Some(HeaderValue::from_static("not base64!")),
        };
        assert_eq!(
            trusting.check(Some(&bad), SystemTime::now()),
            Checked::Refused(MALFORMED)
        );
    }
}
