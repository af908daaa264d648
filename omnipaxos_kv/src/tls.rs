//! TLS on peer and client links (rustls).
//!
//! **The design.** One cluster CA signs every certificate. A server's certificate names it by
//! the DNS subject alternative name `server-<id>` (and, for clients that connect by address, the
//! host names and IP addresses they use, e.g. `localhost` and `127.0.0.1`).
//!
//! * **Peer links** (`tls_peers = true`) are mutual: the connecting server offers the ALPN
//!   protocol [`PEER_ALPN`], presents its certificate and checks that the server it reaches has a
//!   certificate of the CA valid for `server-<peer id>`; the accepting server requires a
//!   certificate of the CA (the TLS handshake fails without one, before any frame is read) and
//!   then checks that it is valid for `server-<id>` of the id the peer claims in its `Hello`.
//!   Without TLS on peer links, any process that completes the handshake with a plausible id is
//!   taken for a peer: turn it on whenever servers are reachable by anything but themselves.
//! * **Client links** (`tls_clients = true`): the server presents its certificate, clients
//!   check it against the CA and the host name they connected to (or a name they are given).
//!   With `tls_client_auth = true` clients must present a certificate of the CA as well.
//!
//! A server tells the links apart by ALPN, and TLS from plaintext by the first byte (a TLS
//! record starts with 0x16, a frame's length with 0x00), so one port serves both kinds and a
//! cluster can turn TLS on for peers only. Plaintext stays the default: on loopback, the other
//! processes of the machine are trusted.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol of peer links.
pub const PEER_ALPN: &[u8] = b"omnipaxos-kv-peer/1";
/// ALPN protocol of client links.
pub const CLIENT_ALPN: &[u8] = b"omnipaxos-kv-client/1";
/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// The certificate name of server `id`: `server-<id>`.
pub fn server_name_of(id: u64) -> String {
    format!("server-{id}")
}

/// A TLS setup error: which file or setting, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

/// The ring provider: it builds with a C compiler alone (aws-lc-rs needs cmake and more).
/// rustls marks it deprecated because it lacks post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the certificates of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e}",
            path.display()
        ))
    })
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots
            .add(c.clone())
            .map_err(|e| TlsError(format!("bad CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// A certificate, its chain and key, and the CA: what each side needs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The CA's certificate(s).
    pub ca: Vec<CertificateDer<'static>>,
    /// This side's certificate chain (leaf first); empty for a client without a certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// This side's key (`None` with an empty chain).
    pub key: Option<Arc<PrivateKeyDer<'static>>>,
}

impl Identity {
    /// Reads the CA file and, if given, the certificate and key files.
    pub fn from_files(
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
    ) -> Result<Identity, TlsError> {
        let ca = load_certs(ca)?;
        let (chain, key) = match cert_and_key {
            Some((c, k)) => (load_certs(c)?, Some(Arc::new(load_key(k)?))),
            None => (Vec::new(), None),
        };
        Ok(Identity { ca, chain, key })
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        self.key
            .as_ref()
            .map(|k| k.clone_key())
            .ok_or_else(|| TlsError("a certificate and its key are needed".into()))
    }

    fn server_config(
        &self,
        client_auth: ClientAuth,
        alpn: &[u8],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let p = provider();
        let builder = ServerConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required => {
                let v = WebPkiClientVerifier::builder_with_provider(roots(&self.ca)?, p)
                    .build()
                    .map_err(|e| TlsError(format!("client verifier: {e}")))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut cfg = builder
            .with_single_cert(self.chain.clone(), self.key()?)
            .map_err(|e| TlsError(format!("certificate and key: {e}")))?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(cfg))
    }

    /// A client-side configuration offering `alpn`, presenting this identity's certificate if
    /// it has one.
    pub fn client_config(&self, alpn: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots(&self.ca)?);
        let mut cfg = if self.chain.is_empty() {
            builder.with_no_client_auth()
        } else {
            builder
                .with_client_auth_cert(self.chain.clone(), self.key()?)
                .map_err(|e| TlsError(format!("certificate and key: {e}")))?
        };
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug, Clone, Copy)]
enum ClientAuth {
    None,
    Required,
}

/// What a server needs for TLS, built once at start-up.
#[derive(Clone)]
pub struct ServerTls {
    /// Acceptor configuration of peer links (client certificates required); `None`: peers
    /// connect in plaintext.
    pub peer_acceptor: Option<Arc<ServerConfig>>,
    /// Connector configuration of peer links (presents this server's certificate).
    pub peer_connector: Option<Arc<ClientConfig>>,
    /// Acceptor configuration of client links; `None`: clients connect in plaintext.
    pub client_acceptor: Option<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("peers", &self.peer_acceptor.is_some())
            .field("clients", &self.client_acceptor.is_some())
            .finish()
    }
}

impl ServerTls {
    /// Plaintext on every link.
    pub fn plaintext() -> Self {
        ServerTls {
            peer_acceptor: None,
            peer_connector: None,
            client_acceptor: None,
        }
    }

    /// TLS on peer links and/or client links with `identity` (which must hold a certificate
    /// and key); `client_auth`: clients must present a certificate of the CA.
    pub fn new(
        identity: &Identity,
        peers: bool,
        clients: bool,
        client_auth: bool,
    ) -> Result<Self, TlsError> {
        let mut t = ServerTls::plaintext();
        if peers {
            t.peer_acceptor = Some(identity.server_config(ClientAuth::Required, PEER_ALPN)?);
            t.peer_connector = Some(identity.client_config(PEER_ALPN)?);
        }
        if clients {
            let auth = if client_auth {
                ClientAuth::Required
            } else {
                ClientAuth::None
            };
            t.client_acceptor = Some(identity.server_config(auth, CLIENT_ALPN)?);
        }
        Ok(t)
    }

    /// Whether any link uses TLS.
    pub fn any(&self) -> bool {
        self.peer_acceptor.is_some() || self.client_acceptor.is_some()
    }
}

/// Whether `cert` (a leaf certificate the TLS handshake already verified against the CA) is
/// valid for the name `server-<id>`.
pub fn cert_names_server(cert: &CertificateDer<'_>, id: u64) -> Result<(), String> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("cannot parse the peer's certificate: {e}"))?;
    let name = ServerName::try_from(server_name_of(id))
        .map_err(|e| format!("server-{id} is not a valid name: {e}"))?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
        format!(
            "the peer's certificate does not name {} (its subject alternative names must include it)",
            server_name_of(id)
        )
    })
}

/// The name a client checks the server's certificate against: `name` if given, else the host
/// part of `addr` (`host:port`, `[v6]:port`).
pub fn server_name_for(addr: &str, name: Option<&str>) -> Result<ServerName<'static>, TlsError> {
    let host = match name {
        Some(n) => n.to_string(),
        None => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        }
    };
    ServerName::try_from(host.clone())
        .map_err(|e| TlsError(format!("{host:?} is not a valid server name: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_addresses() {
        assert_eq!(
            server_name_for("127.0.0.1:8001", None).unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name_for("[::1]:8001", None).unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name_for("x:1", Some("server-2")).unwrap(),
            ServerName::try_from("server-2").unwrap()
        );
        assert!(server_name_for("bad name:1", None).is_err());
    }
}
