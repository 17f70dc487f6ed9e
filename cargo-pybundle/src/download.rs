//! Downloading pixi from its GitHub releases (or a mirror), verified before use.
//!
//! The archive streams through sha256 into a temp file in the cache directory; only after the
//! checksum matches is the `pixi` binary extracted (to another temp file), made executable,
//! asked for its version (a mirror serving another release with a matching `.sha256` is caught
//! here) and renamed into place. A failure at any point leaves nothing a later run would trust.
//!
//! Redirects are followed by hand so each hop can be checked: only within the configured
//! URL's host name (plus GitHub's asset hosts when that host is github.com, where every
//! release download redirects), never from https to http. Every read waits at most
//! `PYBUNDLE_HTTP_TIMEOUT` seconds, so a server that stalls fails instead of hanging the build.
//!
//! HTTP is ureq 3 (blocking, rustls): a lean synchronous client is all one download needs;
//! reqwest would pull in tokio.

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ureq::http::{Response, Uri};

use crate::ui::Ui;

/// Release downloads of pixi; `PYBUNDLE_PIXI_MIRROR` replaces it.
pub const DEFAULT_BASE_URL: &str = "https://github.com/prefix-dev/pixi/releases/download";

/// Environment variable: seconds to wait for a connection or for the next bytes of an answer.
pub const TIMEOUT_VAR: &str = "PYBUNDLE_HTTP_TIMEOUT";

/// Default for [`TIMEOUT_VAR`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Hops followed before a redirect chain counts as a loop.
const MAX_REDIRECTS: usize = 10;

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
    let http = Http::from_env()?;

    let published = http
        .published_sha256(&url)
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

    ui.status("Downloading", &url);
    let archive = http
        .download_verified(&url, dir, &expected, ui)
        .with_context(|| format!("downloading {url}; {HOW_TO_SUPPLY}"))?;
    let pixi = extract_pixi(archive.path(), dir)
        .with_context(|| format!("extracting pixi from {url}; {HOW_TO_SUPPLY}"))?;
    check_version(&pixi, &request.version, &url, http.timeout)?;
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

/// A ureq agent that leaves redirects and HTTP statuses to us, with the timeout it uses.
struct Http {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Http {
    fn from_env() -> Result<Http> {
        let timeout = timeout_from_env()?;
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            // Per read, not per body: a large download on a slow link is fine as long as bytes
            // keep coming; the body cap only stops a trickle that would never finish.
            .timeout_per_read(Some(timeout))
            .timeout_recv_body(Some(
                timeout.saturating_mul(20).max(Duration::from_secs(600)),
            ))
            .build()
            .new_agent();
        Ok(Http { agent, timeout })
    }

    /// GETs `url`, following redirects the policy allows; any status other than a redirect
    /// is returned for the caller to judge.
    fn get(&self, url: &str) -> Result<Response<ureq::Body>> {
        let origin = parse_url(url)?;
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .agent
                .get(&current)
                .call()
                .map_err(|e| self.error(e, &current))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .with_context(|| {
                    format!(
                        "{current} answered HTTP {} without a usable Location",
                        response.status().as_u16()
                    )
                })?;
            let next = resolve(&current, location)?;
            check_redirect(&origin, &current, &next)?;
            tracing::debug!("{current} redirects to {next}");
            current = next;
        }
        bail!("{url} redirected more than {MAX_REDIRECTS} times")
    }

    /// The checksum published beside the asset, `None` if there is none (404).
    fn published_sha256(&self, url: &str) -> Result<Option<String>> {
        let sha_url = format!("{url}.sha256");
        let mut response = self.get(&sha_url)?;
        match response.status().as_u16() {
            404 => return Ok(None),
            code if !response.status().is_success() => {
                bail!("{sha_url} answered HTTP {code}")
            }
            _ => {}
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .map_err(|e| self.error(e, &sha_url))?;
        parse_sha256_file(&text).map(Some).ok_or_else(|| {
            anyhow!("{sha_url} does not hold a sha256 (expected `<hex>  <name>` or bare hex)")
        })
    }

    /// Streams `url` into a temp file in `dir` through sha256; the file is returned only if
    /// the digest matches (dropping the temp file otherwise removes it).
    fn download_verified(
        &self,
        url: &str,
        dir: &Path,
        expected: &str,
        ui: &Ui,
    ) -> Result<tempfile::NamedTempFile> {
        let response = self.get(url)?;
        if !response.status().is_success() {
            bail!("{url} answered HTTP {}", response.status().as_u16());
        }
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
                Err(e) if is_timeout(&e) => bail!(self.timed_out(url)),
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
                "checksum mismatch: expected sha256 {expected}, got {actual}; the file was \
                 discarded"
            );
        }
        Ok(file)
    }

    fn error(&self, err: ureq::Error, url: &str) -> anyhow::Error {
        match err {
            ureq::Error::Timeout(_) => anyhow!(self.timed_out(url)),
            ureq::Error::Io(e) if is_timeout(&e) => anyhow!(self.timed_out(url)),
            other => anyhow!("cannot fetch {url}: {other}"),
        }
    }

    fn timed_out(&self, url: &str) -> String {
        format!(
            "{url} sent nothing for {:.1} s (timed out); if the network is just slow, raise \
             {TIMEOUT_VAR} (seconds, default {})",
            self.timeout.as_secs_f64(),
            DEFAULT_TIMEOUT.as_secs()
        )
    }
}

/// Whether an I/O error from a body read is a timeout (ureq wraps its own in `io::Error`).
fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|e| matches!(e, ureq::Error::Timeout(_)))
}

fn parse_url(url: &str) -> Result<Uri> {
    let uri: Uri = url
        .parse()
        .map_err(|e| anyhow!("`{url}` is not a valid URL ({e}); check PYBUNDLE_PIXI_MIRROR"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => bail!("`{url}` is not an http(s) URL; check PYBUNDLE_PIXI_MIRROR"),
    }
}

/// The absolute URL a `Location` header names, relative to the URL that sent it.
fn resolve(base: &str, location: &str) -> Result<String> {
    let next = if location.contains("://") {
        location.to_owned()
    } else {
        let uri = parse_url(base)?;
        let scheme = uri.scheme_str().unwrap_or("https");
        let authority = uri.authority().map_or("", |a| a.as_str());
        if let Some(rest) = location.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{scheme}://{authority}{location}")
        } else {
            let dir = uri.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{scheme}://{authority}{dir}/{location}")
        }
    };
    parse_url(&next)?;
    Ok(next)
}

/// Hosts a github.com release download may redirect to (its asset storage).
fn is_github_asset_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("githubusercontent.com")
        || host
            .to_ascii_lowercase()
            .ends_with(".githubusercontent.com")
}

/// Refuses a redirect from `from` to `to` unless it stays on `origin`'s host (or goes from
/// github.com to GitHub's asset hosts) and does not drop from https to http.
fn check_redirect(origin: &Uri, from: &str, to: &str) -> Result<()> {
    let (from_uri, to_uri) = (parse_url(from)?, parse_url(to)?);
    if from_uri.scheme_str() == Some("https") && to_uri.scheme_str() != Some("https") {
        bail!(
            "{from} redirected to {to}, dropping from https to http; refused, since the \
             download could be altered on the way. If {to} is trusted anyway, point \
             PYBUNDLE_PIXI_MIRROR at {}",
            mirror_hint(to)
        );
    }
    let origin_host = origin.host().unwrap_or_default();
    let to_host = to_uri.host().unwrap_or_default();
    let allowed = to_host.eq_ignore_ascii_case(origin_host)
        || (origin_host.eq_ignore_ascii_case("github.com") && is_github_asset_host(to_host));
    if !allowed {
        bail!(
            "{from} redirected to {to}, on another host ({to_host}); cargo pybundle follows \
             redirects only within {origin_host}{}. If {to_host} is trusted, point \
             PYBUNDLE_PIXI_MIRROR at {}",
            if origin_host.eq_ignore_ascii_case("github.com") {
                " and GitHub's *.githubusercontent.com"
            } else {
                ""
            },
            mirror_hint(to)
        );
    }
    Ok(())
}

/// What to set `PYBUNDLE_PIXI_MIRROR` to for a redirect target: its base URL when it has
/// the release layout (`<base>/v<version>/<asset>`), else the URL itself as a starting point.
fn mirror_hint(to: &str) -> String {
    let path_only = to.split(['?', '#']).next().unwrap_or(to);
    let mut parts = path_only.rsplitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(asset), Some(version), Some(base))
            if asset.starts_with("pixi-") && version.starts_with('v') =>
        {
            base.to_owned()
        }
        _ => format!("the base URL holding v<version>/<asset> there ({to})"),
    }
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
fn run_version(pixi: &Path, timeout: Duration) -> Result<String> {
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
    fn redirect_policy() {
        let gh = parse_url("https://github.com/prefix-dev/pixi/releases/download/v1/a").unwrap();
        let from = "https://github.com/prefix-dev/pixi/releases/download/v1/a";
        for ok in [
            "https://github.com/other/path",
            "https://objects.githubusercontent.com/x?sig=1",
            "https://release-assets.githubusercontent.com/y",
        ] {
            check_redirect(&gh, from, ok).unwrap();
        }
        for bad in [
            "http://objects.githubusercontent.com/x",
            "http://github.com/prefix-dev/pixi/releases/download/v1/a",
            "https://evil.example/x",
            "https://githubusercontent.com.evil.example/x",
        ] {
            let err = check_redirect(&gh, from, bad).unwrap_err().to_string();
            assert!(err.contains(from) && err.contains(bad), "{err}");
            assert!(err.contains("PYBUNDLE_PIXI_MIRROR"), "{err}");
        }
        // A mirror's own host, any port, and an http → https upgrade are fine; only
        // github.com gets the asset hosts.
        let mirror = parse_url("http://mirror.lan/pixi/v1/a").unwrap();
        check_redirect(
            &mirror,
            "http://mirror.lan/pixi/v1/a",
            "https://mirror.lan:8443/b",
        )
        .unwrap();
        assert!(check_redirect(
            &mirror,
            "http://mirror.lan/pixi/v1/a",
            "https://objects.githubusercontent.com/b"
        )
        .is_err());
    }

    #[test]
    fn locations_resolve_against_the_url_that_sent_them() {
        let base = "http://h:1/a/b/c.tar.gz";
        assert_eq!(resolve(base, "/x/y").unwrap(), "http://h:1/x/y");
        assert_eq!(resolve(base, "d").unwrap(), "http://h:1/a/b/d");
        assert_eq!(resolve(base, "//other/z").unwrap(), "http://other/z");
        assert_eq!(resolve(base, "https://q/r").unwrap(), "https://q/r");
        assert!(resolve(base, "ftp://q/r").is_err());
    }

    #[test]
    fn mirror_hint_strips_the_release_layout() {
        assert_eq!(
            mirror_hint("http://127.0.0.2:9/v0.59.0/pixi-x86_64-unknown-linux-musl.tar.gz"),
            "http://127.0.0.2:9"
        );
        assert!(
            mirror_hint("https://cdn.example/blob/123").contains("https://cdn.example/blob/123")
        );
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
