//! Getting pixi over HTTP, through the real CLI (`cargo pybundle pixi --version`) against a
//! real server on 127.0.0.1 named by `PYBUNDLE_PIXI_MIRROR`.

use crate::server::{Reply, Server};
use crate::support::{cargo_pybundle, files_under, stderr};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

const VERSION: &str = cargo_pybundle::DEFAULT_PIXI_VERSION;

/// The release asset: a tar.gz holding `pixi` at its root. The binary is the real test pixi
/// (`PYBUNDLE_PIXI`) when there is one, else a shell script standing in for it.
fn asset() -> &'static (Vec<u8>, String) {
    static ASSET: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    ASSET.get_or_init(|| {
        let binary = match std::env::var_os("PYBUNDLE_PIXI")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
        {
            Some(pixi) => std::fs::read(pixi).unwrap(),
            None => b"#!/bin/sh\necho pixi 0.0.0-stand-in\n".to_vec(),
        };
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(binary.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "pixi", &binary[..]).unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        (bytes, sha)
    })
}

fn asset_path() -> String {
    format!(
        "/v{VERSION}/{}",
        cargo_pybundle::download::asset_name().unwrap()
    )
}

struct Run {
    out: std::process::Output,
    cache: tempfile::TempDir,
}

impl Run {
    fn pixi_dir(&self) -> PathBuf {
        self.cache.path().join("cargo-pybundle/pixi")
    }
}

/// Runs `cargo pybundle pixi --version` with an empty cache and `mirror` as the base URL.
fn run(mirror: &str) -> Run {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = cargo_pybundle()
        .args(["pixi", "--version"])
        .current_dir(cwd.path())
        .env("XDG_CACHE_HOME", cache.path())
        .env("HOME", cwd.path())
        .env("PYBUNDLE_PIXI_MIRROR", mirror)
        .output()
        .unwrap();
    Run { out, cache }
}

fn routes(asset: Reply, sha: Option<&str>) -> HashMap<String, Reply> {
    let mut routes = HashMap::from([(asset_path(), asset)]);
    if let Some(sha) = sha {
        let name = asset_path().rsplit('/').next().unwrap().to_owned();
        routes.insert(
            format!("{}.sha256", asset_path()),
            Reply::Body(format!("{sha}  {name}\n").into_bytes()),
        );
    }
    routes
}

fn assert_failed_cleanly(run: &Run, url_part: &str) -> String {
    let err = stderr(&run.out);
    assert_eq!(run.out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(url_part),
        "message should name the URL ({url_part}):\n{err}"
    );
    assert!(
        err.contains("--pixi") && err.contains("PYBUNDLE_PIXI"),
        "message should say how to supply pixi:\n{err}"
    );
    assert_eq!(
        files_under(&run.pixi_dir()),
        Vec::<String>::new(),
        "nothing may be left in the cache"
    );
    err
}

#[test]
fn good_download_is_verified_cached_and_runs() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), Some(sha)));
    let run = run(&server.url());
    let err = stderr(&run.out);
    assert!(run.out.status.success(), "{err}");
    assert!(
        String::from_utf8_lossy(&run.out.stdout).starts_with("pixi "),
        "{:?}",
        run.out
    );
    assert_eq!(files_under(&run.pixi_dir()), [format!("{VERSION}/pixi")]);
    assert!(server.requests().contains(&asset_path()));

    // A second run uses the cache: no new requests.
    let before = server.requests().len();
    let again = cargo_pybundle()
        .args(["pixi", "--version"])
        .current_dir(run.cache.path())
        .env("XDG_CACHE_HOME", run.cache.path())
        .env("PYBUNDLE_PIXI_MIRROR", server.url())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(server.requests().len(), before);
}

#[test]
fn wrong_checksum_is_rejected_and_nothing_is_kept() {
    let (bytes, _) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), Some(&"0".repeat(64))));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &asset_path());
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn missing_asset_404() {
    let (_, sha) = asset();
    let mut r = routes(Reply::Body(Vec::new()), Some(sha));
    r.remove(&asset_path());
    let server = Server::start(r);
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &asset_path());
    assert!(err.contains("HTTP 404"), "{err}");
}

#[test]
fn missing_checksum_file_refuses_unverified_download() {
    let (bytes, _) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), None));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &format!("{}.sha256", asset_path()));
    assert!(err.contains("pixi-sha256"), "{err}");
    assert!(
        !server.requests().contains(&asset_path()),
        "must not download what it cannot verify"
    );
}

#[test]
fn truncated_body_is_rejected() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Truncated(bytes.clone()), Some(sha)));
    let run = run(&server.url());
    assert_failed_cleanly(&run, &asset_path());
}

#[test]
fn unreachable_server() {
    // Bind then drop: nothing listens on this port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = run(&url);
    assert_failed_cleanly(&run, &url);
}

#[test]
fn pinned_version_and_checksum_from_the_package_config() {
    let (bytes, sha) = asset();
    let asset = cargo_pybundle::download::asset_name().unwrap();
    let path = format!("/v1.2.3/{asset}");
    // No .sha256 published: the pinned `pixi-sha256` is what makes the download acceptable.
    let server = Server::start(HashMap::from([(path.clone(), Reply::Body(bytes.clone()))]));
    let cache = tempfile::tempdir().unwrap();
    let pkg = tempfile::tempdir().unwrap();
    crate::support::package(
        pkg.path(),
        "pinned",
        Some(&format!(
            "pixi-version = \"v1.2.3\"\npixi-sha256 = \"{}\"",
            sha.to_uppercase()
        )),
    );
    let out = cargo_pybundle()
        .args(["pixi", "--version"])
        .current_dir(pkg.path())
        .env("XDG_CACHE_HOME", cache.path())
        .env("PYBUNDLE_PIXI_MIRROR", server.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.requests().contains(&path), "{:?}", server.requests());
    assert_eq!(
        files_under(&cache.path().join("cargo-pybundle/pixi")),
        ["1.2.3/pixi"]
    );
}
