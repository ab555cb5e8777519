//! The control service's side of provisioning: journal transitions the runner asks for,
//! the tenant entering the table when its steps are done, retries, the end of a deletion,
//! and the one-time hand-out of a new tenant's credentials.

use super::{not_found, Control, ServiceError};
use crate::ids::TenantId;
use crate::provision::identity::{IdentityPublic, IdentitySecrets};
use crate::provision::{
    Outputs, Provision, StepKind, StepRecord, StepState, TenantInput, TenantState,
};
use crate::views::{CredentialsView, TenantView};
use serde_json::{json, Map};

impl Control {
    /// The tenant as the steps see it, and its provisioning; `None` once it is gone.
    pub fn provision_snapshot(&self, id: &TenantId) -> Option<(TenantInput, Provision)> {
        let m = self.read();
        let r = m.tenants.get(id)?;
        Some((
            TenantInput {
                id: id.clone(),
                display_name: r.display_name.clone(),
                hosts: r.wire.hosts.clone(),
                domains: r
                    .wire
                    .hosts
                    .iter()
                    .filter(|h| {
                        m.domains.get(h).is_some_and(|d| {
                            &d.tenant == id && d.state == crate::model::DomainState::Verified
                        })
                    })
                    .cloned()
                    .collect(),
            },
            r.provision.clone(),
        ))
    }

    /// Tenants whose provisioning is not finished (the runner's work at start).
    pub fn unfinished_tenants(&self) -> Vec<TenantId> {
        self.read()
            .tenants
            .iter()
            .filter(|(_, r)| r.provision.state != TenantState::Ready)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn all_tenant_ids(&self) -> Vec<TenantId> {
        self.read().tenants.keys().cloned().collect()
    }

    /// Journal a step (and, when given, the tenant's state and error) — no new table
    /// version, since the table does not change.
    pub async fn journal_step(
        &self,
        id: &TenantId,
        step: StepRecord,
        tenant_state: Option<(TenantState, Option<String>)>,
    ) -> Result<(), ServiceError> {
        let registry = self.lock_registry().await;
        let mut p = match self.read().tenants.get(id) {
            Some(r) => r.provision.clone(),
            None => return Err(not_found("tenant", id.as_str())),
        };
        match p.step_mut(step.kind) {
            Some(slot) => *slot = step.clone(),
            None => {
                p.steps.push(step.clone());
                p.steps.sort_by_key(|s| s.kind);
            }
        }
        registry.save_step(id, &step).await?;
        // A delete that came while the step ran wins over its outcome: the runner removes next.
        let tenant_state = tenant_state.filter(|(s, _)| s.deleting() || !p.state.deleting());
        if let Some((state, error)) = tenant_state {
            p.state = state;
            p.error = error;
            registry.save_provision_state(id, &p).await?;
        }
        self.set_provision(id, p);
        Ok(())
    }

    fn set_provision(&self, id: &TenantId, p: Provision) {
        if let Some(r) = self.write().tenants.get_mut(id) {
            r.provision = p;
        }
        let _ = self.core.events.send(id.clone());
    }

    /// Every step is done: the tenant is ready, and enters the next table if it was not
    /// in it. Returns the table version that carries it.
    pub async fn provision_done(&self, id: &TenantId) -> Result<u64, ServiceError> {
        let registry = self.lock_registry().await;
        let (record, already_routed) = {
            let m = self.read();
            let r = m
                .tenants
                .get(id)
                .ok_or_else(|| not_found("tenant", id.as_str()))?;
            if r.provision.state.deleting()
                || (r.provision.routed && r.provision.state == TenantState::Ready)
            {
                return Ok(r.table_version);
            }
            let mut next = r.clone();
            next.provision.state = TenantState::Ready;
            next.provision.error = None;
            next.provision.routed = true;
            (next, r.provision.routed)
        };
        if already_routed {
            // Already in the table (steps re-ran after a change): no new version.
            registry.save_provision_state(id, &record.provision).await?;
            let v = record.table_version;
            self.set_provision(id, record.provision);
            return Ok(v);
        }
        let version = registry.save_tenant(&record).await?;
        let hosts = self.hosts_of(&record);
        let mut record = record;
        record.table_version = version;
        self.commit(version, |m| m.put_tenant(id.clone(), record, hosts));
        let _ = self.core.events.send(id.clone());
        log::info!("tenant {id}: provisioned; routed from table version {version}");
        Ok(version)
    }

    /// Every `remove` ran: the tenant and its journal go (its keys are revoked).
    pub async fn provision_removed(&self, id: &TenantId) -> Result<u64, ServiceError> {
        let registry = self.lock_registry().await;
        if !self.read().tenants.contains_key(id) {
            return Ok(self.version());
        }
        let now = crate::time::now_ms();
        let pools = self.read().tenant_pools(id);
        let version = registry.delete_tenant(id, &pools, now).await?;
        self.commit(version, |m| {
            m.tombstones.insert(id.clone(), pools);
            m.revoke_tenant_keys(id, now, version);
            m.domains.remove_tenant(id);
            m.remove_tenant(id)
        });
        let _ = self.core.events.send(id.clone());
        log::info!("tenant {id}: deprovisioned (table version {version})");
        Ok(version)
    }

    /// `POST /v1/tenants/{id}/retry`: a failed step runs now instead of after its backoff;
    /// on a ready tenant every step runs again (each converges; nothing changes if nothing
    /// drifted).
    pub async fn retry_provisioning(&self, id: &TenantId) -> Result<TenantView, ServiceError> {
        {
            let registry = self.lock_registry().await;
            let mut p = self
                .read()
                .tenants
                .get(id)
                .map(|r| r.provision.clone())
                .ok_or_else(|| not_found("tenant", id.as_str()))?;
            let now = crate::time::now_ms();
            let mut changed = Vec::new();
            for s in &mut p.steps {
                let again = match p.state {
                    TenantState::Failed | TenantState::DeleteFailed => s.state == StepState::Failed,
                    TenantState::Ready => s.state == StepState::Done,
                    _ => false,
                };
                if again {
                    s.next_attempt_at_ms = Some(now);
                    if p.state == TenantState::Ready {
                        s.input_digest = None;
                    }
                    changed.push(s.clone());
                }
            }
            if p.state == TenantState::Ready && !changed.is_empty() {
                p.state = TenantState::Provisioning;
                registry.save_provision_state(id, &p).await?;
            }
            for s in &changed {
                registry.save_step(id, s).await?;
            }
            self.set_provision(id, p);
        }
        self.wake(id);
        self.tenant(id)
    }

    /// The new tenant's first admin and API client credentials, handed out once; later
    /// calls get 410. The secrets are dropped from realmctl's store once handed out.
    pub async fn claim_credentials(&self, id: &TenantId) -> Result<CredentialsView, ServiceError> {
        let registry = self.lock_registry().await;
        let step = {
            let m = self.read();
            let r = m
                .tenants
                .get(id)
                .ok_or_else(|| not_found("tenant", id.as_str()))?;
            r.provision
                .step(StepKind::Identity)
                .cloned()
                .ok_or_else(|| not_found("identity step of tenant", id.as_str()))?
        };
        if step.state == StepState::Skipped {
            return Err(ServiceError::Conflict {
                code: "no_identity",
                message: "identity provisioning is off (provider none): no credentials".into(),
                details: json!({"tenant": id}),
            });
        }
        let Some(mut public) = IdentityPublic::from_outputs(&step.outputs) else {
            return Err(ServiceError::Internal(format!(
                "tenant {id}: the identity step's outputs are not readable"
            )));
        };
        if public.credentials_claimed {
            return Err(ServiceError::Gone(
                "the credentials were already handed out once; reset the admin's password in the realm".into(),
            ));
        }
        if step.state != StepState::Done {
            return Err(ServiceError::Conflict {
                code: "not_ready",
                message: format!(
                    "the identity step is {}; wait until it is done",
                    step.state.name()
                ),
                details: json!({"tenant": id, "state": step.state.name()}),
            });
        }
        let mut secrets = IdentitySecrets::from_outputs(&self.open_secrets(id, &step)?.secrets);
        let answer = CredentialsView {
            tenant: id.to_string(),
            issuer: public.issuer.clone(),
            admin_username: public.admin_username.clone(),
            admin_password: secrets.admin_password.take(),
            admin_password_temporary: true,
            admin_client_id: public.admin_client_id.clone(),
            admin_client_secret: secrets.admin_client_secret.take(),
        };
        public.credentials_claimed = true;
        let mut next = step.clone();
        next.outputs = public.to_outputs();
        next.sealed = self.secret_box.seal(
            id.as_str(),
            StepKind::Identity.name(),
            &secrets.to_outputs(),
        );
        next.updated_at_ms = crate::time::now_ms();
        registry.save_step(id, &next).await?;
        drop(registry);
        let mut p = self
            .provision_snapshot(id)
            .map(|(_, p)| p)
            .ok_or_else(|| not_found("tenant", id.as_str()))?;
        if let Some(slot) = p.step_mut(StepKind::Identity) {
            *slot = next;
        }
        self.set_provision(id, p);
        Ok(answer)
    }

    /// A step's outputs with its secrets opened.
    pub fn open_secrets(&self, id: &TenantId, step: &StepRecord) -> Result<Outputs, ServiceError> {
        let secrets = match &step.sealed {
            Some(s) => self
                .secret_box
                .open(id.as_str(), step.kind.name(), s)
                .map_err(ServiceError::Internal)?,
            None => Map::new(),
        };
        Ok(Outputs {
            public: step.outputs.clone(),
            secrets,
        })
    }

    /// Ask the runner to look at this tenant.
    pub fn wake(&self, id: &TenantId) {
        self.core.wake(id);
    }

    /// Provisioning changes of tenants (their ids), for the live event stream.
    pub fn provision_events(&self) -> tokio::sync::broadcast::Receiver<TenantId> {
        self.core.events.subscribe()
    }
}

impl super::Core {
    /// Ask the runner to look at this tenant.
    pub(super) fn wake(&self, id: &TenantId) {
        if let Some(tx) = self
            .wake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(id.clone());
        }
    }
}
