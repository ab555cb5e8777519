//! Requests no well-behaved client sends, over a raw TCP connection to realmctl.

use std::net::SocketAddr;
use std::time::Duration;

/// POST a body over a raw connection, reading the answer while still writing (a server may
/// answer 413 before the body is sent). `chunked` sends it without a Content-Length.
/// Returns the status code, or `None` if the connection closed without an answer.
pub async fn raw_post(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: Vec<u8>,
    chunked: bool,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut r, mut w) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: realmctl\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        w.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            if chunked {
                w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                w.write_all(chunk).await?;
                w.write_all(b"\r\n").await?;
            } else {
                w.write_all(chunk).await?;
            }
        }
        if chunked {
            w.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), r.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&tmp[..n]);
                if let Some(line) = buf
                    .split(|&b| b == b'\n')
                    .next()
                    .filter(|_| buf.contains(&b'\n'))
                {
                    let text = String::from_utf8_lossy(line);
                    break text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
                }
            }
            _ => break None,
        }
    };
    writer.abort();
    status
}
