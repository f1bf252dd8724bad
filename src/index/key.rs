//! The Service map's key: the bytes of `"<name>.<namespace>"`, kept inside the map's own slot
//! when they are short (most Services), so a lookup compares the key without a trip to a
//! separate heap string (on a large index that trip is a cache miss on every query).
//!
//! Invariants: a [`MapKey`] hashes, compares and borrows as the `[u8]` it spells
//! ([`super::inline`]), so a lookup passes bytes built on the stack by [`key_bytes`]; the bytes
//! of a key built from a name and a namespace never exceed [`MAX_KEY_LEN`].

use super::inline::InlineBytes;
use crate::model::ServiceKey;

/// Longest key: two labels of at most 63 bytes and a dot.
pub const MAX_KEY_LEN: usize = 63 + 1 + 63;

/// `"<name>.<namespace>"`, inline up to 38 bytes: the key is then 40 bytes, the size of a
/// boxed key plus the string's own allocation it replaces.
pub type MapKey = InlineBytes<38>;

impl MapKey {
    /// The key of Service `key`.
    pub fn of(key: &ServiceKey) -> Self {
        let mut buffer = [0u8; MAX_KEY_LEN];
        match key_bytes(&mut buffer, &key.namespace, &key.name) {
            Some(bytes) => Self::new(bytes),
            // Longer names than Kubernetes allows still get a (heap) key of the same form.
            None => Self::new(format!("{}.{}", key.name, key.namespace).as_bytes()),
        }
    }
}

/// Writes `"<name>.<namespace>"` into `buffer`; `None` when either label is longer than 63
/// bytes (no such Service can exist).
pub fn key_bytes<'b>(
    buffer: &'b mut [u8; MAX_KEY_LEN],
    namespace: &str,
    name: &str,
) -> Option<&'b [u8]> {
    if name.len() > 63 || namespace.len() > 63 {
        return None;
    }
    let length = name.len() + 1 + namespace.len();
    buffer[..name.len()].copy_from_slice(name.as_bytes());
    buffer[name.len()] = b'.';
    buffer[name.len() + 1..length].copy_from_slice(namespace.as_bytes());
    Some(&buffer[..length])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn stack_bytes_find_the_key_of_the_service() {
        let mut map = HashMap::new();
        for (namespace, name) in [
            ("default", "kubia"),
            ("a-namespace-of-some-length", "and-a-long-service-name"),
            (&*"n".repeat(63), &*"s".repeat(63)),
        ] {
            let key = MapKey::of(&ServiceKey::new(namespace, name));
            map.insert(key, name.to_string());
        }
        let mut buffer = [0u8; MAX_KEY_LEN];
        for (namespace, name) in [
            ("default", "kubia"),
            ("a-namespace-of-some-length", "and-a-long-service-name"),
        ] {
            let bytes = key_bytes(&mut buffer, namespace, name).unwrap();
            assert_eq!(map.get(bytes).map(String::as_str), Some(name));
        }
        let max = "s".repeat(63);
        let bytes = key_bytes(&mut buffer, &"n".repeat(63), &max).unwrap();
        assert_eq!(map.get(bytes), Some(&max));
        // The same labels the other way round are another Service.
        let bytes = key_bytes(&mut buffer, "kubia", "default").unwrap();
        assert_eq!(map.get(bytes), None);
    }

    #[test]
    fn short_keys_are_inline_and_long_ones_on_the_heap() {
        let short = MapKey::of(&ServiceKey::new("default", "kubia"));
        assert!(matches!(short, MapKey::Inline { len: 13, .. }));
        assert_eq!(short.as_bytes(), b"kubia.default");
        let long = MapKey::of(&ServiceKey::new(
            "a-much-longer-namespace-of-some-length",
            "svc",
        ));
        assert!(matches!(long, MapKey::Shared(_)));
        assert_eq!(
            long.as_bytes(),
            b"svc.a-much-longer-namespace-of-some-length"
        );
        assert_eq!(std::mem::size_of::<MapKey>(), 40);
    }

    #[test]
    fn labels_over_63_bytes_have_no_lookup_key() {
        let mut buffer = [0u8; MAX_KEY_LEN];
        assert_eq!(key_bytes(&mut buffer, &"a".repeat(64), "x"), None);
        assert_eq!(key_bytes(&mut buffer, "x", &"a".repeat(64)), None);
    }
}
