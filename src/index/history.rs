//! The recent changes of the published state, for incremental transfers (IXFR, RFC 1995).
//!
//! Each serial step the writer publishes is one [`Change`]: the Services whose records were
//! replaced (their records before and after, shared `Arc`s, not copies) and the PTR targets
//! that moved with them. [`History::since`] condenses the changes after a serial into one difference
//! per Service and per address: the records it had at that serial and those it has now, from
//! which a transfer lists what to delete and what to add.
//!
//! Memory: a change holds the replaced records alive until it leaves the history (about
//! 0.1 KiB per endpoint of the changed Service, plus some 100 bytes); the history keeps at
//! most `limit` changes, the oldest dropped first, and nothing at all when `limit` is 0.
//!
//! Invariants: changes are kept in serial order, each `after` one step past its `before`;
//! they are appended under the publication lock, with the serial they made, so a reader
//! holding that lock sees the history and the serial agree.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use super::{PtrTarget, ServiceRecords};
use crate::model::ServiceKey;

/// One PTR target that changed: the address, its target before and after (`None`: none).
pub type PtrChange = (IpAddr, Option<PtrTarget>, Option<PtrTarget>);

/// One serial step.
#[derive(Debug)]
struct Change {
    /// The serial before the step.
    before: u32,
    /// The serial it made.
    after: u32,
    /// The Services whose records were replaced, in order.
    services: Box<[ServiceChange]>,
    /// The PTR targets that moved with them.
    ptr: Box<[PtrChange]>,
}

/// The changes between a serial and the current one, one entry per Service and address.
#[derive(Debug, Default)]
pub struct Changes {
    /// Per changed Service: its key, its records at the old serial and now.
    pub services: Vec<ServiceChange>,
    /// Per changed address: its PTR target at the old serial and now.
    pub ptr: Vec<PtrChange>,
}

/// One Service's records at an old serial and now.
#[derive(Clone, Debug)]
pub struct ServiceChange {
    /// The Service.
    pub key: Arc<ServiceKey>,
    /// Its records at the old serial (`None`: not published then).
    pub old: Option<Arc<ServiceRecords>>,
    /// Its records now (`None`: not published now).
    pub new: Option<Arc<ServiceRecords>>,
}

/// The last `limit` serial steps.
#[derive(Debug, Default)]
pub struct History {
    limit: usize,
    changes: VecDeque<Change>,
}

impl History {
    /// Keeps at most `limit` changes from now on (0: none).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.trim();
    }

    /// Whether changes are kept at all.
    pub fn is_on(&self) -> bool {
        self.limit > 0
    }

    /// How many changes are kept.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Appends the step from `before` to `after`.
    pub fn record(
        &mut self,
        before: u32,
        after: u32,
        services: Vec<ServiceChange>,
        ptr: Vec<PtrChange>,
    ) {
        if !self.is_on() {
            return;
        }
        if self.changes.back().is_some_and(|last| last.after != before) {
            self.changes.clear(); // a gap: nothing before it can be condensed any more
        }
        self.changes.push_back(Change {
            before,
            after,
            services: services.into_boxed_slice(),
            ptr: ptr.into_boxed_slice(),
        });
        self.trim();
    }

    fn trim(&mut self) {
        while self.changes.len() > self.limit {
            self.changes.pop_front();
        }
    }

    /// The changes from `serial` to `current`, condensed; `None` when the history does not
    /// reach back to `serial` or forward to `current`.
    pub fn since(&self, serial: u32, current: u32) -> Option<Changes> {
        if serial == current {
            return Some(Changes::default());
        }
        let start = self.changes.iter().position(|c| c.before == serial)?;
        if self.changes.back()?.after != current {
            return None;
        }
        let mut services: HashMap<Arc<ServiceKey>, ServiceChange> = HashMap::new();
        let mut order: Vec<Arc<ServiceKey>> = Vec::new();
        let mut ptr: HashMap<IpAddr, (Option<PtrTarget>, Option<PtrTarget>)> = HashMap::new();
        for change in self.changes.range(start..) {
            for step in change.services.iter() {
                match services.get_mut(&step.key) {
                    Some(entry) => entry.new = step.new.clone(),
                    None => {
                        order.push(step.key.clone());
                        services.insert(step.key.clone(), step.clone());
                    }
                }
            }
            for (ip, old, new) in change.ptr.iter() {
                ptr.entry(*ip)
                    .and_modify(|entry| entry.1 = new.clone())
                    .or_insert_with(|| (old.clone(), new.clone()));
            }
        }
        let services = order
            .into_iter()
            .filter_map(|key| services.remove(&key))
            .filter(|change| change.old != change.new)
            .collect();
        let mut ptr: Vec<PtrChange> = ptr
            .into_iter()
            .filter(|(_, (old, new))| old != new)
            .map(|(ip, (old, new))| (ip, old, new))
            .collect();
        ptr.sort_unstable_by_key(|(ip, _, _)| *ip);
        Some(Changes { services, ptr })
    }
}
