//! Real project layouts on real pixi: a pyproject.toml project whose own package is an editable
//! path dependency, a relative path dependency on a sibling package and a local wheel, project
//! configuration (`.pixi/config.toml`) in effect, and the user's lock used unchanged behind a
//! mirror. Every bundle is checked where it matters: with the project's sources gone.

use crate::support::{
    build_binary, cargo_pybundle, copy_tree, example, package, stderr, with_toolchain,
};
use pybundle_runtime::format::Manifest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ok(out: &Output) -> PathBuf {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("a path on stdout"))
}

fn manifest_of(archive: &Path) -> Manifest {
    pybundle_runtime::manifest_of(&std::fs::read(archive).unwrap()).unwrap()
}

/// `cargo pybundle pack` of `cargo_toml` into `target`, with extra environment.
fn pack(tc: &testkit::Toolchain, cargo_toml: &Path, target: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = with_toolchain(tc);
    cmd.args(["pack", "--manifest-path"])
        .arg(cargo_toml)
        .arg("--target-dir")
        .arg(target);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Extracts `archive` into a fresh cache and runs `code` with the bundled interpreter; its stdout.
fn run_bundled(archive: &Path, code: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let env = pybundle_runtime::Bundle::from_file(archive)
        .unwrap()
        .cache_dir(cache.path())
        .ready()
        .unwrap();
    let out = env.python().args(["-c", code]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_pyproject_project_bundles_its_own_editable_package() {
    let Some(tc) = testkit::toolchain("a_pyproject_project_bundles_its_own_editable_package")
    else {
        return;
    };
    let (copy, cargo_toml) = example("pyreport");
    let project = cargo_toml.parent().unwrap().to_path_buf();
    // pixi installs the project's package editable, as pixi users have it (here through
    // `cargo pybundle pixi install`, the same pixi and mirrors as a build, but no build).
    let install = with_toolchain(&tc)
        .args(["pixi", "--manifest-path"])
        .arg(&cargo_toml)
        .arg("install")
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", stderr(&install));
    let site = project.join(".pixi/envs/default/lib/python3.11/site-packages");
    let pth = std::fs::read_to_string(site.join("_editable_impl_pyreport.pth")).unwrap();
    assert_eq!(pth.trim(), project.join("src").to_str().unwrap());
    let installed = editable_install(&site);
    let binary = build_binary(&tc, &cargo_toml);
    // The build packed a real copy and left the editable install as pixi made it.
    assert_eq!(
        editable_install(&site),
        installed,
        "the build changed the editable install"
    );

    // The bundle runs with the project's sources gone: it carries a real copy.
    let moved = copy.path().join("moved-away");
    std::fs::rename(&project, &moved).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(&binary)
        .args(["to", "be", "or", "not", "to", "be"])
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}\n{}", stderr(&out));
    assert!(
        said.contains("6 words, 4 distinct, most common Some(\"to\") (style plain)"),
        "{said}"
    );
    assert!(
        said.contains("console script: pyreport, version 0.1.0"),
        "{said}"
    );
    assert!(said.contains("click 8.1.7"), "{said}");
    let package = said
        .lines()
        .find_map(|l| l.strip_prefix("package: "))
        .unwrap();
    assert!(
        package.starts_with(cache.path().to_str().unwrap()),
        "{said}"
    );

    let inspected = cargo_pybundle()
        .args(["inspect", "--json"])
        .arg(&binary)
        .output()
        .unwrap();
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    let m: Manifest = serde_json::from_slice(&inspected.stdout).unwrap();
    let names: Vec<&str> = m.packages.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"click"), "{names:?}");
    assert_eq!(
        m.activation.get("PYREPORT_STYLE").map(String::as_str),
        Some("plain")
    );
}

/// The files of pyreport's install in `site` (those its `RECORD` lists, the `RECORD` itself and
/// the `.pth`) with their sha256; the `RECORD` must list the `.pth`.
fn editable_install(site: &Path) -> Vec<(String, String)> {
    use sha2::Digest;
    let record = site.join("pyreport-0.1.0.dist-info/RECORD");
    let text = std::fs::read_to_string(&record).unwrap();
    let mut files: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(',').next())
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        files.iter().any(|f| f == "_editable_impl_pyreport.pth"),
        "{text}"
    );
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(site.join(&f)).unwrap_or_default();
            let sha = hex::encode(sha2::Sha256::digest(bytes));
            (f, sha)
        })
        .collect()
}

/// A source package built with hatchling (from PyPI, as pixi builds local packages).
fn sibling_package(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        format!(
            "[project]\nname = \"{name}\"\nversion = \"1.0\"\n\n[build-system]\n\
             requires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(name).join("__init__.py"), body).unwrap();
}

/// A wheel made by hand (a zip with its dist-info), as a `./wheels/x.whl` line of a
/// requirements file points at.
fn wheel(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{name}-1.0-py3-none-any.whl"));
    let script = format!(
        "import zipfile, sys\n\
         z = zipfile.ZipFile(sys.argv[1], 'w')\n\
         z.writestr('{name}/__init__.py', {body:?})\n\
         z.writestr('{name}-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: {name}\\nVersion: 1.0\\n')\n\
         z.writestr('{name}-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         z.writestr('{name}-1.0.dist-info/RECORD', '{name}/__init__.py,,\\n{name}-1.0.dist-info/METADATA,,\\n{name}-1.0.dist-info/WHEEL,,\\n{name}-1.0.dist-info/RECORD,,\\n')\n\
         z.close()\n"
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    file
}

const MAPPING: &str =
    "\n[workspace.conda-pypi-map]\nconda-forge = { mapping-mode = \"replace\" }\n";

#[test]
fn relative_path_dependencies_resolve_and_ship_as_real_installs() {
    let Some(tc) =
        testkit::toolchain("relative_path_dependencies_resolve_and_ship_as_real_installs")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let app = base.join("app");
    let cargo_toml = package(&app, "app", Some("scripts = \"python\""));
    std::fs::create_dir_all(app.join("python")).unwrap();
    sibling_package(&base.join("mylib"), "mylib", "ANSWER = 42\n");
    sibling_package(&base.join("mytool"), "mytool", "NAME = 'tool'\n");
    wheel(&app.join("wheels"), "localwheel", "WHEEL = 'yes'\n");
    std::fs::write(
        app.join("pixi.toml"),
        format!(
            "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n{MAPPING}\n\
             [dependencies]\npython = \"3.11.*\"\n\n[pypi-dependencies]\n\
             mylib = {{ path = \"../mylib\" }}\n\
             mytool = {{ path = \"../mytool\", editable = true }}\n\
             localwheel = {{ path = \"./wheels/localwheel-1.0-py3-none-any.whl\" }}\n"
        ),
    )
    .unwrap();
    let archive = ok(&pack(&tc, &cargo_toml, &base.join("target"), &[]));
    let lock = std::fs::read_to_string(app.join("pixi.lock")).unwrap();
    assert!(
        lock.contains("../mylib"),
        "paths stay relative in the lock:\n{lock}"
    );

    // The sources and the wheel gone, the bundle still imports all three.
    for gone in ["mylib", "mytool"] {
        std::fs::remove_dir_all(base.join(gone)).unwrap();
    }
    std::fs::remove_dir_all(app.join("wheels")).unwrap();
    let out = run_bundled(
        &archive,
        "import mylib, mytool, localwheel, sys\n\
         print(mylib.ANSWER, mytool.NAME, localwheel.WHEEL)\n\
         print(all(m.__file__.startswith(sys.prefix) for m in (mylib, mytool, localwheel)))",
    );
    assert_eq!(out, "42 tool yes\nTrue\n");
    let m = manifest_of(&archive);
    let packed: Vec<&str> = m.packages.iter().map(|p| p.name.as_str()).collect();
    for name in ["mylib", "mytool", "localwheel"] {
        assert!(packed.contains(&name), "{name} not in {packed:?}");
    }
}

#[test]
fn project_configuration_is_in_effect() {
    let Some(tc) = testkit::toolchain("project_configuration_is_in_effect") else {
        return;
    };
    // The team's project config: a conda-forge mirror (the test channel on a real HTTP server)
    // and environments kept outside the project. No PYBUNDLE_CHANNEL_MIRRORS: only this file
    // makes conda-forge reachable.
    let mirror = cargo_pybundle::mirror::serve::Server::start(&tc.channel_dir()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let app = base.join("app");
    let cargo_toml = package(&app, "app", Some("scripts = \"python\""));
    std::fs::create_dir_all(app.join("python")).unwrap();
    std::fs::write(
        app.join("pixi.toml"),
        "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n\n\
         [dependencies]\npython = \"3.11.*\"\n",
    )
    .unwrap();
    let detached = base.join("envs-elsewhere");
    std::fs::create_dir_all(app.join(".pixi")).unwrap();
    std::fs::write(
        app.join(".pixi/config.toml"),
        format!(
            "detached-environments = \"{}\"\n\n[mirrors]\n\"https://conda.anaconda.org/conda-forge\" = [\"{}\"]\n",
            detached.display(),
            mirror.url()
        ),
    )
    .unwrap();
    let out = cargo_pybundle()
        .env("PYBUNDLE_PIXI", &tc.pixi)
        .args(["pack", "--manifest-path"])
        .arg(&cargo_toml)
        .arg("--target-dir")
        .arg(base.join("target"))
        .output()
        .unwrap();
    let archive = ok(&out);
    let m = manifest_of(&archive);
    assert!(
        Path::new(&m.build_prefix).starts_with(&detached),
        "{} is not in the detached folder {}",
        m.build_prefix,
        detached.display()
    );
    assert_eq!(
        run_bundled(&archive, "import sys; print(sys.version_info[:2])"),
        "(3, 11)\n"
    );
}

/// A copy of the test channel whose repodata lists no packages: nothing can be solved from it,
/// but every package file a lock names is there to download.
fn unsolvable_copy_of(channel: &Path, into: &Path) {
    copy_tree(channel, into);
    for subdir in ["linux-64", "noarch"] {
        let repodata = into.join(subdir).join("repodata.json");
        if repodata.is_file() {
            let text = std::fs::read_to_string(&repodata).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            json["packages"] = serde_json::json!({});
            json["packages.conda"] = serde_json::json!({});
            std::fs::write(&repodata, json.to_string()).unwrap();
        }
    }
}

#[test]
fn the_users_lock_is_used_unchanged_behind_http_and_file_mirrors() {
    let Some(tc) =
        testkit::toolchain("the_users_lock_is_used_unchanged_behind_http_and_file_mirrors")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    let cargo_toml = package(&app, "app", Some("scripts = \"python\""));
    std::fs::create_dir_all(app.join("python")).unwrap();
    std::fs::write(
        app.join("pixi.toml"),
        "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n\n\
         [dependencies]\npython = \"3.11.*\"\npybundle-hello-entry = \"*\"\n\n\
         [feature.extra.dependencies]\npybundle-reloc-test = \"*\"\n",
    )
    .unwrap();
    // The developer's lock, solved against the real channel.
    let target = tmp.path().join("target");
    ok(&pack(&tc, &cargo_toml, &target, &[]));
    let lock = std::fs::read(app.join("pixi.lock")).unwrap();

    let channel = tmp.path().join("mirror");
    unsolvable_copy_of(&tc.channel_dir(), &channel);
    let http = cargo_pybundle::mirror::serve::Server::start(&channel).unwrap();
    for mirror in [
        http.url().to_owned(),
        format!("file://{}", channel.display()),
    ] {
        // No environment and an empty package cache: every package comes from the mirror.
        std::fs::remove_dir_all(app.join(".pixi")).unwrap();
        let cache = tmp.path().join("pixi-cache");
        let _ = std::fs::remove_dir_all(&cache);
        let mirrors = format!("conda-forge={mirror}");
        let out = pack(
            &tc,
            &cargo_toml,
            &target,
            &[
                ("PYBUNDLE_CHANNEL_MIRRORS", mirrors.as_str()),
                ("PIXI_CACHE_DIR", cache.to_str().unwrap()),
            ],
        );
        let archive = ok(&out);
        assert_eq!(
            std::fs::read(app.join("pixi.lock")).unwrap(),
            lock,
            "{mirror}"
        );
        // The installed versions are the locked ones.
        let m = manifest_of(&archive);
        let lock_text = String::from_utf8_lossy(&lock);
        for p in &m.packages {
            let locked = format!("/{}-{}-{}.tar.bz2", p.name, p.version, p.build);
            assert!(
                lock_text.contains(&locked),
                "{mirror}: {locked} not in the lock"
            );
        }
        assert!(m.packages.iter().any(|p| p.name == "pybundle-hello-entry"));
    }
    drop(http);
}

#[test]
fn a_per_dependency_channel_goes_through_the_mirror() {
    let Some(tc) = testkit::toolchain("a_per_dependency_channel_goes_through_the_mirror") else {
        return;
    };
    // `channel = "conda-forge"` on one dependency and a conda-pypi-map keyed by channel name:
    // pixi reads both as written, and the mirror (keyed by the channel's URL) still applies.
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    let cargo_toml = package(&app, "app", Some("scripts = \"python\""));
    std::fs::create_dir_all(app.join("python")).unwrap();
    std::fs::write(
        app.join("pixi.toml"),
        format!(
            "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n{MAPPING}\n\
             [dependencies]\npython = \"3.11.*\"\n\
             pybundle-hello-entry = {{ version = \"*\", channel = \"conda-forge\" }}\n"
        ),
    )
    .unwrap();
    let archive = ok(&pack(&tc, &cargo_toml, &tmp.path().join("target"), &[]));
    let m = manifest_of(&archive);
    assert!(
        m.packages.iter().any(|p| p.name == "pybundle-hello-entry"),
        "{:?}",
        m.packages
    );
    let lock = std::fs::read_to_string(app.join("pixi.lock")).unwrap();
    assert!(
        lock.contains("https://conda.anaconda.org/conda-forge/noarch/pybundle-hello-entry"),
        "{lock}"
    );
}

/// Every path in `archive` (both frames: the manifest's tar, then the body's).
fn archive_paths(archive: &Path) -> Vec<String> {
    let tar = zstd::decode_all(&std::fs::read(archive).unwrap()[..]).unwrap();
    let mut ar = tar::Archive::new(&tar[..]);
    ar.set_ignore_zeros(true);
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// README, "Real projects": "A `Bundling` line names each such package" (each editable
/// install); and Limits: what an editable package reads from outside its importable folders,
/// such as a data file beside its `pyproject.toml`, is not packed, while its modules are.
#[test]
fn each_editable_package_is_named_and_only_its_importable_files_are_packed() {
    let Some(tc) = testkit::toolchain(
        "each_editable_package_is_named_and_only_its_importable_files_are_packed",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let app = base.join("app");
    let cargo_toml = package(&app, "app", Some("scripts = \"python\""));
    std::fs::create_dir_all(app.join("python")).unwrap();
    for name in ["alpha", "beta", "gamma"] {
        let dir = base.join(name);
        sibling_package(&dir, name, &format!("NAME = '{name}'\n"));
        std::fs::write(
            dir.join(format!("{name}-data.txt")),
            "read by a relative path\n",
        )
        .unwrap();
    }
    std::fs::write(
        app.join("pixi.toml"),
        format!(
            "[workspace]\nname = \"app\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n{MAPPING}\n\
             [dependencies]\npython = \"3.11.*\"\n\n[pypi-dependencies]\n\
             alpha = {{ path = \"../alpha\", editable = true }}\n\
             beta = {{ path = \"../beta\", editable = true }}\n\
             gamma = {{ path = \"../gamma\" }}\n"
        ),
    )
    .unwrap();
    let out = pack(&tc, &cargo_toml, &base.join("target"), &[]);
    let archive = ok(&out);
    let err = stderr(&out);
    let bundling: Vec<&str> = err
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("Bundling "))
        .collect();
    assert_eq!(
        bundling.len(),
        2,
        "one line for each editable package:\n{err}"
    );
    for name in ["alpha", "beta"] {
        let from = format!("Bundling {name} from {} (", base.join(name).display());
        assert!(
            bundling.iter().any(|l| l.starts_with(&from)),
            "no `{from}…` line in:\n{err}"
        );
    }

    // The editable installs link the folders holding pyproject.toml and the data files.
    let site = app.join(".pixi/envs/default/lib/python3.11/site-packages");
    let pth_lines: Vec<String> = std::fs::read_dir(&site)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pth"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    for name in ["alpha", "beta"] {
        let folder = base.join(name);
        assert!(
            pth_lines.iter().any(|l| Path::new(l.trim()) == folder),
            "no .pth names {}: {pth_lines:?}",
            folder.display()
        );
    }

    let paths = archive_paths(&archive);
    let packed = |suffix: &str| paths.iter().any(|p| p.ends_with(suffix));
    for name in ["alpha", "beta"] {
        let module = format!("site-packages/_pybundle_local/{name}/{name}/__init__.py");
        assert!(packed(&module), "{module} not packed: {paths:#?}");
    }
    for name in ["alpha", "beta", "gamma"] {
        let data = format!("{name}-data.txt");
        assert!(!packed(&data), "{data} packed: {paths:#?}");
    }
    assert_eq!(
        run_bundled(
            &archive,
            "import alpha, beta, gamma; print(alpha.NAME, beta.NAME, gamma.NAME)"
        ),
        "alpha beta gamma\n"
    );
}
