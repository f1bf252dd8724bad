//! The UDP transport: one socket and one thread per worker, batched system calls, and the
//! worker's fast paths ([`FastPath`]): a cache of encoded answers (`cache.rs`) and the direct
//! answerer (`direct/`). `socket.rs` is the worker's loop, `stages.rs` what a batch goes
//! through.
//!
//! A query's walk, receive to send: `socket.rs` (receive) -> `stages.rs` (probe, replay or
//! read) -> `cache.rs` -> `direct/` (parse with `name.rs`, decide with `answer/find.rs`,
//! write with `wire/`) or `message.rs` (the general path) -> `stages.rs` -> `socket.rs`
//! (rate limit, send).
//!
//! ```text
//!  worker thread k:  SO_REUSEPORT socket k --recvmmsg(64)--> answer_batch:
//!                       1. each datagram: probe the answer cache (hash, ask the CPU for its
//!                          set of slots), then ask for the entries found
//!                       2. each: replay, else read it (direct path) and ask for its
//!                          Service's map entry
//!                       3. each read one: ask for its Service's records (the entry has
//!                          arrived), then look them up and ask for their arrays (then, for
//!                          SRV, for the ports those arrays point at)
//!                       4. each left: write it (direct path), else general path (Responder)
//!                       --> the batch's reused reply buffers
//!                    --sendmmsg--> clients, then under load a short hold (below)
//! ```
//!
//! The kernel spreads datagrams over the workers' sockets; no task is spawned per packet, and
//! the steady state takes no lock of its own and allocates no reply (the fast paths are the
//! worker's own; the index is read through an atomic serial and short shard read locks of
//! its map, one step of a lookup at a time). The stages exist
//! for the CPU's caches: on a large cluster a Service's entry and records are rarely cached,
//! and a batch's loads, started together, overlap. With response rate limiting on, each
//! response (replayed or not) passes `RateLimiter::filter` right before it is sent; with it
//! off, that costs one `if`. The fast paths' answers are counted once per batch, after its
//! send, each with the batch's time from arrival to send (what the client waited on the
//! server): the clock is read twice per batch, not per query.
//!
//! Receive coalescing ([`holds_after`], `dns.udp_coalesce_us`): under sustained load, a worker
//! whose receive brought at least [`COALESCE_MIN`] datagrams, as did the receive before it,
//! and emptied the socket (fewer than a full batch) sleeps that long after sending the
//! replies, before the next receive, so that the next wakeup finds more queries waiting. Each
//! wakeup (the interrupt, two context switches, the system calls around them; in a virtual
//! machine the costliest part of a light batch) is then shared by more queries: the same idea
//! as a network card's interrupt moderation. It costs queries arriving during the hold up to
//! that much latency, and only under load: at a light load (5k queries per second: one or two
//! datagrams per receive) a stall can let eight pile up, but the receive after them is light
//! again, so the worker does not hold; a worker that fills its batch (a flood, more already
//! queued) never holds.
//!
//! Invariants: an error from one datagram never ends a worker; only shutdown does, noticed
//! within [`SHUTDOWN_POLL`] while idle (plus at most one hold); every query received is
//! counted once; a datagram's answer does not depend on the others in its batch.

mod socket;
mod stages;

pub use socket::{
    COALESCE_MIN, RECEIVE_BUFFER, SHUTDOWN_POLL, UNFRAGMENTED_PAYLOAD, bind_shared, holds_after,
    serve_udp,
};
#[cfg(any(test, feature = "testing"))]
pub use stages::answer;
pub use stages::{FastPath, Replies, answer_batch};
