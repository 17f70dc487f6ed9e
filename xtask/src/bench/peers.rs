//! The peers, on the same prefix and the same computation: conda-pack (from PyPI, in a
//! private venv under the dev cache) packs the prefix pixi installed; PyInstaller (from PyPI,
//! in a venv made from that prefix's own interpreter, so it sees the same numpy) builds a
//! `--onefile` binary of the outliers computation. A peer that fails leaves its cells empty
//! and says why; our rows are still measured.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{measure, timed, Setup, EXPECTED};
use crate::tools;

/// What the peers measured (samples; empty when not measured) and why some are missing.
#[derive(Debug, Default)]
pub struct Peers {
    /// Size of conda-pack's tar.gz.
    pub conda_pack_bytes: Vec<f64>,
    /// Seconds for `tar xzf` + `bin/conda-unpack`.
    pub conda_pack_unpack: Vec<f64>,
    /// Size of the PyInstaller binary.
    pub pyinstaller_bytes: Vec<f64>,
    /// Seconds of its first run after the build.
    pub pyinstaller_cold: Vec<f64>,
    /// Milliseconds of later runs.
    pub pyinstaller_warm: Vec<f64>,
    /// Why a peer row is empty (the note on empty rows).
    pub why: String,
}

/// Why pixi-pack has no row (checked on 2026-12-03: `index.crates.io/pi/xi/pixi-pack`, pip,
/// npm).
const PIXI_PACK: &str = "pixi-pack (pack the lock's packages, unpack and install them on the \
    target) is not measured: its releases are published on GitHub and conda-forge, which this \
    machine cannot reach; crates.io holds only a 0.0.0 placeholder under that name and PyPI none. \
    `pixi install --frozen` from a warm package cache stands for its install step.";

/// Install and measure both peers; failures go to `notes`.
pub fn run(s: &Setup, notes: &mut Vec<String>) -> Peers {
    let mut peers = Peers::default();
    notes.push(
        "conda-pack 0.9.2 (PyPI) packs the prefix with `--ignore-missing-files` (numpy came from \
         PyPI through pixi, so no conda package owns its files), run through a small wrapper \
         that fixes its `mtime may not be None` crash under Python 3.11 (bin/conda-unpack's \
         mtime); PyInstaller (PyPI, latest) runs in a venv made from the prefix's own python \
         with `--system-site-packages`, so it packs the same interpreter and numpy."
            .to_string(),
    );
    notes.push(PIXI_PACK.to_string());
    if let Err(e) = conda_pack(s, &mut peers) {
        notes.push(format!(
            "conda-pack failed; its rows hold what was measured before the failure, if anything: {e:#}"
        ));
        peers.why = "peer failed, see the notes".into();
    }
    if let Err(e) = pyinstaller(s, &mut peers) {
        notes.push(format!(
            "PyInstaller failed; its rows hold what was measured before the failure, if anything: {e:#}"
        ));
        peers.why = "peer failed, see the notes".into();
    }
    peers
}

fn conda_pack(s: &Setup, peers: &mut Peers) -> Result<()> {
    let venv = tools::dev_cache()?.join("bench-venv");
    let bin = venv.join("bin/conda-pack");
    if !bin.is_file() {
        eprintln!(
            "xtask: bench: installing conda-pack from PyPI into {}",
            venv.display()
        );
        tools::run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "creating the bench venv",
        )?;
        pip(&venv.join("bin/python"), "conda-pack==0.9.2")?;
    }
    let out = s.work.join("conda-pack.tar.gz");
    eprintln!("xtask: bench: conda-pack -p {}", s.prefix.display());
    timed(
        Command::new(venv.join("bin/python"))
            .args(["-c", CONDA_PACK_MTIME_FIX])
            .arg("-p")
            .arg(&s.prefix)
            .arg("-o")
            .arg(&out)
            // numpy came from PyPI (pixi's pypi-dependencies): its files are no conda
            // package's, which conda-pack refuses without this flag.
            .args(["--ignore-missing-files", "--force", "-q"]),
        "conda-pack",
    )?;
    peers
        .conda_pack_bytes
        .push(fs_err::metadata(&out)?.len() as f64);
    for i in 0..s.slow_runs {
        let dir = s.work.join(format!("conda-unpack-{i}"));
        fs_err::create_dir_all(&dir)?;
        measure::settle()?;
        let start = std::time::Instant::now();
        tools::run(
            Command::new("tar").arg("xzf").arg(&out).arg("-C").arg(&dir),
            "extracting the conda-pack archive",
        )?;
        timed(
            &mut Command::new(dir.join("bin/conda-unpack")),
            "bin/conda-unpack",
        )?;
        peers.conda_pack_unpack.push(start.elapsed().as_secs_f64());
        // The unpacked prefix must work: the same computation with its python.
        let (_, said) = timed(
            Command::new(dir.join("bin/python3.11"))
                .arg("-I")
                .arg(measure::driver(s)?),
            "the conda-unpacked python",
        )?;
        if said != EXPECTED {
            bail!("the conda-unpacked python printed {said:?}, expected {EXPECTED}");
        }
        fs_err::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// conda-pack's CLI with one bug fixed: 0.8.1 and 0.9.2 give `bin/conda-unpack` the archive's
/// mtime, which is None unless set, and Python 3.11's tarfile refuses a None mtime
/// ("ValueError: mtime may not be None"). Only that script's mtime changes.
const CONDA_PACK_MTIME_FIX: &str = "\
import sys, time
import conda_pack.formats as formats
from conda_pack.cli import main
_init = formats.TarArchive.__init__
def _init_with_mtime(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.mtime is None:
        self.mtime = int(time.time())
formats.TarArchive.__init__ = _init_with_mtime
main()
";

fn pip(python: &Path, package: &str) -> Result<()> {
    tools::run(
        Command::new(python).args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            package,
        ]),
        &format!("pip install {package}"),
    )
}

fn pyinstaller(s: &Setup, peers: &mut Peers) -> Result<()> {
    // Tied to this prefix (its interpreter), so it lives next to it in the target dir.
    let venv = s.target.join("bench/pyinstaller-venv");
    let bin = venv.join("bin/pyinstaller");
    if !bin.is_file() {
        eprintln!(
            "xtask: bench: installing PyInstaller from PyPI into {}",
            venv.display()
        );
        tools::run(
            Command::new(s.python())
                .args(["-m", "venv", "--system-site-packages"])
                .arg(&venv),
            "creating a venv from the prefix's python",
        )?;
        pip(&venv.join("bin/python"), "pyinstaller")?;
    }
    let driver = measure::driver(s)?;
    let build = s.work.join("pyinstaller");
    eprintln!("xtask: bench: pyinstaller --onefile driver.py");
    timed(
        Command::new(&bin)
            .args([
                "--onefile",
                "--noconfirm",
                "--log-level",
                "WARN",
                "--distpath",
            ])
            .arg(build.join("dist"))
            .arg("--workpath")
            .arg(build.join("work"))
            .arg("--specpath")
            .arg(&build)
            .arg(&driver),
        "pyinstaller --onefile",
    )?;
    let exe: PathBuf = build.join("dist/driver");
    peers
        .pyinstaller_bytes
        .push(fs_err::metadata(&exe)?.len() as f64);
    let run = || -> Result<f64> {
        let (t, said) = timed(&mut Command::new(&exe), "the PyInstaller binary")?;
        if said != EXPECTED {
            bail!("the PyInstaller binary printed {said:?}, expected {EXPECTED}");
        }
        Ok(t)
    };
    peers.pyinstaller_cold.push(run().context("first run")?);
    for _ in 0..s.fast_runs {
        peers.pyinstaller_warm.push(run()? * 1e3);
    }
    Ok(())
}
