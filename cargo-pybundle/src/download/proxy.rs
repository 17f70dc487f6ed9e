//! Proxy settings of the pixi download, as reqwest applies them: `HTTPS_PROXY` for https URLs,
//! `HTTP_PROXY` for http URLs, `ALL_PROXY` for both when the specific one is unset, each also
//! in lower case (upper case wins), and `NO_PROXY`/`no_proxy` hosts, domains and IP ranges
//! going direct. No host is exempt by default, not even 127.0.0.1: list it in `NO_PROXY`.
//!
//! reqwest reads the variables itself, through hyper-util's matcher; this module asks the same
//! matcher which proxy a URL goes through so messages can name it, and refuses a value the
//! matcher would silently ignore (a typo must not turn into a direct connection that a
//! firewall then drops without a word).

use anyhow::{bail, Result};
use hyper_util::client::proxy::matcher::Matcher;

/// The variables that name a proxy, in the order they are consulted per scheme.
const HTTPS_VARS: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_VARS: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const ALL_VARS: [&str; 2] = ["ALL_PROXY", "all_proxy"];

/// The proxy settings read once from the environment.
pub(super) struct Proxies {
    matcher: Matcher,
}

impl Proxies {
    /// Reads the settings; a proxy variable that is set but not a usable URL is an error.
    pub(super) fn from_env() -> Result<Proxies> {
        for var in HTTPS_VARS.iter().chain(&HTTP_VARS).chain(&ALL_VARS) {
            let Ok(value) = std::env::var(var) else {
                continue;
            };
            if value.trim_start().to_ascii_lowercase().starts_with("socks") {
                bail!(
                    "{var}=`{value}` is a SOCKS proxy, which the pixi download does not support; \
                     use an HTTP proxy (http://host:port), or unset {var} and set \
                     PYBUNDLE_PIXI_MIRROR or PYBUNDLE_PIXI instead"
                );
            }
            if !value.trim().is_empty() && !usable(&value) {
                bail!(
                    "{var}=`{value}` is not a proxy URL; set it to e.g. http://proxy.example:3128 \
                     (user:password@ before the host if the proxy wants them), or unset it"
                );
            }
        }
        Ok(Proxies {
            matcher: Matcher::from_system(),
        })
    }

    /// For messages: ` through the proxy <uri> (<VAR>)` when `url` goes through one, else "".
    pub(super) fn via(&self, url: &str) -> String {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return String::new();
        };
        let Some(intercept) = self.matcher.intercept(&uri) else {
            return String::new();
        };
        let specific = if uri.scheme_str() == Some("https") {
            HTTPS_VARS
        } else {
            HTTP_VARS
        };
        let from = source(&specific)
            .or_else(|| source(&ALL_VARS))
            .unwrap_or("the system proxy settings");
        // The matcher's URI carries no credentials: safe to print.
        format!(" through the proxy {} (from {from})", intercept.uri())
    }
}

/// The first of `names` that is set (as hyper-util reads them), if its value is usable.
fn source(names: &[&'static str]) -> Option<&'static str> {
    let (name, value) = names
        .iter()
        .find_map(|n| std::env::var(n).ok().map(|v| (*n, v)))?;
    usable(&value).then_some(name)
}

/// Whether `value` is an HTTP(S) proxy hyper-util's matcher accepts: a URI with a host, of
/// scheme http or https (none means http). The matcher also takes socks URLs, but reqwest
/// speaks SOCKS only with a feature not built here.
fn usable(value: &str) -> bool {
    let Ok(uri) = value.parse::<http::Uri>() else {
        return false;
    };
    uri.authority().is_some() && matches!(uri.scheme_str(), None | Some("http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_values() {
        for ok in [
            "http://proxy.corp:3128",
            "http://user:secret@proxy.corp:3128/",
            "proxy.corp:3128",
            "https://10.0.0.1",
        ] {
            assert!(usable(ok), "{ok}");
        }
        for bad in [
            "not a url",
            "ftp://proxy:21",
            "http://",
            "/just/a/path",
            "socks5h://127.0.0.1:1080",
        ] {
            assert!(!usable(bad), "{bad}");
        }
    }
}
