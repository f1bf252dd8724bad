//! The `peerdns.io/*` annotations a Service may carry, read into [`Bootstrap`] (R15).
//!
//! ```text
//!  peerdns.io/not-ready-names: "true"   not-ready endpoints (not terminating) answer their
//!                                       own names; Service-wide answers stay ready-only
//!  peerdns.io/seeds: "3"                seeds.<svc>.<ns>.svc.<zone>: the first 3 ordinals
//!  peerdns.io/txt: "replicaSet=rs0"     TXT at <svc>.<ns>.svc.<zone>, split every 255 bytes
//! ```
//!
//! Invariant: a bad value never fails the Service: it is skipped with a warning naming the
//! Service, the annotation and why, and the rest of the Service is served.

use std::collections::BTreeMap;

use super::convert::ObjectRef;
use crate::model::Bootstrap;

/// Not-ready endpoints answer their own names.
pub const NOT_READY_NAMES: &str = "peerdns.io/not-ready-names";
/// `seeds.<svc>` answers the first N ordinals.
pub const SEEDS: &str = "peerdns.io/seeds";
/// A TXT record at the Service's name.
pub const TXT: &str = "peerdns.io/txt";

/// Most seeds one Service may ask for.
pub const MAX_SEEDS: u32 = 1000;
/// Longest TXT text, in bytes: more would not fit a UDP answer anyway.
pub const MAX_TXT: usize = 2048;
/// Longest character string of a TXT record (RFC 1035).
const TXT_STRING: usize = 255;

/// The bootstrap names `annotations` ask for; bad values are skipped with a warning.
pub fn bootstrap(object: &ObjectRef, annotations: Option<&BTreeMap<String, String>>) -> Bootstrap {
    let Some(annotations) = annotations else {
        return Bootstrap::default();
    };
    let skip = |annotation: &str, value: &str, why: &str| {
        tracing::warn!(%object, annotation, value, "skipping an annotation: {why}");
    };
    let not_ready_names = match annotations.get(NOT_READY_NAMES).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            skip(NOT_READY_NAMES, other, "not \"true\" or \"false\"");
            false
        }
    };
    let seeds = annotations.get(SEEDS).and_then(|value| {
        let parsed = value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_SEEDS).contains(n));
        if parsed.is_none() {
            skip(SEEDS, value, "not a number from 1 to 1000");
        }
        parsed
    });
    let txt = match annotations.get(TXT) {
        Some(value) => match txt_strings(value) {
            Ok(strings) => strings,
            Err(why) => {
                skip(TXT, value, why);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    Bootstrap {
        not_ready_names,
        seeds,
        txt,
    }
}

/// `text` as TXT character strings of at most 255 bytes, split at character boundaries.
fn txt_strings(text: &str) -> Result<Vec<String>, &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if text.len() > MAX_TXT {
        return Err("longer than 2048 bytes");
    }
    if text.chars().any(char::is_control) {
        return Err("control characters");
    }
    let mut strings = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > TXT_STRING {
            strings.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    strings.push(current);
    Ok(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Bootstrap {
        let object = ObjectRef {
            kind: "Service",
            namespace: "db".into(),
            name: "mongo".into(),
        };
        let annotations = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        bootstrap(&object, Some(&annotations))
    }

    #[test]
    fn annotations_are_read_and_bad_values_skipped() {
        assert_eq!(read(&[]), Bootstrap::default());
        let all = read(&[
            (NOT_READY_NAMES, "true"),
            (SEEDS, "3"),
            (TXT, "replicaSet=rs0&authSource=admin"),
        ]);
        assert!(all.not_ready_names);
        assert_eq!(all.seeds, Some(3));
        assert_eq!(all.txt, ["replicaSet=rs0&authSource=admin"]);
        let bad = read(&[
            (NOT_READY_NAMES, "yes"),
            (SEEDS, "0"),
            (TXT, "a\nb"),
            ("peerdns.io/other", "x"),
        ]);
        assert_eq!(bad, Bootstrap::default());
        for seeds in ["-1", "many", "1001"] {
            assert_eq!(read(&[(SEEDS, seeds)]).seeds, None, "{seeds}");
        }
        assert!(read(&[(TXT, "")]).txt.is_empty());
        assert!(read(&[(TXT, &"x".repeat(MAX_TXT + 1))]).txt.is_empty());
    }

    #[test]
    fn long_texts_are_split_every_255_bytes_at_character_boundaries() {
        let text = format!("{}{}", "a".repeat(300), "é".repeat(200));
        let strings = txt_strings(&text).unwrap();
        assert!(strings.iter().all(|s| s.len() <= 255), "{strings:?}");
        assert_eq!(strings.concat(), text);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.len(), 3);
    }
}
