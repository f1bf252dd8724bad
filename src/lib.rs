//! peerdns: an authoritative DNS server for Kubernetes headless Services and StatefulSet peers.
//!
//! Code map (data flows one way):
//!
//! ```text
//!  cluster file / watch -> source (k8s objects -> model types; objects dropped at the edge)
//!                       -> index::IndexWriter (one writer; rebuilds one Service per change)
//!                       -> index::Index (DashMap of Arc<ServiceRecords>, read without locks held)
//!  UDP query            -> dns::udp (per-worker socket, sys::batch) -> dns::fast (answer
//!                          cache) else dns::direct (common questions, written from the index)
//!                                     \-- else --> dns::message -> dns::answer (R1-R13) -> bytes
//!  TCP query            -> dns::tcp -> dns::message -> dns::answer -> bytes
//! ```
//!
//! - [`model`]: the small types every source produces;
//! - [`source`]: the static cluster file and the Kubernetes watch;
//! - [`index`]: the published records, one immutable `Arc` per Service;
//! - [`dns`]: parsing, answer rules, encoding, transports;
//! - [`config`]: the TOML file and its defaults;
//! - [`metrics`]: query counters and the Prometheus rendering;
//! - [`admin`]: the admin HTTP listener (`/livez`, `/readyz`, `/metrics`, `/debug/explain`);
//! - [`sys`]: batched socket calls and the allocator's memory release (the only `unsafe`);
//! - [`app`]: wires them together for the binary and the end-to-end tests.
//!
//! Architecture invariants: `dns` and `index` never name a kube or k8s-openapi type; only the
//! index writer mutates the index; the index's serial moves after every publish, and a
//! replaced Service's records are marked retired first, so the answer cache replays nothing
//! computed from what is no longer published; `unsafe` lives in `sys` only.

pub mod admin;
pub mod app;
pub mod config;
pub mod dns;
pub mod index;
pub mod metrics;
pub mod model;
pub mod source;
pub mod sys;
