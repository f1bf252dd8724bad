//! Sources of cluster state: where the Services and EndpointSlices the index serves come from.
//!
//! Two sources exist: the static file (`file`, S2 in `crate::rules`): Kubernetes YAML read from disk,
//! with StatefulSets and selector-based Services expanded the way the controllers would
//! (`statefulset`); and the live cluster (`kubernetes`, S1): kube-runtime watchers on Services
//! and EndpointSlices. Both convert every object to the small model types (`convert`) and feed
//! the same index writer.
//!
//! Invariants:
//! - only `convert`, `statefulset`, `file` and `kubernetes` name kube or k8s-openapi types; what
//!   leaves this module is `crate::model` types only;
//! - the file source delivers a whole [`crate::model::ClusterState`] or nothing: a file that
//!   fails to load never yields half a state; the watch source applies its first complete list
//!   in one step, and every later change one Service at a time.

pub mod annotations;
pub mod convert;
pub mod file;
pub mod kubernetes;
pub mod statefulset;
