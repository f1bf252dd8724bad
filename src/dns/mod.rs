//! The DNS side: name parsing, answer rules, wire encoding and the UDP/TCP transports.
//!
//! ```text
//!  socket --bytes--> server.rs --bytes--> message.rs (header, EDNS, fit to size)
//!                                            |  name + type
//!                                            v
//!                                         answer.rs (R1-R13) --reads--> index::Index
//!                                            |  uses
//!                                            v
//!                                         name.rs (pure parser)
//!
//!  udp.rs: sys::batch (recvmmsg) --> direct/ (common questions, written by wire.rs)
//!          else fast.rs (replay) else message.rs --> ratelimit.rs (when on) --> sys::batch (sendmmsg)
//!  tcp.rs: connection limits (count, idle, lifetime, queries), never rate limited
//! ```
//!
//! Invariant: nothing here names a Kubernetes type, and nothing here writes to the index.

pub mod answer;
pub mod cache;
pub mod direct;
pub mod fit;
pub mod message;
pub mod name;
pub mod ratelimit;
pub mod server;
pub mod tcp;
pub mod udp;
pub mod wire;

pub use answer::Authority;
pub use message::{Responder, Transport};
pub use ratelimit::{RateLimitSettings, RateLimiter};
pub use server::{Listeners, ServerSettings, serve};
pub use tcp::TcpLimits;

#[cfg(test)]
mod rules_tests;
