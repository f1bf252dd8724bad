//! A consistent view of everything the index publishes, for a zone transfer.
//!
//! A query reads one Service's records; a transfer reads all of them, and must see one state
//! of the index, not half of a change: its SOA serial has to name exactly what it lists, or a
//! secondary would keep records under a serial that never held them. The writer publishes each
//! change (records, PTR claims, serial) while holding the publication lock; [`Index::snapshot`]
//! takes the same lock while it copies the map's `Arc`s (and, when asked, the PTR targets),
//! then lets go: the transfer is encoded from the copy, never holding the lock.
//!
//! Invariants:
//! - the serial of a snapshot is the serial that was served with exactly its records;
//! - the lock is held only to copy pointers (about 1 ms per 10k Services), so the writer waits
//!   at most that long, and queries never take it;
//! - Services are listed sorted by (namespace, name), PTR targets by address, so two
//!   transfers of one state list the same records in the same order.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError};

use super::{Index, PtrTarget, ServiceRecords};

/// One Service in a snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotService {
    /// Its namespace.
    pub namespace: Box<str>,
    /// Its name.
    pub name: Box<str>,
    /// Its published records.
    pub records: Arc<ServiceRecords>,
}

/// The index's published state at one serial.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The SOA serial of this state.
    pub serial: u32,
    /// Every published Service, sorted by (namespace, name).
    pub services: Vec<SnapshotService>,
    /// Every claimed address and its PTR target, sorted by address; empty unless asked for.
    pub ptr: Vec<(IpAddr, PtrTarget)>,
}

impl Index {
    /// The changes from `serial` to the current serial, condensed, with the current serial;
    /// `None` when the history does not reach back to `serial` (or is off).
    pub fn changes_since(&self, serial: u32) -> Option<(u32, super::Changes)> {
        let history = self
            .shared
            .publication
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.serial();
        history
            .since(serial, current)
            .map(|changes| (current, changes))
    }

    /// How many serial steps the history holds.
    pub fn history_len(&self) -> usize {
        let history = self
            .shared
            .publication
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        history.len()
    }

    /// Copies the published state at one serial; with `with_ptr`, the PTR targets too (a
    /// reverse zone's transfer needs them, a forward zone's does not).
    pub fn snapshot(&self, with_ptr: bool) -> Snapshot {
        let shared = &self.shared;
        let (serial, services, mut ptr) = {
            let _publication = shared
                .publication
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let services: Vec<(Box<[u8]>, Arc<ServiceRecords>)> = shared
                .services
                .iter()
                .map(|entry| (entry.key().as_bytes().into(), entry.value().clone()))
                .collect();
            let ptr = match with_ptr {
                true => shared.ptr.targets(),
                false => Vec::new(),
            };
            (self.serial(), services, ptr)
        };
        let mut services: Vec<SnapshotService> = services
            .into_iter()
            .filter_map(|(key, records)| {
                // The key spells "<name>.<namespace>"; neither holds a dot in Kubernetes.
                let key = std::str::from_utf8(&key).ok()?;
                let (name, namespace) = key.split_once('.')?;
                Some(SnapshotService {
                    namespace: namespace.into(),
                    name: name.into(),
                    records,
                })
            })
            .collect();
        services.sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        ptr.sort_unstable_by_key(|(ip, _)| *ip);
        Snapshot {
            serial,
            services,
            ptr,
        }
    }
}
