//! The real client behind trusted proxies. With `[clients] trusted_proxies`
//! set, a request whose connection came from a trusted proxy is the
//! right-most address of `X-Forwarded-For` that is not itself a trusted
//! proxy (each proxy appends the address it saw, so everything left of the
//! first untrusted hop may be forged), else `X-Real-IP`. Without trusted
//! proxies the connection's address is the client, as nginx logs it.
//! (`$realip_remote_addr`, nginx's original connection address when its
//! realip module rewrote `$remote_addr`, is the proxy: never the client.)
//!
//! Hand-written: a CIDR match on keywatch's 128-bit client tags (see
//! [`crate::usage::distinct::client_tag`]) is a shift and a compare.

use crate::usage::distinct::{client_tag, is_address, is_ipv4};

/// `[clients]` in the configuration.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// Networks of the proxies and load balancers in front of the server,
    /// such as `["10.0.0.0/8", "2001:db8::/32"]`.
    pub trusted_proxies: Vec<String>,
}

/// Trusted proxy networks, as (tag base, prefix bits, IPv4).
#[derive(Clone, Debug, Default)]
pub struct Proxies(Vec<(u128, u8, bool)>);

impl Proxies {
    /// Reads `10.0.0.0/8`, `192.0.2.7` (one address), `2001:db8::/32`.
    pub fn parse(list: &[String]) -> Result<Proxies, String> {
        let mut out = Vec::new();
        for item in list {
            out.push(parse_cidr(item).ok_or_else(|| {
                format!(
                    "{item:?} is not a network; give an address or a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\""
                )
            })?);
        }
        Ok(Proxies(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, tag: u128) -> bool {
        self.0.iter().any(|&(base, bits, v4)| {
            let width = if v4 { 32 } else { 128 };
            if is_ipv4(tag) != v4 || !is_address(tag) {
                return false;
            }
            let shift = width - u32::from(bits);
            shift >= width || tag >> shift == base >> shift
        })
    }

    /// The client of a request that came from `remote` with these headers.
    pub fn client(
        &self,
        remote: u128,
        forwarded_for: Option<&[u8]>,
        real_ip: Option<&[u8]>,
    ) -> u128 {
        if self.0.is_empty() || !self.trusts(remote) {
            return remote;
        }
        if let Some(list) = forwarded_for {
            let mut last = None;
            for hop in list.rsplit(|&b| b == b',') {
                let hop = hop.trim_ascii();
                if hop.is_empty() || hop == b"-" || hop.eq_ignore_ascii_case(b"unknown") {
                    continue;
                }
                let tag = client_tag(strip_port(hop));
                if !is_address(tag) {
                    // Not an address: nothing left of it is believed.
                    break;
                }
                if !self.trusts(tag) {
                    return tag;
                }
                last = Some(tag);
            }
            // Every hop believed is a proxy: the left-most is as far as
            // anyone knows.
            if let Some(t) = last {
                return t;
            }
        }
        match real_ip.map(|ip| client_tag(strip_port(ip.trim_ascii()))) {
            Some(tag) if is_address(tag) => tag,
            _ => remote,
        }
    }
}

/// `[2001:db8::1]:443` → `2001:db8::1`; `192.0.2.1:8080` → `192.0.2.1`.
fn strip_port(hop: &[u8]) -> &[u8] {
    if let Some(rest) = hop.strip_prefix(b"[") {
        return rest.split(|&b| b == b']').next().unwrap_or(rest);
    }
    match memchr::memchr(b':', hop) {
        Some(i) if memchr::memrchr(b':', hop) == Some(i) => &hop[..i],
        _ => hop,
    }
}

fn parse_cidr(s: &str) -> Option<(u128, u8, bool)> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (s.trim(), None),
    };
    match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let bits = bits.unwrap_or(32);
            (bits <= 32).then(|| (u128::from(u32::from(v4)), bits, true))
        }
        std::net::IpAddr::V6(v6) => {
            let bits = bits.unwrap_or(128);
            (bits <= 128).then(|| (u128::from(v6) & !(1u128 << 127), bits, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> u128 {
        client_tag(s.as_bytes())
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = Proxies::parse(&["10.0.0.0/8".into(), "2001:db8:ff::/48".into()]).unwrap();
        let lb = tag("10.1.2.3");
        // A forged left part is ignored: the proxy appended the real address.
        let xff = b"1.1.1.1, 203.0.113.9, 10.9.9.9";
        assert_eq!(p.client(lb, Some(xff), None), tag("203.0.113.9"));
        assert_eq!(
            p.client(lb, Some(b"[2001:db8:1::5]:443"), None),
            tag("2001:db8:1::5")
        );
        assert_eq!(
            p.client(lb, Some(b"198.51.100.4:5555"), None),
            tag("198.51.100.4")
        );
        assert_eq!(
            p.client(lb, None, Some(b"198.51.100.8")),
            tag("198.51.100.8")
        );
        assert_eq!(p.client(lb, Some(b"10.2.2.2"), None), tag("10.2.2.2"));
        // Garbage is never a client: the hop right of it is.
        assert_eq!(
            p.client(lb, Some(b"203.0.113.1, evil, 10.3.3.3"), None),
            tag("10.3.3.3")
        );
        assert_eq!(p.client(lb, Some(b"nonsense"), Some(b"also nonsense")), lb);
        // Not from a trusted proxy: the headers are the client's own words.
        let direct = tag("198.51.100.1");
        assert_eq!(p.client(direct, Some(b"10.0.0.1"), None), direct);
        assert_eq!(
            p.client(tag("2001:db8:ff::1"), Some(b"192.0.2.5"), None),
            tag("192.0.2.5")
        );
        assert!(Proxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Proxies::parse(&["proxy.local".into()]).is_err());
        // No trusted proxies: the connection's address, always.
        assert_eq!(Proxies::default().client(lb, Some(xff), None), lb);
    }
}
