//! Same answers from both sources (S1/S2 in src/rules.rs): one cluster described in a file, and the
//! same objects served by the test API server and watched, answer identically for every name.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use serde::Deserialize;
use serde_json::Value;

use crate::apiserver::TestApiServer;
use crate::support::{Ask, Over, config_for, query, reverse_name, root};
use crate::watch::watch_with;

/// The explicit objects of `tests/clusters/rules.yaml`: every Service and EndpointSlice, but no
/// StatefulSet and no selector-based Service (the file expands those; the API would not).
fn explicit_objects() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tests/clusters/rules.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("a YAML document"))
        .filter(|object| object["kind"] != "StatefulSet" && object["spec"]["selector"].is_null())
        .collect()
}

/// Every name the cluster can answer for, plus negatives around them.
fn every_question(state: &peerdns::model::ClusterState) -> Vec<(String, RecordType)> {
    let mut names: BTreeSet<String> = ["", "svc.", "dns-version.", "ns.dns.", "nosuch.svc."]
        .iter()
        .map(|prefix| format!("{prefix}cluster.local."))
        .collect();
    let mut reverse = BTreeSet::new();
    for service in &state.services {
        let base = format!(
            "{}.{}.svc.cluster.local.",
            service.key.name, service.key.namespace
        );
        names.insert(format!("{}.svc.cluster.local.", service.key.namespace));
        names.insert(format!("nosuch.{base}"));
        for port in &service.ports {
            if let Some(port_name) = &port.name {
                names.insert(format!("_{port_name}._{}.{base}", port.protocol.label()));
            }
        }
        if let peerdns::model::ServiceKind::ClusterIp(ips) = &service.kind {
            reverse.extend(ips.iter().copied());
        }
        names.insert(base);
    }
    for slice in &state.slices {
        let base = format!(
            "{}.{}.svc.cluster.local.",
            slice.service.name, slice.service.namespace
        );
        for port in slice
            .ports
            .iter()
            .filter_map(|p| p.name.as_ref().map(|n| (n, p.protocol)))
        {
            names.insert(format!("_{}._{}.{base}", port.0, port.1.label()));
        }
        for endpoint in &slice.endpoints {
            let labels = endpoint.hostname.iter().chain(endpoint.pod_name.iter());
            names.extend(labels.map(|label| format!("{label}.{base}")));
            for ip in &endpoint.addresses {
                names.insert(format!("{}.{base}", peerdns::index::dashed_ip(ip)));
                reverse.insert(*ip);
            }
        }
    }
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::NS,
        RecordType::ANY,
    ];
    let mut questions: Vec<(String, RecordType)> = names
        .iter()
        .flat_map(|name| types.iter().map(move |t| (name.clone(), *t)))
        .collect();
    questions.extend(reverse.iter().map(|ip| (reverse_name(ip), RecordType::PTR)));
    questions
}

fn comparable(reply: &Message) -> String {
    let render = |records: &[hickory_proto::rr::Record]| {
        let mut lines: Vec<String> = records
            .iter()
            .map(|r| match &r.data {
                RData::SOA(soa) => r.to_string().replace(&soa.serial.to_string(), "SERIAL"),
                _ => r.to_string(),
            })
            .collect();
        lines.sort();
        lines.join("\n")
    };
    format!(
        "{} aa={} tc={}\n{}\n--\n{}\n--\n{}",
        reply.metadata.response_code,
        reply.metadata.authoritative,
        reply.metadata.truncation,
        render(&reply.answers),
        render(&reply.authorities),
        render(&reply.additionals)
    )
}

async fn wait_until_synced(running: &peerdns::app::Running) {
    let started = std::time::Instant::now();
    while !running.index.is_synced() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the watch source never synced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_file_and_the_same_cluster_through_the_api_answer_identically() {
    let objects = explicit_objects();
    assert!(
        objects.len() >= 10,
        "the cluster has substance: {}",
        objects.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    let documents: Vec<String> = objects
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    std::fs::write(&file, documents.join("\n---\n")).unwrap();
    let state = peerdns::source::file::load(&file, &[]).unwrap();
    let from_file = peerdns::app::start(&config_for(&file)).await.unwrap();

    let api = TestApiServer::start().await;
    for object in &objects {
        api.apply(object);
    }
    let from_api = watch_with(&api, dir.path(), |_| {}).await;
    wait_until_synced(&from_api).await;

    let questions = every_question(&state);
    assert!(questions.len() > 100, "{} questions", questions.len());
    let (file_dns, api_dns): (SocketAddr, SocketAddr) =
        (from_file.addresses[0], from_api.addresses[0]);
    let mut differences = Vec::new();
    let mut positive = 0;
    for (name, rtype) in &questions {
        let ask = Ask::new(name, *rtype);
        let (a, b) = (
            query(file_dns, &ask, Over::Udp).await,
            query(api_dns, &ask, Over::Udp).await,
        );
        positive += usize::from(!a.answers.is_empty());
        let (a, b) = (comparable(&a), comparable(&b));
        if a != b {
            differences.push(format!("{name} {rtype}:\n  file: {a}\n  api:  {b}"));
        }
    }
    assert!(
        positive > 30,
        "only {positive} positive answers: the comparison would be hollow"
    );
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    from_file.stop().await;
    from_api.stop().await;
}
