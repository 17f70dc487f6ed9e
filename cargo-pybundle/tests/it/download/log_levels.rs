//! How much the CLI says: `PYBUNDLE_LOG` defaults from `-v`/`-q`, and `-v`, `-vv` or
//! `PYBUNDLE_LOG=debug` add detail. Driven by `cargo pybundle pixi --version` outside any
//! package, with pixi downloaded from a server on 127.0.0.1 and a `file://` channel mirror:
//! a status line (`Downloading`), an info line (the mirror served to pixi) and a debug line
//! (no package to take pixi settings from).

use super::*;

const STATUS: &str = "Downloading";
const INFO: &str = "for pixi";
const DEBUG: &str = "no package to take pixi settings from";

/// `cargo pybundle <flags> pixi --version` with an empty cache, `PYBUNDLE_LOG` set to `log`
/// (unset: `None`); its stderr.
fn said(server: &Server, flags: &[&str], log: Option<&str>) -> String {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let channel = cwd.path().join("channel");
    std::fs::create_dir(&channel).unwrap();
    let mut cmd = downloader();
    cmd.args(flags)
        .args(["pixi", "--version"])
        .current_dir(cwd.path())
        .env("XDG_CACHE_HOME", cache.path())
        .env("HOME", cwd.path())
        .env("PYBUNDLE_PIXI_MIRROR", server.url())
        .env(
            "PYBUNDLE_CHANNEL_MIRRORS",
            format!("conda-forge=file://{}", channel.display()),
        )
        .env_remove(TIMEOUT_VAR);
    if let Some(filter) = log {
        cmd.env("PYBUNDLE_LOG", filter);
    }
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{flags:?} {log:?}: {err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pixi {VERSION}"),
        "{flags:?} {log:?}: {err}"
    );
    err
}

/// Which of the status, info and debug lines `err` holds.
fn levels(err: &str) -> [bool; 3] {
    [STATUS, INFO, DEBUG].map(|line| err.contains(line))
}

#[test]
fn v_and_q_set_the_default_log_level_and_pybundle_log_wins() {
    let (bytes, sha) = asset();
    let server = Server::start(routes(Reply::Body(bytes.clone()), Some(sha)));
    let cases: [(&[&str], Option<&str>, [bool; 3]); 6] = [
        (&[], None, [true, false, false]),
        (&["-v"], None, [true, true, false]),
        (&["-vv"], None, [true, true, true]),
        (&[], Some("debug"), [true, true, true]),
        (&["-q"], None, [false, false, false]),
        // A filter given says what is logged; `-q` still silences the status lines.
        (&["-q"], Some("debug"), [false, true, true]),
    ];
    for (flags, log, expected) in cases {
        let err = said(&server, flags, log);
        assert_eq!(
            levels(&err),
            expected,
            "{flags:?} PYBUNDLE_LOG={log:?} (status, info, debug):\n{err}"
        );
    }
}
