//! Which name an address's PTR record gives (R7): exactly one per address.
//!
//! Several Services may claim one address (a pod behind a headless and a ClusterIP Service, or
//! behind two headless ones). Every claim is kept, ordered by preference, and the best one is
//! published: the hostname in its governing headless Service first, then another headless
//! Service (by dashed IP), then the rest; ties broken by namespace, then Service name.
//!
//! Invariant: [`PtrClaims::best`] depends only on the set of claims, never on arrival order.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::ServiceKey;

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
    pub label: Option<Arc<str>>,
}

/// Every claim on every address, owned by the index writer. Each address's claims are a
/// sorted, deduplicated vector: nearly always one claim, so no tree nodes are spent on it.
#[derive(Debug, Default)]
pub struct PtrClaims {
    claims: HashMap<IpAddr, Vec<PtrClaim>>,
}

impl PtrClaims {
    /// Adds a claim.
    pub fn add(&mut self, ip: IpAddr, claim: PtrClaim) {
        let claims = self
            .claims
            .entry(ip)
            .or_insert_with(|| Vec::with_capacity(1));
        if let Err(position) = claims.binary_search(&claim) {
            claims.insert(position, claim);
        }
    }

    /// Removes one claim.
    pub fn remove(&mut self, ip: IpAddr, claim: &PtrClaim) {
        if let Some(claims) = self.claims.get_mut(&ip) {
            if let Ok(position) = claims.binary_search(claim) {
                claims.remove(position);
            }
            if claims.is_empty() {
                self.claims.remove(&ip);
            }
        }
    }

    /// The claim to publish for `ip`, if any.
    pub fn best(&self, ip: &IpAddr) -> Option<&PtrClaim> {
        self.claims.get(ip).and_then(|set| set.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(rank: ClaimRank, ns: &str, svc: &str, label: Option<&str>) -> PtrClaim {
        PtrClaim {
            rank,
            service: Arc::new(ServiceKey::new(ns, svc)),
            label: label.map(Arc::from),
        }
    }

    #[test]
    fn preference_order_is_independent_of_arrival() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let claims = [
            claim(ClaimRank::Other, "a", "web", Some("10-0-0-1")),
            claim(ClaimRank::Headless, "b", "peers", Some("10-0-0-1")),
            claim(ClaimRank::Primary, "z", "db", Some("db-0")),
            claim(ClaimRank::Primary, "c", "db", Some("db-0")),
        ];
        let expected = claim(ClaimRank::Primary, "c", "db", Some("db-0"));
        for rotation in 0..claims.len() {
            let mut table = PtrClaims::default();
            for index in 0..claims.len() {
                let claim = claims[(index + rotation) % claims.len()].clone();
                table.add(ip, claim);
            }
            assert_eq!(table.best(&ip), Some(&expected));
        }
    }

    #[test]
    fn removing_a_claim_promotes_the_next() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut table = PtrClaims::default();
        let (db, web) = (
            claim(ClaimRank::Primary, "a", "db", Some("db-0")),
            claim(ClaimRank::Other, "a", "web", Some("10-0-0-1")),
        );
        table.add(ip, db.clone());
        table.add(ip, web.clone());
        table.remove(ip, &db);
        assert_eq!(table.best(&ip).unwrap().service.name, "web");
        table.remove(ip, &web);
        assert!(table.best(&ip).is_none());
        assert!(table.claims.is_empty());
    }
}
