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
