//! Integration tests of cargo-pybundle: the real CLI, real pixi, real cargo builds.

mod annotate;
mod cli;
mod config;
mod docs;
mod download;
mod activation;
mod e2e;
mod init;
mod server;
mod support;
