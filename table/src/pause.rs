//! Pause points inside a parse ([`crate::parse_delta_pausing`]). serde hands a field's reader
//! no context, so the pause travels in a thread-local for the parse's length: [`with_pauses`]
//! sets it, and the parse calls it between the elements of the arrays it reads. Without one
//! a point costs a thread-local read.

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    static PAUSE: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Run `f` with `pause` called at every point a parse on this thread passes.
pub(crate) fn with_pauses<R>(pause: fn(), f: impl FnOnce() -> R) -> R {
    struct Restore(Option<fn()>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PAUSE.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PAUSE.with(|p| p.replace(Some(pause))));
    f()
}

/// A point: the pause set by [`with_pauses`], if any.
#[inline]
pub(crate) fn point() {
    if let Some(pause) = PAUSE.with(Cell::get) {
        pause();
    }
}

/// A `Vec` read element by element with a [`point`] after each (`deserialize_with`).
pub(crate) fn seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    struct Elements<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // A hint from the document is not trusted for more than a modest allocation.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(element) = seq.next_element()? {
                out.push(element);
                point();
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Elements(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{parse_delta, Delta};
    use crate::wire::{ApiKey, Tenant};

    thread_local! {
        /// Points passed on this thread (each test runs on its own: no other test counts here).
        static POINTS: Cell<usize> = const { Cell::new(0) };
    }

    fn count() {
        POINTS.with(|p| p.set(p.get() + 1));
    }

    fn points() -> usize {
        POINTS.with(Cell::get)
    }

    #[test]
    fn a_delta_parse_passes_a_point_per_tenant_and_key_and_reads_the_same() {
        let d = Delta {
            base: 1,
            version: 2,
            state_digest: "state:0".into(),
            tenants: (0..40)
                .map(|i| Tenant::test(&format!("t{i}")).host(&format!("t{i}.test")))
                .collect(),
            api_keys: (0..30)
                .map(|i| ApiKey::test(&format!("k{i}"), Some("t0"), &["*"]))
                .collect(),
            delete_tenants: vec!["gone".into()],
            ..Delta::default()
        };
        let bytes = serde_json::to_vec(&d).expect("JSON");
        let plain = parse_delta(&bytes).expect("valid");
        let start = points();
        let paused = crate::parse_delta_pausing(&bytes, count).expect("valid");
        assert_eq!(paused, plain);
        assert_eq!(plain, d);
        // Each tenant and key in the read, and again in the walk for repeated names.
        assert!(
            points() - start >= 2 * (40 + 30),
            "{} points",
            points() - start
        );
        let before = points();
        parse_delta(&bytes).expect("valid");
        assert_eq!(points(), before, "paused without a pause");
    }

    #[test]
    fn problems_inside_paced_arrays_keep_their_paths() {
        let bytes = br#"{"base": 1, "version": 2, "state_digest": "s",
            "tenants": [{"id": "a", "hosts": ["a.test"], "routes": []},
                        {"id": "b", "hosts": ["b.test"], "routes": [], "colour": 1}],
            "api_keys": {"not": "a list"}}"#;
        let problems = with_pauses(count, || parse_delta(bytes)).expect_err("refused");
        let all = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("sequence"), "{all}");
        let bytes = br#"{"base": 1, "version": 2, "state_digest": "s",
            "tenants": [{"id": "a", "hosts": ["a.test"], "routes": []},
                        {"id": "b", "hosts": ["b.test"], "routes": [], "colour": 1}]}"#;
        let problems = with_pauses(count, || parse_delta(bytes)).expect_err("refused");
        assert!(
            problems
                .iter()
                .any(|p| p.to_string().contains("tenants[1].colour")),
            "{problems:?}"
        );
    }
}
