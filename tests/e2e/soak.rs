//! The soak (not a CI test: `#[ignore]`d; run by `tests/bench/soak.sh`): sustained dnsperf load
//! while the test API server churns endpoints, then a report of lost queries, wrong answers
//! found by re-checking against the expected state, and memory over time.
//!
//! `SOAK_SECS` sets the duration (default 300), `SOAK_QPS` the dnsperf rate (default 5000).

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;

use crate::apiserver::TestApiServer;
use crate::controllers::StatefulSetDriver;
use crate::watch::{addresses, watch_with};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn dnsperf_number(output: &str, label: &str) -> u64 {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Re-checks every Service against the driver's expected state: returns how many answers were
/// wrong after the convergence time allowed.
async fn wrong_answers(
    dns: std::net::SocketAddr,
    drivers: &[StatefulSetDriver<'_>],
    names: &[(String, String)],
) -> u64 {
    let mut wrong = 0;
    for (driver, (service, namespace)) in drivers.iter().zip(names) {
        let expected: std::collections::BTreeSet<IpAddr> = driver.ready_ips().into_iter().collect();
        let name = format!("{service}.{namespace}.svc.cluster.local.");
        let started = Instant::now();
        loop {
            let (rcode, found) = addresses(dns, &name).await;
            let settled = rcode == ResponseCode::NoError && found == expected
                || expected.is_empty() && rcode == ResponseCode::NXDomain;
            if settled {
                break;
            }
            if started.elapsed() > Duration::from_secs(2) {
                eprintln!("wrong answer for {name}: {rcode} {found:?}, expected {expected:?}");
                wrong += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of several minutes: run tests/bench/soak.sh"]
async fn soak_under_churn() {
    let seconds = env_number("SOAK_SECS", 300);
    let qps = env_number("SOAK_QPS", 5000);
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<(String, String)> = [("kafka", "streams"), ("zk", "coord"), ("pg", "databases")]
        .iter()
        .map(|(s, n)| (s.to_string(), n.to_string()))
        .collect();
    let mut drivers: Vec<StatefulSetDriver<'_>> = names
        .iter()
        .map(|(service, namespace)| StatefulSetDriver::new(&api, namespace, service, service))
        .collect();
    for driver in &mut drivers {
        driver.create(5);
    }
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];

    let mut queries = String::new();
    for (service, namespace) in &names {
        queries.push_str(&format!("{service}.{namespace}.svc.cluster.local A\n_web._tcp.{service}.{namespace}.svc.cluster.local SRV\n"));
        for ordinal in 0..10 {
            queries.push_str(&format!(
                "{service}-{ordinal}.{service}.{namespace}.svc.cluster.local A\n"
            ));
        }
        queries.push_str(&format!("nosuch.{namespace}.svc.cluster.local A\n"));
    }
    let query_file = dir.path().join("queries.txt");
    std::fs::write(&query_file, queries).unwrap();
    let dnsperf = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &dns.port().to_string(), "-d"])
        .arg(&query_file)
        .args([
            "-l",
            &seconds.to_string(),
            "-Q",
            &qps.to_string(),
            "-c",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsperf is installed (tests/bench/soak.sh installs it)");

    let started = Instant::now();
    let (mut rss, mut wrong, mut step) = (vec![(0u64, rss_kib())], 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(seconds) {
        step += 1;
        let driver = &mut drivers[(step % 3) as usize];
        match step % 7 {
            0 => driver.scale(1 + (step as usize * 5) % 8),
            1 | 2 => driver.set_ready((step as usize) % driver.replicas().max(1), step % 2 == 0),
            3 => driver.recreate((step as usize) % driver.replicas().max(1)),
            4 => api.drop_watches(),
            5 if step % 21 == 5 => {
                api.expire_history();
                api.drop_watches();
            }
            _ => driver.scale(3 + (step as usize) % 4),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if step % 25 == 0 {
            wrong += wrong_answers(dns, &drivers, &names).await;
            rss.push((started.elapsed().as_secs(), rss_kib()));
        }
    }
    wrong += wrong_answers(dns, &drivers, &names).await;
    rss.push((started.elapsed().as_secs(), rss_kib()));
    let output = dnsperf.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let (sent, lost) = (
        dnsperf_number(&report, "Queries sent:"),
        dnsperf_number(&report, "Queries lost:"),
    );
    println!("soak: {seconds} s at {qps} QPS, {step} churn steps");
    println!("soak: queries sent {sent}, lost {lost}; wrong answers after convergence: {wrong}");
    println!("soak: RSS KiB over time (s, KiB): {rss:?}");
    let first = rss.get(1).map_or(rss[0].1, |r| r.1);
    let last = rss.last().map_or(0, |r| r.1);
    println!("soak: RSS first sample {first} KiB, last {last} KiB");
    running.stop().await;
    assert_eq!(lost, 0, "queries lost:\n{report}");
    assert_eq!(wrong, 0, "wrong answers found");
    assert!(
        last <= first + first / 5 + 8192,
        "memory grew: {first} -> {last} KiB"
    );
}
