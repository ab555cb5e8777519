//! Operator API keys through the service: written under the registry's write lock (one
//! change at a time, fenced like every write), read at start. Minting, the cache and the
//! rules are `operators::keys`.

use super::{Control, ServiceError};
pub use crate::registry::operator_keys::OperatorKeyRecord;

impl Control {
    /// Store a new key or its revocation.
    pub async fn save_operator_key(&self, k: &OperatorKeyRecord) -> Result<(), ServiceError> {
        let registry = self.lock_registry().await;
        Ok(registry.save_operator_key(k).await?)
    }

    /// Every operator key in the registry, revoked ones too.
    pub async fn operator_keys(&self) -> Result<Vec<OperatorKeyRecord>, ServiceError> {
        let registry = self.lock_registry().await;
        Ok(registry.operator_keys().await?)
    }
}
