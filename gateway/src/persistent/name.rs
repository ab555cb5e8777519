//! [`Name`], a map key for host names and ids that is cheap to copy: a change to a
//! [`ShardMap`](super::ShardMap) clones every entry of the shard it touches, so a key that
//! owns an allocation costs an allocation, a copy and (when the old snapshot goes) a free per
//! entry. A short name lives in the entry itself; a long one is shared by reference count.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Bytes held in place; host names and ids up to this long (most) never allocate.
const INLINE: usize = 22;

/// An immutable UTF-8 name, keyed and compared by its bytes (look it up with
/// `map.get(name.as_bytes())`).
#[derive(Clone)]
pub enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Name {
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Shared(s) => s.as_bytes(),
        }
    }

    /// The name as text (off the request path: an inline name is checked again).
    pub fn as_str(&self) -> &str {
        match self {
            // Made from a `&str` whole, so always UTF-8; "" is unreachable.
            Name::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or(""),
            Name::Shared(s) => s,
        }
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Shared(Arc::from(s)),
        }
    }
}

impl Borrow<[u8]> for Name {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// As its bytes, so a lookup by `&[u8]` finds it ([`Borrow`]'s contract).
impl Hash for Name {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialEq for Name {
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent::ShardMap;

    #[test]
    fn short_names_live_in_place_and_long_ones_are_shared() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        for s in [
            "",
            "a",
            "t1.bench.test",
            "exactly-22-bytes.tests",
            "twenty-three-bytes.test",
            "a.much.longer.host.name.than.fits.in.place.example.com",
            "xn--bcher-kva.ünïcode.test",
        ] {
            let n = Name::from(s);
            assert_eq!(n.as_str(), s);
            assert_eq!(n.as_bytes(), s.as_bytes());
            assert_eq!(matches!(n, Name::Inline { .. }), s.len() <= INLINE, "{s:?}");
            assert_eq!(n.clone(), n);
        }
        assert_ne!(Name::from("a.test"), Name::from("b.test"));
        assert_ne!(Name::from("a.test"), Name::from("a.test\0"));
    }

    #[test]
    fn a_map_of_names_answers_by_bytes() {
        let long = "a-name-that-does-not-fit-in-place.example.com";
        let mut m: ShardMap<Name, u32> = ShardMap::default();
        m.insert(Name::from("short.test"), 1);
        m.insert(Name::from(long), 2);
        let before = m.clone();
        m.insert(Name::from("short.test"), 3);
        assert_eq!(m.get(b"short.test".as_slice()), Some(&3));
        assert_eq!(m.get(long.as_bytes()), Some(&2));
        assert_eq!(m.get(b"short.tes".as_slice()), None);
        assert_eq!(before.get(b"short.test".as_slice()), Some(&1));
        assert_eq!(m.remove(long.as_bytes()), Some(2));
        assert_eq!(before.get(long.as_bytes()), Some(&2));
    }
}
