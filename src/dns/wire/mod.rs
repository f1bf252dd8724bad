//! DNS messages in wire form, without building objects: [`reader`] reads names and plain
//! queries where they lie; [`writer`] writes responses with hickory's exact name compression.

pub mod reader;
pub mod writer;

pub use writer::{CANDIDATE_LIMIT, COMPRESSED_NAME_LIMIT, NameTooLong, WireWriter};
