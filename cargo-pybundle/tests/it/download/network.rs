//! Downloads behind corporate networks: through a real proxy on 127.0.0.1 (set by the proxy
//! variables, on the child process only), and from HTTPS servers whose certificate only a
//! test CA given in `SSL_CERT_FILE` vouches for.

use super::*;
use crate::server::pki::TestCa;
use crate::server::proxy::Proxy;

/// A host name that resolves nowhere (`.test` is reserved): a URL naming it can only be
/// fetched through the test proxy, which dials 127.0.0.1 for every host.
const PROXIED_HOST: &str = "pixi-mirror.test";

/// The release to serve: the real pixi of `../shared/pixi-releases` when present, else a
/// stand-in script (these tests are about the network path, so they run either way).
fn release() -> (String, Vec<u8>, String) {
    match shared_releases("network download tests (using a stand-in pixi)") {
        Some(dir) => {
            let (bytes, sha) = real_asset(&dir);
            (REAL_VERSION.to_owned(), bytes.clone(), sha.clone())
        }
        None => {
            let (bytes, sha) = asset();
            (VERSION.to_owned(), bytes.clone(), sha.clone())
        }
    }
}

/// A port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The child's TLS settings: only `ca` (if any) added to the system store.
fn trust(cmd: &mut assert_cmd::Command, ca: Option<&Path>) {
    cmd.env_remove("SSL_CERT_DIR");
    match ca {
        Some(ca) => cmd.env("SSL_CERT_FILE", ca),
        None => cmd.env_remove("SSL_CERT_FILE"),
    };
}

#[test]
fn https_mirror_with_its_ca_in_ssl_cert_file() {
    let (version, bytes, sha) = release();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path());
    let server = Server::start_tls(
        release_routes(&version, &bytes, &sha),
        &ca.server_cert(&["127.0.0.1"]),
    );
    let mirror = format!("https://127.0.0.1:{}", server.port());
    let run = run_with(&mirror, Some(&version), |cmd| trust(cmd, Some(&ca_pem)));
    assert_installed(&run, &version);
    let asset = cargo_pybundle::download::asset_name().unwrap();
    assert!(
        server.requests().contains(&format!("/v{version}/{asset}")),
        "{:?}",
        server.requests()
    );
}

#[test]
fn https_mirror_with_an_unknown_ca_is_a_clear_tls_error() {
    let (version, bytes, sha) = release();
    let ca = TestCa::new();
    let server = Server::start_tls(
        release_routes(&version, &bytes, &sha),
        &ca.server_cert(&["127.0.0.1"]),
    );
    let mirror = format!("https://127.0.0.1:{}", server.port());
    let run = run_with(&mirror, Some(&version), |cmd| trust(cmd, None));
    let err = assert_failed_cleanly(&run, &mirror);
    assert!(
        err.contains("certificate was not trusted") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(
        err.contains("SSL_CERT_FILE") && err.contains("system trust store"),
        "should name the fix:\n{err}"
    );
    assert_eq!(
        server.requests(),
        Vec::<String>::new(),
        "no request may pass an untrusted handshake"
    );
}

#[test]
fn unreadable_ssl_cert_file_is_named_for_https_only() {
    let (bytes, sha) = asset();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("corporate-ca.pem");
    let ca = TestCa::new();
    let tls = Server::start_tls(
        release_routes(VERSION, bytes, sha),
        &ca.server_cert(&["127.0.0.1"]),
    );
    let mirror = format!("https://127.0.0.1:{}", tls.port());
    let run = run_with(&mirror, None, |cmd| trust(cmd, Some(&missing)));
    let err = assert_failed_cleanly(&run, &mirror);
    assert!(
        err.contains(&format!("SSL_CERT_FILE={}", missing.display())),
        "{err}"
    );
    // A plain-http mirror has no use for it: the setting does not stand in the way.
    let plain = Server::start(release_routes(VERSION, bytes, sha));
    let run = run_with(&plain.url(), None, |cmd| trust(cmd, Some(&missing)));
    assert_installed(&run, VERSION);
}

#[test]
fn https_through_a_connect_proxy() {
    let (version, bytes, sha) = release();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path());
    let server = Server::start_tls(
        release_routes(&version, &bytes, &sha),
        &ca.server_cert(&[PROXIED_HOST]),
    );
    let proxy = Proxy::start();
    let mirror = format!("https://{PROXIED_HOST}:{}", server.port());
    let run = run_with(&mirror, Some(&version), |cmd| {
        trust(cmd, Some(&ca_pem));
        cmd.env("HTTPS_PROXY", proxy.url());
    });
    assert_installed(&run, &version);
    let connect = format!("CONNECT {PROXIED_HOST}:{} HTTP/1.1", server.port());
    assert!(proxy.seen().contains(&connect), "{:?}", proxy.seen());
    let asset = cargo_pybundle::download::asset_name().unwrap();
    assert!(server.requests().contains(&format!("/v{version}/{asset}")));
}

#[test]
fn http_through_a_proxy_named_in_lower_case_or_by_all_proxy() {
    let (bytes, sha) = asset();
    let server = Server::start(release_routes(VERSION, bytes, sha));
    let mirror = format!("http://{PROXIED_HOST}:{}", server.port());
    for var in ["http_proxy", "ALL_PROXY"] {
        let proxy = Proxy::start();
        let run = run_with(&mirror, None, |cmd| {
            cmd.env(var, proxy.url());
        });
        assert_installed(&run, VERSION);
        // Plain http goes to a proxy as `GET http://host:port/path` (no tunnel).
        let prefix = format!("GET {mirror}/v{VERSION}/");
        assert!(
            proxy.seen().iter().any(|line| line.starts_with(&prefix)),
            "{var}: {:?}",
            proxy.seen()
        );
    }
}

/// Each proxy variable set in both cases, to two different proxies: the upper-case one
/// carries the download, the lower-case one sees nothing; and when the upper-case proxy is
/// down, the download fails through it (named as coming from that variable) rather than
/// falling back to the lower-case one.
#[test]
fn upper_case_proxy_variables_win_over_lower_case() {
    let (bytes, sha) = asset();
    let plain = Server::start(release_routes(VERSION, bytes, sha));
    let http = format!("http://{PROXIED_HOST}:{}", plain.port());
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path());
    let tls = Server::start_tls(
        release_routes(VERSION, bytes, sha),
        &ca.server_cert(&[PROXIED_HOST]),
    );
    let https = format!("https://{PROXIED_HOST}:{}", tls.port());
    for (mirror, upper, lower) in [
        (&https, "HTTPS_PROXY", "https_proxy"),
        (&http, "HTTP_PROXY", "http_proxy"),
        (&http, "ALL_PROXY", "all_proxy"),
    ] {
        let (used, ignored) = (Proxy::start(), Proxy::start());
        let run = run_with(mirror, None, |cmd| {
            trust(cmd, Some(&ca_pem));
            cmd.env(upper, used.url()).env(lower, ignored.url());
        });
        assert_installed(&run, VERSION);
        assert!(!used.seen().is_empty(), "{upper} was not used");
        assert_eq!(ignored.seen(), Vec::<String>::new(), "{lower} was used");
    }
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let ignored = Proxy::start();
    let run = run_with(&http, None, |cmd| {
        cmd.env("HTTP_PROXY", &dead)
            .env("http_proxy", ignored.url());
    });
    let err = assert_failed_cleanly(&run, &http);
    assert!(
        err.contains(&format!("through the proxy {dead}/ (from HTTP_PROXY)")),
        "{err}"
    );
    assert_eq!(ignored.seen(), Vec::<String>::new());
}

#[test]
fn no_proxy_goes_direct_and_a_dead_proxy_is_named() {
    let (bytes, sha) = asset();
    let server = Server::start(release_routes(VERSION, bytes, sha));
    let dead = format!("http://127.0.0.1:{}", dead_port());
    // The proxy is down: only a host listed in no_proxy can still be reached.
    let run = run_with(&server.url(), None, |cmd| {
        cmd.env("HTTP_PROXY", &dead)
            .env("no_proxy", "localhost,127.0.0.1");
    });
    assert_installed(&run, VERSION);
    // An IP range goes direct too.
    let run = run_with(&server.url(), None, |cmd| {
        cmd.env("HTTP_PROXY", &dead).env("NO_PROXY", "127.0.0.0/8");
    });
    assert_installed(&run, VERSION);
    // And a domain: `.localhost` covers the host `localhost` (and any name below it).
    let by_name = server.url().replace("127.0.0.1", "localhost");
    assert_ne!(by_name, server.url());
    let run = run_with(&by_name, None, |cmd| {
        cmd.env("HTTP_PROXY", &dead)
            .env("NO_PROXY", "example.com,.localhost");
    });
    assert_installed(&run, VERSION);
    let served = server.requests().len();
    let run = run_with(&server.url(), None, |cmd| {
        cmd.env("HTTP_PROXY", &dead);
    });
    let err = assert_failed_cleanly(&run, &server.url());
    assert!(
        err.contains(&format!("through the proxy {dead}/ (from HTTP_PROXY)")),
        "{err}"
    );
    assert_eq!(server.requests().len(), served, "nothing may go direct");

    // An https URL through a dead HTTPS_PROXY: README's troubleshooting words.
    let url = format!("https://{PROXIED_HOST}:9");
    let run = run_with(&url, None, |cmd| {
        cmd.env("HTTPS_PROXY", &dead);
    });
    let err = assert_failed_cleanly(&run, &url);
    assert!(
        err.contains(&format!("cannot fetch {url}/"))
            && err.contains(&format!("through the proxy {dead}/ (from HTTPS_PROXY)")),
        "{err}"
    );
}

#[test]
fn unusable_proxy_setting_is_named() {
    let run = run_with("https://127.0.0.1:9", None, |cmd| {
        cmd.env("HTTPS_PROXY", "http://[oops");
    });
    let err = stderr(&run.out);
    assert_eq!(run.out.status.code(), Some(4), "{err}");
    assert!(err.contains("HTTPS_PROXY=`http://[oops`"), "{err}");
    assert_eq!(files_under(&run.pixi_dir()), Vec::<String>::new());

    // SOCKS is refused with a message saying so, not ignored.
    let run = run_with("https://127.0.0.1:9", None, |cmd| {
        cmd.env("ALL_PROXY", "socks5h://127.0.0.1:1080");
    });
    let err = stderr(&run.out);
    assert_eq!(run.out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("ALL_PROXY=`socks5h://127.0.0.1:1080` is a SOCKS proxy, which the pixi download does not support"),
        "{err}"
    );
}
