//! A real HTTP/1.1 upstream on loopback that echoes what the gateway sent it, as JSON.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

struct State {
    name: String,
    delay_ms: AtomicU64,
    health: AtomicU16,
    hits: AtomicUsize,
    health_hits: AtomicUsize,
}

/// A running (or stopped) upstream server. Dropping it stops it.
///
/// Every request gets 200 and `{"upstream", "method", "path", "headers", "body"}` where `path`
/// is the request-target exactly as received and `headers` maps lower-case names to all their
/// values in order. `/healthz` answers the status set by [`Upstream::set_health`] and is not
/// counted as traffic. Connections are kept alive as HTTP/1.1 allows.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves until stopped or dropped. Needs a tokio runtime.
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("upstream: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream: local_addr");
        let state = Arc::new(State {
            name: name.to_string(),
            delay_ms: AtomicU64::new(0),
            health: AtomicU16::new(200),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Upstream {
            addr,
            state,
            task: Mutex::new(Some(task)),
        }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delay before answering ordinary requests (not `/healthz`), for timeout tests.
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The status `/healthz` answers (200 by default).
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    /// Ordinary requests received so far (excluding `/healthz`).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// `/healthz` requests received so far.
    pub fn health_hits(&self) -> usize {
        self.state.health_hits.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every open connection; the port then refuses connections.
    pub async fn stop(&self) {
        let task = self.task.lock().expect("upstream task lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same address after [`Upstream::stop`].
    pub async fn resume(&self) {
        let mut last_err = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    let task = tokio::spawn(serve(listener, self.state.clone()));
                    let old = self.task.lock().expect("upstream task lock").replace(task);
                    if let Some(old) = old {
                        old.abort();
                    }
                    return;
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        panic!(
            "upstream {}: cannot rebind {}: {last_err:?}",
            self.state.name, self.addr
        );
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

/// Accept loop. The connections live in a `JoinSet` owned by this task, so aborting the task
/// aborts (and closes) every connection too.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, state.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let conn = self
            .header("connection")
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        if self.version == "HTTP/1.0" {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    loop {
        let req = match read_request(&mut stream).await {
            Ok(Some(req)) => req,
            Ok(None) | Err(_) => return,
        };
        let keep_alive = req.keep_alive();
        let path_only = req.target.split('?').next().unwrap_or("");
        let (status, body) = if path_only == "/healthz" {
            state.health_hits.fetch_add(1, Ordering::SeqCst);
            let status = state.health.load(Ordering::SeqCst);
            (status, json!({"upstream": state.name, "health": status}))
        } else {
            state.hits.fetch_add(1, Ordering::SeqCst);
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            (200, echo_body(&state.name, &req))
        };
        let body = body.to_string();
        let reason = if status == 200 { "OK" } else { "Status" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        let stream = stream.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(body.as_bytes()).await.is_err()
            || stream.flush().await.is_err()
        {
            return;
        }
        if !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

fn echo_body(name: &str, req: &Request) -> Value {
    let mut headers: Map<String, Value> = Map::new();
    for (n, v) in &req.headers {
        let entry = headers
            .entry(n.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(v.clone()));
        }
    }
    json!({
        "upstream": name,
        "method": req.method,
        "path": req.target,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
    })
}

type Io = std::io::Result<Option<Request>>;

async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = stream.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > 64 * 1024 {
        return Err(std::io::Error::other("line too long"));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Io {
    let mut start = String::new();
    while start.is_empty() {
        match read_line(stream).await? {
            Some(l) => start = l,
            None => return Ok(None),
        }
    }
    let mut parts = start.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(stream).await? else {
            return Ok(None);
        };
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        method,
        target,
        version,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let Some(size_line) = read_line(stream).await? else {
                return Ok(None);
            };
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers until the empty line.
                while let Some(l) = read_line(stream).await? {
                    if l.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            stream.read_exact(&mut chunk).await?;
            req.body.extend_from_slice(&chunk);
            read_line(stream).await?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| std::io::Error::other("bad content-length"))?;
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await?;
        req.body = body;
    }
    Ok(Some(req))
}
