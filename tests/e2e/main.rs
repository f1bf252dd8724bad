//! End-to-end tests: one binary, every test over real sockets on 127.0.0.1 port 0.

mod files;
mod golden;
mod protocol;
mod support;
