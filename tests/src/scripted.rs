//! A real HTTP/1.1 upstream on loopback that answers canned responses per path (HTML shells,
//! gzip, 204, 304, split chunks) and records the request headers it received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One canned response. `chunks` are written one by one (with `pause` between them) as HTTP
/// chunks when `chunked`, else back to back after a `Content-Length`.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Vec<u8>>,
    pub chunked: bool,
    pub pause: Duration,
}

impl Canned {
    /// 200 with this content type and body, Content-Length framed.
    pub fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            chunks: vec![body.into()],
            chunked: false,
            pause: Duration::ZERO,
        }
    }

    pub fn status(mut self, status: u16) -> Canned {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Chunked transfer of these pieces, with a pause between them so each reaches the gateway
    /// as its own read.
    pub fn in_chunks(mut self, chunks: Vec<Vec<u8>>, pause: Duration) -> Canned {
        self.chunks = chunks;
        self.chunked = true;
        self.pause = pause;
        self
    }
}

/// A request as the upstream saw it: path and lower-cased headers.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Routes = Arc<Mutex<HashMap<String, Canned>>>;

/// A running scripted upstream; stops on drop.
pub struct Scripted {
    addr: SocketAddr,
    routes: Routes,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("scripted: bind");
        let addr = listener.local_addr().expect("scripted: addr");
        let routes: Routes = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r, s) = (routes.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, r.clone(), s.clone()));
            }
        });
        Scripted {
            addr,
            routes,
            seen,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `path` (without query) with `canned` from now on.
    pub fn route(&self, path: &str, canned: Canned) {
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_string(), canned);
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// The last request to `path`.
    pub fn last(&self, path: &str) -> Option<Seen> {
        self.seen().into_iter().rev().find(|s| s.path == path)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(stream: TcpStream, routes: Routes, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let path = target.split('?').next().unwrap_or("").to_string();
        seen.lock().expect("seen").push(Seen {
            method: method.clone(),
            path: path.clone(),
            headers,
        });
        let canned = routes.lock().expect("routes").get(&path).cloned();
        let canned = canned.unwrap_or_else(|| Canned::new("text/plain", "not found").status(404));
        if write(stream.get_mut(), &canned, method == "HEAD")
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn write(s: &mut TcpStream, c: &Canned, head: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} X\r\n", c.status);
    for (n, v) in &c.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let no_body = head || matches!(c.status, 204 | 304);
    if c.chunked && !no_body {
        out.push_str("transfer-encoding: chunked\r\n\r\n");
    } else if !matches!(c.status, 204 | 304) {
        let len: usize = c.chunks.iter().map(Vec::len).sum();
        out.push_str(&format!("content-length: {len}\r\n\r\n"));
    } else {
        out.push_str("\r\n");
    }
    s.write_all(out.as_bytes()).await?;
    if no_body {
        return s.flush().await;
    }
    for (i, chunk) in c.chunks.iter().enumerate() {
        if i > 0 && !c.pause.is_zero() {
            tokio::time::sleep(c.pause).await;
        }
        if c.chunked {
            s.write_all(format!("{:X}\r\n", chunk.len()).as_bytes())
                .await?;
            s.write_all(chunk).await?;
            s.write_all(b"\r\n").await?;
        } else {
            s.write_all(chunk).await?;
        }
        s.flush().await?;
    }
    if c.chunked {
        s.write_all(b"0\r\n\r\n").await?;
    }
    s.flush().await
}
