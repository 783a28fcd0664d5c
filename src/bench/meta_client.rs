//! The load generator's side of a webhook: one keep-alive HTTP/1.1 connection that POSTs
//! requests serialized before the clock starts, one at a time, as Meta's delivery does.
//!
//! Why not reqwest: on this 2-core machine the load generator shares the CPUs with the appliance
//! under test, and reqwest's per-request work (URL parsing, header maps, pool bookkeeping) cost
//! about as much CPU as the appliance's own webhook handling. Whatever the generator burns is
//! taken from the server, so the cheapest honest generator is the one that measures the server
//! best: fixed bytes out, status line and `Content-Length` in (parsed by `httparse`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::SignedWebhook;
use super::BenchError;

/// A webhook as the bytes of a complete HTTP/1.1 request.
#[derive(Clone)]
pub struct WireRequest(bytes::Bytes);

impl WireRequest {
    pub fn webhook(host: &str, path: &str, hook: &SignedWebhook) -> Self {
        let mut out = Vec::with_capacity(hook.body.len() + 256);
        out.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
                 x-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n",
                hook.signature,
                hook.body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&hook.body);
        Self(out.into())
    }
}

/// One connection to the appliance.
pub struct MetaConnection {
    stream: TcpStream,
    /// Bytes read but not yet consumed (a response may arrive in pieces).
    buf: Vec<u8>,
}

impl MetaConnection {
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Self, BenchError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::Http(format!("connect {addr}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| BenchError::Http(format!("nodelay: {e}")))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Sends one request and reads its whole response; returns the status code.
    pub async fn post(&mut self, request: &WireRequest) -> Result<u16, BenchError> {
        let io = |e: std::io::Error| BenchError::Http(e.to_string());
        self.stream.write_all(&request.0).await.map_err(io)?;
        loop {
            if let Some((status, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                return Ok(status);
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(BenchError::Http("connection closed mid-response".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A complete response at the start of `buf`: its status and its length in bytes.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, BenchError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BenchError::Http(format!("bad response: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let body = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| BenchError::Http("response without content-length".into()))?;
    if buf.len() < head + body {
        return Ok(None);
    }
    Ok(Some((status, head + body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let one = b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\nEVENT_RECEIVED";
        assert_eq!(parse_response(one).ok().flatten(), Some((200, one.len())));
        // Incomplete head or body: wait for more.
        assert_eq!(parse_response(&one[..10]).ok().flatten(), None);
        assert_eq!(parse_response(&one[..one.len() - 1]).ok().flatten(), None);
        // Two responses back to back: the first is consumed alone.
        let two = [
            &one[..],
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n",
        ]
        .concat();
        assert_eq!(parse_response(&two).ok().flatten(), Some((200, one.len())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
