//! Integration tests of cargo-pybundle: the real CLI, real pixi, real cargo builds.

mod cli;
mod config;
mod download;
mod e2e;
mod server;
mod support;
