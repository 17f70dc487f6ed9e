//! HTTP for the pixi download: a ureq agent whose redirects are followed by hand so each hop
//! can be checked (same host, or GitHub's asset hosts from github.com; never https → http),
//! and whose reads time out after `PYBUNDLE_HTTP_TIMEOUT` seconds.

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use ureq::http::{Response, Uri};

use super::{parse_sha256_file, timeout_from_env, DEFAULT_TIMEOUT, TIMEOUT_VAR};
use crate::ui::Ui;

/// Hops followed before a redirect chain counts as a loop.
const MAX_REDIRECTS: usize = 10;

/// A ureq agent that leaves redirects and HTTP statuses to us, with the timeout it uses.
pub(super) struct Http {
    agent: ureq::Agent,
    pub(super) timeout: Duration,
}

impl Http {
    pub(super) fn from_env() -> Result<Http> {
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
    pub(super) fn get(&self, url: &str) -> Result<Response<ureq::Body>> {
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
    pub(super) fn published_sha256(&self, url: &str) -> Result<Option<String>> {
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
    pub(super) fn download_verified(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
