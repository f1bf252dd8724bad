//! The deployment manifests in `deploy/` agree with the config they ship: the ConfigMap's
//! `peerdns.toml` loads and validates, the Deployment and Service use its ports and paths, and
//! the ClusterRole grants no more than the watchers need. (Schema validation of the manifests
//! themselves is `deploy/validate.sh`.)

use std::collections::BTreeSet;
use std::net::SocketAddr;

use peerdns::config::{Config, LogFormat, SourceKind};
use serde_yaml::Value;

use crate::support::root;

/// Where the Deployment mounts the ConfigMap, and the config path its args name.
const CONFIG_DIR: &str = "/etc/peerdns";
const CONFIG_KEY: &str = "peerdns.toml";

/// One manifest of `deploy/` (a single YAML document).
fn manifest(name: &str) -> Value {
    let path = root().join("deploy").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {value:?}"))
}

fn number(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: expected a number, found {value:?}"))
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {value:?}"))
}

fn strings(value: &Value, what: &str) -> BTreeSet<String> {
    list(value, what)
        .iter()
        .map(|item| text(item, what).to_string())
        .collect()
}

/// The config the in-cluster Deployment runs with, parsed and validated.
fn shipped_config() -> Config {
    let map = manifest("configmap.yaml");
    let toml = text(&map["data"][CONFIG_KEY], "configmap.yaml data");
    let config = Config::parse(toml).unwrap_or_else(|e| panic!("configmap.yaml {CONFIG_KEY}: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("configmap.yaml {CONFIG_KEY}: {e}"));
    config
}

/// The one port every `dns.listen` address uses (the Service maps 53 to it).
fn dns_port(config: &Config) -> u16 {
    let ports: BTreeSet<u16> = config.dns.listen.iter().map(SocketAddr::port).collect();
    assert_eq!(ports.len(), 1, "dns.listen uses one port: {ports:?}");
    ports.into_iter().next().unwrap()
}

#[test]
fn config_map_holds_a_valid_kubernetes_config() {
    let config = shipped_config();
    assert_eq!(config.source.kind, SourceKind::Kubernetes);
    let everywhere: SocketAddr = "0.0.0.0:5353".parse().unwrap();
    assert_eq!(config.dns.listen, vec![everywhere]);
    assert_eq!(
        config.admin.listen,
        "0.0.0.0:9153".parse::<SocketAddr>().unwrap()
    );
    assert!(
        config.admin.lame_duck_ms > 0,
        "a lame duck delay for rolling updates"
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(
        config.source.kubernetes.kubeconfig.is_none(),
        "in a pod the service account is used"
    );
}

/// The container's (containerPort, protocol) pairs.
fn container_ports(container: &Value) -> BTreeSet<(u64, String)> {
    list(&container["ports"], "container ports")
        .iter()
        .map(|port| {
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_string();
            (number(&port["containerPort"], "containerPort"), protocol)
        })
        .collect()
}

fn assert_probe(probe: &Value, path: &str, port: u16, what: &str) {
    assert_eq!(text(&probe["httpGet"]["path"], what), path, "{what} path");
    assert_eq!(
        number(&probe["httpGet"]["port"], what),
        u64::from(port),
        "{what} port"
    );
}

#[test]
fn deployment_and_service_agree_with_the_config() {
    let config = shipped_config();
    let dns = u64::from(dns_port(&config));
    let admin = config.admin.listen.port();
    let config_map = manifest("configmap.yaml");
    let deployment = manifest("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = list(&pod["containers"], "deployment containers");
    assert_eq!(containers.len(), 1, "one container");
    let container = &containers[0];

    let args: Vec<&str> = list(&container["args"], "args")
        .iter()
        .map(|arg| text(arg, "args"))
        .collect();
    let config_path = format!("{CONFIG_DIR}/{CONFIG_KEY}");
    assert_eq!(args, ["--config", config_path.as_str()]);
    let mount = list(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|mount| mount["mountPath"].as_str() == Some(CONFIG_DIR))
        .unwrap_or_else(|| panic!("a volume mounted at {CONFIG_DIR}"));
    let volume = list(&pod["volumes"], "volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);

    let expected: BTreeSet<(u64, String)> = [
        (dns, "UDP".to_string()),
        (dns, "TCP".to_string()),
        (u64::from(admin), "TCP".to_string()),
    ]
    .into();
    assert_eq!(container_ports(container), expected);
    assert_probe(
        &container["readinessProbe"],
        "/readyz",
        admin,
        "readinessProbe",
    );
    assert_probe(
        &container["livenessProbe"],
        "/livez",
        admin,
        "livenessProbe",
    );
    let grace = number(
        &pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    assert!(
        grace * 1000 > config.admin.lame_duck_ms,
        "the grace period ({grace} s) outlasts the lame duck ({} ms)",
        config.admin.lame_duck_ms
    );

    let service = manifest("service.yaml");
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service selects the Deployment's pods"
    );
    let ports = list(&service["spec"]["ports"], "service ports");
    for protocol in ["UDP", "TCP"] {
        let port = ports
            .iter()
            .find(|port| port["port"].as_u64() == Some(53) && port["protocol"] == protocol)
            .unwrap_or_else(|| panic!("service port 53/{protocol}"));
        assert_eq!(
            number(&port["targetPort"], "targetPort"),
            dns,
            "53/{protocol} target"
        );
    }
    let metrics = ports
        .iter()
        .find(|port| port["name"] == "metrics")
        .expect("a service port named metrics");
    assert_eq!(
        number(&metrics["targetPort"], "metrics targetPort"),
        u64::from(admin)
    );
}

#[test]
fn cluster_role_grants_only_list_and_watch_on_services_and_endpointslices() {
    let role = manifest("clusterrole.yaml");
    let mut granted = BTreeSet::new();
    for rule in list(&role["rules"], "clusterrole rules") {
        let keys: BTreeSet<&str> = rule
            .as_mapping()
            .expect("a rule is a mapping")
            .keys()
            .map(|key| text(key, "rule key"))
            .collect();
        assert_eq!(
            keys,
            ["apiGroups", "resources", "verbs"].into(),
            "no resourceNames or nonResourceURLs"
        );
        let verbs = strings(&rule["verbs"], "verbs");
        assert_eq!(verbs, ["list".to_string(), "watch".to_string()].into());
        for group in strings(&rule["apiGroups"], "apiGroups") {
            for resource in strings(&rule["resources"], "resources") {
                granted.insert((group.clone(), resource));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        (String::new(), "services".to_string()),
        ("discovery.k8s.io".to_string(), "endpointslices".to_string()),
    ]
    .into();
    assert_eq!(granted, expected);

    let binding = manifest("clusterrolebinding.yaml");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let account = manifest("serviceaccount.yaml");
    let deployment = manifest("deployment.yaml");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
    let subjects = list(&binding["subjects"], "binding subjects");
    assert!(
        subjects
            .iter()
            .any(|subject| subject["kind"] == "ServiceAccount"
                && subject["name"] == account["metadata"]["name"]
                && subject["namespace"] == account["metadata"]["namespace"]),
        "the binding names the peerdns ServiceAccount"
    );
}

/// The config built into the image (deploy/image/build.sh and deploy/Dockerfile): it loads,
/// serves the demo cluster it is shipped with, and listens on every address with the ports the
/// image exposes (a `docker run -p` or a Pod's port reaches it). CI runs the image itself
/// (deploy/image/check.sh).
#[test]
fn the_image_config_listens_on_every_address() {
    let path = root().join("deploy/image/peerdns.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    config
        .validate()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let everywhere: SocketAddr = "0.0.0.0:5353".parse().unwrap();
    assert_eq!(config.dns.listen, vec![everywhere]);
    assert_eq!(config.admin.listen.ip(), everywhere.ip());
    assert_eq!(config.source.kind, SourceKind::File);
    assert!(config.source.file.ends_with("cluster.yaml"));
    let build = std::fs::read_to_string(root().join("deploy/image/build.sh")).unwrap();
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for (what, text) in [("build.sh", &build), ("Dockerfile", &dockerfile)] {
        assert!(
            text.contains("deploy/image/peerdns.toml"),
            "{what} ships the image config"
        );
        assert!(
            text.contains("5353/udp") && text.contains("9153"),
            "{what} exposes the ports"
        );
    }
    assert!(build.contains("--config.user 65532:65532"));
    assert!(
        dockerfile.contains("USER nonroot"),
        "distroless nonroot is 65532"
    );
}
