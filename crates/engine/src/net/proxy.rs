//! `--proxy-headers`: which peers may set the client address and scheme
//! through `X-Forwarded-For` / `X-Forwarded-Proto` (uvicorn's semantics).

use std::net::IpAddr;

#[derive(Default)]
pub struct TrustedProxies {
    all: bool,
    /// `unix:` in the list: peers on a Unix domain socket are trusted.
    unix: bool,
    nets: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// `items`: `*`, IP literals and CIDR networks; other entries (such as
    /// `unix:`) cannot match a TCP peer and are ignored.
    pub fn parse(items: &[String]) -> Self {
        let mut t = TrustedProxies::default();
        for item in items {
            let item = item.trim();
            if item == "*" {
                t.all = true;
                continue;
            }
            if item == "unix:" {
                t.unix = true;
                continue;
            }
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, p.parse::<u8>().ok()),
                None => (item, None),
            };
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let p = prefix.unwrap_or(max).min(max);
                t.nets.push((ip, p));
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        !self.all && !self.unix && self.nets.is_empty()
    }

    pub fn trusts_unix(&self) -> bool {
        self.all || self.unix
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.all || self.nets.iter().any(|&(net, p)| in_net(ip, net, p))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix as u32)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix as u32)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The client a trusted proxy chain reports: walking `X-Forwarded-For` from
/// the right, the first address not itself a trusted proxy (or the leftmost
/// one if all are trusted).
pub fn forwarded_client<'a>(value: &'a str, trusted: &TrustedProxies) -> Option<&'a str> {
    let hops: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.trusts(ip) => continue,
            _ => return Some(hop),
        }
    }
    hops.first().copied()
}

/// The scheme from `X-Forwarded-Proto` (its last element), if it is one a
/// server can speak.
pub fn forwarded_scheme(value: &str) -> Option<&'static str> {
    let last = value.rsplit(',').next()?.trim();
    if last.eq_ignore_ascii_case("https") {
        Some("https")
    } else if last.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(items: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn trusts_literals_networks_and_star() {
        let tp = t(&["127.0.0.1", "10.0.0.0/8", "::1", "unix:"]);
        assert!(tp.trusts("127.0.0.1".parse().unwrap()));
        assert!(tp.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(tp.trusts("10.9.8.7".parse().unwrap()));
        assert!(tp.trusts("::1".parse().unwrap()));
        assert!(!tp.trusts("192.168.1.1".parse().unwrap()));
        assert!(t(&["*"]).trusts("8.8.8.8".parse().unwrap()));
        assert!(t(&[]).is_empty());
    }

    #[test]
    fn forwarded_client_skips_trusted_hops_from_the_right() {
        let tp = t(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(forwarded_client("1.2.3.4, 10.0.0.2", &tp), Some("1.2.3.4"));
        assert_eq!(forwarded_client("5.5.5.5, 1.2.3.4", &tp), Some("1.2.3.4"));
        assert_eq!(
            forwarded_client("10.0.0.3, 127.0.0.1", &tp),
            Some("10.0.0.3")
        );
        assert_eq!(forwarded_client("", &tp), None);
    }

    #[test]
    fn forwarded_scheme_takes_the_last_known_value() {
        assert_eq!(forwarded_scheme("https"), Some("https"));
        assert_eq!(forwarded_scheme("http, HTTPS"), Some("https"));
        assert_eq!(forwarded_scheme("gopher"), None);
    }
}
