//! xtask's integration tests: the test toolchain it prepares works with the real pixi.

mod toolchain;
