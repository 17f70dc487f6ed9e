//! `cargo xtask demo`: the whole flow for real: build examples/hello with the real
//! `cargo pybundle build --release` against the local test channel, then run the bundled binary
//! from a fresh cache directory and show what it says.
//!
//! The network is used only to prepare: the toolchain (pixi, the channel), the CLI and the
//! crates the example needs (`cargo fetch`). The bundling and the run then happen offline: when
//! run as root with `unshare` and `ip` at hand, inside a network namespace where only loopback
//! exists (and cargo told `--offline`); otherwise with the network present, which the output
//! says.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// Build and run the hello example.
pub fn run() -> Result<()> {
    let root = tools::workspace_root();
    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    let manifest = root.join("examples").join("hello").join("Cargo.toml");
    let target = tools::target_dir(&root)?;

    eprintln!("xtask: preparing: cargo build --release -p cargo-pybundle, cargo fetch");
    tools::run(
        Command::new(tools::cargo())
            .args(["build", "--release", "-p", "cargo-pybundle"])
            .current_dir(&root),
        "building cargo-pybundle",
    )?;
    tools::run(
        Command::new(tools::cargo()).arg("fetch").current_dir(&root),
        "fetching the crates the example needs",
    )?;

    let cli = target.join("release/cargo-pybundle");
    let binary = target.join("release/bundled/hello");
    let cache = tempfile::Builder::new()
        .prefix("pybundle-demo-cache-")
        .tempdir()?;
    // Build, then run: both inside one shell, so both are in the same namespace when isolated.
    let script = r#"set -e
if [ -n "$ISOLATED" ]; then ip link set lo up; fi
"$CLI" pybundle build --release --manifest-path "$MANIFEST" -- --offline >/dev/null
echo "xtask: running $BINARY (PYBUNDLE_CACHE_DIR=$PYBUNDLE_CACHE_DIR)" >&2
start=$(date +%s%N)
"$BINARY"
echo "xtask: first run (extract + reply) took $(( ($(date +%s%N) - start) / 1000000 )) ms" >&2
"#;
    let isolation = isolation();
    let mut cmd = match &isolation {
        Ok(()) => {
            eprintln!(
                "xtask: offline: building and running inside `unshare --net` (only loopback)"
            );
            let mut c = Command::new("unshare");
            c.args(["--net", "sh", "-c", script]).env("ISOLATED", "1");
            c
        }
        Err(why) => {
            eprintln!("xtask: NOT isolated from the network ({why}); cargo and pixi are still told to stay offline");
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    cmd.current_dir(&root)
        .env("CLI", &cli)
        .env("MANIFEST", &manifest)
        .env("BINARY", &binary)
        .env("CARGO_NET_OFFLINE", "true")
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .env("PYBUNDLE_PIXI", &pixi)
        // The example lists conda-forge, which these machines cannot reach: use the test channel.
        .env("PYBUNDLE_CHANNEL_MIRRORS", format!("conda-forge={channel}"));
    eprintln!(
        "xtask: cargo pybundle build --release --manifest-path {}",
        manifest.display()
    );
    let status = cmd.status().context("running the build and the program")?;
    if !status.success() {
        bail!(
            "building or running {} failed ({status}); see the output above",
            manifest.display()
        );
    }
    Ok(())
}

/// Whether a network namespace can be made here: root, `unshare` and `ip`.
fn isolation() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        return Err("not root: a network namespace needs root".into());
    }
    for tool in ["unshare", "ip"] {
        if tools::find_on_path(tool).is_none() && !Path::new("/usr/sbin").join(tool).is_file() {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    Ok(())
}
