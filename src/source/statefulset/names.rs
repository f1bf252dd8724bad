//! Generated names and the stable hash behind them and behind pod addresses.
//!
//! Kubernetes names a ReplicaSet's pods `<replicaset>-<5 random characters>` and a
//! Deployment's ReplicaSet `<deployment>-<pod-template-hash>`, from the alphabet
//! `bcdfghjklmnpqrstvwxz2456789` (no vowels, so no words). A file has no random source to
//! replay, so the characters here come from [`stable_hash`] of the object's identity instead:
//!
//! - a Deployment's pod template hash: 10 characters from the hash of (namespace, name);
//! - a generated pod's suffix: 5 characters from the hash of (namespace, owner kind, owner
//!   name, replica index), rehashed with an attempt number while it repeats an earlier name of
//!   the same owner;
//! - the prefix is `<owner>-`, cut to 58 characters as Kubernetes cuts a `generateName`, so a
//!   pod name is at most 63 characters.
//!
//! Invariants:
//! - [`stable_hash`] is FNV-1a (64 bits) with a final mix: the same bytes give the same value on
//!   every platform and Rust release (unlike `std`'s `DefaultHasher`), so names and addresses
//!   never change under a rebuild;
//! - the names of one owner are distinct, and depend only on (namespace, kind, name, index):
//!   scaling an owner keeps the names of the pods it keeps.

use std::collections::HashSet;

/// The characters Kubernetes uses in generated names (`k8s.io/apimachinery/pkg/util/rand`).
pub const ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// Characters of a generated pod's suffix.
pub const SUFFIX_LEN: usize = 5;

/// The longest prefix a generated name keeps (`generateName`: 63 less the suffix).
pub const MAX_PREFIX_LEN: usize = 63 - SUFFIX_LEN;

/// FNV-1a over `parts` (each followed by a 0 byte, so `("ab", "c")` and `("a", "bc")` differ),
/// then the SplitMix64 finalizer to spread the bits.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(&[0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// `count` characters of [`ALPHABET`] drawn from `hash`.
fn encode(mut hash: u64, count: usize) -> String {
    (0..count)
        .map(|_| {
            let c = ALPHABET[(hash % ALPHABET.len() as u64) as usize];
            hash /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}

/// A Deployment's pod template hash: 10 characters, as Kubernetes' are at most.
pub fn template_hash(namespace: &str, name: &str) -> String {
    encode(
        stable_hash(&[b"pod-template-hash", namespace.as_bytes(), name.as_bytes()]),
        10,
    )
}

/// The names of `count` pods of the owner (`kind` `namespace`/`name`) created from
/// `generateName: <prefix>-`.
pub fn generated_names(
    namespace: &str,
    kind: &str,
    name: &str,
    prefix: &str,
    count: u32,
) -> Vec<String> {
    let mut base = format!("{prefix}-");
    if base.len() > MAX_PREFIX_LEN {
        let mut cut = MAX_PREFIX_LEN;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
    }
    let mut seen = HashSet::with_capacity(count as usize);
    (0..count)
        .map(|index| {
            let index = index.to_le_bytes();
            let mut attempt: u32 = 0;
            loop {
                let parts: [&[u8]; 5] = [
                    namespace.as_bytes(),
                    kind.as_bytes(),
                    name.as_bytes(),
                    &index,
                    &attempt.to_le_bytes(),
                ];
                let suffix = encode(stable_hash(&parts), SUFFIX_LEN);
                if seen.insert(suffix.clone()) {
                    return format!("{base}{suffix}");
                }
                attempt += 1;
            }
        })
        .collect()
}
