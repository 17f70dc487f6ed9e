//! Configuration errors: clear messages, exit code 3, nothing written.

use crate::support::{cargo_pybundle, package, stderr};

fn build_err(metadata: Option<&str>) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = package(tmp.path(), "cfgapp", metadata);
    let out = cargo_pybundle()
        .args(["build", "--manifest-path"])
        .arg(&manifest)
        .args(["--pixi", "/nonexistent/pixi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    (stderr(&out), tmp)
}

#[test]
fn missing_table_shows_a_snippet() {
    let (err, _tmp) = build_err(None);
    assert!(
        err.contains("has no [package.metadata.pybundle] table"),
        "{err}"
    );
    assert!(err.contains("scripts = \"python\""), "{err}");
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    let (err, _tmp) = build_err(Some("script = \"py\""));
    assert!(err.contains("unknown key `script`"), "{err}");
    assert!(
        err.contains("valid keys: manifest, environment, scripts"),
        "{err}"
    );
    assert!(err.contains("Cargo.toml"), "{err}");
}

#[test]
fn wrong_type_names_key_and_type() {
    let (err, _tmp) = build_err(Some("compression-level = \"max\""));
    assert!(
        err.contains("`compression-level` must be an integer from 1 to 22, not a string"),
        "{err}"
    );
}

#[test]
fn bad_mirror_variable_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = package(tmp.path(), "mirrorapp", Some(""));
    let out = cargo_pybundle()
        .args(["pack", "--manifest-path"])
        .arg(&manifest)
        .env("PYBUNDLE_CHANNEL_MIRRORS", "conda-forge")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("PYBUNDLE_CHANNEL_MIRRORS entry `conda-forge`"));
}

/// A workspace with two bundled members, `a` and `b`.
fn two_member_workspace(root: &std::path::Path) {
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nmembers = [\"a\", \"b\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    for name in ["a", "b"] {
        let dir = root.join(name);
        package(&dir, name, Some("scripts = \"python\""));
        // Members must not declare their own workspace.
        let toml = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .replace("[workspace]\n", "");
        std::fs::write(dir.join("Cargo.toml"), toml).unwrap();
        std::fs::create_dir_all(dir.join("python")).unwrap();
        std::fs::write(
            dir.join("pixi.toml"),
            "[project]\nname = \"x\"\nchannels = []\nplatforms = []\n",
        )
        .unwrap();
    }
}

/// Runs `pack` with a pixi that does not exist: selection and config pass, the pixi step
/// fails (exit 4), and the work dir created tells which package was chosen.
fn chosen(root: &std::path::Path, args: &[&str], cwd: &std::path::Path) -> Vec<String> {
    let target = root.join("target");
    let out = cargo_pybundle()
        .arg("pack")
        .args(args)
        .arg("--target-dir")
        .arg(&target)
        .args(["--pixi", "/nonexistent/pixi"])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let mut dirs: Vec<String> = std::fs::read_dir(target.join("pybundle"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    std::fs::remove_dir_all(&target).unwrap();
    dirs
}

#[test]
fn package_selection_in_a_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_member_workspace(root);
    let b_manifest = root.join("b/Cargo.toml");
    assert_eq!(
        chosen(
            root,
            &["--manifest-path", b_manifest.to_str().unwrap()],
            root
        ),
        ["b"]
    );
    assert_eq!(chosen(root, &["-p", "a"], root), ["a"]);
    assert_eq!(
        chosen(root, &[], &root.join("b/python")),
        ["b"],
        "nearest Cargo.toml up from the cwd"
    );

    let out = cargo_pybundle()
        .arg("pack")
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("several packages can be bundled (a, b); choose one with -p"),
        "{}",
        stderr(&out)
    );
    let out = cargo_pybundle()
        .args(["pack", "-p", "c"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("no package `c` in the workspace; members: a, b"),
        "{}",
        stderr(&out)
    );
}

/// `cargo pybundle pixi -p <member>`: the member's settings apply — pixi runs in its pixi
/// manifest's folder with its `channel-mirrors` in the configuration layer — and everything
/// after pixi's first argument (a `-p` too) is pixi's.
#[test]
fn pixi_runs_for_the_package_p_selects_with_its_mirrors() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_member_workspace(root);
    let b = root.join("b/Cargo.toml");
    let toml = std::fs::read_to_string(&b).unwrap();
    std::fs::write(
        &b,
        format!("{toml}channel-mirrors = {{ conda-forge = \"https://mirror.example/cf\" }}\n"),
    )
    .unwrap();
    // A stand-in pixi: its version, else where it runs, its arguments and its configuration.
    let pixi = root.join("fake-pixi");
    std::fs::write(
        &pixi,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pixi 0.77.0'; exit 0; }\n\
         echo \"cwd=$(pwd)\"; echo \"args=$*\"; echo \"config=$PIXI_CONFIG_FILE\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&pixi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = cargo_pybundle()
        .args(["pixi", "-p", "b", "--target-dir"])
        .arg(root.join("target"))
        .arg("--pixi")
        .arg(&pixi)
        .args(["info", "-p", "x"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {said}"))
            .to_owned()
    };
    assert_eq!(line("cwd="), root.join("b").display().to_string());
    assert_eq!(line("args="), "info -p x");
    let config = std::fs::read_to_string(line("config=")).unwrap();
    assert!(
        config.contains(
            "\"https://conda.anaconda.org/conda-forge\" = [\"https://mirror.example/cf\"]"
        ),
        "{config}"
    );
}

#[test]
fn the_mirror_layer_is_the_users_global_pixi_configuration_plus_the_mirrors() {
    let Some(tc) = testkit::toolchain(
        "the_mirror_layer_is_the_users_global_pixi_configuration_plus_the_mirrors",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let manifest = package(&tmp.path().join("app"), "layered", Some(""));
    // The user's global pixi configuration, in two of the places pixi reads it from.
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("pixi")).unwrap();
    std::fs::write(
        xdg.join("pixi/config.toml"),
        "default-channels = [\"from-xdg\"]\n\n[mirrors]\n\
         \"https://example.org/own\" = [\"https://mirror.example/own\"]\n",
    )
    .unwrap();
    let pixi_home = tmp.path().join("pixi-home");
    std::fs::create_dir_all(&pixi_home).unwrap();
    std::fs::write(
        pixi_home.join("config.toml"),
        "change-ps1 = false\n\n[mirrors]\n\
         \"https://conda.anaconda.org/bioconda\" = [\"https://old.example/bioconda\"]\n",
    )
    .unwrap();
    let out = cargo_pybundle()
        .args(["pixi", "--manifest-path"])
        .arg(&manifest)
        .arg("--version")
        .env("PYBUNDLE_PIXI", &tc.pixi)
        .env(
            "PYBUNDLE_CHANNEL_MIRRORS",
            "bioconda=https://new.example/bioconda",
        )
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .env("PIXI_HOME", &pixi_home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = tmp
        .path()
        .join("app/target/pybundle/layered/pixi-config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let layer: toml_edit::DocumentMut = text.parse().unwrap();
    assert_eq!(
        layer["default-channels"].to_string().trim(),
        "[\"from-xdg\"]",
        "{text}"
    );
    assert_eq!(layer["change-ps1"].as_bool(), Some(false), "{text}");
    let mirrors = &layer["mirrors"];
    assert_eq!(
        mirrors["https://example.org/own"].to_string().trim(),
        "[\"https://mirror.example/own\"]",
        "{text}"
    );
    // Ours replace the user's mirror of the same channel.
    assert_eq!(
        mirrors["https://conda.anaconda.org/bioconda"]
            .to_string()
            .trim(),
        "[\"https://new.example/bioconda\"]",
        "{text}"
    );
}
