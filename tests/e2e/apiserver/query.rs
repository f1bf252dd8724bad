//! Query parameters of list and watch requests, decoded and validated.
//!
//! Understood: `watch`, `labelSelector`, `limit`, `continue`, `resourceVersion`,
//! `resourceVersionMatch`, `allowWatchBookmarks`, `timeoutSeconds`, `sendInitialEvents`.
//! `fieldSelector` is accepted and ignored (nothing peerdns uses sends one). Unknown parameters
//! are ignored, as the real server does. Invariant: decoding never panics; a malformed value is
//! an `Err` naming the parameter, which the server answers with 400 BadRequest.

use std::time::Duration;

use super::selector::LabelSelector;

/// How long a watch lasts when the client names no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Decoded query parameters of a collection request.
#[derive(Debug, Default)]
pub struct Query {
    pub watch: bool,
    pub selector: LabelSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// `None` for absent or empty.
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: bool,
}

impl Query {
    /// Decodes a raw query string (`a=b&c=d`, percent-encoded).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut query = Query::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            query.set(&decode(name)?, decode(value)?)?;
        }
        Ok(query)
    }

    /// The watch duration: `timeoutSeconds`, else the server default.
    pub fn watch_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_WATCH_TIMEOUT)
    }

    fn set(&mut self, name: &str, value: String) -> Result<(), String> {
        match name {
            "watch" => self.watch = flag(name, &value)?,
            "labelSelector" => self.selector = LabelSelector::parse(&value)?,
            "limit" => self.limit = Some(number(name, &value)?).filter(|n| *n > 0),
            "continue" => self.continue_token = Some(value).filter(|v| !v.is_empty()),
            "resourceVersion" => self.resource_version = Some(value).filter(|v| !v.is_empty()),
            "allowWatchBookmarks" => self.bookmarks = flag(name, &value)?,
            "timeoutSeconds" => {
                self.timeout = Some(Duration::from_secs(number(name, &value)? as u64));
            }
            "sendInitialEvents" => self.send_initial_events = flag(name, &value)?,
            "resourceVersionMatch" => check_version_match(&value)?,
            _ => {}
        }
        Ok(())
    }
}

fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "invalid value {value:?} for {name}: want true or false"
        )),
    }
}

fn number(name: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {name}: want a non-negative integer"))
}

fn check_version_match(value: &str) -> Result<(), String> {
    match value {
        "" | "NotOlderThan" | "Exact" => Ok(()),
        _ => Err(format!("invalid value {value:?} for resourceVersionMatch")),
    }
}

/// Percent-decoding with `+` as space (application/x-www-form-urlencoded).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-escape in {text:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("query text {text:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::Query;
    use std::time::Duration;

    #[test]
    fn decodes_what_kube_rs_sends() {
        let q = Query::parse(
            "watch=true&timeoutSeconds=290&labelSelector=app%3Dweb%2Ctier+in+%28a%29\
             &allowWatchBookmarks=true&resourceVersion=17",
        )
        .unwrap();
        assert!(q.watch && q.bookmarks && !q.send_initial_events);
        assert_eq!(q.timeout, Some(Duration::from_secs(290)));
        assert_eq!(q.resource_version.as_deref(), Some("17"));
        let obj = serde_json::json!({"metadata": {"labels": {"app": "web", "tier": "a"}}});
        assert!(q.selector.matches(&obj));
    }

    #[test]
    fn rejects_malformed_values() {
        for raw in [
            "limit=-1",
            "watch=maybe",
            "labelSelector=a%3D(",
            "continue=%zz",
            "timeoutSeconds=x",
        ] {
            assert!(Query::parse(raw).is_err(), "{raw} should be rejected");
        }
    }
}
