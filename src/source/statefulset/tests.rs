//! Table tests for workload expansion (StatefulSet, ReplicaSet, Deployment, Pod), address
//! assignment and slice synthesis.

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
    assert_eq!(pods[2].index, 2);
}

fn gen_pods(ns: &str, name: &str, n: u32) -> Vec<GeneratedPod> {
    let yaml = format!(
        "metadata: {{name: {name}, namespace: {ns}}}\nspec: {{replicas: {n}, selector: {{}}, template: {{}}}}"
    );
    sts(&yaml).expect("converts")
}

/// (namespace/name, addresses) of every pod, sorted.
fn addresses(pods: &[PodFacts]) -> BTreeMap<String, Vec<IpAddr>> {
    pods.iter()
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.addresses.clone()))
        .collect()
}

#[test]
fn address_assignment() {
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
    let reserved = ip("10.244.0.6");
    let pods = expand(vec![explicit], generated.clone(), &cidrs, [reserved]).expect("expands");
    let names: Vec<_> = pods.iter().map(|p| (p.name.as_str(), p.ready)).collect();
    assert_eq!(
        names,
        vec![
            ("db-1", false),
            ("zz-0", true),
            ("db-0", true),
            ("web-0", true),
            ("web-1", true)
        ],
        "the explicit pod first, then claims by (index, namespace, name)"
    );
    assert_eq!(pods[0].addresses, vec![ip("10.244.0.4")]);
    let mut seen = std::collections::HashSet::new();
    for p in &pods[1..] {
        assert_eq!(p.addresses.len(), 2, "dual-stack: {}", p.name);
        assert!(cidrs[0].contains(&p.addresses[0]) && cidrs[1].contains(&p.addresses[1]));
        for a in &p.addresses {
            assert!(seen.insert(*a), "{a} handed out twice");
            assert!(
                ![
                    ip("10.244.0.0"),
                    ip("10.244.0.1"),
                    ip("10.244.0.4"),
                    reserved
                ]
                .contains(a)
            );
        }
    }
    // A pure function of its inputs, whatever their order.
    let mut reversed = generated.clone();
    reversed.reverse();
    let again = expand(vec![pods[0].clone()], reversed, &cidrs, [reserved]).expect("expands");
    assert_eq!(addresses(&again), addresses(&pods));
    // An explicit Pod without an address takes the place, and the address, of the generated
    // pod it replaces.
    let bare = PodFacts {
        namespace: "default".into(),
        name: "web-1".into(),
        ready: false,
        ..PodFacts::default()
    };
    let replaced = expand(vec![bare], generated, &cidrs, [reserved]).expect("expands");
    let web1 = replaced.iter().find(|p| p.name == "web-1").expect("web-1");
    assert!(!web1.ready);
    assert_eq!(
        addresses(&replaced)["default/web-1"],
        addresses(&pods)["default/web-1"]
    );
}

#[test]
fn a_pod_keeps_its_address_when_other_workloads_change() {
    let cidrs = [net("10.244.0.0/16")];
    let before = expand(
        vec![],
        [gen_pods("default", "db", 3), gen_pods("default", "web", 3)].concat(),
        &cidrs,
        [],
    )
    .expect("expands");
    // Scale db (sorted before web) to 4 and add a workload and a reserved address elsewhere.
    let after = expand(
        vec![],
        [
            gen_pods("default", "db", 4),
            gen_pods("default", "web", 3),
            gen_pods("aaa", "new", 5),
        ]
        .concat(),
        &cidrs,
        [ip("10.244.200.7")],
    )
    .expect("expands");
    let (before, after) = (addresses(&before), addresses(&after));
    for (pod, address) in &before {
        assert_eq!(after.get(pod), Some(address), "{pod} moved");
    }
    assert!(
        !before.values().any(|a| a[0] == ip("10.244.0.2")),
        "addresses are not handed out in order: {before:?}"
    );
}

#[test]
fn colliding_pods_resolve_by_claim_order() {
    // A /28 has 13 usable addresses: collisions are certain, and still scaling one workload up
    // only places its newcomers; the pods of lower index keep their addresses.
    let cidrs = [net("10.0.0.0/28")];
    let names = ["a", "b", "c", "d", "e", "f"];
    let small: Vec<_> = names.iter().flat_map(|n| gen_pods("ns", n, 1)).collect();
    let before = addresses(&expand(vec![], small.clone(), &cidrs, []).expect("expands"));
    let mut scaled: Vec<_> = names
        .iter()
        .skip(1)
        .flat_map(|n| gen_pods("ns", n, 1))
        .collect();
    scaled.extend(gen_pods("ns", "a", 7));
    let after = addresses(&expand(vec![], scaled, &cidrs, []).expect("expands"));
    for (pod, address) in &before {
        assert_eq!(after.get(pod), Some(address), "{pod} moved");
    }
    assert_eq!(after.len(), 12);
}

#[test]
fn address_exhaustion_and_no_cidr() {
    // A /29 has offsets 2..=6 free (0 network, 1 gateway, 7 broadcast): five pods fit, not six.
    let five =
        sts("metadata: {name: a}\nspec: {replicas: 5, selector: {}, template: {}}").expect("ok");
    let pods = expand(vec![], five, &[net("10.0.0.0/29")], []).expect("five fit");
    let mut got: Vec<_> = pods.iter().map(|p| p.addresses[0]).collect();
    got.sort();
    let want: Vec<_> = (2..=6).map(|i| ip(&format!("10.0.0.{i}"))).collect();
    assert_eq!(got, want);
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
    let bare = PodFacts {
        name: "lonely".into(),
        namespace: "default".into(),
        ..PodFacts::default()
    };
    let err = expand(vec![bare], vec![], &[], []).expect_err("no cidr for a bare pod");
    assert_eq!(
        err.to_string(),
        "Pod default/lonely: no pod CIDR is configured to give pod lonely an address"
    );
}

fn replica_set(yaml: &str) -> Vec<GeneratedPod> {
    let obj: apps::ReplicaSet = serde_yaml::from_str(yaml).expect("test yaml parses");
    replica_set_pods(&obj).expect("converts")
}

fn deployment(yaml: &str) -> Vec<GeneratedPod> {
    let obj: apps::Deployment = serde_yaml::from_str(yaml).expect("test yaml parses");
    deployment_pods(&obj).expect("converts")
}

fn is_suffix(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| names::ALPHABET.contains(&b))
}

#[test]
fn replica_set_and_deployment_pods() {
    let rs = "metadata: {name: myweb-rs, namespace: ns}\nspec:\n  replicas: REPLICAS\n  selector: {matchLabels: {app: myweb}}\n  template:\n    metadata: {labels: {app: myweb}}\n    spec: {containers: [{name: web, ports: [{name: http, containerPort: 80}]}]}\n";
    let three = replica_set(&rs.replace("REPLICAS", "3"));
    assert_eq!(three.len(), 3);
    for (i, g) in three.iter().enumerate() {
        let suffix = g
            .pod
            .name
            .strip_prefix("myweb-rs-")
            .expect("named after the ReplicaSet");
        assert!(is_suffix(suffix, 5), "{}", g.pod.name);
        assert_eq!((g.index, g.owner.kind), (i as u32, "ReplicaSet"));
        assert_eq!(
            (g.pod.hostname.as_deref(), g.pod.subdomain.as_deref()),
            (None, None)
        );
        assert_eq!(g.pod.labels.get("app").map(String::as_str), Some("myweb"));
        assert_eq!(g.pod.ports.len(), 1);
        assert!(g.pod.ready && g.pod.namespace == "ns");
    }
    let names = |pods: &[GeneratedPod]| pods.iter().map(|g| g.pod.name.clone()).collect::<Vec<_>>();
    let four = replica_set(&rs.replace("REPLICAS", "4"));
    assert_eq!(names(&four[..3]), names(&three), "scaling keeps the names");
    assert_eq!(
        replica_set(&rs.replace("  replicas: REPLICAS\n", "")).len(),
        1
    );

    let deploy = "metadata: {name: api}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec: {hostname: h, subdomain: api, containers: []}\n";
    let pods = deployment(deploy);
    assert_eq!(pods.len(), 2);
    let parts: Vec<&str> = pods[0].pod.name.split('-').collect();
    assert_eq!(parts.len(), 3, "{}", pods[0].pod.name);
    assert_eq!(parts[0], "api");
    assert!(
        is_suffix(parts[1], 10) && is_suffix(parts[2], 5),
        "{}",
        pods[0].pod.name
    );
    assert_eq!(
        pods[0]
            .pod
            .labels
            .get("pod-template-hash")
            .map(String::as_str),
        Some(parts[1])
    );
    assert!(pods[1].pod.name.starts_with(&format!("api-{}-", parts[1])));
    assert_ne!(pods[0].pod.name, pods[1].pod.name);
    assert_eq!(
        (
            pods[0].pod.hostname.as_deref(),
            pods[0].pod.subdomain.as_deref()
        ),
        (Some("h"), Some("api")),
        "the template's hostname and subdomain"
    );
    assert_eq!(
        names(&deployment(deploy)),
        names(&pods),
        "the same object, the same names"
    );

    let long = format!("{}.{}", "x".repeat(50), "y".repeat(20));
    let pods = replica_set(&format!(
        "metadata: {{name: {long}}}\nspec: {{selector: {{}}, template: {{}}}}"
    ));
    assert_eq!(pods[0].pod.name.len(), 63, "cut as generateName is");
    assert!(pods[0].pod.name.starts_with(&long[..58]));
}

#[test]
fn workloads_represented_by_their_replica_sets_or_pods_generate_none() {
    let mut w = Workloads::default();
    let deploy: apps::Deployment = serde_yaml::from_str(
        "metadata: {name: api}\nspec: {replicas: 3, selector: {}, template: {metadata: {labels: {app: api}}}}",
    )
    .expect("parses");
    w.add_deployment(&deploy).expect("ok");
    let rs: apps::ReplicaSet = serde_yaml::from_str(
        "metadata:\n  name: api-6f8d9c7b5\n  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: api, uid: u, controller: true}]\nspec: {replicas: 2, selector: {}, template: {metadata: {labels: {app: api}}}}",
    )
    .expect("parses");
    w.add_replica_set(&rs).expect("ok");
    let pods = w.expand(&[net("10.0.0.0/16")], []).expect("expands");
    let names: Vec<_> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names.len(),
        2,
        "the ReplicaSet stands for its Deployment: {names:?}"
    );
    assert!(
        names.iter().all(|n| n.starts_with("api-6f8d9c7b5-")),
        "{names:?}"
    );

    let mut w = Workloads::default();
    w.add_replica_set(&rs).expect("ok");
    let pod: core::Pod = serde_yaml::from_str(
        "metadata:\n  name: api-6f8d9c7b5-k2p9x\n  labels: {app: api}\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-6f8d9c7b5, uid: u, controller: true}]\nstatus: {podIP: 10.0.9.9}",
    )
    .expect("parses");
    w.add_pod(&pod).expect("ok");
    let pods = w.expand(&[net("10.0.0.0/16")], []).expect("expands");
    assert_eq!(
        addresses(&pods).into_iter().collect::<Vec<_>>(),
        vec![(
            "default/api-6f8d9c7b5-k2p9x".to_string(),
            vec![ip("10.0.9.9")]
        )]
    );
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
