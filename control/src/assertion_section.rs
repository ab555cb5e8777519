//! The table's `assertion` section, compiled from the model: pure, like the rest of
//! [`crate::compile`] (the service owns the keys' lifecycle; this only reads them).

use crate::model::Model;

/// The table's `assertion` section: every key opened (one that cannot be is left out and
/// logged without the key), the active one signing. `None` without an issuer or an active
/// key that opens.
pub fn assertion_section(
    m: &Model,
    secrets: &crate::provision::secrets::SecretBox,
) -> Option<realmgate_table::assertion::Assertion> {
    let issuer = m.assertion.issuer.clone()?;
    let mut keys: Vec<realmgate_table::assertion::AssertionKey> = Vec::new();
    for k in m.assertion.keys.values() {
        match secrets.open_assertion_key(&k.kid, &k.key_sealed) {
            Ok(private_key_pem) => keys.push(realmgate_table::assertion::AssertionKey {
                kid: k.kid.clone(),
                alg: realmgate_table::assertion::ALG.into(),
                private_key_pem,
                state: if k.phase == crate::model::KeyPhase::Active {
                    realmgate_table::assertion::KeyState::Active
                } else {
                    realmgate_table::assertion::KeyState::Published
                },
            }),
            Err(e) => log::error!(
                "assertion key {}: cannot be opened ({e}); left out of the table",
                k.kid
            ),
        }
    }
    keys.sort_by_key(|k| k.state != realmgate_table::assertion::KeyState::Active);
    keys.truncate(realmgate_table::assertion::MAX_KEYS);
    keys.iter()
        .any(|k| k.state == realmgate_table::assertion::KeyState::Active)
        .then_some(realmgate_table::assertion::Assertion { issuer, keys })
}
