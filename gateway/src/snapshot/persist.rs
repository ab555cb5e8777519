//! Persistence of accepted tables: an atomic replace of one file (write, fsync, rename,
//! fsync the directory), split in two so the write overlaps validation; and the removal of a
//! stale file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// First half of an atomic replace: write `.<name>.tmp` in `dir` (mode 0600) and fsync it.
pub fn stage(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| err("create", e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    // Owner-only: a table may hold login client secrets (`realm.client_secret`). A leftover
    // temp file would keep its mode, so it goes first.
    let _ = std::fs::remove_file(&tmp);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
    }
    .map_err(|e| err("create temp file in", e))?;
    f.write_all(bytes)
        .map_err(|e| err("write temp file in", e))?;
    f.sync_all().map_err(|e| err("fsync temp file in", e))?;
    Ok(tmp)
}

/// Second half: rename over `name` and fsync the directory, so a crash leaves either the old
/// or the new file, never a torn one.
pub fn commit(dir: &Path, tmp: &Path, name: &str) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::rename(tmp, dir.join(name)).map_err(|e| err("rename in", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("fsync", e))
}

/// Remove a file that may not exist; a failure is logged (the file is older than what was
/// just stored, and a restart loads the newer of the two).
pub fn remove_if_there(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("remove {}: {e}", path.display()),
    }
}
