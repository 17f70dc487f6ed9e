//! The redirect policy of the pixi download: a hop is followed only within the configured
//! URL's host (plus GitHub's asset hosts when that host is github.com, where every release
//! download redirects), never from https to http, and at most [`MAX_REDIRECTS`] times.

use anyhow::{anyhow, bail, Result};
use reqwest::Url;

/// Hops followed before a redirect chain counts as a loop.
pub(super) const MAX_REDIRECTS: usize = 10;

pub(super) fn parse_url(url: &str) -> Result<Url> {
    let parsed = Url::parse(url)
        .map_err(|e| anyhow!("`{url}` is not a valid URL ({e}); check PYBUNDLE_PIXI_MIRROR"))?;
    match (parsed.scheme(), parsed.host_str()) {
        ("http" | "https", Some(_)) => Ok(parsed),
        _ => bail!("`{url}` is not an http(s) URL; check PYBUNDLE_PIXI_MIRROR"),
    }
}

/// The absolute URL a `Location` header names, relative to the URL that sent it.
pub(super) fn resolve(base: &str, location: &str) -> Result<String> {
    let next = parse_url(base)?.join(location).map_err(|e| {
        anyhow!("{base} redirected to `{location}`, which is not a valid URL ({e})")
    })?;
    parse_url(next.as_str())?;
    Ok(next.into())
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
pub(super) fn check_redirect(origin: &Url, from: &str, to: &str) -> Result<()> {
    let (from_uri, to_uri) = (parse_url(from)?, parse_url(to)?);
    if from_uri.scheme() == "https" && to_uri.scheme() != "https" {
        bail!(
            "{from} redirected to {to}, dropping from https to http; refused, since the \
             download could be altered on the way. If {to} is trusted anyway, point \
             PYBUNDLE_PIXI_MIRROR at {}",
            mirror_hint(to)
        );
    }
    let origin_host = origin.host_str().unwrap_or_default();
    let to_host = to_uri.host_str().unwrap_or_default();
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
