//! Getting pixi over HTTP, through the real CLI (`cargo pybundle pixi --version`) against a
//! real server on 127.0.0.1 named by `PYBUNDLE_PIXI_MIRROR`; [`network`] adds proxies and
//! TLS, [`file_mirror`] `file://` mirrors, both with the real pixi release of
//! `../shared/pixi-releases`; [`log_levels`] is how much the CLI says meanwhile.

mod file_mirror;
mod log_levels;
mod network;

use crate::server::{Reply, Server};
use crate::support::{cargo_pybundle, files_under, stderr};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TIMEOUT_VAR: &str = cargo_pybundle::download::TIMEOUT_VAR;

const VERSION: &str = cargo_pybundle::DEFAULT_PIXI_VERSION;

/// A release asset: a tar.gz holding `binary` as `pixi` at its root, and its sha256.
fn archive_of(binary: &[u8]) -> (Vec<u8>, String) {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(binary.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    tar.append_data(&mut h, "pixi", binary).unwrap();
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    (bytes, sha)
}

/// A shell script answering `--version` like pixi `version` does.
fn stand_in(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"pixi {version}\"\n").into_bytes()
}

/// The asset of the requested pixi version (a stand-in script reporting [`VERSION`]).
fn asset() -> &'static (Vec<u8>, String) {
    static ASSET: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    ASSET.get_or_init(|| archive_of(&stand_in(VERSION)))
}

/// The real test pixi (`PYBUNDLE_PIXI`) and the version it reports, when there is one.
fn real_pixi() -> Option<(Vec<u8>, String)> {
    let path = std::env::var_os("PYBUNDLE_PIXI")
        .map(PathBuf::from)
        .filter(|p| p.is_file())?;
    let out = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let version = text.split_whitespace().nth(1).unwrap().to_owned();
    Some((std::fs::read(path).unwrap(), version))
}

fn asset_path() -> String {
    format!(
        "/v{VERSION}/{}",
        cargo_pybundle::download::asset_name().unwrap()
    )
}

/// Variables that steer proxies: the test's own environment must not reach the child.
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The CLI for a download test: [`cargo_pybundle`] without the proxy variables of the test's
/// own environment (a test sets them on the child only, never on itself: tests run in
/// parallel).
fn downloader() -> assert_cmd::Command {
    let mut cmd = cargo_pybundle();
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// `cargo pybundle pixi --version` run in `dir`, with `cache` as `XDG_CACHE_HOME` and pixi
/// downloaded from `mirror`.
fn pixi_version_in(dir: &Path, cache: &Path, mirror: &str) -> std::process::Output {
    downloader()
        .args(["pixi", "--version"])
        .current_dir(dir)
        .env("XDG_CACHE_HOME", cache)
        .env("PYBUNDLE_PIXI_MIRROR", mirror)
        .output()
        .unwrap()
}

/// The pixi release mirrored for every machine of this project (`<workspace>/../shared/
/// pixi-releases`; a worktree finds it further up), when it holds [`REAL_VERSION`] for this
/// platform. Absent: `None` after saying why, or a failure under CI.
fn shared_releases(test: &str) -> Option<PathBuf> {
    let asset = cargo_pybundle::download::asset_name().unwrap();
    let found = testkit::workspace_root()
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/pixi-releases"))
        .find(|dir| dir.join(format!("v{REAL_VERSION}/{asset}")).is_file());
    if found.is_none() {
        testkit::skip(
            test,
            &format!(
                "no shared/pixi-releases/v{REAL_VERSION}/{asset} beside or above the workspace"
            ),
        );
    }
    found
}

/// The pixi version of [`shared_releases`].
const REAL_VERSION: &str = "0.77.0";

/// The real release asset of [`shared_releases`] and its sha256 (read once).
fn real_asset(releases: &Path) -> &'static (Vec<u8>, String) {
    static ASSET: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    ASSET.get_or_init(|| {
        let asset = cargo_pybundle::download::asset_name().unwrap();
        let bytes = std::fs::read(releases.join(format!("v{REAL_VERSION}/{asset}"))).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        (bytes, sha)
    })
}

/// `/v<version>/<asset>` and its `.sha256`, served from memory.
fn release_routes(version: &str, bytes: &[u8], sha: &str) -> HashMap<String, Reply> {
    let asset = cargo_pybundle::download::asset_name().unwrap();
    let path = format!("/v{version}/{asset}");
    HashMap::from([
        (
            format!("{path}.sha256"),
            Reply::Body(format!("{sha}  {asset}\n").into_bytes()),
        ),
        (path, Reply::Body(bytes.to_vec())),
    ])
}

struct Run {
    out: std::process::Output,
    cache: tempfile::TempDir,
}

impl Run {
    fn pixi_dir(&self) -> PathBuf {
        self.cache.path().join("cargo-pybundle/pixi")
    }
}

/// Runs `cargo pybundle pixi --version` with an empty cache and `mirror` as the base URL.
fn run(mirror: &str) -> Run {
    run_with_timeout(mirror, None)
}

/// [`run`] with `PYBUNDLE_HTTP_TIMEOUT` set to `timeout` seconds (unset: the default).
fn run_with_timeout(mirror: &str, timeout: Option<&str>) -> Run {
    run_with(mirror, None, |cmd| {
        if let Some(secs) = timeout {
            cmd.env(TIMEOUT_VAR, secs);
        }
    })
}

/// [`run`] in a package pinned to pixi `version` (`None`: no package, the default version),
/// with `configure` setting the child's environment.
fn run_with(
    mirror: &str,
    version: Option<&str>,
    configure: impl FnOnce(&mut assert_cmd::Command),
) -> Run {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    if let Some(version) = version {
        crate::support::package(
            cwd.path(),
            "pinned",
            Some(&format!("pixi-version = \"{version}\"")),
        );
    }
    let mut cmd = downloader();
    cmd.args(["pixi", "--version"])
        .current_dir(cwd.path())
        .env("XDG_CACHE_HOME", cache.path())
        .env("HOME", cwd.path())
        .env("PYBUNDLE_PIXI_MIRROR", mirror)
        .env_remove(TIMEOUT_VAR);
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    Run { out, cache }
}

/// Asserts the run succeeded, printed `pixi <version>` and left exactly that pixi cached.
fn assert_installed(run: &Run, version: &str) {
    let err = stderr(&run.out);
    assert!(run.out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&run.out.stdout).trim(),
        format!("pixi {version}"),
        "{err}"
    );
    assert_eq!(files_under(&run.pixi_dir()), [format!("{version}/pixi")]);
}

fn routes(asset: Reply, sha: Option<&str>) -> HashMap<String, Reply> {
    let mut routes = HashMap::from([(asset_path(), asset)]);
    if let Some(sha) = sha {
        let name = asset_path().rsplit('/').next().unwrap().to_owned();
        routes.insert(
            format!("{}.sha256", asset_path()),
            Reply::Body(format!("{sha}  {name}\n").into_bytes()),
        );
    }
    routes
}

fn assert_failed_cleanly(run: &Run, url_part: &str) -> String {
    let err = stderr(&run.out);
    assert_eq!(run.out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("pixi is not available"),
        "message should name the failed step as README does:\n{err}"
    );
    assert!(
        err.contains(url_part),
        "message should name the URL ({url_part}):\n{err}"
    );
    assert!(
        err.contains("--pixi") && err.contains("PYBUNDLE_PIXI"),
        "message should say how to supply pixi:\n{err}"
    );
    assert_eq!(
        files_under(&run.pixi_dir()),
        Vec::<String>::new(),
        "nothing may be left in the cache"
    );
    err
}

#[test]
fn good_download_is_verified_cached_and_runs() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), Some(sha)));
    let run = run(&server.url());
    let err = stderr(&run.out);
    assert!(run.out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&run.out.stdout).trim(),
        format!("pixi {VERSION}"),
        "{:?}",
        run.out
    );
    assert_eq!(files_under(&run.pixi_dir()), [format!("{VERSION}/pixi")]);
    assert!(server.requests().contains(&asset_path()));

    // A second run uses the cache: no new requests.
    let before = server.requests().len();
    let again = pixi_version_in(run.cache.path(), run.cache.path(), &server.url());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(server.requests().len(), before);
}

#[test]
fn wrong_checksum_is_rejected_and_nothing_is_kept() {
    let (bytes, _) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), Some(&"0".repeat(64))));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &asset_path());
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn missing_asset_404() {
    let (_, sha) = asset();
    let mut r = routes(Reply::Body(Vec::new()), Some(sha));
    r.remove(&asset_path());
    let server = Server::start(r);
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &asset_path());
    assert!(err.contains("HTTP 404"), "{err}");
}

#[test]
fn missing_checksum_file_refuses_unverified_download() {
    let (bytes, _) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), None));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &format!("{}.sha256", asset_path()));
    assert!(err.contains("pixi-sha256"), "{err}");
    assert!(
        !server.requests().contains(&asset_path()),
        "must not download what it cannot verify"
    );
}

#[test]
fn truncated_body_is_rejected() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Truncated(bytes.clone()), Some(sha)));
    let run = run(&server.url());
    assert_failed_cleanly(&run, &asset_path());
}

#[test]
fn unreachable_server() {
    // Bind then drop: nothing listens on this port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = run(&url);
    assert_failed_cleanly(&run, &url);
}

#[test]
fn pinned_version_and_checksum_from_the_package_config() {
    // The real test pixi under its own version when there is one: a real binary through the
    // whole path, version check included.
    let (binary, version) = real_pixi().unwrap_or_else(|| (stand_in("1.2.3"), "1.2.3".into()));
    let (bytes, sha) = archive_of(&binary);
    let asset = cargo_pybundle::download::asset_name().unwrap();
    let path = format!("/v{version}/{asset}");
    // No .sha256 published: the pinned `pixi-sha256` is what makes the download acceptable.
    let server = Server::start(HashMap::from([(path.clone(), Reply::Body(bytes))]));
    let cache = tempfile::tempdir().unwrap();
    let pkg = tempfile::tempdir().unwrap();
    crate::support::package(
        pkg.path(),
        "pinned",
        Some(&format!(
            "pixi-version = \"v{version}\"\npixi-sha256 = \"{}\"",
            sha.to_uppercase()
        )),
    );
    let out = pixi_version_in(pkg.path(), cache.path(), &server.url());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pixi {version}")
    );
    assert!(server.requests().contains(&path), "{:?}", server.requests());
    assert_eq!(
        files_under(&cache.path().join("cargo-pybundle/pixi")),
        [format!("{version}/pixi")]
    );
}

#[test]
fn redirect_within_the_same_host_is_followed() {
    let (bytes, sha) = asset();
    let name = asset_path().rsplit('/').next().unwrap().to_owned();
    let server = Server::start(HashMap::from([
        // A relative Location for the asset, an absolute one for the checksum.
        (asset_path(), Reply::Redirect("/store/asset".into())),
        ("/store/asset".into(), Reply::Body(bytes.clone())),
        (
            format!("{}.sha256", asset_path()),
            Reply::Redirect("/store/sha".into()),
        ),
        (
            "/store/sha".into(),
            Reply::Body(format!("{sha}  {name}\n").into_bytes()),
        ),
    ]));
    let run = run(&server.url());
    assert!(run.out.status.success(), "{}", stderr(&run.out));
    assert_eq!(files_under(&run.pixi_dir()), [format!("{VERSION}/pixi")]);
    let requests = server.requests();
    assert!(
        requests.contains(&"/store/asset".to_owned()),
        "{requests:?}"
    );
    assert!(requests.contains(&"/store/sha".to_owned()), "{requests:?}");
}

#[test]
fn redirect_to_another_host_is_refused() {
    let (bytes, sha) = asset();
    // The other host would serve the right bytes: the refusal is about where, not what.
    let elsewhere = Server::start_on(
        Ipv4Addr::new(127, 0, 0, 2).into(),
        routes(Reply::Body(bytes.clone()), Some(sha)),
    );
    let target = format!("{}{}", elsewhere.url(), asset_path());
    let server = Server::start(routes(Reply::Redirect(target.clone()), Some(sha)));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &format!("{}{}", server.url(), asset_path()));
    assert!(
        err.contains(&target),
        "should name where it was sent:\n{err}"
    );
    assert!(err.contains("another host"), "{err}");
    assert!(
        err.contains(&format!("PYBUNDLE_PIXI_MIRROR at {}", elsewhere.url())),
        "should say how to trust the other host:\n{err}"
    );
    assert_eq!(
        elsewhere.requests(),
        Vec::<String>::new(),
        "must not follow"
    );
}

#[test]
fn redirect_loop_ends() {
    let (_, sha) = asset();
    let server = Server::start(routes(Reply::Redirect(asset_path()), Some(sha)));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &asset_path());
    assert!(err.contains("redirected more than"), "{err}");
}

#[test]
fn stalled_body_times_out() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Stall(bytes.clone()), Some(sha)));
    let start = Instant::now();
    let run = run_with_timeout(&server.url(), Some("2"));
    let took = start.elapsed();
    let err = assert_failed_cleanly(&run, &asset_path());
    // The words README's troubleshooting table quotes (with the default, 30.0 s).
    assert!(
        err.contains("sent nothing for 2.0 s (timed out)") && err.contains(TIMEOUT_VAR),
        "{err}"
    );
    // The timeout is what ends it: not before, and not much later (the CLI's own start-up and
    // `cargo metadata` are the rest).
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(
        took < Duration::from_millis(4500),
        "waited too long: {took:?}"
    );
}

#[test]
fn server_that_never_answers_times_out() {
    let (bytes, _) = asset();
    let mut r = routes(Reply::Body(bytes.clone()), None);
    r.insert(format!("{}.sha256", asset_path()), Reply::Silent);
    let server = Server::start(r);
    fails_after_a_timeout_of_1_5_s(&server.url(), &format!("{}.sha256", asset_path()));
}

/// A download from `mirror` with `PYBUNDLE_HTTP_TIMEOUT=1.5` fails cleanly, naming `url_part`
/// and the setting, once the timeout has passed (and not much later).
fn fails_after_a_timeout_of_1_5_s(mirror: &str, url_part: &str) {
    let start = Instant::now();
    let run = run_with_timeout(mirror, Some("1.5"));
    let took = start.elapsed();
    let err = assert_failed_cleanly(&run, url_part);
    assert!(
        err.contains("timed out") && err.contains(TIMEOUT_VAR),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "waited too long: {took:?}");
}

#[test]
fn a_connection_never_accepted_times_out() {
    // A listener whose accept queue is full: the kernel drops further connection attempts
    // unanswered, so connecting hangs until the connect timeout.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
        assert!(
            held.len() < 10_000,
            "the accept queue of {addr} never filled"
        );
    }
    let url = format!("http://{addr}");
    fails_after_a_timeout_of_1_5_s(&url, &url);
    drop((held, listener));
}

#[test]
fn bad_timeout_setting_is_named() {
    let run = run_with_timeout("http://127.0.0.1:9", Some("soon"));
    let err = stderr(&run.out);
    assert_eq!(run.out.status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("{TIMEOUT_VAR}=`soon`")), "{err}");
}

#[test]
fn another_pixi_version_with_a_matching_checksum_is_refused() {
    // The server is consistent with itself (archive and .sha256 agree), but it is not the
    // version asked for: only running the binary shows it.
    let (binary, other) = real_pixi()
        .filter(|(_, v)| v != VERSION)
        .unwrap_or_else(|| (stand_in("0.58.0"), "0.58.0".into()));
    let (bytes, sha) = archive_of(&binary);
    let server = Server::start(routes(Reply::Body(bytes), Some(&sha)));
    let run = run(&server.url());
    let err = assert_failed_cleanly(&run, &asset_path());
    assert!(
        err.contains(&format!("pixi {other}")) && err.contains(VERSION),
        "should name both versions:\n{err}"
    );
}

/// A pixi older than the oldest supported, given with `PYBUNDLE_PIXI` or chosen with
/// `pixi-version`, is refused (exit 4) with a message naming both versions; nothing is fetched.
#[test]
fn an_older_pixi_is_refused_naming_both_versions() {
    use std::os::unix::fs::PermissionsExt as _;
    let min = cargo_pybundle::pixi::MIN_PIXI_VERSION;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("pixi");
    std::fs::write(&old, stand_in("0.69.0")).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nowhere = "http://127.0.0.1:9";
    let given = run_with(nowhere, None, |cmd| {
        cmd.env("PYBUNDLE_PIXI", &old);
    });
    let chosen = run_with(nowhere, Some("0.69.0"), |_| {});
    for run in [given, chosen] {
        let err = stderr(&run.out);
        assert_eq!(run.out.status.code(), Some(4), "{err}");
        assert!(
            err.contains("is pixi 0.69.0; cargo pybundle needs pixi ")
                && err.contains(&format!("needs pixi {min} or newer")),
            "{err}"
        );
        assert_eq!(files_under(&run.pixi_dir()), Vec::<String>::new());
    }
}

/// A `pixi-sha256` that differs from the `.sha256` the mirror publishes: refused before the
/// download is trusted, naming both sums; nothing is cached.
#[test]
fn a_pinned_checksum_that_disagrees_with_the_published_one_is_refused() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), Some(sha)));
    let pinned = "0".repeat(64);
    let cache = tempfile::tempdir().unwrap();
    let pkg = tempfile::tempdir().unwrap();
    crate::support::package(
        pkg.path(),
        "pinned",
        Some(&format!(
            "pixi-version = \"{VERSION}\"\npixi-sha256 = \"{pinned}\""
        )),
    );
    let out = pixi_version_in(pkg.path(), cache.path(), &server.url());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "the pixi-sha256 in your configuration ({pinned}) differs from the one published"
        )) && err.contains(&format!("({sha})")),
        "{err}"
    );
    assert_eq!(
        files_under(&cache.path().join("cargo-pybundle/pixi")),
        Vec::<String>::new()
    );
}
