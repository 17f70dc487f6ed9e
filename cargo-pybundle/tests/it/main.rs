//! Integration tests of cargo-pybundle: the real CLI, real pixi, real cargo builds.
