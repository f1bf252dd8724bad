//! The in-memory index the DNS side answers from: one writer, many lock-free readers.
//!
//! ```text
//!  source (file / watch)  --model types-->  IndexWriter (&mut self, one owner)
//!                                              | rebuilds one Service's ServiceRecords
//!                                              v publishes Arc<ServiceRecords> whole
//!  dns handlers  <--Index (Clone)--  DashMap "svc.ns" -> Arc<ServiceRecords>
//!                                    PtrMap ip -> Claims (PTR), namespaces, serial, synced
//! ```
//!
//! Invariants:
//! - only [`IndexWriter`] mutates the maps, and it cannot be cloned;
//! - a Service's answers change atomically: its records are rebuilt aside and swapped in as one
//!   `Arc`, so a reader sees all of a slice update or none of it;
//! - a reader holds a shard guard only for one step: a `get` (to clone the `Arc` out, or to
//!   read where it points for a prefetch) or reading the table's layout for a prefetch; never
//!   across `.await`;
//! - the lookup key is built on the stack: a lookup allocates nothing;
//! - the serial moves (and only moves) when some published answer changed (R8), once per
//!   writer step; the generation moves with every Service published anew and every serial
//!   step; what is kept only for explanations (not-ready endpoints) lives beside the records
//!   and moves neither.
//!
//! Nothing here names a Kubernetes type; sources speak [`crate::model`].

mod departures;
mod history;
mod inline;
mod key;
mod label;
mod not_ready;
mod ptr;
mod records;
mod snapshot;
mod stored;
mod writer;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

pub use history::{Changes, PtrChange, ServiceChange};
use key::{MAX_KEY_LEN, MapKey, key_bytes};
pub use label::{Label, dashed_ip, undashed_ip};
pub use not_ready::NotReadyEndpoint;
use ptr::PtrMap;
pub use ptr::{ClaimRank, Claims, PtrClaim};
pub use records::{ReadyEndpoint, Retirement, ServiceRecords, srv_label_order};
pub use snapshot::{Snapshot, SnapshotService};
pub use writer::IndexWriter;

use crate::model::ServiceKey;
use crate::sys::prefetch::{prefetch_address, prefetch_arc};

/// The name an address's PTR record points at: `<label>.<svc>.<ns>.svc.<zone>.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtrTarget {
    /// The label below the Service name; `None` for a ClusterIP (the Service name itself).
    pub label: Option<Label>,
    /// The Service.
    pub service: Arc<ServiceKey>,
}

impl From<&PtrClaim> for PtrTarget {
    fn from(claim: &PtrClaim) -> Self {
        PtrTarget {
            label: claim.label.clone(),
            service: claim.service.clone(),
        }
    }
}

/// `a < b` in serial number arithmetic (RFC 1982): `b` is ahead of `a` by less than 2^31.
pub fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// The hash of the name maps: foldhash, seeded per process. Their keys come from the
/// Kubernetes API (or the cluster file), not from DNS clients, and a lookup hashes on every
/// query, where SipHash cost several percent of the CPU.
type NameHasher = foldhash::fast::RandomState;

#[derive(Debug)]
struct Shared {
    services: DashMap<MapKey, Arc<ServiceRecords>, NameHasher>,
    /// Not-ready endpoints of the Services that have any, for explanations only: beside the
    /// records, so they never move the serial.
    not_ready: DashMap<MapKey, Arc<[NotReadyEndpoint]>, NameHasher>,
    namespaces: DashMap<Box<str>, usize, NameHasher>,
    /// Every Service's claims on each address; the best one is answered (R7).
    ptr: PtrMap,
    serial: AtomicU32,
    /// Moves whenever a published answer may have changed (each Service published anew, each
    /// serial step): what cached answers are checked against.
    generation: AtomicU32,
    /// Held by the writer while it publishes a change (and records it in the history), and by
    /// a snapshot while it copies (`snapshot.rs`); never by a query.
    publication: Mutex<history::History>,
    /// The serial as last published, for whoever waits for it to change (NOTIFY); the writer
    /// sends without waiting, whether anyone listens or not.
    serial_changes: tokio::sync::watch::Sender<u32>,
    synced: AtomicBool,
    /// Ready endpoint addresses over all published Services.
    endpoints: AtomicUsize,
    /// Service names plus endpoint labels over all published Services.
    names: AtomicUsize,
}

/// A cheap, clonable read handle on the index.
#[derive(Clone, Debug)]
pub struct Index {
    shared: Arc<Shared>,
}

impl Index {
    /// Creates an empty, not yet synced index and its one writer; the SOA serial starts at
    /// `initial_serial` (the caller passes the Unix time so restarts move it forward).
    pub fn new(
        initial_serial: u32,
        srv_target: crate::config::SrvTargetStyle,
    ) -> (Index, IndexWriter) {
        let shared = Arc::new(Shared {
            services: DashMap::with_hasher(NameHasher::default()),
            not_ready: DashMap::with_hasher(NameHasher::default()),
            namespaces: DashMap::with_hasher(NameHasher::default()),
            ptr: PtrMap::default(),
            serial: AtomicU32::new(initial_serial),
            generation: AtomicU32::new(0),
            publication: Mutex::new(history::History::default()),
            serial_changes: tokio::sync::watch::Sender::new(initial_serial),
            synced: AtomicBool::new(false),
            endpoints: AtomicUsize::new(0),
            names: AtomicUsize::new(0),
        });
        let index = Index {
            shared: shared.clone(),
        };
        (index, IndexWriter::new(shared, srv_target))
    }

    /// The records of Service `name` in `namespace` (both lowercase), if it exists.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<ServiceRecords>> {
        let mut buffer = [0u8; MAX_KEY_LEN];
        let key = key_bytes(&mut buffer, namespace, name)?;
        self.shared
            .services
            .get(key)
            .map(|entry| entry.value().clone())
    }

    /// Asks the CPU to start loading the map's entry for Service `name` (both lowercase),
    /// without reading it: the first of a batch's three steps towards [`Self::service`] (this,
    /// [`Self::prefetch_service`], then the lookup), each taken for the whole batch so that
    /// the loads of a step overlap.
    ///
    /// The entry's address is computed from the name's hash and the table's layout (hashbrown,
    /// under dashmap: control bytes from `data_end` up, buckets from it down; a name is
    /// usually in the first bucket it probes or the next). Should that layout ever change, the
    /// hint merely points elsewhere: answers do not depend on it.
    pub fn prefetch_service_entry(&self, namespace: &str, name: &str) {
        let mut buffer = [0u8; MAX_KEY_LEN];
        let Some(key) = key_bytes(&mut buffer, namespace, name) else {
            return;
        };
        let services = &self.shared.services;
        let hash = services.hash_usize(&key);
        let Some(shard) = services.shards().get(services.determine_shard(hash)) else {
            return;
        };
        let table = shard.read();
        if table.is_empty() {
            return;
        }
        let position = hash & (table.buckets() - 1);
        let buckets_end = table.data_end().as_ptr();
        prefetch_address(buckets_end.cast::<u8>().wrapping_add(position));
        for probe in [position, position + 1] {
            prefetch_address(buckets_end.wrapping_sub(probe + 1).cast::<u8>());
        }
    }

    /// Asks the CPU to start loading Service `name`'s records (both lowercase), for a
    /// [`Self::service`] soon after: a batch asks for all of its Services first, so their
    /// loads overlap. Reads the map (its slot for the name) but not the records.
    pub fn prefetch_service(&self, namespace: &str, name: &str) {
        let mut buffer = [0u8; MAX_KEY_LEN];
        if let Some(key) = key_bytes(&mut buffer, namespace, name)
            && let Some(entry) = self.shared.services.get(key)
        {
            prefetch_arc(entry.value());
        }
    }

    /// The not-ready endpoints of Service `name` in `namespace` (both lowercase), sorted by
    /// address; empty when it has none or does not exist. For explanations, not answers.
    pub fn not_ready(&self, namespace: &str, name: &str) -> Arc<[NotReadyEndpoint]> {
        let mut buffer = [0u8; MAX_KEY_LEN];
        key_bytes(&mut buffer, namespace, name)
            .and_then(|key| self.shared.not_ready.get(key))
            .map_or_else(|| Arc::from([]), |entry| entry.value().clone())
    }

    /// Whether some Service lives in `namespace`, so `<ns>.svc.<zone>` exists (R9).
    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.shared.namespaces.contains_key(namespace)
    }

    /// The PTR target of `ip`, if any Service claims it (R7).
    pub fn ptr(&self, ip: &IpAddr) -> Option<PtrTarget> {
        self.shared.ptr.read(ip, |claims| {
            let best = claims.best();
            PtrTarget {
                label: best.label.clone(),
                service: best.service.clone(),
            }
        })
    }

    /// Whether some Service claims an address in `network` (R7): a partial reverse name
    /// (`10.in-addr.arpa`) exists exactly then.
    pub fn claims_within(&self, network: &ipnet::IpNet) -> bool {
        self.shared.ptr.any_within(network)
    }

    /// The SOA serial: it moves once per change of the published state (R8).
    pub fn serial(&self) -> u32 {
        self.shared.serial.load(Ordering::Acquire)
    }

    /// A counter that moves whenever a published answer may have changed, the SOA serial
    /// included: an answer computed after reading it stays valid while it reads the same.
    pub fn generation(&self) -> u32 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// A receiver that wakes when the serial moves or the index turns synced (it holds the
    /// serial last published).
    pub fn serial_changes(&self) -> tokio::sync::watch::Receiver<u32> {
        self.shared.serial_changes.subscribe()
    }

    /// Whether every source has delivered its first complete state (R11).
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Number of Services published.
    pub fn service_count(&self) -> usize {
        self.shared.services.len()
    }

    /// Number of ready endpoint addresses published, over all Services.
    pub fn endpoint_count(&self) -> usize {
        self.shared.endpoints.load(Ordering::Relaxed)
    }

    /// Number of names answerable below Services: Service names and endpoint labels.
    pub fn name_count(&self) -> usize {
        self.shared.names.load(Ordering::Relaxed)
    }
}
