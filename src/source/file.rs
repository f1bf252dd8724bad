//! The static-file source (S2): a Kubernetes YAML file read into a whole `ClusterState`.
//!
//! The file holds objects as the API returns them (what `kubectl get -o yaml` prints), as
//! multi-document YAML (`---`), JSON documents, or `kind: List` (or `ServiceList`, …) with
//! `items`. Read are v1 Service, discovery.k8s.io/v1 EndpointSlice, v1 Pod and apps/v1
//! StatefulSet, ReplicaSet and Deployment: workloads and selector Services are expanded by
//! `statefulset`; objects are converted by `convert`. Every other object is ignored, never
//! silently: [`Ignored`] says where and why (a Kubernetes kind DNS does not need, a kind peerdns
//! reads under another apiVersion, or an unknown kind, with the spelling meant when one is
//! near), each is logged at warning level with file and line, and the loader returns them
//! (`peerdns --check-config` lists them). Empty documents are skipped.
//! [`watch`] polls the file and delivers every good edit.
//!
//! Invariants:
//! - a file yields a whole state or an error: never part of one;
//! - every error names the file and the line of the document at fault (for a YAML syntax or type
//!   error, the line serde_yaml points at), then the object and field;
//! - an object (kind, namespace, name) defined twice is an error naming both lines;
//! - every object of the file is either used or listed in [`Loaded::ignored`];
//! - the same text and pod CIDRs always give the same state (see `statefulset` for addresses).

mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde::de::DeserializeOwned;

use super::convert::{self, ConvertError, ObjectRef};
use super::statefulset::{self, ExpandError, PodFacts, SelectorService, Workloads};
use crate::model::{ClusterState, EndpointSlice, Service, ServiceKey};

mod kinds;

pub use kinds::{IgnoreReason, Ignored};

pub use watch::{Seen, load_seen, watch, watch_from};

/// The pod CIDR the demo cluster (`config/cluster.yaml`) assumes, kind's and flannel's default.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";

/// A file that could not be loaded: where, and why.
#[derive(Debug, thiserror::Error)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line at fault, when one is known.
    pub line: Option<usize>,
    /// The index in the `items` of a List document, when the fault is in one item.
    pub item: Option<usize>,
    /// What is wrong.
    #[source]
    pub reason: Box<FileErrorKind>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(item) = self.item {
            write!(f, ": items[{item}]")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileErrorKind {
    /// The file cannot be read.
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    /// A document is not valid YAML, or does not fit its kind's schema.
    #[error("{0}")]
    Yaml(String),
    /// A document names no `apiVersion` or `kind`.
    #[error("document has no {0}")]
    NoType(&'static str),
    /// An object's field cannot be converted.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// Pods cannot get addresses.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// The same object is defined twice.
    #[error("{object} is defined twice, first at line {first}")]
    Duplicate {
        /// The object.
        object: Box<ObjectRef>,
        /// The line of its first definition.
        first: usize,
    },
}

/// A loaded cluster file: the state to serve, and the objects it did not use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The Services and EndpointSlices to serve.
    pub state: ClusterState,
    /// The objects not used, in file order.
    pub ignored: Vec<Ignored>,
}

/// Reads and loads the cluster file at `path`, giving generated pods addresses from
/// `pod_cidrs` (one per CIDR).
pub fn load(path: &Path, pod_cidrs: &[IpNet]) -> Result<ClusterState, FileError> {
    load_report(path, pod_cidrs).map(|loaded| loaded.state)
}

/// [`load`], with the objects the file holds but does not use.
pub fn load_report(path: &Path, pod_cidrs: &[IpNet]) -> Result<Loaded, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_owned(),
        line: None,
        item: None,
        reason: Box::new(e.into()),
    })?;
    parse_report(path, &text, pod_cidrs)
}

/// Loads a cluster file's `text`; `path` only names it in errors.
pub fn parse(path: &Path, text: &str, pod_cidrs: &[IpNet]) -> Result<ClusterState, FileError> {
    parse_report(path, text, pod_cidrs).map(|loaded| loaded.state)
}

/// [`parse`], with the objects the file holds but does not use (each logged at warning level).
pub fn parse_report(path: &Path, text: &str, pod_cidrs: &[IpNet]) -> Result<Loaded, FileError> {
    let mut loader = Loader::default();
    for (start, doc) in split_documents(text) {
        let line = content_line(start, doc);
        loader
            .document(start, line, doc)
            .map_err(|(item, e)| FileError {
                path: path.to_owned(),
                line: Some(e.line.unwrap_or(line)),
                item,
                reason: Box::new(e.kind),
            })?;
    }
    let ignored = std::mem::take(&mut loader.ignored);
    let state = loader
        .finish(pod_cidrs)
        .map_err(|(line, reason)| FileError {
            path: path.to_owned(),
            line: Some(line),
            item: None,
            reason: Box::new(reason),
        })?;
    let ignored: Vec<Ignored> = ignored
        .into_iter()
        .map(|i| Ignored {
            path: path.to_owned(),
            ..i
        })
        .collect();
    for i in &ignored {
        tracing::warn!("cluster file: {i}");
    }
    Ok(Loaded { state, ignored })
}

/// Splits `text` into YAML documents at lines that are exactly `---` or start with `--- `,
/// without copying. A document begins right after its separator's `---` (so content on the
/// separator's line belongs to it) and comes with that line's 1-based number: line `n` of a
/// document is line `start + n - 1` of the file.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut from, mut offset) = (1, 0, 0);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") {
            docs.push((start, &text[from..offset]));
            start = i + 1;
            from = offset + 3;
        }
        offset += line.len();
    }
    docs.push((start, &text[from..]));
    docs
}

/// Whether a line holds YAML content (not blank, not a comment).
fn is_content(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

/// The line of a document's first content, or its start.
fn content_line(start: usize, doc: &str) -> usize {
    doc.lines()
        .position(is_content)
        .map_or(start, |i| start + i)
}

/// A document's type fields, read before its kind's full schema.
#[derive(serde::Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    /// Only to name an ignored object; any shape is accepted here.
    #[serde(default)]
    metadata: Option<kinds::Names>,
}

/// A List document's items.
#[derive(serde::Deserialize)]
struct ListItems {
    #[serde(default)]
    items: Vec<serde_yaml::Value>,
}

/// A document's text (JSON is parsed by serde_json, much faster than as YAML), or one item of
/// a List document.
enum Source<'a> {
    Yaml(&'a str),
    Json(&'a str),
    Item(serde_yaml::Value),
}

/// A document-level failure: the reason and, for YAML errors, the exact line.
struct DocError {
    line: Option<usize>,
    kind: FileErrorKind,
}

impl From<FileErrorKind> for DocError {
    fn from(kind: FileErrorKind) -> Self {
        Self { line: None, kind }
    }
}

impl From<ConvertError> for DocError {
    fn from(e: ConvertError) -> Self {
        FileErrorKind::Convert(e).into()
    }
}

impl Source<'_> {
    /// Deserializes the source as `T`; a YAML error gets its absolute line from `start`, and
    /// the object's kind in front of its message when `kind` is given.
    fn read<T: DeserializeOwned>(&self, start: usize, kind: Option<&str>) -> Result<T, DocError> {
        let (result, line) = match self {
            Source::Yaml(text) => match serde_yaml::from_str(text) {
                Ok(v) => (Ok(v), None),
                Err(e) => (Err(e.to_string()), e.location().map(|l| l.line())),
            },
            Source::Json(text) => match serde_json::from_str(text) {
                Ok(v) => (Ok(v), None),
                Err(e) => (Err(e.to_string()), Some(e.line())),
            },
            Source::Item(value) => (
                serde_yaml::from_value(value.clone()).map_err(|e| e.to_string()),
                None,
            ),
        };
        result.map_err(|mut message| {
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            if let Some(kind) = kind {
                message = format!("{kind}: {message}");
            }
            DocError {
                line: line.map(|l| start + l.max(1) - 1),
                kind: FileErrorKind::Yaml(message),
            }
        })
    }
}

/// Collects a file's converted objects, then expands them.
#[derive(Default)]
struct Loader {
    /// (kind, namespace, name) -> line of the first definition.
    seen: HashMap<ObjectRef, usize>,
    services: Vec<Service>,
    selectors: Vec<SelectorService>,
    slices: Vec<EndpointSlice>,
    /// Services with at least one explicit slice: the file's slices replace synthesis.
    sliced: HashSet<ServiceKey>,
    workloads: Workloads,
    /// Objects not used (their `path` is filled in by `parse_report`).
    ignored: Vec<Ignored>,
}

impl Loader {
    /// Takes in one document whose text starts at line `start` and whose content at `line`.
    fn document(
        &mut self,
        start: usize,
        line: usize,
        doc: &str,
    ) -> Result<(), (Option<usize>, DocError)> {
        if !doc.lines().any(is_content) {
            return Ok(());
        }
        let (source, meta) = match serde_json::from_str::<Option<TypeMeta>>(doc) {
            Ok(meta) => (Source::Json(doc), meta),
            Err(_) => {
                let source = Source::Yaml(doc);
                let meta = source
                    .read::<Option<TypeMeta>>(start, None)
                    .map_err(|e| (None, e))?;
                (source, meta)
            }
        };
        let Some(meta) = meta else { return Ok(()) };
        let kind = meta.kind.unwrap_or_default();
        if kind.ends_with("List") {
            let list: ListItems = source.read(start, Some(&kind)).map_err(|e| (None, e))?;
            for (i, item) in list.items.into_iter().enumerate() {
                let item = Source::Item(item);
                let meta: TypeMeta = item.read(start, None).map_err(|e| (Some(i), e))?;
                self.object(meta, &item, start, line, Some(i))
                    .map_err(|e| (Some(i), e))?;
            }
            return Ok(());
        }
        self.object(
            TypeMeta {
                kind: Some(kind),
                ..meta
            },
            &source,
            start,
            line,
            None,
        )
        .map_err(|e| (None, e))
    }

    /// Dispatches one object on its `apiVersion` and `kind`.
    fn object(
        &mut self,
        meta: TypeMeta,
        source: &Source<'_>,
        start: usize,
        line: usize,
        item: Option<usize>,
    ) -> Result<(), DocError> {
        let names = meta.metadata.unwrap_or_default();
        let api_version = meta
            .api_version
            .ok_or(FileErrorKind::NoType("apiVersion"))?;
        let kind = meta
            .kind
            .filter(|k| !k.is_empty())
            .ok_or(FileErrorKind::NoType("kind"))?;
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Service") => {
                let svc: core::Service = source.read(start, Some("Service"))?;
                self.check_unique(ObjectRef::new("Service", &svc.metadata), line)?;
                let model = convert::service(&svc)?;
                if let Some(sel) = statefulset::selector_service(&svc, &model)? {
                    self.selectors.push(sel);
                }
                self.services.push(model);
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                let slice: discovery::EndpointSlice = source.read(start, Some("EndpointSlice"))?;
                self.check_unique(ObjectRef::new("EndpointSlice", &slice.metadata), line)?;
                self.sliced.insert(convert::slice_service(&slice)?);
                self.slices.extend(convert::endpoint_slice(&slice)?);
            }
            ("v1", "Pod") => {
                let pod: core::Pod = source.read(start, Some("Pod"))?;
                self.check_unique(ObjectRef::new("Pod", &pod.metadata), line)?;
                self.workloads.add_pod(&pod)?;
            }
            ("apps/v1", "StatefulSet") => {
                let sts: apps::StatefulSet = source.read(start, Some("StatefulSet"))?;
                self.check_unique(ObjectRef::new("StatefulSet", &sts.metadata), line)?;
                self.workloads.add_statefulset(&sts)?;
            }
            ("apps/v1", "ReplicaSet") => {
                let rs: apps::ReplicaSet = source.read(start, Some("ReplicaSet"))?;
                self.check_unique(ObjectRef::new("ReplicaSet", &rs.metadata), line)?;
                self.workloads.add_replica_set(&rs)?;
            }
            ("apps/v1", "Deployment") => {
                let deploy: apps::Deployment = source.read(start, Some("Deployment"))?;
                self.check_unique(ObjectRef::new("Deployment", &deploy.metadata), line)?;
                self.workloads.add_deployment(&deploy)?;
            }
            _ => self.ignored.push(Ignored {
                path: PathBuf::new(),
                line,
                item,
                reason: kinds::classify(&kind),
                api_version,
                kind,
                namespace: names.namespace(),
                name: names.name(),
            }),
        }
        Ok(())
    }

    fn check_unique(&mut self, object: ObjectRef, line: usize) -> Result<(), DocError> {
        if let Some(&first) = self.seen.get(&object) {
            return Err(FileErrorKind::Duplicate {
                object: Box::new(object),
                first,
            }
            .into());
        }
        self.seen.insert(object, line);
        Ok(())
    }

    /// Expands workloads and selector Services; an error comes with its object's line.
    fn finish(mut self, pod_cidrs: &[IpNet]) -> Result<ClusterState, (usize, FileErrorKind)> {
        let reserved: Vec<_> = self
            .slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .flat_map(|e| e.addresses.iter().copied())
            .collect();
        let workloads = std::mem::take(&mut self.workloads);
        let pods = workloads.expand(pod_cidrs, reserved).map_err(|e| {
            let line = self.seen.get(e.owner()).copied().unwrap_or(1);
            (line, FileErrorKind::from(e))
        })?;
        let mut by_namespace: BTreeMap<String, Vec<PodFacts>> = BTreeMap::new();
        for pod in pods {
            by_namespace
                .entry(pod.namespace.clone())
                .or_default()
                .push(pod);
        }
        for sel in self
            .selectors
            .iter()
            .filter(|s| !self.sliced.contains(&s.key))
        {
            let pods = by_namespace
                .get(&sel.key.namespace)
                .map_or(&[][..], Vec::as_slice);
            self.slices.extend(statefulset::synthesize(sel, pods));
        }
        Ok(ClusterState {
            services: self.services,
            slices: self.slices,
            version: None,
        })
    }
}

#[cfg(test)]
mod tests;
