//! What the elector decides from one read of the Lease: the pure part, tested without a
//! server. Expiry is judged by local observation, as client-go does: the time this process
//! last saw the Lease change (its resourceVersion), never the holder's own clock in
//! `renewTime`, so clocks need not agree.

use std::time::{Duration, Instant};

/// The fields of a Lease the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `holderIdentity`; empty: nobody (released).
    pub holder: String,
    pub transitions: i32,
    /// `leaseDurationSeconds` (ours when the Lease does not say).
    pub duration: Duration,
    pub resource_version: String,
}

/// When the Lease was last seen to change.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(String, Instant)>,
}

impl Observer {
    /// Record a read at `now`; returns since when it has been unchanged.
    pub fn observe(&mut self, seen: &Seen, now: Instant) -> Instant {
        match &self.last {
            Some((rv, at)) if *rv == seen.resource_version => *at,
            _ => {
                self.last = Some((seen.resource_version.clone(), now));
                now
            }
        }
    }

    /// Forget (the Lease is gone, or we wrote it ourselves: our write's version is recorded).
    pub fn record(&mut self, resource_version: String, now: Instant) {
        self.last = Some((resource_version, now));
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It does not exist: create it, holding it.
    Create,
    /// We hold it: renew it (same transitions).
    Renew,
    /// Free (no holder) or expired: take it over (transitions + 1).
    TakeOver,
    /// Someone else holds it and renews it in time.
    HeldBy(String),
}

/// The decision for `seen` (`None`: no Lease), unchanged since `unchanged_since`.
pub fn decide(me: &str, seen: Option<&Seen>, unchanged_since: Instant, now: Instant) -> Decision {
    let Some(seen) = seen else {
        return Decision::Create;
    };
    if seen.holder == me {
        Decision::Renew
    } else if seen.holder.is_empty() || now.duration_since(unchanged_since) > seen.duration {
        Decision::TakeOver
    } else {
        Decision::HeldBy(seen.holder.clone())
    }
}

/// A process that led once and lost the Lease may lead again only if nobody else held it
/// meanwhile: the Lease still names it, with the transitions count of its term. Anything
/// else means another process may have written the registry, and this one's memory of it
/// may be stale.
pub fn may_resume(me: &str, term: i32, seen: Option<&Seen>) -> bool {
    seen.is_some_and(|s| s.holder == me && s.transitions == term)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: &str, rv: &str) -> Seen {
        Seen {
            holder: holder.into(),
            transitions: 4,
            duration: Duration::from_secs(10),
            resource_version: rv.into(),
        }
    }

    #[test]
    fn expiry_is_counted_from_the_last_change_this_process_saw() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let other = seen("other-7", "100");
        // First sight: however old its renewTime, the full duration starts now.
        let since = o.observe(&other, t0);
        assert_eq!(since, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            decide("me", Some(&other), since, at(9)),
            Decision::HeldBy("other-7".into())
        );
        // The holder renews (a new resourceVersion): the clock starts again.
        let renewed = seen("other-7", "101");
        let since = o.observe(&renewed, at(9));
        assert_eq!(since, at(9));
        assert_eq!(
            decide("me", Some(&renewed), since, at(15)),
            Decision::HeldBy("other-7".into())
        );
        // Unchanged for longer than leaseDurationSeconds: expired.
        let since = o.observe(&renewed, at(20));
        assert_eq!(since, at(9));
        assert_eq!(
            decide("me", Some(&renewed), since, at(20)),
            Decision::TakeOver
        );
    }

    #[test]
    fn free_own_and_missing_leases() {
        let now = Instant::now();
        assert_eq!(decide("me", None, now, now), Decision::Create);
        assert_eq!(
            decide("me", Some(&seen("", "1")), now, now),
            Decision::TakeOver
        );
        assert_eq!(
            decide("me", Some(&seen("me", "1")), now, now),
            Decision::Renew
        );
    }

    #[test]
    fn resuming_needs_the_same_holder_and_term() {
        assert!(may_resume("me", 4, Some(&seen("me", "9"))));
        assert!(
            !may_resume("me", 3, Some(&seen("me", "9"))),
            "held by another meanwhile"
        );
        assert!(!may_resume("me", 4, Some(&seen("other", "9"))));
        assert!(
            !may_resume("me", 4, Some(&seen("", "9"))),
            "released by someone"
        );
        assert!(!may_resume("me", 4, None), "deleted");
    }
}
