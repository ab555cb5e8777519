//! The `lease:` section of realmctl's configuration: which Lease to hold, as whom, and its
//! timings, checked once with every problem listed.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_NAME: &str = "realmctl";
pub const DEFAULT_DURATION_MS: u64 = 10_000;
pub const DEFAULT_RENEW_DEADLINE_MS: u64 = 7_000;
pub const DEFAULT_RETRY_MS: u64 = 2_000;

/// `lease:` as written.
#[derive(Debug, Default, Deserialize)]
pub struct LeaseFile {
    namespace: Option<String>,
    name: Option<String>,
    identity: Option<String>,
    kubeconfig: Option<PathBuf>,
    duration_ms: Option<u64>,
    renew_deadline_ms: Option<u64>,
    retry_ms: Option<u64>,
}

/// The resolved `lease:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This process's `holderIdentity`.
    pub identity: String,
    /// `None`: the in-cluster configuration, else the default kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// How long a Lease nobody renews stays held (`leaseDurationSeconds`, rounded up).
    pub duration: Duration,
    /// The leader stops writing when no renewal succeeded for this long (< `duration`, so it
    /// stops before anyone else may take the Lease).
    pub renew_deadline: Duration,
    /// How often the Lease is renewed (by the leader) or tried (by the others).
    pub retry: Duration,
}

impl LeaseConfig {
    /// Check `f`, adding each problem (named `lease.<key>`) to `problems`.
    pub fn resolve(f: LeaseFile, problems: &mut Vec<String>) -> Option<LeaseConfig> {
        let before = problems.len();
        let namespace = match f.namespace {
            Some(ns) => check_name("lease.namespace", &ns, 63, problems).then_some(ns),
            None => {
                problems.push(
                    "lease.namespace: required (the namespace of the coordination.k8s.io Lease)"
                        .into(),
                );
                None
            }
        };
        let name = f.name.unwrap_or_else(|| DEFAULT_NAME.into());
        check_name("lease.name", &name, 253, problems);
        let identity = f.identity.unwrap_or_else(default_identity);
        if identity.trim().is_empty() || identity.len() > 253 {
            problems.push("lease.identity: must be 1 to 253 characters".into());
        }
        let duration = f.duration_ms.unwrap_or(DEFAULT_DURATION_MS);
        let deadline = f.renew_deadline_ms.unwrap_or(DEFAULT_RENEW_DEADLINE_MS);
        let retry = f.retry_ms.unwrap_or(DEFAULT_RETRY_MS);
        if duration < 1000 {
            problems.push(
                "lease.duration_ms: must be at least 1000 (the Lease counts whole seconds)".into(),
            );
        }
        if deadline == 0 || deadline >= duration {
            problems.push(format!(
                "lease.renew_deadline_ms: must be above 0 and below lease.duration_ms ({duration}): the leader must stop writing before anyone else may take the Lease"
            ));
        }
        if retry == 0 || retry >= deadline {
            problems.push(format!(
                "lease.retry_ms: must be above 0 and below lease.renew_deadline_ms ({deadline}), so that a renewal is tried before the deadline"
            ));
        }
        let namespace = namespace?;
        (problems.len() == before).then(|| LeaseConfig {
            namespace,
            name,
            identity,
            kubeconfig: f.kubeconfig,
            duration: Duration::from_millis(duration),
            renew_deadline: Duration::from_millis(deadline),
            retry: Duration::from_millis(retry),
        })
    }

    /// `leaseDurationSeconds`: the duration rounded up to whole seconds.
    pub fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_millis().div_ceil(1000)).unwrap_or(i32::MAX)
    }

    /// `namespace/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `$POD_NAME`, else `$HOSTNAME`, else the kernel's hostname; then `-<pid>`, so that two
/// processes on one host (or a restarted one) never share an identity.
pub fn default_identity() -> String {
    let host = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "realmctl".into());
    format!("{}-{}", host.trim(), std::process::id())
}

/// A DNS label (namespace) or subdomain (object name): lower-case alphanumerics, `-` (and
/// `.` in names), alphanumeric at both ends.
fn check_name(key: &str, v: &str, max: usize, problems: &mut Vec<String>) -> bool {
    let dots = max > 63;
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        problems.push(format!(
            "{key}: {v:?} is not a valid Kubernetes name (lower-case letters, digits and '-', at most {max} characters)"
        ));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<LeaseConfig, Vec<String>> {
        let f: LeaseFile = serde_yaml::from_str(yaml).expect("yaml");
        let mut problems = Vec::new();
        LeaseConfig::resolve(f, &mut problems).ok_or(problems)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = resolve("namespace: realmgate").expect("valid");
        assert_eq!(c.name, "realmctl");
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.renew_deadline, Duration::from_secs(7));
        assert_eq!(c.retry, Duration::from_secs(2));
        assert_eq!(c.duration_seconds(), 10);
        assert_eq!(c.kubeconfig, None);
        assert!(
            c.identity.ends_with(&format!("-{}", std::process::id())),
            "{}",
            c.identity
        );
        assert_eq!(c.describe(), "realmgate/realmctl");
    }

    #[test]
    fn every_problem_is_listed() {
        let problems =
            resolve("{name: Bad_Name, duration_ms: 3000, renew_deadline_ms: 3000, retry_ms: 5000}")
                .expect_err("invalid");
        let text = problems.join("\n");
        for want in [
            "lease.namespace: required",
            "lease.name: \"Bad_Name\"",
            "lease.renew_deadline_ms: must be above 0 and below lease.duration_ms (3000)",
            "lease.retry_ms: must be above 0 and below lease.renew_deadline_ms (3000)",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let problems =
            resolve("{namespace: edge, duration_ms: 500, renew_deadline_ms: 400, retry_ms: 100}")
                .expect_err("too short");
        assert!(problems[0].contains("lease.duration_ms"), "{problems:?}");
    }

    #[test]
    fn short_timings_round_up_to_whole_seconds() {
        let c = resolve(
            "{namespace: edge, identity: me, duration_ms: 2500, renew_deadline_ms: 2000, retry_ms: 500}",
        )
        .expect("valid");
        assert_eq!(c.duration_seconds(), 3);
        assert_eq!(c.identity, "me");
    }
}
