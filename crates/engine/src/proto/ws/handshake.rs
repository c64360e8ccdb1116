//! The opening handshake (RFC 6455 §4.2): is a request a WebSocket upgrade,
//! is it a valid one, and the values of the `101` answer.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::proto::h1::{RequestHead, Version};

/// What a request is, for the WebSocket driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// Not a WebSocket upgrade: plain HTTP.
    No,
    /// A valid upgrade; `accept` is the `Sec-WebSocket-Accept` value.
    Valid { accept: String },
    /// An upgrade that breaks a rule: 400, and why.
    Bad(&'static str),
    /// Another protocol version: 426 with `Sec-WebSocket-Version: 13`.
    Version,
}

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    B64.encode(h.finalize())
}

/// Does the comma-separated `value` hold `token` (any case)?
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Every value of header `name` (lower case), in order.
fn values<'h>(head: &'h RequestHead, name: &'h [u8]) -> impl Iterator<Item = &'h [u8]> + 'h {
    head.headers
        .iter()
        .filter(move |(n, _)| head.bytes(*n) == name)
        .map(move |(_, v)| head.bytes(*v))
}

/// Classifies `head`. An upgrade is asked for by `Upgrade: websocket` with
/// `Connection: upgrade`; it must then be a `GET` over HTTP/1.1 with one
/// `Sec-WebSocket-Key` of 16 base64 bytes and `Sec-WebSocket-Version: 13`.
pub fn check_upgrade(head: &RequestHead) -> Upgrade {
    // One scan of the header names for a plain request (no Upgrade).
    if !values(head, b"upgrade").any(|v| has_token(v, b"websocket")) {
        return Upgrade::No;
    }
    if !values(head, b"connection").any(|v| has_token(v, b"upgrade")) {
        return Upgrade::No;
    }
    if head.method() != b"GET" {
        return Upgrade::Bad("a WebSocket upgrade must be a GET");
    }
    if head.version != Version::Http11 {
        return Upgrade::Bad("a WebSocket upgrade needs HTTP/1.1");
    }
    let mut versions = values(head, b"sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v == b"13" => {}
        (None, _) => return Upgrade::Bad("missing Sec-WebSocket-Version"),
        _ => return Upgrade::Version,
    }
    let mut keys = values(head, b"sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => return Upgrade::Bad("missing Sec-WebSocket-Key"),
        _ => return Upgrade::Bad("more than one Sec-WebSocket-Key"),
    };
    match B64.decode(key) {
        Ok(raw) if raw.len() == 16 => Upgrade::Valid {
            accept: accept_key(key),
        },
        _ => Upgrade::Bad("Sec-WebSocket-Key is not 16 bytes in base64"),
    }
}

/// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in order.
pub fn subprotocols(head: &RequestHead) -> Vec<&str> {
    values(head, b"sec-websocket-protocol")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
        .filter_map(|t| std::str::from_utf8(t).ok())
        .collect()
}

/// The extension offers (`Sec-WebSocket-Extensions`), each header's value.
pub fn extension_offers(head: &RequestHead) -> Vec<&[u8]> {
    values(head, b"sec-websocket-extensions").collect()
}

/// Headers of the app's `websocket.accept` that ferrule writes itself
/// (`Sec-WebSocket-Protocol` only when the app named a `subprotocol`).
pub fn is_reserved_header(name: &[u8], subprotocol_given: bool) -> bool {
    [
        &b"upgrade"[..],
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
    ]
    .iter()
    .any(|r| name.eq_ignore_ascii_case(r))
        || (subprotocol_given && name.eq_ignore_ascii_case(b"sec-websocket-protocol"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::h1::{parse_request_head, Limits};

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET /chat HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let mut buf = bytes::BytesMut::from(raw.as_bytes());
        parse_request_head(&mut buf, &Limits::default())
            .unwrap()
            .unwrap()
    }

    const OK: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                      Sec-WebSocket-Version: 13\r\n";

    #[test]
    fn the_rfc_sample_key_gets_the_rfc_accept_value() {
        assert_eq!(
            check_upgrade(&head(OK)),
            Upgrade::Valid {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
    }

    #[test]
    fn a_request_without_both_upgrade_headers_is_plain_http() {
        assert_eq!(check_upgrade(&head("")), Upgrade::No);
        assert_eq!(check_upgrade(&head("Upgrade: websocket\r\n")), Upgrade::No);
        assert_eq!(
            check_upgrade(&head("Upgrade: h2c\r\nConnection: upgrade\r\n")),
            Upgrade::No
        );
    }

    #[test]
    fn bad_keys_are_400_and_other_versions_426() {
        let bad_key = OK.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        assert!(matches!(check_upgrade(&head(&bad_key)), Upgrade::Bad(_)));
        let no_key = "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n";
        assert!(matches!(check_upgrade(&head(no_key)), Upgrade::Bad(_)));
        let v8 = OK.replace("Version: 13", "Version: 8");
        assert_eq!(check_upgrade(&head(&v8)), Upgrade::Version);
    }

    #[test]
    fn subprotocols_are_listed_in_order() {
        let h = head("Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: x\r\n");
        assert_eq!(subprotocols(&h), vec!["chat", "superchat", "x"]);
    }

    #[test]
    fn the_apps_accept_headers_cannot_replace_the_handshakes() {
        assert!(is_reserved_header(b"Upgrade", false));
        assert!(is_reserved_header(b"sec-websocket-accept", false));
        assert!(!is_reserved_header(b"x-extra", true));
        // The app may name its subprotocol by header when it gives no
        // `subprotocol` key.
        assert!(!is_reserved_header(b"Sec-WebSocket-Protocol", false));
        assert!(is_reserved_header(b"Sec-WebSocket-Protocol", true));
    }
}
