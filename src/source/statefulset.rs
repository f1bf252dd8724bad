//! Expands a static file's workloads the way the Kubernetes controllers would (S2).
//!
//! Workloads become pods, and each Service with a selector then gets the EndpointSlices the
//! EndpointSlice controller would write for the pods (explicit Pods and generated ones) its
//! selector matches:
//!
//! - an apps/v1 StatefulSet becomes pods `<name>-<start>` … `<name>-<start+replicas-1>`, whose
//!   hostname is the pod name and subdomain `spec.serviceName`, as its controller sets them;
//! - an apps/v1 ReplicaSet becomes `spec.replicas` pods `<name>-<5 characters>`, and an apps/v1
//!   Deployment `spec.replicas` pods `<name>-<pod-template-hash>-<5 characters>` (labelled
//!   `pod-template-hash`, as the Deployment controller does); their characters are derived
//!   from the object (see `names`), so a reload gives the same names. Their hostname and
//!   subdomain are the template's `spec.hostname` and `spec.subdomain`, so they have a DNS
//!   hostname only when the template sets both, as in Kubernetes;
//! - a v1 Pod is taken as given; one without `status.podIP(s)` gets an address like a
//!   generated pod;
//! - `spec.replicas` defaults to 1 everywhere.
//!
//! What `kubectl get -o yaml` prints holds the same pods several times over (a Deployment, its
//! ReplicaSets, their Pods), so the lowest level present wins: a ReplicaSet or Deployment that
//! another object of the file names as its controller (`metadata.ownerReferences` with
//! `controller: true`) generates no pods, its ReplicaSets or Pods stand for it; an explicit Pod
//! replaces the generated pod of the same name (so a file can mark one StatefulSet pod not
//! ready).
//!
//! Addresses (see `address`) are derived from each pod's identity, so a pod keeps its address
//! across reloads whatever else changes in the file, unless another pod claims it first.
//!
//! Invariants:
//! - a slice endpoint has a hostname only when the pod's subdomain names the Service and the
//!   pod has a hostname, and `ready` already folds in `publishNotReadyAddresses`;
//! - one synthesized slice per (IP family, resolved port list); ExternalName Services and
//!   Services without a selector get none;
//! - every workload kind goes through [`template_pods`]: one place for replicas, labels, ports
//!   and the name checks.

mod address;
mod names;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

pub use address::{ExpandError, expand};
use ipnet::IpNet;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::convert::{self, ConvertError, ObjectRef, Problem};
use crate::model::{
    AddressFamily, Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey, ServiceKind,
};

/// A pod, reduced to what the EndpointSlice controller looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// The namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// `metadata.labels`, matched against Service selectors.
    pub labels: BTreeMap<String, String>,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// `status.podIPs` (at most one per family in a real cluster).
    pub addresses: Vec<IpAddr>,
    /// The `Ready` condition (absent: ready).
    pub ready: bool,
    /// The containers' named ports, for resolving a Service's named `targetPort`.
    pub ports: Vec<NamedPort>,
}

/// A named container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name, lowercase.
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub port: u16,
}

/// A pod a workload controller would create, before it has an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedPod {
    /// The workload that owns it (a StatefulSet, ReplicaSet or Deployment; the Pod itself for
    /// an explicit Pod without an address).
    pub owner: ObjectRef,
    /// Its StatefulSet ordinal, or its replica index (0 for an explicit Pod).
    pub index: u32,
    /// The pod itself (no addresses yet).
    pub pod: PodFacts,
}

/// Converts an explicit core/v1 Pod.
pub fn pod(p: &core::Pod) -> Result<PodFacts, ConvertError> {
    let obj = ObjectRef::new("Pod", &p.metadata);
    let namespace = convert::check_label(&obj, "metadata.namespace", &obj.namespace)?;
    let name = convert::check_subdomain(&obj, "metadata.name", &obj.name)?;
    let mut facts = pod_spec_facts(&obj, p.spec.as_ref(), "spec")?;
    facts.namespace = namespace;
    facts.name = name;
    facts.labels = p.metadata.labels.clone().unwrap_or_default();
    facts.ready = true;
    if let Some(status) = &p.status {
        if let Some(ready) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
        {
            facts.ready = ready.status == "True";
        }
        match status.pod_ips.as_deref() {
            Some(ips) if !ips.is_empty() => {
                for (i, ip) in ips.iter().enumerate() {
                    let field = format!("status.podIPs[{i}].ip");
                    facts
                        .addresses
                        .push(convert::parse_ip(&obj, &field, &ip.ip)?);
                }
            }
            _ => {
                if let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) {
                    facts
                        .addresses
                        .push(convert::parse_ip(&obj, "status.podIP", ip)?);
                }
            }
        }
    }
    Ok(facts)
}

/// Hostname, subdomain and named container ports from a pod spec found at `path`.
fn pod_spec_facts(
    obj: &ObjectRef,
    spec: Option<&core::PodSpec>,
    path: &str,
) -> Result<PodFacts, ConvertError> {
    let mut facts = PodFacts::default();
    let Some(spec) = spec else { return Ok(facts) };
    if let Some(h) = spec.hostname.as_deref() {
        facts.hostname = Some(convert::check_label(obj, &format!("{path}.hostname"), h)?);
    }
    if let Some(s) = spec.subdomain.as_deref() {
        facts.subdomain = Some(convert::check_label(obj, &format!("{path}.subdomain"), s)?);
    }
    for (c, container) in spec.containers.iter().enumerate() {
        for (i, p) in container.ports.iter().flatten().enumerate() {
            let Some(name) = convert::port_name(p.name.as_deref()) else {
                continue;
            };
            let field = format!("{path}.containers[{c}].ports[{i}]");
            facts.ports.push(NamedPort {
                name,
                protocol: convert::protocol(
                    obj,
                    &format!("{field}.protocol"),
                    p.protocol.as_deref(),
                )?,
                port: convert::port_number(
                    obj,
                    &format!("{field}.containerPort"),
                    p.container_port,
                )?,
            });
        }
    }
    Ok(facts)
}

/// Most pods one workload in a cluster file may expand to: far above any real workload, and
/// low enough that a typo (`replicas: 2000000000`) is an error, not an exhausted memory.
pub const MAX_REPLICAS: usize = 100_000;

/// How a workload's controller names its pods.
#[derive(Clone, Debug)]
pub enum Naming {
    /// StatefulSet: `<name>-<ordinal>` from `start`; hostname = pod name, subdomain = the
    /// StatefulSet's `spec.serviceName`.
    Ordinal {
        /// The first ordinal (`spec.ordinals.start`).
        start: u32,
        /// `spec.serviceName`, when set.
        subdomain: Option<String>,
    },
    /// ReplicaSet and Deployment: `generateName: <prefix>-` (see `names`); hostname and
    /// subdomain as the template says.
    Generated {
        /// What the names start with (the ReplicaSet's name).
        prefix: String,
        /// Labels the controller adds to every pod (`pod-template-hash`).
        labels: BTreeMap<String, String>,
    },
}

/// The pods the workload `obj` makes of `template`, `replicas` times (absent: 1), without
/// addresses: the one rule for every workload kind.
pub fn template_pods(
    obj: &ObjectRef,
    replicas: Option<i32>,
    template: Option<&core::PodTemplateSpec>,
    naming: Naming,
) -> Result<Vec<GeneratedPod>, ConvertError> {
    let namespace = convert::check_label(obj, "metadata.namespace", &obj.namespace)?;
    let name = convert::check_subdomain(obj, "metadata.name", &obj.name)?;
    let replicas = non_negative(obj, "spec.replicas", replicas.unwrap_or(1))?;
    if replicas as usize > MAX_REPLICAS {
        let count = replicas as usize;
        let problem = Problem::TooMany {
            count,
            limit: MAX_REPLICAS,
        };
        return Err(obj.error("spec.replicas", problem));
    }
    let spec = template.and_then(|t| t.spec.as_ref());
    let facts = pod_spec_facts(obj, spec, "spec.template.spec")?;
    let mut labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template = PodFacts {
        namespace,
        labels: BTreeMap::new(),
        ready: true,
        ..facts
    };
    let pods = match naming {
        Naming::Ordinal { start, subdomain } => (start..start.saturating_add(replicas))
            .map(|ordinal| {
                let pod_name = format!("{name}-{ordinal}");
                if !convert::is_dns_label(&pod_name) {
                    return Err(obj.error("metadata.name", Problem::NotALabel(pod_name)));
                }
                let pod = PodFacts {
                    hostname: Some(pod_name.clone()),
                    name: pod_name,
                    subdomain: subdomain.clone(),
                    labels: labels.clone(),
                    ..template.clone()
                };
                Ok((ordinal, pod))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Naming::Generated {
            prefix,
            labels: extra,
        } => {
            labels.extend(extra);
            let names =
                names::generated_names(&template.namespace, obj.kind, &name, &prefix, replicas);
            (0..)
                .zip(names)
                .map(|(index, pod_name)| {
                    let pod = PodFacts {
                        name: pod_name,
                        labels: labels.clone(),
                        ..template.clone()
                    };
                    (index, pod)
                })
                .collect()
        }
    };
    Ok(pods
        .into_iter()
        .map(|(index, pod)| GeneratedPod {
            owner: obj.clone(),
            index,
            pod,
        })
        .collect())
}

/// The pods an apps/v1 StatefulSet would create, without addresses.
pub fn statefulset_pods(sts: &apps::StatefulSet) -> Result<Vec<GeneratedPod>, ConvertError> {
    let obj = ObjectRef::new("StatefulSet", &sts.metadata);
    let spec = &sts.spec;
    let start = non_negative(
        &obj,
        "spec.ordinals.start",
        spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
    )?;
    let subdomain = match spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(convert::check_label(&obj, "spec.serviceName", s)?),
        None => None,
    };
    let naming = Naming::Ordinal { start, subdomain };
    template_pods(&obj, spec.replicas, Some(&spec.template), naming)
}

/// The pods an apps/v1 ReplicaSet would create, without addresses.
pub fn replica_set_pods(rs: &apps::ReplicaSet) -> Result<Vec<GeneratedPod>, ConvertError> {
    let obj = ObjectRef::new("ReplicaSet", &rs.metadata);
    let spec = &rs.spec;
    let naming = Naming::Generated {
        prefix: obj.name.clone(),
        labels: BTreeMap::new(),
    };
    template_pods(&obj, spec.replicas, spec.template.as_ref(), naming)
}

/// The pods an apps/v1 Deployment would create (through its ReplicaSet
/// `<name>-<pod-template-hash>`), without addresses.
pub fn deployment_pods(deploy: &apps::Deployment) -> Result<Vec<GeneratedPod>, ConvertError> {
    let obj = ObjectRef::new("Deployment", &deploy.metadata);
    let spec = &deploy.spec;
    let hash = names::template_hash(&obj.namespace, &obj.name);
    let naming = Naming::Generated {
        prefix: format!("{}-{hash}", obj.name),
        labels: BTreeMap::from([("pod-template-hash".to_owned(), hash)]),
    };
    template_pods(&obj, spec.replicas, Some(&spec.template), naming)
}

/// The workload an object's `metadata.ownerReferences` names as its controller, when it is a
/// ReplicaSet or Deployment (the kinds whose pods cannot be matched by name).
pub fn controller_of(obj: &ObjectRef, meta: &ObjectMeta) -> Option<ObjectRef> {
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    let kind = match (owner.api_version.as_str(), owner.kind.as_str()) {
        ("apps/v1", "ReplicaSet") => "ReplicaSet",
        ("apps/v1", "Deployment") => "Deployment",
        _ => return None,
    };
    Some(ObjectRef {
        kind,
        namespace: obj.namespace.clone(),
        name: owner.name.clone(),
    })
}

/// A file's pods and workloads, collected object by object, then [`Workloads::expand`]ed.
#[derive(Debug, Default)]
pub struct Workloads {
    explicit: Vec<PodFacts>,
    generated: Vec<GeneratedPod>,
    /// The ReplicaSets and Deployments some object in the file names as its controller.
    controlled: HashSet<ObjectRef>,
}

impl Workloads {
    /// Adds an explicit core/v1 Pod.
    pub fn add_pod(&mut self, p: &core::Pod) -> Result<(), ConvertError> {
        self.explicit.push(pod(p)?);
        let obj = ObjectRef::new("Pod", &p.metadata);
        self.controlled.extend(controller_of(&obj, &p.metadata));
        Ok(())
    }

    /// Adds an apps/v1 StatefulSet.
    pub fn add_statefulset(&mut self, sts: &apps::StatefulSet) -> Result<(), ConvertError> {
        self.generated.extend(statefulset_pods(sts)?);
        Ok(())
    }

    /// Adds an apps/v1 ReplicaSet.
    pub fn add_replica_set(&mut self, rs: &apps::ReplicaSet) -> Result<(), ConvertError> {
        self.generated.extend(replica_set_pods(rs)?);
        let obj = ObjectRef::new("ReplicaSet", &rs.metadata);
        self.controlled.extend(controller_of(&obj, &rs.metadata));
        Ok(())
    }

    /// Adds an apps/v1 Deployment.
    pub fn add_deployment(&mut self, deploy: &apps::Deployment) -> Result<(), ConvertError> {
        self.generated.extend(deployment_pods(deploy)?);
        Ok(())
    }

    /// Every pod of the file with its addresses: workloads whose ReplicaSets or Pods are in the
    /// file generate none, then [`expand`] assigns addresses.
    pub fn expand(
        self,
        cidrs: &[IpNet],
        reserved: impl IntoIterator<Item = IpAddr>,
    ) -> Result<Vec<PodFacts>, ExpandError> {
        let Self {
            explicit,
            mut generated,
            controlled,
        } = self;
        generated.retain(|g| !controlled.contains(&g.owner));
        expand(explicit, generated, cidrs, reserved)
    }
}

fn non_negative(obj: &ObjectRef, field: &str, value: i32) -> Result<u32, ConvertError> {
    u32::try_from(value).map_err(|_| obj.error(field, Problem::Negative(i64::from(value))))
}

/// A Service port's `targetPort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A number.
    Number(u16),
    /// The name of a container port.
    Named(String),
}

/// What the EndpointSlice controller needs of a Service with a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorService {
    /// The Service.
    pub key: ServiceKey,
    /// `spec.selector` (never empty).
    pub selector: BTreeMap<String, String>,
    /// `spec.publishNotReadyAddresses`.
    pub publish_not_ready: bool,
    /// The Service's ports, each with its target.
    pub ports: Vec<(Port, TargetPort)>,
}

/// The selector facts of a Service already converted to `model`; `None` for an ExternalName
/// Service or one without a (non-empty) selector.
pub fn selector_service(
    svc: &core::Service,
    model: &Service,
) -> Result<Option<SelectorService>, ConvertError> {
    let Some(spec) = &svc.spec else {
        return Ok(None);
    };
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() || matches!(model.kind, ServiceKind::ExternalName(_)) {
        return Ok(None);
    }
    let obj = ObjectRef::new("Service", &svc.metadata);
    let mut ports = Vec::new();
    for (i, (p, port)) in spec.ports.iter().flatten().zip(&model.ports).enumerate() {
        let target = match &p.target_port {
            None => TargetPort::Number(port.port),
            Some(IntOrString::Int(n)) => TargetPort::Number(convert::port_number(
                &obj,
                &format!("spec.ports[{i}].targetPort"),
                *n,
            )?),
            Some(IntOrString::String(s)) => TargetPort::Named(s.to_ascii_lowercase()),
        };
        ports.push((port.clone(), target));
    }
    Ok(Some(SelectorService {
        key: model.key.clone(),
        selector,
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        ports,
    }))
}

impl SelectorService {
    /// Whether the selector matches these labels (every selector pair present).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The slice ports for one pod: named targets resolved against its container ports, and
    /// dropped when it has no such port.
    fn ports_for(&self, pod: &PodFacts) -> Vec<Port> {
        let resolve = |(port, target): &(Port, TargetPort)| {
            let number = match target {
                TargetPort::Number(n) => *n,
                TargetPort::Named(name) => {
                    pod.ports
                        .iter()
                        .find(|c| c.name == *name && c.protocol == port.protocol)?
                        .port
                }
            };
            Some(Port {
                port: number,
                ..port.clone()
            })
        };
        self.ports.iter().filter_map(resolve).collect()
    }
}

/// The EndpointSlices the controller would write for `svc`, given the file's pods.
pub fn synthesize(svc: &SelectorService, pods: &[PodFacts]) -> Vec<EndpointSlice> {
    let mut groups: BTreeMap<(AddressFamily, Vec<Port>), Vec<Endpoint>> = BTreeMap::new();
    let same_ns = pods.iter().filter(|p| p.namespace == svc.key.namespace);
    for pod in same_ns.filter(|p| svc.matches(&p.labels)) {
        let ports = svc.ports_for(pod);
        let hostname = match (&pod.hostname, &pod.subdomain) {
            (Some(h), Some(s)) if *s == svc.key.name => Some(h.clone()),
            _ => None,
        };
        for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
            // The controller takes the pod's first address of each family.
            let Some(ip) = pod
                .addresses
                .iter()
                .find(|ip| AddressFamily::of(ip) == family)
            else {
                continue;
            };
            groups
                .entry((family, ports.clone()))
                .or_default()
                .push(Endpoint {
                    addresses: vec![*ip],
                    ready: pod.ready || svc.publish_not_ready,
                    terminating: false,
                    hostname: hostname.clone(),
                    pod_name: Some(pod.name.clone()),
                });
        }
    }
    let mut seen: BTreeMap<AddressFamily, usize> = BTreeMap::new();
    let mut slices = Vec::with_capacity(groups.len());
    for ((family, ports), endpoints) in groups {
        let n = seen.entry(family).or_insert(0);
        let suffix = if family == AddressFamily::Ipv4 {
            "ipv4"
        } else {
            "ipv6"
        };
        let name = match *n {
            0 => format!("{}-{suffix}", svc.key.name),
            n => format!("{}-{suffix}-{n}", svc.key.name),
        };
        *n += 1;
        slices.push(EndpointSlice {
            name,
            service: svc.key.clone(),
            family,
            ports,
            endpoints,
        });
    }
    slices
}

#[cfg(test)]
mod tests;
