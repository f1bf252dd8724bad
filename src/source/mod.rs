//! Sources of cluster state: where the Services and EndpointSlices the index serves come from.
//!
//! Today one source exists, the static file (`file`, DESIGN S2): Kubernetes YAML read from disk,
//! with StatefulSets and selector-based Services expanded the way the controllers would
//! (`statefulset`), and every object converted to the small model types (`convert`).
//!
//! Invariants:
//! - only `convert`, `statefulset` and `file` name k8s-openapi types; what leaves this module is
//!   `crate::model` types only;
//! - a source delivers a whole [`crate::model::ClusterState`] or nothing: a file that fails to
//!   load never yields half a state.

pub mod convert;
pub mod file;
pub mod statefulset;
