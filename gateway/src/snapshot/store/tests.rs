//! Apply: version checks, a refused table leaves the served one, accepted tables persist.

use super::*;
use crate::snapshot::test_util::table;

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "realmgate-store-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn store(dir: &std::path::Path) -> Store {
    Store::new(
        dir.to_path_buf(),
        Arc::new(Metrics::new(16).expect("metrics")),
    )
}

#[test]
fn applies_newer_tables_only_and_keeps_the_last_good_one() {
    let dir = state_dir("apply");
    let s = store(&dir);
    assert!(s.current().is_none());
    let v7 = table();
    let applied = s.apply(Bytes::from(v7.clone())).expect("applies");
    assert_eq!(applied.version, 7);
    assert_eq!(applied.digest, realmgate_table::digest(v7.as_bytes()));
    // (document, refusal)
    let v8_invalid = v7.replacen("\"version\":7", "\"version\":8,\"colour\":1", 1);
    type Case = (String, fn(&ApplyError) -> bool);
    let cases: [Case; 3] = [
        (v7.clone(), |e| {
            matches!(
                e,
                ApplyError::NotNewer {
                    current: 7,
                    offered: 7
                }
            )
        }),
        (v7.replacen("\"version\":7", "\"version\":6", 1), |e| {
            matches!(
                e,
                ApplyError::NotNewer {
                    current: 7,
                    offered: 6
                }
            )
        }),
        (
            v8_invalid,
            |e| matches!(e, ApplyError::Invalid(p) if !p.is_empty()),
        ),
    ];
    for (doc, refused) in cases {
        let e = s.apply(Bytes::from(doc)).err().expect("refused");
        assert!(refused(&e), "{e:?}");
        assert_eq!(
            s.current().map(|c| c.version),
            Some(7),
            "the last good table stays"
        );
    }
    // The accepted table is on disk, owner-only, and a new process starts from it.
    let file = dir.join(STATE_FILE);
    assert_eq!(std::fs::read(&file).expect("persisted"), v7.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let restarted = store(&dir);
    assert_eq!(restarted.load_state(), Ok(Some(7)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_state_file_is_no_table() {
    let dir = state_dir("empty");
    assert_eq!(store(&dir).load_state(), Ok(None));
}

/// The unit-test table at `version` with these certificates.
fn with_certs(version: u64, certs: &[realmgate_table::Certificate]) -> Bytes {
    let mut t: realmgate_table::Table = serde_json::from_str(&table()).expect("table");
    t.version = version;
    t.certificates = certs.to_vec();
    Bytes::from(serde_json::to_vec(&t).expect("json"))
}

#[test]
fn certificates_in_time_new_ones_must_be_valid_loaded_ones_keep_serving() {
    use realmgate_table::test_certs::{KeyKind, TestCa, Validity};
    let ca = TestCa::new("apply CA");
    let current = ca.leaf(&["acme.test"]).entry("acme", &["acme.test"]);
    let expired = ca
        .leaf_with(&["acme.test"], Validity::Expired, KeyKind::EcdsaP256)
        .entry("acme", &["acme.test"]);
    let not_yet = ca
        .leaf_with(&["beta.test"], Validity::NotYet, KeyKind::EcdsaP256)
        .entry("later", &["beta.test"]);
    // With no table in force, an expired certificate is accepted (with a warning).
    let dir = state_dir("certs-first");
    let s = store(&dir);
    s.apply(with_certs(1, std::slice::from_ref(&expired)))
        .expect("first table with an expired certificate");
    // Already loaded, still expired: later tables are not blocked by it.
    s.apply(with_certs(2, std::slice::from_ref(&expired)))
        .expect("an expired certificate already loaded does not block");
    // Replaced by a valid one: fine; replacing a valid one by an expired one: refused.
    s.apply(with_certs(3, std::slice::from_ref(&current)))
        .expect("a valid replacement");
    for (doc, name) in [
        (with_certs(4, std::slice::from_ref(&expired)), "acme"),
        (with_certs(4, &[current.clone(), not_yet.clone()]), "later"),
    ] {
        match s.apply(doc) {
            Err(ApplyError::Invalid(p)) => {
                let text = p
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                assert!(text.contains(&format!("{name:?}")), "{text}");
                assert!(!text.contains("PRIVATE KEY"), "{text}");
            }
            other => panic!("{name}: {:?}", other.map(|s| s.version)),
        }
        assert_eq!(s.current().map(|c| c.version), Some(3));
    }
    // The table in force indexes its certificates; the expiry metric names each.
    let snap = s.current().expect("table");
    assert_eq!(snap.certs.len(), 1);
    assert!(snap.certs.lookup("acme.test").is_some());
    let metrics = String::from_utf8(s.metrics().render()).expect("utf-8");
    let line = format!(
        "realmgate_certificate_expiry_timestamp_seconds{{certificate=\"acme\"}} {}",
        ca.leaf(&["x.test"]).not_after
    );
    assert!(metrics.contains(&line), "{metrics}");
    // The state file holding keys stays owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(STATE_FILE))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next delta from `model`: tenant `id` upserted with one host and a display name.
fn next_delta(model: &mut realmgate_table::Model, id: &str) -> Bytes {
    use realmgate_table::delta::Delta;
    use realmgate_table::Tenant;
    let tenant = Tenant::test(id)
        .host(&format!("{id}.test"))
        .display_name(&format!(
            "Tenant {id} with a name long enough to fill a journal"
        ))
        .route("/", "app", "public");
    let mut d = Delta {
        base: model.version(),
        version: model.version() + 1,
        tenants: vec![tenant],
        ..Delta::default()
    };
    let (checked, state) = model.preview(&d).expect("a valid delta");
    model.apply(&checked);
    d.state_digest = state;
    Bytes::from(serde_json::to_vec(&d).expect("delta JSON"))
}

#[test]
fn a_journal_that_cannot_compact_refuses_deltas_at_its_bound_until_a_full_table() {
    let dir = state_dir("journal-full");
    let budget = Compaction {
        bytes: 4096,
        records: usize::MAX,
    };
    let s = Arc::new(store(&dir).with_compaction(budget));
    let full = table();
    s.apply(Bytes::from(full.clone())).expect("full table");
    let checked = realmgate_table::parse(full.as_bytes()).expect("table");
    let mut model = realmgate_table::Model::from_checked(&checked);
    // As if a compaction were stuck (say, on a full disk): none can start.
    s.lock().compacting = true;
    let mut refused = None;
    for i in 0..1000 {
        let delta = next_delta(&mut model, &format!("t{i}"));
        match s.apply_delta(delta) {
            Ok(snap) => assert_eq!(snap.version, model.version()),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, e) = refused.expect("the journal refuses at its bound");
    assert!(
        matches!(e, ApplyError::JournalFull { bytes } if bytes > budget.hard_bytes()),
        "{e:?}"
    );
    assert!(at > 10, "refused only past the bound, after {at} deltas");
    let served = s.current().expect("table").version;
    assert_eq!(
        served,
        model.version() - 1,
        "the refused delta changed nothing"
    );
    assert_eq!(
        s.state_digest(),
        s.current().map(|snap| snap.digest.clone()),
        "the refused delta left the model as it was"
    );
    let journal = dir.join(journal::JOURNAL_FILE);
    let len = std::fs::metadata(&journal).expect("journal").len();
    assert!(len <= budget.hard_bytes() + 1024, "bounded: {len} bytes");
    // A full table needs no journal: it empties it, and deltas flow again.
    let mut t: realmgate_table::Table = serde_json::from_str(&full).expect("table");
    t.version = served + 1;
    let doc = serde_json::to_vec(&t).expect("JSON");
    s.apply(Bytes::from(doc.clone())).expect("full table");
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), 0);
    let mut model = realmgate_table::Model::from_checked(&realmgate_table::parse(&doc).expect("t"));
    s.apply_delta(next_delta(&mut model, "after"))
        .expect("a delta after the full table");
    s.lock().compacting = false;
    let _ = std::fs::remove_dir_all(&dir);
}

/// (state digest, labelled tenants, rate scopes, realms) of a store.
fn caches(s: &Store) -> (Option<String>, usize, usize, usize) {
    (
        s.state_digest(),
        s.metrics.labelled_tenants(),
        s.limiters.len(),
        s.realms.len(),
    )
}

#[test]
fn a_delta_built_but_not_put_in_force_leaves_the_caches_as_they_were() {
    let once = {
        let dir = state_dir("built-once");
        let s = Arc::new(store(&dir));
        s.apply(Bytes::from(table())).expect("full table");
        let mut model = realmgate_table::Model::from_checked(
            &realmgate_table::parse(table().as_bytes()).expect("table"),
        );
        s.apply_delta(next_delta(&mut model, "new"))
            .expect("applies");
        let _ = std::fs::remove_dir_all(&dir);
        caches(&s)
    };
    let dir = state_dir("built-aborted");
    let s = Arc::new(store(&dir));
    s.apply(Bytes::from(table())).expect("full table");
    let before = caches(&s);
    let mut model = realmgate_table::Model::from_checked(
        &realmgate_table::parse(table().as_bytes()).expect("table"),
    );
    let raw = next_delta(&mut model, "new");
    let prepare = |durable: &mut Durable| {
        let (m, current) = s.in_force(durable, &raw).expect("in force");
        s.prepare(m, &current, &raw).expect("builds")
    };
    let mut durable = s.lock();
    prepare(&mut durable).effects.abort(&s.deps());
    drop(durable);
    assert_eq!(
        caches(&s),
        before,
        "a build not in force left something behind"
    );
    let mut durable = s.lock();
    let prepared = prepare(&mut durable);
    s.commit(&mut durable, prepared, &raw, true, Instant::now())
        .expect("commits");
    drop(durable);
    assert_eq!(caches(&s), once);
    assert_eq!(s.state_digest().as_deref(), Some(&*model.state_digest()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_table_pushed_to_a_thread_on_the_table_cpus_is_built_on_every_cpu() {
    use crate::snapshot::cpus::{last_allowed, this_thread, Cpus};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let table_cpu = Cpus::parse(&[last_allowed()]).expect("allowed");
    // The worker CPUs (here: this thread's) and the table CPU, as `realmgate` takes them.
    let every = table_cpu.and_this_thread();
    let mut big = realmgate_table::Table::test()
        .version(1)
        .upstream("app", &["127.0.0.1:9001"]);
    // Enough tenants to be compiled on every core (`build`'s threshold: 4 096).
    for i in 0..4096 {
        big = big.tenant(
            realmgate_table::Tenant::test(&format!("t{i}"))
                .host(&format!("t{i}.test"))
                .route("/", "app", "public"),
        );
    }
    let json = Bytes::from(big.to_json());
    let built_on = |store: Store, json: Bytes| {
        std::thread::spawn(move || {
            // As the admin API's thread is once it took the push.
            let _moved = table_cpu.enter();
            store.apply(json).expect("applies");
            let back = this_thread().expect("affinity");
            (crate::snapshot::build::BUILT_ON.with(|b| b.get()), back)
        })
        .join()
        .expect("thread")
    };
    let dir = state_dir("full-cpus");
    let (threads, back) = built_on(store(&dir).with_full_cpus(every), json.clone());
    assert_eq!(threads, cores, "every CPU");
    assert_eq!(
        crate::snapshot::cpus::describe(&back),
        last_allowed().to_string(),
        "the thread back on the table CPU"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Without: only the table CPU's one thread.
    let dir = state_dir("table-cpus-only");
    let (threads, _) = built_on(store(&dir), json);
    assert_eq!(threads, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
