//! The inputs the writer stores for each Service, in a compact form shared with its records.
//!
//! The sources speak [`crate::model`]; the writer converts each Service and slice on arrival
//! into these types and drops the model value. They hold exactly what
//! [`super::ServiceRecords::build`] and the departure grace need, and their strings and port
//! lists are `Arc`s that the compiled records clone rather than copy: a hostname is allocated
//! once for the writer and the index together, and an endpoint whose pod name equals its
//! hostname (StatefulSet pods: nearly always) shares one allocation for both.
//!
//! Invariants:
//! - [`Slices`] are sorted by name and no two share a name, so iteration order (the order
//!   [`super::ServiceRecords::build`] relies on for determinism) is by name;
//! - converting is lossless for everything an answer depends on: equal stored values compile to
//!   equal records.

use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{Bootstrap, Endpoint, EndpointSlice, Port, Service, ServiceKind};

/// A Service, without its key (the writer's map holds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredService {
    /// Headless, ClusterIP or ExternalName.
    pub kind: ServiceKind,
    /// The Service's ports, shared with its records.
    pub ports: Arc<[Port]>,
    /// Its bootstrap names (R15).
    pub bootstrap: Bootstrap,
}

impl From<Service> for StoredService {
    fn from(service: Service) -> Self {
        Self {
            kind: service.kind,
            ports: service.ports.as_slice().into(),
            bootstrap: service.bootstrap,
        }
    }
}

/// An EndpointSlice, without its Service key (the Service's state holds it) or family (the
/// addresses carry it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSlice {
    /// The slice's name.
    pub name: Box<str>,
    /// The slice's ports, shared with the records of its endpoints.
    pub ports: Arc<[Port]>,
    /// The endpoints.
    pub endpoints: Box<[StoredEndpoint]>,
}

impl From<EndpointSlice> for StoredSlice {
    fn from(slice: EndpointSlice) -> Self {
        Self {
            name: Box::from(slice.name.as_str()),
            ports: slice.ports.as_slice().into(),
            endpoints: slice.endpoints.iter().map(StoredEndpoint::from).collect(),
        }
    }
}

/// One endpoint of a stored slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEndpoint {
    /// Its addresses (at least one in practice; Kubernetes allows up to 100).
    pub addresses: Addresses,
    /// `conditions.ready`, absent meaning true.
    pub ready: bool,
    /// `conditions.terminating`, absent meaning false.
    pub terminating: bool,
    /// Its hostname.
    pub hostname: Option<Arc<str>>,
    /// Its pod's name: the same `Arc` as `hostname` when the two are equal.
    pub pod_name: Option<Arc<str>>,
}

impl From<&Endpoint> for StoredEndpoint {
    fn from(endpoint: &Endpoint) -> Self {
        let hostname: Option<Arc<str>> = endpoint.hostname.as_deref().map(Arc::from);
        let pod_name = match (endpoint.pod_name.as_deref(), &hostname) {
            (Some(pod), Some(hostname)) if pod == &**hostname => Some(hostname.clone()),
            (pod, _) => pod.map(Arc::from),
        };
        Self {
            addresses: Addresses::from(endpoint.addresses.as_slice()),
            ready: endpoint.ready,
            terminating: endpoint.terminating,
            hostname,
            pod_name,
        }
    }
}

/// An endpoint's addresses: nearly always one, held inline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// Exactly one.
    One(IpAddr),
    /// None, or more than one.
    Many(Box<[IpAddr]>),
}

impl Addresses {
    /// The addresses, in their original order.
    pub fn as_slice(&self) -> &[IpAddr] {
        match self {
            Addresses::One(ip) => std::slice::from_ref(ip),
            Addresses::Many(ips) => ips,
        }
    }
}

impl From<&[IpAddr]> for Addresses {
    fn from(addresses: &[IpAddr]) -> Self {
        match *addresses {
            [ip] => Addresses::One(ip),
            _ => Addresses::Many(addresses.into()),
        }
    }
}

/// One Service's slices, sorted by name, each name once.
///
/// A Service nearly always has one slice (two when dual-stack), so they live in a vector found
/// by binary search: one small allocation, where a tree node would reserve room for eleven.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slices(Vec<StoredSlice>);

impl Slices {
    /// Adds `slice`, replacing and returning the one of the same name.
    pub fn insert(&mut self, slice: StoredSlice) -> Option<StoredSlice> {
        match self.position(&slice.name) {
            Ok(position) => Some(std::mem::replace(&mut self.0[position], slice)),
            Err(position) => {
                // Grow by one: a Service has few slices, and a vector's first growth would
                // otherwise reserve room for four.
                self.0.reserve_exact(1);
                self.0.insert(position, slice);
                None
            }
        }
    }

    /// Removes and returns the slice named `name`.
    pub fn remove(&mut self, name: &str) -> Option<StoredSlice> {
        let position = self.position(name).ok()?;
        Some(self.0.remove(position))
    }

    /// The slices, by name.
    pub fn iter(&self) -> std::slice::Iter<'_, StoredSlice> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every slice and frees the storage.
    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|slice| (*slice.name).cmp(name))
    }
}

impl<'a> IntoIterator for &'a Slices {
    type Item = &'a StoredSlice;
    type IntoIter = std::slice::Iter<'a, StoredSlice>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AddressFamily, Protocol, ServiceKey};

    fn slice(name: &str, port: u16) -> StoredSlice {
        StoredSlice::from(EndpointSlice {
            name: name.into(),
            service: ServiceKey::new("default", "db"),
            family: AddressFamily::Ipv4,
            ports: vec![Port {
                name: None,
                protocol: Protocol::Tcp,
                port,
            }],
            endpoints: Vec::new(),
        })
    }

    #[test]
    fn sorted_by_name_and_replaced_by_name() {
        let mut slices = Slices::default();
        assert!(slices.insert(slice("b", 1)).is_none());
        assert!(slices.insert(slice("a", 1)).is_none());
        assert!(slices.insert(slice("c", 1)).is_none());
        assert_eq!(slices.insert(slice("b", 2)), Some(slice("b", 1)));
        let names: Vec<&str> = slices.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(slices.remove("a"), Some(slice("a", 1)));
        assert_eq!(slices.remove("a"), None);
        assert_eq!(slices.iter().next(), Some(&slice("b", 2)));
        slices.clear();
        assert!(slices.is_empty());
    }

    #[test]
    fn pod_name_equal_to_hostname_shares_its_allocation() {
        let endpoint = |hostname: &str, pod: &str| {
            StoredEndpoint::from(&Endpoint {
                terminating: false,
                addresses: vec!["10.0.0.1".parse().unwrap()],
                ready: true,
                hostname: Some(hostname.into()),
                pod_name: Some(pod.into()),
            })
        };
        let same = endpoint("db-0", "db-0");
        let (hostname, pod) = (same.hostname.unwrap(), same.pod_name.unwrap());
        assert!(Arc::ptr_eq(&hostname, &pod));
        let other = endpoint("db-0", "web-abc");
        assert_eq!(other.pod_name.as_deref(), Some("web-abc"));
        assert_eq!(same.addresses, Addresses::One("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn addresses_keep_their_order() {
        let ips: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()];
        assert_eq!(Addresses::from(&ips[..]).as_slice(), &ips[..]);
        assert_eq!(Addresses::from(&[][..]).as_slice(), &[] as &[IpAddr]);
    }
}
