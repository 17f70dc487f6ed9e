//! The rows of our own side (and the bare-interpreter baselines): sizes, first run, warm
//! start and build times.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::peers::Peers;
use super::{timed, Row, Setup, Stat, Topic, EXPECTED};
use crate::tools;

pub fn row(what: &str, key: Option<&'static str>, unit: &'static str, samples: &[f64]) -> Row {
    Row {
        what: what.to_string(),
        key,
        unit,
        stat: Stat::of(samples),
        note: String::new(),
    }
}

fn peer_row(what: &str, key: &'static str, unit: &'static str, samples: &[f64], why: &str) -> Row {
    let mut r = row(what, Some(key), unit, samples);
    if r.stat.is_none() {
        r.note = why.to_string();
    }
    r
}

/// Archive sizes: ours, `tar czf` of the same prefix, conda-pack, PyInstaller --onefile.
pub fn sizes(s: &Setup, peers: &Peers) -> Result<Topic> {
    let bundle = fs_err::metadata(&s.archive)?.len() as f64;
    let app = fs_err::metadata(&s.app)?.len() as f64;
    let tgz = s.work.join("env.tar.gz");
    // The same files the bundle holds: bytecode is excluded there by default.
    let status = Command::new("tar")
        .args(["--exclude=__pycache__", "--exclude=*.pyc", "-czf"])
        .arg(&tgz)
        .arg("-C")
        .arg(&s.prefix)
        .arg(".")
        .status()
        .context("running tar czf")?;
    if !status.success() {
        bail!("tar czf of {} failed ({status})", s.prefix.display());
    }
    let targz = fs_err::metadata(&tgz)?.len() as f64;
    // The bundle's own tar (its files as packed: debug info left out with `--release`), gzipped
    // as `tar czf` does: what the compression alone gains.
    let same = s.work.join("bundle-files.tar.gz");
    let status = Command::new("sh")
        .args(["-c", "zstd -dcq \"$1\" | gzip -c > \"$2\"", "sh"])
        .arg(&s.archive)
        .arg(&same)
        .status()
        .context("running zstd -dc | gzip")?;
    if !status.success() {
        bail!("zstd -dc {} | gzip failed ({status})", s.archive.display());
    }
    let same_files = fs_err::metadata(&same)?.len() as f64;
    let why = peers.why.as_str();
    Ok(Topic {
        title: "Size".into(),
        compare: true,
        about: "The bundle (zstd -19 tar of the prefix + scripts, the debug info of its \
                libraries left out as `--release` does by default) against `tar czf` of the same \
                prefix as installed (bytecode excluded like the bundle), gzip of the bundle's own \
                tar (the same files as packed: the compression alone), conda-pack's tar.gz of the \
                prefix, and PyInstaller `--onefile` of a driver doing the same computation."
            .into(),
        rows: vec![
            row(
                "bundle.tar.zst (ours)",
                Some("bundle_bytes"),
                "B",
                &[bundle],
            ),
            row("the app binary with the bundle inside", None, "B", &[app]),
            row(
                "`tar czf` of the prefix",
                Some("targz_bytes"),
                "B",
                &[targz],
            ),
            row(
                "gzip of the bundle's own tar (the same files as packed)",
                Some("targz_same_files_bytes"),
                "B",
                &[same_files],
            ),
            peer_row(
                "conda-pack tar.gz",
                "conda_pack_bytes",
                "B",
                &peers.conda_pack_bytes,
                why,
            ),
            peer_row(
                "PyInstaller --onefile binary",
                "pyinstaller_bytes",
                "B",
                &peers.pyinstaller_bytes,
                why,
            ),
        ],
    })
}

/// First run: the app with a fresh cache (extract + relocate + run the script) against
/// `tar --zstd -xf` of the same archive, alternating; then the peers' first runs.
pub fn first_run(s: &Setup, peers: &Peers) -> Result<Topic> {
    let (mut ours, mut tar, mut pixi) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..s.slow_runs {
        let cache = s.work.join(format!("cold-cache-{i}"));
        // Each run writes ~130 MB: without a sync the next run (ours or tar's) pays for the
        // previous one's writeback, which made single runs vary 2.5× here.
        settle()?;
        let (t, out) = timed(
            Command::new(&s.app).env("PYBUNDLE_CACHE_DIR", &cache),
            "first run of outliers",
        )?;
        check(&out, "first run of outliers")?;
        ours.push(t);
        fs_err::remove_dir_all(&cache)?;
        let dir = s.work.join(format!("untar-{i}"));
        fs_err::create_dir_all(&dir)?;
        settle()?;
        let (t, _) = timed(
            Command::new("tar")
                .arg("--zstd")
                .arg("-xf")
                .arg(&s.archive)
                .arg("-C")
                .arg(&dir),
            "tar --zstd -xf",
        )?;
        tar.push(t);
        fs_err::remove_dir_all(&dir)?;
        pixi.push(pixi_frozen_install(s, i)?);
    }
    let why = peers.why.as_str();
    Ok(Topic {
        title: "First run".into(),
        compare: true,
        about: "Ours: the app run with an empty cache dir (extract + relocate + run the numpy \
                script and print). Peers: `tar --zstd -xf` of the same archive (extraction only), \
                conda-pack's tar.gz extracted + `bin/conda-unpack`, the PyInstaller binary's \
                first run after building it, and \"just ship pixi\": `pixi install --frozen` of \
                the same pixi.toml and pixi.lock into an empty project folder, every package \
                already in pixi's package cache (linking only, no download)."
            .into(),
        rows: vec![
            row(
                "outliers, first run (ours)",
                Some("first_run_s"),
                "s",
                &ours,
            ),
            row(
                "`tar --zstd -xf` of bundle.tar.zst",
                Some("tar_zstd_extract_s"),
                "s",
                &tar,
            ),
            row(
                "`pixi install --frozen`, warm package cache",
                Some("pixi_frozen_install_s"),
                "s",
                &pixi,
            ),
            peer_row(
                "conda-pack: `tar xzf` + `conda-unpack`",
                "conda_pack_unpack_s",
                "s",
                &peers.conda_pack_unpack,
                why,
            ),
            peer_row(
                "PyInstaller --onefile, first run",
                "pyinstaller_cold_s",
                "s",
                &peers.pyinstaller_cold,
                why,
            ),
        ],
    })
}

/// `pixi install --frozen` of the outliers copy's manifest and lock in a fresh folder (run `i`);
/// the packages are in pixi's cache since the bench's build installed them.
fn pixi_frozen_install(s: &Setup, i: usize) -> Result<f64> {
    let dir = s.work.join(format!("pixi-frozen-{i}"));
    fs_err::create_dir_all(&dir)?;
    for file in ["pixi.toml", "pixi.lock"] {
        fs_err::copy(s.examples.join("outliers").join(file), dir.join(file))?;
    }
    settle()?;
    let (t, _) = timed(
        Command::new(&s.pixi)
            .args(["install", "--frozen", "--manifest-path"])
            .arg(dir.join("pixi.toml"))
            .env_remove("PIXI_CONFIG_FILE"),
        "pixi install --frozen",
    )?;
    fs_err::remove_dir_all(&dir)?;
    Ok(t)
}

/// Warm start: the app with its cache ready against a bare interpreter start, the same
/// interpreter running the same computation, and PyInstaller's later runs.
pub fn warm(s: &Setup, peers: &Peers) -> Result<Topic> {
    let cache = warm_cache(s)?;
    let driver = driver(s)?;
    let python = s.python();
    let (mut ours, mut hello, mut bare, mut same) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // One untimed round first: the page cache and bytecode are warm for every command alike
    // (and hello's first run fills its cache).
    for i in 0..=s.fast_runs {
        if i == 1 {
            (ours, hello, bare, same) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        }
        let (t, out) = timed(
            Command::new(&s.app).env("PYBUNDLE_CACHE_DIR", &cache),
            "warm run of outliers",
        )?;
        check(&out, "warm run of outliers")?;
        ours.push(t * 1e3);
        let (t, out) = timed(
            Command::new(&s.hello)
                .arg("bench")
                .env("PYBUNDLE_CACHE_DIR", &cache),
            "warm run of hello",
        )?;
        if !out.starts_with("hello, bench") {
            bail!("hello printed {out:?}, expected a greeting for `bench`");
        }
        hello.push(t * 1e3);
        let (t, _) = timed(
            Command::new(&python).args(["-I", "-c", "pass"]),
            "bare python",
        )?;
        bare.push(t * 1e3);
        let (t, out) = timed(Command::new(&python).arg("-I").arg(&driver), "driver.py")?;
        check(&out, "python driver.py")?;
        same.push(t * 1e3);
    }
    Ok(Topic {
        title: "Warm start".into(),
        compare: true,
        about: "The app again with its cache ready (spawn the bundled python, import numpy, \
                compute, reply, print) against the prefix's own interpreter: `python -I -c pass`, \
                and `python -I driver.py` doing the same computation on the same 1000 values \
                (numpy imported, indices printed). The hello example (a one-shot script that \
                imports nothing beyond the standard library) shows the runtime's own warm-start \
                cost: exec the binary, check the cache marker, spawn python, reply. Runs \
                alternate."
            .into(),
        rows: vec![
            row(
                "outliers, warm run (ours)",
                Some("warm_start_ms"),
                "ms",
                &ours,
            ),
            row(
                "hello, warm run (ours: one-shot script, no numpy)",
                Some("hello_warm_ms"),
                "ms",
                &hello,
            ),
            row(
                "`python -I -c pass` (bare interpreter start)",
                Some("python_bare_start_ms"),
                "ms",
                &bare,
            ),
            row(
                "`python -I driver.py` (same work, no bundle)",
                Some("python_same_work_ms"),
                "ms",
                &same,
            ),
            peer_row(
                "PyInstaller --onefile, later runs",
                "pyinstaller_warm_ms",
                "ms",
                &peers.pyinstaller_warm,
                peers.why.as_str(),
            ),
        ],
    })
}

/// Flushes dirty pages (`sync`), so a timed extraction starts without another's writeback.
pub fn settle() -> Result<()> {
    timed(&mut Command::new("sync"), "sync")?;
    Ok(())
}

/// A cache dir where the bundle is extracted (by one run of the app).
pub fn warm_cache(s: &Setup) -> Result<PathBuf> {
    let cache = s.work.join("warm-cache");
    if !cache.exists() {
        let (_, out) = timed(
            Command::new(&s.app).env("PYBUNDLE_CACHE_DIR", &cache),
            "outliers (filling the warm cache)",
        )?;
        check(&out, "outliers")?;
    }
    Ok(cache)
}

fn check(out: &str, what: &str) -> Result<()> {
    if out.lines().last().map(str::trim) != Some(EXPECTED) {
        bail!("{what} printed {out:?}, expected {EXPECTED}");
    }
    Ok(())
}

/// `driver.py`: the outliers computation without the runtime, on the app's 1000 values.
pub fn driver(s: &Setup) -> Result<PathBuf> {
    let path = s.work.join("driver.py");
    if !path.exists() {
        let values: Vec<String> = app_values().iter().map(|v| format!("{v:?}")).collect();
        fs_err::write(
            &path,
            format!(
                "# The outliers example's computation, standalone (for the peers).\n\
                 import numpy as np\n\
                 VALUES = [{}]\n\
                 data = np.asarray(VALUES, dtype=np.float64)\n\
                 distance = np.abs(data - data.mean())\n\
                 print([int(i) for i in np.flatnonzero(distance > 2.0 * data.std())])\n",
                values.join(", ")
            ),
        )?;
    }
    Ok(path)
}

/// The values examples/outliers/src/main.rs sends (same generator, seed and spikes).
fn app_values() -> Vec<f64> {
    let mut state: u64 = 0x5eed;
    let mut values: Vec<f64> = (0..1000)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            (bits as f64 / (1u64 << 53) as f64) * 40.0
        })
        .collect();
    for (i, v) in [(7, 97.3), (113, 92.1), (835, 93.2)] {
        values[i] = v;
    }
    values
}

/// Build times: a forced re-pack, a repeat build with nothing changed, and an app edit.
pub fn builds(s: &Setup) -> Result<Topic> {
    let key = s.archive.with_file_name("bundle.tar.zst.key");
    let (mut pack, mut noop_pack) = (Vec::new(), Vec::new());
    for _ in 0..s.slow_runs.min(2) {
        noop_pack.push(timed(&mut s.cli("pack"), "cargo pybundle pack (fresh)")?.0);
        fs_err::remove_file(&key)?;
        pack.push(timed(&mut s.cli("pack"), "cargo pybundle pack (forced)")?.0);
    }
    let cargo_build = || {
        let mut c = Command::new(tools::cargo());
        c.args(["build", "--release", "-q", "--manifest-path"])
            .arg(s.examples.join("outliers/Cargo.toml"))
            .arg("--target-dir")
            .arg(&s.target)
            .current_dir(&s.root);
        c
    };
    let main_rs = s.examples.join("outliers/src/main.rs");
    let touch = || -> Result<()> {
        let file = fs_err::OpenOptions::new().append(true).open(&main_rs)?;
        file.set_modified(std::time::SystemTime::now())?;
        Ok(())
    };
    let (mut ours, mut plain, mut edit, mut edit_plain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The re-pack above rewrote the archive, so the next build writes the bundled copy anew.
    timed(
        &mut s.cli("build"),
        "cargo pybundle build (after the re-pack)",
    )?;
    for _ in 0..s.slow_runs {
        ours.push(timed(&mut s.cli("build"), "cargo pybundle build (no change)")?.0);
        plain.push(timed(&mut cargo_build(), "cargo build (no change)")?.0);
    }
    for _ in 0..s.slow_runs {
        touch()?;
        edit.push(timed(&mut s.cli("build"), "cargo pybundle build after an edit")?.0);
        touch()?;
        edit_plain.push(timed(&mut cargo_build(), "cargo build after an edit")?.0);
    }
    let overhead: Vec<f64> = ours.iter().zip(&plain).map(|(a, b)| a - b).collect();
    let pack_only: Vec<f64> = pack.iter().zip(&noop_pack).map(|(a, b)| a - b).collect();
    Ok(Topic {
        title: "Builds".into(),
        compare: false,
        about: "`cargo pybundle pack --release` with its reuse key removed (a full zstd -19 \
                re-pack) against the same command with nothing to do; `cargo pybundle build \
                --release` with nothing changed against a no-op `cargo build --release`; after \
                touching src/main.rs of the bench's copy of examples/outliers, `cargo pybundle build --release` (cargo's \
                build plus writing the bundled copy) against `cargo build --release -p outliers`, \
                in the same target dir. Overheads are per-run differences."
            .into(),
        rows: vec![
            row(
                "pack: forced re-pack minus nothing-to-do",
                Some("pack_s"),
                "s",
                &pack_only,
            ),
            row("`cargo pybundle pack`, forced re-pack", None, "s", &pack),
            row(
                "`cargo pybundle pack`, nothing to do",
                None,
                "s",
                &noop_pack,
            ),
            row(
                "repeat build overhead (ours − plain)",
                Some("repeat_build_overhead_s"),
                "s",
                &overhead,
            ),
            row("`cargo pybundle build`, nothing changed", None, "s", &ours),
            row("`cargo build`, nothing changed", None, "s", &plain),
            row(
                "app edit: `cargo pybundle build`",
                Some("app_edit_rebuild_s"),
                "s",
                &edit,
            ),
            row(
                "app edit: `cargo build` (no bundle)",
                Some("app_edit_rebuild_plain_s"),
                "s",
                &edit_plain,
            ),
        ],
    })
}
