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

/// Install and measure both peers; failures go to `notes`.
pub fn run(s: &Setup, notes: &mut Vec<String>) -> Peers {
    let mut peers = Peers::default();
    if let Err(e) = conda_pack(s, &mut peers) {
        notes.push(format!("conda-pack failed, its cells are empty: {e:#}"));
        peers.why = "peer failed, see the notes".into();
    }
    if let Err(e) = pyinstaller(s, &mut peers) {
        notes.push(format!("PyInstaller failed, its cells are empty: {e:#}"));
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
        pip(&venv.join("bin/python"), "conda-pack")?;
    }
    let out = s.work.join("conda-pack.tar.gz");
    eprintln!("xtask: bench: conda-pack -p {}", s.prefix.display());
    timed(
        Command::new(&bin)
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
