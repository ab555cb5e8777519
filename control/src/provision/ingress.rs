//! Provisioning step 3, ingress (`kubernetes`): one networking.k8s.io/v1 Ingress per tenant
//! through `kube`, applied server-side under realmctl's field manager, labelled as
//! realmctl's and the tenant's. An Ingress of the same name that is not ours is never
//! overwritten or deleted, and a field of ours that another field manager took over (a hand
//! edit with `kubectl apply --server-side`, another controller) is reported as the step's
//! error, naming the manager, not overwritten: the apply is never forced.

use super::{digest_of, Outputs, Step, StepError, StepKind, TenantInput};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const TENANT_LABEL: &str = "realmgate.dev/tenant";

#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// A kubeconfig file; `None`: in-cluster config, else the default kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    /// `{tenant}` is replaced by the tenant id.
    pub name_template: String,
    pub ingress_class: Option<String>,
    pub service_name: String,
    pub service_port: u16,
    /// `{tenant}` is replaced; `None`: no TLS section.
    pub tls_secret_template: Option<String>,
    /// `cert-manager.io/cluster-issuer` annotation (or `cert-manager.io/issuer` with
    /// `issuer_kind: Issuer`).
    pub cert_issuer: Option<String>,
    pub issuer_kind_cluster: bool,
    pub field_manager: String,
}

pub struct IngressStep {
    s: IngressSettings,
    client: tokio::sync::OnceCell<kube::Client>,
}

impl IngressStep {
    pub fn new(s: IngressSettings) -> IngressStep {
        IngressStep {
            s,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// The client is made on first use, so realmctl starts even while the cluster is away.
    async fn api(&self) -> Result<Api<Ingress>, StepError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                crate::kube_access::client(self.s.kubeconfig.as_deref())
                    .await
                    .map_err(StepError::new)
            })
            .await?;
        Ok(Api::namespaced(client.clone(), &self.s.namespace))
    }

    pub fn name_of(&self, tenant: &str) -> String {
        self.s.name_template.replace("{tenant}", tenant)
    }

    /// The Ingress as realmctl wants it.
    pub fn desired(&self, t: &TenantInput) -> Ingress {
        let id = t.id.as_str();
        let labels = BTreeMap::from([
            (MANAGED_BY.to_owned(), "realmctl".to_owned()),
            (TENANT_LABEL.to_owned(), id.to_owned()),
        ]);
        let mut annotations = BTreeMap::new();
        if let Some(issuer) = &self.s.cert_issuer {
            let key = if self.s.issuer_kind_cluster {
                "cert-manager.io/cluster-issuer"
            } else {
                "cert-manager.io/issuer"
            };
            annotations.insert(key.to_owned(), issuer.clone());
        }
        let backend = IngressBackend {
            service: Some(IngressServiceBackend {
                name: self.s.service_name.clone(),
                port: Some(ServiceBackendPort {
                    number: Some(i32::from(self.s.service_port)),
                    name: None,
                }),
            }),
            resource: None,
        };
        let rules = t
            .hosts
            .iter()
            .map(|h| IngressRule {
                host: Some(h.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: backend.clone(),
                    }],
                }),
            })
            .collect();
        let tls = self.s.tls_secret_template.as_ref().map(|tpl| {
            vec![IngressTLS {
                hosts: Some(t.hosts.clone()),
                secret_name: Some(tpl.replace("{tenant}", id)),
            }]
        });
        Ingress {
            metadata: ObjectMeta {
                name: Some(self.name_of(id)),
                namespace: Some(self.s.namespace.clone()),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: self.s.ingress_class.clone(),
                rules: Some(rules),
                tls,
                default_backend: None,
            }),
            status: None,
        }
    }
}

fn ours(ing: &Ingress, tenant: &str) -> bool {
    let labels = ing.metadata.labels.as_ref();
    labels.and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some("realmctl")
        && labels.and_then(|l| l.get(TENANT_LABEL)).map(String::as_str) == Some(tenant)
}

/// Whether `actual` already carries everything `want` sets (the server adds defaults and
/// other managers' fields, which are not ours to judge).
fn converged(actual: &Ingress, want: &Ingress) -> bool {
    let subset = |a: &Option<BTreeMap<String, String>>, w: &Option<BTreeMap<String, String>>| {
        w.iter()
            .flatten()
            .all(|(k, v)| a.as_ref().and_then(|a| a.get(k)) == Some(v))
    };
    subset(&actual.metadata.labels, &want.metadata.labels)
        && subset(&actual.metadata.annotations, &want.metadata.annotations)
        && actual.spec == want.spec
}

fn kube_error(verb: &str, ns: &str, e: &kube::Error) -> StepError {
    StepError::new(crate::kube_access::describe(
        crate::kube_access::Call {
            verb,
            resource: "ingresses.networking.k8s.io",
            namespace: ns,
        },
        e,
    ))
}

#[async_trait::async_trait]
impl Step for IngressStep {
    fn kind(&self) -> StepKind {
        StepKind::Ingress
    }

    fn provider(&self) -> &'static str {
        "kubernetes"
    }

    fn input_digest(&self, t: &TenantInput) -> String {
        let spec = serde_json::to_string(&self.desired(t)).unwrap_or_default();
        digest_of([spec.as_str()])
    }

    async fn ensure(&self, t: &TenantInput, _previous: &Outputs) -> Result<Outputs, StepError> {
        let api = self.api().await?;
        let name = self.name_of(t.id.as_str());
        let want = self.desired(t);
        let actual = api
            .get_opt(&name)
            .await
            .map_err(|e| kube_error("get", &self.s.namespace, &e))?;
        let unchanged = match &actual {
            Some(a) if !ours(a, t.id.as_str()) => {
                return Err(StepError::new(format!(
                    "Ingress {}/{name} exists and is not realmctl's for tenant {} (labels {MANAGED_BY}=realmctl, {TENANT_LABEL}={}); remove or rename it",
                    self.s.namespace, t.id, t.id
                )))
            }
            Some(a) => converged(a, &want),
            None => false,
        };
        let applied = if unchanged {
            actual
        } else {
            let params = PatchParams::apply(&self.s.field_manager);
            let got = api
                .patch(&name, &params, &Patch::Apply(&want))
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => StepError::new(format!(
                        "Ingress {}/{name}: fields realmctl sets are now managed by another field manager ({}); realmctl does not overwrite them: undo that change (or remove the other manager's fields), then retry the tenant",
                        self.s.namespace, s.message
                    )),
                    other => kube_error("patch", &self.s.namespace, &other),
                })?;
            log::info!(
                "tenant {}: Ingress {}/{name} applied",
                t.id,
                self.s.namespace
            );
            Some(got)
        };
        let mut out = Outputs::default();
        out.public
            .insert("namespace".into(), json!(self.s.namespace));
        out.public.insert("name".into(), json!(name));
        if let Some(uid) = applied.and_then(|a| a.metadata.uid) {
            out.public.insert("uid".into(), json!(uid));
        }
        Ok(out)
    }

    async fn remove(&self, t: &TenantInput, _previous: &Outputs) -> Result<(), StepError> {
        let api = self.api().await?;
        let name = self.name_of(t.id.as_str());
        let Some(actual) = api
            .get_opt(&name)
            .await
            .map_err(|e| kube_error("get", &self.s.namespace, &e))?
        else {
            return Ok(());
        };
        if !ours(&actual, t.id.as_str()) {
            log::warn!(
                "tenant {}: Ingress {}/{name} is not realmctl's; left in place",
                t.id,
                self.s.namespace
            );
            return Ok(());
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(kube_error("delete", &self.s.namespace, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;

    #[test]
    fn desired_spec() {
        let step = IngressStep::new(IngressSettings {
            kubeconfig: None,
            namespace: "edge".into(),
            name_template: "tenant-{tenant}".into(),
            ingress_class: Some("nginx".into()),
            service_name: "realmgate".into(),
            service_port: 8080,
            tls_secret_template: Some("{tenant}-tls".into()),
            cert_issuer: Some("letsencrypt".into()),
            issuer_kind_cluster: true,
            field_manager: "realmctl".into(),
        });
        let t = TenantInput {
            id: TenantId::parse("acme").expect("id"),
            display_name: "Acme".into(),
            hosts: vec!["acme.example.dev".into(), "*.acme.example.dev".into()],
            domains: vec![],
        };
        let ing = step.desired(&t);
        assert!(ours(&ing, "acme") && !ours(&ing, "beta"));
        let v = serde_json::to_value(&ing).expect("json");
        assert_eq!(v["metadata"]["name"], "tenant-acme");
        assert_eq!(
            v["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
            "letsencrypt"
        );
        assert_eq!(v["spec"]["ingressClassName"], "nginx");
        assert_eq!(v["spec"]["rules"][1]["host"], "*.acme.example.dev");
        assert_eq!(
            v["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
            8080
        );
        assert_eq!(v["spec"]["tls"][0]["secretName"], "acme-tls");
        assert!(converged(&ing, &ing));
    }
}
