//! One writer per registry: realmctl holds an exclusive lock on `<data_dir>/realmctl.lock`
//! for as long as it runs. A second realmctl started on the same data directory (a standby
//! on a shared volume, or an operator's mistake) does not open the registry, provision or
//! push: it stands by, saying so in its log, and takes over within half a second of the
//! holder's end — however it ends, since the kernel releases the lock with the process.
//! It then resumes from the registry and the provisioning journal like any restart.
//!
//! The lock covers one machine's view of the directory (`flock` semantics); replicas on
//! several machines need the Kubernetes Lease (`crate::lease`, taken after this lock).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a standby tries the lock again.
pub const RETRY: Duration = Duration::from_millis(500);

/// The lock, held until dropped (the end of the process, in practice).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("writer lock {}: {source}", path.display())]
pub struct LockError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Take the writer lock of `data_dir`, waiting for as long as another process holds it.
pub async fn acquire(data_dir: &Path) -> Result<WriterLock, LockError> {
    let path = data_dir.join("realmctl.lock");
    let err = |source| LockError {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(err)?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if !told {
                    log::warn!(
                        "{} is held by another realmctl ({}): standing by, taking over when it stops",
                        path.display(),
                        holder(&mut file)
                    );
                    told = true;
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
    }
    if told {
        log::info!(
            "{}: the other realmctl stopped; taking over",
            path.display()
        );
    }
    // Who holds it, for the standby's message (informational only).
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(err)?;
    Ok(WriterLock { _file: file, path })
}

/// `pid N` from the lock file, as the holder wrote it.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(32).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => format!("pid {}", text.trim()),
        _ => "pid unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let dir = std::env::temp_dir().join(format!("realmctl-lock-{}", std::process::id()));
        let first = acquire(&dir).await.expect("first lock");
        let second = tokio::spawn({
            let dir = dir.clone();
            async move { acquire(&dir).await }
        });
        // Still waiting after several retries while the first is held.
        tokio::time::sleep(RETRY * 3).await;
        assert!(!second.is_finished(), "took a lock that is held");
        drop(first);
        let second = second.await.expect("join").expect("second lock");
        assert_eq!(
            std::fs::read_to_string(&second.path).expect("lock file"),
            std::process::id().to_string()
        );
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
