//! How realmctl reaches the Kubernetes API: one way to build a client (a kubeconfig file, or
//! the in-cluster configuration, or the default kubeconfig), and one way to describe a
//! failed call — a 403 names the verb, the resource and the namespace that the
//! ServiceAccount's Role is missing, so the operator knows which rule to add.

use std::path::Path;

/// A client for the cluster named by `kubeconfig` (`None`: in-cluster configuration, else the
/// default kubeconfig). Nothing is sent yet: realmctl starts while the cluster is away.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// One call realmctl makes, for error messages: `verb` as RBAC spells it (`get`, `patch`,
/// `watch`…), `resource` with its API group (`ingresses.networking.k8s.io`, `leases.coordination.k8s.io`).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
}

/// A failed call, in words an operator can act on.
pub fn describe(call: Call<'_>, e: &kube::Error) -> String {
    let Call {
        verb,
        resource,
        namespace,
    } = call;
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "Kubernetes refused to {verb} {resource} in namespace {namespace} (403 Forbidden): realmctl's ServiceAccount needs an RBAC rule granting verb \"{verb}\" on \"{resource}\" there ({})",
            s.message
        ),
        kube::Error::Api(s) if s.code == 401 => format!(
            "Kubernetes did not accept realmctl's credentials to {verb} {resource} (401 Unauthorized): check the kubeconfig or the ServiceAccount token"
        ),
        kube::Error::Api(s) => format!(
            "Kubernetes {verb} {resource} in namespace {namespace}: {} {} ({})",
            s.code, s.reason, s.message
        ),
        other => format!(
            "Kubernetes {verb} {resource} in namespace {namespace}: API server unreachable or failing: {}",
            crate::error_text::root_cause(other)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_403_names_the_missing_rule() {
        let call = Call {
            verb: "patch",
            resource: "ingresses.networking.k8s.io",
            namespace: "edge",
        };
        let text = describe(
            call,
            &api_error(
                403,
                "Forbidden",
                "ingresses.networking.k8s.io \"t\" is forbidden",
            ),
        );
        assert!(
            text.contains("verb \"patch\"")
                && text.contains("\"ingresses.networking.k8s.io\"")
                && text.contains("namespace edge")
                && text.contains("403"),
            "{text}"
        );
        let other = describe(
            call,
            &api_error(422, "Invalid", "spec.rules: Invalid value"),
        );
        assert!(
            other.contains("422 Invalid") && other.contains("spec.rules"),
            "{other}"
        );
    }
}
