//! The client's address: the socket peer, or, when that peer is one of the configured reverse
//! proxies, the address the proxy reports in `X-Forwarded-For` (the rightmost hop that is not a
//! trusted proxy, so a client cannot forge its way past the limiter by sending the header itself).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// An IP address or CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Entries that do not parse were refused by config validation; they are skipped here.
    pub fn new(entries: &[String]) -> Self {
        Self(entries.iter().filter_map(|e| IpNet::parse(e)).collect())
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request, from its socket peer (`ConnectInfo`; loopback for a request
    /// served without one, as in router tests) and its headers.
    pub fn client_of(
        &self,
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
    ) -> ClientInfo {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        self.resolve(peer, headers)
    }

    /// The client address and scheme of a request that arrived from `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientInfo {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return ClientInfo {
                ip: peer,
                forwarded_proto: None,
            };
        }
        let mut ip = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(addr) => {
                    ip = canonical(addr);
                    if !self.trusts(ip) {
                        break;
                    }
                }
                // Garbage in the chain: stop at the last address we could believe.
                Err(_) => break,
            }
        }
        let forwarded_proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|v| v == "https" || v == "http");
        ClientInfo {
            ip,
            forwarded_proto,
        }
    }
}

/// Who sent a request, as far as we can believe it. Inserted as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The scheme the client used at a trusted proxy ("https"/"http").
    pub forwarded_proto: Option<String>,
}

/// Extractor: the client's address as far as we can believe it, for the routes served outside
/// the [`resolve_client`] middleware (`web::access::Api::ungated`).
pub struct ClientAddr(pub IpAddr);

impl axum::extract::FromRequestParts<crate::web::AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::web::AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            state
                .ops
                .proxies
                .client_of(&parts.extensions, &parts.headers)
                .ip,
        ))
    }
}

/// Middleware: resolves the client address, makes it available to handlers and logs the request
/// (path without its query string, which may carry a token). The webhook routes are served
/// without it and log through the webhook guard (`ops::guard::Admission::settle`).
pub async fn resolve_client(
    axum::extract::State(proxies): axum::extract::State<std::sync::Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let info = proxies.client_of(request.extensions(), request.headers());
    // The request log is off unless debugging; its path copy is made only then.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (request.method().clone(), request.uri().path().to_string()));
    let client = info.ip;
    request.extensions_mut().insert(info);
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if let Some((method, path)) = logged {
        tracing::debug!(
            %client,
            %method,
            path,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h
    }

    #[test]
    fn cidr_blocks_match_their_addresses_only() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("proxy.local").is_none());
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]);
        // From the proxy: the rightmost untrusted hop, not what the client claimed first.
        let info = proxies.resolve(
            "127.0.0.1".parse().unwrap(),
            &headers("1.2.3.4, 203.0.113.7, 10.0.0.2"),
        );
        assert_eq!(info.ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(info.forwarded_proto.as_deref(), Some("https"));
        // From anyone else: the header is ignored.
        let info = proxies.resolve("198.51.100.1".parse().unwrap(), &headers("1.2.3.4"));
        assert_eq!(info.ip, "198.51.100.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.forwarded_proto, None);
    }
}
