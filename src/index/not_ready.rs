//! Endpoints that are not ready, kept only so `/debug/explain` can say why a name does not
//! answer ("endpoint web-3 is not ready").
//!
//! They are no part of any answer, so they live beside the published records, not in them:
//! a not-ready endpoint that comes, goes or changes leaves the records, the serial (R8) and
//! the answer caches alone.
//!
//! Invariant: [`not_ready_of`] is pure, lists each address once, sorted, and leaves out an
//! address that is ready in some slice of the Service (or when nothing below the Service can
//! exist: an ExternalName).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::stored::{StoredService, StoredSlice};
use crate::model::ServiceKind;

/// An endpoint address that is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReadyEndpoint {
    /// The address.
    pub ip: IpAddr,
    /// Its hostname, if any.
    pub hostname: Option<Arc<str>>,
    /// Its pod's name, if known.
    pub pod_name: Option<Arc<str>>,
}

/// The not-ready endpoints of a Service and its slices (in any order); the first slice that
/// names an address wins, as for ready ones.
pub(crate) fn not_ready_of<'a>(
    service: &StoredService,
    slices: impl IntoIterator<Item = &'a StoredSlice> + Clone,
) -> Vec<NotReadyEndpoint> {
    if matches!(service.kind, ServiceKind::ExternalName(_)) {
        return Vec::new();
    }
    let mut not_ready: BTreeMap<IpAddr, NotReadyEndpoint> = BTreeMap::new();
    for slice in slices.clone() {
        for endpoint in slice.endpoints.iter().filter(|e| !e.ready) {
            for ip in endpoint.addresses.as_slice() {
                not_ready.entry(*ip).or_insert_with(|| NotReadyEndpoint {
                    ip: *ip,
                    hostname: endpoint.hostname.clone(),
                    pod_name: endpoint.pod_name.clone(),
                });
            }
        }
    }
    if not_ready.is_empty() {
        return Vec::new();
    }
    for slice in slices {
        for endpoint in slice.endpoints.iter().filter(|e| e.ready) {
            for ip in endpoint.addresses.as_slice() {
                not_ready.remove(ip);
            }
        }
    }
    not_ready.into_values().collect()
}
