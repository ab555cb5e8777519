//! Open-loop fixed-rate HTTP/1.1 load generator for `benches/run --open-loop` (wrk2's idea:
//! requests leave on a fixed schedule whatever the server does, and each latency is measured
//! from the request's *scheduled* start, so a stall is counted against every request it
//! delayed — no coordinated omission).
//!
//! Standard library only, one thread polling non-blocking keep-alive connections: run it
//! pinned to a core of its own (`taskset -c N`), where it spins. Being a debug build costs it
//! a few microseconds per request, the same for every server it measures.
//!
//! ```text
//! openloop --port 8080 --rate 20000 --connections 64 --duration 10 [--warmup 2]
//!          [--host bench.test] [--path /] [-H 'Name: value']...
//! ```
//!
//! Prints one JSON object: requests sent and completed, non-200 answers, socket errors,
//! latency percentiles in microseconds (from the scheduled start), and the achieved rate.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    port: u16,
    rate: f64,
    connections: usize,
    duration: f64,
    warmup: f64,
    host: String,
    path: String,
    headers: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 0,
        rate: 0.0,
        connections: 64,
        duration: 10.0,
        warmup: 0.0,
        host: "localhost".into(),
        path: "/".into(),
        headers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--port" => a.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--rate" => a.rate = num(value()?)?,
            "--connections" => a.connections = num(value()?)? as usize,
            "--duration" => a.duration = num(value()?)?,
            "--warmup" => a.warmup = num(value()?)?,
            "--host" => a.host = value()?,
            "--path" => a.path = value()?,
            "-H" => a.headers.push(value()?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if a.port == 0 || !positive(a.rate) || a.connections == 0 || !positive(a.duration) {
        return Err("--port, --rate, --connections and --duration must be positive".into());
    }
    if a.warmup < 0.0 {
        return Err("--warmup must not be negative".into());
    }
    Ok(a)
}

/// One keep-alive connection with at most one request in flight.
struct Conn {
    stream: TcpStream,
    /// When this connection's next request is due.
    next: Instant,
    /// The scheduled start of the request in flight.
    in_flight: Option<Instant>,
    buf: Vec<u8>,
}

/// How much of `buf` is one complete response: `Some((len, status))`, `None` while partial.
/// Understands `Content-Length` and `Transfer-Encoding: chunked` (no trailers).
fn complete(buf: &[u8]) -> Result<Option<(usize, u16)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "non-UTF-8 head")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("bad status line")?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = head_end + 4;
    if !chunked {
        let end = body + length.unwrap_or(0);
        return Ok((buf.len() >= end).then_some((end, status)));
    }
    let mut at = body;
    loop {
        let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "bad chunk")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        at += eol + 2;
        if size == 0 {
            // The last chunk: an empty trailer section ends with CRLF.
            return Ok((buf.len() >= at + 2).then_some((at + 2, status)));
        }
        at += size + 2;
        if buf.len() < at {
            return Ok(None);
        }
    }
}

#[derive(Default)]
struct Counts {
    sent: u64,
    done: u64,
    non_200: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

fn run(a: &Args) -> Result<Counts, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", a.path, a.host);
    for h in &a.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = request.into_bytes();
    // Each connection carries rate/connections requests per second, the connections'
    // schedules offset evenly so the total is a steady stream.
    let interval = Duration::from_secs_f64(a.connections as f64 / a.rate);
    let start = Instant::now() + Duration::from_millis(50);
    let mut conns = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let offset = interval.mul_f64(i as f64 / a.connections as f64);
        conns.push(Conn {
            stream,
            next: start + offset,
            in_flight: None,
            buf: Vec::with_capacity(32 * 1024),
        });
    }
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let mut c = Counts {
        latencies_us: Vec::with_capacity((a.rate * a.duration * 1.1) as usize),
        ..Counts::default()
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        let sending = now < end;
        let mut busy = false;
        for conn in &mut conns {
            if let Some(scheduled) = conn.in_flight {
                busy = true;
                match conn.stream.read(&mut chunk) {
                    Ok(0) => return Err("server closed a connection".into()),
                    Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(format!("read: {e}")),
                }
                if let Some((len, status)) = complete(&conn.buf)? {
                    conn.buf.drain(..len);
                    conn.in_flight = None;
                    if scheduled >= measure_from {
                        let done = Instant::now();
                        c.done += 1;
                        c.non_200 += u64::from(status != 200);
                        let us = done.duration_since(scheduled).as_micros();
                        c.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
            } else if sending && now >= conn.next {
                let scheduled = conn.next;
                conn.next += interval;
                // One small request into an empty send buffer: it never blocks.
                if let Err(e) = conn.stream.write_all(&request) {
                    c.errors += 1;
                    return Err(format!("write: {e}"));
                }
                conn.in_flight = Some(scheduled);
                busy = true;
                if scheduled >= measure_from {
                    c.sent += 1;
                }
            } else if sending {
                busy = true;
            }
        }
        if !busy {
            return Ok(c);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("openloop: {e}");
            return ExitCode::from(2);
        }
    };
    let mut c = match run(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("openloop: {e}");
            return ExitCode::from(1);
        }
    };
    c.latencies_us.sort_unstable();
    let l = &c.latencies_us;
    println!(
        "{{\"rate\": {}, \"connections\": {}, \"duration_s\": {}, \"sent\": {}, \"done\": {}, \
         \"non_200\": {}, \"errors\": {}, \"achieved_rps\": {:.0}, \"p50_us\": {}, \
         \"p90_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}}}",
        a.rate,
        a.connections,
        a.duration,
        c.sent,
        c.done,
        c.non_200,
        c.errors,
        c.done as f64 / a.duration,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        percentile(l, 99.9),
        l.last().copied().unwrap_or(0),
    );
    ExitCode::SUCCESS
}
