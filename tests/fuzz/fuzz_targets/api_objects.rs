//! Fuzz target `api_objects`: JSON shaped like Services and EndpointSlices, read into
//! k8s-openapi's `core::v1::Service` and `discovery::v1::EndpointSlice` where it fits, then
//! converted by `peerdns::source::convert::{service, endpoint_slice}`. An input that is a JSON
//! document is used as is (the seeds are real objects); any other input is shaped into an
//! object by `peerdns_fuzz::shape`. Invariants
//! (`peerdns_fuzz::invariants::check_api_object`): no panic; a converted object keeps the
//! model's invariants (lowercase DNS-1123 labels, addresses of the slice's family) and an index
//! built from it answers its names with well-formed responses.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use peerdns_fuzz::invariants::check_api_object;
use peerdns_fuzz::shape;

fuzz_target!(|data: &[u8]| {
    let value = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(value) => value,
        Err(_) => match shape::object(&mut Unstructured::new(data)) {
            Ok(value) => value,
            Err(_) => return,
        },
    };
    check_api_object(&value);
});
