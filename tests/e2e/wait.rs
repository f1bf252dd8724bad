//! `peerdns wait`, the binary's subcommand an init container runs, against a server on
//! 127.0.0.1 port 0: it waits until names answer (here, while a StatefulSet is scaled in the
//! cluster file), says what is missing and why, and exits 0, 1 on timeout, 2 on bad arguments.

use std::process::Output;
use std::time::{Duration, Instant};

use peerdns::app::Running;
use tokio::process::Command;

use crate::support::config_for;

const CLUSTER: &str = "\
apiVersion: v1
kind: Service
metadata: {name: etcd, namespace: db}
spec:
  clusterIP: None
  selector: {app: etcd}
  ports: [{name: etcd-server, port: 2380}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: etcd, namespace: db}
spec:
  serviceName: etcd
  replicas: 2
  selector: {matchLabels: {app: etcd}}
  template:
    metadata: {labels: {app: etcd}}
    spec:
      containers: [{name: etcd, image: etcd}]
";

fn wait_command(server: &Running, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerdns"));
    command
        .arg("wait")
        .args(["--server", &server.addresses[0].to_string()])
        .args(["--interval", "100ms"])
        .args(args);
    command
}

fn text(output: &Output) -> (i32, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), stdout + &stderr)
}

async fn serving(cluster: &str) -> (tempfile::TempDir, std::path::PathBuf, Running) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, cluster).unwrap();
    let server = peerdns::app::start(&config_for(&path)).await.unwrap();
    (dir, path, server)
}

#[tokio::test]
async fn waits_until_a_new_peer_answers_saying_what_is_missing_meanwhile() {
    let (_dir, path, server) = serving(CLUSTER).await;
    let names = [
        "etcd-0.etcd.db.svc.cluster.local.",
        "etcd-2.etcd.db.svc.cluster.local.",
    ];
    let waiting = wait_command(&server, &["--timeout", "20s"])
        .args(names)
        .output();
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    std::fs::write(&path, CLUSTER.replace("replicas: 2", "replicas: 3")).unwrap();
    let (code, output) = text(&waiting.await.unwrap().unwrap());
    assert_eq!(code, 0, "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        [
            "peerdns wait: waiting for etcd-2.etcd.db.svc.cluster.local. (NXDOMAIN)",
            "peerdns wait: ready: etcd-0.etcd.db.svc.cluster.local., etcd-2.etcd.db.svc.cluster.local. answer",
        ],
        "{output}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    server.stop().await;
}

#[tokio::test]
async fn srv_waits_count_targets_and_a_timeout_exits_1_naming_what_is_missing() {
    let (_dir, _path, server) = serving(CLUSTER).await;
    let srv = "etcd.db.svc.cluster.local.";
    let mut enough = wait_command(&server, &["--srv", "--min", "2", srv]);
    let (code, output) = text(&enough.output().await.unwrap());
    assert_eq!(code, 0, "{output}");
    let mut short = wait_command(&server, &["--srv", "--min", "3", "--timeout", "1s", srv]);
    let (code, output) = text(&short.output().await.unwrap());
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("timed out after 1s"), "{output}");
    assert!(output.contains("2 of 3 targets"), "{output}");
    let mut nodata = wait_command(&server, &["--timeout", "500ms", "db.svc.cluster.local."]);
    let (code, output) = text(&nodata.output().await.unwrap());
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("(NODATA)"),
        "a name without addresses: {output}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unsynced_server_is_reported_as_servfail() {
    let (_dir, path, _file_server) = serving(CLUSTER).await;
    // A Kubernetes source whose API never answers: negative answers are SERVFAIL (R11).
    let mut config = config_for(&path);
    config.source.kind = peerdns::config::SourceKind::Kubernetes;
    let kubeconfig = path.with_file_name("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\nusers:\n- name: t\n  user: {{}}\n"
        ),
    )
    .unwrap();
    config.source.kubernetes.kubeconfig = Some(kubeconfig);
    let server = peerdns::app::start(&config).await.unwrap();
    let mut waiting = wait_command(
        &server,
        &["--timeout", "500ms", "etcd-0.etcd.db.svc.cluster.local."],
    );
    let (code, output) = text(&waiting.output().await.unwrap());
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("(SERVFAIL)"), "{output}");
    server.stop().await;
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let bin = env!("CARGO_BIN_EXE_peerdns");
    let cases: [&[&str]; 5] = [
        &["wait"],
        &["wait", "--srv", "a.", "b."],
        &["wait", "--timeout", "soon", "a."],
        &["wait", "--server", "dns.example", "a."],
        &["wait", "--self", "a."],
    ];
    for args in cases {
        let output = Command::new(bin).args(args).output().await.unwrap();
        let (code, text) = text(&output);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(!text.is_empty(), "{args:?}: says why");
    }
}

/// `--self` as in a pod: a namespace of its own (hostname `etcd-0`, a hosts file the kubelet
/// would write, `/etc/resolv.conf` naming peerdns on 127.0.0.1:53), asking the system's
/// resolver. Needs root for `unshare`; skipped, saying so, where that is unavailable.
#[tokio::test]
async fn self_waits_for_the_pods_own_qualified_name_through_the_system_resolver() {
    let unshare_works = std::process::Command::new("unshare")
        .args(["--uts", "--mount", "--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare_works {
        eprintln!("SKIPPED: unshare (root) is not available here; CI runs this test as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.yaml");
    std::fs::write(&cluster, CLUSTER.replace("replicas: 2", "replicas: 0")).unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "127.0.0.1 localhost\n10.244.0.9 etcd-0.etcd.db.svc.cluster.local etcd-0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        "nameserver 127.0.0.1\nsearch db.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_peerdns");
    let d = dir.path().display();
    // peerdns serves the cluster (no etcd pod yet); after a second the StatefulSet gets its
    // first replica, and `wait --self` must see etcd-0's name through /etc/resolv.conf.
    let script = format!(
        "set -e
        hostname etcd-0
        ip link set lo up
        mount --bind {d}/hosts /etc/hosts
        mount --bind {d}/resolv.conf /etc/resolv.conf
        {bin} --file {d}/cluster.yaml --listen 127.0.0.1:53 --admin-listen 127.0.0.1:0 >/dev/null 2>&1 &
        server=$!
        (sleep 1; sed -i 's/replicas: 0/replicas: 1/' {d}/cluster.yaml) &
        set +e
        {bin} wait --self --timeout 15s --interval 200ms
        code=$?
        kill $server
        exit $code"
    );
    let output = Command::new("unshare")
        .args(["--uts", "--mount", "--net", "bash", "-c", &script])
        .output()
        .await
        .unwrap();
    let (code, output) = text(&output);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("waiting for etcd-0.etcd.db.svc.cluster.local. (NXDOMAIN)"),
        "{output}"
    );
    assert!(
        output.contains("ready: etcd-0.etcd.db.svc.cluster.local. answers"),
        "{output}"
    );
}
