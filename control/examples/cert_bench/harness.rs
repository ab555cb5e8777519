//! The bench's hold on the parts it starts: realmctl's API with the operator token, and a
//! Pebble started (and stopped) through tests/setup/pebble.sh.

use realmgate_e2e::process::workspace_root;
use reqwest::Method;
use serde_json::{json, Value};

/// realmctl's API with the operator token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn call(
        &self,
        m: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn create(&self, id: &str, host: &str) -> Result<(), String> {
        let body = json!({"id": id, "hosts": [host], "display_name": id,
            "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]});
        match self.call(Method::POST, "/v1/tenants", Some(body)).await? {
            (202, _) => Ok(()),
            (s, v) => Err(format!("create {id}: {s} {v}")),
        }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = match self.http.get(format!("{}/metrics", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Pebble started by tests/setup/pebble.sh; stopped on drop.
pub struct Pebble {
    pub dir: std::path::PathBuf,
    pub directory_url: String,
    pub listener_ca: std::path::PathBuf,
    pub management: String,
}

impl Pebble {
    pub fn start(dir: &std::path::Path, dns: &str, http_port: u16) -> Result<Pebble, String> {
        let script = workspace_root().join("tests/setup/pebble.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir)
            .env("PEBBLE_DNS_SERVER", dns)
            .env("PEBBLE_HTTP_PORT", http_port.to_string())
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        if !out.status.success() || lines.len() < 3 {
            return Err(format!(
                "pebble.sh start: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Pebble {
            dir: dir.to_path_buf(),
            directory_url: lines[0].into(),
            listener_ca: lines[1].into(),
            management: lines[2].into(),
        })
    }

    pub async fn root_pem(&self) -> Result<String, String> {
        let ca = std::fs::read(&self.listener_ca).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?)
            .build()
            .map_err(|e| e.to_string())?;
        let r = http
            .get(format!("{}/roots/0", self.management))
            .send()
            .await;
        r.map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let script = workspace_root().join("tests/setup/pebble.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
