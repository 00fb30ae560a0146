//! `allowed_outbound_hosts`: which network destinations a component may reach.
//!
//! Syntax follows Spin: `scheme://host[:port]`, where the scheme or host may be
//! `*`, the host may be `*.example.com` (any subdomain) or a CIDR block
//! (`10.0.0.0/8`), the port may be `*` or a range `8000..8010` (the end
//! excluded, as in Spin), and the host `self` (or `self.alt`) means the app
//! itself. Without a port, the scheme's default port is allowed (80 for http,
//! 443 for https). Everything not listed is denied.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: stored as `.example.com`.
    Subdomains(String),
    /// The app's own listener (`self`).
    SelfApp,
    /// IP addresses in a CIDR block: the network address and prefix length.
    Cidr(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// Inclusive bounds.
    Range(u16, u16),
    /// No port written: the default port of whatever scheme is used.
    SchemeDefault,
}

/// One entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    raw: String,
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

/// The set of destinations a component may reach; empty denies everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOutboundHosts {
    hosts: Vec<AllowedHost>,
}

/// The default port of a URL scheme, where it has one.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "redis" | "rediss" => Some(6379),
        "mysql" => Some(3306),
        "postgres" => Some(5432),
        "mqtt" => Some(1883),
        "mqtts" => Some(8883),
        _ => None,
    }
}

impl AllowedHost {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains("{{") {
            return Err(format!(
                "`{text}`: variable templates in allowed hosts are not supported by Ferry yet"
            ));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "`{text}` needs a scheme, e.g. `https://{text}` or `*://{text}:*`"
            ));
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)) =>
            {
                Some(s.to_owned())
            }
            s => return Err(format!("`{text}`: `{s}` is not a valid scheme")),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 address is bracketed; a colon inside it is no port.
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (rest, None),
        };
        let cidr = parse_cidr(host);
        if cidr.is_none() && host.contains('/')
            || port.is_some_and(|p| p.contains('/'))
            || rest.contains('?')
        {
            return Err(format!("`{text}`: allowed hosts cannot contain a path"));
        }
        if host.contains(':') && !host.starts_with('[') && cidr.is_none() {
            return Err(format!(
                "`{text}`: write an IPv6 address in brackets, e.g. `http://[::1]:8080`"
            ));
        }
        let host = if let Some((network, prefix)) = cidr {
            HostPattern::Cidr(network, prefix)
        } else if host == "*" {
            HostPattern::Any
        } else if host == "self" || host == "self.alt" {
            HostPattern::SelfApp
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(format!("`{text}`: `{host}` is not a valid host pattern"));
            }
            HostPattern::Subdomains(format!(".{}", domain.to_ascii_lowercase()))
        } else if host.is_empty() || host.contains('*') || host.contains('@') {
            return Err(format!("`{text}`: `{host}` is not a valid host"));
        } else {
            HostPattern::Exact(host.to_ascii_lowercase())
        };
        let port = match port {
            None => {
                if let Some(s) = &scheme
                    && default_port(s).is_none()
                {
                    return Err(format!(
                        "`{text}`: the scheme `{s}` has no default port; write one, e.g. `{text}:1234`"
                    ));
                }
                PortPattern::SchemeDefault
            }
            Some("*") => PortPattern::Any,
            Some(p) => {
                let parse = |s: &str| {
                    s.parse::<u16>()
                        .map_err(|_| format!("`{text}`: `{p}` is not a valid port or port range"))
                };
                // Spin's ranges exclude their end: `8000..8010` is 8000 to 8009.
                match p.split_once("..") {
                    Some((lo, hi)) => {
                        let (lo, hi) = (parse(lo)?, parse(hi)?);
                        if lo >= hi {
                            return Err(format!("`{text}`: the port range `{p}` is empty"));
                        }
                        PortPattern::Range(lo, hi - 1)
                    }
                    None if p.contains('-') => {
                        return Err(format!(
                            "`{text}`: write a port range as `start..end` (the end excluded), e.g. `{}`",
                            p.replacen('-', "..", 1)
                        ));
                    }
                    None => {
                        let port = parse(p)?;
                        PortPattern::Range(port, port)
                    }
                }
            }
        };
        Ok(Self {
            raw: text.to_owned(),
            scheme,
            host,
            port,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16, is_self: bool) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::SelfApp => is_self,
            HostPattern::Exact(h) => {
                host.eq_ignore_ascii_case(h.trim_start_matches('[').trim_end_matches(']'))
            }
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.to_ascii_lowercase().ends_with(suffix.as_str())
            }
            HostPattern::Cidr(network, prefix) => host
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_network(ip, *network, *prefix)),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(lo, hi) => (lo..=hi).contains(&port),
            // `self` names the app's listener, whatever its port.
            PortPattern::SchemeDefault if self.host == HostPattern::SelfApp => true,
            PortPattern::SchemeDefault => default_port(scheme) == Some(port),
        };
        host_ok && port_ok
    }
}

impl AllowedHost {
    /// Whether this names Spin's service chaining (`*.spin.internal`).
    pub fn is_service_chaining(&self) -> bool {
        match &self.host {
            HostPattern::Exact(host) => host.ends_with(CHAINING_SUFFIX),
            HostPattern::Subdomains(suffix) => suffix == CHAINING_SUFFIX,
            _ => false,
        }
    }
}

/// `10.0.0.0/8` or `[fd00::]/8` as a network address (host bits cleared, as
/// Spin does) and a prefix length.
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    if prefix > bits {
        return None;
    }
    Some((mask(address, prefix), prefix))
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == network.is_ipv4() && mask(ip, prefix) == network
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl AllowedOutboundHosts {
    pub fn new(hosts: Vec<AllowedHost>) -> Self {
        Self { hosts }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Adds grants (those written as templates, once variables are known).
    pub fn extend(&mut self, more: impl IntoIterator<Item = AllowedHost>) {
        self.hosts.extend(more);
    }

    pub fn iter(&self) -> impl Iterator<Item = &AllowedHost> {
        self.hosts.iter()
    }

    /// Whether a request to `scheme://host:port` is allowed. `is_self` says
    /// whether that destination is the app's own listener.
    pub fn allows(&self, scheme: &str, host: &str, port: u16, is_self: bool) -> bool {
        self.hosts
            .iter()
            .any(|h| h.allows(scheme, host, port, is_self))
    }

    /// Whether `self` (the app's own listener) was granted.
    pub fn allows_self(&self) -> bool {
        self.hosts.iter().any(|h| h.host == HostPattern::SelfApp)
    }

    /// Whether service chaining to the app's component `component` is
    /// granted, as Spin grants it: by `http://<component>.spin.internal` or
    /// `http://*.spin.internal` only. A wildcard host (`*://*:*`) does not
    /// grant it, nor does `self`.
    pub fn allows_chaining(&self, component: &str) -> bool {
        let named = format!("{}{CHAINING_SUFFIX}", component.to_ascii_lowercase());
        self.hosts.iter().any(|h| {
            h.scheme.as_deref().is_none_or(|s| s == "http")
                && match &h.host {
                    HostPattern::Exact(host) => *host == named,
                    HostPattern::Subdomains(suffix) => suffix == CHAINING_SUFFIX,
                    _ => false,
                }
        })
    }
}

/// The host name suffix of Spin's service chaining.
pub const CHAINING_SUFFIX: &str = ".spin.internal";

/// The component a service-chaining host (`<component>.spin.internal`)
/// names, if `host` is one.
pub fn chained_component(host: &str) -> Option<&str> {
    let len = host.len().checked_sub(CHAINING_SUFFIX.len())?;
    let (component, suffix) = host.split_at_checked(len)?;
    (suffix.eq_ignore_ascii_case(CHAINING_SUFFIX)
        && !component.is_empty()
        && !component.contains('.'))
    .then_some(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> AllowedOutboundHosts {
        AllowedOutboundHosts::new(
            list.iter()
                .map(|h| AllowedHost::parse(h).unwrap())
                .collect(),
        )
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!AllowedOutboundHosts::default().allows("https", "example.com", 443, false));
    }

    #[test]
    fn scheme_host_and_default_port_must_all_match() {
        let h = hosts(&["https://example.com"]);
        assert!(h.allows("https", "example.com", 443, false));
        assert!(h.allows("https", "EXAMPLE.com", 443, false));
        assert!(!h.allows("http", "example.com", 80, false));
        assert!(!h.allows("https", "example.com", 8443, false));
        assert!(!h.allows("https", "evil.com", 443, false));
        assert!(!h.allows("https", "sub.example.com", 443, false));
    }

    #[test]
    fn wildcards_and_ranges() {
        let h = hosts(&["*://*.example.com:*", "http://127.0.0.1:8000..8010"]);
        assert!(h.allows("http", "a.example.com", 1234, false));
        assert!(h.allows("https", "a.b.example.com", 443, false));
        assert!(!h.allows("https", "example.com", 443, false));
        assert!(!h.allows("https", "badexample.com", 443, false));
        assert!(h.allows("http", "127.0.0.1", 8000, false));
        assert!(h.allows("http", "127.0.0.1", 8009, false));
        // Spin's ranges exclude their end.
        assert!(!h.allows("http", "127.0.0.1", 8010, false));
        assert!(!h.allows("https", "127.0.0.1", 8005, false));
    }

    #[test]
    fn chaining_is_granted_only_by_spin_internal_hosts() {
        let named = hosts(&["http://back.spin.internal"]);
        assert!(named.allows_chaining("back"));
        assert!(named.allows_chaining("BACK"));
        assert!(!named.allows_chaining("front"));
        let all = hosts(&["http://*.spin.internal"]);
        assert!(all.allows_chaining("front") && all.allows_chaining("back"));
        // Neither the wildcard nor `self` grants it, nor another scheme.
        let wide = hosts(&["*://*:*", "http://self", "https://back.spin.internal"]);
        assert!(!wide.allows_chaining("back"));
        assert_eq!(chained_component("back.spin.internal"), Some("back"));
        assert_eq!(chained_component("Back.SPIN.Internal"), Some("Back"));
        for not in [
            "spin.internal",
            ".spin.internal",
            "a.b.spin.internal",
            "back.example",
        ] {
            assert_eq!(chained_component(not), None, "{not}");
        }
    }

    #[test]
    fn cidr_blocks_match_addresses_inside_them() {
        let h = hosts(&["http://10.1.2.3/16:*", "https://[fd00::]/8"]);
        assert!(h.allows("http", "10.1.200.7", 8080, false));
        assert!(!h.allows("http", "10.2.0.1", 8080, false));
        assert!(!h.allows("http", "10.1.example.com", 8080, false));
        assert!(h.allows("https", "[fd12::1]", 443, false));
        assert!(!h.allows("https", "[fe80::1]", 443, false));
        assert!(!h.allows("https", "10.1.0.1", 443, false));
    }

    #[test]
    fn self_alt_and_service_chaining() {
        assert!(hosts(&["http://self.alt"]).allows_self());
        assert!(
            AllowedHost::parse("http://api.spin.internal")
                .unwrap()
                .is_service_chaining()
        );
        assert!(
            AllowedHost::parse("http://*.spin.internal")
                .unwrap()
                .is_service_chaining()
        );
        assert!(
            !AllowedHost::parse("http://spin.internal.example.com")
                .unwrap()
                .is_service_chaining()
        );
    }

    #[test]
    fn self_matches_only_the_app() {
        let h = hosts(&["http://self"]);
        assert!(h.allows_self());
        assert!(h.allows("http", "127.0.0.1", 80, true));
        assert!(h.allows("http", "127.0.0.1", 3000, true));
        assert!(!h.allows("http", "127.0.0.1", 80, false));
    }

    #[test]
    fn malformed_entries_are_rejected() {
        for bad in [
            "example.com",
            "https://example.com/path",
            "https://example.com:http",
            "https://example.com:90..80",
            "https://example.com:8000-8010",
            "https://10.0.0.0/33",
            "http://fe80::1",
            "http://::1",
            "https://example.com:443/path",
            "tcp://example.com",
            "https://{{ host }}",
            "https://ex*mple.com",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
