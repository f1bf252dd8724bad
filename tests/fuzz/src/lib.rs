//! Support for the peerdns fuzz targets (`fuzz_targets/`): the invariant checks, shared with
//! the ordinary test suite, and the generator that shapes fuzz bytes into Kubernetes objects.

pub mod invariants;
pub mod shape;
