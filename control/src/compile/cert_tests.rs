//! Certificates in the compiled table: their keys opened, or left out when they cannot be.

use super::*;
use crate::model::CertRecord;

#[test]
fn certificates_enter_the_table_with_their_keys_opened() {
    let sealer = SecretBox::random();
    let ca = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["acme.test".to_owned()]).expect("params");
    let cert = params.self_signed(&ca).expect("cert");
    let not_after = {
        use x509_parser::prelude::FromDer;
        let (_, x) = x509_parser::prelude::X509Certificate::from_der(cert.der()).expect("parse");
        u64::try_from(x.validity().not_after.timestamp()).expect("after 1970")
    };
    let fingerprint = "sha256:test".to_owned();
    let mut m = Model::default();
    m.version = 2;
    let record = CertRecord {
        name: "acme".into(),
        cert_pem: cert.pem(),
        key_sealed: sealer
            .seal_certificate_key("acme", &ca.serialize_pem())
            .expect("sealed"),
        hosts: vec![realmgate_table::host::HostPattern::parse("acme.test").expect("host")],
        not_before: 0,
        not_after,
        fingerprint,
        table_version: 2,
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    m.put_certificate(record);
    let compiled = compile(&m, &sealer).expect("compile");
    assert!(compiled.has_secrets, "a key is a secret");
    let table = realmgate_table::parse(&compiled.body())
        .expect("valid")
        .table;
    assert_eq!(table.certificates.len(), 1);
    assert_eq!(table.certificates[0].key_pem, ca.serialize_pem());
    assert_eq!(table.certificates[0].hosts, ["acme.test"]);
    // A key sealed under another key is left out, the table still valid.
    let compiled = compile(&m, &SecretBox::random()).expect("compile");
    let table = realmgate_table::parse(&compiled.body())
        .expect("valid")
        .table;
    assert!(table.certificates.is_empty() && !compiled.has_secrets);
}
