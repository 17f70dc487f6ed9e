//! Downloading pixi from its GitHub releases (or a mirror), verified before use.
//!
//! The archive streams through sha256 into a temp file in the cache directory; only after the
//! checksum matches is the `pixi` binary extracted (to another temp file), made executable,
//! asked for its version (a mirror serving another release with a matching `.sha256` is caught
//! here) and renamed into place. A failure at any point leaves nothing a later run would trust.
//!
//! Sources: `http(s)://` (the release site or a web mirror) and `file://` (a folder laid out
//! like the release site, e.g. on a file share; module `file`). Over HTTP, redirects are
//! followed by hand so each hop can be checked (module `redirect`): only within the configured
//! URL's host name (plus GitHub's asset hosts when that host is github.com, where every release
//! download redirects), never from https to http. Connecting, waiting for an answer and every
//! read wait at most `PYBUNDLE_HTTP_TIMEOUT` seconds, so a server that stalls fails instead of
//! hanging the build. Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`
//! (module `proxy`); TLS trusts the system store plus `SSL_CERT_FILE`/`SSL_CERT_DIR` (module
//! `tls`).
//!
//! HTTP is reqwest's blocking client over rustls (with *ring*): the client the design names,
//! and the one that honours proxy variables the way other tools do.

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ui::Ui;

mod file;
mod http;
mod proxy;
mod redirect;
mod stream;
mod tls;

use http::Http;

/// Release downloads of pixi; `PYBUNDLE_PIXI_MIRROR` replaces it.
pub const DEFAULT_BASE_URL: &str = "https://github.com/prefix-dev/pixi/releases/download";

/// Environment variable: seconds to wait for a connection or for the next bytes of an answer.
pub const TIMEOUT_VAR: &str = "PYBUNDLE_HTTP_TIMEOUT";

/// Environment variable: the base URL of pixi releases, replacing [`DEFAULT_BASE_URL`].
pub const MIRROR_VAR: &str = "PYBUNDLE_PIXI_MIRROR";

/// Default for [`TIMEOUT_VAR`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to fetch and how to check it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Base URL, `http(s)://` or `file://`; the archive is
    /// `<base>/v<version>/pixi-<target>.tar.gz`, its checksum that plus `.sha256`.
    pub base_url: String,
    /// pixi version, without a leading `v`.
    pub version: String,
    /// Expected sha256 from configuration (`pixi-sha256`), lower-case hex.
    pub sha256: Option<String>,
}

const HOW_TO_SUPPLY: &str = "supply pixi by hand with --pixi PATH or PYBUNDLE_PIXI=PATH, \
     or point PYBUNDLE_PIXI_MIRROR at a reachable copy of the releases (https:// or \
     file:///path/to/folder)";

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

/// Where the archive comes from.
enum Source {
    Http(Box<Http>),
    File,
}

impl Source {
    /// The source for a base URL (`PYBUNDLE_PIXI_MIRROR` or the default).
    fn for_base(base: &str) -> Result<Source> {
        match base
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
        {
            Some(scheme) if scheme == "file" => {
                file::path_of(base)?;
                Ok(Source::File)
            }
            Some(scheme) if scheme == "http" || scheme == "https" => {
                Ok(Source::Http(Box::new(Http::from_env()?)))
            }
            _ => bail!(
                "{MIRROR_VAR}: `{base}` is neither an http(s):// nor a file:// URL; for a folder \
                 of releases write file:///absolute/path/to/it"
            ),
        }
    }

    fn published_sha256(&self, url: &str) -> Result<Option<String>> {
        match self {
            Source::Http(http) => http.published_sha256(url),
            Source::File => file::published_sha256(url),
        }
    }

    fn download_verified(
        &self,
        url: &str,
        dir: &Path,
        expected: &str,
        ui: &Ui,
    ) -> Result<tempfile::NamedTempFile> {
        match self {
            Source::Http(http) => {
                ui.status("Downloading", url);
                http.download_verified(url, dir, expected, ui)
            }
            Source::File => {
                ui.status("Copying", url);
                file::copy_verified(url, dir, expected, ui)
            }
        }
    }
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
    let fetched = fetch_into(request, &url, dir, dest, ui);
    if fetched.is_err() {
        // The version folder made above, if nothing else is in it (another build's download
        // in progress would be): a failed download leaves no trace in the cache.
        let _ = std::fs::remove_dir(dir);
    }
    fetched
}

fn fetch_into(request: &Request, url: &str, dir: &Path, dest: &Path, ui: &Ui) -> Result<PathBuf> {
    let timeout = timeout_from_env()?;
    let base = request.base_url.trim_end_matches('/');
    let source = Source::for_base(base)?;

    let published = source
        .published_sha256(url)
        .with_context(|| format!("fetching the published checksum; {HOW_TO_SUPPLY}"))?;
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

    let archive = source
        .download_verified(url, dir, &expected, ui)
        .with_context(|| format!("downloading {url}; {HOW_TO_SUPPLY}"))?;
    let pixi = extract_pixi(archive.path(), dir)
        .with_context(|| format!("extracting pixi from {url}; {HOW_TO_SUPPLY}"))?;
    check_version(&pixi, &request.version, url, timeout)?;
    pixi.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("moving pixi to {}", dest.display()))?;
    Ok(dest.to_path_buf())
}

/// The timeout setting: `PYBUNDLE_HTTP_TIMEOUT` in seconds, or [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Result<Duration> {
    match std::env::var(TIMEOUT_VAR) {
        Ok(text) if !text.trim().is_empty() => parse_timeout(&text),
        _ => Ok(DEFAULT_TIMEOUT),
    }
}

fn parse_timeout(text: &str) -> Result<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            anyhow!(
                "{TIMEOUT_VAR}=`{text}` is not a number of seconds; set it to e.g. 60, or unset \
                 it for the default of {}",
                DEFAULT_TIMEOUT.as_secs()
            )
        })
}

/// Accepts `<hex>  <name>` (sha256sum's format) or a bare hex digest.
pub fn parse_sha256_file(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    (first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| first.to_ascii_lowercase())
}

/// Extracts the `pixi` binary (at the archive root, or one folder down as in v0.39.0/0.39.1)
/// into an executable temp file in `dir`, closed so it can be run.
fn extract_pixi(archive: &Path, dir: &Path) -> Result<tempfile::TempPath> {
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
        // Closing the file matters: Linux refuses to run a file open for writing (ETXTBSY).
        return Ok(out.into_temp_path());
    }
    bail!("the archive holds no `pixi` binary")
}

/// Runs the extracted binary with `--version` and refuses it unless it is the version asked
/// for: a checksum only proves the file is the one the server meant, not the one we meant.
fn check_version(pixi: &Path, want: &str, url: &str, timeout: Duration) -> Result<()> {
    let got = run_version(pixi, timeout).with_context(|| {
        format!(
            "the file downloaded from {url} does not run as `pixi --version`; it was \
             discarded. {HOW_TO_SUPPLY}"
        )
    })?;
    if got != want.trim_start_matches('v') {
        bail!(
            "{url} served pixi {got}, not the requested {want}; it was discarded. Fix the \
             mirror, set `pixi-version = \"{got}\"` in [package.metadata.pybundle] if that \
             version is what you want, or {HOW_TO_SUPPLY}"
        );
    }
    Ok(())
}

/// The version `pixi --version` prints (`pixi 0.59.0` → `0.59.0`), killed after `timeout`.
pub fn run_version(pixi: &Path, timeout: Duration) -> Result<String> {
    let mut child = Command::new(pixi)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {} --version", pixi.display()))?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`pixi --version` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .filter(|_| out.status.success() && text.starts_with("pixi "))
        .with_context(|| format!("`pixi --version` printed {:?}", text.trim()))?;
    Ok(version.trim_start_matches('v').to_owned())
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
            let temp = extract_pixi(archive.path(), dest.parent().unwrap()).unwrap();
            temp.persist(&dest).unwrap();
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
        let none = dir.path().join("none");
        std::fs::create_dir_all(&none).unwrap();
        assert!(extract_pixi(archive.path(), &none).is_err());
        assert_eq!(std::fs::read_dir(&none).unwrap().count(), 0);
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

    #[test]
    fn timeout_setting() {
        assert_eq!(parse_timeout("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_timeout(" 0.5 ").unwrap(), Duration::from_millis(500));
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            let err = parse_timeout(bad).unwrap_err().to_string();
            assert!(err.contains(TIMEOUT_VAR), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn version_check_runs_the_binary() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let t = Duration::from_secs(5);
        let good = script("good", "echo 'pixi 0.59.0'");
        check_version(&good, "0.59.0", "http://u", t).unwrap();
        check_version(&good, "v0.59.0", "http://u", t).unwrap();
        let err = check_version(&good, "0.58.0", "http://u/x", t)
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://u/x") && err.contains("0.59.0") && err.contains("0.58.0"));
        let junk = script("junk", "echo hello");
        assert!(check_version(&junk, "0.59.0", "http://u", t).is_err());
        let fails = script("fails", "echo 'pixi 0.59.0'; exit 3");
        assert!(check_version(&fails, "0.59.0", "http://u", t).is_err());
        let hangs = script("hangs", "sleep 30");
        let start = Instant::now();
        let err = format!(
            "{:#}",
            check_version(&hangs, "0.59.0", "http://u", Duration::from_millis(300)).unwrap_err()
        );
        assert!(start.elapsed() < Duration::from_secs(5), "{err}");
        assert!(err.contains("did not finish"), "{err}");
    }
}
