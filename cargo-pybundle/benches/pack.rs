//! Packing benchmark (issue 3): packs a python + numpy (PyPI wheel) environment at several zstd levels
//! and compares with `tar czf` of the same prefix, to choose the default compression level.
//!
//! Needs the test toolchain (`PYBUNDLE_PIXI`, `PYBUNDLE_TEST_CHANNEL`; `cargo xtask test`
//! prepares both), or `PYBUNDLE_BENCH_PREFIX` naming an installed conda prefix. Levels can
//! be chosen with `PYBUNDLE_BENCH_LEVELS=3,9,15,19`.
//!
//! Run: `cargo bench -p cargo-pybundle --bench pack`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cargo_pybundle::pack::{self, Input};
use cargo_pybundle::ui::Ui;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; this bench has no test cases.
    }
    let work = tempfile::tempdir().expect("temp dir");
    let Some((prefix, cache)) = prefix(work.path()) else {
        eprintln!("SKIPPED pack bench: set PYBUNDLE_PIXI and PYBUNDLE_TEST_CHANNEL, or PYBUNDLE_BENCH_PREFIX");
        return;
    };
    let scripts = work.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    std::fs::write(scripts.join("main.py"), "import numpy\n").expect("script");
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a smoke run that keeps the bench from rotting: one fast level only.
    let full = std::env::args().any(|a| a == "--bench");
    let default_levels = if full { "3,9,15,19" } else { "3" };
    let levels: Vec<i32> = std::env::var("PYBUNDLE_BENCH_LEVELS")
        .unwrap_or_else(|_| default_levels.into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();

    let tgz = work.path().join("env.tar.gz");
    let start = Instant::now();
    // The same files the bundle holds: bytecode is excluded there by default.
    let status = Command::new("tar")
        .args([
            "--exclude=__pycache__",
            "--exclude=*.pyc",
            "--warning=no-file-changed",
            "-czf",
        ])
        .arg(&tgz)
        .arg("-C")
        .arg(&prefix)
        .arg(".")
        .status()
        .expect("tar");
    // Exit 1 is "file changed as we read it": pixi installs elsewhere hard-link the same
    // package-cache files, which changes their ctime. The content is the same.
    assert!(matches!(status.code(), Some(0 | 1)), "tar czf failed");
    let tgz_time = start.elapsed().as_secs_f64();
    let tgz_size = std::fs::metadata(&tgz).expect("tar.gz").len();

    println!("prefix: {}", prefix.display());
    println!(
        "{:<14} {:>9} {:>10} {:>12} {:>12}",
        "how", "time (s)", "size (MB)", "vs tar.gz", "unpack (s)"
    );
    println!(
        "{:<14} {:>9.2} {:>10.1} {:>12.3} {:>12.2}",
        "tar czf*",
        tgz_time,
        mb(tgz_size),
        1.0,
        untar(&tgz, work.path(), "z")
    );
    let mut unpacked = 0;
    let mut packages = Vec::new();
    for level in levels {
        let dest = work.path().join(format!("bundle-{level}.tar.zst"));
        let input = Input {
            name: "bench".into(),
            prefix: prefix.clone(),
            platform: "linux-64".into(),
            scripts: scripts.clone(),
            exclude: cargo_pybundle::metadata::DEFAULT_EXCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            level,
            // The compression alone: the prefix's files as installed.
            strip: pack::strip::Strip::None,
            pkgs_cache: cache.clone(),
            python: cargo_pybundle::runtime::PythonHalf::Own,
            activation: None,
        };
        let start = Instant::now();
        let packed = pack::pack(
            &input,
            &dest,
            &Ui {
                quiet: true,
                verbose: 0,
            },
        )
        .expect("pack");
        let t = start.elapsed().as_secs_f64();
        unpacked = packed.manifest.unpacked_size;
        packages = packed.manifest.packages.clone();
        println!(
            "{:<14} {:>9.2} {:>10.1} {:>12.3} {:>12.2}",
            format!("zstd -{level}"),
            t,
            mb(packed.archive_size),
            packed.archive_size as f64 / tgz_size as f64,
            untar(&dest, work.path(), "--zstd"),
        );
    }
    println!(
        "unpacked: {:.1} MB; * without __pycache__/*.pyc, like the bundle",
        mb(unpacked)
    );
    for p in packages.iter().take(5) {
        println!(
            "  {:>7.1} MB {:>6} files  {} {}",
            mb(p.size),
            p.files,
            p.name,
            p.version
        );
    }
    repeat_build();
}

/// Repeat-build overhead: `cargo pybundle build` of examples/hello with nothing changed
/// against a plain no-op `cargo build` of the same package (same archive variable, so cargo
/// itself has nothing to do either). Medians of 5.
fn repeat_build() {
    let (Some(pixi), Ok(channel)) = (
        std::env::var_os("PYBUNDLE_PIXI"),
        std::env::var("PYBUNDLE_TEST_CHANNEL"),
    ) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let manifest = root.join("examples/hello/Cargo.toml");
    // Shared with the integration tests, so the application is usually compiled already.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-target");
    let pybundle = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-pybundle"));
        cmd.args(["pybundle", "build", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .env("PYBUNDLE_PIXI", &pixi)
            .env("PYBUNDLE_CHANNEL_MIRRORS", format!("conda-forge={channel}"))
            .stdout(std::process::Stdio::null());
        cmd
    };
    assert!(
        pybundle().status().expect("cargo pybundle").success(),
        "warm-up build failed"
    );
    let archive = target.join("pybundle/hello/debug/bundle.tar.zst");
    let cargo = || {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["build", "-q", "-p", "hello", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .env("PYBUNDLE_ARCHIVE", &archive);
        cmd
    };
    let median = |make: &dyn Fn() -> Command| {
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                assert!(make().status().expect("run").success());
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[2]
    };
    let ours = median(&pybundle);
    let plain = median(&cargo);
    println!(
        "repeat build, nothing changed: cargo pybundle build {ours:.2} s, cargo build {plain:.2} s \
         (overhead {:.2} s)",
        ours - plain
    );
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Seconds for `tar -x<how>f` of `archive` into a fresh dir (the extraction cost to compare).
fn untar(archive: &Path, work: &Path, how: &str) -> f64 {
    let dir = work.join("untar");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("untar dir");
    let start = Instant::now();
    let mut cmd = Command::new("tar");
    if how == "z" {
        cmd.arg("xzf");
    } else {
        cmd.arg(how).arg("-xf");
    }
    let status = cmd.arg(archive).arg("-C").arg(&dir).status().expect("tar");
    assert!(status.success(), "untar failed");
    start.elapsed().as_secs_f64()
}

/// The prefix to pack: `PYBUNDLE_BENCH_PREFIX`, or a python + numpy environment installed
/// with the test toolchain into `work`.
fn prefix(work: &Path) -> Option<(PathBuf, Option<PathBuf>)> {
    if let Some(p) = std::env::var_os("PYBUNDLE_BENCH_PREFIX") {
        return Some((PathBuf::from(p), None));
    }
    let pixi = std::env::var_os("PYBUNDLE_PIXI")?;
    let channel = std::env::var("PYBUNDLE_TEST_CHANNEL").ok()?;
    let project = work.join("project");
    std::fs::create_dir_all(&project).ok()?;
    std::fs::write(
        project.join("pixi.toml"),
        format!(
            "[workspace]\nname = \"bench\"\nchannels = [\"{channel}\"]\nplatforms = [\"linux-64\"]\n\
             conda-pypi-map = false\n\n[dependencies]\npython = \"3.11.*\"\n\n\
             [pypi-dependencies]\nnumpy = \"==1.26.4\"\n"
        ),
    )
    .ok()?;
    let status = Command::new(&pixi)
        .arg("install")
        .current_dir(&project)
        .status()
        .ok()?;
    assert!(
        status.success(),
        "pixi install of the bench environment failed"
    );
    let prefix = project.join(".pixi/envs/default");
    let info = Command::new(&pixi)
        .args(["info", "--json"])
        .current_dir(&project)
        .output()
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).ok()?;
    let cache = info["cache_dir"].as_str().map(PathBuf::from);
    Some((prefix, cache))
}
