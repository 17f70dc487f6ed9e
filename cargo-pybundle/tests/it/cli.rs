//! Command-line parsing through the real binary.

use crate::support::cargo_pybundle;

#[test]
fn build_help_lists_cargo_flags_and_exit_codes() {
    let out = cargo_pybundle()
        .args(["build", "--help"])
        .assert()
        .success()
        .get_output()
        .clone();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--release",
        "--package",
        "--manifest-path",
        "--target-dir",
        "--target",
        "--features",
        "--bin",
        "--pixi",
        "Exit status",
    ] {
        assert!(help.contains(flag), "`{flag}` missing from:\n{help}");
    }
}

#[test]
fn every_command_has_help() {
    for cmd in ["run", "pack", "pixi"] {
        cargo_pybundle().args([cmd, "--help"]).assert().success();
    }
    cargo_pybundle().arg("--help").assert().success();
}

#[test]
fn invalid_command_line_exits_2() {
    cargo_pybundle()
        .args(["build", "--no-such-flag"])
        .assert()
        .code(2);
    cargo_pybundle().arg("frobnicate").assert().code(2);
}

#[test]
fn direct_invocation_without_pybundle_word_is_rejected() {
    // cargo always passes the subcommand name first; anything else is a usage error.
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_cargo-pybundle"))
        .arg("build")
        .assert()
        .code(2);
}
