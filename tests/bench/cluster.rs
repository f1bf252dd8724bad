//! The benchmark cluster as the peer harness (`peers/gen_zone.py`) writes it (headless Services
//! of StatefulSet pods, one EndpointSlice each, one JSON document per object), for the
//! benchmarks that build it themselves; and their command-line knobs.

use std::net::Ipv4Addr;

/// The value after `name` on the command line (`--services 500`), or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The benchmark cluster as the harness writes it: one JSON document per object.
pub fn cluster_text(services: usize, pods: usize) -> String {
    let mut documents = Vec::with_capacity(services * 2);
    let mut address = 0u32;
    for s in 0..services {
        let (ns, name) = (["default", "kafka", "databases"][s % 3], format!("app-{s}"));
        documents.push(format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"{ns}"}},"spec":{{"clusterIP":"None","ports":[{{"name":"peer","port":2380}}]}}}}"#
        ));
        let endpoints: Vec<String> = (0..pods)
            .map(|i| {
                address += 1;
                let ip = Ipv4Addr::from(0x0a80_0000 + address);
                format!(r#"{{"addresses":["{ip}"],"hostname":"{name}-{i}","conditions":{{"ready":true}},"targetRef":{{"kind":"Pod","name":"{name}-{i}"}}}}"#)
            })
            .collect();
        documents.push(format!(
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"{name}-x","namespace":"{ns}","labels":{{"kubernetes.io/service-name":"{name}"}}}},"addressType":"IPv4","ports":[{{"name":"peer","port":2380,"protocol":"TCP"}}],"endpoints":[{}]}}"#,
            endpoints.join(",")
        ));
    }
    documents.join("\n---\n")
}
