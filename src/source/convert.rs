//! Converts Kubernetes objects (k8s-openapi `Service`, `EndpointSlice`) into the model types.
//!
//! This is the edge of the crate: the object is read once and dropped, and only what DNS needs
//! survives (`crate::model`). The helpers here (name checks, ports, IPs) are shared with
//! `statefulset`, which expands Pods and StatefulSets.
//!
//! Invariants:
//! - namespace, Service name and hostname are DNS-1123 labels, and slice and pod names DNS-1123
//!   subdomains; anything else (uppercase included, as Kubernetes rejects it) is an error, and
//!   the error names the rule broken ([`LabelRule`]: a character, a `-` at an end, a label
//!   longer than 63 characters, a subdomain longer than 253);
//! - a Service's and an EndpointSlice's port names are DNS-1123 labels once lowercased (as
//!   Kubernetes validates them, except that any case is accepted, as for an ExternalName): a
//!   name such as `web_bad` would be served at `_web_bad._tcp` and is an error instead;
//! - an ExternalName target is a DNS-1123 subdomain once one trailing dot is dropped and it is
//!   lowercased (the model's target has no trailing dot);
//! - an object with no namespace is in `default`, as `kubectl apply` would put it;
//! - every error names the object (`Service default/kubia`) and the field path
//!   (`spec.ports[0].port`);
//! - an FQDN EndpointSlice is skipped with a warning, never an error: DNS has no use for it.

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::{
    AddressFamily, Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey, ServiceKind,
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The namespace of an object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Names an object in error messages, as `Service default/kubia`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The object's kind (`Service`, `EndpointSlice`, `Pod`, `StatefulSet`).
    pub kind: &'static str,
    /// Its namespace (`default` when the object names none).
    pub namespace: String,
    /// Its name, as written (possibly invalid).
    pub name: String,
}

impl ObjectRef {
    /// The reference for an object of `kind` with this metadata.
    pub fn new(kind: &'static str, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: namespace_of(meta).to_owned(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// An error about `field` of this object.
    pub fn error(&self, field: impl Into<String>, problem: Problem) -> ConvertError {
        ConvertError {
            object: Box::new(self.clone()),
            field: field.into(),
            problem,
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A field of an object that cannot be converted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: field {field}: {problem}")]
pub struct ConvertError {
    /// The object at fault (boxed to keep `Result`s small).
    pub object: Box<ObjectRef>,
    /// The field path inside it, as `spec.ports[0].port`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required field is absent or empty.
    #[error("missing")]
    Missing,
    /// Not a textual IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address")]
    NotAnIp(String),
    /// An address of the other family than the slice's `addressType`.
    #[error("{address} is not an {family} address")]
    WrongFamily {
        /// The address.
        address: IpAddr,
        /// The family the slice declares (`IPv4` or `IPv6`).
        family: &'static str,
    },
    /// Not a DNS-1123 label; the message names the rule broken.
    #[error("{0:?} is not a DNS-1123 label: {reason}", reason = label_reason(.0))]
    NotALabel(String),
    /// Not a DNS-1123 subdomain; the message names the rule broken.
    #[error("{0:?} is not a DNS-1123 subdomain: {reason}", reason = subdomain_reason(.0))]
    NotASubdomain(String),
    /// A port name that is not a DNS-1123 label once lowercased (`Web_Bad`).
    #[error("{0:?} is not a port name: {reason}", reason = label_reason(&.0.to_ascii_lowercase()))]
    BadPortName(String),
    /// A port number outside 1-65535.
    #[error("{0} is not a port number (1-65535)")]
    BadPort(i64),
    /// A protocol other than TCP, UDP and SCTP.
    #[error("{0:?} is not a protocol (TCP, UDP or SCTP)")]
    BadProtocol(String),
    /// An `addressType` other than IPv4, IPv6 and FQDN.
    #[error("{0:?} is not an address type (IPv4, IPv6 or FQDN)")]
    BadAddressType(String),
    /// A count below zero.
    #[error("{0} is negative")]
    Negative(i64),
    /// More entries than the Kubernetes API itself accepts.
    #[error("{count} entries, more than the API's limit of {limit}")]
    TooMany {
        /// Entries found.
        count: usize,
        /// The API's limit.
        limit: usize,
    },
}

/// Endpoints per EndpointSlice the API accepts (`maxItems` in discovery/v1).
pub const MAX_SLICE_ENDPOINTS: usize = 1000;
/// Addresses per endpoint the API accepts (`maxItems` in discovery/v1).
pub const MAX_ENDPOINT_ADDRESSES: usize = 100;
/// Ports per EndpointSlice the API accepts (`maxItems` in discovery/v1).
pub const MAX_SLICE_PORTS: usize = 100;

fn check_count(
    obj: &ObjectRef,
    field: &str,
    count: usize,
    limit: usize,
) -> Result<(), ConvertError> {
    if count > limit {
        return Err(obj.error(field, Problem::TooMany { count, limit }));
    }
    Ok(())
}

/// The namespace of an object: `metadata.namespace`, or `default` when absent or empty.
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns,
        _ => DEFAULT_NAMESPACE,
    }
}

/// Whether `s` is a DNS-1123 label: 1-63 of `a-z0-9-`, no `-` at either end.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 in all.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_dns_label)
}

/// The longest DNS-1123 (RFC 1123) label.
pub const MAX_LABEL_LEN: usize = 63;
/// The longest DNS-1123 subdomain, dots included.
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// The rule of a DNS-1123 label that a string breaks (the first found, reading left to right,
/// then its ends, then its length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelRule {
    /// Nothing at all (in a subdomain: a leading, trailing or doubled `.`).
    #[error("empty label")]
    Empty,
    /// An uppercase letter: Kubernetes names are lowercase.
    #[error("uppercase '{0}' (names are lowercase: a-z, 0-9 and '-')")]
    Uppercase(char),
    /// A character other than `a-z`, `0-9` and `-`.
    #[error("'{}' is not allowed (only a-z, 0-9 and '-')", .0.escape_default())]
    Character(char),
    /// A `-` first.
    #[error("starts with '-'")]
    LeadingDash,
    /// A `-` last.
    #[error("ends with '-'")]
    TrailingDash,
    /// More than 63 characters (RFC 1123).
    #[error("label longer than {MAX_LABEL_LEN} characters ({0})")]
    TooLong(usize),
}

/// The rule `s` breaks as a DNS-1123 label, or `None` when it is one.
pub fn label_rule(s: &str) -> Option<LabelRule> {
    if s.is_empty() {
        return Some(LabelRule::Empty);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(match c.is_ascii_uppercase() {
            true => LabelRule::Uppercase(c),
            false => LabelRule::Character(c),
        });
    }
    if s.starts_with('-') {
        return Some(LabelRule::LeadingDash);
    }
    if s.ends_with('-') {
        return Some(LabelRule::TrailingDash);
    }
    let length = s.chars().count();
    (length > MAX_LABEL_LEN).then_some(LabelRule::TooLong(length))
}

/// Why `s` is not a DNS-1123 label, in words.
fn label_reason(s: &str) -> String {
    match label_rule(s) {
        Some(rule) => rule.to_string(),
        None => "a-z, 0-9 and '-', at most 63, no '-' at either end".to_string(),
    }
}

/// Why `s` is not a DNS-1123 subdomain, in words: its length, or the first label at fault
/// (numbered when there are several).
fn subdomain_reason(s: &str) -> String {
    let length = s.chars().count();
    if length > MAX_SUBDOMAIN_LEN {
        return format!("longer than {MAX_SUBDOMAIN_LEN} characters ({length})");
    }
    let labels: Vec<&str> = s.split('.').collect();
    let fault = labels
        .iter()
        .enumerate()
        .find_map(|(i, label)| Some((i, label_rule(label)?)));
    match fault {
        Some((_, rule)) if labels.len() == 1 => rule.to_string(),
        Some((i, LabelRule::Empty)) => format!(
            "label {} of {} is empty (a leading, trailing or doubled '.')",
            i + 1,
            labels.len()
        ),
        Some((i, rule)) => format!("label {} of {}: {rule}", i + 1, labels.len()),
        None => "dot-separated DNS-1123 labels, at most 253 characters".to_string(),
    }
}

/// Checks that `value` (the object's `field`) is a DNS-1123 label and returns it owned.
pub fn check_label(obj: &ObjectRef, field: &str, value: &str) -> Result<String, ConvertError> {
    if value.is_empty() {
        Err(obj.error(field, Problem::Missing))
    } else if is_dns_label(value) {
        Ok(value.to_owned())
    } else {
        Err(obj.error(field, Problem::NotALabel(value.to_owned())))
    }
}

/// Checks that `value` (the object's `field`) is a DNS-1123 subdomain and returns it owned.
pub fn check_subdomain(obj: &ObjectRef, field: &str, value: &str) -> Result<String, ConvertError> {
    if value.is_empty() {
        Err(obj.error(field, Problem::Missing))
    } else if is_dns_subdomain(value) {
        Ok(value.to_owned())
    } else {
        Err(obj.error(field, Problem::NotASubdomain(value.to_owned())))
    }
}

/// The checked namespace (a label) and name (a label, or a subdomain when `subdomain_name`).
fn checked_meta(obj: &ObjectRef, subdomain_name: bool) -> Result<(String, String), ConvertError> {
    let namespace = check_label(obj, "metadata.namespace", &obj.namespace)?;
    let name = if subdomain_name {
        check_subdomain(obj, "metadata.name", &obj.name)?
    } else {
        check_label(obj, "metadata.name", &obj.name)?
    };
    Ok((namespace, name))
}

/// Parses a protocol; absent means TCP.
pub fn protocol(
    obj: &ObjectRef,
    field: &str,
    value: Option<&str>,
) -> Result<Protocol, ConvertError> {
    match value {
        None | Some("") => Ok(Protocol::Tcp),
        Some(p) => Protocol::from_label(p)
            .ok_or_else(|| obj.error(field, Problem::BadProtocol(p.to_owned()))),
    }
}

/// Checks a port number is within 1-65535.
pub fn port_number(obj: &ObjectRef, field: &str, value: i32) -> Result<u16, ConvertError> {
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(obj.error(field, Problem::BadPort(i64::from(value)))),
    }
}

/// A port name, lowercased; absent or empty means an unnamed port. Unchecked: see
/// [`check_port_name`] for a name that DNS serves.
pub fn port_name(value: Option<&str>) -> Option<String> {
    value.filter(|n| !n.is_empty()).map(str::to_ascii_lowercase)
}

/// A Service's or EndpointSlice's port name (the object's `field`), lowercased; absent or empty
/// means an unnamed port. It must be a DNS-1123 label once lowercased, as Kubernetes requires
/// (it becomes the `_<name>` label of SRV names).
pub fn check_port_name(
    obj: &ObjectRef,
    field: &str,
    value: Option<&str>,
) -> Result<Option<String>, ConvertError> {
    let Some(name) = port_name(value) else {
        return Ok(None);
    };
    match is_dns_label(&name) {
        true => Ok(Some(name)),
        false => Err(obj.error(
            field,
            Problem::BadPortName(value.unwrap_or_default().to_owned()),
        )),
    }
}

/// Parses a textual IP address.
pub fn parse_ip(obj: &ObjectRef, field: &str, value: &str) -> Result<IpAddr, ConvertError> {
    value
        .parse()
        .map_err(|_| obj.error(field, Problem::NotAnIp(value.to_owned())))
}

/// Converts a core/v1 Service.
pub fn service(svc: &core::Service) -> Result<Service, ConvertError> {
    let obj = ObjectRef::new("Service", &svc.metadata);
    let (namespace, name) = checked_meta(&obj, false)?;
    let spec = svc.spec.as_ref();
    let kind = service_kind(&obj, spec)?;
    let mut ports = Vec::new();
    for (i, p) in spec
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        ports.push(Port {
            name: check_port_name(&obj, &format!("spec.ports[{i}].name"), p.name.as_deref())?,
            protocol: protocol(
                &obj,
                &format!("spec.ports[{i}].protocol"),
                p.protocol.as_deref(),
            )?,
            port: port_number(&obj, &format!("spec.ports[{i}].port"), p.port)?,
        });
    }
    let bootstrap = super::annotations::bootstrap(&obj, svc.metadata.annotations.as_ref());
    Ok(Service {
        key: ServiceKey::new(namespace, name),
        kind,
        ports,
        bootstrap,
    })
}

/// Headless (`clusterIP: None`), ExternalName, or ClusterIP with the parsed `clusterIPs`.
fn service_kind(
    obj: &ObjectRef,
    spec: Option<&core::ServiceSpec>,
) -> Result<ServiceKind, ConvertError> {
    let Some(spec) = spec else {
        return Ok(ServiceKind::ClusterIp(Vec::new()));
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref().unwrap_or_default();
        let target = target
            .strip_suffix('.')
            .unwrap_or(target)
            .to_ascii_lowercase();
        // One trailing dot (an absolute name) is allowed, as Kubernetes allows it; what is
        // left must be a DNS-1123 subdomain (lowercased: peerdns accepts any case).
        let target = check_subdomain(obj, "spec.externalName", &target)?;
        return Ok(ServiceKind::ExternalName(target));
    }
    let (field, ips): (&str, Vec<&str>) = match spec.cluster_ips.as_deref() {
        Some(list) if !list.is_empty() => {
            ("spec.clusterIPs", list.iter().map(String::as_str).collect())
        }
        _ => (
            "spec.clusterIP",
            spec.cluster_ip.iter().map(String::as_str).collect(),
        ),
    };
    if ips.contains(&"None") {
        return Ok(ServiceKind::Headless);
    }
    let mut parsed = Vec::new();
    for (i, ip) in ips.iter().enumerate().filter(|(_, ip)| !ip.is_empty()) {
        let path = if field == "spec.clusterIP" {
            field.to_owned()
        } else {
            format!("{field}[{i}]")
        };
        parsed.push(parse_ip(obj, &path, ip)?);
    }
    Ok(ServiceKind::ClusterIp(parsed))
}

/// The Service a slice belongs to: its namespace and the `kubernetes.io/service-name` label.
pub fn slice_service(slice: &discovery::EndpointSlice) -> Result<ServiceKey, ConvertError> {
    let obj = ObjectRef::new("EndpointSlice", &slice.metadata);
    let field = format!("metadata.labels[{SERVICE_NAME_LABEL}]");
    let label = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .ok_or_else(|| obj.error(field.as_str(), Problem::Missing))?;
    let namespace = check_label(&obj, "metadata.namespace", &obj.namespace)?;
    Ok(ServiceKey::new(
        namespace,
        check_label(&obj, &field, label)?,
    ))
}

/// Converts a discovery/v1 EndpointSlice; `Ok(None)` for an FQDN slice (skipped, logged).
pub fn endpoint_slice(
    slice: &discovery::EndpointSlice,
) -> Result<Option<EndpointSlice>, ConvertError> {
    let obj = ObjectRef::new("EndpointSlice", &slice.metadata);
    let (_, name) = checked_meta(&obj, true)?;
    let service = slice_service(slice)?;
    let family = match slice.address_type.as_str() {
        "IPv4" => AddressFamily::Ipv4,
        "IPv6" => AddressFamily::Ipv6,
        "FQDN" => {
            tracing::warn!(object = %obj, "skipping EndpointSlice with addressType FQDN");
            return Ok(None);
        }
        other => return Err(obj.error("addressType", Problem::BadAddressType(other.to_owned()))),
    };
    let raw_ports = slice.ports.as_deref().unwrap_or(&[]);
    let raw_endpoints = slice.endpoints.as_deref().unwrap_or(&[]);
    check_count(&obj, "ports", raw_ports.len(), MAX_SLICE_PORTS)?;
    check_count(&obj, "endpoints", raw_endpoints.len(), MAX_SLICE_ENDPOINTS)?;
    let mut ports = Vec::new();
    for (i, p) in raw_ports.iter().enumerate() {
        // A null port number means "all ports" and is useless to DNS: skip it.
        let Some(number) = p.port else { continue };
        ports.push(Port {
            name: check_port_name(&obj, &format!("ports[{i}].name"), p.name.as_deref())?,
            protocol: protocol(&obj, &format!("ports[{i}].protocol"), p.protocol.as_deref())?,
            port: port_number(&obj, &format!("ports[{i}].port"), number)?,
        });
    }
    let mut endpoints = Vec::new();
    for (i, ep) in raw_endpoints.iter().enumerate() {
        endpoints.push(endpoint(&obj, i, ep, family)?);
    }
    Ok(Some(EndpointSlice {
        name,
        service,
        family,
        ports,
        endpoints,
    }))
}

/// Converts `endpoints[i]` of a slice of `family`.
fn endpoint(
    obj: &ObjectRef,
    i: usize,
    ep: &discovery::Endpoint,
    family: AddressFamily,
) -> Result<Endpoint, ConvertError> {
    // Field names are formatted only when an error names them: this loop runs once per
    // endpoint of every slice event, on the way to the answers (P4 in `crate::rules`).
    if ep.addresses.len() > MAX_ENDPOINT_ADDRESSES {
        let field = format!("endpoints[{i}].addresses");
        check_count(obj, &field, ep.addresses.len(), MAX_ENDPOINT_ADDRESSES)?;
    }
    let mut addresses = Vec::with_capacity(ep.addresses.len());
    for (j, text) in ep.addresses.iter().enumerate() {
        let field = || format!("endpoints[{i}].addresses[{j}]");
        let address = match text.parse::<IpAddr>() {
            Ok(address) => address,
            Err(_) => parse_ip(obj, &field(), text)?,
        };
        if AddressFamily::of(&address) != family {
            let family = match family {
                AddressFamily::Ipv4 => "IPv4",
                AddressFamily::Ipv6 => "IPv6",
            };
            return Err(obj.error(field(), Problem::WrongFamily { address, family }));
        }
        addresses.push(address);
    }
    let hostname = match ep.hostname.as_deref() {
        Some(h) if is_dns_label(h) => Some(h.to_owned()),
        Some(h) => Some(check_label(obj, &format!("endpoints[{i}].hostname"), h)?),
        None => None,
    };
    let pod_name = match ep.target_ref.as_ref() {
        Some(r) if r.kind.as_deref() == Some("Pod") => match r.name.as_deref() {
            Some(n) if is_dns_subdomain(n) => Some(n.to_owned()),
            Some(n) => Some(check_subdomain(
                obj,
                &format!("endpoints[{i}].targetRef.name"),
                n,
            )?),
            None => None,
        },
        _ => None,
    };
    let conditions = ep.conditions.as_ref();
    Ok(Endpoint {
        addresses,
        ready: conditions.and_then(|c| c.ready).unwrap_or(true),
        terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
        hostname,
        pod_name,
    })
}

#[cfg(test)]
mod tests;
