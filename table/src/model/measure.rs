//! What a model's memory is made of, for the gateway's `memory` bench.

use super::Model;

impl Model {
    /// The bytes of the tenants' encodings as the model holds them.
    #[doc(hidden)]
    pub fn packed_tenant_bytes(&self) -> usize {
        self.tenants.values().map(|p| p.value.len()).sum()
    }
}
