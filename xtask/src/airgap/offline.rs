//! The air-gapped build machine: `cargo pybundle build --release` of a copy of
//! examples/pyreport (conda and PyPI dependencies, its own package built by hatchling) inside
//! `unshare --net`, where only loopback exists. Everything comes from local sources: the test
//! channel on `http://127.0.0.1` (and then as a `file://` folder), a PEP 503 index on
//! `http://127.0.0.1` holding the wheels the build needs (downloaded once from PyPI into the dev
//! cache), the cached pixi, cargo's registry cache. pixi's cache is empty at the start, so no
//! earlier online build can help.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::tools;

/// What the build downloads from PyPI: the example's dependency and the build backend (with
/// its dependencies, which pip resolves, and `editables`, which hatchling asks for to build an
/// editable install) that pixi's uv builds the project's package with.
const WHEELS: &[&str] = &["click==8.1.7", "hatchling==1.27.0", "editables==0.5"];

/// Ports inside the private network namespace: nothing else can be listening there.
const CHANNEL_PORT: u16 = 18401;
const INDEX_PORT: u16 = 18402;

/// Builds the example twice without a network (channel over http, then over `file://`) and
/// returns the binary built the second time, which the cases run on the bare machine.
pub fn build(channel_dir: &Path) -> Result<PathBuf> {
    let root = tools::workspace_root();
    let target = tools::target_dir(&root)?;
    let work = target.join("airgap-offline");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let index = simple_index(&ensure_wheels()?, &work.join("index"))?;
    let app = copy_example(&root, &work.join("pyreport"))?;
    let cli = target.join("release/cargo-pybundle");
    tools::run(
        Command::new(tools::cargo())
            .args(["build", "--release", "--quiet", "-p", "cargo-pybundle"])
            .current_dir(&root),
        "building cargo-pybundle",
    )?;
    let script = format!(
        r#"set -e
ip link set lo up
python3 -m http.server {CHANNEL_PORT} --bind 127.0.0.1 --directory "$CHANNEL" >"$WORK/channel.log" 2>&1 &
python3 -m http.server {INDEX_PORT} --bind 127.0.0.1 --directory "$INDEX" >"$WORK/index.log" 2>&1 &
for port in {CHANNEL_PORT} {INDEX_PORT}; do
  python3 -c "import socket,sys,time
for _ in range(100):
    try: socket.create_connection(('127.0.0.1', $port)); sys.exit(0)
    except OSError: time.sleep(0.1)
sys.exit('nothing listens on port $port')"
done
build() {{
  PYBUNDLE_CHANNEL_MIRRORS="conda-forge=$1" "$CLI" pybundle build --release \
    --manifest-path "$APP/Cargo.toml" --target-dir "$TARGET" -- --offline
}}
echo "offline build 1: channel on http://127.0.0.1:{CHANNEL_PORT}, PyPI index on http://127.0.0.1:{INDEX_PORT}" >&2
build "http://127.0.0.1:{CHANNEL_PORT}"
rm -rf "$APP/.pixi" "$PIXI_CACHE_DIR"
echo "offline build 2: channel as file://$CHANNEL (pixi.lock of build 1)" >&2
build "file://$CHANNEL"
"#
    );
    let out = Command::new("unshare")
        .args([
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .env("CHANNEL", channel_dir)
        .env("INDEX", &index)
        .env("WORK", &work)
        .env("APP", &app)
        .env("CLI", &cli)
        .env("TARGET", &target)
        .env("PIXI_CACHE_DIR", work.join("pixi-cache"))
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("PYBUNDLE_PIXI")
        .env_remove("PYBUNDLE_CHANNEL_MIRRORS")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the offline build in `unshare --net`")?;
    if !out.status.success() {
        let index_log = fs::read_to_string(work.join("index.log")).unwrap_or_default();
        bail!(
            "the offline build failed ({}); its output is above. Index server log:\n{index_log}",
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let binary = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .filter(|b| b.is_file())
        .with_context(|| format!("the offline build printed no binary: {stdout:?}"))?;
    // The index was really used: pixi's cache started empty.
    let index_log = fs::read_to_string(work.join("index.log"))?;
    for wheel in ["click-8.1.7", "hatchling-1.27.0"] {
        if !index_log.contains(&format!("GET /files/{wheel}")) {
            bail!("the offline build never fetched {wheel} from the local index:\n{index_log}");
        }
    }
    Ok(binary)
}

/// The wheels of [`WHEELS`] and their dependencies, downloaded once with the host's pip into
/// `<dev cache>/pypi-wheels/<key>/` (a folder under that name is always complete).
fn ensure_wheels() -> Result<PathBuf> {
    let key = {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(WHEELS.join("\n").as_bytes());
        hex::encode(&digest[..8])
    };
    let root = tools::dev_cache()?.join("pypi-wheels");
    let dir = root.join(&key);
    if dir.is_dir() {
        return Ok(dir);
    }
    fs::create_dir_all(&root)?;
    let partial = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&root)?;
    eprintln!(
        "xtask: airgap: downloading {} from PyPI (once)",
        WHEELS.join(", ")
    );
    tools::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                "--dest",
            ])
            .arg(partial.path())
            .args(WHEELS),
        "downloading the offline build's wheels with pip (PyPI must be reachable once)",
    )?;
    fs::rename(partial.keep(), &dir)?;
    Ok(dir)
}

/// A PEP 503 index of the wheels in `wheels`, at `dir/simple/<project>/` with the files in
/// `dir/files/`.
fn simple_index(wheels: &Path, dir: &Path) -> Result<PathBuf> {
    let files = dir.join("files");
    fs::create_dir_all(&files)?;
    let mut projects: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for entry in fs::read_dir(wheels)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") {
            continue;
        }
        fs::copy(wheels.join(&name), files.join(&name))?;
        let project = name.split('-').next().unwrap_or(&name);
        let normalized = project.to_lowercase().replace(['_', '.'], "-");
        projects.entry(normalized).or_default().push(name);
    }
    if projects.is_empty() {
        bail!("{} holds no wheels", wheels.display());
    }
    for (project, wheels) in &projects {
        let page = dir.join("simple").join(project);
        fs::create_dir_all(&page)?;
        let links: String = wheels
            .iter()
            .map(|w| format!("<a href=\"../../files/{w}\">{w}</a><br>\n"))
            .collect();
        fs::write(
            page.join("index.html"),
            format!("<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"),
        )?;
    }
    Ok(dir.to_path_buf())
}

/// examples/pyreport copied to `dest` as a package of its own (the workspace's Cargo.lock beside
/// it, pybundle-runtime by absolute path), with the local index as its PyPI index.
fn copy_example(root: &Path, dest: &Path) -> Result<PathBuf> {
    crate::tools::copy_example(root, "pyreport", dest)?;
    let pyproject = dest.join("pyproject.toml");
    let text = fs::read_to_string(&pyproject)?;
    fs::write(
        &pyproject,
        format!(
            "{text}\n# Added by the offline build: the local index.\n[tool.pixi.pypi-options]\n\
             index-url = \"http://127.0.0.1:{INDEX_PORT}/simple\"\n"
        ),
    )?;
    Ok(dest.to_path_buf())
}
