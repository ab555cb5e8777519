//! wrk, the load generator of the scale benches (`delta_bench`, realmctl's `ctl_scale`): one
//! run against a host on a gateway, and what its `--latency` report says.

use std::process::Command;

/// What wrk said about one run.
#[derive(Debug, Default, Clone)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    pub errors: u64,
}

impl Load {
    /// Requests that failed: non-2xx/3xx answers and socket errors.
    pub fn failed(&self) -> u64 {
        self.non_2xx + self.errors
    }
}

/// `wrk -t1 -c16 --latency` for `seconds` against `url` with `Host: host`. Exits the process
/// (status 2) when wrk cannot be run: a bench without its load means nothing.
pub fn run(url: &str, host: &str, seconds: u64) -> Load {
    let out = Command::new("wrk")
        .args(["-t1", "-c16", "--latency"])
        .arg(format!("-d{seconds}s"))
        .args(["-H", &format!("Host: {host}")])
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            eprintln!("wrk: {e} (apt-get install wrk, or run benches/run once)");
            std::process::exit(2)
        });
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// The numbers of wrk's report (absent ones stay 0).
pub fn parse(text: &str) -> Load {
    let mut load = Load::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => load.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => load.p50_ms = millis(v),
            ["99%", v] => load.p99_ms = millis(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => load.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    load
}

/// wrk's `1.23ms` / `456.00us` / `1.01s`, in milliseconds.
fn millis(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_report_is_read() {
        let report = "Running 2s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  412.00us\n     99%    2.50ms\n  2000 requests in 2.00s, 1.00MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n  Non-2xx or 3xx responses: 3\nRequests/sec:   1000.50\n";
        let load = parse(report);
        assert_eq!(load.rps, 1000.5);
        assert_eq!(load.p50_ms, 0.412);
        assert_eq!(load.p99_ms, 2.5);
        assert_eq!((load.non_2xx, load.errors, load.failed()), (3, 3, 6));
        assert!(millis("3x").is_nan());
        assert_eq!(millis("1.5s"), 1500.0);
    }
}
