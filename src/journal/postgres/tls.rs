//! TLS to the journal's PostgreSQL server as libpq's `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` ask for it. tokio-postgres knows only `disable`, `prefer` and `require` and none of
//! the files, so these settings are taken out of the conninfo here, and rustls makes the
//! handshake with the check they ask for.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode` (`allow` is not offered: it tries plain first, which a move never wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked only against an `sslrootcert` given.
    Require,
    /// TLS, the certificate chaining to the roots; any name.
    VerifyCa,
    /// TLS, the certificate chaining to the roots and naming the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "`sslmode=allow` tries a plain connection first: use `prefer` (TLS when the server offers it) or `disable`".into(),
                );
            }
            other => {
                return Err(format!(
                    "`sslmode={other}`: expected disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    /// The word in the conninfo.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS may be skipped (the checks are ours).
    fn negotiation(self) -> postgres::config::SslMode {
        match self {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        }
    }
}

/// The certificates a server's must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=FILE`: the CAs in that PEM file.
    File(PathBuf),
    /// The public web roots (webpki-roots): `verify-*` without `sslrootcert`, or
    /// `sslrootcert=system` as libpq 16 spells it.
    System,
}

/// A client certificate and its key (`sslcert`, `sslkey`), for servers that ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the conninfo asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// `None`: the certificate is not checked (`prefer`, `require` without `sslrootcert`).
    pub roots: Option<Roots>,
    /// Whether the certificate must name the host (`verify-full`).
    pub check_name: bool,
    pub client: Option<ClientCert>,
}

/// A conninfo split in two: what tokio-postgres reads, and the TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conninfo {
    /// The conninfo without the TLS keys, in its own form (key=value or URL).
    pub libpq: String,
    pub tls: Tls,
}

/// The keys taken out of the conninfo.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits `conninfo` (`key=value …` or a `postgresql://` URL); relative file paths are found in
/// `base_dir` (the plan's directory).
///
/// # Errors
/// A key without a value, an unknown `sslmode`, `sslcert` without `sslkey`: in words, naming
/// the key and never a value other than its own.
pub fn parse(conninfo: &str, base_dir: &Path) -> Result<Conninfo, String> {
    let (libpq, found) = match url_params(conninfo) {
        Some(split) => split?,
        None => keyword_params(conninfo)?,
    };
    let value = |key: &str| {
        found
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mode = value("sslmode").map_or(Ok(SslMode::Prefer), SslMode::parse)?;
    let file = |v: &str| base_dir.join(v);
    let root_cert = value("sslrootcert").map(|v| match v {
        "system" => Roots::System,
        path => Roots::File(file(path)),
    });
    let roots = match mode {
        SslMode::Disable => None,
        // libpq checks the chain whenever it has a root certificate.
        SslMode::Prefer | SslMode::Require => root_cert,
        SslMode::VerifyCa | SslMode::VerifyFull => Some(root_cert.unwrap_or(Roots::System)),
    };
    let client = match (value("sslcert"), value("sslkey")) {
        (Some(cert), Some(key)) => Some(ClientCert {
            cert: file(cert),
            key: file(key),
        }),
        (None, None) => None,
        (Some(_), None) => return Err("`sslcert` is given without its `sslkey`".into()),
        (None, Some(_)) => return Err("`sslkey` is given without its `sslcert`".into()),
    };
    Ok(Conninfo {
        libpq,
        tls: Tls {
            mode,
            roots,
            check_name: mode == SslMode::VerifyFull,
            client,
        },
    })
}

type Split = (String, Vec<(String, String)>);

/// `key = value` pairs as tokio-postgres (and libpq) read them: values unquoted up to a space,
/// or single-quoted, `\` escaping the next character in both.
fn keyword_params(s: &str) -> Result<Split, String> {
    let mut kept: Vec<&str> = Vec::new();
    let mut found = Vec::new();
    let mut it = s.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut it);
        let Some(&(start, _)) = it.peek() else { break };
        while it
            .next_if(|(_, c)| !c.is_whitespace() && *c != '=')
            .is_some()
        {}
        let key_end = it.peek().map_or(s.len(), |(i, _)| *i);
        let key = &s[start..key_end];
        skip_ws(&mut it);
        if key.is_empty() || it.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!("expected `key=value` at byte {start}"));
        }
        skip_ws(&mut it);
        let mut value = String::new();
        let quoted = it.next_if(|(_, c)| *c == '\'').is_some();
        let mut closed = !quoted;
        while let Some(&(_, c)) = it.peek() {
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                break;
            }
            it.next();
            if c == '\\' {
                if let Some((_, escaped)) = it.next() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        if quoted {
            closed = it.next_if(|(_, c)| *c == '\'').is_some();
        }
        if !closed {
            return Err(format!("the value of `{key}` has no closing quote"));
        }
        if !quoted && value.is_empty() {
            return Err(format!("`{key}=` has no value"));
        }
        let end = it.peek().map_or(s.len(), |(i, _)| *i);
        if TLS_KEYS.contains(&key) {
            found.push((key.to_string(), value));
        } else {
            kept.push(&s[start..end]);
        }
    }
    Ok((kept.join(" "), found))
}

/// The query parameters of a `postgresql://` URL (`None` for another form), percent-decoded.
fn url_params(s: &str) -> Option<Result<Split, String>> {
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return None;
    }
    let Some((base, query)) = s.split_once('?') else {
        return Some(Ok((s.to_string(), Vec::new())));
    };
    let mut kept = Vec::new();
    let mut found = Vec::new();
    for param in query.split('&') {
        let ours = param.split_once('=').and_then(|(k, v)| {
            let key = percent_decode(k).ok()?;
            TLS_KEYS.contains(&key.as_str()).then_some((key, v))
        });
        match ours {
            Some((key, v)) => match percent_decode(v) {
                Ok(value) => found.push((key, value)),
                Err(e) => return Some(Err(format!("the value of `{key}`: {e}"))),
            },
            None => kept.push(param),
        }
    }
    let libpq = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Some(Ok((libpq, found)))
}

/// `%XX` sequences as bytes (others left as they are), then UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once percent-decoded".to_string())
}

// ------------------------------------------------------------------------------ the handshake

/// The server refused TLS, or the handshake or its certificate check failed.
#[derive(Debug)]
pub struct TlsFailed {
    /// The host as the conninfo names it (the name checked, not the address).
    pub host: String,
    pub reason: String,
}

impl std::fmt::Display for TlsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS with `{}`: {}", self.host, self.reason)
    }
}

impl std::error::Error for TlsFailed {}

/// tokio-postgres's connector: rustls with the checks `Tls` asks for.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
    tls: Arc<Tls>,
}

impl MakeRustls {
    /// Reads the files `tls` names.
    ///
    /// # Errors
    /// A file cannot be read or holds no certificate (or key).
    pub fn new(tls: &Tls) -> Result<MakeRustls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &tls.roots {
            None => None,
            Some(r) => Some(Arc::new(load_roots(r)?)),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                roots,
                check_name: tls.check_name,
                provider,
            }));
        let mut config = match &tls.client {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let (certs, key) = load_client_cert(c)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("`sslcert` `{}`: {e}", c.cert.display()))?
            }
        };
        // PostgreSQL 17 insists on it for `sslnegotiation=direct`; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustls {
            config: Arc::new(config),
            tls: Arc::new(tls.clone()),
        })
    }
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let path = match roots {
        Roots::System => {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(store);
        }
        Roots::File(path) => path,
    };
    let shown = path.display();
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `sslrootcert` `{shown}`: {e}"))?
    {
        let cert = cert.map_err(|e| format!("`sslrootcert` `{shown}`: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("`sslrootcert` `{shown}`: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("`sslrootcert` `{shown}` holds no certificate"));
    }
    Ok(store)
}

type CertAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_cert(c: &ClientCert) -> Result<CertAndKey, String> {
    let (cert, key) = (c.cert.display(), c.key.display());
    let certs = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| format!("cannot read `sslcert` `{cert}`: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`sslcert` `{cert}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`sslcert` `{cert}` holds no certificate"));
    }
    // The key's bytes are never repeated: only the file's name and what is wrong with it.
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .map_err(|e| format!("cannot read a private key from `sslkey` `{key}`: {e}"))?;
    Ok((certs, key))
}

/// The certificate check of a mode: none, the chain, or the chain and the name.
#[derive(Debug)]
struct Verifier {
    /// `None`: any certificate (the handshake's signatures are still checked).
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
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

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsFailed;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, TlsFailed> {
        Ok(RustlsConnect {
            make: self.clone(),
            host: host.to_string(),
        })
    }
}

/// One handshake with `host`.
pub struct RustlsConnect {
    make: MakeRustls,
    host: String,
}

type Handshake<S> = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, TlsFailed>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = TlsFailed;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let RustlsConnect { make, host } = self;
            let name = ServerName::try_from(host.clone()).map_err(|e| TlsFailed {
                host: host.clone(),
                reason: format!("not a name or address TLS can check ({e})"),
            })?;
            tokio_rustls::TlsConnector::from(make.config)
                .connect(name, stream)
                .await
                .map(RustlsStream)
                .map_err(|e| TlsFailed {
                    reason: handshake_failure(&e, &host, &make.tls),
                    host,
                })
        })
    }
}

/// Why a handshake failed, in words: a certificate refused says which check refused it.
fn handshake_failure(e: &io::Error, host: &str, tls: &Tls) -> String {
    let roots = match &tls.roots {
        Some(Roots::File(p)) => format!("the CA file `{}` (`sslrootcert`)", p.display()),
        Some(Roots::System) => "the public web roots (no `sslrootcert` given)".into(),
        None => "no roots".into(),
    };
    let mode = tls.mode.name();
    let Some(rustls::Error::InvalidCertificate(c)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake failed (`sslmode={mode}`): {e}");
    };
    match c {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "its certificate is not valid for the name `{host}` (`sslmode={mode}` checks the name; \
                 connect by a name the certificate holds, with `hostaddr=` for the address): {c:?}"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("its certificate has expired (`sslmode={mode}`)")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("its certificate is not valid yet (`sslmode={mode}`)")
        }
        other => format!(
            "its certificate does not chain to {roots} ({}; `sslmode={mode}`)",
            in_words(&format!("{other:?}"))
        ),
    }
}

/// rustls names most certificate errors by their variant (`UnknownIssuer`): `unknown issuer`.
fn in_words(variant: &str) -> String {
    if !variant.chars().all(|c| c.is_ascii_alphanumeric()) {
        return variant.to_string();
    }
    let mut out = String::new();
    for c in variant.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A TLS session to the server, with the channel binding SCRAM may ask for.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> TlsStream for RustlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// `tls-server-end-point` (RFC 5929): the server certificate's hash, with the hash of its
    /// signature (SHA-256 for SHA-1), so that `channel_binding=require` works.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        let leaf = session.peer_certificates().and_then(|c| c.first());
        match leaf.and_then(|l| Some((l, end_point_hash(l)?))) {
            Some((leaf, hash)) => ChannelBinding::tls_server_end_point(
                ring::digest::digest(hash, leaf.as_ref()).as_ref().to_vec(),
            ),
            None => ChannelBinding::none(),
        }
    }
}

/// The hash `tls-server-end-point` uses for a certificate, from its signature algorithm.
fn end_point_hash(der: &[u8]) -> Option<&'static ring::digest::Algorithm> {
    use crate::der::tlv;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, … }, … }
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, algorithm, _) = tlv(tlv(cert)?.2)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(algorithm)? else {
        return None;
    };
    let (sha256, sha384, sha512) = (
        &ring::digest::SHA256,
        &ring::digest::SHA384,
        &ring::digest::SHA512,
    );
    if let Some(rsa) = oid.strip_prefix(RSA) {
        return match rsa {
            [0x05] | [0x0b] => Some(sha256),
            [0x0c] => Some(sha384),
            [0x0d] => Some(sha512),
            _ => None,
        };
    }
    match oid.strip_prefix(ECDSA)? {
        [0x01] | [0x03, 0x02] => Some(sha256),
        [0x03, 0x03] => Some(sha384),
        [0x03, 0x04] => Some(sha512),
        _ => None,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Tells tokio-postgres whether TLS may be skipped, and builds the connector (`None` for
/// `disable`).
///
/// # Errors
/// A file the settings name cannot be read.
pub fn connector(tls: &Tls, pg: &mut postgres::Config) -> Result<Option<MakeRustls>, String> {
    pg.ssl_mode(tls.mode.negotiation());
    match tls.mode {
        SslMode::Disable => Ok(None),
        _ => MakeRustls::new(tls).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(conninfo: &str) -> Conninfo {
        parse(conninfo, Path::new("/plans")).unwrap()
    }

    #[test]
    fn libpq_defaults_to_prefer_without_a_check() {
        let c = split("host=db.example dbname=moves user=migrator");
        assert_eq!(c.libpq, "host=db.example dbname=moves user=migrator");
        assert_eq!(
            c.tls,
            Tls {
                mode: SslMode::Prefer,
                roots: None,
                check_name: false,
                client: None
            }
        );
    }

    #[test]
    fn tls_keys_leave_the_conninfo_and_the_rest_stays_as_written() {
        let c = split(
            "host=db.example sslmode = verify-full  sslrootcert='certs/my ca.pem' \
             application_name='a \\'b\\'' sslcert=/etc/c.pem sslkey=k\\ ey.pem port=5433",
        );
        assert_eq!(
            c.libpq,
            "host=db.example application_name='a \\'b\\'' port=5433"
        );
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        assert!(c.tls.check_name);
        assert_eq!(
            c.tls.roots,
            Some(Roots::File("/plans/certs/my ca.pem".into()))
        );
        assert_eq!(
            c.tls.client,
            Some(ClientCert {
                cert: "/etc/c.pem".into(),
                key: "/plans/k ey.pem".into()
            })
        );
        // What is left still parses, into the same settings.
        let pg: postgres::Config = c.libpq.parse().unwrap();
        assert_eq!(pg.get_application_name(), Some("a 'b'"));
        assert_eq!(pg.get_ports(), [5433]);
    }

    #[test]
    fn urls_give_their_tls_parameters_percent_decoded() {
        let c = split(
            "postgresql://migrator@db.example:5433/moves?sslmode=verify-ca&connect_timeout=5&sslrootcert=%2Fetc%2Fca%20x.pem",
        );
        assert_eq!(
            c.libpq,
            "postgresql://migrator@db.example:5433/moves?connect_timeout=5"
        );
        assert_eq!(c.tls.mode, SslMode::VerifyCa);
        assert!(!c.tls.check_name);
        assert_eq!(c.tls.roots, Some(Roots::File("/etc/ca x.pem".into())));
        let only = split("postgres://db.example/moves?sslmode=require");
        assert_eq!(only.libpq, "postgres://db.example/moves");
        assert_eq!(only.tls.mode, SslMode::Require);
        assert_eq!(only.tls.roots, None);
        assert_eq!(
            split("postgres://db.example/moves").tls.mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn the_roots_follow_libpq() {
        // verify-* without a CA file: the public web roots; `system` says so explicitly.
        assert_eq!(
            split("host=h sslmode=verify-full").tls.roots,
            Some(Roots::System)
        );
        assert_eq!(
            split("host=h sslmode=verify-ca sslrootcert=system")
                .tls
                .roots,
            Some(Roots::System)
        );
        // require with a CA file checks the chain, as libpq does; disable ignores it.
        let r = split("host=h sslmode=require sslrootcert=/ca.pem").tls;
        assert_eq!(r.roots, Some(Roots::File("/ca.pem".into())));
        assert!(!r.check_name);
        assert_eq!(
            split("host=h sslmode=disable sslrootcert=/ca.pem")
                .tls
                .roots,
            None
        );
        // The last of a repeated key wins, as in libpq.
        assert_eq!(
            split("host=h sslmode=disable sslmode=require").tls.mode,
            SslMode::Require
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let err = |c: &str| parse(c, Path::new("/")).unwrap_err();
        assert!(err("host=h sslmode=verify").contains("`sslmode=verify`: expected disable"));
        assert!(err("host=h sslmode=allow").contains("use `prefer`"));
        assert!(err("host=h sslcert=c.pem").contains("without its `sslkey`"));
        assert!(err("host=h sslkey=k.pem").contains("without its `sslcert`"));
        assert!(err("host=h sslrootcert='ca.pem").contains("no closing quote"));
        assert!(err("host=h sslmode=").contains("`sslmode=` has no value"));
        assert!(err("host=h sslmode").contains("expected `key=value`"));
        assert!(err("postgres://h/d?sslmode=verify-everything").contains("verify-everything"));
    }

    #[test]
    fn the_channel_binding_hash_follows_the_signature() {
        // A minimal certificate: SEQUENCE { tbs SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend(oid);
            let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
            body.extend(alg);
            body.extend([0x03, 0x01, 0x00]);
            let mut der = vec![0x30, body.len() as u8];
            der.extend(body);
            der
        };
        let hash = |oid: &[u8]| end_point_hash(&cert(oid)).map(|a| a.output_len());
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let ecdsa_sha384 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let rsa_sha1 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let rsa_sha512 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
        let ed25519 = [0x2b, 0x65, 0x70];
        assert_eq!(hash(&ecdsa_sha256), Some(32));
        assert_eq!(hash(&ecdsa_sha384), Some(48));
        assert_eq!(hash(&rsa_sha1), Some(32), "SHA-1 is replaced by SHA-256");
        assert_eq!(hash(&rsa_sha512), Some(64));
        assert_eq!(hash(&ed25519), None);
        assert_eq!(end_point_hash(&[0x30, 0x05]), None, "truncated");
    }
}
