//! The small model types every source produces and the index consumes.
//!
//! A source (`source::file` today, the Kubernetes watcher later) converts each API object into
//! these types at the edge and drops the object: nothing past `source::convert` names a kube or
//! k8s-openapi type. The types hold only what an answer needs.
//!
//! Invariants:
//! - names (namespace, Service, slice, hostname, pod) are stored lowercase, as Kubernetes
//!   requires them to be DNS-1123 labels; the converter rejects anything else;
//! - an [`EndpointSlice`] carries addresses of one IP family only, as in `discovery.k8s.io/v1`;
//! - `Endpoint::ready` already folds in `publishNotReadyAddresses` (it is `conditions.ready`,
//!   with absent meaning true); `serving` and `terminating` are never looked at.

use std::fmt;
use std::net::IpAddr;

/// Identifies a Service: its namespace and name, both lowercase DNS labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key from a namespace and a name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The transport protocol of a port, as named in `_<port>._<proto>` SRV names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lowercase label used in SRV names (`tcp`, `udp`, `sctp`).
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses a protocol label, case-insensitively (`TCP`, `tcp`, ...).
    pub fn from_label(label: &str) -> Option<Self> {
        if label.eq_ignore_ascii_case("tcp") {
            Some(Protocol::Tcp)
        } else if label.eq_ignore_ascii_case("udp") {
            Some(Protocol::Udp)
        } else if label.eq_ignore_ascii_case("sctp") {
            Some(Protocol::Sctp)
        } else {
            None
        }
    }
}

/// A port of a Service or of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// The port's name, lowercase; `None` for an unnamed port (no `_port._proto` name).
    pub name: Option<String>,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The port number (for a slice port: the endpoints' target port).
    pub port: u16,
}

/// What kind of Service this is, which decides how its name answers (R1, R5, R6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// `clusterIP: None`: the name answers with the ready endpoints.
    Headless,
    /// A Service with one ClusterIP per IP family: the name answers with those.
    ClusterIp(Vec<IpAddr>),
    /// `type: ExternalName`: the name is a CNAME to this fully qualified name (lowercase, no
    /// trailing dot).
    ExternalName(String),
}

/// A Service, reduced to what DNS needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub key: ServiceKey,
    /// Headless, ClusterIP or ExternalName.
    pub kind: ServiceKind,
    /// The Service's ports (used for ClusterIP SRV answers; headless answers use slice ports).
    pub ports: Vec<Port>,
    /// What its `peerdns.io/*` annotations ask for (R15).
    pub bootstrap: Bootstrap,
}

/// The bootstrap names a Service asks for with its annotations (R15).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bootstrap {
    /// `peerdns.io/not-ready-names: "true"`: an endpoint that is not ready (and not
    /// terminating) answers its own name.
    pub not_ready_names: bool,
    /// `peerdns.io/seeds: "N"`: `seeds.<svc>` answers the first N ordinals that exist.
    pub seeds: Option<u32>,
    /// `peerdns.io/txt`: the TXT record at the Service's name, as character strings of at
    /// most 255 bytes each; empty: none.
    pub txt: Vec<String>,
}

/// An IP family; one EndpointSlice holds one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// IPv4 (`addressType: IPv4`).
    Ipv4,
    /// IPv6 (`addressType: IPv6`).
    Ipv6,
}

impl AddressFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's addresses (Kubernetes allows several; all of the slice's family).
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`, absent meaning true.
    pub ready: bool,
    /// `conditions.terminating`, absent meaning false: the pod is going away.
    pub terminating: bool,
    /// `hostname`, lowercase: set for StatefulSet pods whose `subdomain` names the Service.
    pub hostname: Option<String>,
    /// `targetRef.name` when `targetRef.kind` is `Pod`, lowercase.
    pub pod_name: Option<String>,
}

/// An EndpointSlice, reduced to what DNS needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    /// The slice's own name (unique within its namespace).
    pub name: String,
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: ServiceKey,
    /// The IP family of every address in it.
    pub family: AddressFamily,
    /// The slice's ports; empty for a portless Service.
    pub ports: Vec<Port>,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// Identifies an EndpointSlice: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliceKey {
    /// The namespace.
    pub namespace: String,
    /// The slice's name.
    pub name: String,
}

impl EndpointSlice {
    /// This slice's key.
    pub fn key(&self) -> SliceKey {
        SliceKey {
            namespace: self.service.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// A whole cluster's state, as delivered by a complete list (the static file, or the watch
/// source's initial list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Every Service.
    pub services: Vec<Service>,
    /// Every EndpointSlice.
    pub slices: Vec<EndpointSlice>,
    /// The state's version when the source knows one (the highest resourceVersion listed,
    /// the cluster file's modification time): the serial it is served at, when ahead (R8).
    pub version: Option<u64>,
}
