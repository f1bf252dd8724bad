//! Address assignment for generated StatefulSet pods (the rule `statefulset` documents).
//!
//! Generated pods are sorted by (namespace, StatefulSet name, ordinal), and the n-th pod takes the
//! n-th free address of every configured pod CIDR, one address per CIDR (a v4 and a v6 CIDR give
//! dual-stack pods). A CIDR's free addresses start at its network address + 2 (the network
//! address and the one after it, the usual gateway, are never handed out; nor is an IPv4
//! broadcast address), and skip every address already used by an explicit Pod or an explicit
//! EndpointSlice in the file. A generated pod whose name an explicit Pod in the same namespace
//! already has is not generated: the explicit Pod wins (so a file can mark one StatefulSet pod not
//! ready) and takes no number.
//!
//! Invariants:
//! - the same pods, CIDRs and reserved addresses always give the same addresses;
//! - no address is handed out twice, nor one the file already uses;
//! - running out of a CIDR is an error naming the CIDR, the StatefulSet and the pod.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{GeneratedPod, ObjectRef, PodFacts};

/// Why the generated pods could not get addresses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A pod CIDR has no free address left.
    #[error("{statefulset}: pod CIDR {cidr} has no address left for pod {pod}")]
    CidrExhausted {
        /// The CIDR.
        cidr: IpNet,
        /// The StatefulSet whose pod needed an address.
        statefulset: Box<ObjectRef>,
        /// The pod's name.
        pod: String,
    },
    /// StatefulSet pods need addresses but no pod CIDR is configured.
    #[error("{statefulset}: no pod CIDR is configured to give its pods addresses")]
    NoPodCidr {
        /// The StatefulSet.
        statefulset: Box<ObjectRef>,
    },
}

/// Hands out addresses from the pod CIDRs, in order, skipping reserved ones.
#[derive(Debug)]
pub struct AddressPool {
    cidrs: Vec<IpNet>,
    next: Vec<u128>,
    used: HashSet<IpAddr>,
}

impl AddressPool {
    /// A pool over `cidrs` that never hands out an address in `used`.
    pub fn new(cidrs: &[IpNet], used: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            cidrs: cidrs.to_vec(),
            next: vec![2; cidrs.len()],
            used: used.into_iter().collect(),
        }
    }

    /// One fresh address from each CIDR, or the first CIDR that has none left.
    pub fn take(&mut self) -> Result<Vec<IpAddr>, IpNet> {
        let mut out = Vec::with_capacity(self.cidrs.len());
        for (cidr, next) in self.cidrs.iter().zip(self.next.iter_mut()) {
            out.push(take_from(cidr, next, &self.used).ok_or(*cidr)?);
        }
        Ok(out)
    }
}

/// The first free address of `cidr` at offset `next` or later; advances `next` past it.
fn take_from(cidr: &IpNet, next: &mut u128, used: &HashSet<IpAddr>) -> Option<IpAddr> {
    let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
    let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    // The IPv4 broadcast address is not a host address.
    let end = if matches!(cidr, IpNet::V4(_)) {
        size - 1
    } else {
        size
    };
    while *next < end {
        let offset = *next;
        *next += 1;
        let ip = match cidr {
            IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
                u32::from(n.network()).wrapping_add(offset as u32),
            )),
            IpNet::V6(n) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(offset)))
            }
        };
        if !used.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

/// All pods of the file: the explicit ones as given, then the generated ones that no explicit
/// Pod overrides, with addresses assigned by the rule in the module doc. `reserved` holds other
/// addresses the file uses (explicit slices' endpoints).
pub fn expand(
    explicit: Vec<PodFacts>,
    mut generated: Vec<GeneratedPod>,
    cidrs: &[IpNet],
    reserved: impl IntoIterator<Item = IpAddr>,
) -> Result<Vec<PodFacts>, ExpandError> {
    let names: HashSet<(&str, &str)> = explicit
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    generated.retain(|g| !names.contains(&(g.pod.namespace.as_str(), g.pod.name.as_str())));
    generated.sort_by(|a, b| {
        (&a.statefulset.namespace, &a.statefulset.name, a.ordinal).cmp(&(
            &b.statefulset.namespace,
            &b.statefulset.name,
            b.ordinal,
        ))
    });
    let used = explicit
        .iter()
        .flat_map(|p| p.addresses.iter().copied())
        .chain(reserved);
    let mut pool = AddressPool::new(cidrs, used);
    let mut pods = explicit;
    for mut g in generated {
        if cidrs.is_empty() {
            return Err(ExpandError::NoPodCidr {
                statefulset: Box::new(g.statefulset),
            });
        }
        g.pod.addresses = pool.take().map_err(|cidr| ExpandError::CidrExhausted {
            cidr,
            statefulset: Box::new(g.statefulset.clone()),
            pod: g.pod.name.clone(),
        })?;
        pods.push(g.pod);
    }
    Ok(pods)
}
