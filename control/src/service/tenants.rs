//! Tenant changes (create, patch, delete): each judged against the batch's view of the
//! model (`batch::View`), written with the next table version, and applied to the model and
//! answered once its batch is committed.

use super::batch::{Effect, Op, Plan, View};
use super::{certs, check_revision, not_found, validate, Control, ServiceError};
use crate::ids::TenantId;
use crate::model::{Model, TenantRecord};
use crate::provision::{Provision, TenantState};
use crate::time::now_ms;
use crate::views::TenantView;
use realmgate_table::host::HostPattern;
use realmgate_table::{Problem, Tenant};
use serde_json::json;

/// The tenant's view as the model holds it now.
fn view_of(m: &Model, id: &TenantId) -> Result<TenantView, ServiceError> {
    m.tenants
        .get(id)
        .map(|r| certs::tenant_view(m, r))
        .ok_or_else(|| ServiceError::Internal("a tenant just saved is missing".into()))
}

/// Write `record` (with its parsed `hosts`); once committed it is in the model under its
/// version, its view the answer, and the runner woken.
fn save(v: &View<'_>, record: TenantRecord, hosts: Vec<HostPattern>) -> Plan<TenantView> {
    let stage = v.put_tenant(&record, &hosts);
    Plan::Write {
        op: Op::SaveTenant(record.clone()),
        stage,
        apply: Box::new(move |m, version| {
            let id = TenantId::parse(&record.wire.id);
            let Some(id) = id else {
                return (
                    Err(ServiceError::Internal("a saved tenant's id".into())),
                    None,
                );
            };
            let record = TenantRecord {
                table_version: version,
                ..record
            };
            m.put_tenant(id.clone(), record, hosts);
            let effect = Effect {
                tenant: id.clone(),
                event: false,
            };
            (view_of(m, &id), Some(effect))
        }),
    }
}

impl Control {
    pub async fn create_tenant(&self, body: &[u8]) -> Result<TenantView, ServiceError> {
        let (id, input, problems) = validate::decode_create(body).map_err(ServiceError::Invalid)?;
        self.join(|v| self.plan_create(v, id, input, problems))
            .await
    }

    fn plan_create(
        &self,
        v: &View<'_>,
        id: Option<TenantId>,
        input: validate::TenantInput,
        mut problems: Vec<Problem>,
    ) -> Result<Plan<TenantView>, ServiceError> {
        let display_name = input
            .display_name
            .clone()
            .or_else(|| id.as_ref().map(ToString::to_string))
            .unwrap_or_else(|| "placeholder".into());
        let catalog = input.catalog.clone().unwrap_or_default();
        let rate_limits = input.rate_limits.unwrap_or_default();
        let shell = input.shell.clone().flatten();
        let https = input.https.unwrap_or_default();
        let hsts = input.hsts.flatten();
        let check = validate::TenantCheck {
            hosts: input.hosts.as_deref(),
            routes: input.routes.as_deref(),
            rate_limits,
            display_name: &display_name,
            catalog: &catalog,
            shell: shell.as_ref(),
            https,
            hsts: hsts.as_ref(),
            provisions_realm: self.plan.provisions_realm(),
        };
        let hosts = validate::check_tenant(v.model, &check, &mut problems);
        let (Some(id), Some(routes), true) = (id, input.routes, problems.is_empty()) else {
            return Err(ServiceError::Invalid(problems));
        };
        if v.tenant(&id).is_some() {
            return Err(ServiceError::Conflict {
                code: "tenant_exists",
                message: format!("tenant \"{id}\" already exists"),
                details: json!({"tenant": id}),
            });
        }
        validate::check_host_conflicts(v, &id, &hosts)?;
        let now = now_ms();
        let mut record = TenantRecord {
            wire: Tenant {
                https,
                hsts,
                id: id.to_string(),
                hosts: hosts.iter().map(ToString::to_string).collect(),
                routes,
                status: input.status.unwrap_or_default(),
                rate_limits,
                realm: None,
                // Set from the record's own fields by `sync_wire`.
                display_name: None,
                catalog: Vec::new(),
                shell,
            },
            display_name,
            catalog,
            revision: 1,
            table_version: 0,
            created_at_ms: now,
            updated_at_ms: now,
            provision: if self.plan.active() {
                Provision {
                    state: TenantState::Provisioning,
                    routed: false,
                    error: None,
                    steps: self.plan.records(now),
                }
            } else {
                Provision::ready(self.plan.records(now))
            },
        };
        record.sync_wire();
        Ok(save(v, record, hosts))
    }

    /// Change some fields of a tenant. A patch that changes nothing is answered without a
    /// new table version.
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        body: &[u8],
        if_match: Option<u64>,
    ) -> Result<TenantView, ServiceError> {
        let (input, problems) = validate::decode_patch(body).map_err(ServiceError::Invalid)?;
        self.join(|v| self.plan_update(v, id, input, problems, if_match))
            .await
    }

    fn plan_update(
        &self,
        v: &View<'_>,
        id: &TenantId,
        input: validate::TenantInput,
        mut problems: Vec<Problem>,
        if_match: Option<u64>,
    ) -> Result<Plan<TenantView>, ServiceError> {
        let current = v
            .tenant(id)
            .ok_or_else(|| not_found("tenant", id.as_str()))?;
        check_revision(current.revision, if_match)?;
        if current.provision.state.deleting() {
            return Err(ServiceError::Conflict {
                code: "tenant_deleting",
                message: format!(
                    "tenant \"{id}\" is being deleted; create it again once it is gone"
                ),
                details: json!({"tenant": id}),
            });
        }
        let mut next = current.clone();
        if let Some(d) = input.display_name {
            next.display_name = d;
        }
        if let Some(c) = input.catalog {
            next.catalog = c;
        }
        if let Some(s) = input.status {
            next.wire.status = s;
        }
        if let Some(routes) = input.routes {
            next.wire.routes = routes;
        }
        if let Some(limits) = input.rate_limits {
            next.wire.rate_limits = limits;
        }
        if let Some(shell) = input.shell {
            next.wire.shell = shell;
        }
        if let Some(https) = input.https {
            next.wire.https = https;
        }
        if let Some(hsts) = input.hsts {
            next.wire.hsts = hsts;
        }
        next.sync_wire();
        let check = validate::TenantCheck {
            hosts: Some(input.hosts.as_deref().unwrap_or(&current.wire.hosts)),
            routes: Some(&next.wire.routes),
            rate_limits: next.wire.rate_limits,
            display_name: &next.display_name,
            catalog: &next.catalog,
            shell: next.wire.shell.as_ref(),
            https: next.wire.https,
            hsts: next.wire.hsts.as_ref(),
            provisions_realm: self.plan.provisions_realm(),
        };
        let hosts = validate::check_tenant(v.model, &check, &mut problems);
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        next.wire.hosts = hosts.iter().map(ToString::to_string).collect();
        if next.same_content(current) {
            let id = id.clone();
            return Ok(Plan::Answer(Box::new(move |m| view_of(m, &id))));
        }
        validate::check_host_conflicts(v, id, &hosts)?;
        next.revision += 1;
        next.updated_at_ms = now_ms();
        Ok(save(v, next, hosts))
    }

    /// Remove a tenant; returns the table version without it. With provisioning, the
    /// tenant leaves the table now and is removed once its steps' `remove`s have run.
    pub async fn delete_tenant(
        &self,
        id: &TenantId,
        if_match: Option<u64>,
    ) -> Result<u64, ServiceError> {
        self.join(|v| self.plan_delete(v, id, if_match)).await
    }

    fn plan_delete(
        &self,
        v: &View<'_>,
        id: &TenantId,
        if_match: Option<u64>,
    ) -> Result<Plan<u64>, ServiceError> {
        let current = v
            .tenant(id)
            .ok_or_else(|| not_found("tenant", id.as_str()))?;
        check_revision(current.revision, if_match)?;
        let id = id.clone();
        if current.provision.state.deleting() {
            return Ok(Plan::Answer(Box::new(move |m| {
                m.tenants
                    .get(&id)
                    .map(|r| r.table_version)
                    .ok_or_else(|| not_found("tenant", id.as_str()))
            })));
        }
        if self.plan.active() {
            let mut next = current.clone();
            next.provision.state = TenantState::Deleting;
            next.provision.routed = false;
            next.provision.error = None;
            let hosts = self.hosts_of(&next);
            return Ok(Plan::Write {
                stage: v.put_tenant(&next, &hosts),
                op: Op::SaveTenant(next.clone()),
                apply: Box::new(move |m, version| {
                    let record = TenantRecord {
                        table_version: version,
                        ..next
                    };
                    m.put_tenant(id.clone(), record, hosts);
                    let effect = Effect {
                        tenant: id,
                        event: true,
                    };
                    (Ok(version), Some(effect))
                }),
            });
        }
        let now = now_ms();
        let pools = Model::pools_of(current);
        Ok(Plan::Write {
            stage: v.delete_tenant(&id),
            op: Op::DeleteTenant {
                id: id.clone(),
                pools: pools.clone(),
                now_ms: now,
            },
            apply: Box::new(move |m, version| {
                m.tombstones.insert(id.clone(), pools);
                m.revoke_tenant_keys(&id, now, version);
                m.domains.remove_tenant(&id);
                m.remove_tenant(&id);
                (Ok(version), None)
            }),
        })
    }
}
