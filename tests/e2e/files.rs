//! The shipped config files, the binary's command line, and live edits of the cluster file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use peerdns::config::Config;

use crate::support::{Ask, Over, config_for, first_log_line, query, root, serve_file};

#[test]
fn every_file_in_config_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("config")).unwrap() {
        let path = entry.unwrap().path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => {
                let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                config
                    .validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let cluster =
                    peerdns::source::file::load(&config.source.file, &config.source.pod_cidrs);
                cluster.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            Some("yaml") => {
                let cidrs = Config::default().source.pod_cidrs;
                peerdns::source::file::load(&path, &cidrs).unwrap_or_else(|e| panic!("{e}"));
            }
            _ => panic!("{}: no test knows this kind of file", path.display()),
        }
        seen += 1;
    }
    assert!(seen >= 2, "config/ holds peerdns.toml and cluster.yaml");
}

fn peerdns() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerdns"));
    command.current_dir(root());
    command
}

/// Runs the binary expecting failure; returns its one-line error.
fn failure(args: &[&str]) -> String {
    let output = peerdns().args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert!(!stderr.is_empty(), "{args:?}: an error message");
    stderr
}

#[test]
fn bad_flags_and_files_exit_nonzero_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad.toml");
    std::fs::write(&bad_key, "[dns]\nlisten_on = [\"127.0.0.1:53\"]\n").unwrap();
    let error = failure(&["--config", bad_key.to_str().unwrap()]);
    assert!(
        error.contains("listen_on") && error.lines().count() == 1,
        "{error}"
    );

    let bad_zone = dir.path().join("zone.toml");
    std::fs::write(&bad_zone, "[dns]\nzones = [\"bad zone\"]\n").unwrap();
    let error = failure(&["--config", bad_zone.to_str().unwrap()]);
    assert!(error.contains("dns.zones[0]"), "{error}");

    assert!(failure(&["--listen", "not-an-address"]).contains("not-an-address"));
    assert!(failure(&["--workerz", "2"]).contains("--workerz"));
    let missing = failure(&[
        "--file",
        "/nonexistent/cluster.yaml",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(missing.contains("/nonexistent/cluster.yaml"), "{missing}");
}

/// Starts the binary on the demo cluster (port 0) and returns it with its address.
fn start_demo() -> (std::process::Child, std::net::SocketAddr) {
    let mut child = peerdns()
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").unwrap();
    let address = first
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("address on the first line");
    // Drain the rest so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

fn dig(address: std::net::SocketAddr, args: &[&str]) -> String {
    let output = Command::new("dig")
        .arg(format!("@{}", address.ip()))
        .args([
            "-p",
            &address.port().to_string(),
            "+short",
            "+tries=1",
            "+time=3",
        ])
        .args(args)
        .output()
        .expect("dig is installed (bind9-dnsutils; .ci/run installs it)");
    assert!(output.status.success(), "dig {args:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn demo_cluster_answers_the_readme_examples_with_dig() {
    let (mut child, address) = start_demo();
    let srv = dig(address, &["SRV", "kubia.default.svc.cluster.local"]);
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0 33 80 kubia-0.kubia.default.svc.cluster.local.",
            "0 33 80 kubia-1.kubia.default.svc.cluster.local.",
            "0 33 80 kubia-2.kubia.default.svc.cluster.local.",
        ]
    );
    let full = dig(
        address,
        &[
            "+noshort",
            "+noall",
            "+additional",
            "SRV",
            "kubia.default.svc.cluster.local",
        ],
    );
    assert_eq!(
        full.lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("A"))
            .count(),
        3,
        "{full}"
    );
    let pod = dig(address, &["todo-db-0.todo-db.default.svc.cluster.local"]);
    assert_eq!(pod.lines().count(), 1, "{pod}");
    assert!(pod.trim().parse::<std::net::Ipv4Addr>().is_ok(), "{pod}");
    let tcp = dig(address, &["+tcp", "SRV", "kubia.default.svc.cluster.local"]);
    assert_eq!(tcp.lines().count(), 3);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_exits_zero() {
    let (child, address) = start_demo();
    let pid = child.id().to_string();
    assert!(!dig(address, &["kubia.default.svc.cluster.local"]).is_empty());
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
}

async fn wait_for_answers(address: std::net::SocketAddr, name: &str, count: usize) -> Duration {
    let started = Instant::now();
    loop {
        let reply = query(address, &Ask::new(name, RecordType::A), Over::Udp).await;
        if reply.answers.len() == count && reply.metadata.response_code == ResponseCode::NoError {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} never got {count} answers: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cluster_file_edits_apply_and_broken_edits_keep_the_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    let original = std::fs::read_to_string(root().join("tests/clusters/rules.yaml")).unwrap();
    std::fs::write(&path, &original).unwrap();
    let server = peerdns::app::start(&config_for(&path)).await.unwrap();
    let address = server.addresses[0];
    let name = "ten.scale.svc.cluster.local.";
    wait_for_answers(address, name, 10).await;
    let serial = server.index.serial();

    std::fs::write(&path, original.replace("replicas: 10", "replicas: 3")).unwrap();
    wait_for_answers(address, name, 3).await;
    assert!(
        server.index.serial() > serial,
        "the SOA serial moves with the answers"
    );

    // A broken edit: the last good state keeps being served.
    std::fs::write(
        &path,
        original.replace("replicas: 10", "replicas: 7\n  bogus: ["),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    wait_for_answers(address, name, 3).await;
    // The file vanishing keeps it too.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for_answers(address, name, 3).await;
    // And the next good edit applies.
    std::fs::write(&path, original.replace("replicas: 10", "replicas: 5")).unwrap();
    wait_for_answers(address, name, 5).await;
    server.stop().await;
}

#[test]
fn check_config_validates_without_serving() {
    let output = peerdns().arg("--check-config").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("config ok") && stdout.contains("cluster.yaml"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\n",
    )
    .unwrap();
    let error = failure(&["--check-config", "--file", broken.to_str().unwrap()]);
    assert!(
        error.contains("broken.yaml") && error.contains("Bad_Name"),
        "{error}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let first = first_log_line(peerdns().args([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-json",
    ]));
    let line: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["fields"]["message"].is_string(), "{line}");
}

/// The A records of `name`, sorted.
async fn addresses(address: std::net::SocketAddr, name: &str, over: Over) -> Vec<String> {
    let reply = query(address, &Ask::new(name, RecordType::A), over).await;
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{name}"
    );
    let mut found: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_statefulset_and_a_replica_set_behind_one_service_answer_every_pod() {
    // The StatefulSet tutorial's myweb-svc-headless: a StatefulSet and a ReplicaSet with the
    // same labels behind one headless Service; a real cluster answers six addresses.
    let server = serve_file(&root().join("tests/clusters/workloads.yaml")).await;
    let address = server.addresses[0];
    let name = "myweb-svc-headless.default.svc.cluster.local.";
    let udp = addresses(address, name, Over::Udp).await;
    assert_eq!(
        udp.len(),
        6,
        "3 StatefulSet pods and 3 ReplicaSet pods: {udp:?}"
    );
    assert_eq!(addresses(address, name, Over::Tcp).await, udp);
    // StatefulSet pods have a name of their own; ReplicaSet pods do not.
    let pod = addresses(address, &format!("myweb-sts-0.{name}"), Over::Udp).await;
    assert_eq!(pod.len(), 1);
    assert!(udp.contains(&pod[0]), "{pod:?} in {udp:?}");
    server.stop().await;
}

const TWO_STATEFULSETS: &str = r#"apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template: {metadata: {labels: {app: db}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: None, selector: {app: web}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}}
"#;

#[tokio::test]
async fn scaling_one_statefulset_does_not_move_another_ones_pods() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, TWO_STATEFULSETS).unwrap();
    let server = serve_file(&path).await;
    let address = server.addresses[0];
    let web = "web.default.svc.cluster.local.";
    let web0 = "web-0.web.default.svc.cluster.local.";
    let (web_before, web0_before) = (
        addresses(address, web, Over::Udp).await,
        addresses(address, web0, Over::Udp).await,
    );
    assert_eq!(web_before.len(), 3);
    let db = "db.default.svc.cluster.local.";
    let db_before = addresses(address, db, Over::Udp).await;

    // db sorts before web: handed out in order, its fourth pod took web-0's address.
    let scaled = TWO_STATEFULSETS.replacen("replicas: 3", "replicas: 4", 1);
    std::fs::write(&path, scaled).unwrap();
    wait_for_answers(address, db, 4).await;
    let db_after = addresses(address, db, Over::Udp).await;
    assert!(
        db_before.iter().all(|a| db_after.contains(a)),
        "{db_before:?} -> {db_after:?}"
    );
    assert_eq!(addresses(address, web0, Over::Tcp).await, web0_before);
    assert_eq!(addresses(address, web, Over::Udp).await, web_before);
    server.stop().await;
}

#[test]
fn check_config_lists_what_it_ignored_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: None, selector: {app: web}}\n---\n\
                apiVersion: apps/v1\nkind: Statefulset\nmetadata: {name: web}\nspec: {replicas: 3}\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\n";
    std::fs::write(&file, text).unwrap();
    let output = peerdns()
        .args(["--check-config", "--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let shown = file.display();
    assert!(lines[0].starts_with("config ok: 1 Services"), "{stdout}");
    assert_eq!(
        lines[1..],
        [
            "ignored 2 objects:".to_string(),
            format!(
                "  {shown}:6: Statefulset default/web ignored: unknown kind \"Statefulset\" (did you mean StatefulSet?)"
            ),
            format!("  {shown}:11: ConfigMap shop/settings ignored (not used for DNS)"),
        ],
        "{stdout}"
    );
}

#[tokio::test]
async fn a_broken_reload_is_visible_while_the_last_good_state_is_served() {
    use crate::admin::{get, metric};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, TWO_STATEFULSETS).unwrap();
    let server = serve_file(&path).await;
    let (dns, admin) = (server.addresses[0], server.admin_address);
    let (_, body) = get(admin, "/metrics").await;
    assert_eq!(metric(&body, "peerdns_file_last_load_success"), 1.0);
    assert_eq!(metric(&body, "peerdns_file_load_errors_total"), 0.0);
    let loaded_at = metric(&body, "peerdns_file_last_load_timestamp_seconds");
    assert!(loaded_at > 1.0e9, "{loaded_at}");

    std::fs::write(
        &path,
        TWO_STATEFULSETS.replacen("replicas: 3", "replicas: -1", 1),
    )
    .unwrap();
    let started = Instant::now();
    let body = loop {
        let (_, body) = get(admin, "/metrics").await;
        if metric(&body, "peerdns_file_last_load_success") == 0.0 {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(metric(&body, "peerdns_file_load_errors_total"), 1.0);
    assert_eq!(
        metric(&body, "peerdns_file_last_load_timestamp_seconds"),
        loaded_at,
        "the time of the state served"
    );
    assert!(metric(&body, "peerdns_file_last_load_attempt_timestamp_seconds") >= loaded_at);
    let (status, _) = get(admin, "/readyz").await;
    assert_eq!(status, 200, "the last good state is served: still ready");
    wait_for_answers(dns, "web.default.svc.cluster.local.", 3).await;
    let (_, source) = get(admin, "/debug/source").await;
    let source: serde_json::Value = serde_json::from_str(&source).unwrap();
    let last = &source["last_load"];
    assert_eq!(last["ok"], false, "{source}");
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(&format!("{}:6: ", path.display())) && error.contains("spec.replicas"),
        "{source}"
    );
    assert_eq!(last["errors"], 1, "{source}");

    std::fs::write(
        &path,
        TWO_STATEFULSETS.replace("replicas: 3", "replicas: 2"),
    )
    .unwrap();
    wait_for_answers(dns, "web.default.svc.cluster.local.", 2).await;
    let (_, body) = get(admin, "/metrics").await;
    assert_eq!(metric(&body, "peerdns_file_last_load_success"), 1.0);
    let (_, source) = get(admin, "/debug/source").await;
    let source: serde_json::Value = serde_json::from_str(&source).unwrap();
    assert_eq!(source["last_load"]["ok"], true, "{source}");
    assert!(source["last_load"]["error"].is_null(), "{source}");
    server.stop().await;
}
