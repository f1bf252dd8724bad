//! Request routing: URL path to [`Route`], and the answer for each route (discovery, get, list
//! with pagination, watch).
//!
//! Paths served, for each resource in the table (`{g}` is `/api/v1` or `/apis/<group>/<version>`):
//! `{g}/{plural}` (cluster-wide), `{g}/namespaces/{ns}/{plural}` (namespaced collections),
//! `{g}/namespaces/{ns}/{plural}/{name}` and `{g}/{plural}/{name}` (cluster-scoped) for get.
//! Invariants: the store lock is held only while reading a snapshot, never across an `.await`;
//! a list's continue token is `<listRV>:<namespace>/<name>` of the last item sent, and the next
//! page is everything after that key in the current state, reported at the original list RV (so
//! the watch that follows replays whatever changed meanwhile); once history is expired past the
//! token's RV the page is 410 Expired, as with etcd compaction. A first page always shows the
//! current state: `resourceVersion`/`resourceVersionMatch` on a list are validated, not honoured
//! (kube-rs's default `MostRecent` semantic sends neither).

use hyper::Response;
use serde_json::{Value, json};

use super::discovery;
use super::query::Query;
use super::reply::{Body, bad_request, expired_status, json_ok, not_found, status_response};
use super::resource::Resource;
use super::store::{Store, WatchStart};
use super::watch::{self, WatchSpec};
use super::{Shared, Verb};

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Discovery(Value),
    Collection {
        resource: Resource,
        namespace: Option<String>,
    },
    Object {
        resource: Resource,
        namespace: String,
        name: String,
    },
    Unknown,
}

impl Route {
    /// Parses a request path.
    pub fn parse(path: &str) -> Route {
        if let Some(doc) = discovery::document(path) {
            return Route::Discovery(doc);
        }
        let (group_path, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
            ("/api/v1", rest)
        } else if let Some(rest) = path.strip_prefix("/apis/discovery.k8s.io/v1/") {
            ("/apis/discovery.k8s.io/v1", rest)
        } else {
            return Route::Unknown;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let find = |plural: &str| Resource::from_path(group_path, plural);
        let owned = |s: &str| s.to_string();
        match segments.as_slice() {
            [plural] => find(plural).map(|resource| Route::Collection {
                resource,
                namespace: None,
            }),
            ["namespaces", ns, plural] => {
                find(plural)
                    .filter(|r| r.namespaced())
                    .map(|resource| Route::Collection {
                        resource,
                        namespace: Some(owned(ns)),
                    })
            }
            ["namespaces", ns, plural, name] => {
                find(plural)
                    .filter(|r| r.namespaced())
                    .map(|resource| Route::Object {
                        resource,
                        namespace: owned(ns),
                        name: owned(name),
                    })
            }
            [plural, name] => {
                find(plural)
                    .filter(|r| !r.namespaced())
                    .map(|resource| Route::Object {
                        resource,
                        namespace: String::new(),
                        name: owned(name),
                    })
            }
            _ => None,
        }
        .unwrap_or(Route::Unknown)
    }

    /// The request-log classification of this route.
    pub fn verb(&self, query: &str) -> (Verb, Option<Resource>) {
        match self {
            Route::Discovery(_) => (Verb::Discovery, None),
            Route::Collection { resource, .. } => {
                let watch = Query::parse(query).is_ok_and(|q| q.watch);
                (
                    if watch { Verb::Watch } else { Verb::List },
                    Some(*resource),
                )
            }
            Route::Object { resource, .. } => (Verb::Get, Some(*resource)),
            Route::Unknown => (Verb::Unknown, None),
        }
    }
}

/// Answers a GET for `route` with the raw `query` string.
pub fn answer(shared: &Shared, route: Route, path: &str, query: &str) -> Response<Body> {
    match route {
        Route::Discovery(doc) => json_ok(&doc),
        Route::Object {
            resource,
            namespace,
            name,
        } => get(shared, resource, &namespace, &name),
        Route::Collection {
            resource,
            namespace,
        } => match Query::parse(query) {
            Ok(q) if q.watch => watch(shared, resource, namespace, q),
            Ok(q) => list(&shared.store(), resource, namespace.as_deref(), &q),
            Err(message) => bad_request(&message),
        },
        Route::Unknown => not_found(&format!(
            "the server could not find the requested resource {path:?}"
        )),
    }
}

fn get(shared: &Shared, resource: Resource, namespace: &str, name: &str) -> Response<Body> {
    match shared.store().get(resource, namespace, name) {
        Some(object) => json_ok(&object),
        None => not_found(&format!("{} {name:?} not found", resource.plural())),
    }
}

fn list(store: &Store, resource: Resource, namespace: Option<&str>, q: &Query) -> Response<Body> {
    let (list_rv, after) = match q.continue_token.as_deref().map(parse_continue) {
        None => (store.rv(), None),
        Some(Ok((rv, key))) => (rv, Some(key)),
        Some(Err(message)) => return bad_request(&message),
    };
    if after.is_some() && list_rv < store.floor() {
        let token = q.continue_token.as_deref().unwrap_or_default();
        return status_response(&expired_status(token, store.floor()));
    }
    let mut items = store
        .list(resource, namespace)
        .into_iter()
        .filter(|object| q.selector.matches(object))
        .filter(|object| after.as_ref().is_none_or(|key| item_key(object) > *key));
    let page: Vec<&Value> = items.by_ref().take(q.limit.unwrap_or(usize::MAX)).collect();
    let remaining = items.count();
    let mut metadata = json!({ "resourceVersion": list_rv.to_string() });
    if let (true, Some(last)) = (remaining > 0, page.last()) {
        let (ns, name) = item_key(last);
        metadata["continue"] = json!(format!("{list_rv}:{ns}/{name}"));
        metadata["remainingItemCount"] = json!(remaining);
    }
    json_ok(&json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": page,
    }))
}

/// (namespace, name) of a stored object; the store's order within one resource.
fn item_key(object: &Value) -> (String, String) {
    let text = |field: &str| {
        object["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (text("namespace"), text("name"))
}

fn parse_continue(token: &str) -> Result<(u64, (String, String)), String> {
    let invalid = || format!("continue key {token:?} is not valid");
    let (rv, key) = token.split_once(':').ok_or_else(invalid)?;
    let (ns, name) = key.split_once('/').ok_or_else(invalid)?;
    let rv = rv.parse().map_err(|_| invalid())?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

fn watch(
    shared: &Shared,
    resource: Resource,
    namespace: Option<String>,
    q: Query,
) -> Response<Body> {
    let start = match watch_start(&shared.store(), resource, q.resource_version.as_deref()) {
        Ok(start) => start,
        Err(response) => return response,
    };
    let timeout = q.watch_timeout();
    let spec = WatchSpec {
        resource,
        namespace,
        selector: q.selector,
        bookmarks: q.bookmarks,
        initial_events_end: q.send_initial_events,
        timeout,
    };
    watch::respond(
        spec,
        start,
        watch::Interrupts {
            abort: shared.watch_abort(),
            stall: shared.watch_stall(),
        },
        shared.open_watches.clone(),
    )
}

/// The store snapshot a watch from `rv` starts with; the inner `Err` is a 410 Status to send
/// as an ERROR event, the outer one a 400 for an unparsable version.
#[allow(clippy::result_large_err)] // a Response is the natural error of a handler
fn watch_start(
    store: &Store,
    resource: Resource,
    rv: Option<&str>,
) -> Result<Result<WatchStart, Value>, Response<Body>> {
    match rv {
        None | Some("0") => Ok(Ok(store.watch_current(resource))),
        Some(text) => {
            let rv = text
                .parse()
                .map_err(|_| bad_request(&format!("invalid resourceVersion {text:?}")))?;
            Ok(store
                .watch_from(rv)
                .map_err(|floor| expired_status(text, floor)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Route;
    use crate::apiserver::resource::Resource;

    #[test]
    fn paths_route_like_the_real_server() {
        let collection = |resource, ns: Option<&str>| Route::Collection {
            resource,
            namespace: ns.map(str::to_string),
        };
        let cases = [
            ("/api/v1/services", collection(Resource::Services, None)),
            (
                "/api/v1/namespaces/a/services",
                collection(Resource::Services, Some("a")),
            ),
            (
                "/apis/discovery.k8s.io/v1/namespaces/a/endpointslices",
                collection(Resource::EndpointSlices, Some("a")),
            ),
            (
                "/apis/discovery.k8s.io/v1/endpointslices",
                collection(Resource::EndpointSlices, None),
            ),
            ("/api/v1/namespaces", collection(Resource::Namespaces, None)),
            (
                "/api/v1/namespaces/a",
                Route::Object {
                    resource: Resource::Namespaces,
                    namespace: String::new(),
                    name: "a".into(),
                },
            ),
            (
                "/api/v1/namespaces/a/pods/p",
                Route::Object {
                    resource: Resource::Pods,
                    namespace: "a".into(),
                    name: "p".into(),
                },
            ),
            ("/api/v1/services/x", Route::Unknown),
            ("/api/v1/endpointslices", Route::Unknown),
            ("/apis/discovery.k8s.io/v1/services", Route::Unknown),
            ("/api/v1/namespaces/a/namespaces", Route::Unknown),
            ("/nope", Route::Unknown),
            ("/api/v1/", Route::Unknown),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path), want, "{path}");
        }
    }
}
