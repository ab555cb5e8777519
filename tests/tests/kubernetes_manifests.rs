//! The Kubernetes manifests in `deploy/kubernetes/` (what its kustomization lists) against a
//! real API server
//! (tests/setup/kubernetes.sh): every object is server-side applied with strict field
//! validation, so a misspelt field, a wrong apiVersion or an invalid value fails here, not in
//! an operator's cluster. No pod runs (there is no kubelet): what is checked is that the
//! server accepts and stores what the manifests say. The manifests are read as YAML 1.2
//! (serde_yaml), stricter than kubectl's YAML 1.1: a file mode is written in decimal, as both
//! read it the same way.

use realmgate_e2e::kube::Kube;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

const NAMESPACE: &str = "realmgate";

/// Every object of every file `deploy/kubernetes/kustomization.yaml` lists, in its order,
/// with the file it came from.
fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = realmgate_e2e::workspace_root().join("deploy/kubernetes");
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml"),
    )
    .expect("kustomization YAML");
    assert_eq!(kustomization["namespace"], NAMESPACE, "{kustomization}");
    let mut out = Vec::new();
    for file in kustomization["resources"].as_array().expect("resources") {
        let file = dir.join(file.as_str().expect("a file name"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            if !v.is_null() {
                out.push((file.clone(), v));
            }
        }
    }
    assert!(!out.is_empty(), "no manifests in {}", dir.display());
    out
}

/// The API path of a namespaced object of a kind the manifests use.
fn path_of(object: &Value) -> Result<String, String> {
    let api = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| format!("{kind} without metadata.name"))?;
    let plural = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Service" => "services",
        "ServiceAccount" => "serviceaccounts",
        "Deployment" => "deployments",
        "StatefulSet" => "statefulsets",
        "Ingress" => "ingresses",
        "NetworkPolicy" => "networkpolicies",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Lease" => "leases",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        other => return Err(format!("kind {other:?}: add its resource to this test")),
    };
    let prefix = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    Ok(format!("{prefix}/namespaces/{NAMESPACE}/{plural}/{name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_manifest_is_accepted_by_a_real_api_server() {
    let kube = Kube::start(&[NAMESPACE]).await;
    for (file, object) in manifests() {
        let what = format!(
            "{}: {} {}",
            file.display(),
            object["kind"],
            object["metadata"]["name"]
        );
        let path = path_of(&object).unwrap_or_else(|e| panic!("{what}: {e}"));
        let (status, answer) = kube.apply(&path, &object).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::CREATED,
            "{what}: {status} {answer}"
        );
        // Stored as written: the server's copy carries the manifest's spec.
        let (status, stored) = kube.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{what}: {stored}");
        if let Some(spec) = object.get("spec") {
            assert!(
                realmgate_e2e::json_contains(&stored["spec"], &strip_defaults(spec)),
                "{what}: stored spec differs: {}",
                stored["spec"]
            );
        }
        if object["kind"] == "Deployment" {
            let pod = &stored["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            for c in pod["containers"].as_array().expect("containers") {
                assert_eq!(
                    c["securityContext"]["readOnlyRootFilesystem"], true,
                    "{what}"
                );
            }
        }
    }
}

/// Whether the realmctl ServiceAccount may `verb` `resource` (of API `group`) in `namespace`,
/// as the real server's RBAC authorizer answers a SubjectAccessReview.
async fn realmctl_may(
    kube: &Kube,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": format!("system:serviceaccount:{NAMESPACE}:realmctl"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NAMESPACE}")],
            "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                   "resource": resource}
        }
    });
    let (status, answer) = kube
        .admin(
            reqwest::Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(review),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["status"]["allowed"] == true
}

/// The Role grants what realmctl's code calls — server-side apply (patch), get and delete of
/// tenant Ingresses, Leases, EndpointSlices read-only — and nothing else: no Secrets, nothing
/// outside its namespace.
#[tokio::test(flavor = "multi_thread")]
async fn realmctl_rbac_grants_what_it_calls_and_no_more() {
    let kube = Kube::start(&[NAMESPACE, "elsewhere"]).await;
    for (file, object) in manifests() {
        let path = path_of(&object).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (status, answer) = kube.apply(&path, &object).await;
        assert!(status.is_success(), "{}: {status} {answer}", file.display());
    }
    for (verb, group, resource) in [
        ("patch", "networking.k8s.io", "ingresses"),
        ("get", "networking.k8s.io", "ingresses"),
        ("delete", "networking.k8s.io", "ingresses"),
        ("get", "coordination.k8s.io", "leases"),
        ("create", "coordination.k8s.io", "leases"),
        ("update", "coordination.k8s.io", "leases"),
        ("list", "discovery.k8s.io", "endpointslices"),
        ("watch", "discovery.k8s.io", "endpointslices"),
    ] {
        assert!(
            realmctl_may(&kube, verb, group, resource, NAMESPACE).await,
            "realmctl may not {verb} {resource}"
        );
    }
    for (verb, group, resource, namespace) in [
        ("get", "", "secrets", NAMESPACE),
        ("patch", "discovery.k8s.io", "endpointslices", NAMESPACE),
        ("get", "discovery.k8s.io", "endpointslices", NAMESPACE),
        ("delete", "coordination.k8s.io", "leases", NAMESPACE),
        ("patch", "networking.k8s.io", "ingresses", "elsewhere"),
        ("create", "apps", "deployments", NAMESPACE),
    ] {
        assert!(
            !realmctl_may(&kube, verb, group, resource, namespace).await,
            "realmctl may {verb} {resource} in {namespace}, which it never needs"
        );
    }
}

/// Values the server writes in another spelling than the manifest (quantities, ports by
/// name) are left out of the comparison; everything else must be stored as written.
fn strip_defaults(spec: &Value) -> Value {
    match spec {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "resources" | "defaultMode"))
                .map(|(k, v)| (k.clone(), strip_defaults(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_defaults).collect()),
        other => other.clone(),
    }
}

/// The check above can fail: a misspelt field and a wrong apiVersion are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_misspelt_field_or_a_wrong_api_version_is_refused() {
    let kube = Kube::start(&[NAMESPACE]).await;
    let typo = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "typo"},
        "spec": {"selectr": {"app": "x"}, "ports": [{"port": 80}]}});
    let (status, answer) = kube.apply(&path_of(&typo).expect("path"), &typo).await;
    // Server-side apply reports a field outside the schema as a failed typed patch.
    assert!(!status.is_success(), "{status} {answer}");
    assert!(answer.to_string().contains("selectr"), "{answer}");
    let wrong = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment",
        "metadata": {"name": "old"}, "spec": {}});
    let (status, answer) = kube.apply(&path_of(&wrong).expect("path"), &wrong).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}
