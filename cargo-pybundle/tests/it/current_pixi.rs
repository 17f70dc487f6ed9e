//! The build side on current pixi (the suite's pixi 0.77.0, fetched through cargo-pybundle's own
//! download path by `cargo xtask test`): the user's v7 lock used as is, a lock too new refused
//! before pixi runs, moved or copied environments and a cleaned package cache reinstalled,
//! activation captured without the developer's shell, and pixi's own errors shown.
//!
//! Each test packs a small project of its own (`cargo pybundle pack`: real pixi, real packing,
//! no cargo build) and reads the archive.

use crate::support::{package, stderr, with_toolchain};
use pybundle_runtime::format::Manifest;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A project in a temp dir: Cargo.toml with a pybundle table, pixi.toml, python/hello.py.
struct Project {
    _tmp: tempfile::TempDir,
    /// Folder holding the package (and the target dir beside it).
    base: PathBuf,
    dir: PathBuf,
}

impl Project {
    fn new(pixi_toml: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let dir = base.join("app");
        package(
            &dir,
            "app",
            Some("manifest = \"pixi.toml\"\nscripts = \"python\""),
        );
        std::fs::write(dir.join("pixi.toml"), pixi_toml).unwrap();
        std::fs::create_dir_all(dir.join("python")).unwrap();
        std::fs::write(dir.join("python/hello.py"), "print('hello')\n").unwrap();
        Project {
            _tmp: tmp,
            base,
            dir,
        }
    }

    fn default_target(&self) -> PathBuf {
        self.base.join("target")
    }

    /// `cargo pybundle pack` of the package in `dir` into `target`.
    fn pack_in(
        &self,
        tc: &testkit::Toolchain,
        dir: &Path,
        target: &Path,
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = with_toolchain(tc);
        cmd.args(["pack", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn pack(&self, tc: &testkit::Toolchain) -> Output {
        self.pack_in(tc, &self.dir, &self.default_target(), &[])
    }
}

/// The minimal manifest: python from `conda-forge` (mapped to the test channel).
fn manifest(extra: &str) -> String {
    format!(
        "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n\n\
         [dependencies]\npython = \"3.11.*\"\n{extra}"
    )
}

fn ok(out: &Output) -> PathBuf {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the archive's path on stdout"))
}

fn manifest_of(archive: &Path) -> Manifest {
    pybundle_runtime::manifest_of(&std::fs::read(archive).unwrap()).unwrap()
}

/// Whether the archive's uncompressed bytes (every header and file) contain `needle`.
fn archive_contains(archive: &Path, needle: &str) -> bool {
    let tar = zstd::decode_all(&std::fs::read(archive).unwrap()[..]).unwrap();
    memchr::memmem::find(&tar, needle.as_bytes()).is_some()
}

#[test]
fn a_v7_lock_is_used_as_is_in_locked_mode() {
    let Some(tc) = testkit::toolchain("a_v7_lock_is_used_as_is_in_locked_mode") else {
        return;
    };
    let p = Project::new(&manifest(""));
    let first = p.pack(&tc);
    ok(&first);
    let lock = p.dir.join("pixi.lock");
    let written = std::fs::read_to_string(&lock).unwrap();
    assert!(written.starts_with("version: 7\n"), "{written}");
    assert!(
        written.contains("https://conda.anaconda.org/conda-forge/linux-64/python-3.11"),
        "the lock keeps the canonical channel URL behind the mirror:\n{written}"
    );
    // Packed again, unchanged: the same lock bytes, and the same archive reused.
    let again = p.pack(&tc);
    ok(&again);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), written);
    assert!(
        stderr(&again).contains("bundle unchanged"),
        "{}",
        stderr(&again)
    );
    // Locked mode: a manifest the lock no longer matches is refused by pixi, lock untouched.
    std::fs::write(
        p.dir.join("pixi.toml"),
        manifest("pybundle-hello-entry = \"*\"\n"),
    )
    .unwrap();
    let stale = p.pack(&tc);
    assert_eq!(stale.status.code(), Some(5), "{}", stderr(&stale));
    assert!(
        stderr(&stale).contains("lock-file not up-to-date") || stderr(&stale).contains("lock file"),
        "{}",
        stderr(&stale)
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), written);
}

#[test]
fn a_lock_newer_than_the_pixi_fails_before_pixi_runs() {
    let Some(tc) = testkit::toolchain("a_lock_newer_than_the_pixi_fails_before_pixi_runs") else {
        return;
    };
    let p = Project::new(&manifest(""));
    std::fs::write(p.dir.join("pixi.lock"), "version: 99\nenvironments: {}\n").unwrap();
    let out = p.pack(&tc);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("pixi.lock is lock format version 99") && err.contains("pixi 0.77.0"),
        "{err}"
    );
    assert!(err.contains("reads up to version 7"), "{err}");
    assert!(!p.dir.join(".pixi/envs").exists(), "pixi installed anyway");
}

#[test]
fn a_moved_target_dir_and_a_copied_project_leave_no_old_path() {
    let Some(tc) = testkit::toolchain("a_moved_target_dir_and_a_copied_project_leave_no_old_path")
    else {
        return;
    };
    let p = Project::new(&manifest("pybundle-hello-entry = \"*\"\n"));
    let first_target = p.base.join("target-a");
    ok(&p.pack_in(&tc, &p.dir, &first_target, &[]));
    // The target dir moved: the bundle names neither the old target dir nor anything else old.
    let moved_target = p.base.join("target-b");
    std::fs::rename(&first_target, &moved_target).unwrap();
    let archive = ok(&p.pack_in(&tc, &p.dir, &moved_target, &[]));
    assert!(archive.starts_with(&moved_target));
    assert!(!archive_contains(&archive, first_target.to_str().unwrap()));

    // The whole project copied (its .pixi environment too, as a CI cache restore does): the copy's
    // environment still names the original's folder inside its files, so it is reinstalled.
    let copy = p.base.join("copy");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&p.dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let entry = copy.join(".pixi/envs/default/bin/pybundle-hello");
    let old = p.dir.to_str().unwrap();
    assert!(
        std::fs::read_to_string(&entry).unwrap().contains(old),
        "the copied entry point should name the original prefix before the build"
    );
    let out = p.pack_in(&tc, &copy, &p.base.join("target-copy"), &[]);
    let archive = ok(&out);
    assert!(stderr(&out).contains("Reinstalling"), "{}", stderr(&out));
    assert!(stderr(&out).contains("moved or copied"), "{}", stderr(&out));
    let m = manifest_of(&archive);
    assert_eq!(
        m.build_prefix,
        copy.join(".pixi/envs/default").to_str().unwrap()
    );
    assert!(
        !archive_contains(&archive, &format!("{old}/")),
        "the bundle still names {old}"
    );
    assert!(!std::fs::read_to_string(&entry).unwrap().contains(old));
}

#[test]
fn a_cleaned_package_cache_reinstalls_before_packing() {
    let Some(tc) = testkit::toolchain("a_cleaned_package_cache_reinstalls_before_packing") else {
        return;
    };
    let p = Project::new(&manifest(""));
    let cache = p.base.join("pixi-cache");
    let cache_str = cache.to_str().unwrap().to_owned();
    let env = [("PIXI_CACHE_DIR", cache_str.as_str())];
    ok(&p.pack_in(&tc, &p.dir, &p.default_target(), &env));
    std::fs::remove_dir_all(&cache).unwrap();
    // A script edit forces a new archive.
    std::fs::write(p.dir.join("python/hello.py"), "print('edited')\n").unwrap();
    let out = p.pack_in(&tc, &p.dir, &p.default_target(), &env);
    let archive = ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("Reinstalling") && err.contains("package cache no longer holds python-3.11"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    // The interpreter is packed from the package cache again, with its long placeholder.
    let m = manifest_of(&archive);
    let python = m
        .relocations
        .iter()
        .find(|r| r.path == "env/bin/python3.11")
        .expect("the interpreter is relocated");
    assert!(python.placeholder.len() > 200, "{python:?}");
    assert!(!archive_contains(
        &archive,
        &format!("{}/lib", m.build_prefix)
    ));
}

/// `[activation.env]` of the default environment and of a `dev` environment, and a task named
/// `python`; packing the default one from inside a `pixi shell -e dev` look-alike.
const ACTIVATION: &str = "\n[activation.env]\nWHICH = \"default\"\nSAME = \"shared-value\"\n\n\
     [feature.dev.activation.env]\nWHICH = \"dev\"\n\n[environments]\ndev = [\"dev\"]\n\n\
     [tasks]\npython = \"echo hijacked\"\n";

fn captured_from_a_dev_shell(test: &str) -> Option<(Project, Manifest, String)> {
    let tc = testkit::toolchain(test)?;
    let p = Project::new(&manifest(ACTIVATION));
    let other = p.base.join("other-env");
    let other = other.to_str().unwrap();
    let pixi = tc.pixi.to_str().unwrap().to_owned();
    let env = [
        ("PIXI_IN_SHELL", "1"),
        ("PIXI_ENVIRONMENT_NAME", "dev"),
        ("PIXI_EXE", pixi.as_str()),
        ("CONDA_PREFIX", other),
        ("CONDA_SHLVL", "2"),
        ("CONDA_ENV_SHLVL_1_CONDA_PREFIX", other),
        ("INIT_CWD", other),
        ("SAME", "shared-value"),
    ];
    let archive = ok(&p.pack_in(&tc, &p.dir, &p.default_target(), &env));
    Some((p, manifest_of(&archive), pixi))
}

#[test]
fn activation_is_captured_for_the_configured_environment_not_the_shell() {
    let Some((p, m, pixi)) = captured_from_a_dev_shell(
        "activation_is_captured_for_the_configured_environment_not_the_shell",
    ) else {
        return;
    };
    let a = &m.activation;
    assert_eq!(
        a.get("WHICH").map(String::as_str),
        Some("default"),
        "{a:#?}"
    );
    assert_eq!(
        a.get("PIXI_ENVIRONMENT_NAME").map(String::as_str),
        Some("default")
    );
    assert_eq!(a.get("CONDA_PREFIX").map(String::as_str), Some("${PREFIX}"));
    // Nothing names the build machine: no project folder, pixi, outer environment or home.
    let home = std::env::var("HOME").unwrap();
    for (k, v) in a {
        for machine in [p.base.to_str().unwrap(), pixi.as_str(), home.as_str()] {
            assert!(!v.contains(machine), "{k}={v} names {machine}");
        }
    }
    for dropped in [
        "PIXI_EXE",
        "PIXI_IN_SHELL",
        "INIT_CWD",
        "CONDA_SHLVL",
        "PIXI_PROMPT",
    ] {
        assert!(!a.contains_key(dropped), "{dropped} recorded: {a:#?}");
    }
    assert!(
        !a.keys().any(|k| k.starts_with("CONDA_ENV_SHLVL_")),
        "{a:#?}"
    );
}

#[test]
fn an_activation_value_equal_to_the_developers_is_recorded() {
    let Some((_p, m, _)) =
        captured_from_a_dev_shell("an_activation_value_equal_to_the_developers_is_recorded")
    else {
        return;
    };
    assert_eq!(
        m.activation.get("SAME").map(String::as_str),
        Some("shared-value"),
        "{:#?}",
        m.activation
    );
}

#[test]
fn a_task_named_python_does_not_change_the_capture() {
    let Some((_p, m, _)) =
        captured_from_a_dev_shell("a_task_named_python_does_not_change_the_capture")
    else {
        return;
    };
    // The capture ran (the default environment's variables are there) and no task did.
    assert_eq!(
        m.activation.get("WHICH").map(String::as_str),
        Some("default")
    );
    assert!(
        !m.activation.values().any(|v| v.contains("hijacked")),
        "{:#?}",
        m.activation
    );
    assert_eq!(m.python.version.get(..4), Some("3.11"));
}

#[test]
fn a_manifest_pixi_cannot_load_shows_pixis_message() {
    let Some(tc) = testkit::toolchain("a_manifest_pixi_cannot_load_shows_pixis_message") else {
        return;
    };
    let text = manifest("").replace(
        "platforms = [\"linux-64\"]\n",
        "platforms = [\"linux-64\"]\nfrom-a-newer-pixi = 1\n",
    );
    let p = Project::new(&text);
    let out = p.pack(&tc);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("from-a-newer-pixi"), "{err}");
    assert!(
        err.contains("was not expected here"),
        "pixi's own words: {err}"
    );
    assert!(
        err.contains(p.dir.join("pixi.toml").to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn a_host_platform_missing_from_platforms_is_named() {
    let Some(tc) = testkit::toolchain("a_host_platform_missing_from_platforms_is_named") else {
        return;
    };
    let text = manifest("").replace("[\"linux-64\"]", "[\"osx-arm64\"]");
    let p = Project::new(&text);
    let out = p.pack(&tc);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("this machine's platform `linux-64`") && err.contains("add \"linux-64\""),
        "{err}"
    );
    assert!(!p.dir.join(".pixi/envs").exists());
}

#[test]
fn requires_pixi_is_honoured_when_choosing_the_download() {
    let Some(tc) = testkit::toolchain("requires_pixi_is_honoured_when_choosing_the_download")
    else {
        return;
    };
    let text = manifest("").replace(
        "platforms = [\"linux-64\"]\n",
        "platforms = [\"linux-64\"]\nrequires-pixi = \">=0.99\"\n",
    );
    let p = Project::new(&text);
    // No --pixi: cargo-pybundle chooses the version to download.
    let out = with_toolchain(&tc)
        .env_remove("PYBUNDLE_PIXI")
        .args(["pack", "--manifest-path"])
        .arg(p.dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(p.default_target())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("requires-pixi = \">=0.99\"") && err.contains("pixi 0.77.0"),
        "{err}"
    );
    assert!(err.contains("pixi-version"), "{err}");
}

#[test]
fn the_pixi_command_runs_the_pixi_build_runs() {
    use crate::server::Server;
    // A mirror that has nothing: both commands must ask it for the package's pinned version.
    let server = Server::start(std::collections::HashMap::new());
    let p = Project::new(&manifest(""));
    let cargo_toml = p.dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml).unwrap();
    std::fs::write(&cargo_toml, format!("{text}pixi-version = \"0.76.0\"\n")).unwrap();
    let cache = p.base.join("cache");
    let run = |args: &[&str], dir: &Path| {
        crate::support::cargo_pybundle()
            .args(args)
            .current_dir(dir)
            .env("XDG_CACHE_HOME", &cache)
            .env("PYBUNDLE_PIXI_MIRROR", server.url())
            .output()
            .unwrap()
    };
    let pixi_here = run(&["pixi", "--version"], &p.dir);
    let manifest_path = cargo_toml.to_str().unwrap();
    let pixi_elsewhere = run(
        &["pixi", "--manifest-path", manifest_path, "--version"],
        &p.base,
    );
    let pack = run(&["pack", "--manifest-path", manifest_path], &p.base);
    for out in [&pixi_here, &pixi_elsewhere, &pack] {
        assert_eq!(out.status.code(), Some(4), "{}", stderr(out));
        assert!(
            stderr(out).contains("/v0.76.0/pixi-x86_64-unknown-linux-musl.tar.gz"),
            "{}",
            stderr(out)
        );
    }
    let asked: Vec<String> = server.requests();
    assert!(
        asked.iter().all(|r| r.starts_with("/v0.76.0/")),
        "{asked:?}"
    );
}

#[test]
fn the_pixi_command_exits_with_pixis_status() {
    let Some(tc) = testkit::toolchain("the_pixi_command_exits_with_pixis_status") else {
        return;
    };
    // No dependencies: `pixi run` has nothing to install before it runs the task.
    let p = Project::new(
        "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n",
    );
    let out = with_toolchain(&tc)
        .args(["pixi", "run", "exit 42"])
        .current_dir(&p.dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(42), "{err}");
    // pixi's status is passed on without words of ours.
    assert!(!err.contains("error:"), "{err}");
}

/// README, Troubleshooting: "conda-forge unreachable (exit 5)", fixed with
/// `PYBUNDLE_CHANNEL_MIRRORS`. conda-forge is made unreachable whatever the network: no mirror,
/// every proxy variable pointing at a port nothing listens on, and an empty pixi cache (so no
/// repodata is served from it). The build exits with 5 and pixi's message names conda-forge's
/// URL and the failed connection; then the table's fix, a `file://` mirror, makes the same build
/// pass, the proxy variables still set.
#[test]
fn an_unreachable_conda_forge_exits_5_and_a_mirror_fixes_it() {
    let Some(tc) = testkit::toolchain("an_unreachable_conda_forge_exits_5_and_a_mirror_fixes_it")
    else {
        return;
    };
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let p = Project::new(&manifest(""));
    let cache = p.base.join("pixi-cache");
    let build = |mirrors: Option<&str>| {
        let mut cmd = with_toolchain(&tc);
        cmd.args(["pack", "--manifest-path"])
            .arg(p.dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(p.default_target())
            .env("PIXI_CACHE_DIR", &cache)
            .env_remove("no_proxy");
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env(var, &dead);
        }
        // No NO_PROXY: cargo-pybundle exempts the loopback server of a `file://` mirror itself.
        cmd.env_remove("NO_PROXY");
        match mirrors {
            Some(m) => cmd.env("PYBUNDLE_CHANNEL_MIRRORS", m),
            None => cmd.env_remove("PYBUNDLE_CHANNEL_MIRRORS"),
        };
        cmd.output().unwrap()
    };
    let started = std::time::Instant::now();
    let out = build(None);
    let err = stderr(&out);
    eprintln!("failed after {:.1?}", started.elapsed());
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("the pixi environment could not be installed"),
        "{err}"
    );
    assert!(
        err.contains("https://conda.anaconda.org/conda-forge/"),
        "{err}"
    );
    assert!(err.contains("connect"), "{err}");

    ok(&build(Some(&tc.mirrors())));
}
