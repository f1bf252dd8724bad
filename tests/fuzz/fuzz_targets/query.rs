//! Fuzz target `query`: arbitrary bytes as a DNS request over the cluster of
//! `tests/clusters/rules.yaml`, through the general path (UDP and TCP) and the UDP fast path
//! (miss, replay, and replay for a variant with another ID, case and RD/CD bits). Invariants
//! (`peerdns_fuzz::invariants::check_query`): no panic; every response parses with
//! hickory-proto and carries the request's ID; UDP responses fit 1232 bytes (512 without OPT);
//! the fast path's bytes equal the general path's.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use peerdns_fuzz::invariants::{Server, check_query};

/// Built once: loading the cluster costs far more than one query.
static SERVER: LazyLock<Server> = LazyLock::new(Server::rules);

fuzz_target!(|data: &[u8]| {
    check_query(&SERVER, data);
});
