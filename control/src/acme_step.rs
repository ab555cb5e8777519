//! Wiring of the certificate step (`certificates.acme`): the ACME client over the service's
//! store, waiting on the pushers' view of the gateways, and its renewal scheduler. Apart from `server` so the daemon's
//! assembly stays one line for it.

use crate::acme::{AcmeSettings, Issuer, Renewals};
use crate::provision::certificate::CertificateStep;
use crate::provision::Step;
use crate::push::Pusher;
use crate::service::acme::{GatewayVersions, ServiceAcmeStore};
use crate::service::Control;
use std::sync::Arc;

/// The certificate step for the runner; starts the renewal scheduler.
pub fn build(
    control: &Arc<Control>,
    pusher: &Arc<Pusher>,
    settings: AcmeSettings,
) -> Arc<dyn Step> {
    let p = Arc::clone(pusher);
    let gateways: GatewayVersions = Arc::new(move || {
        p.gateways()
            .iter()
            .map(|g| (g.url.clone(), g.applied()))
            .collect()
    });
    let store = Arc::new(ServiceAcmeStore::new(Arc::clone(control), gateways));
    let issuer = Arc::new(Issuer::new(settings, store));
    Renewals::new(Arc::clone(&issuer)).spawn();
    Arc::new(CertificateStep::new(issuer))
}
