//! The synchronizer against real k8s-openapi objects and watcher events.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::config::SrvTargetStyle;
use crate::index::Index;

fn service(ns: &str, name: &str) -> core::Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": "None", "ports": [{"name": "peer", "port": 2380}]}
    }))
    .unwrap()
}

fn slice(ns: &str, svc: &str, name: &str, ips: &[&str]) -> discovery::EndpointSlice {
    let endpoints: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| json!({"addresses": [ip], "hostname": format!("{svc}-{i}"), "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc},
                     "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}},
        "addressType": "IPv4",
        "ports": [{"name": "peer", "port": 2380, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .unwrap()
}

fn setup(namespaces: &[&str]) -> (Index, Synchronizer, Arc<SourceStats>) {
    let (index, writer) = Index::new(1, SrvTargetStyle::Hostname);
    let settings = super::super::WatchSettings {
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let stats = Arc::new(SourceStats::default());
    let sync = Synchronizer::new(writer, super::super::scopes(&settings), stats.clone());
    (index, sync, stats)
}

fn services(sync: &mut Synchronizer, stream: usize, events: Vec<Event<core::Service>>) {
    for event in events {
        sync.handle(stream, Change::Service(Box::new(event)), Instant::now());
    }
}

fn slices(sync: &mut Synchronizer, stream: usize, events: Vec<Event<discovery::EndpointSlice>>) {
    for event in events {
        sync.handle(stream, Change::Slice(Box::new(event)), Instant::now());
    }
}

fn ready_ips(index: &Index, ns: &str, name: &str) -> Vec<String> {
    index
        .service(ns, name)
        .map(|r| r.endpoints.iter().map(|e| e.ip.to_string()).collect())
        .unwrap_or_default()
}

/// Streams of a cluster-wide setup: 0 = services, 1 = endpointslices.
const SERVICES: usize = 0;
const SLICES: usize = 1;

fn synced_cluster() -> (Index, Synchronizer, Arc<SourceStats>) {
    let (index, mut sync, stats) = setup(&[]);
    services(
        &mut sync,
        SERVICES,
        vec![
            Event::Init,
            Event::InitApply(service("a", "db")),
            Event::InitApply(service("b", "web")),
            Event::InitDone,
        ],
    );
    slices(
        &mut sync,
        SLICES,
        vec![
            Event::Init,
            Event::InitApply(slice("a", "db", "db-1", &["10.0.0.1", "10.0.0.2"])),
            Event::InitApply(slice("b", "web", "web-1", &["10.0.1.1"])),
            Event::InitDone,
        ],
    );
    (index, sync, stats)
}

#[test]
fn first_list_is_applied_in_one_step_once_every_stream_is_done() {
    let (index, mut sync, stats) = setup(&[]);
    services(
        &mut sync,
        SERVICES,
        vec![
            Event::Init,
            Event::InitApply(service("a", "db")),
            Event::InitDone,
        ],
    );
    assert!(
        index.service("a", "db").is_none(),
        "nothing is published before every stream listed"
    );
    slices(
        &mut sync,
        SLICES,
        vec![
            Event::Init,
            Event::InitApply(slice("a", "db", "db-1", &["10.0.0.1"])),
        ],
    );
    assert!(!index.is_synced());
    // A live event for the finished stream lands in the initial state, not the index.
    services(
        &mut sync,
        SERVICES,
        vec![Event::Apply(service("a", "cache"))],
    );
    assert!(index.service("a", "cache").is_none());
    slices(&mut sync, SLICES, vec![Event::InitDone]);
    assert!(index.is_synced() && stats.is_synced());
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1"]);
    assert!(index.service("a", "cache").is_some());
}

#[test]
fn a_restarted_first_list_forgets_what_the_broken_one_sent() {
    let (index, mut sync, _) = setup(&[]);
    services(
        &mut sync,
        SERVICES,
        vec![Event::Init, Event::InitApply(service("a", "gone"))],
    );
    services(
        &mut sync,
        SERVICES,
        vec![
            Event::Init,
            Event::InitApply(service("a", "db")),
            Event::InitDone,
        ],
    );
    slices(&mut sync, SLICES, vec![Event::Init, Event::InitDone]);
    assert!(index.service("a", "gone").is_none());
    assert!(index.service("a", "db").is_some());
}

#[test]
fn live_events_apply_one_service_at_a_time() {
    let (index, mut sync, stats) = synced_cluster();
    slices(
        &mut sync,
        SLICES,
        vec![Event::Apply(slice(
            "a",
            "db",
            "db-1",
            &["10.0.0.1", "10.0.0.3"],
        ))],
    );
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1", "10.0.0.3"]);
    assert_eq!(stats.event_to_served.count(), 1);
    assert_eq!(
        stats.trigger_to_served.count(),
        1,
        "the trigger-time annotation is read"
    );
    slices(
        &mut sync,
        SLICES,
        vec![Event::Delete(slice("a", "db", "db-1", &[]))],
    );
    assert!(
        ready_ips(&index, "a", "db").is_empty(),
        "the deleted slice took its endpoints"
    );
    services(
        &mut sync,
        SERVICES,
        vec![Event::Delete(service("b", "web"))],
    );
    assert!(index.service("b", "web").is_none());
}

#[test]
fn relist_removes_what_vanished_while_the_watch_was_down() {
    let (index, mut sync, stats) = synced_cluster();
    let serial = index.serial();
    services(
        &mut sync,
        SERVICES,
        vec![Event::Init, Event::InitApply(service("a", "db"))],
    );
    assert!(
        index.service("b", "web").is_some(),
        "answers stay while the relist runs"
    );
    services(&mut sync, SERVICES, vec![Event::InitDone]);
    assert!(index.service("b", "web").is_none());
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1", "10.0.0.2"]);
    slices(
        &mut sync,
        SLICES,
        vec![
            Event::Init,
            Event::InitApply(slice("a", "db", "db-1", &["10.0.0.2"])),
            Event::InitDone,
        ],
    );
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.2"]);
    assert_eq!(stats.relists(), 2);
    assert!(index.serial() > serial);
    assert!(index.is_synced(), "a relist never unsyncs");
}

#[test]
fn an_unchanged_relist_changes_nothing() {
    let (index, mut sync, _) = synced_cluster();
    let serial = index.serial();
    services(
        &mut sync,
        SERVICES,
        vec![
            Event::Init,
            Event::InitApply(service("a", "db")),
            Event::InitApply(service("b", "web")),
            Event::InitDone,
        ],
    );
    slices(
        &mut sync,
        SLICES,
        vec![
            Event::Init,
            Event::InitApply(slice("a", "db", "db-1", &["10.0.0.1", "10.0.0.2"])),
            Event::InitApply(slice("b", "web", "web-1", &["10.0.1.1"])),
            Event::InitDone,
        ],
    );
    assert_eq!(index.serial(), serial);
}

#[test]
fn a_namespaced_relist_touches_only_its_namespace() {
    let (index, mut sync, _) = setup(&["a", "b"]);
    // streams: 0 = services a, 1 = slices a, 2 = services b, 3 = slices b
    services(
        &mut sync,
        0,
        vec![
            Event::Init,
            Event::InitApply(service("a", "db")),
            Event::InitDone,
        ],
    );
    slices(
        &mut sync,
        1,
        vec![
            Event::Init,
            Event::InitApply(slice("a", "db", "db-1", &["10.0.0.1"])),
            Event::InitDone,
        ],
    );
    services(
        &mut sync,
        2,
        vec![
            Event::Init,
            Event::InitApply(service("b", "web")),
            Event::InitDone,
        ],
    );
    slices(
        &mut sync,
        3,
        vec![
            Event::Init,
            Event::InitApply(slice("b", "web", "web-1", &["10.0.1.1"])),
            Event::InitDone,
        ],
    );
    assert!(index.is_synced());
    services(&mut sync, 2, vec![Event::Init, Event::InitDone]);
    assert!(index.service("b", "web").is_none());
    assert!(index.service("a", "db").is_some());
}

#[test]
fn a_bad_object_keeps_the_last_good_version() {
    let (index, mut sync, _) = synced_cluster();
    let mut broken = slice("a", "db", "db-1", &["10.0.0.9"]);
    broken.endpoints.as_mut().unwrap()[0].addresses = vec!["not-an-ip".to_string()];
    slices(&mut sync, SLICES, vec![Event::Apply(broken)]);
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1", "10.0.0.2"]);
    let unnamed: core::Service =
        serde_json::from_value(json!({"metadata": {"namespace": "a"}})).unwrap();
    services(&mut sync, SERVICES, vec![Event::Apply(unnamed)]);
    assert!(index.service("a", "db").is_some());
}

#[test]
fn an_endpoint_moved_removal_first_never_leaves_the_answers() {
    let (index, mut sync, _) = synced_cluster();
    sync.writer
        .set_departure_grace(std::time::Duration::from_secs(60));
    // db-1 holds 10.0.0.1 and 10.0.0.2; 10.0.0.2 moves to a new slice db-2, removal first.
    slices(
        &mut sync,
        SLICES,
        vec![Event::Apply(slice("a", "db", "db-1", &["10.0.0.1"]))],
    );
    assert_eq!(
        ready_ips(&index, "a", "db"),
        ["10.0.0.1", "10.0.0.2"],
        "kept during the move"
    );
    slices(
        &mut sync,
        SLICES,
        vec![Event::Apply(slice("a", "db", "db-2", &["10.0.0.2"]))],
    );
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1", "10.0.0.2"]);
    // Once it arrived, its grace is over: deleting db-2 starts a new one, which ends.
    slices(
        &mut sync,
        SLICES,
        vec![Event::Delete(slice("a", "db", "db-2", &[]))],
    );
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1", "10.0.0.2"]);
    sync.expire_departures(Instant::now() + std::time::Duration::from_secs(61));
    assert_eq!(
        ready_ips(&index, "a", "db"),
        ["10.0.0.1"],
        "gone when the grace ends"
    );
}

#[test]
fn an_endpoint_that_turns_not_ready_first_leaves_at_once() {
    let (index, mut sync, _) = synced_cluster();
    sync.writer
        .set_departure_grace(std::time::Duration::from_secs(60));
    let mut sleepy = slice("a", "db", "db-1", &["10.0.0.1", "10.0.0.2"]);
    sleepy.endpoints.as_mut().unwrap()[1]
        .conditions
        .as_mut()
        .unwrap()
        .ready = Some(false);
    slices(&mut sync, SLICES, vec![Event::Apply(sleepy)]);
    assert_eq!(ready_ips(&index, "a", "db"), ["10.0.0.1"]);
    slices(
        &mut sync,
        SLICES,
        vec![Event::Apply(slice("a", "db", "db-1", &["10.0.0.1"]))],
    );
    assert_eq!(
        ready_ips(&index, "a", "db"),
        ["10.0.0.1"],
        "not ready first: no grace"
    );
}

#[test]
fn failed_relists_are_neither_events_nor_relists() {
    let (_, mut sync, stats) = synced_cluster();
    let (events, relists) = (stats.events(), stats.relists());
    // A lost watch whose relist fails three times: the watcher emits Init before each try.
    services(
        &mut sync,
        SERVICES,
        vec![Event::Init, Event::Init, Event::Init],
    );
    assert_eq!((stats.events(), stats.relists()), (events, relists));
    services(
        &mut sync,
        SERVICES,
        vec![
            Event::Init,
            Event::InitApply(service("a", "db")),
            Event::InitDone,
        ],
    );
    assert_eq!(stats.events(), events + 1, "one object delivered");
    assert_eq!(stats.relists(), relists + 1, "one relist completed");
}
