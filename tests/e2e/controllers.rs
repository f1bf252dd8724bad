//! A stand-in for the StatefulSet and EndpointSlice controllers: drives one StatefulSet and its
//! headless Service on a [`TestApiServer`] by writing the Service and EndpointSlice objects the
//! real controllers would, step by step, and says which addresses DNS should answer.
//!
//! Invariants:
//! - pods are `<name>-<ordinal>`; scaling adds in ascending and removes in descending ordinal
//!   order, one slice write per pod step (per address family);
//! - every pod gets a fresh address from this driver's own block (`10.<200+block>.x.y`, and
//!   `fd00:10:<200+block>::x:y` when dual-stack); a recreated pod never reuses one;
//! - endpoints carry hostname = pod name, targetRef {kind: Pod, name, namespace} and
//!   conditions; as in the real controller, `ready` is `pod ready || publishNotReadyAddresses`
//!   and `serving` is the pod's own readiness;
//! - slices are `<service>-ipv4-<i>` / `<service>-ipv6-<i>`, labelled
//!   `kubernetes.io/service-name`, and every write stamps the
//!   `endpoints.kubernetes.io/last-change-trigger-time` annotation; slice 0 always exists (empty
//!   when there are no pods), other slices are deleted when they empty.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use crate::apiserver::{Resource, TestApiServer, now_rfc3339};

/// An address family, and the EndpointSlice `addressType` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// One pod of the StatefulSet as the driver tracks it.
#[derive(Clone, Debug)]
struct Pod {
    serial: u32,
    ready: bool,
    /// False only between the two writes of [`StatefulSetDriver::recreate`].
    present: bool,
    /// Index of the slice holding this pod's endpoint (same index in both families).
    slice: usize,
}

/// Drives one StatefulSet + headless Service; see the module doc.
pub struct StatefulSetDriver<'a> {
    server: &'a TestApiServer,
    namespace: String,
    name: String,
    service: String,
    block: u32,
    next_serial: u32,
    pods: Vec<Pod>,
    publish_not_ready: bool,
    dual_stack: bool,
    max_per_slice: usize,
    /// Slices that exist on the server, as (family, index).
    written: BTreeSet<(Family, usize)>,
}

impl<'a> StatefulSetDriver<'a> {
    /// A driver for StatefulSet `name` governed by headless Service `service` in `namespace`;
    /// writes nothing until [`Self::create`].
    pub fn new(server: &'a TestApiServer, namespace: &str, name: &str, service: &str) -> Self {
        let block = server.address_block();
        assert!(block < 50, "too many drivers on one server");
        Self {
            server,
            namespace: namespace.to_string(),
            name: name.to_string(),
            service: service.to_string(),
            block,
            next_serial: 1,
            pods: Vec::new(),
            publish_not_ready: false,
            dual_stack: false,
            max_per_slice: 100,
            written: BTreeSet::new(),
        }
    }

    /// Writes the Service, then the slices holding `replicas` ready pods.
    pub fn create(&mut self, replicas: usize) {
        self.write_service();
        for _ in 0..replicas {
            let pod = self.new_pod();
            self.pods.push(pod);
        }
        self.write_all_slices();
    }

    /// Scales to `replicas`, one pod (and one slice write per family) at a time.
    pub fn scale(&mut self, replicas: usize) {
        while self.pods.len() < replicas {
            let pod = self.new_pod();
            self.pods.push(pod);
            self.write_slices_of(self.pods.len() - 1);
        }
        while self.pods.len() > replicas {
            let gone = self.pods.pop().map(|p| p.slice).unwrap_or_default();
            self.write_slice_index(gone);
        }
    }

    /// Adds one pod that has started but is not ready yet (the next ordinal); returns it.
    pub fn start_pod(&mut self) -> usize {
        let mut pod = self.new_pod();
        pod.ready = false;
        self.pods.push(pod);
        let ordinal = self.pods.len() - 1;
        self.write_slices_of(ordinal);
        ordinal
    }

    /// Sets a pod's readiness.
    pub fn set_ready(&mut self, ordinal: usize, ready: bool) {
        self.pod_mut(ordinal).ready = ready;
        self.write_slices_of(ordinal);
    }

    /// Deletes and recreates a pod: same name, new address. Two steps, as the controllers see
    /// it: the endpoint leaves its slice, then comes back ready with the new address.
    pub fn recreate(&mut self, ordinal: usize) {
        self.pod_mut(ordinal).present = false;
        self.write_slices_of(ordinal);
        let serial = self.next_serial();
        let pod = self.pod_mut(ordinal);
        (pod.serial, pod.ready, pod.present) = (serial, true, true);
        self.write_slices_of(ordinal);
    }

    /// Sets the Service's `publishNotReadyAddresses` and rewrites the slices accordingly.
    pub fn set_publish_not_ready(&mut self, publish: bool) {
        self.publish_not_ready = publish;
        self.write_service();
        self.write_all_slices();
    }

    /// Turns dual-stack on (IPv6 slices written next to the IPv4 ones) or off (deleted).
    pub fn dual_stack(&mut self, on: bool) {
        self.dual_stack = on;
        self.write_service();
        if on {
            self.write_all_slices();
        } else {
            for (family, index) in self.written.clone() {
                if family == Family::V6 {
                    self.delete_slice(family, index);
                }
            }
        }
    }

    /// Spreads the endpoints over slices of at most `n` (ordinal order) and rewrites the slices
    /// that changed; before [`Self::create`] it only sets the limit.
    pub fn max_endpoints_per_slice(&mut self, n: usize) {
        self.max_per_slice = n.max(1);
        for (ordinal, pod) in self.pods.iter_mut().enumerate() {
            pod.slice = ordinal / self.max_per_slice;
        }
        if !self.written.is_empty() {
            self.write_all_slices();
        }
    }

    /// Moves a pod's endpoint from slice `from` to slice `to`: the destination is written first,
    /// then the source, so for one write the endpoint is in both (as a real controller may do).
    pub fn move_endpoint(&mut self, ordinal: usize, from: usize, to: usize) {
        let pod = self.pod_mut(ordinal);
        assert_eq!(pod.slice, from, "pod {ordinal} is not in slice {from}");
        pod.slice = to;
        self.write_slice_index(to);
        self.write_slice_index(from);
    }

    /// The pod name for `ordinal`.
    pub fn pod_name(&self, ordinal: usize) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The pod's IPv4 address.
    pub fn ipv4(&self, ordinal: usize) -> Ipv4Addr {
        self.v4(self.pods[ordinal].serial)
    }

    /// The pod's IPv6 address (in the slices only while dual-stack is on).
    pub fn ipv6(&self, ordinal: usize) -> Ipv6Addr {
        self.v6(self.pods[ordinal].serial)
    }

    /// Addresses of ready pods (both families when dual-stack), ordinal order, v4 first.
    pub fn ready_ips(&self) -> Vec<IpAddr> {
        self.ips_where(|pod| pod.ready)
    }

    /// Addresses DNS should publish: ready pods, or all of them with publishNotReadyAddresses.
    pub fn published_ips(&self) -> Vec<IpAddr> {
        self.ips_where(|pod| pod.ready || self.publish_not_ready)
    }

    /// Names of the slices that exist now.
    pub fn slice_names(&self) -> Vec<String> {
        self.written
            .iter()
            .map(|&(f, i)| self.slice_name(f, i))
            .collect()
    }

    /// The number of pods.
    pub fn replicas(&self) -> usize {
        self.pods.len()
    }

    fn ips_where(&self, keep: impl Fn(&Pod) -> bool) -> Vec<IpAddr> {
        let chosen: Vec<&Pod> = self.pods.iter().filter(|p| keep(p)).collect();
        let v4 = chosen.iter().map(|p| IpAddr::V4(self.v4(p.serial)));
        let v6 = chosen.iter().map(|p| IpAddr::V6(self.v6(p.serial)));
        v4.chain(v6.filter(|_| self.dual_stack)).collect()
    }

    fn v4(&self, serial: u32) -> Ipv4Addr {
        let [_, _, hi, lo] = serial.to_be_bytes();
        Ipv4Addr::new(10, 200 + self.block as u8, hi, lo)
    }

    fn v6(&self, serial: u32) -> Ipv6Addr {
        Ipv6Addr::new(
            0xfd00,
            10,
            200 + self.block as u16,
            0,
            0,
            0,
            (serial >> 16) as u16,
            serial as u16,
        )
    }

    fn pod_mut(&mut self, ordinal: usize) -> &mut Pod {
        let count = self.pods.len();
        self.pods
            .get_mut(ordinal)
            .unwrap_or_else(|| panic!("no pod {ordinal}: {count} replicas"))
    }

    /// A ready pod with a fresh address, in the first slice with room.
    fn new_pod(&mut self) -> Pod {
        let serial = self.next_serial();
        let slice = (0..)
            .find(|i| self.pods.iter().filter(|p| p.slice == *i).count() < self.max_per_slice)
            .unwrap_or_default();
        Pod {
            serial,
            ready: true,
            present: true,
            slice,
        }
    }

    /// A fresh address serial, skipping those that would end in `.0`.
    fn next_serial(&mut self) -> u32 {
        if self.next_serial.is_multiple_of(256) {
            self.next_serial += 1;
        }
        self.next_serial += 1;
        self.next_serial - 1
    }

    fn families(&self) -> Vec<Family> {
        if self.dual_stack {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }

    fn write_slices_of(&mut self, ordinal: usize) {
        let slice = self.pods[ordinal].slice;
        self.write_slice_index(slice);
    }

    /// Writes slice `index` in every active family (deleting it when empty and not slice 0).
    fn write_slice_index(&mut self, index: usize) {
        for family in self.families() {
            let has_pods = self.pods.iter().any(|p| p.slice == index && p.present);
            if has_pods || index == 0 {
                self.write_if_changed(self.slice(family, index));
                self.written.insert((family, index));
            } else {
                self.delete_slice(family, index);
            }
        }
    }

    /// Writes a slice unless only its trigger-time annotation would change (the real
    /// controller skips no-op updates).
    fn write_if_changed(&self, slice: Value) {
        let name = slice["metadata"]["name"].as_str().unwrap_or_default();
        let stored = self
            .server
            .get(Resource::EndpointSlices, &self.namespace, name);
        let same = |field: &str| stored.as_ref().is_some_and(|s| s[field] == slice[field]);
        if !(same("endpoints") && same("ports") && same("addressType")) {
            self.server.apply(&slice);
        }
    }

    fn write_all_slices(&mut self) {
        let used: BTreeSet<usize> = self.pods.iter().map(|p| p.slice).chain([0]).collect();
        for index in &used {
            self.write_slice_index(*index);
        }
        for (family, index) in self.written.clone() {
            if !used.contains(&index) {
                self.delete_slice(family, index);
            }
        }
    }

    fn delete_slice(&mut self, family: Family, index: usize) {
        if self.written.remove(&(family, index)) {
            self.server.delete(
                Resource::EndpointSlices,
                &self.namespace,
                &self.slice_name(family, index),
            );
        }
    }

    fn slice_name(&self, family: Family, index: usize) -> String {
        let family = match family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        format!("{}-{family}-{index}", self.service)
    }

    fn write_service(&self) {
        let families: Vec<&str> = self
            .families()
            .into_iter()
            .map(Family::address_type)
            .collect();
        let policy = if self.dual_stack {
            "PreferDualStack"
        } else {
            "SingleStack"
        };
        self.server.apply(&json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": self.service,
                "namespace": self.namespace,
                "labels": { "app": self.name },
            },
            "spec": {
                "clusterIP": "None",
                "clusterIPs": ["None"],
                "selector": { "app": self.name },
                "ports": [{ "name": "web", "port": 80, "protocol": "TCP", "targetPort": 80 }],
                "publishNotReadyAddresses": self.publish_not_ready,
                "ipFamilies": families,
                "ipFamilyPolicy": policy,
                "type": "ClusterIP",
            },
        }));
    }

    fn slice(&self, family: Family, index: usize) -> Value {
        let endpoints: Vec<Value> = (0..self.pods.len())
            .filter(|&ordinal| self.pods[ordinal].slice == index && self.pods[ordinal].present)
            .map(|ordinal| self.endpoint(family, ordinal))
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": self.slice_name(family, index),
                "namespace": self.namespace,
                // Like the real controller, the slice carries the Service's labels too.
                "labels": {
                    "app": self.name,
                    "kubernetes.io/service-name": self.service,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
                "annotations": {
                    "endpoints.kubernetes.io/last-change-trigger-time": now_rfc3339(),
                },
            },
            "addressType": family.address_type(),
            "endpoints": endpoints,
            "ports": [{ "name": "web", "port": 80, "protocol": "TCP" }],
        })
    }

    fn endpoint(&self, family: Family, ordinal: usize) -> Value {
        let pod = &self.pods[ordinal];
        let address = match family {
            Family::V4 => self.v4(pod.serial).to_string(),
            Family::V6 => self.v6(pod.serial).to_string(),
        };
        json!({
            "addresses": [address],
            "conditions": {
                "ready": pod.ready || self.publish_not_ready,
                "serving": pod.ready,
                "terminating": false,
            },
            "hostname": self.pod_name(ordinal),
            "targetRef": {
                "kind": "Pod",
                "name": self.pod_name(ordinal),
                "namespace": self.namespace,
            },
            "nodeName": "node-1",
        })
    }
}
