//! Table tests for StatefulSet expansion, address assignment and slice synthesis.

use super::*;
use ipnet::IpNet;

fn sts(yaml: &str) -> Result<Vec<GeneratedPod>, ConvertError> {
    let obj: apps::StatefulSet = serde_yaml::from_str(yaml).expect("test yaml parses");
    statefulset_pods(&obj)
}

fn sel_svc(yaml: &str) -> Option<SelectorService> {
    let obj: core::Service = serde_yaml::from_str(yaml).expect("test yaml parses");
    let model = convert::service(&obj).expect("service converts");
    selector_service(&obj, &model).expect("selector converts")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test cidr")
}

const KUBIA: &str = r#"
metadata: {name: kubia}
spec:
  serviceName: kubia
  replicas: 3
  selector: {matchLabels: {app: kubia}}
  template:
    metadata: {labels: {app: kubia}}
    spec:
      containers:
      - name: kubia
        ports: [{name: HTTP, containerPort: 8080}]
"#;

#[test]
fn replicas_and_ordinals() {
    let base = "metadata: {name: w, namespace: ns}\nspec:\n  selector: {}\n  template: {}\n";
    let cases = [
        ("", vec!["w-0"]),
        ("  replicas: 0\n", vec![]),
        ("  replicas: 2\n", vec!["w-0", "w-1"]),
        (
            "  replicas: 2\n  ordinals: {start: 5}\n",
            vec!["w-5", "w-6"],
        ),
    ];
    for (extra, want) in cases {
        let pods = sts(&format!("{base}{extra}")).expect(extra);
        let names: Vec<_> = pods.iter().map(|g| g.pod.name.as_str()).collect();
        assert_eq!(names, want, "{extra}");
        assert!(
            pods.iter()
                .all(|g| g.pod.namespace == "ns" && g.pod.ready && g.pod.subdomain.is_none())
        );
    }
    let err = sts(&format!("{base}  replicas: -1\n"))
        .expect_err("negative")
        .to_string();
    assert_eq!(err, "StatefulSet ns/w: field spec.replicas: -1 is negative");
}

#[test]
fn generated_pod_facts() {
    let pods = sts(KUBIA).expect("converts");
    assert_eq!(pods.len(), 3);
    let p = &pods[2].pod;
    assert_eq!(
        (
            p.name.as_str(),
            p.hostname.as_deref(),
            p.subdomain.as_deref()
        ),
        ("kubia-2", Some("kubia-2"), Some("kubia"))
    );
    assert_eq!(p.labels.get("app").map(String::as_str), Some("kubia"));
    assert_eq!(
        p.ports,
        vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080
        }]
    );
    assert_eq!(pods[2].ordinal, 2);
}

#[test]
fn address_assignment() {
    let gen_pods = |ns: &str, name: &str, n: u32| -> Vec<GeneratedPod> {
        let yaml = format!(
            "metadata: {{name: {name}, namespace: {ns}}}\nspec: {{replicas: {n}, selector: {{}}, template: {{}}}}"
        );
        sts(&yaml).expect("converts")
    };
    // Out of order on purpose: sorting by (namespace, name, ordinal) decides the numbering.
    let mut generated = gen_pods("default", "web", 2);
    generated.extend(gen_pods("default", "db", 2));
    generated.extend(gen_pods("aaa", "zz", 1));
    let explicit = PodFacts {
        namespace: "default".into(),
        name: "db-1".into(),
        addresses: vec![ip("10.244.0.4")],
        ready: false,
        ..PodFacts::default()
    };
    let cidrs = [net("10.244.0.0/16"), net("fd00:10:244::/64")];
    let pods = expand(vec![explicit], generated, &cidrs, [ip("10.244.0.6")]).expect("expands");
    let got: Vec<_> = pods
        .iter()
        .map(|p| (p.name.as_str(), p.addresses.clone(), p.ready))
        .collect();
    let want = vec![
        ("db-1", vec![ip("10.244.0.4")], false),
        ("zz-0", vec![ip("10.244.0.2"), ip("fd00:10:244::2")], true),
        ("db-0", vec![ip("10.244.0.3"), ip("fd00:10:244::3")], true),
        ("web-0", vec![ip("10.244.0.5"), ip("fd00:10:244::4")], true),
        ("web-1", vec![ip("10.244.0.7"), ip("fd00:10:244::5")], true),
    ];
    assert_eq!(got, want);
}

#[test]
fn address_exhaustion_and_no_cidr() {
    // A /29 has offsets 2..=6 free (0 network, 1 gateway, 7 broadcast): five pods fit, not six.
    let five =
        sts("metadata: {name: a}\nspec: {replicas: 5, selector: {}, template: {}}").expect("ok");
    assert_eq!(
        expand(vec![], five, &[net("10.0.0.0/29")], []).map(|p| p.len()),
        Ok(5)
    );
    let six =
        sts("metadata: {name: a}\nspec: {replicas: 6, selector: {}, template: {}}").expect("ok");
    let err = expand(vec![], six.clone(), &[net("10.0.0.0/29")], []).expect_err("full");
    assert_eq!(
        err.to_string(),
        "StatefulSet default/a: pod CIDR 10.0.0.0/29 has no address left for pod a-5"
    );
    let err = expand(vec![], six, &[], []).expect_err("no cidr");
    assert!(matches!(err, ExpandError::NoPodCidr { .. }), "{err}");
    assert_eq!(expand(vec![], vec![], &[], []), Ok(vec![]));
}

#[test]
fn explicit_pod() {
    let yaml = r#"
metadata: {name: kubia-1, namespace: ns, labels: {app: kubia}}
spec:
  hostname: kubia-1
  subdomain: kubia
  containers: [{name: c, ports: [{name: http, containerPort: 80}, {containerPort: 81}]}]
status:
  podIP: 10.1.1.1
  podIPs: [{ip: 10.1.1.1}, {ip: 'fd00::1'}]
  conditions: [{type: PodScheduled, status: 'True'}, {type: Ready, status: 'False'}]
"#;
    let p = pod(&serde_yaml::from_str(yaml).expect("parses")).expect("converts");
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("ns", "kubia-1"));
    assert_eq!(p.addresses, vec![ip("10.1.1.1"), ip("fd00::1")]);
    assert!(!p.ready);
    assert_eq!(p.ports.len(), 1);
    let cases = [
        ("metadata: {name: p}\nspec: {containers: []}", vec![], true),
        (
            "metadata: {name: p}\nstatus: {podIP: 10.0.0.9}",
            vec![ip("10.0.0.9")],
            true,
        ),
        (
            "metadata: {name: p}\nstatus: {conditions: [{type: Ready, status: 'True'}]}",
            vec![],
            true,
        ),
    ];
    for (yaml, addresses, ready) in cases {
        let p = pod(&serde_yaml::from_str(yaml).expect("parses")).expect(yaml);
        assert_eq!((p.addresses, p.ready), (addresses, ready), "{yaml}");
    }
    let bad = "metadata: {name: p}\nstatus: {podIPs: [{ip: 10.0.0.x}]}";
    let err = pod(&serde_yaml::from_str(bad).expect("parses"))
        .expect_err("bad ip")
        .to_string();
    assert_eq!(
        err,
        "Pod default/p: field status.podIPs[0].ip: \"10.0.0.x\" is not an IP address"
    );
}

fn facts(
    name: &str,
    labels: &[(&str, &str)],
    subdomain: Option<&str>,
    ready: bool,
    addrs: &[&str],
) -> PodFacts {
    PodFacts {
        namespace: "default".into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        hostname: Some(name.into()),
        subdomain: subdomain.map(Into::into),
        addresses: addrs.iter().map(|a| ip(a)).collect(),
        ready,
        ports: vec![NamedPort {
            name: "web".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

#[test]
fn selector_service_rules() {
    assert!(sel_svc("metadata: {name: a}\nspec: {clusterIP: None}").is_none());
    assert!(sel_svc("metadata: {name: a}\nspec: {selector: {}}").is_none());
    assert!(
        sel_svc(
            "metadata: {name: a}\nspec: {type: ExternalName, externalName: x.y, selector: {a: b}}"
        )
        .is_none()
    );
    let s = sel_svc("metadata: {name: a}\nspec:\n  selector: {app: a}\n  ports: [{port: 80, targetPort: WEB}, {port: 81, targetPort: 9}, {port: 82}]")
        .expect("has selector");
    let targets: Vec<_> = s.ports.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(
        targets,
        vec![
            TargetPort::Named("web".into()),
            TargetPort::Number(9),
            TargetPort::Number(82)
        ]
    );
    assert!(
        s.matches(
            &[
                ("app".to_string(), "a".to_string()),
                ("x".into(), "y".into())
            ]
            .into()
        )
    );
    assert!(!s.matches(&[("app".to_string(), "b".to_string())].into()));
    assert!(!s.matches(&BTreeMap::new()));
}

/// (name, family, port numbers, (pod name, has hostname, ready) per endpoint) of each slice.
type SliceSummary<'a> = (&'a str, AddressFamily, Vec<u16>, Vec<(String, bool, bool)>);

fn summarize(slices: &[EndpointSlice]) -> Vec<SliceSummary<'_>> {
    slices
        .iter()
        .map(|s| {
            let ports: Vec<_> = s.ports.iter().map(|p| p.port).collect();
            let eps: Vec<_> = s
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.pod_name.clone().unwrap_or_default(),
                        e.hostname.is_some(),
                        e.ready,
                    )
                })
                .collect();
            (s.name.as_str(), s.family, ports, eps)
        })
        .collect()
}

#[test]
fn synthesized_slices() {
    let svc = sel_svc("metadata: {name: kubia}\nspec:\n  clusterIP: None\n  selector: {app: kubia}\n  ports: [{name: http, port: 80, targetPort: web}, {name: raw, port: 81}]")
        .expect("has selector");
    let mut other_ns = facts(
        "kubia-9",
        &[("app", "kubia")],
        Some("kubia"),
        true,
        &["10.0.0.9"],
    );
    other_ns.namespace = "elsewhere".into();
    let mut portless = facts(
        "kubia-3",
        &[("app", "kubia")],
        Some("kubia"),
        true,
        &["10.0.0.4"],
    );
    portless.ports.clear();
    let pods = vec![
        facts(
            "kubia-0",
            &[("app", "kubia")],
            Some("kubia"),
            true,
            &["10.0.0.1", "fd00::1"],
        ),
        facts(
            "kubia-1",
            &[("app", "kubia"), ("x", "y")],
            Some("other"),
            false,
            &["10.0.0.2"],
        ),
        facts("kubia-2", &[("app", "kubia")], Some("kubia"), true, &[]),
        facts(
            "web-0",
            &[("app", "web")],
            Some("kubia"),
            true,
            &["10.0.0.3"],
        ),
        other_ns,
        portless,
    ];
    let slices = synthesize(&svc, &pods);
    let summary = summarize(&slices);
    let want = vec![
        (
            "kubia-ipv4",
            AddressFamily::Ipv4,
            vec![8080, 81],
            vec![
                ("kubia-0".to_string(), true, true),
                ("kubia-1".to_string(), false, false),
            ],
        ),
        (
            "kubia-ipv4-1",
            AddressFamily::Ipv4,
            vec![81],
            vec![("kubia-3".to_string(), true, true)],
        ),
        (
            "kubia-ipv6",
            AddressFamily::Ipv6,
            vec![8080, 81],
            vec![("kubia-0".to_string(), true, true)],
        ),
    ];
    assert_eq!(summary, want);
    assert!(
        slices
            .iter()
            .all(|s| s.service == ServiceKey::new("default", "kubia"))
    );
    assert_eq!(slices[2].endpoints[0].addresses, vec![ip("fd00::1")]);
}

#[test]
fn publish_not_ready_addresses() {
    let svc = sel_svc("metadata: {name: db}\nspec: {clusterIP: None, publishNotReadyAddresses: true, selector: {app: db}}")
        .expect("has selector");
    let pods = [facts(
        "db-0",
        &[("app", "db")],
        Some("db"),
        false,
        &["10.0.0.1"],
    )];
    let slices = synthesize(&svc, &pods);
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints[0].ready);
    assert!(slices[0].ports.is_empty());
}

#[test]
fn absurd_replica_counts_are_an_error_naming_the_field() {
    let sts: apps::StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "huge", "namespace": "default"},
        "spec": {"serviceName": "huge", "replicas": 2_000_000_000,
                 "selector": {"matchLabels": {"app": "huge"}},
                 "template": {"metadata": {"labels": {"app": "huge"}}}}
    }))
    .unwrap();
    let error = statefulset_pods(&sts).unwrap_err().to_string();
    assert!(
        error.contains("spec.replicas") && error.contains("100000"),
        "{error}"
    );
}
