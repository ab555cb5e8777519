//! Provisioning step 4, dns (`powerdns`): rrsets for each tenant host through the PowerDNS
//! HTTP API — A/AAAA to the edge addresses, or a CNAME to the edge name, TTL from config.
//! Reads the zone first and patches only what differs; only A, AAAA and CNAME rrsets on the
//! tenant's names are ever touched. Custom domains are left to their owners.

use super::{digest_of, root_cause, Outputs, Step, StepError, StepKind, TenantInput};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Where tenant names point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addresses(Vec<IpAddr>),
    /// Absolute name, with the trailing dot.
    Cname(String),
}

#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// `http://127.0.0.1:8081`
    pub api_url: String,
    pub server_id: String,
    pub api_key: String,
    /// Absolute zone name, with the trailing dot.
    pub zone: String,
    pub ttl: u32,
    pub target: Target,
}

pub struct Dns {
    s: DnsSettings,
    http: reqwest::Client,
}

/// Our record types: every other type on a tenant name is left alone.
const OURS: [&str; 3] = ["A", "AAAA", "CNAME"];

impl Dns {
    pub fn new(s: DnsSettings) -> Result<Dns, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Dns { s, http })
    }

    fn zone_url(&self) -> String {
        format!(
            "{}/api/v1/servers/{}/zones/{}",
            self.s.api_url.trim_end_matches('/'),
            self.s.server_id,
            self.s.zone
        )
    }

    /// `name → type → [content]` for the records we manage, as they should be.
    fn desired(
        &self,
        hosts: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<&'static str, Vec<String>>>, StepError> {
        let mut out = BTreeMap::new();
        for h in hosts {
            let name = format!("{h}.");
            let zone = self.s.zone.as_str();
            if !(name == zone || name.ends_with(&format!(".{zone}"))) {
                return Err(StepError::new(format!(
                    "host {h} is not in the DNS zone {zone}: give the tenant a host under it, or set provision.dns.zone"
                )));
            }
            let mut types: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
            match &self.s.target {
                Target::Addresses(addrs) => {
                    for a in addrs {
                        let ty = if a.is_ipv4() { "A" } else { "AAAA" };
                        types.entry(ty).or_default().push(a.to_string());
                    }
                }
                Target::Cname(edge) => {
                    types.insert("CNAME", vec![edge.clone()]);
                }
            }
            for v in types.values_mut() {
                v.sort();
            }
            out.insert(name, types);
        }
        Ok(out)
    }

    /// `name → type → (ttl, [content])` of our types on `names`, as the zone has them.
    async fn actual(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<(String, String), (u64, Vec<String>)>, StepError> {
        let zone: Value = self
            .zone_request(reqwest::Method::GET, None)
            .await?
            .json()
            .await
            .map_err(|e| StepError::new(format!("PowerDNS zone answer: {e}")))?;
        let mut out = BTreeMap::new();
        for rr in zone["rrsets"].as_array().map_or(&[][..], Vec::as_slice) {
            let (Some(name), Some(ty)) = (rr["name"].as_str(), rr["type"].as_str()) else {
                continue;
            };
            if !OURS.contains(&ty) || !names.iter().any(|n| n == name) {
                continue;
            }
            let mut contents: Vec<String> = rr["records"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(|r| r["content"].as_str().map(str::to_owned))
                .collect();
            contents.sort();
            out.insert(
                (name.to_owned(), ty.to_owned()),
                (rr["ttl"].as_u64().unwrap_or(0), contents),
            );
        }
        Ok(out)
    }

    async fn patch(&self, rrsets: Vec<Value>) -> Result<(), StepError> {
        if rrsets.is_empty() {
            return Ok(());
        }
        self.zone_request(reqwest::Method::PATCH, Some(json!({ "rrsets": rrsets })))
            .await
            .map(drop)
    }

    /// One call on the zone; a refusal says the method, the zone and PowerDNS's error.
    async fn zone_request(
        &self,
        method: reqwest::Method,
        body: Option<Value>,
    ) -> Result<reqwest::Response, StepError> {
        let mut req = self
            .http
            .request(method.clone(), self.zone_url())
            .header("X-API-Key", &self.s.api_key);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| StepError::new(format!("PowerDNS unreachable: {}", root_cause(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(StepError::new(format!(
                "PowerDNS {method} zone {}: {status}: {}",
                self.s.zone,
                api_error(&body)
            )));
        }
        Ok(resp)
    }
}

fn api_error(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn names_in(previous: &Outputs) -> Vec<String> {
    previous
        .public
        .get("records")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Step for Dns {
    fn kind(&self) -> StepKind {
        StepKind::Dns
    }

    fn provider(&self) -> &'static str {
        "powerdns"
    }

    fn input_digest(&self, t: &TenantInput) -> String {
        let target = format!("{:?}/{}", self.s.target, self.s.ttl);
        let hosts = t.platform_hosts();
        let mut parts = vec![self.s.zone.as_str(), target.as_str()];
        parts.extend(hosts.iter().map(String::as_str));
        digest_of(parts)
    }

    async fn ensure(&self, t: &TenantInput, previous: &Outputs) -> Result<Outputs, StepError> {
        // Custom domains are their owners' to point at the edge (a CNAME in their zone).
        let desired = self.desired(&t.platform_hosts())?;
        // Names this step made before (hosts since removed) are cleaned up too.
        let mut names: Vec<String> = desired.keys().cloned().collect();
        for n in names_in(previous) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let actual = self.actual(&names).await?;
        let mut changes = Vec::new();
        for name in &names {
            let want = desired.get(name);
            for ty in OURS {
                let wanted = want.and_then(|w| w.get(ty));
                let have = actual.get(&(name.clone(), ty.to_owned()));
                match (wanted, have) {
                    (Some(w), Some((ttl, h))) if w == h && *ttl == u64::from(self.s.ttl) => {}
                    (Some(w), _) => changes.push(json!({
                        "name": name, "type": ty, "ttl": self.s.ttl, "changetype": "REPLACE",
                        "records": w.iter().map(|c| json!({"content": c, "disabled": false})).collect::<Vec<_>>(),
                    })),
                    (None, Some(_)) => changes.push(json!({
                        "name": name, "type": ty, "changetype": "DELETE",
                    })),
                    (None, None) => {}
                }
            }
        }
        // DELETEs first: a CNAME cannot share a name with an A record.
        changes.sort_by_key(|c| c["changetype"] != "DELETE");
        if !changes.is_empty() {
            log::info!(
                "tenant {}: DNS: {} rrset change(s) in zone {}",
                t.id,
                changes.len(),
                self.s.zone
            );
        }
        self.patch(changes).await?;
        let mut out = Outputs::default();
        let records: Vec<Value> = desired
            .iter()
            .flat_map(|(name, types)| {
                types
                    .iter()
                    .map(move |(ty, c)| json!({"name": name, "type": ty, "content": c}))
            })
            .collect();
        out.public.insert("zone".into(), json!(self.s.zone));
        out.public.insert("ttl".into(), json!(self.s.ttl));
        out.public.insert("records".into(), Value::Array(records));
        Ok(out)
    }

    async fn remove(&self, t: &TenantInput, previous: &Outputs) -> Result<(), StepError> {
        let mut names = names_in(previous);
        // Without a previous ensure, the names follow from the hosts; hosts outside the
        // zone were never ours.
        for h in &t.hosts {
            let n = format!("{h}.");
            if !names.contains(&n) && n.ends_with(&self.s.zone) {
                names.push(n);
            }
        }
        let actual = self.actual(&names).await?;
        let changes: Vec<Value> = actual
            .keys()
            .map(|(name, ty)| json!({"name": name, "type": ty, "changetype": "DELETE"}))
            .collect();
        self.patch(changes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(target: Target) -> Dns {
        Dns::new(DnsSettings {
            api_url: "http://127.0.0.1:1".into(),
            server_id: "localhost".into(),
            api_key: "k".into(),
            zone: "example.dev.".into(),
            ttl: 60,
            target,
        })
        .expect("client")
    }

    #[test]
    fn desired_records() {
        let d = dns(Target::Addresses(vec![
            "192.0.2.1".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
        ]));
        let w = d
            .desired(&["acme.example.dev".into(), "*.acme.example.dev".into()])
            .expect("desired");
        assert_eq!(w["acme.example.dev."]["A"], ["192.0.2.1"]);
        assert_eq!(w["*.acme.example.dev."]["AAAA"], ["2001:db8::1"]);
        let err = d.desired(&["acme.other.dev".into()]).expect_err("outside");
        assert!(err.0.contains("not in the DNS zone"), "{err}");
        let c = dns(Target::Cname("edge.example.dev.".into()));
        let w = c.desired(&["acme.example.dev".into()]).expect("desired");
        assert_eq!(w["acme.example.dev."]["CNAME"], ["edge.example.dev."]);
    }
}
