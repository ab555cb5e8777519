//! Gateway discovery (push's targets): watch the EndpointSlices of the gateways' Service and
//! report the admin URL of every ready endpoint. An adapter: it hands sets to whoever
//! listens on [`Discovery::targets`] and never calls into the pusher.
//!
//! The watch is `kube::runtime::watcher`: it lists, then watches from the list's version,
//! resumes a closed watch from the last version seen and lists again when the server says
//! that version is gone (410); failures are retried with its default backoff. While the API
//! server is away or refuses, the gateways last listed stay targets: a control-plane outage
//! must not stop pushes to gateways that are still there.

pub mod config;
pub mod endpoints;

pub use config::KubernetesDiscovery;

use crate::kube_access::{describe, Call};
use crate::metrics::Metrics;
use crate::time::{now_ms, rfc3339};
use crate::views::DiscoveryView;
use endpoints::{HostForm, UrlForm};
use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::watch;

/// RBAC's name for what discovery reads (`list` and `watch` it).
const RESOURCE: &str = "endpointslices.discovery.k8s.io";

/// A running discovery: the current gateway set, and its own state.
pub struct Discovery {
    pub targets: watch::Receiver<BTreeSet<String>>,
    pub status: watch::Receiver<DiscoveryView>,
}

/// Start watching. Fails only when the Kubernetes configuration cannot be read; the API
/// server itself may be away (discovery waits for it).
pub async fn start(
    settings: KubernetesDiscovery,
    metrics: Arc<Metrics>,
) -> Result<Discovery, String> {
    let client = crate::kube_access::client(settings.kubeconfig.as_deref()).await?;
    let namespace = settings
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let form = UrlForm {
        scheme: settings.scheme,
        port: settings.port.clone(),
        host: match &settings.service_dns {
            None => HostForm::Address,
            Some(domain) => HostForm::ServiceDns {
                suffix: format!("{}.{namespace}.svc.{domain}", settings.service),
            },
        },
    };
    let (targets_tx, targets) = watch::channel(BTreeSet::new());
    let (status_tx, status) = watch::channel(DiscoveryView {
        provider: "kubernetes".into(),
        service: settings.service.clone(),
        namespace: namespace.clone(),
        state: "starting".into(),
        error: None,
        warnings: Vec::new(),
        slices: 0,
        gateways: 0,
        lists: 0,
        last_change_at: None,
    });
    log::info!(
        "gateway discovery: watching the EndpointSlices of Service {namespace}/{} ({}, {})",
        settings.service,
        settings.port,
        settings.scheme
    );
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &namespace);
    let config = watcher::Config::default()
        .labels(&format!("kubernetes.io/service-name={}", settings.service));
    let watch = Watch {
        namespace,
        form,
        slices: BTreeMap::new(),
        targets: targets_tx,
        status: status_tx,
        metrics,
    };
    tokio::spawn(watch.run(watcher::watcher(api, config).default_backoff()));
    Ok(Discovery { targets, status })
}

/// The watch loop's state: slice name → the URLs it names (or why it names none).
struct Watch {
    namespace: String,
    form: UrlForm,
    slices: BTreeMap<String, Result<BTreeSet<String>, String>>,
    targets: watch::Sender<BTreeSet<String>>,
    status: watch::Sender<DiscoveryView>,
    metrics: Arc<Metrics>,
}

impl Watch {
    async fn run(
        mut self,
        events: impl futures_util::Stream<Item = Result<Event<EndpointSlice>, watcher::Error>>,
    ) {
        let mut events = std::pin::pin!(events);
        // A (re-)list arrives as Init, InitApply…, InitDone: the set it makes replaces the old
        // one only once complete, so gateways do not vanish and come back during a re-list.
        let mut listing: Option<BTreeMap<String, Result<BTreeSet<String>, String>>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listing = Some(BTreeMap::new()),
                Ok(Event::InitApply(slice)) => {
                    let (name, urls) = self.read(&slice);
                    listing.get_or_insert_default().insert(name, urls);
                }
                Ok(Event::InitDone) => {
                    self.slices = listing.take().unwrap_or_default();
                    self.metrics.discovery_lists.inc();
                    self.status.send_modify(|s| s.lists += 1);
                    self.publish();
                }
                Ok(Event::Apply(slice)) => {
                    let (name, urls) = self.read(&slice);
                    self.slices.insert(name, urls);
                    self.publish();
                }
                Ok(Event::Delete(slice)) => {
                    let (name, _) = self.read(&slice);
                    self.slices.remove(&name);
                    self.publish();
                }
                Err(e) => self.failed(&e),
            }
        }
    }

    fn read(&self, slice: &EndpointSlice) -> (String, Result<BTreeSet<String>, String>) {
        let name = slice.metadata.name.clone().unwrap_or_default();
        (name, endpoints::slice_urls(slice, &self.form))
    }

    /// Hand the union of the slices' URLs on (if it changed) and show where discovery stands.
    fn publish(&mut self) {
        let set: BTreeSet<String> = self
            .slices
            .values()
            .filter_map(|r| r.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let warnings: Vec<String> = self
            .slices
            .values()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect();
        for w in &warnings {
            log::warn!("gateway discovery: {w}");
        }
        let (slices, gateways) = (self.slices.len(), set.len());
        let changed = self.targets.send_if_modified(|current| {
            let differs = *current != set;
            if differs {
                log::info!(
                    "gateway discovery: {gateways} gateway(s) in {slices} EndpointSlice(s): {}",
                    set.iter().cloned().collect::<Vec<_>>().join(", ")
                );
                *current = set;
            }
            differs
        });
        self.status.send_modify(|s| {
            s.state = "watching".into();
            s.error = None;
            s.warnings = warnings;
            s.slices = slices;
            s.gateways = gateways;
            if changed {
                s.last_change_at = Some(rfc3339(now_ms()));
            }
        });
    }

    /// A failed list or watch: shown and logged; the gateways last listed stay targets.
    fn failed(&mut self, e: &watcher::Error) {
        let call = |verb| Call {
            verb,
            resource: RESOURCE,
            namespace: &self.namespace,
        };
        let text = match e {
            watcher::Error::WatchError(status) if status.code == 410 => {
                // Not a failure: the version we watched from is compacted away; the watcher
                // lists again and the set is rebuilt from that list.
                log::info!(
                    "gateway discovery: the EndpointSlice watch expired (410 Gone: {}); listing again",
                    status.message
                );
                return;
            }
            watcher::Error::InitialListFailed(e) => describe(call("list"), e),
            watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
                describe(call("watch"), e)
            }
            watcher::Error::WatchError(status) => {
                describe(call("watch"), &kube::Error::Api(status.clone()))
            }
            other @ watcher::Error::NoResourceVersion => format!("gateway discovery: {other}"),
        };
        self.metrics.discovery_errors.inc();
        let repeated = self.status.borrow().error.as_deref() == Some(text.as_str());
        if repeated {
            log::debug!("gateway discovery: {text}");
        } else {
            log::warn!(
                "gateway discovery: {text} (retrying with backoff; the {} gateway(s) last listed stay targets)",
                self.targets.borrow().len()
            );
        }
        self.status.send_modify(|s| {
            s.state = "error".into();
            s.error = Some(text);
        });
    }
}
