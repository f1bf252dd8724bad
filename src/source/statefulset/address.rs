//! Address assignment for generated pods (and explicit Pods without an address).
//!
//! The rule, for each configured pod CIDR (one address per CIDR, so a v4 and a v6 CIDR give
//! dual-stack pods):
//!
//! 1. A CIDR's usable addresses are its network address + 2 up to its end (the network address
//!    and the one after it, the usual gateway, are never handed out; nor is an IPv4 broadcast
//!    address). An IPv4 CIDR of /24 or wider is cut as a cluster cuts it into per-node /24s:
//!    the `.0`, `.1` and `.255` of every /24 are never handed out either. Addresses the file
//!    already uses (explicit Pods' `status.podIP(s)`, explicit
//!    EndpointSlices' endpoints) are taken before any pod claims one.
//! 2. A pod's *home* address is the usable address at offset [`stable_hash`](super::names)
//!    of (CIDR, namespace, pod name) modulo the usable count. Pod names are themselves derived
//!    from (namespace, workload kind, workload name, ordinal or replica index), so the home
//!    address depends on the pod alone, never on the other objects of the file.
//! 3. Pods claim in a fixed order: by ordinal or replica index (an explicit Pod: 0, or the
//!    index of the generated pod it replaces), then namespace, then pod name. A pod takes its
//!    home address when free, else the next free one upwards, wrapping from the end of the
//!    CIDR to its start.
//!
//! So a pod keeps its address across reloads as long as it exists, whatever else changes,
//! except when a pod that claims earlier wants that very address (its home, or its probe passes
//! through it), which in a /16 with `n` pods happens for a given newcomer with a chance of
//! about `n` in 65 000. Scaling a workload up adds only pods of higher indexes, which claim
//! after every pod of a lower index: scaling one StatefulSet from 3 to 4 cannot move another
//! StatefulSet's `web-0`, `web-1` or `web-2`. When two pods do collide, the one that claims
//! first keeps the address and only the other moves; which one that is depends on the two pods
//! alone, never on the order of the file.
//!
//! An explicit Pod replaces the generated pod of the same name in the same namespace: with an
//! address it takes no number; without one it claims in the generated pod's place (so it gets
//! the same address).
//!
//! Invariants:
//! - the same pods, CIDRs and reserved addresses always give the same addresses;
//! - no address is handed out twice, nor one the file already uses;
//! - running out of a CIDR is an error naming the CIDR, the owner and the pod.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::names::stable_hash;
use super::{GeneratedPod, ObjectRef, PodFacts};

/// Why the generated pods could not get addresses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A pod CIDR has no free address left.
    #[error("{owner}: pod CIDR {cidr} has no address left for pod {pod}")]
    CidrExhausted {
        /// The CIDR.
        cidr: IpNet,
        /// The workload (or Pod) whose pod needed an address.
        owner: Box<ObjectRef>,
        /// The pod's name.
        pod: String,
    },
    /// Pods need addresses but no pod CIDR is configured.
    #[error("{owner}: no pod CIDR is configured to give pod {pod} an address")]
    NoPodCidr {
        /// The workload (or Pod) whose pod needed an address.
        owner: Box<ObjectRef>,
        /// The pod's name.
        pod: String,
    },
}

impl ExpandError {
    /// The object at fault.
    pub fn owner(&self) -> &ObjectRef {
        match self {
            Self::CidrExhausted { owner, .. } | Self::NoPodCidr { owner, .. } => owner,
        }
    }
}

/// Ranges up to this many addresses track their taken addresses in a bitmap (2 MiB at most);
/// larger ones (IPv6) in a set, as they cannot fill up.
const BITMAP_LIMIT: u128 = 1 << 24;

/// The taken offsets of one CIDR.
#[derive(Debug)]
enum Taken {
    Bits(Vec<u64>),
    Set(HashSet<u128>),
}

impl Taken {
    fn contains(&self, offset: u128) -> bool {
        match self {
            Taken::Bits(words) => words[(offset / 64) as usize] & (1 << (offset % 64)) != 0,
            Taken::Set(set) => set.contains(&offset),
        }
    }

    /// Marks `offset` taken; whether it was free.
    fn insert(&mut self, offset: u128) -> bool {
        match self {
            Taken::Bits(words) => {
                let (word, bit) = (&mut words[(offset / 64) as usize], 1u64 << (offset % 64));
                let free = *word & bit == 0;
                *word |= bit;
                free
            }
            Taken::Set(set) => set.insert(offset),
        }
    }

    /// Whether every offset of the 64-aligned word holding `offset` is taken (a bitmap skips
    /// whole words while probing).
    fn word_full(&self, offset: u128) -> bool {
        match self {
            Taken::Bits(words) => {
                offset.is_multiple_of(64) && words[(offset / 64) as usize] == u64::MAX
            }
            Taken::Set(_) => false,
        }
    }
}

/// One pod CIDR: its usable offsets `[first, end)` and which are taken.
#[derive(Debug)]
struct Space {
    cidr: IpNet,
    first: u128,
    end: u128,
    free: u128,
    taken: Taken,
}

impl Space {
    fn new(cidr: IpNet, used: &HashSet<IpAddr>) -> Self {
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        let end = match cidr {
            IpNet::V4(_) => size.saturating_sub(1),
            IpNet::V6(_) => size,
        };
        let first = 2.min(end);
        let taken = if end <= BITMAP_LIMIT {
            Taken::Bits(vec![0; end.div_ceil(64) as usize])
        } else {
            Taken::Set(HashSet::new())
        };
        let mut space = Space {
            cidr,
            first,
            end,
            free: end - first,
            taken,
        };
        if matches!(cidr, IpNet::V4(_)) && host_bits >= 8 {
            for node in 0..size / 256 {
                for offset in [0, 1, 255].map(|o| node * 256 + o) {
                    if (first..end).contains(&offset) {
                        space.take(offset);
                    }
                }
            }
        }
        for ip in used {
            if let Some(offset) = space.offset_of(*ip) {
                space.take(offset);
            }
        }
        space
    }

    fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        let offset = match (self.cidr, ip) {
            (IpNet::V4(n), IpAddr::V4(ip)) if n.contains(&ip) => {
                u128::from(u32::from(ip) - u32::from(n.network()))
            }
            (IpNet::V6(n), IpAddr::V6(ip)) if n.contains(&ip) => {
                u128::from(ip) - u128::from(n.network())
            }
            _ => return None,
        };
        (self.first..self.end).contains(&offset).then_some(offset)
    }

    fn address(&self, offset: u128) -> IpAddr {
        match self.cidr {
            IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
                u32::from(n.network()).wrapping_add(offset as u32),
            )),
            IpNet::V6(n) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(offset)))
            }
        }
    }

    fn take(&mut self, offset: u128) {
        if self.taken.insert(offset) {
            self.free -= 1;
        }
    }

    /// The pod's home offset: the rule's step 2.
    fn home(&self, namespace: &str, name: &str) -> u128 {
        let cidr = self.cidr.to_string();
        let parts = |salt: &[u8]| {
            stable_hash(&[salt, cidr.as_bytes(), namespace.as_bytes(), name.as_bytes()])
        };
        let wide = (u128::from(parts(b"hi")) << 64) | u128::from(parts(b"lo"));
        self.first + wide % (self.end - self.first)
    }

    /// Claims the pod's home address or the next free one (wrapping); `None` when full.
    fn claim(&mut self, namespace: &str, name: &str) -> Option<IpAddr> {
        if self.free == 0 {
            return None;
        }
        let mut offset = self.home(namespace, name);
        while self.taken.word_full(offset) || self.taken.contains(offset) {
            offset = if self.taken.word_full(offset) {
                offset + 64
            } else {
                offset + 1
            };
            if offset >= self.end {
                offset = self.first;
            }
        }
        self.take(offset);
        Some(self.address(offset))
    }
}

/// All pods of the file: the explicit ones with addresses as given, then the others with
/// addresses assigned by the rule in the module doc. `reserved` holds other addresses the file
/// uses (explicit slices' endpoints).
pub fn expand(
    explicit: Vec<PodFacts>,
    generated: Vec<GeneratedPod>,
    cidrs: &[IpNet],
    reserved: impl IntoIterator<Item = IpAddr>,
) -> Result<Vec<PodFacts>, ExpandError> {
    let (mut pods, unaddressed): (Vec<_>, Vec<_>) =
        explicit.into_iter().partition(|p| !p.addresses.is_empty());
    let addressed: HashSet<(String, String)> = pods
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect();
    let mut waiting: HashMap<(String, String), PodFacts> = unaddressed
        .into_iter()
        .map(|p| ((p.namespace.clone(), p.name.clone()), p))
        .collect();
    let mut claims = Vec::with_capacity(generated.len() + waiting.len());
    for mut g in generated {
        let key = (g.pod.namespace.clone(), g.pod.name.clone());
        if addressed.contains(&key) {
            continue;
        }
        if let Some(explicit) = waiting.remove(&key) {
            g.pod = explicit;
        }
        claims.push(g);
    }
    claims.extend(waiting.into_values().map(|pod| GeneratedPod {
        owner: ObjectRef {
            kind: "Pod",
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        },
        index: 0,
        pod,
    }));
    claims.sort_by(|a, b| {
        (a.index, &a.pod.namespace, &a.pod.name, &a.owner).cmp(&(
            b.index,
            &b.pod.namespace,
            &b.pod.name,
            &b.owner,
        ))
    });
    let used: HashSet<IpAddr> = pods
        .iter()
        .flat_map(|p| p.addresses.iter().copied())
        .chain(reserved)
        .collect();
    let mut spaces: Vec<Space> = cidrs.iter().map(|c| Space::new(*c, &used)).collect();
    for mut g in claims {
        if spaces.is_empty() {
            return Err(ExpandError::NoPodCidr {
                owner: Box::new(g.owner),
                pod: g.pod.name,
            });
        }
        let mut addresses = Vec::with_capacity(spaces.len());
        for space in &mut spaces {
            let ip = space.claim(&g.pod.namespace, &g.pod.name).ok_or_else(|| {
                ExpandError::CidrExhausted {
                    cidr: space.cidr,
                    owner: Box::new(g.owner.clone()),
                    pod: g.pod.name.clone(),
                }
            })?;
            addresses.push(ip);
        }
        g.pod.addresses = addresses;
        pods.push(g.pod);
    }
    Ok(pods)
}
