//! Tests of the test API server and controller driver, driven through the real, unmodified
//! `kube::runtime::watcher` (and plain `kube::Api` calls) over HTTP on 127.0.0.1.
//!
//! Every wait is bounded by [`WAIT`], so a hang fails the test instead of blocking CI. The
//! controller driver's tests are in [`driver`].

mod driver;

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::apiserver::{Resource as Kind, TestApiServer, Verb};

/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(10);

/// A short fixed backoff, so retries are quick but the watcher does not spin.
struct QuickBackoff;

impl Iterator for QuickBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }
}

impl Backoff for QuickBackoff {
    fn reset(&mut self) {}
}

/// A `kube::runtime::watcher` polled by a background task (as a real consumer would, so it
/// reconnects on its own), with helpers that expect particular events.
struct Watch<K> {
    events: mpsc::UnboundedReceiver<Result<Event<K>, watcher::Error>>,
    pump: tokio::task::JoinHandle<()>,
    errors: usize,
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    fn start(api: Api<K>, config: watcher::Config) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let mut stream = watcher::watcher(api, config).backoff(QuickBackoff).boxed();
        let pump = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        Self {
            events,
            pump,
            errors: 0,
        }
    }

    /// The next event, counting (and skipping) errors.
    async fn next(&mut self) -> Event<K> {
        loop {
            let item = timeout(WAIT, self.events.recv())
                .await
                .expect("watch event in time");
            match item.expect("watcher streams never end") {
                Ok(event) => return event,
                Err(_) => self.errors += 1,
            }
        }
    }

    /// Waits for a complete initial list (restarting at each `Init`); returns sorted names.
    async fn initial(&mut self) -> Vec<String> {
        while !matches!(self.next().await, Event::Init) {}
        let mut names = Vec::new();
        loop {
            match self.next().await {
                Event::Init => names.clear(),
                Event::InitApply(object) => names.push(object.name_any()),
                Event::InitDone => break,
                other => panic!("unexpected {other:?} during the initial list"),
            }
        }
        names.sort();
        names
    }

    async fn applied(&mut self) -> K {
        match self.next().await {
            Event::Apply(object) => object,
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    async fn deleted(&mut self) -> K {
        match self.next().await {
            Event::Delete(object) => object,
            other => panic!("expected Delete, got {other:?}"),
        }
    }
}

/// Polls `condition` until it holds, failing after [`WAIT`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn service(namespace: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": { "clusterIP": "None", "ports": [{ "name": "web", "port": 80 }] },
    })
}

/// A server holding services `names` in namespace `default`.
async fn server_with(names: &[&str]) -> TestApiServer {
    let server = TestApiServer::start().await;
    for name in names {
        server.apply(&service("default", name, json!({})));
    }
    server
}

#[tokio::test]
async fn watcher_lists_then_streams_changes() {
    let server = server_with(&["a", "b"]).await;
    server.apply(&service("other", "c", json!({})));
    let mut watch = Watch::start(
        Api::<Service>::all(server.client()),
        watcher::Config::default(),
    );
    assert_eq!(watch.initial().await, ["a", "b", "c"]);

    server.apply(&service("default", "d", json!({})));
    let added = watch.applied().await;
    assert_eq!(added.name_any(), "d");
    assert!(added.uid().is_some() && added.creation_timestamp().is_some());
    server.apply(&service("default", "a", json!({"v": "2"})));
    assert_eq!(watch.applied().await.labels()["v"], "2");
    server.delete(Kind::Services, "default", "b");
    assert_eq!(watch.deleted().await.name_any(), "b");
    assert_eq!(server.count(Verb::List, Kind::Services), 1);
}

#[tokio::test]
async fn namespace_and_label_selector_scope_events() {
    let server = TestApiServer::start().await;
    server.apply(&service("a", "web", json!({"app": "web"})));
    server.apply(&service("a", "db", json!({"app": "db"})));
    server.apply(&service("b", "web", json!({"app": "web"})));
    let api = Api::<Service>::namespaced(server.client(), "a");
    let mut watch = Watch::start(
        api,
        watcher::Config::default().labels("app in (web,api),!hidden"),
    );
    assert_eq!(watch.initial().await, ["web"]);

    server.apply(&service("b", "api", json!({"app": "api"})));
    server.apply(&service("a", "db2", json!({"app": "db"})));
    server.apply(&service("a", "db", json!({"app": "api"})));
    assert_eq!(
        watch.applied().await.name_any(),
        "db",
        "other namespace and labels skipped"
    );
    server.apply(&service("a", "db", json!({"app": "api", "hidden": "yes"})));
    assert_eq!(
        watch.deleted().await.name_any(),
        "db",
        "leaving the selection reads as DELETED"
    );
}

#[tokio::test]
async fn dropped_watch_resumes_from_history_without_relist() {
    let server = server_with(&["a", "b"]).await;
    let mut watch = Watch::start(
        Api::<Service>::all(server.client()),
        watcher::Config::default(),
    );
    assert_eq!(watch.initial().await, ["a", "b"]);
    eventually("watch open", || server.open_watches() == 1).await;

    server.drop_watches();
    server.apply(&service("default", "c", json!({})));
    assert_eq!(watch.applied().await.name_any(), "c");
    assert_eq!(server.count(Verb::List, Kind::Services), 1, "no relist");
    assert!(
        server.count(Verb::Watch, Kind::Services) >= 2,
        "the watch was reopened"
    );
}

#[tokio::test]
async fn expired_history_forces_a_relist_that_drops_deleted_objects() {
    let server = server_with(&["a", "b", "c"]).await;
    let mut watch = Watch::start(
        Api::<Service>::all(server.client()),
        watcher::Config::default(),
    );
    assert_eq!(watch.initial().await, ["a", "b", "c"]);
    eventually("watch open", || server.open_watches() == 1).await;

    server.set_unreachable(true);
    eventually("a refused connection", || server.refused_connections() > 0).await;
    server.delete(Kind::Services, "default", "b");
    server.apply(&service("default", "d", json!({})));
    server.expire_history();
    server.set_unreachable(false);

    assert_eq!(watch.initial().await, ["a", "c", "d"]);
    assert!(watch.errors >= 2, "refusals and the 410 surface as errors");
    assert_eq!(
        server.count(Verb::List, Kind::Services),
        2,
        "exactly one relist"
    );
}

#[tokio::test]
async fn injected_failures_are_retried_through() {
    let server = server_with(&["a"]).await;
    server.fail_next(3);
    let mut watch = Watch::start(
        Api::<Service>::all(server.client()),
        watcher::Config::default(),
    );
    assert_eq!(watch.initial().await, ["a"]);
    assert_eq!(watch.errors, 3);
    let failed = server
        .request_log()
        .iter()
        .filter(|r| r.status == Some(500))
        .count();
    assert_eq!(failed, 3);
}

#[tokio::test]
async fn initial_list_is_paginated() {
    let server = server_with(&["a", "b", "c", "d", "e"]).await;
    let config = watcher::Config::default().page_size(2);
    let mut watch = Watch::start(Api::<Service>::all(server.client()), config);
    assert_eq!(watch.initial().await, ["a", "b", "c", "d", "e"]);
    let lists: Vec<String> = server
        .request_log()
        .into_iter()
        .filter(|r| r.verb == Verb::List)
        .map(|r| r.query)
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists.iter().all(|q| q.contains("limit=2")), "{lists:?}");
    assert!(
        lists[1..].iter().all(|q| q.contains("continue=")),
        "{lists:?}"
    );
}

#[tokio::test]
async fn bookmarks_arrive_and_timeouts_end_watches() {
    let server = server_with(&["a"]).await;
    let api = Api::<Service>::all(server.client());
    let rv = server.resource_version().to_string();
    let stream = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap();
    let events: Vec<_> = timeout(WAIT, stream.collect::<Vec<_>>())
        .await
        .expect("watch ends");
    let bookmarks = events
        .iter()
        .filter(|e| matches!(e, Ok(WatchEvent::Bookmark(_))))
        .count();
    assert!(bookmarks >= 2, "periodic and closing bookmarks: {events:?}");

    let mut watch = Watch::start(api, watcher::Config::default().timeout(1));
    assert_eq!(watch.initial().await, ["a"]);
    eventually("two watch timeouts", || {
        server.count(Verb::Watch, Kind::Services) >= 3
    })
    .await;
    server.apply(&service("default", "b", json!({})));
    assert_eq!(watch.applied().await.name_any(), "b");
    assert_eq!(
        server.count(Verb::List, Kind::Services),
        1,
        "timeouts resume, never relist"
    );
}

#[tokio::test]
async fn streaming_lists_are_served() {
    let server = server_with(&["a", "b"]).await;
    let config = watcher::Config::default().streaming_lists();
    let mut watch = Watch::start(Api::<Service>::all(server.client()), config);
    assert_eq!(watch.initial().await, ["a", "b"]);
    server.delete(Kind::Services, "default", "a");
    assert_eq!(watch.deleted().await.name_any(), "a");
    assert_eq!(server.count(Verb::List, Kind::Services), 0);
}

#[tokio::test]
async fn discovery_and_kubeconfig_work() {
    let server = server_with(&["a"]).await;
    let discovery = kube::Discovery::new(server.client()).run().await.unwrap();
    let slices = kube::api::GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice");
    assert!(discovery.resolve_gvk(&slices).is_some());
    assert!(discovery.has_group(""));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(server.write_kubeconfig(dir.path())).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let listed = Api::<Service>::default_namespaced(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}

/// The HTTP code of the `Status` a failed kube call carried.
fn status_code<T: Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an api error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_requests_get_a_status() {
    let server = server_with(&["a"]).await;
    let api = Api::<Service>::all(server.client());
    let bad_selector = ListParams::default().labels("a in (");
    assert_eq!(status_code(api.list(&bad_selector).await), 400);
    let bad_token = ListParams {
        continue_token: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(status_code(api.list(&bad_token).await), 400);
    let bad_version = api.watch(&WatchParams::default(), "abc").await;
    assert_eq!(status_code(bad_version.map(drop)), 400);
    let namespaced = Api::<Service>::namespaced(server.client(), "default");
    assert_eq!(status_code(namespaced.get("missing").await), 404);
    assert_eq!(namespaced.get("a").await.unwrap().name_any(), "a");
    let log = server.request_log();
    assert!(log.iter().all(|r| r.method == "GET"));
    let get = log.iter().find(|r| r.verb == Verb::Get).unwrap();
    assert_eq!(get.path, "/api/v1/namespaces/default/services/missing");
}

#[tokio::test]
async fn continue_tokens_expire_with_history() {
    let server = server_with(&["a", "b", "c"]).await;
    let api = Api::<Service>::all(server.client());
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    let next = ListParams::default().limit(1).continue_token(&token);
    assert_eq!(api.list(&next).await.unwrap().items[0].name_any(), "b");
    server.apply(&service("default", "d", json!({})));
    server.expire_history();
    assert_eq!(status_code(api.list(&next).await), 410);
}
