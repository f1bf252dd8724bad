//! End-to-end tests: one binary, every test over real sockets on 127.0.0.1 port 0.

// Test code panics on purpose when something is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod apiserver;
mod apiserver_tests;
mod controllers;
mod dashboard;
mod deploy;
mod equivalence;
mod fastpath;
mod faults;
mod files;
mod fuzz_regressions;
mod golden;
mod hostile;
mod knot;
mod manifest;
mod protocol;
mod recipes;
mod serials;
mod soak;
mod startup;
mod support;
mod transfer;
mod wait;
mod watch;
