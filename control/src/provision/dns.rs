//! Provisioning step 4, dns (`powerdns`): rrsets for each tenant host through the PowerDNS
//! HTTP API — A/AAAA to the edge addresses, or a CNAME to the edge name, TTL from config.
//! Reads the zone first and patches only what differs; only A, AAAA and CNAME rrsets on the
//! tenant's names are ever touched. Custom domains are left to their owners. The same
//! provider publishes and removes the `_acme-challenge` TXT records of dns-01 (for the ACME
//! client, in whichever of its zones holds the name).

use super::{digest_of, root_cause, Outputs, Step, StepError, StepKind, TenantInput};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
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

    fn server_url(&self) -> String {
        format!(
            "{}/api/v1/servers/{}",
            self.s.api_url.trim_end_matches('/'),
            self.s.server_id
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
        let zone = self.s.zone.clone();
        self.call(
            method,
            &format!("zones/{zone}"),
            &format!("zone {zone}"),
            body,
        )
        .await
    }

    /// One call under the server (`path` after `/servers/<id>/`). Every call made here is a
    /// GET or a PATCH of REPLACE/DELETE changes, so each is safe to repeat: a 5xx (PowerDNS's
    /// SQLite backend answers 500 when two writers to one zone collide) is tried again twice,
    /// after 100 ms and 300 ms, before the step fails.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        what: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, StepError> {
        let mut pauses = [100u64, 300].into_iter();
        loop {
            match self
                .call_once(method.clone(), path, what, body.as_ref())
                .await
            {
                Err((e, true)) => match pauses.next() {
                    Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
                    None => return Err(e),
                },
                Err((e, false)) => return Err(e),
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// One attempt; an error says whether it is worth repeating (a 5xx answer).
    async fn call_once(
        &self,
        method: reqwest::Method,
        path: &str,
        what: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, (StepError, bool)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/{path}", self.server_url()))
            .header("X-API-Key", &self.s.api_key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let e = StepError::new(format!("PowerDNS unreachable: {}", root_cause(&e)));
            (e, false)
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let e = StepError::new(format!(
                "PowerDNS {method} {what}: {status}: {}",
                api_error(&body)
            ));
            return Err((e, status.is_server_error()));
        }
        Ok(resp)
    }

    async fn json(&self, path: &str, what: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, what, None)
            .await
            .map_err(|e| e.0)?
            .json()
            .await
            .map_err(|e| format!("PowerDNS {what}: {e}"))
    }
}

/// The longest of `zones` (absolute or not) that holds `name`, without the trailing dot.
fn zone_holding(zones: &[String], name: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    zones
        .iter()
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
        .filter(|z| !z.is_empty() && (name == *z || name.ends_with(&format!(".{z}"))))
        .max_by_key(String::len)
}

/// The DNS listener in PowerDNS's `local-address` (the first; it may carry a port, else
/// `local-port`, else 53). An unspecified address (`0.0.0.0`) means the API's host.
fn listener(local_address: &str, local_port: Option<&str>, api_url: &str) -> Option<SocketAddr> {
    let first = local_address
        .split(|c: char| c == ',' || c.is_whitespace())
        .find(|a| !a.is_empty())?;
    let port: u16 = local_port.and_then(|p| p.trim().parse().ok()).unwrap_or(53);
    let mut addr = first.parse::<SocketAddr>().ok().or_else(|| {
        first
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
    })?;
    if addr.ip().is_unspecified() {
        let host = url::Url::parse(api_url).ok()?.host_str()?.to_owned();
        addr.set_ip(host.trim_matches(|c| c == '[' || c == ']').parse().ok()?);
    }
    Some(addr)
}

/// dns-01 through PowerDNS: TXT rrsets in whichever of its zones holds the name.
#[async_trait::async_trait]
impl crate::acme::TxtRecords for Dns {
    async fn zone_of(&self, name: &str) -> Result<Option<String>, String> {
        let zones = self.json("zones", "zones").await?;
        let names: Vec<String> = zones
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|z| z["name"].as_str().map(str::to_owned))
            .collect();
        Ok(zone_holding(&names, name))
    }

    async fn publish_txt(&self, zone: &str, name: &str, values: &[String]) -> Result<(), String> {
        // A TXT record's content is a quoted character-string; the values are base64url.
        let records: Vec<Value> = values
            .iter()
            .map(|v| json!({"content": format!("\"{v}\""), "disabled": false}))
            .collect();
        let rrset = json!({"name": format!("{name}."), "type": "TXT", "ttl": self.s.ttl.min(60),
                           "changetype": "REPLACE", "records": records});
        self.call(
            reqwest::Method::PATCH,
            &format!("zones/{zone}."),
            &format!("zone {zone}."),
            Some(json!({ "rrsets": [rrset] })),
        )
        .await
        .map(drop)
        .map_err(|e| e.0)
    }

    async fn remove_txt(&self, zone: &str, name: &str) -> Result<(), String> {
        // PowerDNS answers 204 to deleting an rrset that is not there: idempotent as it is.
        let rrset = json!({"name": format!("{name}."), "type": "TXT", "changetype": "DELETE"});
        self.call(
            reqwest::Method::PATCH,
            &format!("zones/{zone}."),
            &format!("zone {zone}."),
            Some(json!({ "rrsets": [rrset] })),
        )
        .await
        .map(drop)
        .map_err(|e| e.0)
    }

    async fn authoritative_server(&self) -> Result<SocketAddr, String> {
        let config = self.json("config", "server config").await?;
        let setting = |k: &str| {
            config
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .find(|c| c["name"] == k)
                .and_then(|c| c["value"].as_str().map(str::to_owned))
        };
        let address = setting("local-address").unwrap_or_else(|| "0.0.0.0".into());
        listener(&address, setting("local-port").as_deref(), &self.s.api_url).ok_or_else(|| {
            format!("PowerDNS's local-address {address:?} names no DNS listener realmctl can ask: set certificates.acme.resolver")
        })
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
        let zones = ["example.dev.".to_owned(), "acme.example.dev.".to_owned()];
        assert_eq!(
            zone_holding(&zones, "_acme-challenge.x.acme.example.dev").as_deref(),
            Some("acme.example.dev")
        );
        assert_eq!(
            zone_holding(&zones, "_acme-challenge.Example.DEV.").as_deref(),
            Some("example.dev")
        );
        assert_eq!(zone_holding(&zones, "_acme-challenge.badexample.dev"), None);
        let api = "http://192.0.2.7:8081";
        let at = |a: &str, p: Option<&str>| listener(a, p, api).map(|s| s.to_string());
        assert_eq!(
            at("127.0.0.1", Some("15453")).as_deref(),
            Some("127.0.0.1:15453")
        );
        assert_eq!(
            at("127.0.0.1:5300, ::1", None).as_deref(),
            Some("127.0.0.1:5300")
        );
        assert_eq!(at("0.0.0.0", None).as_deref(), Some("192.0.2.7:53"));
        assert_eq!(at("", None), None);
        assert_eq!(listener("::", None, "http://pdns.internal:8081"), None);
        let w = c.desired(&["acme.example.dev".into()]).expect("desired");
        assert_eq!(w["acme.example.dev."]["CNAME"], ["edge.example.dev."]);
    }
}
