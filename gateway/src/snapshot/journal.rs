//! The delta journal: every applied delta appended (and fsynced) to `table.journal` next to
//! the last full table (`table.json`), so a restart rebuilds the table in force from the
//! snapshot plus the journal. Records are framed and checksummed: a crash mid-write leaves a
//! torn tail, which [`read`] detects and the store cuts off, starting from the last good
//! state. Compaction (the store's) writes a newer `table.json` and [`rewrite`]s the journal
//! down to the records after it, so the journal stays bounded; [`Compaction`] is that
//! budget.
//!
//! A record: `RGJ1` (4 bytes), payload length (u32 LE), base version (u64 LE), version
//! (u64 LE), the first 8 bytes of SHA-256 over the three numbers and the payload, then the
//! payload (the delta document as received).

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "table.journal";
const MAGIC: &[u8; 4] = b"RGJ1";
const HEADER: usize = 4 + 4 + 8 + 8 + 8;
/// A record's payload is a delta the admin listener accepted, which is bounded by its body
/// limit; anything claiming more is a torn or foreign record.
pub const MAX_RECORD: usize = 1 << 30;

/// One journaled delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub base: u64,
    pub version: u64,
    pub payload: Vec<u8>,
}

/// What [`read`] found: the good records in order, and where (and why) reading stopped
/// early, if it did.
#[derive(Debug, Default)]
pub struct Contents {
    pub records: Vec<Record>,
    /// Byte length of the good prefix.
    pub good_len: u64,
    /// Why the rest was not read: a torn or corrupt record at `good_len`.
    pub torn: Option<String>,
}

fn checksum(base: u64, version: u64, payload: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(base.to_le_bytes());
    h.update(version.to_le_bytes());
    h.update((payload.len() as u64).to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// A record's bytes, header and payload.
pub fn encode(base: u64, version: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&checksum(base, version, payload));
    out.extend_from_slice(payload);
    out
}

/// Every good record of the journal in `dir` (none if there is no journal).
pub fn read(dir: &Path) -> Result<Contents, String> {
    let path = dir.join(JOURNAL_FILE);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| format!("read {}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(format!("open {}: {e}", path.display())),
    };
    Ok(decode(&bytes))
}

/// The good records of a journal's bytes.
pub fn decode(bytes: &[u8]) -> Contents {
    let mut out = Contents::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = |why: &str| Some(format!("{why} at byte {at}"));
        if rest.len() < HEADER {
            out.torn = torn("a record header cut short");
            break;
        }
        if &rest[..4] != MAGIC {
            out.torn = torn("no record marker");
            break;
        }
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&rest[r]);
            u64::from_le_bytes(b)
        };
        let len = word(4..8) as usize;
        let base = word(8..16);
        let version = word(16..24);
        if len > MAX_RECORD {
            out.torn = torn("a record length out of bounds");
            break;
        }
        if rest.len() - HEADER < len {
            out.torn = torn("a record cut short");
            break;
        }
        let payload = &rest[HEADER..HEADER + len];
        if rest[24..32] != checksum(base, version, payload) {
            out.torn = torn("a record whose checksum does not match");
            break;
        }
        out.records.push(Record {
            base,
            version,
            payload: payload.to_vec(),
        });
        at += HEADER + len;
        out.good_len = at as u64;
    }
    out
}

/// When the journal is compacted, and when it refuses more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Compact once the journal holds more than this many bytes …
    pub bytes: u64,
    /// … or this many deltas.
    pub records: usize,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            bytes: 64 << 20,
            records: 10_000,
        }
    }
}

impl Compaction {
    /// Past this, deltas are refused until a compaction or a full table shrinks it.
    pub fn hard_bytes(&self) -> u64 {
        self.bytes.saturating_mul(4)
    }

    pub(super) fn due(&self, bytes: u64, records: usize) -> bool {
        bytes > self.bytes || records > self.records
    }
}

/// The journal open for appending.
pub struct Journal {
    dir: PathBuf,
    file: File,
    len: u64,
    records: usize,
}

impl Journal {
    /// Open (creating it, mode 0600: deltas may carry secrets like a table does) the journal
    /// in `dir`, cut to `good_len` bytes first: a torn tail is never appended after.
    pub fn open(dir: &Path, good_len: u64, records: usize) -> Result<Journal, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(JOURNAL_FILE);
        let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
        std::fs::create_dir_all(dir).map_err(|e| err("create directory for", e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| err("open", e))?;
        let on_disk = file.metadata().map_err(|e| err("stat", e))?.len();
        if on_disk != good_len {
            file.set_len(good_len).map_err(|e| err("truncate", e))?;
            file.sync_all().map_err(|e| err("fsync", e))?;
        }
        let mut j = Journal {
            dir: dir.to_owned(),
            file,
            len: good_len,
            records,
        };
        j.seek_end()?;
        Ok(j)
    }

    fn seek_end(&mut self) -> Result<(), String> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::Start(self.len))
            .map(|_| ())
            .map_err(|e| format!("seek {}: {e}", self.dir.join(JOURNAL_FILE).display()))
    }

    /// Append one record and make it durable before returning. On failure the journal is
    /// cut back to where it was, so a failed append leaves no partial record behind.
    pub fn append(&mut self, base: u64, version: u64, payload: &[u8]) -> Result<(), String> {
        let bytes = encode(base, version, payload);
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            let _ = self.seek_end();
            return Err(format!(
                "append to {}: {e}",
                self.dir.join(JOURNAL_FILE).display()
            ));
        }
        self.len += bytes.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Bytes in the journal.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Records in the journal.
    pub fn records(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Replace the journal by the records after `version` (those a newer `table.json` does
    /// not hold yet): written to a temporary file, fsynced, renamed over the journal. A
    /// crash at any point leaves either journal, and both replay to the same table.
    pub fn rewrite_after(&mut self, version: u64) -> Result<(), String> {
        let kept: Vec<Record> = read(&self.dir)?
            .records
            .into_iter()
            .filter(|r| r.version > version)
            .collect();
        let mut bytes = Vec::new();
        for r in &kept {
            bytes.extend_from_slice(&encode(r.base, r.version, &r.payload));
        }
        let tmp = super::persist::stage(&self.dir, JOURNAL_FILE, &bytes)?;
        super::persist::commit(&self.dir, &tmp, JOURNAL_FILE)?;
        *self = Journal::open(&self.dir, bytes.len() as u64, kept.len())?;
        Ok(())
    }

    /// Empty the journal (a full table was just stored: it holds everything).
    pub fn clear(&mut self) -> Result<(), String> {
        let path = self.dir.join(JOURNAL_FILE);
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| format!("truncate {}: {e}", path.display()))?;
        self.len = 0;
        self.records = 0;
        self.seek_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when the test ends.
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("realmgate-journal-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }

    #[test]
    fn appended_records_read_back_in_order() {
        let d = dir();
        let mut j = Journal::open(d.path(), 0, 0).expect("open");
        j.append(1, 2, b"{\"a\":1}").expect("append");
        j.append(2, 3, b"").expect("append");
        let c = read(d.path()).expect("read");
        assert_eq!(c.torn, None);
        assert_eq!(
            c.records,
            vec![
                Record {
                    base: 1,
                    version: 2,
                    payload: b"{\"a\":1}".to_vec()
                },
                Record {
                    base: 2,
                    version: 3,
                    payload: Vec::new()
                },
            ]
        );
        assert_eq!(c.good_len, j.len());
        let mode = std::fs::metadata(d.path().join(JOURNAL_FILE))
            .expect("stat")
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    #[test]
    fn every_cut_of_the_last_record_is_detected_and_the_rest_survives() {
        let first = encode(1, 2, b"first delta");
        let second = encode(2, 3, b"second delta, torn");
        for cut in 0..second.len() {
            let mut bytes = first.clone();
            bytes.extend_from_slice(&second[..cut]);
            let c = decode(&bytes);
            assert_eq!(c.records.len(), 1, "cut at {cut}");
            assert_eq!(c.good_len, first.len() as u64);
            assert_eq!(c.torn.is_some(), cut > 0, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_record_stops_reading_there() {
        let first = encode(1, 2, b"first");
        let second = encode(2, 3, b"second");
        for at in 0..second.len() {
            let mut bytes = first.clone();
            let mut bad = second.clone();
            bad[at] ^= 0x40;
            bytes.extend_from_slice(&bad);
            let c = decode(&bytes);
            // A flipped length may still frame a record only if its checksum matches: never.
            assert_eq!(c.records.len(), 1, "flip at {at}");
            assert!(c.torn.is_some(), "flip at {at}");
        }
    }

    #[test]
    fn opening_cuts_a_torn_tail_and_appends_after_the_good_part() {
        let d = dir();
        let mut j = Journal::open(d.path(), 0, 0).expect("open");
        j.append(1, 2, b"good").expect("append");
        drop(j);
        let path = d.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&encode(2, 3, b"torn record")[..10])
            .expect("write");
        drop(f);
        let c = read(d.path()).expect("read");
        assert!(c.torn.is_some());
        let mut j = Journal::open(d.path(), c.good_len, c.records.len()).expect("reopen");
        j.append(2, 3, b"next").expect("append");
        let c = read(d.path()).expect("read");
        assert_eq!(c.torn, None);
        assert_eq!(
            c.records.iter().map(|r| r.version).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn rewrite_keeps_only_records_after_the_stored_table() {
        let d = dir();
        let mut j = Journal::open(d.path(), 0, 0).expect("open");
        for v in 2..=6 {
            j.append(v - 1, v, format!("delta {v}").as_bytes())
                .expect("append");
        }
        j.rewrite_after(4).expect("rewrite");
        assert_eq!(j.records(), 2);
        j.append(6, 7, b"delta 7").expect("append");
        let c = read(d.path()).expect("read");
        assert_eq!(
            c.records.iter().map(|r| r.version).collect::<Vec<_>>(),
            [5, 6, 7]
        );
        j.clear().expect("clear");
        assert!(read(d.path()).expect("read").records.is_empty());
        j.append(7, 8, b"delta 8").expect("append");
        assert_eq!(read(d.path()).expect("read").records.len(), 1);
    }

    #[test]
    fn no_journal_reads_as_empty() {
        let d = dir();
        let c = read(d.path()).expect("read");
        assert!(c.records.is_empty());
        assert_eq!(c.torn, None);
    }
}
