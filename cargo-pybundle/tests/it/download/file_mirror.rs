//! `file://` mirrors (air-gapped build farms keep pixi releases on a file share), with the
//! real pixi release of `../shared/pixi-releases`: the same checksum, version check and
//! temp-file-then-rename as a download.

use super::*;

/// A file URL for `dir`.
fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// A mirror folder holding `v<version>/<asset>` as a link to the real asset (if `asset`) and
/// `<asset>.sha256` with `sha` (if given).
fn mirror(releases: &Path, version: &str, asset: bool, sha: Option<&str>) -> tempfile::TempDir {
    let name = cargo_pybundle::download::asset_name().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join(format!("v{version}"));
    std::fs::create_dir_all(&release).unwrap();
    if asset {
        let real = releases.join(format!("v{REAL_VERSION}/{name}"));
        std::os::unix::fs::symlink(real, release.join(&name)).unwrap();
    }
    if let Some(sha) = sha {
        std::fs::write(
            release.join(format!("{name}.sha256")),
            format!("{sha}  {name}\n"),
        )
        .unwrap();
    }
    dir
}

#[test]
fn file_mirror_of_the_shared_releases() {
    let Some(releases) = shared_releases("file_mirror_of_the_shared_releases") else {
        return;
    };
    let run = run_with(&file_url(&releases), Some(REAL_VERSION), |_| {});
    assert_installed(&run, REAL_VERSION);
    let err = stderr(&run.out);
    assert!(err.contains("Copying file://"), "{err}");
    // What landed in the cache is the release's binary, and it runs.
    let cached = run.pixi_dir().join(REAL_VERSION).join("pixi");
    let out = std::process::Command::new(&cached)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pixi {REAL_VERSION}")
    );
}

#[test]
fn file_mirror_with_a_wrong_checksum() {
    let Some(releases) = shared_releases("file_mirror_with_a_wrong_checksum") else {
        return;
    };
    let dir = mirror(&releases, REAL_VERSION, true, Some(&"0".repeat(64)));
    let run = run_with(&file_url(dir.path()), Some(REAL_VERSION), |_| {});
    let err = assert_failed_cleanly(&run, &file_url(dir.path()));
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(&real_asset(&releases).1), "{err}");
}

#[test]
fn file_mirror_without_the_asset() {
    let Some(releases) = shared_releases("file_mirror_without_the_asset") else {
        return;
    };
    let sha = &real_asset(&releases).1;
    let dir = mirror(&releases, REAL_VERSION, false, Some(sha));
    let run = run_with(&file_url(dir.path()), Some(REAL_VERSION), |_| {});
    let name = cargo_pybundle::download::asset_name().unwrap();
    let path = dir.path().join(format!("v{REAL_VERSION}/{name}"));
    let err = assert_failed_cleanly(&run, &format!("{} does not exist", path.display()));
    assert!(err.contains("PYBUNDLE_PIXI_MIRROR"), "{err}");
}

#[test]
fn file_mirror_without_a_checksum_file() {
    let Some(releases) = shared_releases("file_mirror_without_a_checksum_file") else {
        return;
    };
    let dir = mirror(&releases, REAL_VERSION, true, None);
    let run = run_with(&file_url(dir.path()), Some(REAL_VERSION), |_| {});
    let err = assert_failed_cleanly(&run, ".sha256 does not exist");
    assert!(err.contains("pixi-sha256"), "{err}");
}

#[test]
fn file_mirror_serving_another_version_is_refused() {
    let Some(releases) = shared_releases("file_mirror_serving_another_version_is_refused") else {
        return;
    };
    // Consistent with itself (the checksum matches), but v0.59.0 holds pixi 0.77.0.
    let sha = &real_asset(&releases).1;
    let dir = mirror(&releases, "0.76.0", true, Some(sha));
    let run = run_with(&file_url(dir.path()), Some("0.76.0"), |_| {});
    let err = assert_failed_cleanly(&run, &file_url(dir.path()));
    assert!(
        err.contains(&format!(
            "served pixi {REAL_VERSION}, not the requested 0.76.0"
        )),
        "{err}"
    );
}

#[test]
fn file_url_that_names_no_local_folder() {
    let run = run_with("file://srv/pixi-releases", None, |_| {});
    let err = stderr(&run.out);
    assert_eq!(run.out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("file://srv/pixi-releases") && err.contains("file:///absolute/path"),
        "{err}"
    );
    assert_eq!(files_under(&run.pixi_dir()), Vec::<String>::new());
}
