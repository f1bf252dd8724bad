//! Kubernetes label selectors as sent in `?labelSelector=`: parsing and matching.
//!
//! Grammar (comma-separated requirements, all must hold): `k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! `k in (a,b)`, `k notin (a,b)`. As in Kubernetes, `!=` and `notin` also match objects that lack
//! the key. Invariant: parsing never panics; malformed input is an `Err` naming the fault, which
//! the server turns into a 400.

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a selector string.
    pub fn parse(text: &str) -> Result<Self, String> {
        let requirements = split_top_level(text)?
            .into_iter()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = labels_of(object);
        self.requirements.iter().all(|r| r.holds(&labels))
    }
}

impl Requirement {
    fn holds(&self, labels: &BTreeMap<&str, &str>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k.as_str()) == Some(&v.as_str()),
            Requirement::NotEquals(k, v) => labels.get(k.as_str()) != Some(&v.as_str()),
            Requirement::Exists(k) => labels.contains_key(k.as_str()),
            Requirement::NotExists(k) => !labels.contains_key(k.as_str()),
            Requirement::In(k, vs) => labels
                .get(k.as_str())
                .is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => !labels
                .get(k.as_str())
                .is_some_and(|v| vs.iter().any(|x| x == v)),
        }
    }
}

fn labels_of(object: &Value) -> BTreeMap<&str, &str> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0u32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("nested parenthesis in label selector {text:?}")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("unbalanced ')' in label selector {text:?}")),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unclosed '(' in label selector {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_of(key)?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key_of(key)?, value_of(value)?));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key_of(key)?, value_of(value)?));
    }
    if let Some((key, values)) = split_set(part, "notin")? {
        return Ok(Requirement::NotIn(key, values));
    }
    if let Some((key, values)) = split_set(part, "in")? {
        return Ok(Requirement::In(key, values));
    }
    Ok(Requirement::Exists(key_of(part)?))
}

/// Parses `key <op> (a,b)`; `None` when `part` does not use `op`.
fn split_set(part: &str, op: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let Some(rest) = words.next().map(str::trim_start) else {
        return Ok(None);
    };
    let Some(set) = rest.strip_prefix(op).map(str::trim_start) else {
        return Ok(None);
    };
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected '(values)' after {op:?} in {part:?}"))?;
    let values = inner.split(',').map(value_of).collect::<Result<_, _>>()?;
    Ok(Some((key_of(key)?, values)))
}

fn key_of(text: &str) -> Result<String, String> {
    let key = text.trim();
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn value_of(text: &str) -> Result<String, String> {
    let value = text.trim();
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::LabelSelector;
    use serde_json::json;

    #[test]
    fn selectors_match_like_kubernetes() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "db"}}});
        let bare = json!({"metadata": {}});
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app", true, false),
            ("!app", false, true),
            ("app in (web, api)", true, false),
            ("app notin (web,api)", false, true),
            ("app=web,tier=db", true, false),
            ("app=web, tier!=db", false, false),
            ("app in (x),!tier", false, false),
        ];
        for (text, on_obj, on_bare) in cases {
            let sel = LabelSelector::parse(text).unwrap();
            assert_eq!(sel.matches(&obj), on_obj, "{text} on labelled object");
            assert_eq!(sel.matches(&bare), on_bare, "{text} on unlabelled object");
        }
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for text in [
            "app in (web",
            "app in web",
            "a)",
            "=x",
            "a=(b)",
            "a in ((b))",
            "!",
        ] {
            assert!(
                LabelSelector::parse(text).is_err(),
                "{text} should not parse"
            );
        }
    }
}
