//! Integration tests of cargo-pybundle: the real CLI, real pixi, real cargo builds.

mod activation;
mod annotate;
mod claims;
mod cli;
mod config;
mod current_pixi;
mod devloop;
mod docs;
mod download;
mod e2e;
mod init;
mod projects;
mod relocated;
mod server;
mod skew;
mod support;
