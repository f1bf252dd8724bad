//! Tests of the StatefulSet/EndpointSlice controller driver: what it writes, seen through the
//! store and through a real watcher on EndpointSlices.

use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::Watch;
use crate::apiserver::{Resource as Kind, TestApiServer};
use crate::controllers::StatefulSetDriver;

/// IPs of endpoints marked ready in the service's slices, sorted.
fn ready_ips_in_slices(server: &TestApiServer, namespace: &str, service: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = server
        .list(Kind::EndpointSlices, Some(namespace))
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == service)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect();
    ips.sort();
    ips
}

fn sorted(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort();
    ips
}

#[tokio::test]
async fn driver_writes_what_the_controllers_would() {
    let server = TestApiServer::start().await;
    let mut sts = StatefulSetDriver::new(&server, "db", "pg", "pg-headless");
    sts.create(3);
    assert_eq!(
        ready_ips_in_slices(&server, "db", "pg-headless"),
        sorted(sts.ready_ips())
    );
    let service = server.get(Kind::Services, "db", "pg-headless").unwrap();
    assert_eq!(service["spec"]["clusterIP"], "None");

    let before = server.resource_version();
    sts.scale(5);
    assert_eq!(
        server.resource_version() - before,
        2,
        "one write per pod step"
    );
    assert_eq!(sts.replicas(), 5);
    sts.set_ready(1, false);
    assert!(!sts.ready_ips().contains(&IpAddr::V4(sts.ipv4(1))));
    assert_eq!(
        ready_ips_in_slices(&server, "db", "pg-headless"),
        sorted(sts.published_ips())
    );
    sts.set_publish_not_ready(true);
    assert_eq!(sts.published_ips().len(), 5);
    assert_eq!(
        ready_ips_in_slices(&server, "db", "pg-headless"),
        sorted(sts.published_ips())
    );

    let old = sts.ipv4(0);
    sts.recreate(0);
    assert_ne!(sts.ipv4(0), old);
    assert!(!ready_ips_in_slices(&server, "db", "pg-headless").contains(&IpAddr::V4(old)));
    sts.scale(2);
    assert_eq!(
        ready_ips_in_slices(&server, "db", "pg-headless"),
        sorted(sts.published_ips())
    );
    let slice = &server.list(Kind::EndpointSlices, Some("db"))[0];
    assert_eq!(slice["endpoints"][0]["hostname"], sts.pod_name(0));
    assert_eq!(slice["endpoints"][0]["targetRef"]["name"], sts.pod_name(0));
    assert!(
        slice["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string()
    );
}

#[tokio::test]
async fn driver_spreads_moves_and_adds_ipv6_slices() {
    let server = TestApiServer::start().await;
    let mut sts = StatefulSetDriver::new(&server, "default", "web", "web");
    sts.max_endpoints_per_slice(2);
    sts.create(5);
    assert_eq!(
        sts.slice_names(),
        ["web-ipv4-0", "web-ipv4-1", "web-ipv4-2"]
    );
    let api = Api::<EndpointSlice>::namespaced(server.client(), "default");
    let config = watcher::Config::default().labels("kubernetes.io/service-name=web");
    let mut watch = Watch::start(api, config);
    assert_eq!(watch.initial().await, sts.slice_names());

    sts.move_endpoint(4, 2, 0);
    let to = watch.applied().await;
    assert_eq!(
        (
            to.name_any().as_str(),
            to.endpoints.as_ref().map_or(0, Vec::len)
        ),
        ("web-ipv4-0", 3)
    );
    assert_eq!(
        watch.deleted().await.name_any(),
        "web-ipv4-2",
        "the emptied slice goes away"
    );

    sts.dual_stack(true);
    let added = [watch.applied().await, watch.applied().await];
    let v6: Vec<(String, &str)> = added
        .iter()
        .map(|s| (s.name_any(), s.address_type.as_str()))
        .collect();
    assert_eq!(
        v6,
        [("web-ipv6-0".into(), "IPv6"), ("web-ipv6-1".into(), "IPv6")]
    );
    assert_eq!(
        ready_ips_in_slices(&server, "default", "web"),
        sorted(sts.ready_ips())
    );
    assert!(sts.ready_ips().contains(&IpAddr::V6(sts.ipv6(4))));
}
