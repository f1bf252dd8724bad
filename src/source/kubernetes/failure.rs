//! What went wrong when a watch stream failed: a bounded cause, for metrics and the retry
//! policy, and one line of text naming the stage and every cause down the chain, for the log.
//!
//! Invariants: [`FailureCause`] has a fixed set of values (it labels time series); the text
//! never repeats a cause that an outer message already quotes.

use std::error::Error;

use kube::core::Status;
use kube::runtime::watcher;

/// Why a request of a watch stream failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// No HTTP answer: connection refused, reset or closed, connect timeout, TLS failure.
    Connection,
    /// Nothing at all arrived for `source.kubernetes.watch_idle_timeout_ms`.
    Stalled,
    /// 410 Gone: the resourceVersion is too old, the stream relists.
    Gone,
    /// 429 Too Many Requests.
    Throttled,
    /// 5xx: the API server (or a proxy before it) failed.
    ServerError,
    /// Another HTTP error (401, 403, 404, ...): credentials, RBAC, a missing resource.
    Rejected,
    /// Anything else (an answer that does not decode, a list without resourceVersion).
    Other,
}

impl FailureCause {
    /// Every cause, in the order metrics list them.
    pub const ALL: [FailureCause; 7] = [
        FailureCause::Connection,
        FailureCause::Stalled,
        FailureCause::Gone,
        FailureCause::Throttled,
        FailureCause::ServerError,
        FailureCause::Rejected,
        FailureCause::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Connection => "connection",
            FailureCause::Stalled => "stalled",
            FailureCause::Gone => "gone",
            FailureCause::Throttled => "throttled",
            FailureCause::ServerError => "server_error",
            FailureCause::Rejected => "rejected",
            FailureCause::Other => "other",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn of_http(code: u16) -> FailureCause {
        match code {
            410 => FailureCause::Gone,
            429 => FailureCause::Throttled,
            500..=599 => FailureCause::ServerError,
            _ => FailureCause::Rejected,
        }
    }
}

/// The cause of a watcher error and one line describing it: the stage (list, watch request,
/// watch stream) and the cause chain, e.g. `list failed: client error (Connect): tcp connect
/// error: Connection refused (os error 111)`.
pub fn describe(error: &watcher::Error) -> (FailureCause, String) {
    let (stage, (cause, detail)) = match error {
        watcher::Error::InitialListFailed(error) => ("list", of_client(error)),
        watcher::Error::WatchStartFailed(error) => ("watch request", of_client(error)),
        watcher::Error::WatchError(status) => ("watch", of_status(status)),
        watcher::Error::WatchFailed(error) => ("watch stream", of_client(error)),
        watcher::Error::NoResourceVersion => (
            "list",
            (
                FailureCause::Other,
                "the answer has no metadata.resourceVersion".to_string(),
            ),
        ),
    };
    (cause, format!("{stage} failed: {detail}"))
}

/// The prefixes kube's client error puts before the message of what it wraps; they name its
/// own variants and tell an operator nothing.
const KUBE_PREFIXES: [&str; 2] = ["ServiceError: ", "HyperError: "];

fn of_client(error: &kube::Error) -> (FailureCause, String) {
    if let kube::Error::Api(status) = error {
        return of_status(status);
    }
    let cause = if is_connection(error) {
        FailureCause::Connection
    } else {
        FailureCause::Other
    };
    let text = KUBE_PREFIXES
        .iter()
        .fold(chain(error), |text, prefix| text.replace(prefix, ""));
    (cause, text)
}

fn of_status(status: &Status) -> (FailureCause, String) {
    let mut text = format!("HTTP {}", status.code);
    for part in [&status.reason, &status.message] {
        if !part.is_empty() {
            text.push(' ');
            text.push_str(part);
        }
    }
    (FailureCause::of_http(status.code), text)
}

/// Whether the error chain shows a connection-level failure (no HTTP answer).
fn is_connection(error: &(dyn Error + 'static)) -> bool {
    causes(error).any(|cause| {
        cause
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
            || cause.is::<hyper::Error>()
            || cause.is::<std::io::Error>()
    })
}

/// `error` and its sources, one after the other.
fn causes<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&error| error.source())
}

/// The messages of `error` and its sources joined with `: `, skipping a cause whose text an
/// outer message already quotes.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    for cause in causes(error) {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        Status::failure(message, reason).with_code(code)
    }

    #[test]
    fn http_statuses_map_to_their_causes() {
        let cases = [
            (410, FailureCause::Gone),
            (429, FailureCause::Throttled),
            (500, FailureCause::ServerError),
            (503, FailureCause::ServerError),
            (403, FailureCause::Rejected),
            (404, FailureCause::Rejected),
        ];
        for (code, cause) in cases {
            let error = watcher::Error::InitialListFailed(kube::Error::Api(
                status(code, "Reason", "why").boxed(),
            ));
            let (found, text) = describe(&error);
            assert_eq!(found, cause, "{code}");
            assert_eq!(text, format!("list failed: HTTP {code} Reason why"));
        }
        let gone = watcher::Error::WatchError(status(410, "Expired", "too old").boxed());
        assert_eq!(
            describe(&gone),
            (
                FailureCause::Gone,
                "watch failed: HTTP 410 Expired too old".to_string()
            )
        );
    }

    #[test]
    fn io_failures_are_connection_failures_with_their_whole_chain() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = watcher::Error::WatchStartFailed(kube::Error::Service(Box::new(refused)));
        let (cause, text) = describe(&error);
        assert_eq!(cause, FailureCause::Connection);
        assert_eq!(text, "watch request failed: connection refused");
    }

    #[test]
    fn a_chain_skips_what_an_outer_message_quotes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "outer ({})", self.0)
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&error), "outer (inner)");
        let error = kube::Error::ReadEvents(std::io::Error::other("reset"));
        assert_eq!(chain(&error), "Error reading events stream: reset");
    }

    #[test]
    fn other_failures_are_other() {
        let (cause, text) = describe(&watcher::Error::NoResourceVersion);
        assert_eq!(cause, FailureCause::Other);
        assert!(text.starts_with("list failed: "), "{text}");
        for (i, cause) in FailureCause::ALL.iter().enumerate() {
            assert_eq!(cause.index(), i);
        }
    }
}
