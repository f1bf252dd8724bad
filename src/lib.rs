//! peerdns: an authoritative DNS server for Kubernetes headless Services and StatefulSet peers.
//!
//! Code map (data flows one way):
//!
//! ```text
//!  cluster file / watch -> source (k8s objects -> model types; objects dropped at the edge)
//!                       -> index::IndexWriter (one writer; rebuilds one Service per change)
//!                       -> index::Index (DashMap of Arc<ServiceRecords>, read without locks held)
//!  UDP query            -> dns::udp (per-worker socket, sys::batch) -> dns::cache (replay)
//!                          else dns::direct (common questions, written from the index)
//!                          else dns::message (general path) -> bytes
//!  TCP query            -> dns::tcp -> dns::message -> bytes
//!  both paths decide with dns::answer::find (R1-R15) and cut to size with dns::fit (R12)
//!  admin (/metrics, /debug/*) reads index, source and metrics; nothing reads admin
//! ```
//!
//! Module graph (no cycles, nor among `dns`'s own modules: `layout_tests.rs` checks): `metrics`
//! and `model` at the bottom, `config` and `sys` beside them; `index` on those; `source` and
//! `dns` on `index` and the bottom; `admin` and `app` on everything.
//!
//! - [`rules`]: the record rules (R1-R15), sources (S1-S3) and goals (P1-P8) the code cites;
//! - [`model`]: the small types every source produces;
//! - [`source`]: the static cluster file and the Kubernetes watch;
//! - [`index`]: the published records, one immutable `Arc` per Service;
//! - [`dns`]: parsing, answer rules, encoding, transports;
//! - [`config`]: the TOML file and its defaults;
//! - [`metrics`]: query counters and the Prometheus text format (the bottom of the graph);
//! - [`admin`]: the admin HTTP listener (`/livez`, `/readyz`, `/metrics`, `/debug/explain`,
//!   `/debug/source`);
//! - [`sys`]: batched socket calls and the allocator's memory release (the only `unsafe`);
//! - [`app`]: wires them together for the binary and the end-to-end tests;
//! - [`wait`]: `peerdns wait`, which waits until names resolve (an init container's job).
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
pub mod rules;
pub mod source;
pub mod sys;
pub mod wait;

#[cfg(test)]
mod layout_tests;
