//! Serials that replicas agree on (R8): two peerdns replicas watching one API server, or
//! loading one cluster file, report the same SOA serial for the same state, so a secondary
//! can pull from either and resolvers never see the serial go back and forth between them.

use std::time::{Duration, Instant};

use peerdns::app::Running;

use crate::apiserver::{Resource, TestApiServer};
use crate::support::{config_for, root};
use crate::watch::{headless_service_json, ready_endpoint_json, slice_json, watch_with};

/// Waits until both replicas report one serial different from `before`; returns it.
async fn agreed_serial(a: &Running, b: &Running, before: Option<u32>) -> u32 {
    let started = Instant::now();
    loop {
        let (x, y) = (a.index.serial(), b.index.serial());
        if a.index.is_synced() && b.index.is_synced() && x == y && Some(x) != before {
            return x;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replicas never agreed: {x} and {y} (before: {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_replicas_watching_one_api_report_the_same_serials() {
    let api = TestApiServer::start().await;
    api.apply(&headless_service_json("web"));
    let endpoints = |n: usize| {
        (0..n)
            .map(|i| ready_endpoint_json(&format!("10.9.0.{}", i + 1), &format!("web-{i}")))
            .collect::<Vec<_>>()
    };
    api.apply(&slice_json("web-1", "web", endpoints(2)));
    let dir = tempfile::tempdir().unwrap();
    let a = watch_with(&api, dir.path(), |_| {}).await;
    let b = watch_with(&api, dir.path(), |_| {}).await;
    let mut serial = agreed_serial(&a, &b, None).await;
    assert_eq!(
        u64::from(serial),
        api.resource_version(),
        "the first list is served at the highest resourceVersion"
    );
    // Scale, add a Service, change it, delete one: after each, one serial for both.
    type Step<'a> = Box<dyn Fn(&TestApiServer) + 'a>;
    let steps: Vec<Step> = vec![
        Box::new(|api| drop(api.apply(&slice_json("web-1", "web", endpoints(3))))),
        Box::new(|api| drop(api.apply(&headless_service_json("db")))),
        Box::new(|api| drop(api.apply(&slice_json("db-1", "db", endpoints(1))))),
        Box::new(|api| drop(api.delete(Resource::EndpointSlices, "default", "db-1"))),
        Box::new(|api| drop(api.apply(&slice_json("web-1", "web", endpoints(1))))),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(&api);
        let next = agreed_serial(&a, &b, Some(serial)).await;
        assert!(
            peerdns::index::serial_lt(serial, next),
            "step {i}: the serial moved forward ({serial} -> {next})"
        );
        assert_eq!(u64::from(next), api.resource_version(), "step {i}");
        serial = next;
    }
    // A replica started now, from a fresh list, agrees with the two that watched.
    let c = watch_with(&api, dir.path(), |_| {}).await;
    assert_eq!(agreed_serial(&a, &c, None).await, serial);
    for replica in [a, b, c] {
        replica.stop().await;
    }
}

#[tokio::test]
async fn two_replicas_loading_one_cluster_file_report_the_same_serial() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::copy(root().join("config/cluster.yaml"), &file).unwrap();
    let a = peerdns::app::start(&config_for(&file)).await.unwrap();
    let b = peerdns::app::start(&config_for(&file)).await.unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let seconds = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let serial = agreed_serial(&a, &b, None).await;
    assert_eq!(
        u64::from(serial),
        seconds,
        "served at the file's modification time"
    );
    // An edit a second later: both move to its time.
    let later = modified + Duration::from_secs(1);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("replicas: 3", "replicas: 4");
    std::fs::write(&file, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let next = agreed_serial(&a, &b, Some(serial)).await;
    assert_eq!(u64::from(next), seconds + 1);
    a.stop().await;
    b.stop().await;
}
