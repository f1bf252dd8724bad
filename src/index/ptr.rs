//! Which name an address's PTR record gives (R7): exactly one per address.
//!
//! Several Services may claim one address (a pod behind a headless and a ClusterIP Service, or
//! behind two headless ones). Every claim is kept, ordered by preference, and the best one is
//! answered: the hostname in its governing headless Service first, then another headless
//! Service (by dashed IP), then the rest; ties broken by namespace, then Service name.
//!
//! The claims on an address are what the index's PTR map holds for it (one map, not a second
//! copy in the writer): nearly always one claim, held inline, so no vector is allocated for it.
//! [`PtrMap`] keys IPv4 addresses by their 4 bytes, not by `IpAddr`'s 17: with one entry per
//! endpoint it is the index's largest table.
//!
//! Invariants: [`Claims`] is never empty, and its claims are sorted and distinct, so
//! [`Claims::best`] depends only on the set of claims, never on arrival order.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, PoisonError, RwLock};

use dashmap::DashMap;
use ipnet::IpNet;

use super::label::Label;
use crate::model::ServiceKey;

/// The claims on every claimed address, one map per family, and the claimed addresses in
/// order, for the question whether a reverse name's prefix holds any (its partial names
/// exist exactly then, as empty non-terminals of the reverse zone).
#[derive(Debug, Default)]
pub struct PtrMap {
    v4: DashMap<u32, Claims>,
    v6: DashMap<u128, Claims>,
    /// The keys of `v4` and `v6`, sorted; written only with them (the writer), read only for
    /// partial reverse names.
    ordered: RwLock<(BTreeSet<u32>, BTreeSet<u128>)>,
}

impl PtrMap {
    /// Applies `read` to the claims on `ip`, if any (holding the shard's read guard only
    /// meanwhile).
    pub fn read<R>(&self, ip: &IpAddr, read: impl FnOnce(&Claims) -> R) -> Option<R> {
        match ip {
            IpAddr::V4(v4) => self.v4.get(&u32::from(*v4)).map(|c| read(c.value())),
            IpAddr::V6(v6) => self.v6.get(&u128::from(*v6)).map(|c| read(c.value())),
        }
    }

    /// Sets the claims on `ip`.
    pub fn insert(&self, ip: IpAddr, claims: Claims) {
        let added = match ip {
            IpAddr::V4(v4) => self.v4.insert(u32::from(v4), claims).is_none(),
            IpAddr::V6(v6) => self.v6.insert(u128::from(v6), claims).is_none(),
        };
        if added {
            let mut ordered = self.ordered.write().unwrap_or_else(PoisonError::into_inner);
            match ip {
                IpAddr::V4(v4) => drop(ordered.0.insert(u32::from(v4))),
                IpAddr::V6(v6) => drop(ordered.1.insert(u128::from(v6))),
            }
        }
    }

    /// Whether some claimed address lies in `network`.
    pub fn any_within(&self, network: &IpNet) -> bool {
        let ordered = self.ordered.read().unwrap_or_else(PoisonError::into_inner);
        match network {
            IpNet::V4(net) => {
                let range = u32::from(net.network())..=u32::from(net.broadcast());
                ordered.0.range(range).next().is_some()
            }
            IpNet::V6(net) => {
                let range = u128::from(net.network())..=u128::from(net.broadcast());
                ordered.1.range(range).next().is_some()
            }
        }
    }

    /// Every claimed address and its answered target (R7), in no particular order.
    pub fn targets(&self) -> Vec<(IpAddr, super::PtrTarget)> {
        let target = |claims: &Claims| {
            let best = claims.best();
            super::PtrTarget {
                label: best.label.clone(),
                service: best.service.clone(),
            }
        };
        let v4 = self.v4.iter().map(|entry| {
            (
                IpAddr::from(Ipv4Addr::from(*entry.key())),
                target(entry.value()),
            )
        });
        let v6 = self.v6.iter().map(|entry| {
            (
                IpAddr::from(Ipv6Addr::from(*entry.key())),
                target(entry.value()),
            )
        });
        v4.chain(v6).collect()
    }

    /// Removes every claim on `ip`.
    pub fn remove(&self, ip: &IpAddr) {
        let removed = match ip {
            IpAddr::V4(v4) => self.v4.remove(&u32::from(*v4)).is_some(),
            IpAddr::V6(v6) => self.v6.remove(&u128::from(*v6)).is_some(),
        };
        if removed {
            let mut ordered = self.ordered.write().unwrap_or_else(PoisonError::into_inner);
            match ip {
                IpAddr::V4(v4) => drop(ordered.0.remove(&u32::from(*v4))),
                IpAddr::V6(v6) => drop(ordered.1.remove(&u128::from(*v6))),
            }
        }
    }
}

/// Preference rank of a claim; lower wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClaimRank {
    /// A Service's own ClusterIP, or an endpoint's hostname in its governing headless Service.
    Primary,
    /// An endpoint without hostname in a headless Service.
    Headless,
    /// An endpoint of a ClusterIP Service.
    Other,
}

/// One Service's claim on an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PtrClaim {
    /// Preference rank.
    pub rank: ClaimRank,
    /// The claiming Service.
    pub service: Arc<ServiceKey>,
    /// The label below the Service name (`None`: the Service name itself, for a ClusterIP).
    pub label: Option<Label>,
}

/// Every claim on one address: at least one, sorted by preference, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claims {
    /// The usual case: a single claim.
    One(PtrClaim),
    /// Two or more, best first.
    Many(Box<[PtrClaim]>),
}

impl Claims {
    /// The claims, best first.
    pub fn as_slice(&self) -> &[PtrClaim] {
        match self {
            Claims::One(claim) => std::slice::from_ref(claim),
            Claims::Many(claims) => claims,
        }
    }

    /// The claim to answer with.
    pub fn best(&self) -> &PtrClaim {
        match self {
            Claims::One(claim) => claim,
            Claims::Many(claims) => &claims[0],
        }
    }

    /// `current` (sorted, distinct) without `removed` and with `added`; `None` when nothing is
    /// left.
    pub fn updated<'a>(
        current: Option<&Claims>,
        removed: impl IntoIterator<Item = &'a PtrClaim>,
        added: impl IntoIterator<Item = &'a PtrClaim>,
    ) -> Option<Claims> {
        let mut claims: Vec<PtrClaim> = current.map(|c| c.as_slice().to_vec()).unwrap_or_default();
        for claim in removed {
            if let Ok(position) = claims.binary_search(claim) {
                claims.remove(position);
            }
        }
        for claim in added {
            if let Err(position) = claims.binary_search(claim) {
                claims.insert(position, claim.clone());
            }
        }
        match claims.len() {
            0 => None,
            1 => claims.pop().map(Claims::One),
            _ => Some(Claims::Many(claims.into_boxed_slice())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(rank: ClaimRank, ns: &str, svc: &str, label: Option<&str>) -> PtrClaim {
        PtrClaim {
            rank,
            service: Arc::new(ServiceKey::new(ns, svc)),
            label: label.map(Label::new),
        }
    }

    #[test]
    fn preference_order_is_independent_of_arrival() {
        let claims = [
            claim(ClaimRank::Other, "a", "web", Some("10-0-0-1")),
            claim(ClaimRank::Headless, "b", "peers", Some("10-0-0-1")),
            claim(ClaimRank::Primary, "z", "db", Some("db-0")),
            claim(ClaimRank::Primary, "c", "db", Some("db-0")),
        ];
        let expected = claim(ClaimRank::Primary, "c", "db", Some("db-0"));
        for rotation in 0..claims.len() {
            let mut table: Option<Claims> = None;
            for index in 0..claims.len() {
                let claim = &claims[(index + rotation) % claims.len()];
                table = Claims::updated(table.as_ref(), [], [claim]);
            }
            assert_eq!(table.as_ref().map(Claims::best), Some(&expected));
            // Adding one again changes nothing.
            let again = Claims::updated(table.as_ref(), [], [&claims[rotation]]);
            assert_eq!(again, table);
        }
    }

    #[test]
    fn removing_a_claim_promotes_the_next() {
        let (db, web) = (
            claim(ClaimRank::Primary, "a", "db", Some("db-0")),
            claim(ClaimRank::Other, "a", "web", Some("10-0-0-1")),
        );
        let both = Claims::updated(None, [], [&web, &db]);
        assert!(matches!(both, Some(Claims::Many(_))));
        let left = Claims::updated(both.as_ref(), [&db], []);
        assert_eq!(left, Some(Claims::One(web.clone())));
        assert_eq!(left.as_ref().unwrap().best().service.name, "web");
        assert_eq!(Claims::updated(left.as_ref(), [&web], []), None);
    }

    #[test]
    fn ptr_map_keeps_families_apart() {
        let map = PtrMap::default();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let db = claim(ClaimRank::Primary, "a", "db", Some("db-0"));
        let web = claim(ClaimRank::Other, "a", "web", None);
        map.insert(v4, Claims::One(db.clone()));
        map.insert(mapped, Claims::One(web.clone()));
        assert_eq!(map.read(&v4, |c| c.best().clone()), Some(db));
        assert_eq!(map.read(&mapped, |c| c.best().clone()), Some(web));
        map.remove(&v4);
        assert_eq!(map.read(&v4, |c| c.best().clone()), None);
        assert!(map.read(&mapped, |_| ()).is_some());
    }

    #[test]
    fn one_claim_costs_no_more_than_the_claim() {
        assert_eq!(
            std::mem::size_of::<Claims>(),
            std::mem::size_of::<PtrClaim>()
        );
    }
}
