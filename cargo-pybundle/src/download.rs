//! Downloading pixi from its GitHub releases (or a mirror), verified before use.
//!
//! The archive streams through sha256 into a temp file in the cache directory; only after the
//! checksum matches is the `pixi` binary extracted (to another temp file), made executable and
//! renamed into place. A failure at any point leaves nothing a later run would trust.
//!
//! HTTP is ureq 3 (blocking, rustls): a lean synchronous client is all one download needs;
//! reqwest would pull in tokio.

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ui::Ui;

/// Release downloads of pixi; `PYBUNDLE_PIXI_MIRROR` replaces it.
pub const DEFAULT_BASE_URL: &str = "https://github.com/prefix-dev/pixi/releases/download";

/// What to fetch and how to check it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Base URL; the archive is `<base>/v<version>/pixi-<target>.tar.gz`.
    pub base_url: String,
    /// pixi version, without a leading `v`.
    pub version: String,
    /// Expected sha256 from configuration (`pixi-sha256`), lower-case hex.
    pub sha256: Option<String>,
}

const HOW_TO_SUPPLY: &str = "supply pixi by hand with --pixi PATH or PYBUNDLE_PIXI=PATH, \
     or point PYBUNDLE_PIXI_MIRROR at a reachable copy of the releases";

/// The release asset name for the machine we run on.
pub fn asset_name() -> Result<String> {
    let arch = match std::env::consts::ARCH {
        arch @ ("x86_64" | "aarch64") => arch,
        other => bail!("pixi publishes no build for the {other} architecture; {HOW_TO_SUPPLY}"),
    };
    let os = match std::env::consts::OS {
        "linux" => "unknown-linux-musl",
        "macos" => "apple-darwin",
        other => bail!("downloading pixi is not supported on {other} here; {HOW_TO_SUPPLY}"),
    };
    Ok(format!("pixi-{arch}-{os}.tar.gz"))
}

/// Downloads, verifies and installs pixi as `dest` (`<cache>/<version>/pixi`).
pub fn fetch(request: &Request, dest: &Path, ui: &Ui) -> Result<PathBuf> {
    let asset = asset_name()?;
    let base = request.base_url.trim_end_matches('/');
    let url = format!("{base}/v{}/{asset}", request.version);
    let dir = dest.parent().context("the pixi cache path has no parent")?;
    fs_err::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the pixi cache directory {}; make it writable, or {HOW_TO_SUPPLY}",
            dir.display()
        )
    })?;
    let agent = agent();

    let published = published_sha256(&agent, &url)?;
    let expected = match (&request.sha256, &published) {
        (Some(pinned), Some(published)) if pinned != published => bail!(
            "the pixi-sha256 in your configuration ({pinned}) differs from the one published at \
             {url}.sha256 ({published}); check which is right before trusting either"
        ),
        (Some(sha), _) | (None, Some(sha)) => sha.clone(),
        (None, None) => bail!(
            "{url}.sha256 does not exist (pixi publishes checksums from v0.39.1 on), so the \
             download cannot be verified; set `pixi-sha256` in [package.metadata.pybundle] or \
             {HOW_TO_SUPPLY}"
        ),
    };

    ui.status("Downloading", &url);
    let archive = download_verified(&agent, &url, dir, &expected, ui)
        .with_context(|| format!("downloading {url}; {HOW_TO_SUPPLY}"))?;
    extract_pixi(archive.path(), dest)
        .with_context(|| format!("extracting pixi from {url}; {HOW_TO_SUPPLY}"))?;
    Ok(dest.to_path_buf())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// The checksum published beside the asset, `None` if there is none (404).
fn published_sha256(agent: &ureq::Agent, url: &str) -> Result<Option<String>> {
    let sha_url = format!("{url}.sha256");
    let mut response = match agent.get(&sha_url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(404)) => return Ok(None),
        Err(err) => return Err(http_error(err, &sha_url)),
    };
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| http_error(e, &sha_url))?;
    parse_sha256_file(&text).map(Some).ok_or_else(|| {
        anyhow!("{sha_url} does not hold a sha256 (expected `<hex>  <name>` or bare hex)")
    })
}

/// Accepts `<hex>  <name>` (sha256sum's format) or a bare hex digest.
pub fn parse_sha256_file(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    (first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| first.to_ascii_lowercase())
}

fn http_error(err: ureq::Error, url: &str) -> anyhow::Error {
    match err {
        ureq::Error::StatusCode(code) => {
            anyhow!("{url} answered HTTP {code}; {HOW_TO_SUPPLY}")
        }
        other => anyhow!("cannot fetch {url}: {other}; {HOW_TO_SUPPLY}"),
    }
}

/// Streams `url` into a temp file in `dir` through sha256; the file is returned only if the
/// digest matches (dropping the temp file otherwise removes it).
fn download_verified(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    expected: &str,
    ui: &Ui,
) -> Result<tempfile::NamedTempFile> {
    let response = agent.get(url).call().map_err(|e| http_error(e, url))?;
    let body = response.into_body();
    let bar = ui.bytes_bar(body.content_length(), "pixi");
    let mut reader = body.into_reader();
    let mut file = tempfile::Builder::new()
        .prefix(".pixi-download-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow!(e).context("the download broke off")),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).context("writing the download")?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    file.flush().context("writing the download")?;
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        bail!(
            "checksum mismatch: expected sha256 {expected}, got {actual}; the file was discarded"
        );
    }
    Ok(file)
}

/// Extracts the `pixi` binary (at the archive root, or one folder down as in v0.39.0/0.39.1)
/// into a temp file beside `dest`, marks it executable and renames it into place.
fn extract_pixi(archive: &Path, dest: &Path) -> Result<()> {
    let dir = dest.parent().context("the pixi cache path has no parent")?;
    let file = fs_err::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().context("reading the tar.gz")? {
        let mut entry = entry.context("reading the tar.gz")?;
        let path = entry.path().context("reading the tar.gz")?.into_owned();
        let depth = path.components().count();
        if !entry.header().entry_type().is_file()
            || depth > 2
            || path.file_name() != Some("pixi".as_ref())
        {
            continue;
        }
        let mut out = tempfile::Builder::new().prefix(".pixi-").tempfile_in(dir)?;
        std::io::copy(&mut entry, &mut out).context("unpacking pixi")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            out.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o755))?;
        }
        out.persist(dest)
            .map_err(|e| e.error)
            .with_context(|| format!("moving pixi to {}", dest.display()))?;
        return Ok(());
    }
    bail!("the archive holds no `pixi` binary")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let gz = flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        file
    }

    #[test]
    fn pixi_is_found_at_the_root_or_one_folder_down() {
        let dir = tempfile::tempdir().unwrap();
        for (layout, name) in [
            ("root", "pixi"),
            ("v0.39.0", "pixi-x86_64-unknown-linux-musl/pixi"),
        ] {
            let archive = tar_gz(&[("README.md", b"x"), (name, b"binary")]);
            let dest = dir.path().join(layout).join("pixi");
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            extract_pixi(archive.path(), &dest).unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"binary");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                assert_eq!(
                    std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
                    0o755
                );
            }
        }
        let archive = tar_gz(&[("a/b/pixi", b"too deep"), ("other", b"x")]);
        let dest = dir.path().join("none/pixi");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        assert!(extract_pixi(archive.path(), &dest).is_err());
        assert!(!dest.exists());
    }

    #[test]
    fn sha256_file_formats() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_sha256_file(&format!("{hex}  pixi-x.tar.gz\n")),
            Some(hex.clone())
        );
        assert_eq!(
            parse_sha256_file(&format!("{}\n", hex.to_uppercase())),
            Some(hex)
        );
        assert_eq!(parse_sha256_file("<html>not found</html>"), None);
        assert_eq!(parse_sha256_file(""), None);
    }
}
