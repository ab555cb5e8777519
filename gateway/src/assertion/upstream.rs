//! The assertion's place on the upstream request: who auth admitted, as an assertion for the
//! pool the request goes to.

use super::{Assertions, Principal, Signer, Subject, HEADER};
use crate::auth::{api_key::KeyGrant, AuthCtx, Grant};
use crate::route::PoolIdx;
use crate::snapshot::Snapshot;
use crate::tenant::TenantIdx;
use pingora_http::RequestHeader;

/// Set `x-realmgate-assertion` for the admitted request (the client's copy was stripped with
/// every `x-realmgate-*` header before anything read the request). Nothing without an
/// assertion section in the table.
pub fn apply(
    up: &mut RequestHeader,
    snapshot: Option<&Snapshot>,
    tenant: Option<TenantIdx>,
    pool: Option<PoolIdx>,
    grant: &Grant,
    actx: &AuthCtx,
    assertions: &Assertions,
) -> pingora_error::Result<()> {
    let (Some(snapshot), Some(tenant), Some(pool)) = (snapshot, tenant, pool) else {
        return Ok(());
    };
    let Some(signer) = snapshot.assertion.as_deref() else {
        return Ok(());
    };
    let principal = match grant {
        Grant::Public => Principal::Public,
        Grant::Identity => match actx.identity.as_deref() {
            Some(id) => Principal::Realm {
                via: id.via,
                sub: &id.sub,
                roles: &id.role_names,
            },
            None => Principal::Public,
        },
        Grant::ApiKey(KeyGrant { key, namespace }) => Principal::ApiKey {
            key_id: snapshot.keys.get(*key).id.to_str().unwrap_or_default(),
            namespace: namespace.as_ref().and_then(|ns| ns.to_str().ok()),
        },
    };
    let subject = Subject {
        tenant: &snapshot.tenant(tenant).id,
        pool: &snapshot.pool(pool).name,
        principal,
    };
    insert(up, signer, &subject, assertions)
}

fn insert(
    up: &mut RequestHeader,
    signer: &Signer,
    subject: &Subject<'_>,
    assertions: &Assertions,
) -> pingora_error::Result<()> {
    match assertions.header(signer, subject, crate::auth::unix_now()) {
        Some((value, _)) => up.insert_header(HEADER, value),
        // Signing cannot fail with a validated key; if it did, the upstream gets no
        // assertion (and an app that requires one refuses the request).
        None => {
            log::error!("could not sign an identity assertion");
            Ok(())
        }
    }
}
