//! Fuzz target `cluster_file`: arbitrary UTF-8 text as a cluster file, through
//! `peerdns::source::file::parse` with the default pod CIDR. Invariants
//! (`peerdns_fuzz::invariants::check_cluster_file`): no panic; a file that loads gives
//! Services and EndpointSlices that keep the model's invariants (DNS-1123 names, one address
//! family per slice, lowercase port names), and an index built from it answers its names with
//! well-formed responses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerdns_fuzz::invariants::check_cluster_file;

fuzz_target!(|text: &str| {
    check_cluster_file(text);
});
