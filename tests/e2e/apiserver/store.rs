//! The object store behind the test API server: JSON objects keyed by (resource, namespace,
//! name), one global resourceVersion counter, and the change history watches resume from.
//!
//! Invariants, all as in the real API server:
//! - every write (create, update, delete) takes the next resourceVersion from one counter shared
//!   by all resources, and stamps it on the object as a decimal string;
//! - an update that changes nothing is not a write (no new resourceVersion, no event);
//! - a DELETED change carries the object's last state stamped with the deletion's version;
//! - `history` holds every change with version > `floor`, in order; a watch may resume from any
//!   version >= `floor`, older ones get 410 Expired;
//! - the store lives behind one mutex, and every change is put into history and broadcast under
//!   it, so a watch that snapshots history and subscribes in one critical section misses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::clock::now_rfc3339;
use super::resource::Resource;

/// How many live changes a slow watch may fall behind before it is ended.
const LIVE_BACKLOG: usize = 4096;

/// The kind of a change, as named in watch events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One write, as kept in history and sent to live watches.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: Resource,
    pub namespace: String,
    pub change: ChangeType,
    /// The state after the write (for a deletion: the last state).
    pub object: Value,
    /// The state before the write, so watches with a selector can turn an update that leaves
    /// the selection into DELETED, as the real server does.
    pub previous: Option<Value>,
}

/// Where a store key points: (resource, namespace or "" for cluster-scoped, name).
type Key = (Resource, String, String);

/// What a watch needs to start: the changes to replay and the live feed after them.
pub struct WatchStart {
    pub replay: Vec<Arc<Change>>,
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The store's resourceVersion when the snapshot was taken.
    pub rv: u64,
}

/// The object store; see the module doc for its invariants.
pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    floor: u64,
    history: Vec<Arc<Change>>,
    live: broadcast::Sender<Arc<Change>>,
    next_uid: u64,
}

impl Store {
    pub fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            rv: 1,
            floor: 1,
            history: Vec::new(),
            live: broadcast::channel(LIVE_BACKLOG).0,
            next_uid: 1,
        }
    }

    /// The latest resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may resume from.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Creates or updates `object` (it must carry apiVersion, kind and metadata.name); returns the
    /// stored state.
    pub fn apply(&mut self, mut object: Value) -> Result<Value, String> {
        let (resource, namespace, name) = key_of(&mut object)?;
        let key = (resource, namespace.clone(), name);
        let previous = self.objects.get(&key).cloned();
        let meta = &mut object["metadata"];
        match &previous {
            Some(old) => {
                meta["uid"] = old["metadata"]["uid"].clone();
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                meta["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                if old == &object {
                    return Ok(object);
                }
            }
            None => {
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.next_uid));
                meta["creationTimestamp"] = json!(now_rfc3339());
                self.next_uid += 1;
            }
        }
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        let object = self.record(resource, namespace, change, object, previous);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    /// Deletes an object; returns its last state, or `None` if it did not exist.
    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let namespace = scoped(resource, namespace);
        let last = self
            .objects
            .remove(&(resource, namespace.clone(), name.to_string()))?;
        Some(self.record(
            resource,
            namespace,
            ChangeType::Deleted,
            last.clone(),
            Some(last),
        ))
    }

    /// One object.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let key = (resource, scoped(resource, namespace), name.to_string());
        self.objects.get(&key).cloned()
    }

    /// The objects of one resource, ordered by (namespace, name), in one namespace or all.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), _)| *r == resource && namespace.is_none_or(|want| want == ns))
            .map(|(_, object)| object)
            .collect()
    }

    /// Forgets all history: watches resuming from any version older than now get 410.
    pub fn expire_history(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }

    /// The changes after `rv` plus a live subscription; `Err(floor)` when `rv` is too old.
    pub fn watch_from(&self, rv: u64) -> Result<WatchStart, u64> {
        if rv < self.floor {
            return Err(self.floor);
        }
        let first = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.watch_start(self.history[first..].to_vec()))
    }

    /// Synthetic ADDED changes for every current object of `resource`, plus a live subscription
    /// (a watch without resourceVersion, or with "0", starts like this).
    pub fn watch_current(&self, resource: Resource) -> WatchStart {
        let replay = self
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == resource)
            .map(|((r, ns, _), object)| {
                Arc::new(Change {
                    rv: rv_of(object),
                    resource: *r,
                    namespace: ns.clone(),
                    change: ChangeType::Added,
                    object: object.clone(),
                    previous: None,
                })
            })
            .collect();
        self.watch_start(replay)
    }

    fn watch_start(&self, replay: Vec<Arc<Change>>) -> WatchStart {
        WatchStart {
            replay,
            live: self.live.subscribe(),
            rv: self.rv,
        }
    }

    /// Stamps the next resourceVersion on `object`, appends the change to history and broadcasts
    /// it; returns the stamped object.
    fn record(
        &mut self,
        resource: Resource,
        namespace: String,
        change: ChangeType,
        mut object: Value,
        previous: Option<Value>,
    ) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let change = Arc::new(Change {
            rv: self.rv,
            resource,
            namespace,
            change,
            object,
            previous,
        });
        self.history.push(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(change.clone());
        change.object.clone()
    }
}

/// The resourceVersion stamped on a stored object.
pub fn rv_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// The namespace part of a key: "" for cluster-scoped resources.
fn scoped(resource: Resource, namespace: &str) -> String {
    if resource.namespaced() {
        namespace.to_string()
    } else {
        String::new()
    }
}

/// Validates a written object and normalises its metadata.namespace; returns its key.
fn key_of(object: &mut Value) -> Result<Key, String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = Resource::from_type(api_version, kind)
        .ok_or_else(|| format!("unknown apiVersion/kind {api_version:?}/{kind:?}"))?;
    if !object["metadata"].is_object() {
        return Err(format!("{kind} has no metadata"));
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(format!("{kind} has no metadata.name"));
    }
    let meta = &mut object["metadata"];
    let namespace = if resource.namespaced() {
        let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
        meta["namespace"] = json!(ns);
        ns
    } else {
        if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        String::new()
    };
    Ok((resource, namespace, name))
}
