//! `--proxy-protocol`: the PROXY protocol header (v1 text or v2 binary) a
//! load balancer (HAProxy, AWS NLB, ...) sends before the first byte of the
//! client's stream, telling the address of the client it accepted.
//!
//! The parsing is the `ppp` crate's (docs/decisions.md, "PROXY protocol");
//! this module only turns its result into what the driver needs: how many
//! bytes the header took, and the client address it names.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use ppp::{v1, v2, HeaderResult, PartialResult};

/// A v1 header is at most 107 bytes; a v2 header at most 16 + 65535.
pub const MAX_HEADER: usize = 16 + u16::MAX as usize;
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes the header took at the start of the stream.
    pub len: usize,
    /// The client's address, or None where the header names none (v2
    /// `LOCAL` as in health checks, v1 `UNKNOWN`, v2 unspecified or Unix
    /// addresses): the socket's own peer then stays the client.
    pub source: Option<SocketAddr>,
}

/// Why a stream does not start with a valid header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad PROXY protocol header: {0}")]
pub struct BadHeader(pub String);

/// Parses the header at the start of `buf`: Ok(None) while it is
/// incomplete (read more and call again), an error as soon as the bytes
/// cannot start a valid header (a missing one included: HTTP bytes are not
/// a header).
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, BadHeader> {
    // ppp 2.3 misreads some partial v1 lines (one that ends just after the
    // source port's space is "an invalid port"), so a v1 line goes to it
    // only whole, up to its LF; before that only its prefix is checked.
    let v1 = !buf.is_empty() && buf[0] == V1_PREFIX[0];
    let buf = if v1 {
        match buf.iter().take(V1_MAX).position(|&b| b == b'\n') {
            Some(lf) => &buf[..=lf],
            None if buf.len() >= V1_MAX => {
                return Err(BadHeader("a v1 header longer than 107 bytes".into()))
            }
            None if buf.starts_with(V1_PREFIX) || V1_PREFIX.starts_with(buf) => return Ok(None),
            None => return Err(BadHeader("no PROXY protocol signature".into())),
        }
    } else {
        buf
    };
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => Ok(Some(ProxyHeader {
            len: h.header.len(),
            source: match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddrV4::new(a.source_address, a.source_port).into())
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddrV6::new(a.source_address, a.source_port, 0, 0).into())
                }
                v1::Addresses::Unknown => None,
            },
        })),
        HeaderResult::V2(Ok(h)) => Ok(Some(ProxyHeader {
            len: h.len(),
            source: match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddrV4::new(a.source_address, a.source_port).into())
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddrV6::new(a.source_address, a.source_port, 0, 0).into())
                }
                (v2::Command::Proxy, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            },
        })),
        HeaderResult::V1(Err(e)) => Err(BadHeader(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(BadHeader(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    fn v2(command: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = SIG.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn v2_ipv4(command: u8, tlvs: &[u8]) -> Vec<u8> {
        let mut a = vec![192, 0, 2, 7, 10, 0, 0, 1];
        a.extend_from_slice(&51234u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        v2(command, 0x11, &a, tlvs)
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_tcp4_sets_the_source_and_leaves_what_follows() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n";
        let mut buf = h.to_vec();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let got = parse(&buf).unwrap().unwrap();
        assert_eq!(got.len, h.len());
        assert_eq!(got.source, addr("192.0.2.7:51234"));
    }

    #[test]
    fn v1_tcp6_sets_the_source() {
        let buf = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n";
        let got = parse(buf).unwrap().unwrap();
        assert_eq!(got.len, buf.len());
        assert_eq!(got.source, addr("[2001:db8::7]:40000"));
    }

    #[test]
    fn v1_unknown_names_no_client() {
        let got = parse(b"PROXY UNKNOWN\r\nGET").unwrap().unwrap();
        assert_eq!(
            got,
            ProxyHeader {
                len: 15,
                source: None
            }
        );
        // The spec lets a sender put addresses after UNKNOWN; they are ignored.
        let buf = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(parse(buf).unwrap().unwrap().source, None);
    }

    #[test]
    fn v2_proxy_ipv4_sets_the_source() {
        let h = v2_ipv4(1, &[]);
        let mut buf = h.clone();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let got = parse(&buf).unwrap().unwrap();
        assert_eq!(got.len, h.len());
        assert_eq!(got.source, addr("192.0.2.7:51234"));
    }

    #[test]
    fn v2_proxy_ipv6_with_tlvs_skips_the_tlvs() {
        let mut a = Vec::new();
        a.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(&40000u16.to_be_bytes());
        a.extend_from_slice(&80u16.to_be_bytes());
        // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com", a NOOP.
        let mut tlvs = vec![0x01, 0, 2, b'h', b'2', 0x02, 0, 11];
        tlvs.extend_from_slice(b"example.com");
        tlvs.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
        let h = v2(1, 0x21, &a, &tlvs);
        let got = parse(&h).unwrap().unwrap();
        assert_eq!(got.len, h.len());
        assert_eq!(got.source, addr("[2001:db8::7]:40000"));
    }

    #[test]
    fn v2_local_names_no_client() {
        // HAProxy's health checks: LOCAL, usually with no address at all.
        let h = v2(0, 0x00, &[], &[]);
        assert_eq!(
            parse(&h).unwrap().unwrap(),
            ProxyHeader {
                len: 16,
                source: None
            }
        );
        // LOCAL with addresses: still the socket's own peer.
        let h = v2_ipv4(0, &[]);
        assert_eq!(parse(&h).unwrap().unwrap().source, None);
    }

    #[test]
    fn v2_unix_addresses_name_no_client() {
        let h = v2(1, 0x31, &[0u8; 216], &[]);
        assert_eq!(parse(&h).unwrap().unwrap().source, None);
    }

    #[test]
    fn a_header_split_over_reads_is_incomplete_until_its_last_byte() {
        let mut v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n".to_vec();
        let mut v2 = v2_ipv4(1, &[0x04, 0, 2, 0, 0]);
        for h in [&mut v1, &mut v2] {
            let full = h.len();
            h.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            for n in 0..full {
                assert_eq!(parse(&h[..n]), Ok(None), "{n} bytes of {full}");
            }
            assert_eq!(parse(&h[..full]).unwrap().unwrap().len, full);
            assert_eq!(parse(h).unwrap().unwrap().len, full);
        }
    }

    #[test]
    fn http_bytes_where_a_header_must_be_are_refused_at_once() {
        for buf in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /",
            b"PUT",
            b"G",
            b"\r\n\r\n\0\r\nQUIX\n",
        ] {
            assert!(parse(buf).is_err(), "{buf:?}");
        }
    }

    #[test]
    fn garbled_headers_are_refused() {
        for buf in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443 extra\r\n"[..],
            b"PROXY TCP4 2001:db8::7 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\n",
            b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY tcp4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY\r\n",
        ] {
            assert!(parse(buf).is_err(), "{:?}", String::from_utf8_lossy(buf));
        }
        // Version 1 in a binary header, an unknown command, an unknown family,
        // a length too short for its addresses.
        let mut h = v2_ipv4(1, &[]);
        h[12] = 0x11;
        assert!(parse(&h).is_err());
        let mut h = v2_ipv4(1, &[]);
        h[12] = 0x22;
        assert!(parse(&h).is_err());
        let mut h = v2_ipv4(1, &[]);
        h[13] = 0x41;
        assert!(parse(&h).is_err());
        let h = v2(1, 0x11, &[1, 2, 3, 4], &[]);
        assert!(parse(&h).is_err());
    }

    #[test]
    fn a_v1_header_longer_than_107_bytes_is_refused() {
        let mut buf = b"PROXY UNKNOWN ".to_vec();
        buf.resize(107, b'x');
        assert!(parse(&buf).is_err());
        buf.extend_from_slice(b"\r\n");
        assert!(parse(&buf).is_err());
    }

    #[test]
    fn a_v2_header_of_the_largest_length_is_read_whole() {
        let tlvs = {
            // One NOOP TLV filling the rest of a 65535-byte payload.
            let n = u16::MAX as usize - 12 - 3;
            let mut t = vec![0x04];
            t.extend_from_slice(&(n as u16).to_be_bytes());
            t.resize(3 + n, 0);
            t
        };
        let h = v2_ipv4(1, &tlvs);
        assert_eq!(h.len(), MAX_HEADER);
        assert_eq!(parse(&h[..MAX_HEADER - 1]), Ok(None));
        assert_eq!(parse(&h).unwrap().unwrap().len, MAX_HEADER);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

            /// Any bytes: no panic, and a header never longer than the input
            /// nor than the protocol's bounds.
            #[test]
            fn any_bytes_parse_without_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(Some(h)) = parse(&buf) {
                    prop_assert!(h.len <= buf.len() && h.len <= MAX_HEADER);
                }
            }

            /// Bytes after a signature: the same.
            #[test]
            fn bytes_after_a_signature_parse_without_panic(
                v2: bool,
                tail in proptest::collection::vec(any::<u8>(), 0..120),
            ) {
                let mut buf = if v2 { SIG.to_vec() } else { b"PROXY ".to_vec() };
                buf.extend_from_slice(&tail);
                if let Ok(Some(h)) = parse(&buf) {
                    prop_assert!(h.len <= buf.len());
                }
            }

            /// A valid v1 header, whatever its addresses, cut anywhere: not
            /// an error until it is whole, then its source.
            #[test]
            fn any_v1_header_cut_anywhere_waits_for_the_rest(
                src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, sp: u16, dp: u16,
                cut in 0usize..60,
            ) {
                let h = format!("PROXY TCP4 {src} {dst} {sp} {dp}\r\n").into_bytes();
                let cut = cut.min(h.len() - 1);
                prop_assert_eq!(parse(&h[..cut]), Ok(None));
                let got = parse(&h).unwrap().unwrap();
                prop_assert_eq!(got.len, h.len());
                prop_assert_eq!(got.source, Some(SocketAddr::from((src, sp))));
            }
        }
    }
}
