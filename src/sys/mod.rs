//! The only code that talks to the operating system or the allocator below the standard
//! library: the one module allowed `unsafe` (every other module is `deny(unsafe_code)`).
//!
//! - [`batch`]: batched UDP receive and send (`recvmmsg` / `sendmmsg`);
//! - [`memory`]: handing memory freed by a large load back to the operating system;
//! - [`prefetch`]: software prefetch hints, for the UDP path's batched lookups.
//!
//! Each file states the safety argument for its `unsafe` blocks and is tested on its own.

pub mod batch;
pub mod memory;
pub mod prefetch;
