//! realmctl's one clock and its time formats.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 text for a time in ms since the epoch (`2027-01-01T00:00:00.000Z`).
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `2027-01-01T00:00:00Z`: the table's expiry format (whole seconds, UTC).
pub fn rfc3339_seconds(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(1_798_761_600_250), "2027-01-01T00:00:00.250Z");
        assert_eq!(rfc3339_seconds(1_798_761_600_250), "2027-01-01T00:00:00Z");
        assert!(now_ms() > 1_798_761_600_000 / 2);
    }
}
