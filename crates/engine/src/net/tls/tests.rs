use std::io::{Read, Write};
use std::net::TcpStream as StdTcp;
use std::path::PathBuf;

use super::*;

fn suites() -> Vec<SupportedCipherSuite> {
    rustls::crypto::ring::default_provider().cipher_suites
}

fn names(list: &[SupportedCipherSuite]) -> Vec<&'static str> {
    list.iter().map(|s| openssl_name(*s)).collect()
}

#[test]
fn server_order_puts_aes_128_gcm_first_in_each_version() {
    let mut all = suites();
    server_order(&mut all);
    assert_eq!(
        names(&all),
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ]
    );
}

#[test]
fn cipher_lists_select_tls12_suites_and_keep_tls13() {
    let all = suites();
    let chosen = select_ciphers("ECDHE+AESGCM:!aNULL:!MD5", &all).unwrap();
    let n = names(&chosen);
    assert!(n.contains(&"TLS_AES_128_GCM_SHA256"));
    assert!(n.contains(&"ECDHE-RSA-AES128-GCM-SHA256"));
    assert!(!n
        .iter()
        .any(|s| s.contains("CHACHA20-POLY1305") && s.starts_with("ECDHE")));
    let one = select_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384", &all).unwrap();
    assert_eq!(
        names(&one)
            .iter()
            .filter(|s| s.starts_with("ECDHE"))
            .count(),
        1
    );
    // TLS 1.3 names restrict TLS 1.3.
    let only = select_ciphers("TLS_CHACHA20_POLY1305_SHA256", &all).unwrap();
    assert_eq!(names(&only), ["TLS_CHACHA20_POLY1305_SHA256"]);
    // uvicorn's default string selects everything.
    assert_eq!(select_ciphers("TLSv1", &all).unwrap().len(), all.len());
}

#[test]
fn unknown_or_impossible_ciphers_are_refused_naming_the_flag() {
    let all = suites();
    for spec in ["RC4-SHA", "FOO", "AES128-SHA", "!BOGUS"] {
        let e = select_ciphers(spec, &all).unwrap_err();
        assert_eq!(e.flag, "--ssl-ciphers", "{spec}");
    }
    assert!(select_ciphers("ECDHE:!ECDHE:!TLSv1.3", &all).is_err());
}

#[test]
fn ssl_versions_map_to_rustls_versions() {
    assert_eq!(versions(17).unwrap().len(), 2);
    assert_eq!(versions(2).unwrap().len(), 2);
    assert_eq!(
        versions(5).unwrap()[0].version,
        rustls::ProtocolVersion::TLSv1_2
    );
    assert_eq!(
        versions(772).unwrap()[0].version,
        rustls::ProtocolVersion::TLSv1_3
    );
    for refused in [0, 1, 3, 4, 16, 99] {
        assert_eq!(versions(refused).unwrap_err().flag, "--ssl-version");
    }
}

#[test]
fn rfc4514_escapes_specials() {
    assert_eq!(escape_rfc4514("a,b+c"), "a\\,b\\+c");
    assert_eq!(escape_rfc4514(" x "), "\\ x\\ ");
    assert_eq!(escape_rfc4514("#x"), "\\#x");
}

struct Files {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

fn files(tag: &str) -> Files {
    let dir = std::env::temp_dir().join(format!("ferrule-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    Files { dir, ca, ca_key }
}

fn settings(f: &Files) -> TlsSettings {
    TlsSettings {
        certfile: f.dir.join("cert.pem").display().to_string(),
        keyfile: Some(f.dir.join("key.pem").display().to_string()),
        password: None,
        version: 17,
        cert_reqs: 0,
        ca_certs: None,
        ciphers: None,
        and_plain: true,
        refuse_plain: false,
        alpn: super::ALPN_H1,
    }
}

#[test]
fn loading_names_the_flag_and_file_at_fault() {
    let f = files("load");
    assert!(load(&settings(&f)).is_ok());
    let mut s = settings(&f);
    s.keyfile = Some(f.dir.join("nope.pem").display().to_string());
    let e = load(&s).unwrap_err();
    assert_eq!(e.flag, "--ssl-keyfile");
    assert!(e.to_string().ends_with("nope.pem: no such file"), "{e}");
    // A key that is not the certificate's.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(f.dir.join("other.pem"), other.serialize_pem()).unwrap();
    s.keyfile = Some(f.dir.join("other.pem").display().to_string());
    let e = load(&s).unwrap_err();
    assert!(e.why.starts_with("the key does not match"), "{e}");
    let _ = (&f.ca, &f.ca_key);
}

/// A rustls client on a blocking socket in a thread, the server side
/// through `TlsStream` as the driver uses it.
fn client_config(f: &Files) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(f.ca.der().clone()).unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

async fn read_some(stream: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(16 * 1024);
        }
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(stream: &Stream, mut data: &[u8]) {
    while !data.is_empty() {
        match stream.try_send(data, false) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await.unwrap(),
            Err(e) => panic!("{e}"),
        }
    }
}

fn serve_one<F>(s: TlsSettings, client: F, check: impl FnOnce(&Stream, &[u8]))
where
    F: FnOnce(std::net::SocketAddr) + Send + 'static,
{
    let acceptor = Arc::new(TlsAcceptor::new(s).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || client(addr));
        let (sock, _) = listener.accept().await.unwrap();
        let stream = acceptor.wrap(Stream::Tcp(sock), false);
        let mut buf = BytesMut::with_capacity(16 * 1024);
        while !buf.ends_with(b"\r\n\r\n") {
            let n = read_some(&stream, &mut buf).await.unwrap();
            assert!(n > 0, "early EOF");
        }
        // A response bigger than a socket buffer: the `owed` path.
        let big = vec![b'x'; 3 << 20];
        write_all(&stream, b"HTTP/1.1 200 OK\r\n\r\n").await;
        write_all(&stream, &big).await;
        check(&stream, &buf);
        stream.shutdown_write();
        peer.join().unwrap();
    });
}

#[test]
fn tls_round_trip_with_a_big_response() {
    let f = files("rt");
    let config = client_config(&f);
    serve_one(
        settings(&f),
        move |addr| {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config, name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, StdTcp::connect(addr).unwrap());
            tls.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 65536];
            while got.len() < 19 + (3 << 20) {
                // Slow at first, so the server's socket fills.
                if got.len() < 1 << 20 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                let n = tls.read(&mut chunk).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n\r\nxxx"));
            assert_eq!(got.len(), 19 + (3 << 20));
        },
        |stream, request| {
            assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
            let info = stream.tls_info().unwrap();
            assert_eq!(info.tls_version, 0x0304);
            // rustls's client asks for AES-256 first; the server's order wins.
            assert_eq!(info.cipher_suite, 0x1301, "TLS_AES_128_GCM_SHA256");
            assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
            assert!(info.server_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        },
    );
}

#[test]
fn plain_http_on_a_shared_port() {
    let f = files("plain");
    serve_one(
        settings(&f),
        |addr| {
            let mut s = StdTcp::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n\r\nxxx"));
        },
        |stream, request| {
            assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
            assert!(stream.tls_info().is_none());
        },
    );
}

#[test]
fn bytes_that_are_not_tls_fail_on_a_tls_only_port() {
    let f = files("refuse");
    let mut s = settings(&f);
    s.and_plain = false;
    let acceptor = Arc::new(TlsAcceptor::new(s).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut s = StdTcp::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            got
        });
        let (sock, _) = listener.accept().await.unwrap();
        let stream = acceptor.wrap(Stream::Tcp(sock), false);
        let mut buf = BytesMut::with_capacity(4096);
        let e = read_some(&stream, &mut buf).await.unwrap_err();
        assert!(is_tls_failure(&e));
        assert_eq!(
            stream.tls_error().as_deref(),
            Some("plain HTTP sent to an HTTPS port")
        );
        drop(stream);
        assert_eq!(peer.join().unwrap(), b"");
    });
}
