//! peerdns: an authoritative DNS server for Kubernetes headless Services and StatefulSet peers.
//!
//! Code map (data flows one way):
//!
//! ```text
//!  cluster file / watch -> source (k8s objects -> model types; objects dropped at the edge)
//!                       -> index::IndexWriter (one writer; rebuilds one Service per change)
//!                       -> index::Index (DashMap of Arc<ServiceRecords>, read without locks held)
//!  UDP/TCP query        -> dns::server -> dns::message -> dns::answer (R1-R13) -> bytes
//! ```
//!
//! - [`model`]: the small types every source produces;
//! - [`source`]: the static cluster file (and, later, the Kubernetes watch);
//! - [`index`]: the published records, one immutable `Arc` per Service;
//! - [`dns`]: parsing, answer rules, encoding, transports;
//! - [`config`]: the TOML file and its defaults;
//! - [`metrics`]: query counters and the Prometheus rendering;
//! - [`admin`]: the admin HTTP listener (`/livez`, `/readyz`, `/metrics`, `/debug/explain`);
//! - [`app`]: wires them together for the binary and the end-to-end tests.
//!
//! Architecture invariants: `dns` and `index` never name a kube or k8s-openapi type; only the
//! index writer mutates the index.

pub mod admin;
pub mod app;
pub mod config;
pub mod dns;
pub mod index;
pub mod metrics;
pub mod model;
pub mod source;
