//! Short byte strings kept inline: the bytes themselves when they fit in `N`, else a shared
//! heap copy. The Service map's keys ([`super::key`]) and the endpoints' labels
//! ([`super::label`]) are made of it, so reading one during a lookup touches no other memory
//! (on a large index, that other memory is a cache miss on every query).
//!
//! Invariants:
//! - bytes that fit are always inline, so two equal values have the same form;
//! - equality, order and hash are those of the bytes, whichever form holds them; the hash is
//!   `[u8]`'s, so a map keyed by these values can be searched with a plain slice
//!   ([`std::borrow::Borrow`]);
//! - `N` is at most 255 (the length is one byte): checked when the type is used.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Up to `N` bytes inline, more on the heap.
#[derive(Clone)]
pub enum InlineBytes<const N: usize> {
    /// The first `len` bytes of `bytes`.
    Inline { len: u8, bytes: [u8; N] },
    /// Bytes too long to be inline.
    Shared(Arc<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    const FITS_A_BYTE: () = assert!(N <= u8::MAX as usize, "the length is one byte");

    /// A copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        Self::inline(bytes).unwrap_or_else(|| Self::Shared(bytes.into()))
    }

    /// `shared`'s bytes, sharing `shared` itself when they are too long to be inline.
    pub fn from_shared(shared: &Arc<[u8]>) -> Self {
        Self::inline(shared).unwrap_or_else(|| Self::Shared(shared.clone()))
    }

    fn inline(bytes: &[u8]) -> Option<Self> {
        let () = Self::FITS_A_BYTE;
        if bytes.len() > N {
            return None;
        }
        let mut inline = [0u8; N];
        inline[..bytes.len()].copy_from_slice(bytes);
        Some(Self::Inline {
            len: bytes.len() as u8,
            bytes: inline,
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Shared(bytes) => bytes,
        }
    }

    /// How many bytes, read without following the heap pointer.
    pub fn len(&self) -> usize {
        match self {
            Self::Inline { len, .. } => usize::from(*len),
            Self::Shared(bytes) => bytes.len(),
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are `other`, comparing the lengths first.
    pub fn is(&self, other: &[u8]) -> bool {
        self.len() == other.len() && self.as_bytes() == other
    }
}

impl<const N: usize> Borrow<[u8]> for InlineBytes<N> {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize> PartialEq for InlineBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.is(other.as_bytes())
    }
}

impl<const N: usize> Eq for InlineBytes<N> {}

impl<const N: usize> PartialOrd for InlineBytes<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for InlineBytes<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl<const N: usize> Hash for InlineBytes<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl<const N: usize> std::fmt::Debug for InlineBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    type Short = InlineBytes<4>;

    #[test]
    fn bytes_that_fit_are_inline_and_longer_ones_shared() {
        assert!(matches!(Short::new(b"abcd"), Short::Inline { len: 4, .. }));
        let long: Arc<[u8]> = Arc::from(&b"abcde"[..]);
        let shared = Short::from_shared(&long);
        assert!(matches!(&shared, Short::Shared(bytes) if Arc::ptr_eq(bytes, &long)));
        assert!(matches!(
            Short::from_shared(&Arc::from(&b"ab"[..])),
            Short::Inline { .. }
        ));
        assert_eq!(shared.len(), 5);
        assert_eq!(shared.as_bytes(), b"abcde");
    }

    #[test]
    fn values_compare_and_hash_as_their_bytes_in_either_form() {
        let all: [&[u8]; 6] = [b"", b"a", b"abcd", b"abce", b"abcde", b"abcdf"];
        let mut map = HashMap::new();
        for a in all {
            map.insert(Short::new(a), a.len());
            for b in all {
                let (va, vb) = (Short::new(a), Short::new(b));
                assert_eq!(va == vb, a == b, "{a:?} {b:?}");
                assert_eq!(va.cmp(&vb), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(va.is(b), a == b);
            }
        }
        for a in all {
            assert_eq!(map.get(a), Some(&a.len()), "found by a plain slice");
        }
        assert!(Short::new(b"").is_empty());
    }
}
