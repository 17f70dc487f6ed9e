//! xtask's integration tests: the test toolchain it prepares works with the real pixi, and the
//! benchmark harness runs end to end.

mod bench;
mod toolchain;
