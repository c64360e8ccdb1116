//! TLS as a transport under the protocol drivers (rustls, ring provider):
//! the settings and their loading ([`load`]), the reloadable acceptor
//! ([`TlsAcceptor`]) and a connection's stream ([`TlsStream`]).
//!
//! The drivers see plaintext through the same calls as on a plain socket
//! ([`super::stream::Stream`]). What differs under them:
//!
//! - the first read picks the transport: a TLS handshake record (0x16)
//!   starts TLS; anything else is plain HTTP on a shared port
//!   (`--ssl-and-plain`) or refused (no extra syscall either way: the byte
//!   is read into the connection's own buffer);
//! - a write encrypts what the driver's output buffer holds in one go (one
//!   record for a small response) and writes the records with one syscall;
//! - ciphertext the socket did not take stays in rustls; the plaintext it
//!   came from is reported as not written yet (`owed`), so the driver keeps
//!   owning the flush exactly as on TCP, and the next write sends the
//!   ciphertext instead of encrypting those bytes again;
//! - a file (`pathsend`) is read in chunks and encrypted: no `sendfile`.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::{RootCertStore, SupportedCipherSuite};

use super::stream::Stream;

/// The protocols ALPN offers, in preference order, for each `--http`
/// mode: HTTP/1.1 only (`h1`), HTTP/2 first (`auto`), HTTP/2 only (`h2`).
pub const ALPN_H1: &[&[u8]] = &[b"http/1.1"];
pub const ALPN_AUTO: &[&[u8]] = &[b"h2", b"http/1.1"];
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// Plaintext encrypted per write call: bounds what rustls holds for a
/// client that does not read.
const MAX_PLAIN_PER_WRITE: usize = 256 * 1024;
/// File bytes read and encrypted per "sendfile" call over TLS.
const FILE_CHUNK: usize = 128 * 1024;
/// A TLS record of type handshake starts every TLS connection.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Answer to a plain HTTP request on a TLS-only port (`--ssl-refuse-plain`),
/// in the spirit of nginx's 497.
const PLAIN_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 36\r\nconnection: close\r\n\r\nplain HTTP sent to an HTTPS port\r\n\r\n";

// ------------------------------------------------------------- settings

/// Which client certificates are asked for (`--ssl-cert-reqs`, as
/// Python's `ssl.CERT_*` numbers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Required,
}

/// The TLS options, as given (paths are re-read on a reload).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certfile: String,
    /// None: the key is in the certificate file.
    pub keyfile: Option<String>,
    pub password: Option<String>,
    /// `--ssl-version`: Python's `ssl.PROTOCOL_*` number (or a
    /// `ssl.TLSVersion` value as the lowest version).
    pub version: i64,
    pub cert_reqs: i64,
    pub ca_certs: Option<String>,
    pub ciphers: Option<String>,
    /// `--ssl-and-plain`: plain HTTP is served on the same port.
    pub and_plain: bool,
    /// `--ssl-refuse-plain`: a plain HTTP request on a TLS-only port gets a
    /// 400 instead of a silent close.
    pub refuse_plain: bool,
    /// The ALPN list offered ([`ALPN_H1`], [`ALPN_AUTO`] or [`ALPN_H2`]).
    pub alpn: &'static [&'static [u8]],
}

/// Why the TLS settings cannot be used: names the flag and, where one is
/// at fault, the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub flag: &'static str,
    pub path: Option<String>,
    pub why: String,
}

impl ConfigError {
    fn new(flag: &'static str, path: Option<&str>, why: impl Into<String>) -> Self {
        Self {
            flag,
            path: path.map(str::to_owned),
            why: why.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{} {p}: {}", self.flag, self.why),
            None => write!(f, "{}: {}", self.flag, self.why),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A loaded configuration: what new handshakes use.
#[derive(Debug)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// The leaf certificate, PEM (the scope's `server_cert`).
    pub server_cert: Arc<str>,
}

fn read_file(flag: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(flag, Some(path), io_why(&e)))
}

fn io_why(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The protocol versions `--ssl-version` allows.
pub fn versions(
    version: i64,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], ConfigError> {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let refuse = |what: &str| {
        Err(ConfigError::new(
            "--ssl-version",
            None,
            format!("{version} ({what}) cannot be served: rustls offers TLS 1.2 and 1.3"),
        ))
    };
    match version {
        // PROTOCOL_TLS / PROTOCOL_SSLv23 and PROTOCOL_TLS_SERVER: negotiate.
        2 | 17 => Ok(&BOTH),
        // PROTOCOL_TLSv1_2: TLS 1.2 only, as Python serves it.
        5 => Ok(&TLS12),
        // ssl.TLSVersion values, as the lowest version.
        771 => Ok(&BOTH),
        772 => Ok(&TLS13),
        0 => refuse("SSL 2"),
        1 => refuse("SSL 3"),
        3 => refuse("TLS 1.0"),
        4 => refuse("TLS 1.1"),
        16 => refuse("PROTOCOL_TLS_CLIENT, a client's protocol"),
        _ => refuse("not an ssl.PROTOCOL_* value"),
    }
}

/// The OpenSSL name of a rustls suite (TLS 1.3 suites keep their IANA
/// names, as OpenSSL does).
fn openssl_name(suite: SupportedCipherSuite) -> &'static str {
    use rustls::CipherSuite as C;
    match suite.suite() {
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        _ => "",
    }
}

/// Whether an OpenSSL keyword selects `name` (an OpenSSL suite name).
/// None: not a keyword ferrule knows.
fn keyword_matches(word: &str, name: &str, tls13: bool) -> Option<bool> {
    let has = |part: &str| name.split('-').any(|p| p == part);
    Some(match word {
        "ALL" | "DEFAULT" | "HIGH" | "SECURE" | "COMPLEMENTOFDEFAULT" => true,
        "TLSv1" | "TLSv1.0" | "SSLv3" | "TLSv1.2" => !tls13,
        "TLSv1.3" => tls13,
        "ECDHE" | "EECDH" | "kECDHE" | "kEECDH" | "ECDH" => !tls13,
        "aECDSA" | "ECDSA" => has("ECDSA"),
        "aRSA" | "RSA" => has("RSA"),
        "AESGCM" => name.contains("GCM"),
        "AES" => name.contains("AES"),
        "AES128" => name.contains("AES128") || name.contains("AES_128"),
        "AES256" => name.contains("AES256") || name.contains("AES_256"),
        "CHACHA20" => name.contains("CHACHA20"),
        "SHA256" => name.ends_with("SHA256") || (has("GCM") && has("SHA256")),
        "SHA384" => name.ends_with("SHA384"),
        _ => return None,
    })
}

/// What rustls never offers: excluding it changes nothing.
fn never_offered(word: &str) -> bool {
    matches!(
        word,
        "aNULL"
            | "eNULL"
            | "NULL"
            | "MD5"
            | "RC4"
            | "DES"
            | "3DES"
            | "DSS"
            | "aDSS"
            | "PSK"
            | "SRP"
            | "EXP"
            | "EXPORT"
            | "LOW"
            | "MEDIUM"
            | "CAMELLIA"
            | "SEED"
            | "IDEA"
            | "ARIA"
            | "SHA1"
            | "SHA"
            | "kRSA"
            | "DH"
            | "EDH"
            | "DHE"
            | "kDHE"
            | "kEDH"
            | "ADH"
            | "AECDH"
            | "aPSK"
            | "kPSK"
            | "CBC"
            | "AESCCM"
            | "AESCCM8"
            | "SSLv2"
    )
}

/// The server's preference: within each TLS version, AES-128-GCM before
/// AES-256-GCM before the rest (BoringSSL's order). OpenSSL clients ask for
/// AES-256-GCM-SHA384 first; AES-128-GCM-SHA256's SHA-256 key schedule makes
/// a handshake about 7% cheaper per CPU-second and its records cheaper, at a
/// security level (128 bits) that X25519 and P-256 already set.
pub fn server_order(suites: &mut [SupportedCipherSuite]) {
    suites.sort_by_key(|s| {
        let name = openssl_name(*s);
        let tls12 = !matches!(s, SupportedCipherSuite::Tls13(_));
        let rank = if name.contains("AES_128_GCM") || name.contains("AES128-GCM") {
            0
        } else if name.contains("AES_256_GCM") || name.contains("AES256-GCM") {
            1
        } else {
            2
        };
        (tls12, rank)
    });
}

/// The suites an OpenSSL-style cipher string (`--ssl-ciphers`) selects:
/// names (OpenSSL's or IANA's) and the common keywords, `!`/`-` to exclude;
/// `+` and `@STRENGTH` only order in OpenSSL and are accepted. As in
/// OpenSSL, the list restricts TLS 1.2 suites; TLS 1.3 suites stay unless
/// the list names some of them.
pub fn select_ciphers(
    spec: &str,
    available: &[SupportedCipherSuite],
) -> Result<Vec<SupportedCipherSuite>, ConfigError> {
    let fail = |why: String| Err(ConfigError::new("--ssl-ciphers", None, why));
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut excluded: Vec<SupportedCipherSuite> = Vec::new();
    let mut named13 = false;
    for token in spec.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        if token.starts_with('@') || token.starts_with('+') {
            continue;
        }
        let (exclude, word) = match token.strip_prefix(['!', '-']) {
            Some(w) => (true, w),
            None => (false, token),
        };
        // A combination (`ECDHE+AESGCM`): every part must match.
        let parts: Vec<&str> = word.split('+').collect();
        let mut matched = Vec::new();
        let mut known = true;
        for s in available {
            let name = openssl_name(*s);
            let iana = format!("{:?}", s.suite());
            let mut all = true;
            for p in &parts {
                let hit = if *p == name || *p == iana {
                    Some(true)
                } else {
                    keyword_matches(p, name, is13(s))
                };
                match hit {
                    Some(h) => all &= h,
                    None => {
                        known = false;
                        all = false;
                    }
                }
            }
            if all {
                matched.push(*s);
            }
        }
        if exclude {
            if !known && !parts.iter().all(|p| never_offered(p)) {
                return fail(format!("unknown cipher or keyword '{word}'"));
            }
            excluded.extend(matched);
            continue;
        }
        if matched.is_empty() {
            if parts.iter().all(|p| never_offered(p)) || !known {
                let offered: Vec<&str> = available.iter().map(|s| openssl_name(*s)).collect();
                return fail(format!(
                    "'{word}' is not a cipher rustls offers (it offers {})",
                    offered.join(":")
                ));
            }
            continue;
        }
        // A TLS 1.3 suite named (not a keyword): TLS 1.3 is restricted too.
        if matched.iter().all(is13) && keyword_matches(word, "", true).is_none() {
            named13 = true;
        }
        for s in matched {
            if !chosen.iter().any(|c| c.suite() == s.suite()) {
                chosen.push(s);
            }
        }
    }
    if !named13 {
        // TLS 1.3 suites first, in rustls's order, then the TLS 1.2 ones.
        let tls12 = chosen.into_iter().filter(|s| !is13(s));
        chosen = available
            .iter()
            .copied()
            .filter(is13)
            .chain(tls12)
            .collect();
    }
    chosen.retain(|s| !excluded.iter().any(|e| e.suite() == s.suite()));
    if chosen.is_empty() {
        return fail(format!("'{spec}' selects no cipher"));
    }
    Ok(chosen)
}

/// The private key in `pem` (the key file's bytes): PKCS#8, PKCS#1 or
/// SEC1, or encrypted PKCS#8 with `password`.
fn load_key(
    pem: &[u8],
    flag: &'static str,
    path: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let text = String::from_utf8_lossy(pem);
    if let Some(block) = pem_block(&text, "ENCRYPTED PRIVATE KEY") {
        let Some(password) = password else {
            return Err(ConfigError::new(
                flag,
                Some(path),
                "the key is encrypted: give its password with --ssl-keyfile-password",
            ));
        };
        let (_, doc) = pkcs8::der::SecretDocument::from_pem(block)
            .map_err(|e| ConfigError::new(flag, Some(path), format!("bad PEM: {e}")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| ConfigError::new(flag, Some(path), format!("bad encrypted key: {e}")))?;
        let plain = info.decrypt(password).map_err(|_| {
            ConfigError::new(
                "--ssl-keyfile-password",
                Some(path),
                "wrong password for this key (or an encryption rustls cannot read)",
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(ConfigError::new(
            flag,
            Some(path),
            "a legacy OpenSSL-encrypted key; convert it to encrypted PKCS#8 \
             (openssl pkcs8 -topk8 -in KEY -out NEW)",
        ));
    }
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| ConfigError::new(flag, Some(path), "no PEM private key in it"))
}

/// The first PEM block with `label`, markers included.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

fn pem_encode(der: &[u8]) -> String {
    pkcs8::der::pem::encode_string("CERTIFICATE", pkcs8::der::pem::LineEnding::LF, der)
        .unwrap_or_default()
}

/// Builds the rustls configuration from the files the settings name.
pub fn load(s: &TlsSettings) -> Result<Loaded, ConfigError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let versions = versions(s.version)?;
    server_order(&mut provider.cipher_suites);
    if let Some(spec) = s.ciphers.as_deref() {
        provider.cipher_suites = select_ciphers(spec, &provider.cipher_suites)?;
    }
    let provider = Arc::new(provider);

    let cert_pem = read_file("--ssl-certfile", &s.certfile)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ConfigError::new(
                "--ssl-certfile",
                Some(&s.certfile),
                format!("bad PEM: {e:?}"),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            "--ssl-certfile",
            Some(&s.certfile),
            "no PEM certificate in it",
        ));
    }
    let (key_flag, key_path, key_pem) = match &s.keyfile {
        Some(k) => ("--ssl-keyfile", k.as_str(), read_file("--ssl-keyfile", k)?),
        None => ("--ssl-certfile", s.certfile.as_str(), cert_pem.clone()),
    };
    let key = load_key(&key_pem, key_flag, key_path, s.password.as_deref())?;
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| ConfigError::new(key_flag, Some(key_path), format!("unusable key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    if certified.keys_match().is_err() {
        return Err(ConfigError::new(
            key_flag,
            Some(key_path),
            format!("the key does not match the certificate in {}", s.certfile),
        ));
    }

    let auth = match s.cert_reqs {
        0 => ClientAuth::None,
        1 => ClientAuth::Optional,
        2 => ClientAuth::Required,
        n => {
            return Err(ConfigError::new(
                "--ssl-cert-reqs",
                None,
                format!("{n} is not 0 (none), 1 (optional) or 2 (required)"),
            ))
        }
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ConfigError::new("--ssl-version", None, e.to_string()))?;
    let builder = if auth == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let Some(ca) = s.ca_certs.as_deref() else {
            return Err(ConfigError::new(
                "--ssl-cert-reqs",
                None,
                "client certificates need --ssl-ca-certs to verify them against",
            ));
        };
        let ca_pem = read_file("--ssl-ca-certs", ca)?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca_pem) {
            let c = c.map_err(|e| {
                ConfigError::new("--ssl-ca-certs", Some(ca), format!("bad PEM: {e:?}"))
            })?;
            roots
                .add(c)
                .map_err(|e| ConfigError::new("--ssl-ca-certs", Some(ca), e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ConfigError::new(
                "--ssl-ca-certs",
                Some(ca),
                "no PEM certificate in it",
            ));
        }
        let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if auth == ClientAuth::Optional {
            v = v.allow_unauthenticated();
        }
        let v = v
            .build()
            .map_err(|e| ConfigError::new("--ssl-ca-certs", Some(ca), e.to_string()))?;
        builder.with_client_cert_verifier(v)
    };
    let server_cert: Arc<str> = pem_encode(&certs[0]).into();
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError::new(key_flag, Some(key_path), e.to_string()))?;
    config.alpn_protocols = s.alpn.iter().map(|p| p.to_vec()).collect();
    // The server's order decides, as with Python's ssl module (uvicorn), whose
    // contexts set OP_CIPHER_SERVER_PREFERENCE; see `server_order`.
    config.ignore_client_order = true;
    Ok(Loaded {
        config: Arc::new(config),
        server_cert,
    })
}

// ------------------------------------------------------------- acceptor

/// The configuration new handshakes use, replaceable at run time (SIGHUP):
/// a connection keeps the configuration it started with.
pub struct TlsAcceptor {
    settings: TlsSettings,
    current: RwLock<Arc<Loaded>>,
}

impl TlsAcceptor {
    pub fn new(settings: TlsSettings) -> Result<Self, ConfigError> {
        let loaded = load(&settings)?;
        Ok(Self {
            settings,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let loaded = load(&self.settings)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// `stream`, under TLS (or, on a shared port, plain once its first byte
    /// says so).
    /// With `proxy_header`, the connection starts with a PROXY protocol
    /// header read as raw bytes (see [`TlsStream::end_raw`]).
    pub fn wrap(self: &Arc<Self>, stream: Stream, proxy_header: bool) -> Stream {
        Stream::Tls(Box::new(TlsStream {
            io: stream,
            mode: AtomicU8::new(if proxy_header { RAW } else { SNIFF }),
            state: Mutex::new(TlsState::default()),
            info: OnceLock::new(),
            acceptor: self.clone(),
        }))
    }
}

// --------------------------------------------------------------- stream

/// What the scope's `tls` extension reports for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub server_cert: Arc<str>,
    /// PEM, the client's certificate first.
    pub client_cert_chain: Vec<String>,
    /// The client certificate's subject, RFC 4514.
    pub client_cert_name: Option<String>,
    /// 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3).
    pub tls_version: u16,
    /// The IANA number of the cipher suite.
    pub cipher_suite: u16,
    /// The protocol ALPN chose, if any.
    pub alpn: Option<Vec<u8>>,
}

/// A TLS failure (a bad handshake, a bad record, not TLS at all): the
/// connection closes with `tls_error`.
#[derive(Debug)]
pub struct TlsFailure(pub String);

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// Whether a read error is a TLS failure (rather than the socket's).
pub fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TlsFailure>())
}

const SNIFF: u8 = 0;
const PLAIN: u8 = 1;
const TLS: u8 = 2;
/// Before a PROXY protocol header is read: raw bytes, no decision yet.
const RAW: u8 = 3;

#[derive(Default)]
struct TlsState {
    conn: Option<ServerConnection>,
    server_cert: Option<Arc<str>>,
    /// Plaintext bytes reported as not written whose ciphertext is in
    /// rustls: the next write reports them once that ciphertext left.
    owed: usize,
    /// Why the connection failed, for the debug line.
    error: Option<String>,
}

pub struct TlsStream {
    io: Stream,
    mode: AtomicU8,
    state: Mutex<TlsState>,
    info: OnceLock<Arc<TlsInfo>>,
    acceptor: Arc<TlsAcceptor>,
}

/// rustls reads ciphertext through this: one `recv` per call; a short read
/// drained the socket, so tokio's cached readiness is cleared at once (a
/// later edge sets it again), saving the read that would return EAGAIN.
struct SockRead<'a>(&'a Stream);

impl Read for SockRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.try_read(buf)?;
        if n > 0 && n < buf.len() {
            self.0.clear_read_ready();
        }
        Ok(n)
    }
}

struct SockWrite<'a>(&'a Stream);

impl Write for SockWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn failure(st: &mut TlsState, why: String) -> io::Error {
    st.error = Some(why.clone());
    io::Error::new(io::ErrorKind::InvalidData, TlsFailure(why))
}

impl TlsStream {
    fn lock(&self) -> MutexGuard<'_, TlsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mode(&self) -> u8 {
        self.mode.load(Ordering::Relaxed)
    }

    pub fn inner(&self) -> &Stream {
        &self.io
    }

    /// True while reads go to the socket as they are (plain HTTP, or a
    /// PROXY header before the transport is known).
    pub fn reads_raw(&self) -> bool {
        matches!(self.mode(), PLAIN | RAW)
    }

    /// The TLS handshake is not done on a connection that must do one
    /// (a TLS-only port): the header deadline applies from the accept, as
    /// to a request head that began. (On a port shared with plain HTTP the
    /// keep-alive deadline from the accept bounds it.)
    pub fn handshake_pending(&self) -> bool {
        match self.mode() {
            SNIFF | RAW => !self.acceptor.settings.and_plain,
            TLS => self
                .lock()
                .conn
                .as_ref()
                .is_some_and(|c| c.is_handshaking()),
            _ => false,
        }
    }

    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Writes all queued ciphertext; WouldBlock if the socket is full.
    fn flush_tls(&self, conn: &mut ServerConnection) -> io::Result<()> {
        while conn.wants_write() {
            conn.write_tls(&mut SockWrite(&self.io))?;
        }
        Ok(())
    }

    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self.mode() {
            PLAIN | RAW => self.io.try_read_buf(buf),
            TLS => self.read_tls(buf),
            _ => self.sniff(buf),
        }
    }

    /// The first read: its first byte picks the transport.
    fn sniff(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let start = buf.len();
        let n = self.io.try_read_buf(buf)?;
        if n == 0 {
            return Ok(0);
        }
        self.decide(buf, start)
    }

    /// `--proxy-protocol`: the PROXY header was read raw; the transport is
    /// decided by what follows it (`buf`: the bytes after the header, if
    /// any, which become plaintext or go to rustls).
    pub fn end_raw(&self, buf: &mut BytesMut) -> io::Result<()> {
        self.mode.store(SNIFF, Ordering::Relaxed);
        if buf.is_empty() {
            return Ok(());
        }
        match self.decide(buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// The first bytes (`buf[start..]`) pick the transport.
    fn decide(&self, buf: &mut BytesMut, start: usize) -> io::Result<usize> {
        let n = buf.len() - start;
        let settings = self.acceptor.settings();
        if buf[start] != HANDSHAKE_RECORD {
            if settings.and_plain {
                self.mode.store(PLAIN, Ordering::Relaxed);
                return Ok(n);
            }
            let http = buf[start].is_ascii_uppercase();
            buf.truncate(start);
            if http && settings.refuse_plain {
                let _ = self.io.try_write(PLAIN_REFUSAL);
            }
            let mut st = self.lock();
            let why = if http {
                "plain HTTP sent to an HTTPS port"
            } else {
                "not a TLS handshake"
            };
            return Err(failure(&mut st, why.into()));
        }
        let loaded = self.acceptor.current();
        let mut conn = ServerConnection::new(loaded.config.clone())
            .map_err(|e| io::Error::other(e.to_string()))?;
        // Writes encrypt only once the previous ciphertext left (see
        // `try_send`), which bounds what rustls holds; its own limit would
        // cut a write short instead.
        conn.set_buffer_limit(None);
        let mut st = self.lock();
        let mut bytes = &buf[start..];
        while !bytes.is_empty() {
            if let Err(e) = conn.read_tls(&mut bytes) {
                st.error = Some(e.to_string());
                return Err(failure(&mut st, e.to_string()));
            }
        }
        buf.truncate(start);
        st.conn = Some(conn);
        st.server_cert = Some(loaded.server_cert.clone());
        drop(st);
        self.mode.store(TLS, Ordering::Relaxed);
        self.read_tls(buf)
    }

    /// Plaintext into `buf`: what rustls holds, else ciphertext from the
    /// socket until a record decrypts or the socket is drained.
    fn read_tls(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(conn) = st.conn.as_mut() else {
            return Ok(0);
        };
        loop {
            let io_state = match conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // rustls queued an alert for the peer: best effort.
                    let _ = self.flush_tls(conn);
                    let why = e.to_string();
                    return Err(failure(st, why));
                }
            };
            let ready = io_state.plaintext_bytes_to_read();
            if ready > 0 {
                let start = buf.len();
                let room = (buf.capacity() - start).max(1024);
                let take = ready.min(room);
                buf.resize(start + take, 0);
                let n = conn.reader().read(&mut buf[start..]).unwrap_or(0);
                buf.truncate(start + n);
                return Ok(n);
            }
            if io_state.peer_has_closed() {
                return Ok(0);
            }
            if conn.wants_write() {
                // Handshake flights, tickets, alerts: if the socket is full
                // they wait for the next write or `readable()`.
                match self.flush_tls(conn) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            match conn.read_tls(&mut SockRead(&self.io)) {
                Ok(0) => return Ok(0),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a read would not wait for the socket: plaintext or a close
    /// already in rustls (or an error to report). Also says whether
    /// ciphertext waits for the socket.
    fn read_ready(&self) -> (bool, bool) {
        let mut st = self.lock();
        let Some(conn) = st.conn.as_mut() else {
            return (false, false);
        };
        match conn.process_new_packets() {
            Ok(s) => (
                s.plaintext_bytes_to_read() > 0 || s.peer_has_closed(),
                conn.wants_write(),
            ),
            Err(_) => (true, false),
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        loop {
            if self.mode() != TLS {
                return self.io.socket_readable().await;
            }
            let (ready, pending) = self.read_ready();
            if ready {
                return Ok(());
            }
            if !pending {
                return self.io.socket_readable().await;
            }
            tokio::select! {
                r = self.io.socket_readable() => return r,
                w = self.io.socket_writable() => {
                    w?;
                    let mut st = self.lock();
                    if let Some(conn) = st.conn.as_mut() {
                        match self.flush_tls(conn) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.io.socket_writable().await
    }

    /// Encrypts up to [`MAX_PLAIN_PER_WRITE`] of `buf` and writes the
    /// records with one syscall. With `more` (a file follows) the records
    /// wait for the file's first chunk. See the module doc for `owed`.
    pub fn try_send(&self, buf: &[u8], more: bool) -> io::Result<usize> {
        if self.mode() != TLS {
            return self.io.try_send(buf, more);
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(conn) = st.conn.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if st.owed > 0 {
            // The ciphertext of these bytes waits in rustls: send it first.
            self.flush_tls(conn)?;
            let n = std::mem::take(&mut st.owed);
            debug_assert!(n <= buf.len());
            return Ok(n.min(buf.len()));
        }
        // Any other ciphertext waiting (a head sent with `more`, session
        // tickets) leaves with these bytes' records in the same write.
        let take = buf.len().min(MAX_PLAIN_PER_WRITE);
        conn.writer().write_all(&buf[..take])?;
        if more {
            return Ok(take);
        }
        match self.flush_tls(conn) {
            Ok(()) => Ok(take),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                st.owed = take;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// A file's bytes over TLS: read, encrypted, written (`sendfile` cannot
    /// encrypt). Ok(0): the file ended early.
    pub fn try_sendfile(
        &self,
        file: &std::fs::File,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        if self.mode() != TLS {
            return self.io.try_sendfile(file, offset, count);
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(conn) = st.conn.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if st.owed > 0 {
            self.flush_tls(conn)?;
            let n = std::mem::take(&mut st.owed);
            *offset += n as u64;
            return Ok(n);
        }
        // The head's records (sent with `more`) leave with the file's first
        // chunk in one write, as `MSG_MORE` makes them do over TCP.
        let mut chunk = vec![0u8; count.min(FILE_CHUNK)];
        let n = loop {
            match file.read_at(&mut chunk, *offset) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(0);
        }
        conn.writer().write_all(&chunk[..n])?;
        match self.flush_tls(conn) {
            Ok(()) => {
                *offset += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                st.owed = n;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Before the FIN of a graceful close: TLS's own end (close_notify).
    pub fn close_notify(&self) {
        if self.mode() != TLS {
            return;
        }
        let mut st = self.lock();
        // A handshake cut short by a deadline gets no alert: nothing was
        // said over TLS yet.
        if let Some(conn) = st.conn.as_mut().filter(|c| !c.is_handshaking()) {
            conn.send_close_notify();
            let _ = self.flush_tls(conn);
        }
    }

    /// The `tls` extension's values, once the handshake is done.
    pub fn info(&self) -> Option<Arc<TlsInfo>> {
        if self.mode() != TLS {
            return None;
        }
        if let Some(i) = self.info.get() {
            return Some(i.clone());
        }
        let st = self.lock();
        let conn = st.conn.as_ref()?;
        if conn.is_handshaking() {
            return None;
        }
        let chain: Vec<String> = conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| pem_encode(d)).collect())
            .unwrap_or_default();
        let name = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|d| subject_rfc4514(d));
        let info = TlsInfo {
            server_cert: st.server_cert.clone().unwrap_or_else(|| "".into()),
            client_cert_chain: chain,
            client_cert_name: name,
            tls_version: conn.protocol_version().map_or(0, u16::from),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map_or(0, |s| u16::from(s.suite())),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        drop(st);
        Some(self.info.get_or_init(|| Arc::new(info)).clone())
    }

    /// Bytes rustls holds for this connection (buffers), for the memory
    /// figures.
    pub fn is_tls(&self) -> bool {
        self.mode() == TLS
    }
}

/// The subject of a DER certificate as RFC 4514 writes it (last RDN first).
pub fn subject_rfc4514(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let key = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                .map(str::to_owned)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = attr.as_str().map(escape_rfc4514).unwrap_or_else(|_| {
                let hex: String = attr.as_slice().iter().map(|b| format!("{b:02x}")).collect();
                format!("#{hex}")
            });
            parts.push(format!("{key}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape_rfc4514(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
