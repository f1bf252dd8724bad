//! The index's single writer: applies source events and publishes whole Services.
//!
//! The writer keeps, per Service, its inputs (the Service and its slices by name, converted to
//! the compact types of `stored.rs`, whose strings the records share) and what it last
//! published. Every event touches one Service (two when a slice changes owner), rebuilds
//! that Service's [`ServiceRecords`] aside and swaps the new `Arc` in, so readers see a slice
//! update entirely or not at all. `replace_all` applies a complete list: it rebuilds what changed
//! and removes what vanished, Service by Service, holding no second copy of the world.
//!
//! Invariants:
//! - `slice_owner` names, for every stored slice, the Service whose `slices` holds it, by the
//!   same `Arc<ServiceKey>` that keys `services` (and that its PTR claims name), so a Service's
//!   key is allocated once;
//! - a Service is published exactly when its Service object is known; slices that arrive first
//!   wait in its state;
//! - `namespaces` counts, per namespace, the published Services that hold a name
//!   ([`ServiceRecords::holds_names`]): `<ns>.svc.<zone>` exists exactly when a name below it
//!   does, as in a transferred zone;
//! - every public mutation is one step: the generation moves with each Service it publishes
//!   anew, the serial once per step that changed anything (to the step's version when that is
//!   ahead, else by one); the not-ready endpoints (explanations only) are published beside the
//!   records and move neither;
//! - a published value is retired ([`ServiceRecords::is_retired`]) once its replacement is in
//!   the map (or the Service is gone from it), before the generation moves;
//! - a step runs under the publication lock, so a snapshot (`snapshot.rs`) never sees part of
//!   one, and its changes enter the history (`history.rs`) with the serial they made.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use std::time::{Duration, Instant};

use super::departures::{Departed, departed_from, prune};
use super::history::{PtrChange, ServiceChange};
use super::label::Label;
use super::label::dashed_ip;
use super::not_ready::{NotReadyEndpoint, not_ready_of};
use super::ptr::{ClaimRank, Claims, PtrClaim};
use super::records::{RecordSettings, ServiceRecords};
use super::stored::{Slices, StoredService, StoredSlice};
use super::{MapKey, PtrTarget, Shared, serial_lt};
use crate::config::SrvTargetStyle;
use crate::model::{ClusterState, EndpointSlice, Service, ServiceKey, ServiceKind, SliceKey};

#[derive(Debug, Default)]
struct ServiceState {
    service: Option<StoredService>,
    slices: Slices,
    /// What was last published; its PTR claims are derived from it ([`claims_of`]) rather
    /// than stored.
    published: Option<Arc<ServiceRecords>>,
    /// The not-ready endpoints last published beside the records (empty: none published).
    not_ready: Arc<[NotReadyEndpoint]>,
    /// Endpoints that left a slice and are kept for the departure grace.
    departing: Vec<Departed>,
}

impl ServiceState {
    /// Keeps the ready endpoints of `old` (a slice just replaced or removed) that are in none
    /// of the current slices answering for `grace` (none when it is zero).
    fn keep_departing(&mut self, old: &StoredSlice, grace: Duration) {
        if !grace.is_zero() {
            let departed = departed_from(old, &self.slices, Instant::now() + grace);
            self.departing.extend(departed);
        }
    }
}

/// The one writer of an [`super::Index`]. Not `Clone`: ownership is the write lock.
#[derive(Debug)]
pub struct IndexWriter {
    shared: Arc<Shared>,
    settings: RecordSettings,
    /// Boxed: the table then holds 16-byte entries at its load factor, not 112-byte ones.
    services: HashMap<Arc<ServiceKey>, Box<ServiceState>>,
    /// Keyed by [`slice_id`]: one allocation per slice, not a `SliceKey`'s two.
    slice_owner: HashMap<Box<str>, Arc<ServiceKey>>,
    /// How long a ready endpoint that vanished from its slice keeps answering (0: not at all).
    departure_grace: Duration,
    /// The version (resourceVersion, file time) of what the next step applies, if known.
    version: Option<u32>,
    /// The step in progress: what it changed so far.
    step: Step,
    /// Whether a step changed anything yet (the first takes its version whatever it is).
    stepped: bool,
}

/// What one step (one public mutation) changed.
#[derive(Debug, Default)]
struct Step {
    /// Whether any published value changed.
    changed: bool,
    /// Whether to keep the changes (the history is on).
    collect: bool,
    /// The Services replaced, when collected.
    services: Vec<ServiceChange>,
    /// The PTR targets moved, when collected.
    ptr: Vec<PtrChange>,
}

impl IndexWriter {
    pub(super) fn new(shared: Arc<Shared>, srv_target: SrvTargetStyle) -> Self {
        Self {
            shared,
            settings: RecordSettings::from(srv_target),
            services: HashMap::new(),
            slice_owner: HashMap::new(),
            departure_grace: Duration::ZERO,
            version: None,
            step: Step::default(),
            stepped: false,
        }
    }

    /// The version of what the next change applies (a resourceVersion, a file's time): when it
    /// is ahead of the serial (RFC 1982), the change makes it the serial, so replicas that
    /// apply the same changes report the same serial (R8); else the serial moves by one.
    pub fn set_version(&mut self, version: Option<u64>) {
        self.version = version.map(|v| v as u32);
    }

    /// Runs one public mutation as one serial step: under the publication lock (a snapshot
    /// sees all of it or none), the serial moves once if anything published changed, and the
    /// step's changes enter the history.
    fn step(&mut self, mutate: impl FnOnce(&mut Self)) {
        let shared = self.shared.clone();
        let mut history = shared
            .publication
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.step = Step {
            collect: history.is_on(),
            ..Step::default()
        };
        mutate(self);
        let step = std::mem::take(&mut self.step);
        let version = self.version.take();
        if !step.changed {
            return;
        }
        let before = shared.serial.load(Ordering::Acquire);
        let after = match version {
            Some(version) if !self.stepped || serial_lt(before, version) => version,
            _ => before.wrapping_add(1),
        };
        self.stepped = true;
        shared.serial.store(after, Ordering::Release);
        // Answers cached under the old generation carry the old SOA serial: retire them too.
        shared.generation.fetch_add(1, Ordering::AcqRel);
        history.record(before, after, step.services, step.ptr);
        drop(history);
        shared.serial_changes.send_replace(after);
    }

    /// Keeps a ready endpoint that vanishes from its slice (and from every other slice of its
    /// Service) answering for `grace`, so a move between slices never blinks out (see
    /// `departures.rs`). Zero, the default, turns this off.
    pub fn set_departure_grace(&mut self, grace: Duration) {
        self.departure_grace = grace;
    }

    /// Makes every Service's not-ready endpoints (not terminating) answer their own names
    /// (R15, `dns.not_ready_names`), as if each carried the annotation. Set it before loading.
    pub fn set_not_ready_names(&mut self, on: bool) {
        self.settings.not_ready_names = on;
    }

    /// Keeps the last `limit` changes for incremental transfers (0, the default: none).
    pub fn set_history_limit(&mut self, limit: usize) {
        let mut history = self
            .shared
            .publication
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        history.set_limit(limit);
    }

    /// Ends the grace of departed endpoints whose time is up; call it periodically.
    pub fn expire_departures(&mut self, now: Instant) {
        self.step(|writer| writer.expire_departures_now(now));
    }

    fn expire_departures_now(&mut self, now: Instant) {
        let due: Vec<Arc<ServiceKey>> = self
            .services
            .iter()
            .filter(|(_, state)| state.departing.iter().any(|d| d.until <= now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            if let Some(state) = self.services.get_mut(&key) {
                prune(&mut state.departing, &state.slices, now);
            }
            self.rebuild(&key);
        }
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, service: Service) {
        self.step(|writer| writer.apply_service_now(service));
    }

    fn apply_service_now(&mut self, service: Service) {
        let key = self.shared_key(&service.key);
        self.services.entry(key.clone()).or_default().service = Some(service.into());
        self.rebuild(&key);
    }

    /// Removes a Service (its slices stay stored until they are deleted too).
    pub fn delete_service(&mut self, key: &ServiceKey) {
        self.step(|writer| writer.delete_service_now(key));
    }

    fn delete_service_now(&mut self, key: &ServiceKey) {
        if let Some(state) = self.services.get_mut(key) {
            state.service = None;
            state.departing.clear();
            self.rebuild(key);
        }
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        self.step(|writer| writer.apply_slice_now(slice));
    }

    fn apply_slice_now(&mut self, slice: EndpointSlice) {
        let slice_id = slice_id(&slice.service.namespace, &slice.name);
        if let Some(previous) = self.slice_owner.get(&slice_id).cloned()
            && *previous != slice.service
        {
            self.detach_slice(&previous, &slice.name);
            self.rebuild(&previous);
        }
        let owner = self.shared_key(&slice.service);
        let slice = StoredSlice::from(slice);
        let grace = self.departure_grace;
        let state = self.services.entry(owner.clone()).or_default();
        if let Some(old) = state.slices.insert(slice) {
            state.keep_departing(&old, grace);
        }
        self.slice_owner.insert(slice_id, owner.clone());
        self.rebuild(&owner);
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, key: &SliceKey) {
        self.step(|writer| writer.delete_slice_now(key));
    }

    fn delete_slice_now(&mut self, key: &SliceKey) {
        if let Some(owner) = self
            .slice_owner
            .remove(&slice_id(&key.namespace, &key.name))
        {
            self.detach_slice(&owner, &key.name);
            self.rebuild(&owner);
        }
    }

    /// [`Self::replace_all`] for a whole load (a cluster file, a first sync): the build runs on
    /// a fresh allocator heap, and what the load freed goes back to the operating system right
    /// after (`sys::memory`: the index is then packed into pages of its own).
    pub fn load_all(&mut self, state: ClusterState) {
        self.step(|writer| crate::sys::memory::on_fresh_heap(|| writer.replace_all_now(state)));
        crate::sys::memory::release_freed();
    }

    /// Replaces the whole state with a complete list: rebuilds the Services that changed and
    /// removes those that vanished. Unchanged Services keep their published records. One
    /// serial step, to the state's version when it has one.
    pub fn replace_all(&mut self, state: ClusterState) {
        self.step(|writer| writer.replace_all_now(state));
    }

    fn replace_all_now(&mut self, state: ClusterState) {
        if state.version.is_some() {
            self.set_version(state.version);
        }
        type Inputs = (Option<StoredService>, Slices);
        let mut next: HashMap<Arc<ServiceKey>, Inputs> = HashMap::new();
        // The shared key of a Service in `next`: the one already there, else the writer's.
        let next_key = |next: &mut HashMap<Arc<ServiceKey>, Inputs>, key: &ServiceKey| {
            if let Some((shared, _)) = next.get_key_value(key) {
                return shared.clone();
            }
            let shared = self
                .services
                .get_key_value(key)
                .map_or_else(|| Arc::new(key.clone()), |(shared, _)| shared.clone());
            next.insert(shared.clone(), Inputs::default());
            shared
        };
        self.slice_owner.clear();
        for service in state.services {
            let key = next_key(&mut next, &service.key);
            if let Some(inputs) = next.get_mut(&key) {
                inputs.0 = Some(service.into());
            }
        }
        for slice in state.slices {
            let owner = next_key(&mut next, &slice.service);
            self.slice_owner.insert(
                slice_id(&slice.service.namespace, &slice.name),
                owner.clone(),
            );
            if let Some(inputs) = next.get_mut(&owner) {
                inputs.1.insert(slice.into());
            }
        }
        let vanished: Vec<Arc<ServiceKey>> = self
            .services
            .keys()
            .filter(|key| !next.contains_key(*key))
            .cloned()
            .collect();
        for key in vanished {
            if let Some(state) = self.services.get_mut(&key) {
                state.service = None;
                state.slices.clear();
                state.departing.clear();
            }
            self.rebuild(&key);
        }
        for (key, (service, slices)) in next {
            let state = self.services.entry(key.clone()).or_default();
            if state.service != service || state.slices != slices || !state.departing.is_empty() {
                state.service = service;
                state.slices = slices;
                state.departing.clear();
                self.rebuild(&key);
            }
        }
    }

    /// Declares the first complete state delivered: negative answers stop being SERVFAIL (R11).
    pub fn mark_synced(&self) {
        self.shared.synced.store(true, Ordering::Release);
        let serial = self.shared.serial.load(Ordering::Acquire);
        self.shared.serial_changes.send_replace(serial);
    }

    /// The keys of every stored Service object (not of slices waiting for their Service).
    pub fn service_keys(&self) -> impl Iterator<Item = &ServiceKey> + '_ {
        self.services
            .iter()
            .filter(|(_, state)| state.service.is_some())
            .map(|(key, _)| &**key)
    }

    /// The keys of every stored EndpointSlice.
    pub fn slice_keys(&self) -> impl Iterator<Item = SliceKey> + '_ {
        self.slice_owner.keys().filter_map(|id| {
            let (namespace, name) = id.split_once('/')?;
            Some(SliceKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        })
    }

    /// The `Arc` that keys `key`'s state, or a new one for a Service not stored yet.
    fn shared_key(&self, key: &ServiceKey) -> Arc<ServiceKey> {
        self.services
            .get_key_value(key)
            .map_or_else(|| Arc::new(key.clone()), |(shared, _)| shared.clone())
    }

    fn detach_slice(&mut self, owner: &ServiceKey, slice_name: &str) {
        let grace = self.departure_grace;
        if let Some(state) = self.services.get_mut(owner)
            && let Some(old) = state.slices.remove(slice_name)
        {
            state.keep_departing(&old, grace);
        }
    }

    /// Recompiles one Service and publishes it if its answers changed.
    fn rebuild(&mut self, key: &ServiceKey) {
        let Some(shared_key) = self.services.get_key_value(key).map(|(k, _)| k.clone()) else {
            return;
        };
        let Some(state) = self.services.get_mut(key) else {
            return;
        };
        prune(&mut state.departing, &state.slices, Instant::now());
        let departing = state.departing.iter().map(|d| &d.slice);
        let records = state.service.as_ref().map(|service| {
            Arc::new(ServiceRecords::build(
                service,
                state.slices.iter().chain(departing),
                self.settings,
            ))
        });
        let not_ready = state
            .service
            .as_ref()
            .map(|service| not_ready_of(service, state.slices.iter()))
            .unwrap_or_default();
        if *state.not_ready != *not_ready {
            state.not_ready = not_ready.into();
            let map_key = MapKey::of(key);
            if state.not_ready.is_empty() {
                self.shared.not_ready.remove(map_key.as_bytes());
            } else {
                self.shared
                    .not_ready
                    .insert(map_key, state.not_ready.clone());
            }
        }
        let unchanged = match (&records, &state.published) {
            (Some(new), Some(old)) => new == old,
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            let was_named = state
                .published
                .as_deref()
                .is_some_and(ServiceRecords::holds_names);
            let sizes = |r: Option<&Arc<ServiceRecords>>| {
                r.map_or((0, 0), |r| (r.endpoints.len(), r.name_count() + 1))
            };
            let (old_endpoints, old_names) = sizes(state.published.as_ref());
            let (new_endpoints, new_names) = sizes(records.as_ref());
            self.shared
                .endpoints
                .fetch_add(new_endpoints, Ordering::Relaxed);
            self.shared
                .endpoints
                .fetch_sub(old_endpoints, Ordering::Relaxed);
            self.shared.names.fetch_add(new_names, Ordering::Relaxed);
            self.shared.names.fetch_sub(old_names, Ordering::Relaxed);
            let claims = |r: Option<&ServiceRecords>| r.map(|r| claims_of(&shared_key, r));
            let old_claims = claims(state.published.as_deref()).unwrap_or_default();
            let new_claims = claims(records.as_deref()).unwrap_or_default();
            let replaced = std::mem::replace(&mut state.published, records.clone());
            self.publish_service(key, records.clone(), was_named);
            if let Some(replaced) = &replaced {
                replaced.retire();
            }
            let ptr = self.update_claims(&old_claims, &new_claims, self.step.collect);
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
            self.step.changed = true;
            if self.step.collect {
                self.step.services.push(ServiceChange {
                    key: shared_key.clone(),
                    old: replaced,
                    new: records,
                });
                self.step.ptr.extend(ptr);
            }
        }
        let empty = self
            .services
            .get(key)
            .is_some_and(|s| s.service.is_none() && s.slices.is_empty() && s.departing.is_empty());
        if empty {
            self.services.remove(key);
        }
    }

    /// Puts `records` in the map (or removes the Service), and counts the Service in its
    /// namespace while it holds a name (`was_named`: it did before).
    fn publish_service(
        &mut self,
        key: &ServiceKey,
        records: Option<Arc<ServiceRecords>>,
        was_named: bool,
    ) {
        let map_key = MapKey::of(key);
        let namespace: &str = &key.namespace;
        let is_named = records.as_deref().is_some_and(ServiceRecords::holds_names);
        match records {
            Some(records) => drop(self.shared.services.insert(map_key, records)),
            None => drop(self.shared.services.remove(map_key.as_bytes())),
        }
        match (was_named, is_named) {
            (false, true) => *self.shared.namespaces.entry(namespace.into()).or_insert(0) += 1,
            (true, false) => drop(self.shared.namespaces.remove_if_mut(namespace, |_, count| {
                *count = count.saturating_sub(1);
                *count == 0
            })),
            _ => {}
        }
    }

    /// Applies the difference between a Service's old and new claims (both sorted): each
    /// address whose claims changed gets its new claims in one write, so a reader sees the
    /// address before the change or after it.
    /// Returns, when `changes` is set, the addresses whose answered PTR target moved.
    fn update_claims(
        &mut self,
        old: &[(IpAddr, PtrClaim)],
        new: &[(IpAddr, PtrClaim)],
        changes: bool,
    ) -> Vec<PtrChange> {
        let mut moved = Vec::new();
        let (mut old, mut new) = (old, new);
        loop {
            let ip = match (old.first(), new.first()) {
                (Some(a), Some(b)) => a.0.min(b.0),
                (Some(a), None) => a.0,
                (None, Some(b)) => b.0,
                (None, None) => break,
            };
            let split = |claims: &[(IpAddr, PtrClaim)]| {
                claims
                    .iter()
                    .position(|(other, _)| *other != ip)
                    .unwrap_or(claims.len())
            };
            let (before, rest_old) = old.split_at(split(old));
            let (after, rest_new) = new.split_at(split(new));
            if before != after {
                let change = self.publish_ptr(ip, before, after);
                if changes && change.1 != change.2 {
                    moved.push(change);
                }
            }
            (old, new) = (rest_old, rest_new);
        }
        moved
    }

    /// Replaces `removed` by `added` among the claims on `ip`; returns the answered target
    /// before and after.
    fn publish_ptr(
        &mut self,
        ip: IpAddr,
        removed: &[(IpAddr, PtrClaim)],
        added: &[(IpAddr, PtrClaim)],
    ) -> PtrChange {
        let current = self.shared.ptr.read(&ip, Claims::clone);
        let claims = Claims::updated(
            current.as_ref(),
            removed.iter().map(|(_, claim)| claim),
            added.iter().map(|(_, claim)| claim),
        );
        let target = |claims: Option<&Claims>| claims.map(|c| PtrTarget::from(c.best()));
        let change = (ip, target(current.as_ref()), target(claims.as_ref()));
        match claims {
            Some(claims) if current.as_ref() != Some(&claims) => self.shared.ptr.insert(ip, claims),
            Some(_) => {}
            None => self.shared.ptr.remove(&ip),
        }
        change
    }
}

/// A slice's key in `slice_owner`: `namespace/name` (Kubernetes names never hold a `/`).
fn slice_id(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

/// The PTR claims a Service's records make (R7): its ClusterIPs, and each ready endpoint
/// address ranked by how well this Service names it.
fn claims_of(service: &Arc<ServiceKey>, records: &ServiceRecords) -> Vec<(IpAddr, PtrClaim)> {
    let claim = |rank, label: Option<Label>| PtrClaim {
        rank,
        service: service.clone(),
        label,
    };
    let mut claims = Vec::new();
    if let ServiceKind::ClusterIp(ips) = &records.kind {
        claims.extend(ips.iter().map(|ip| (*ip, claim(ClaimRank::Primary, None))));
    }
    for endpoint in &records.endpoints {
        let (rank, label) = match (&records.kind, endpoint.hostname()) {
            (ServiceKind::Headless, Some(hostname)) => (ClaimRank::Primary, hostname.clone()),
            (ServiceKind::Headless, None) => (ClaimRank::Headless, dashed_ip(&endpoint.ip).into()),
            (_, hostname) => (
                ClaimRank::Other,
                hostname
                    .cloned()
                    .unwrap_or_else(|| dashed_ip(&endpoint.ip).into()),
            ),
        };
        claims.push((endpoint.ip, claim(rank, Some(label))));
    }
    claims.sort_unstable();
    claims
}

#[cfg(test)]
mod tests;
