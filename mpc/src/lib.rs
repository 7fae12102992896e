//! The `mpc` binary's library: [`dev`] runs the whole system in one process
//! (what `mpc dev` and the end-to-end tests use); [`client`] calls the REST
//! API; [`cli`] is the command line, each role's configuration declared once.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod demo;
pub mod dev;
