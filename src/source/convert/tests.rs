//! Table tests for the conversion rules: each case is a real Kubernetes object in YAML.

use super::*;

fn svc(yaml: &str) -> Result<Service, ConvertError> {
    let obj: core::Service = serde_yaml::from_str(yaml).expect("test yaml parses");
    service(&obj)
}

fn slice(yaml: &str) -> Result<Option<EndpointSlice>, ConvertError> {
    let obj: discovery::EndpointSlice = serde_yaml::from_str(yaml).expect("test yaml parses");
    endpoint_slice(&obj)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

#[test]
fn dns_names() {
    let cases = [
        ("kubia", true, true),
        ("kubia-0", true, true),
        ("0abc", true, true),
        ("", false, false),
        ("-a", false, false),
        ("a-", false, false),
        ("Kubia", false, false),
        ("a_b", false, false),
        ("a.b", false, true),
        ("a..b", false, false),
        (&"a".repeat(63), true, true),
        (&"a".repeat(64), false, false),
    ];
    for (name, label, subdomain) in cases {
        assert_eq!(is_dns_label(name), label, "label {name:?}");
        assert_eq!(label_rule(name).is_none(), label, "label rule {name:?}");
        assert_eq!(is_dns_subdomain(name), subdomain, "subdomain {name:?}");
    }
}

#[test]
fn label_rules_name_the_rule_broken() {
    let cases = [
        ("", Some(LabelRule::Empty)),
        ("Kubia", Some(LabelRule::Uppercase('K'))),
        ("web_bad", Some(LabelRule::Character('_'))),
        ("a.b", Some(LabelRule::Character('.'))),
        ("-a", Some(LabelRule::LeadingDash)),
        ("a-", Some(LabelRule::TrailingDash)),
        (&"a".repeat(69), Some(LabelRule::TooLong(69))),
        (&"a".repeat(63), None),
        ("a-0", None),
    ];
    for (name, rule) in cases {
        assert_eq!(label_rule(name), rule, "{name:?}");
    }
    assert_eq!(
        LabelRule::TooLong(69).to_string(),
        "label longer than 63 characters (69)"
    );
    assert_eq!(
        LabelRule::Character('\n').to_string(),
        "'\\n' is not allowed (only a-z, 0-9 and '-')"
    );
}

/// A 69-character label is a label problem, not a 253-character one, whether the field is a
/// label or a subdomain; a subdomain's bad label is numbered.
#[test]
fn long_labels_are_reported_as_labels() {
    let long = "a".repeat(69);
    let as_label = svc(&format!("metadata: {{name: {long}}}"))
        .expect_err("a 69-character Service name")
        .to_string();
    assert!(
        as_label.ends_with(&format!(
            "field metadata.name: \"{long}\" is not a DNS-1123 label: label longer than 63 characters (69)"
        )),
        "{as_label}"
    );
    let as_subdomain = slice(&format!(
        "metadata: {{name: {long}, labels: {{kubernetes.io/service-name: a}}}}\naddressType: IPv4"
    ))
    .expect_err("a 69-character slice name")
    .to_string();
    assert!(
        as_subdomain.ends_with("is not a DNS-1123 subdomain: label longer than 63 characters (69)"),
        "{as_subdomain}"
    );
    assert!(!as_subdomain.contains("253"), "{as_subdomain}");
    let dotted = slice(&format!(
        "metadata: {{name: x.{long}, labels: {{kubernetes.io/service-name: a}}}}\naddressType: IPv4"
    ))
    .expect_err("a slice name with a 69-character label")
    .to_string();
    assert!(
        dotted.ends_with("label 2 of 2: label longer than 63 characters (69)"),
        "{dotted}"
    );
    let too_long = format!("{}a", "abcdefghi.".repeat(26));
    let whole = slice(&format!(
        "metadata: {{name: {too_long}, labels: {{kubernetes.io/service-name: a}}}}\naddressType: IPv4"
    ))
    .expect_err("a 261-character slice name")
    .to_string();
    assert!(
        whole.ends_with("is not a DNS-1123 subdomain: longer than 253 characters (261)"),
        "{whole}"
    );
}

/// Kubernetes rejects a port name that is not a DNS-1123 label; served, `Web_Bad` would be
/// `_web_bad._tcp`. Case alone is forgiven (the name is lowercased), as before.
#[test]
fn port_names_are_labels() {
    let err = svc(
        "metadata: {name: a}\nspec: {ports: [{name: http, port: 80}, {name: Web_Bad, port: 81}]}",
    )
    .expect_err("Web_Bad is no port name")
    .to_string();
    assert_eq!(
        err,
        "Service default/a: field spec.ports[1].name: \"Web_Bad\" is not a port name: '_' is not allowed (only a-z, 0-9 and '-')"
    );
    let long = svc(&format!(
        "metadata: {{name: a}}\nspec: {{ports: [{{name: {}, port: 80}}]}}",
        "p".repeat(64)
    ))
    .expect_err("a 64-character port name")
    .to_string();
    assert!(
        long.ends_with("label longer than 63 characters (64)"),
        "{long}"
    );
    let err = slice(
        "metadata: {name: s, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\n\
         ports: [{name: -web, port: 80}]",
    )
    .expect_err("-web is no port name")
    .to_string();
    assert_eq!(
        err,
        "EndpointSlice default/s: field ports[0].name: \"-web\" is not a port name: starts with '-'"
    );
    let upper = svc("metadata: {name: a}\nspec: {ports: [{name: Web, port: 80}]}").expect("Web");
    assert_eq!(upper.ports[0].name.as_deref(), Some("web"));
}

#[test]
fn service_kinds() {
    let cases = [
        (
            "metadata: {name: a}\nspec: {clusterIP: None}",
            ServiceKind::Headless,
        ),
        (
            "metadata: {name: a}\nspec: {clusterIP: 10.96.0.1, clusterIPs: [None]}",
            ServiceKind::Headless,
        ),
        (
            "metadata: {name: a}\nspec: {clusterIP: 10.96.0.1}",
            ServiceKind::ClusterIp(vec![ip("10.96.0.1")]),
        ),
        (
            "metadata: {name: a}\nspec: {clusterIP: 10.96.0.1, clusterIPs: [10.96.0.1, 'fd00::1']}",
            ServiceKind::ClusterIp(vec![ip("10.96.0.1"), ip("fd00::1")]),
        ),
        (
            "metadata: {name: a}\nspec: {}",
            ServiceKind::ClusterIp(vec![]),
        ),
        ("metadata: {name: a}", ServiceKind::ClusterIp(vec![])),
        (
            "metadata: {name: a}\nspec: {type: ExternalName, externalName: DB.Example.COM.}",
            ServiceKind::ExternalName("db.example.com".into()),
        ),
    ];
    for (yaml, kind) in cases {
        let s = svc(yaml).expect(yaml);
        assert_eq!(s.kind, kind, "{yaml}");
        assert_eq!(s.key, ServiceKey::new("default", "a"), "{yaml}");
    }
}

#[test]
fn bootstrap_annotations_are_read_and_bad_ones_skipped() {
    let s = svc(r#"
metadata:
  name: zk
  namespace: db
  annotations: {peerdns.io/not-ready-names: "true", peerdns.io/seeds: "3", peerdns.io/txt: "a=b"}
spec: {clusterIP: None}
"#)
    .expect("converts");
    assert!(s.bootstrap.not_ready_names);
    assert_eq!(s.bootstrap.seeds, Some(3));
    assert_eq!(s.bootstrap.txt, ["a=b"]);
    let bad = svc(r#"
metadata:
  name: zk
  annotations: {peerdns.io/seeds: "lots"}
spec: {clusterIP: None}
"#)
    .expect("a bad annotation never fails the Service");
    assert_eq!(bad.bootstrap, crate::model::Bootstrap::default());
}

#[test]
fn service_ports_and_namespace() {
    let s = svc(
        "metadata: {name: kubia, namespace: shop}\nspec:\n  clusterIP: None\n  ports:\n  \
         - {name: HTTP, port: 80}\n  - {port: 53, protocol: UDP}\n  - {name: '', port: 9, protocol: SCTP}",
    )
    .expect("converts");
    assert_eq!(s.key, ServiceKey::new("shop", "kubia"));
    let want = vec![
        Port {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80,
        },
        Port {
            name: None,
            protocol: Protocol::Udp,
            port: 53,
        },
        Port {
            name: None,
            protocol: Protocol::Sctp,
            port: 9,
        },
    ];
    assert_eq!(s.ports, want);
}

#[test]
fn service_errors() {
    let cases = [
        (
            "metadata: {name: Kubia}",
            "Service default/Kubia: field metadata.name: \"Kubia\" is not a DNS-1123 label",
        ),
        (
            "metadata: {namespace: x}",
            "Service x/: field metadata.name: missing",
        ),
        (
            "metadata: {name: a, namespace: Prod}",
            "Service Prod/a: field metadata.namespace:",
        ),
        (
            "metadata: {name: a}\nspec: {ports: [{port: 0}]}",
            "Service default/a: field spec.ports[0].port: 0 is not a port number",
        ),
        (
            "metadata: {name: a}\nspec: {ports: [{port: 70000}]}",
            "field spec.ports[0].port: 70000",
        ),
        (
            "metadata: {name: a}\nspec: {ports: [{port: 1}, {port: 2, protocol: ICMP}]}",
            "field spec.ports[1].protocol: \"ICMP\"",
        ),
        (
            "metadata: {name: a}\nspec: {clusterIP: 10.96.0.x}",
            "field spec.clusterIP: \"10.96.0.x\" is not an IP address",
        ),
        (
            "metadata: {name: a}\nspec: {clusterIPs: [10.0.0.1, nope]}",
            "field spec.clusterIPs[1]: \"nope\"",
        ),
        (
            "metadata: {name: a}\nspec: {type: ExternalName}",
            "field spec.externalName: missing",
        ),
        (
            "metadata: {name: a}\nspec: {type: ExternalName, externalName: db.example..}",
            "field spec.externalName: \"db.example.\" is not a DNS-1123 subdomain",
        ),
        (
            "metadata: {name: a}\nspec: {type: ExternalName, externalName: db_1.example}",
            "field spec.externalName: \"db_1.example\"",
        ),
    ];
    for (yaml, want) in cases {
        let err = svc(yaml).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: got {err:?}, want {want:?}");
    }
}

const KUBIA_SLICE: &str = r#"
metadata:
  name: kubia-abc
  labels: {kubernetes.io/service-name: kubia}
addressType: IPv4
ports:
- {name: HTTP, port: 8080}
- {name: all, port: null}
endpoints:
- addresses: [10.244.1.5]
  hostname: kubia-0
  targetRef: {kind: Pod, name: kubia-0}
- addresses: [10.244.1.6]
  conditions: {ready: false, serving: true, terminating: true}
  targetRef: {kind: Node, name: n1}
- addresses: [10.244.1.7, 10.244.1.8]
  conditions: {ready: true}
"#;

#[test]
fn slice_conversion() {
    let s = slice(KUBIA_SLICE).expect("converts").expect("not skipped");
    assert_eq!(s.name, "kubia-abc");
    assert_eq!(s.service, ServiceKey::new("default", "kubia"));
    assert_eq!(s.family, AddressFamily::Ipv4);
    assert_eq!(
        s.ports,
        vec![Port {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 8080
        }]
    );
    let want = vec![
        Endpoint {
            terminating: false,
            addresses: vec![ip("10.244.1.5")],
            ready: true,
            hostname: Some("kubia-0".into()),
            pod_name: Some("kubia-0".into()),
        },
        Endpoint {
            terminating: true,
            addresses: vec![ip("10.244.1.6")],
            ready: false,
            hostname: None,
            pod_name: None,
        },
        Endpoint {
            terminating: false,
            addresses: vec![ip("10.244.1.7"), ip("10.244.1.8")],
            ready: true,
            hostname: None,
            pod_name: None,
        },
    ];
    assert_eq!(s.endpoints, want);
}

#[test]
fn slice_ipv6_and_fqdn() {
    let v6 = "metadata: {name: s, namespace: ns, labels: {kubernetes.io/service-name: a}}\n\
              addressType: IPv6\nendpoints: [{addresses: ['fd00::5']}]";
    let s = slice(v6).expect("converts").expect("kept");
    assert_eq!(s.family, AddressFamily::Ipv6);
    assert_eq!(s.service, ServiceKey::new("ns", "a"));
    assert!(s.ports.is_empty());
    let fqdn = "metadata: {name: s, labels: {kubernetes.io/service-name: a}}\n\
                addressType: FQDN\nendpoints: [{addresses: [example.com]}]";
    assert_eq!(slice(fqdn), Ok(None));
}

#[test]
fn slice_errors() {
    let head = "metadata: {name: kubia-abc, labels: {kubernetes.io/service-name: kubia}}\n";
    let cases = [
        (
            "metadata: {name: s}\naddressType: IPv4".to_owned(),
            "EndpointSlice default/s: field metadata.labels[kubernetes.io/service-name]: missing",
        ),
        (
            "metadata: {name: s, labels: {kubernetes.io/service-name: A}}\naddressType: IPv4"
                .to_owned(),
            "field metadata.labels[kubernetes.io/service-name]: \"A\" is not a DNS-1123 label",
        ),
        (
            format!(
                "{head}addressType: IPv4\nendpoints: [{{addresses: [10.0.0.1]}}, {{addresses: [10.0.0.2, 10.0.0.x]}}]"
            ),
            "EndpointSlice default/kubia-abc: field endpoints[1].addresses[1]: \"10.0.0.x\" is not an IP address",
        ),
        (
            format!("{head}addressType: IPv4\nendpoints: [{{addresses: ['fd00::1']}}]"),
            "field endpoints[0].addresses[0]: fd00::1 is not an IPv4 address",
        ),
        (
            format!("{head}addressType: IPv6\nendpoints: [{{addresses: [10.0.0.1]}}]"),
            "field endpoints[0].addresses[0]: 10.0.0.1 is not an IPv6 address",
        ),
        (
            format!("{head}addressType: IPX"),
            "field addressType: \"IPX\"",
        ),
        (
            format!(
                "{head}addressType: IPv4\nendpoints: [{{addresses: [10.0.0.1], hostname: Kubia-0}}]"
            ),
            "field endpoints[0].hostname: \"Kubia-0\"",
        ),
        (
            format!("{head}addressType: IPv4\nports: [{{port: -1}}]"),
            "field ports[0].port: -1",
        ),
    ];
    for (yaml, want) in cases {
        let err = slice(&yaml).expect_err(&yaml).to_string();
        assert!(err.contains(want), "{yaml}: got {err:?}, want {want:?}");
    }
}
