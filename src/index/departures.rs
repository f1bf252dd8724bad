//! Endpoints that left a slice without turning not-ready first, kept for a short grace.
//!
//! The EndpointSlice controller moves an endpoint between slices with two writes; if the one
//! removing it arrives first, the endpoint would vanish from the answers until the other
//! arrives. A ready endpoint that disappears from its slice without appearing in any other slice
//! of its Service is therefore kept ("departing") for a grace period: it comes back for real
//! when the other write arrives, or goes when the grace ends. An endpoint that turns not-ready
//! first (the normal way a pod leaves) is removed at once, as are all endpoints of a deleted
//! Service or of a complete list.
//!
//! Invariant: a departing endpoint's address is in none of its Service's stored slices.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Instant;

use super::stored::{Slices, StoredSlice};

/// One departed endpoint, as a one-endpoint slice that keeps its ports and family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departed {
    /// The endpoint, in a slice of its own.
    pub slice: StoredSlice,
    /// When it stops being answered.
    pub until: Instant,
}

/// The ready endpoints of `old` whose addresses are in none of `slices`, departing until `until`.
pub fn departed_from(old: &StoredSlice, slices: &Slices, until: Instant) -> Vec<Departed> {
    let present = addresses_in(slices);
    old.endpoints
        .iter()
        .filter(|endpoint| endpoint.ready)
        .filter(|endpoint| {
            !endpoint
                .addresses
                .as_slice()
                .iter()
                .any(|ip| present.contains(ip))
        })
        .map(|endpoint| Departed {
            slice: StoredSlice {
                name: old.name.clone(),
                ports: old.ports.clone(),
                endpoints: Box::new([endpoint.clone()]),
            },
            until,
        })
        .collect()
}

/// Drops departed endpoints whose grace ended or whose address is back in `slices`.
pub fn prune(departing: &mut Vec<Departed>, slices: &Slices, now: Instant) {
    if departing.is_empty() {
        return;
    }
    let present = addresses_in(slices);
    departing.retain(|d| {
        d.until > now
            && !d
                .slice
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.as_slice())
                .any(|ip| present.contains(ip))
    });
}

/// Every address in `slices`, ready or not.
fn addresses_in(slices: &Slices) -> HashSet<IpAddr> {
    slices
        .iter()
        .flat_map(|slice| {
            slice
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.as_slice().iter().copied())
        })
        .collect()
}
