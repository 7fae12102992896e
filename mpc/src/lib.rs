//! The `mpc` binary's library: [`dev`] runs the whole system in one process
//! (what `mpc dev` and the end-to-end tests use); [`client`] calls the REST
//! API.
#![forbid(unsafe_code)]

pub mod bench;
pub mod client;
pub mod demo;
pub mod dev;
