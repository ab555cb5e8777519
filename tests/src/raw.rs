//! A byte-level HTTP/1.1 client for requests well-behaved clients refuse to send.

// Duplicate or missing Host, absolute-form targets, dot segments and percent-encodings all
// reach the gateway exactly as written here (reqwest and `url` would normalise them first).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(15);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a gateway error: this status, a JSON body with this `error` code, and a
    /// `request_id` equal to the `x-request-id` response header. Returns the body.
    pub fn assert_error(&self, status: u16, code: &str) -> serde_json::Value {
        crate::check_error(
            status,
            code,
            self.status,
            self.header("content-type"),
            self.header("x-request-id"),
            &self.text(),
        )
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, headers {:?}, body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }
}

/// One client connection, for several requests on one keep-alive connection.
pub struct RawConn {
    stream: BufReader<TcpStream>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("raw: connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("raw: connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawConn {
            stream: BufReader::new(stream),
        }
    }

    /// Writes `request` verbatim and reads one response.
    pub async fn send(&mut self, request: &[u8]) -> RawResponse {
        let fut = async {
            self.stream.get_mut().write_all(request).await?;
            self.stream.get_mut().flush().await?;
            read_response(&mut self.stream).await
        };
        match tokio::time::timeout(TIMEOUT, fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!(
                "raw: request {:?} failed: {e}",
                String::from_utf8_lossy(request)
            ),
            Err(_) => panic!(
                "raw: no complete response within {TIMEOUT:?} to {:?}",
                String::from_utf8_lossy(request)
            ),
        }
    }
}

/// Sends `request` verbatim on a fresh connection and reads one response.
pub async fn raw_request(addr: SocketAddr, request: impl AsRef<[u8]>) -> RawResponse {
    RawConn::connect(addr).await.send(request.as_ref()).await
}

/// `GET target HTTP/1.1` with an optional Host (raw bytes allowed), `extra` headers and
/// `Connection: close`.
pub fn get_request(host: Option<&[u8]>, target: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\n").into_bytes();
    if let Some(host) = host {
        r.extend_from_slice(b"Host: ");
        r.extend_from_slice(host);
        r.extend_from_slice(b"\r\n");
    }
    for (n, v) in extra {
        r.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    r
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = stream.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response head",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

async fn read_response(stream: &mut BufReader<TcpStream>) -> std::io::Result<RawResponse> {
    loop {
        let status_line = read_line(stream).await?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(stream).await?;
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let size_line = read_line(stream).await?;
                let size_hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    loop {
                        if read_line(stream).await?.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0; size];
                stream.read_exact(&mut chunk).await?;
                resp.body.extend_from_slice(&chunk);
                read_line(stream).await?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other(format!("bad content-length {len:?}")))?;
            let mut body = vec![0; len];
            stream.read_exact(&mut body).await?;
            resp.body = body;
        } else if status != 204 && status != 304 {
            stream.read_to_end(&mut resp.body).await?;
        }
        return Ok(resp);
    }
}
