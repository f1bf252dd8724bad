//! Tests for the file source: the demo cluster, document formats, errors with lines, and live
//! reload.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::model::{AddressFamily, Port, Protocol, ServiceKind};

fn cidrs() -> Vec<IpNet> {
    vec![DEFAULT_POD_CIDR.parse().expect("default cidr parses")]
}

fn load_text(text: &str) -> Result<ClusterState, FileError> {
    parse(Path::new("cluster.yaml"), text, &cidrs())
}

fn err_text(text: &str) -> String {
    load_text(text).expect_err("must fail").to_string()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn slices_of<'a>(state: &'a ClusterState, svc: &str) -> Vec<&'a EndpointSlice> {
    state
        .slices
        .iter()
        .filter(|s| s.service.name == svc)
        .collect()
}

/// (hostname, pod name, first address, ready) of every endpoint of a Service.
fn endpoints_of(
    state: &ClusterState,
    svc: &str,
) -> Vec<(Option<String>, Option<String>, IpAddr, bool)> {
    slices_of(state, svc)
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            (
                e.hostname.clone(),
                e.pod_name.clone(),
                e.addresses[0],
                e.ready,
            )
        })
        .collect()
}

#[test]
fn demo_cluster_kubia() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cluster.yaml");
    let state = load(&path, &cidrs()).expect("demo loads");
    assert_eq!(state.services.len(), 7);
    let kubia = slices_of(&state, "kubia");
    assert_eq!(kubia.len(), 1);
    assert_eq!(kubia[0].family, AddressFamily::Ipv4);
    assert_eq!(
        kubia[0].ports,
        vec![Port {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80
        }]
    );
    // Pinned: a pod's address derives from its identity alone and must never change under a
    // rebuild or an edit of other objects (see `statefulset::address`).
    let want: Vec<_> = ["10.244.39.192", "10.244.148.2", "10.244.188.25"]
        .iter()
        .enumerate()
        .map(|(i, address)| {
            (
                Some(format!("kubia-{i}")),
                Some(format!("kubia-{i}")),
                ip(address),
                true,
            )
        })
        .collect();
    assert_eq!(endpoints_of(&state, "kubia"), want);
}

#[test]
fn demo_cluster_other_services() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cluster.yaml");
    let state = load(&path, &cidrs()).expect("demo loads");
    let hosts = |svc| {
        endpoints_of(&state, svc)
            .into_iter()
            .map(|e| e.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        hosts("todo-db"),
        vec![Some("todo-db-0".into()), Some("todo-db-1".into())]
    );
    assert_eq!(endpoints_of(&state, "todo-db")[1].2, ip("10.244.20.54"));
    assert_eq!(hosts("my-headless-svc").len(), 3);
    assert!(
        hosts("my-headless-svc")
            .iter()
            .all(|h| h.as_deref().is_some_and(|h| h.starts_with("nginx-ss-")))
    );
    assert_eq!(
        slices_of(&state, "myweb-svc-headless")[0].ports[0].name,
        None
    );
    assert_eq!(hosts("kubia-public"), vec![None, None, None]);
    let kind = |name: &str| {
        state
            .services
            .iter()
            .find(|s| s.key.name == name)
            .map(|s| s.kind.clone())
    };
    assert_eq!(kind("kubia"), Some(ServiceKind::Headless));
    assert_eq!(
        kind("kubia-public"),
        Some(ServiceKind::ClusterIp(vec![ip("10.96.0.100")]))
    );
    assert_eq!(
        kind("db-external"),
        Some(ServiceKind::ExternalName(
            "todo-db.default.svc.cluster.local".into()
        ))
    );
    assert!(slices_of(&state, "db-external").is_empty());
}

/// The format `shared/bench/gen_zone.py` writes: one JSON document per YAML document.
const GEN_ZONE: &str = r#"---
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kafka-0-headless", "namespace": "default", "labels": {"app": "kafka-0"}}, "spec": {"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "kafka-0"}, "ports": [{"name": "client", "port": 9092, "protocol": "TCP", "targetPort": 9092}]}}
---
{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "kafka-0-headless-abcde", "namespace": "default", "labels": {"kubernetes.io/service-name": "kafka-0-headless", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}}, "addressType": "IPv4", "ports": [{"name": "client", "port": 9092, "protocol": "TCP"}], "endpoints": [{"addresses": ["10.128.0.2"], "hostname": "kafka-0-0", "conditions": {"ready": true, "serving": true, "terminating": false}, "targetRef": {"kind": "Pod", "name": "kafka-0-0", "namespace": "default"}}]}
"#;

#[test]
fn json_documents_and_explicit_slices() {
    let state = load_text(GEN_ZONE).expect("loads");
    assert_eq!(state.services.len(), 1);
    // The explicit slice replaces synthesis for its Service, although it has a selector.
    assert_eq!(state.slices.len(), 1);
    assert_eq!(state.slices[0].name, "kafka-0-headless-abcde");
    let inline = GEN_ZONE.replacen("---\n{", "--- {", 1);
    assert_eq!(load_text(&inline).expect("inline document loads"), state);
}

#[test]
fn lists_ignored_kinds_and_empty_documents() {
    let text = r#"
# only a comment
---
---
~
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: shop}
  spec: {clusterIP: None}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: a-fqdn, namespace: shop, labels: {kubernetes.io/service-name: a}}
  addressType: FQDN
  endpoints: [{addresses: [example.com]}]
---
apiVersion: v1
kind: ServiceList
items:
- {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {selector: {app: none}}}
"#;
    let loaded = parse_report(Path::new("cluster.yaml"), text, &cidrs()).expect("loads");
    let names: Vec<_> = loaded
        .state
        .services
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(names, vec!["shop/a", "default/b"]);
    assert!(
        loaded.state.slices.is_empty(),
        "FQDN slice skipped, no pods for b"
    );
    let ignored: Vec<_> = loaded.ignored.iter().map(ToString::to_string).collect();
    assert_eq!(
        ignored,
        vec![
            "cluster.yaml:7: Namespace default/shop ignored (not used for DNS)",
            "cluster.yaml:11: items[1]: ConfigMap default/cm ignored (not used for DNS)",
        ]
    );
}

/// `tests/clusters/workloads.yaml`: a StatefulSet and a ReplicaSet with the same labels behind
/// one headless Service, a Deployment, bare Pods and objects DNS does not use.
const WORKLOADS: &str = include_str!("../../../tests/clusters/workloads.yaml");

#[test]
fn replica_sets_deployments_and_bare_pods_are_expanded() {
    let loaded = parse_report(Path::new("w.yaml"), WORKLOADS, &cidrs()).expect("loads");
    let state = &loaded.state;
    let myweb = endpoints_of(state, "myweb-svc-headless");
    assert_eq!(
        myweb.len(),
        6,
        "3 StatefulSet pods and 3 ReplicaSet pods: {myweb:?}"
    );
    let (sts, rs): (Vec<_>, Vec<_>) = myweb
        .iter()
        .partition(|e| e.1.as_deref().is_some_and(|n| n.starts_with("myweb-sts-")));
    assert_eq!(sts.len(), 3);
    assert!(
        sts.iter().all(|e| e.0 == e.1),
        "StatefulSet pods have hostnames"
    );
    assert!(
        rs.iter().all(|e| e.0.is_none()),
        "ReplicaSet pods have none: {rs:?}"
    );
    assert!(
        rs.iter()
            .all(|e| e.1.as_deref().is_some_and(|n| n.len() == 14))
    );
    let mut addresses: Vec<_> = myweb.iter().map(|e| e.2).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 6, "distinct addresses");

    let api = slices_of(state, "api");
    let ports: Vec<_> = api
        .iter()
        .map(|s| {
            (
                s.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
                s.endpoints.len(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![(vec![], 1), (vec![8080], 2), (vec![9090], 1)],
        "named targetPort resolved per pod"
    );
    let api = endpoints_of(state, "api");
    let deploy: Vec<_> = api.iter().filter(|e| e.0.is_some()).collect();
    assert_eq!(deploy.len(), 2, "template hostname+subdomain: {api:?}");
    assert!(deploy.iter().all(|e| e.0.as_deref() == Some("api")));
    let bare = |name: &str| {
        api.iter()
            .find(|e| e.1.as_deref() == Some(name))
            .map(|e| e.2)
    };
    assert_eq!(bare("fixed"), Some(ip("10.9.9.9")), "status.podIP is used");
    let debug = bare("debug").expect("a bare Pod without an address gets one");
    assert!(cidrs()[0].contains(&debug));

    let ignored: Vec<_> = loaded.ignored.iter().map(ToString::to_string).collect();
    assert_eq!(
        ignored,
        vec![
            "w.yaml:64: Statefulset default/typo ignored: unknown kind \"Statefulset\" (did you mean StatefulSet?)",
            "w.yaml:69: ConfigMap default/settings ignored (not used for DNS)",
        ]
    );
    assert_eq!(
        parse(Path::new("w.yaml"), WORKLOADS, &cidrs()).expect("loads"),
        *state
    );
}

#[test]
fn what_kubectl_get_prints_counts_each_pod_once() {
    // A Deployment, its ReplicaSet and that ReplicaSet's Pods, as `kubectl get -o yaml` lists
    // them: the Pods stand for both.
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {clusterIP: None, selector: {app: api}}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: api}
  spec: {replicas: 2, selector: {matchLabels: {app: api}}, template: {metadata: {labels: {app: api}}}}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: api-5d8f7b
    ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: api, uid: a, controller: true}]
  spec: {replicas: 2, selector: {matchLabels: {app: api}}, template: {metadata: {labels: {app: api}}}}
- apiVersion: v1
  kind: Pod
  metadata:
    name: api-5d8f7b-abcde
    labels: {app: api}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-5d8f7b, uid: b, controller: true}]
  status: {podIP: 10.244.1.10}
- apiVersion: v1
  kind: Pod
  metadata:
    name: api-5d8f7b-fghij
    labels: {app: api}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-5d8f7b, uid: b, controller: true}]
  status: {podIP: 10.244.1.11}
"#;
    let state = load_text(text).expect("loads");
    let mut got: Vec<_> = endpoints_of(&state, "api")
        .into_iter()
        .map(|e| (e.1.unwrap_or_default(), e.2))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("api-5d8f7b-abcde".to_string(), ip("10.244.1.10")),
            ("api-5d8f7b-fghij".to_string(), ip("10.244.1.11")),
        ]
    );
}

#[test]
fn errors_name_file_line_and_field() {
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {name: kubia-abc, labels: {kubernetes.io/service-name: kubia}}\naddressType: IPv4\n";
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: kubia}\n";
    let cases = [
        (
            format!("{svc}---\n\n# the slice\n{slice}endpoints:\n- addresses: [10.0.0.1]\n- addresses: [10.0.0.x]\n"),
            "cluster.yaml:7: EndpointSlice default/kubia-abc: field endpoints[1].addresses[0]: \"10.0.0.x\" is not an IP address",
        ),
        (
            format!("{svc}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s}}\naddressType: IPv4\n"),
            "cluster.yaml:5: EndpointSlice default/s: field metadata.labels[kubernetes.io/service-name]: missing",
        ),
        (format!("{svc}---\n{svc}"), "cluster.yaml:5: Service default/kubia is defined twice, first at line 1"),
        (format!("{svc}spec:\n  ports:\n  - port: abc\n"), "cluster.yaml:6: Service: spec.ports[0].port: invalid type"),
        (format!("{svc}---\nkind: Service\n  bad: indent\n"), "cluster.yaml:6: "),
        (
            format!("{svc}\n--- {{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"spec\": {{\"ports\": [{{\"port\": \"x\"}}]}}}}\n"),
            "cluster.yaml:5: Service: invalid type: string \"x\", expected i32",
        ),
        ("kind: Service\nmetadata: {name: a}\n".to_owned(), "cluster.yaml:1: document has no apiVersion"),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: A}}\n".to_owned(),
            "cluster.yaml:1: items[0]: Service default/A: field metadata.name",
        ),
        (
            format!("{svc}---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: w}}\n\
                     spec: {{replicas: 70000, selector: {{}}, template: {{}}}}\n"),
            "cluster.yaml:5: StatefulSet default/w: pod CIDR 10.244.0.0/16 has no address left for pod w-64768",
        ),
    ];
    for (text, want) in cases {
        let got = err_text(&text);
        assert!(
            got.starts_with(want),
            "got {got:?}\nwant {want:?}\nfor:\n{text}"
        );
    }
}

const DB_WITH_POD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{name: pg, port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template: {metadata: {labels: {app: db}}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, labels: {app: db}}
spec: {hostname: db-1, subdomain: db, containers: []}
status:
  podIPs: [{ip: 10.244.0.2}]
  conditions: [{type: Ready, status: 'False'}]
"#;

#[test]
fn explicit_pods_and_dual_stack() {
    let text = DB_WITH_POD;
    let dual = vec![
        DEFAULT_POD_CIDR.parse().expect("v4"),
        "fd00:10:244::/64".parse().expect("v6"),
    ];
    let state = parse(Path::new("c.yaml"), text, &dual).expect("loads");
    let summary: Vec<_> = state
        .slices
        .iter()
        .map(|s| (s.name.as_str(), s.endpoints.len()))
        .collect();
    assert_eq!(summary, vec![("db-ipv4", 2), ("db-ipv6", 1)]);
    let eps = endpoints_of(&state, "db");
    assert_eq!(
        eps[0],
        (
            Some("db-1".into()),
            Some("db-1".into()),
            ip("10.244.0.2"),
            false
        )
    );
    assert_eq!(
        eps[1],
        (
            Some("db-0".into()),
            Some("db-0".into()),
            ip("10.244.131.180"),
            true
        )
    );
    assert_eq!(
        eps[2],
        (
            Some("db-0".into()),
            Some("db-0".into()),
            ip("fd00:10:244:0:560d:ffe2:4ddc:1757"),
            true
        )
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("test file written");
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ClusterState>) -> Vec<String> {
    let state = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a state in time");
    state
        .expect("watcher alive")
        .services
        .iter()
        .map(|s| s.key.name.clone())
        .collect()
}

#[tokio::test]
async fn watch_delivers_good_edits_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.yaml");
    let svc =
        |name: &str| format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n");
    write(&path, &svc("a"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(watch(
        path.clone(),
        cidrs(),
        Duration::from_millis(20),
        move |state| {
            let _ = tx.send(state);
        },
        async move {
            let _ = stopped.await;
        },
    ));
    assert_eq!(next(&mut rx).await, vec!["a"]);
    write(&path, &format!("{}{}", svc("a"), svc("b")));
    assert_eq!(next(&mut rx).await, vec!["a", "b"]);
    write(&path, &format!("{}{}", svc("a"), svc("B")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "a broken edit delivers nothing");
    std::fs::remove_file(&path).expect("removed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "a vanished file delivers nothing");
    write(&path, &svc("c"));
    assert_eq!(next(&mut rx).await, vec!["c"]);
    stop.send(()).expect("watcher listening");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("no panic");
}
