//! Where a bundle goes when neither `PYBUNDLE_CACHE_DIR` nor the application chooses:
//! `$XDG_CACHE_HOME/pybundle` when that is set, else `~/.cache/pybundle`. Each case is a child
//! process (this test binary again) with its own `HOME` and `XDG_CACHE_HOME`.

use std::path::PathBuf;
use std::process::Command;

use pybundle_runtime::Bundle;

use super::*;

const CHILD: &str = "PYBUNDLE_CACHE_ROOT_CHILD";

/// Not a test on its own: the child's body, a first run with the default cache.
#[test]
fn cache_root_child() {
    let Some(archive) = std::env::var_os(CHILD) else {
        return;
    };
    let env = Bundle::from_file(archive).unwrap().ready().unwrap();
    assert!(env.interpreter().exists());
    println!("CACHE-ROOT {}", env.root().display());
}

/// The bundle directory a child made ready with these variables (and no other choice).
fn extracted_with(archive: &Path, vars: &[(&str, &Path)]) -> PathBuf {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "bundle::cache_root::cache_root_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, archive)
    .env_remove("PYBUNDLE_CACHE_DIR")
    .env_remove("XDG_CACHE_HOME");
    for (name, value) in vars {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| {
            l.split_once("CACHE-ROOT ")
                .map(|(_, dir)| PathBuf::from(dir))
        })
        .unwrap_or_else(|| panic!("no root in: {stdout}"))
}

#[test]
fn the_default_cache_is_xdg_cache_home_else_the_home_dot_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("rooted.tar.zst");
    std::fs::write(&archive, build(&sample("rooted", "x"))).unwrap();
    let id = Bundle::from_file(&archive).unwrap().manifest().id.clone();
    let dir_name = format!("rooted-{}", &id[..16]);
    let (home, xdg) = (tmp.path().join("home"), tmp.path().join("xdg"));
    std::fs::create_dir(&home).unwrap();

    let dir = extracted_with(&archive, &[("HOME", &home), ("XDG_CACHE_HOME", &xdg)]);
    assert_eq!(dir, xdg.join("pybundle").join(&dir_name));
    assert!(dir.join("env").is_dir());
    assert!(!home.join(".cache").exists(), "nothing in ~/.cache");

    let dir = extracted_with(&archive, &[("HOME", &home)]);
    assert_eq!(dir, home.join(".cache/pybundle").join(&dir_name));
    assert!(dir.join("env").is_dir());
}
