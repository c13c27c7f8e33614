//! TLS configuration (rustls with the *ring* provider).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cfg_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::TlsConfig(format!("{what}: {e}"))
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| cfg_err(what, e))?;
    if certs.is_empty() {
        return Err(Error::TlsConfig(format!(
            "{what}: no certificate in the PEM data"
        )));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| cfg_err("private key", e))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))
}

fn roots_from_pem(pem: &[u8], what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(pem, what)? {
        roots.add(c).map_err(|e| cfg_err(what, e))?;
    }
    Ok(roots)
}

/// Whether and how a TLS server asks for client certificates (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth<'a> {
    /// No client certificate is asked for.
    None,
    /// A client certificate is asked for and checked against these CA
    /// certificates (PEM) if sent; clients without one are accepted.
    Optional(&'a [u8]),
    /// A client certificate signed by one of these CAs (PEM) is required.
    Required(&'a [u8]),
}

/// Server side of TLS: our certificate chain and key, and optional client
/// verification.
#[derive(Debug, Clone)]
pub struct TlsServerConfig {
    pub(crate) inner: Arc<ServerConfig>,
}

impl TlsServerConfig {
    /// From PEM data: the certificate chain (leaf first) and the private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8], client_auth: ClientAuth<'_>) -> Result<Self> {
        let certs = certs_from_pem(cert_chain, "server certificate")?;
        let key = key_from_pem(key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("protocol versions", e))?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
                let roots = Arc::new(roots_from_pem(ca, "client CA")?);
                let v =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
                let v = if matches!(client_auth, ClientAuth::Optional(_)) {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(|e| cfg_err("client CA", e))?)
            }
        };
        let cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| cfg_err("server certificate and key", e))?;
        Ok(TlsServerConfig {
            inner: Arc::new(cfg),
        })
    }

    /// From PEM files (certificate chain, private key).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_auth: ClientAuth<'_>,
    ) -> Result<Self> {
        Self::from_pem(
            &read(cert_chain.as_ref())?,
            &read(key.as_ref())?,
            client_auth,
        )
    }

    /// From a ready rustls configuration.
    pub fn from_rustls(cfg: Arc<ServerConfig>) -> Self {
        TlsServerConfig { inner: cfg }
    }
}

/// Which certificate authorities a TLS client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots<'a> {
    /// The Mozilla roots compiled in (the `webpki-roots` crate).
    WebPki,
    /// The system's CA bundle: the PEM file named by `SSL_CERT_FILE`, else the
    /// first of the usual Debian / Red Hat / Alpine / macOS bundle paths.
    System,
    /// These CA certificates (PEM) only.
    Pem(&'a [u8]),
}

/// Client side of TLS: trusted roots and an optional client certificate. The
/// server certificate is always checked against the target's host name (its
/// [`server_name`](crate::Target::server_name), else its IP address), which is
/// also sent as SNI.
#[derive(Debug, Clone)]
pub struct TlsClientConfig {
    pub(crate) inner: Arc<ClientConfig>,
}

const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

impl TlsClientConfig {
    /// A client trusting `roots`, with an optional client certificate chain and
    /// key (PEM) for mutual TLS.
    pub fn new(roots: Roots<'_>, identity: Option<(&[u8], &[u8])>) -> Result<Self> {
        let store = match roots {
            Roots::WebPki => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            Roots::Pem(pem) => roots_from_pem(pem, "CA certificates")?,
            Roots::System => {
                let path = std::env::var_os("SSL_CERT_FILE")
                    .map(std::path::PathBuf::from)
                    .or_else(|| {
                        SYSTEM_BUNDLES
                            .iter()
                            .map(std::path::PathBuf::from)
                            .find(|p| p.exists())
                    })
                    .ok_or_else(|| Error::TlsConfig("no system CA bundle found".into()))?;
                let pem = read(&path)?;
                let mut store = RootCertStore::empty();
                // A system bundle may hold certificates webpki cannot use; skip those.
                let (_added, _ignored) = store.add_parsable_certificates(
                    CertificateDer::pem_slice_iter(&pem).filter_map(|c| c.ok()),
                );
                if store.is_empty() {
                    return Err(Error::TlsConfig(format!(
                        "no usable CA certificate in {}",
                        path.display()
                    )));
                }
                store
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("protocol versions", e))?
            .with_root_certificates(store);
        let cfg = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    certs_from_pem(chain, "client certificate")?,
                    key_from_pem(key)?,
                )
                .map_err(|e| cfg_err("client certificate and key", e))?,
        };
        Ok(TlsClientConfig {
            inner: Arc::new(cfg),
        })
    }

    /// From a ready rustls configuration.
    pub fn from_rustls(cfg: Arc<ClientConfig>) -> Self {
        TlsClientConfig { inner: cfg }
    }
}

/// A handshake error in words: says plainly when the certificate is untrusted
/// or issued for another name.
pub(crate) fn describe(e: &std::io::Error, name: &str) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "certificate not trusted: unknown issuer".into()
        }
        rustls::Error::InvalidCertificate(C::BadSignature) => {
            "certificate not trusted: bad signature".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            format!("certificate not valid for host name {name:?} (wrong host)")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "certificate expired".into()
        }
        other => other.to_string(),
    }
}
