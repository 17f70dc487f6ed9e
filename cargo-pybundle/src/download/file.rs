//! `file://` mirrors: pixi releases kept in a folder (a file share on an air-gapped build
//! farm) laid out like the release site, `<dir>/v<version>/<asset>` beside `<asset>.sha256`.
//! The asset goes through the same hash-while-copying path as a download.

use anyhow::{anyhow, bail, Context as _, Result};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::{parse_sha256_file, stream};
use crate::ui::Ui;

/// The local path a `file://` URL names (percent-escapes decoded).
pub(super) fn path_of(url: &str) -> Result<PathBuf> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow!("`{url}` is not a valid URL ({e}); check PYBUNDLE_PIXI_MIRROR"))?;
    parsed.to_file_path().map_err(|()| {
        anyhow!(
            "`{url}` does not name a folder on this machine; a file mirror is written \
             file:///absolute/path (three slashes); check PYBUNDLE_PIXI_MIRROR"
        )
    })
}

/// The checksum published beside the asset, `None` if there is no `.sha256` file.
pub(super) fn published_sha256(url: &str) -> Result<Option<String>> {
    let path = path_of(&format!("{url}.sha256"))?;
    let mut text = String::new();
    match fs_err::File::open(&path) {
        Ok(file) => file
            .take(64 * 1024)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    parse_sha256_file(&text).map(Some).ok_or_else(|| {
        anyhow!(
            "{} does not hold a sha256 (expected `<hex>  <name>` or bare hex)",
            path.display()
        )
    })
}

/// Copies the asset `url` names into a temp file in `dir` through sha256 (see
/// [`stream::copy_verified`]).
pub(super) fn copy_verified(
    url: &str,
    dir: &Path,
    expected: &str,
    ui: &Ui,
) -> Result<tempfile::NamedTempFile> {
    let path = path_of(url)?;
    let mut file = match fs_err::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist; the mirror should hold v<version>/{} there",
            path.display(),
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().ok().map(|m| m.len());
    stream::copy_verified(
        |buf| loop {
            match file.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other.with_context(|| format!("reading {}", path.display())),
            }
        },
        len,
        dir,
        expected,
        ui,
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn file_urls_name_local_paths() {
        assert_eq!(
            path_of("file:///srv/pixi-releases/v1/a.tar.gz").unwrap(),
            Path::new("/srv/pixi-releases/v1/a.tar.gz")
        );
        assert_eq!(
            path_of("file:///srv/my%20mirror/x").unwrap(),
            Path::new("/srv/my mirror/x")
        );
        assert_eq!(
            path_of("file://localhost/srv/x").unwrap(),
            Path::new("/srv/x")
        );
        let err = path_of("file://srv/pixi-releases/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("three slashes"), "{err}");
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/v1/pixi.tar.gz", dir.path().display());
        assert_eq!(published_sha256(&url).unwrap(), None);
        let ui = Ui {
            quiet: true,
            verbose: 0,
        };
        let err = format!(
            "{:#}",
            copy_verified(&url, dir.path(), &"0".repeat(64), &ui).unwrap_err()
        );
        assert!(
            err.contains(&format!(
                "{}/v1/pixi.tar.gz does not exist",
                dir.path().display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
