//! HTTP for the pixi download: reqwest's blocking client over rustls, with proxies from the
//! environment ([`super::proxy`]), the system trust store plus `SSL_CERT_FILE`
//! ([`super::tls`]), redirects followed by hand so each hop can be checked
//! ([`super::redirect`]), and `PYBUNDLE_HTTP_TIMEOUT` bounding the connection, the wait for
//! an answer and every read of the body.

use anyhow::{anyhow, bail, Context as _, Result};
use reqwest::blocking::{Client, Response};
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::redirect::{check_redirect, parse_url, resolve, MAX_REDIRECTS};
use super::tls::{Trust, CERT_FILE_VAR};
use super::TIMEOUT_VAR;
use super::{parse_sha256_file, proxy::Proxies, stream, timeout_from_env, DEFAULT_TIMEOUT};
use crate::ui::Ui;

/// A client that leaves redirects and HTTP statuses to us, with the settings it was built
/// from (for messages).
pub(super) struct Http {
    client: Client,
    pub(super) timeout: Duration,
    proxies: Proxies,
    /// Why no https request can succeed, if that is so (see [`Trust::problem`]).
    tls_problem: Option<String>,
    /// Where the trusted certificates come from, for messages.
    trusted: String,
}

impl Http {
    pub(super) fn from_env() -> Result<Http> {
        let timeout = timeout_from_env()?;
        let proxies = Proxies::from_env()?;
        let Trust {
            config,
            problem,
            sources,
        } = super::tls::from_env();
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            // The blocking client applies this to the wait for the answer's head and to each
            // read of the body, not to the whole body: a large download on a slow link is fine
            // as long as bytes keep coming. `copy_verified` below caps the whole body.
            .timeout(timeout)
            .user_agent(concat!("cargo-pybundle/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(config)
            .build()
            .context("setting up the HTTP client")?;
        Ok(Http {
            client,
            timeout,
            proxies,
            tls_problem: problem,
            trusted: sources,
        })
    }

    /// GETs `url`, following redirects the policy allows; any status other than a redirect
    /// is returned for the caller to judge.
    pub(super) fn get(&self, url: &str) -> Result<Response> {
        let origin = parse_url(url)?;
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            if let (Some(problem), true) = (&self.tls_problem, current.starts_with("https:")) {
                bail!("cannot fetch {current}: {problem}");
            }
            let response = self
                .client
                .get(&current)
                .send()
                .map_err(|e| self.error(e, &current))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
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
        let response = self.get(&sha_url)?;
        match response.status().as_u16() {
            404 => return Ok(None),
            code if !response.status().is_success() => {
                bail!("{sha_url} answered HTTP {code}")
            }
            _ => {}
        }
        let mut text = String::new();
        response
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| self.read_error(e, &sha_url))?;
        parse_sha256_file(&text).map(Some).ok_or_else(|| {
            anyhow!("{sha_url} does not hold a sha256 (expected `<hex>  <name>` or bare hex)")
        })
    }

    /// Streams `url` into a temp file in `dir` through sha256 (see [`stream::copy_verified`]).
    pub(super) fn download_verified(
        &self,
        url: &str,
        dir: &Path,
        expected: &str,
        ui: &Ui,
    ) -> Result<tempfile::NamedTempFile> {
        let mut response = self.get(url)?;
        if !response.status().is_success() {
            bail!("{url} answered HTTP {}", response.status().as_u16());
        }
        // Per-read timeouts stop a stall; this stops a trickle that would never finish.
        let cap = self
            .timeout
            .saturating_mul(20)
            .max(Duration::from_secs(600));
        let deadline = Instant::now() + cap;
        let len = response.content_length();
        stream::copy_verified(
            |buf| loop {
                if Instant::now() > deadline {
                    bail!(
                        "{url} was still downloading after {} s; on a link this slow, raise \
                         {TIMEOUT_VAR} (the whole download may take 20 times it, at least 600 s)",
                        cap.as_secs()
                    );
                }
                match response.read(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.read_error(e, url)),
                    Ok(n) => return Ok(n),
                }
            },
            len,
            dir,
            expected,
            ui,
        )
    }

    /// A failed request, in words that say what to do about it.
    fn error(&self, err: reqwest::Error, url: &str) -> anyhow::Error {
        let via = self.proxies.via(url);
        if err.is_timeout() {
            return anyhow!(self.timed_out(url, &via));
        }
        if let Some(tls) = super::tls::rustls_error(&err) {
            return match tls {
                rustls::Error::InvalidCertificate(why) => anyhow!(
                    "cannot fetch {url}{via}: the server's TLS certificate was not trusted \
                     ({why}). If your network inspects TLS (a corporate proxy) or the mirror \
                     uses a private CA, set {CERT_FILE_VAR} to a PEM file holding that CA's \
                     certificate, or add it to the system trust store. Trusted now: {}",
                    self.trusted
                ),
                other => anyhow!("cannot fetch {url}{via}: the TLS handshake failed ({other})"),
            };
        }
        anyhow::Error::new(err.without_url()).context(format!("cannot fetch {url}{via}"))
    }

    /// A failed read of an answer's body.
    fn read_error(&self, err: std::io::Error, url: &str) -> anyhow::Error {
        let timed_out = err.kind() == std::io::ErrorKind::TimedOut
            || err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                .is_some_and(reqwest::Error::is_timeout);
        if timed_out {
            anyhow!(self.timed_out(url, &self.proxies.via(url)))
        } else {
            anyhow!(err).context(format!("the download of {url} broke off"))
        }
    }

    fn timed_out(&self, url: &str, via: &str) -> String {
        format!(
            "{url}{via} sent nothing for {:.1} s (timed out); if the network is just slow, raise \
             {TIMEOUT_VAR} (seconds, default {})",
            self.timeout.as_secs_f64(),
            DEFAULT_TIMEOUT.as_secs()
        )
    }
}
