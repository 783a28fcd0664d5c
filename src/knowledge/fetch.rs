//! "Add by URL": fetches one page for a knowledge base without becoming a way into the server's
//! own network. Only http(s); every address the host resolves to must be public (loopback,
//! private, link-local, CGNAT, multicast and the like are refused); the connection is pinned to
//! the checked address so DNS cannot swap it afterwards; redirects are followed by hand and each
//! hop checked again; the body is capped while it streams.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Url;

use super::KnowledgeError;

const MAX_REDIRECTS: usize = 5;

pub struct FetchedPage {
    /// The final URL (after redirects).
    pub url: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Whether an address is on the public internet. `allow_loopback` admits 127.0.0.0/8 and ::1
/// only (tests serve pages there); private ranges stay refused either way.
pub fn is_public(ip: IpAddr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4), allow_loopback);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

fn refused(reason: impl Into<String>) -> KnowledgeError {
    KnowledgeError::UrlRefused(reason.into())
}

/// Checks the URL and resolves it to one public address.
async fn check(url: &Url, allow_loopback: bool) -> Result<SocketAddr, KnowledgeError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused(format!(
            "only http and https URLs can be added, not {}:",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("URLs with credentials are not accepted"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| refused("the URL has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| refused("the URL has no port"))?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| KnowledgeError::Fetch(format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(KnowledgeError::Fetch(format!("{host} has no address")));
    }
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip(), allow_loopback)) {
        return Err(refused(format!(
            "{host} resolves to {}, a private or local address",
            bad.ip()
        )));
    }
    Ok(addrs[0])
}

pub async fn fetch_page(
    url: &str,
    max_bytes: usize,
    timeout: Duration,
    allow_loopback: bool,
) -> Result<FetchedPage, KnowledgeError> {
    let mut current =
        Url::parse(url.trim()).map_err(|e| KnowledgeError::invalid("url", e.to_string()))?;
    for _ in 0..=MAX_REDIRECTS {
        let addr = check(&current, allow_loopback).await?;
        let host = current.host_str().unwrap_or_default().to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .resolve(&host, addr)
            .user_agent(concat!("wacrm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KnowledgeError::Fetch(e.to_string()))?;
        let response = client
            .get(current.clone())
            .header(
                "accept",
                "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
            )
            .send()
            .await
            .map_err(|e| KnowledgeError::Fetch(e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| KnowledgeError::Fetch(format!("HTTP {status} without Location")))?;
            current = current
                .join(location)
                .map_err(|e| KnowledgeError::Fetch(format!("bad redirect: {e}")))?;
            continue;
        }
        if !status.is_success() {
            return Err(KnowledgeError::Fetch(format!(
                "the server answered HTTP {status}"
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > max_bytes)
        {
            return Err(KnowledgeError::TooLarge { limit: max_bytes });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| KnowledgeError::Fetch(e.to_string()))?;
            if body.len() + piece.len() > max_bytes {
                return Err(KnowledgeError::TooLarge { limit: max_bytes });
            }
            body.extend_from_slice(&piece);
        }
        return Ok(FetchedPage {
            url: current.to_string(),
            content_type,
            body,
        });
    }
    Err(KnowledgeError::Fetch(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap(), false), "{ip}");
        }
        assert!(is_public("127.0.0.1".parse().unwrap(), true));
        assert!(!is_public("10.0.0.1".parse().unwrap(), true));
    }

    #[tokio::test]
    async fn other_schemes_and_local_hosts_are_refused() {
        let t = Duration::from_secs(1);
        for url in [
            "file:///etc/passwd",
            "ftp://example.com/x",
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://user:pw@example.com/",
        ] {
            let err = fetch_page(url, 1000, t, false).await.err().unwrap();
            assert_eq!(err.code(), "url_refused", "{url}: {err}");
        }
    }
}
