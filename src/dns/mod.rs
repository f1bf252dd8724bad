//! The DNS side: name parsing, the one answer decision, encoding, and the UDP/TCP transports.
//!
//! ```text
//!  every question:   name.rs (parse, pick the zone) -> answer/find.rs (decide: a Finding)
//!                      general path: answer/records.rs + answer/mod.rs (records, SOA, CNAME)
//!                                    -> message.rs (header, EDNS) -> fit.rs (R12) -> bytes
//!                      direct path:  direct/ -> wire/writer.rs -> fit.rs (R12) -> bytes
//!
//!  UDP (udp/):  socket.rs (recvmmsg via sys::batch) -> stages.rs: cache.rs (replay), else
//!               direct/, else message.rs -> socket.rs: ratelimit.rs (when on) -> sendmmsg
//!  TCP (tcp.rs): message.rs, with connection limits (count, idle, lifetime, queries)
//!  server.rs binds the listeners and starts both; wire/reader.rs reads names in place
//! ```
//!
//! Invariants: nothing here names a Kubernetes type, and nothing here writes to the index;
//! what a question finds is decided only in `answer/find.rs`, which zone a name is in only in
//! `name.rs`, and how a response too big is cut only in `fit.rs`.

pub mod answer;
pub mod cache;
pub mod direct;
pub mod fit;
pub mod message;
pub mod name;
pub mod ratelimit;
pub mod server;
pub mod tcp;
pub mod transfer;
pub mod tsig;
pub mod udp;
pub mod wire;

pub use answer::Authority;
pub use message::{Responder, Transport};
pub use ratelimit::{RateLimitSettings, RateLimiter};
pub use server::{Listeners, ServerSettings, serve};
pub use tcp::TcpLimits;

#[cfg(test)]
mod rules_tests;
