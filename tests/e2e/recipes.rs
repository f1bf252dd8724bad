//! Recipes proven with the real apps (deploy/recipes/): the app finds its peers through
//! peerdns alone, as it would in a cluster.
//!
//! Each runs in network, mount and UTS namespaces of its own (`unshare`, root): peerdns
//! serves the cluster on 127.0.0.1:53, `/etc/resolv.conf` names it, and the pods' addresses
//! are on the loopback device. Where `unshare` (root) or the app is missing, the test says
//! SKIPPED and why; `.ci/run` installs the apps and runs as root, so CI runs them.

use std::process::Command;

/// Runs `script` in bash in namespaces of its own (UTS, mount, network), at most 60 s; returns
/// its stdout and stderr together, failing the test (with them) when it fails.
fn run_isolated(script: &str) -> String {
    let output = Command::new("timeout")
        .args([
            "60", "unshare", "--uts", "--mount", "--net", "bash", "-c", script,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    text
}

/// Whether `unshare` works here (root) and every program in `programs` is installed; else
/// prints why the test is skipped.
fn can_run(test: &str, programs: &[&str]) -> bool {
    let unshare = Command::new("unshare")
        .args(["--uts", "--mount", "--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare {
        eprintln!("SKIPPED {test}: unshare (root) is not available; CI runs it as root");
        return false;
    }
    for program in programs {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIPPED {test}: {program} is not installed (.ci/run installs it)");
            return false;
        }
    }
    true
}

/// etcd's members, in a headless Service with its peer port named `etcd-server-ssl`.
const ETCD_CLUSTER: &str = "\
apiVersion: v1
kind: Service
metadata: {name: etcd, namespace: db}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  ports: [{name: etcd-server-ssl, port: 2380}, {name: etcd-client, port: 2379}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: etcd-abcde
  namespace: db
  labels: {kubernetes.io/service-name: etcd}
addressType: IPv4
ports: [{name: etcd-server-ssl, port: 2380, protocol: TCP}, {name: etcd-client, port: 2379, protocol: TCP}]
endpoints:
  - {addresses: [10.77.0.1], hostname: etcd-0, conditions: {ready: true}}
  - {addresses: [10.77.0.2], hostname: etcd-1, conditions: {ready: true}}
  - {addresses: [10.77.0.3], hostname: etcd-2, conditions: {ready: true}}
";

/// Three real etcd members form a cluster from peerdns's SRV records alone
/// (`--discovery-srv`, deploy/recipes/etcd.yaml's flags): each waits for the SRV to list all
/// three (`peerdns wait`), bootstraps from it, and a key written on one member is read on
/// another. etcd 3.4 (Debian's) looks up `_etcd-server-ssl._tcp` first and stops at its
/// NXDOMAIN, so the peers speak TLS (`--peer-auto-tls`) under that name.
#[test]
fn etcd_members_form_a_cluster_from_peerdns_srv_records() {
    if !can_run("etcd recipe", &["etcd", "etcdctl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("cluster.yaml"), ETCD_CLUSTER).unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        "nameserver 127.0.0.1\nsearch db.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_peerdns");
    let script = format!(
        r#"set -e
        ip link set lo up
        for i in 1 2 3; do ip addr add 10.77.0.$i/32 dev lo; done
        mount --bind {d}/resolv.conf /etc/resolv.conf
        {bin} --file {d}/cluster.yaml --listen 127.0.0.1:53 --admin-listen 127.0.0.1:0 > {d}/peerdns.log 2>&1 &
        {bin} wait --srv --min 3 --timeout 20s _etcd-server-ssl._tcp.etcd.db.svc.cluster.local
        for i in 0 1 2; do
          ip=10.77.0.$((i + 1))
          etcd --name etcd-$i --data-dir {d}/etcd-$i \
            --discovery-srv etcd.db.svc.cluster.local --peer-auto-tls \
            --initial-advertise-peer-urls https://etcd-$i.etcd.db.svc.cluster.local:2380 \
            --listen-peer-urls https://$ip:2380 --listen-client-urls http://$ip:2379 \
            --advertise-client-urls http://etcd-$i.etcd.db.svc.cluster.local:2379 \
            --initial-cluster-token peerdns-recipe --initial-cluster-state new \
            > {d}/etcd-$i.log 2>&1 &
        done
        export ETCDCTL_API=3
        all=http://10.77.0.1:2379,http://10.77.0.2:2379,http://10.77.0.3:2379
        healthy=no
        for t in $(seq 1 100); do
          if etcdctl --endpoints $all endpoint health > {d}/health.txt 2>&1; then healthy=yes; break; fi
          sleep 0.3
        done
        cat {d}/health.txt
        [ $healthy = yes ] || {{ tail -5 {d}/etcd-0.log; exit 1; }}
        etcdctl --endpoints http://10.77.0.1:2379 put peers found-by-srv
        etcdctl --endpoints http://10.77.0.3:2379 get --print-value-only peers
        etcdctl --endpoints http://10.77.0.2:2379 member list
        kill $(jobs -p) 2>/dev/null || true
        "#
    );
    let text = run_isolated(&script);
    assert!(
        text.contains("ready: _etcd-server-ssl._tcp.etcd.db.svc.cluster.local lists at least 3"),
        "{text}"
    );
    assert_eq!(text.matches("is healthy").count(), 3, "{text}");
    assert!(
        text.contains("found-by-srv"),
        "a key written on one member is read on another: {text}"
    );
    for member in 0..3 {
        let peer =
            format!("started, etcd-{member}, https://etcd-{member}.etcd.db.svc.cluster.local:2380");
        assert!(text.contains(&peer), "{text}");
    }
}

/// A MongoDB replica set, as a `mongodb+srv://` seedlist reads it: SRV at
/// `_mongodb._tcp.<svc>...` and options in the TXT at the Service's name (`peerdns.io/txt`).
const MONGO_CLUSTER: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: mongo
  namespace: db
  annotations: {peerdns.io/txt: \"replicaSet=rs0&authSource=admin\"}
spec:
  clusterIP: None
  ports: [{name: mongodb, port: 27017}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: mongo-abcde
  namespace: db
  labels: {kubernetes.io/service-name: mongo}
addressType: IPv4
ports: [{name: mongodb, port: 27017, protocol: TCP}]
endpoints:
  - {addresses: [10.78.0.1], hostname: mongo-0, conditions: {ready: true}}
  - {addresses: [10.78.0.2], hostname: mongo-1, conditions: {ready: true}}
  - {addresses: [10.78.0.3], hostname: mongo-2, conditions: {ready: true}}
";

/// The Python with pymongo the MongoDB recipe test uses (`.ci/run` makes it).
const RECIPES_PYTHON: &str = "target/recipes-venv/bin/python";

/// The MongoDB driver (pymongo, with dnspython) resolves a `mongodb+srv://` seedlist from
/// peerdns through the system resolver: the three members from the SRV records, and the
/// replica set's options from the TXT record.
#[test]
fn a_mongodb_srv_seedlist_resolves_through_peerdns() {
    let python = crate::support::root().join(RECIPES_PYTHON);
    let has_pymongo = Command::new(&python)
        .args(["-c", "import pymongo"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pymongo {
        eprintln!("SKIPPED mongodb recipe: no {RECIPES_PYTHON} with pymongo (.ci/run makes it)");
        return;
    }
    if !can_run("mongodb recipe", &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("cluster.yaml"), MONGO_CLUSTER).unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        "nameserver 127.0.0.1\nsearch db.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_peerdns");
    let python = python.display();
    let script = format!(
        r#"set -e
        ip link set lo up
        mount --bind {d}/resolv.conf /etc/resolv.conf
        {bin} --file {d}/cluster.yaml --listen 127.0.0.1:53 --admin-listen 127.0.0.1:0 > {d}/peerdns.log 2>&1 &
        {bin} wait --srv --min 3 --timeout 20s _mongodb._tcp.mongo.db.svc.cluster.local > /dev/null
        {python} - <<'PY'
from pymongo.uri_parser import parse_uri
parsed = parse_uri("mongodb+srv://mongo.db.svc.cluster.local/")
print("nodes", sorted(parsed["nodelist"]))
print("options", dict(parsed["options"]))
PY
        kill $(jobs -p) 2>/dev/null || true
        "#
    );
    let text = run_isolated(&script);
    let nodes = "nodes [('mongo-0.mongo.db.svc.cluster.local', 27017), ('mongo-1.mongo.db.svc.cluster.local', 27017), ('mongo-2.mongo.db.svc.cluster.local', 27017)]";
    assert!(text.contains(nodes), "{text}");
    assert!(text.contains("'replicaSet': 'rs0'"), "{text}");
    assert!(text.contains("'authSource': 'admin'"), "{text}");
}
