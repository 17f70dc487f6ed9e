//! One-shot scripts against real interpreters: the host's CPython and the test channel's
//! Python installed by pixi (when the toolchain is prepared).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pybundle_runtime::{Environment, Error};
use serde_json::{json, Value};
use testkit::pyenv::{pythons, Python};

/// The `pybundle` package as a bundle ships it: written out from the embedded copy (so the
/// source tree never gets a `__pycache__`, and the embedded bytes are what is tested) by
/// development mode's own writer, into `<target>/tmp/dev-lib/<digest of the package>`, which
/// test processes with the same package share.
pub fn lib_dir() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        pybundle_runtime::dev::python_lib(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
            .unwrap()
    })
    .clone()
}

pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

pub fn env_for(py: &Python) -> Environment {
    Environment::from_parts(&py.prefix, &py.interpreter, scripts_dir(), lib_dir())
}

/// Runs `check` against every available interpreter, naming the one that failed.
fn each(test: &str, check: impl Fn(&Environment)) {
    for py in pythons(test) {
        eprintln!("{test}: {} python {}", py.label, py.interpreter.display());
        check(&env_for(&py));
    }
}

#[test]
fn nested_unicode_and_a_50_mb_string_round_trip() {
    each("nested_unicode_and_a_50_mb_string_round_trip", |env| {
        let big = "é✓x".repeat(50_000_000 / 6);
        let input = json!({
            "nested": {"list": [1, 2.5, null, true, {"deep": ["ünïcødé", "日本語", "🐍"]}]},
            "quote\"key": "line\nbreak\ttab\\",
            "big": big,
        });
        let out = env.script("echo").input(&input).run::<Value>().unwrap();
        assert!(out.status.success());
        assert_eq!(out.reply["input"], input);
        assert_eq!(out.reply["name"], "__main__");
        assert_eq!(out.reply["input"]["big"].as_str().unwrap().len(), big.len());
    });
}

#[test]
fn no_input_is_none() {
    each("no_input_is_none", |env| {
        let out = env.script("echo").run::<Value>().unwrap();
        assert_eq!(
            out.reply,
            json!({"input": null, "argv": [], "name": "__main__"})
        );
    });
}

#[test]
fn click_style_arguments_pass_through_unchanged() {
    each("click_style_arguments_pass_through_unchanged", |env| {
        let args = [
            "--key",
            "value with spaces",
            "--quote",
            "it's \"quoted\" $HOME `x` ;|&",
            "--unicode",
            "ünïcødé 🐍",
            "-n",
            "-5",
            "--",
            "--looks-like-a-flag",
            "",
        ];
        let out = env.script("echo").args(args).run::<Value>().unwrap();
        assert_eq!(out.reply["argv"], json!(args));
    });
}

#[test]
fn prints_and_fd_1_writes_do_not_corrupt_the_channel() {
    each("prints_and_fd_1_writes_do_not_corrupt_the_channel", |env| {
        let out = env
            .script("chatty")
            .capture_output()
            .run::<Value>()
            .unwrap();
        assert_eq!(out.reply, json!({"ok": true, "text": "héllo ✓"}));
        let output = out.output.unwrap();
        for line in [
            "print before reply",
            "sys.stdout.write before reply",
            "os.write fd 1 before reply",
            "stderr before reply",
            "print after reply",
            "os.write fd 1 after reply",
        ] {
            assert!(output.contains(line), "{line:?} missing from {output:?}");
        }
    });
}

#[test]
fn an_exception_comes_back_with_its_traceback() {
    each("an_exception_comes_back_with_its_traceback", |env| {
        let mut messages = Vec::new();
        let err = env
            .script("fail")
            .input(&-4)
            .capture_output()
            .on_message(|m| messages.push(m))
            .run::<Value>()
            .unwrap_err();
        let Error::Python { error, .. } = &err else {
            panic!("wrong error: {err}")
        };
        assert_eq!(error.type_name, "ValueError");
        assert_eq!(error.message, "value must be positive, got -4");
        assert!(
            error
                .traceback
                .starts_with("Traceback (most recent call last):"),
            "{}",
            error.traceback
        );
        for part in [
            "fail.py",
            "compute_ratio",
            "check_positive",
            "ValueError: value must be positive",
        ] {
            assert!(
                error.traceback.contains(part),
                "{part:?} missing from {}",
                error.traceback
            );
        }
        // The runtime's own frames are left out.
        assert!(
            !error.traceback.contains("_script.py"),
            "{}",
            error.traceback
        );
        assert!(
            err.to_string().contains("script `fail` raised ValueError"),
            "{err}"
        );
        assert_eq!(messages, vec![json!("about to fail")]);
    });
}

#[test]
fn sys_exit_status_is_reported() {
    each("sys_exit_status_is_reported", |env| {
        let err = env
            .script("exit3")
            .capture_output()
            .run::<Value>()
            .unwrap_err();
        let Error::ScriptExit { status, stderr, .. } = &err else {
            panic!("wrong error: {err}")
        };
        assert_eq!(status.code(), Some(3));
        assert!(stderr.contains("exiting with 3"), "{stderr:?}");
    });
}

#[test]
fn ending_without_a_reply_is_its_own_error() {
    each("ending_without_a_reply_is_its_own_error", |env| {
        let err = env
            .script("noreply")
            .capture_output()
            .run::<Value>()
            .unwrap_err();
        assert!(matches!(err, Error::NoReply { .. }), "wrong error: {err}");
    });
}

#[test]
fn a_set_is_refused_at_reply_naming_its_type() {
    each("a_set_is_refused_at_reply_naming_its_type", |env| {
        let err = env
            .script("unencodable")
            .capture_output()
            .run::<Value>()
            .unwrap_err();
        let Error::Python { error, .. } = &err else {
            panic!("wrong error: {err}")
        };
        assert_eq!(error.type_name, "TypeError");
        assert!(error.message.contains("set"), "{}", error.message);
        assert!(
            error.traceback.contains("unencodable.py"),
            "{}",
            error.traceback
        );
    });
}

#[test]
fn timeout_kills_the_script() {
    each("timeout_kills_the_script", |env| {
        let start = Instant::now();
        let err = env
            .script("sleep")
            .input(&30)
            .timeout(Duration::from_millis(700))
            .run::<Value>()
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "wrong error: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        // A script that finishes in time is not affected.
        let out = env
            .script("sleep")
            .input(&0)
            .timeout(Duration::from_secs(20))
            .run::<String>();
        assert_eq!(out.unwrap().reply, "woke up");
    });
}

#[test]
fn progress_messages_arrive_in_order_while_the_script_runs() {
    each(
        "progress_messages_arrive_in_order_while_the_script_runs",
        |env| {
            let mut received = Vec::new();
            let out = env
                .script("progress")
                .input(&1.5)
                .on_message(|m| received.push((m, Instant::now())))
                .run::<Value>()
                .unwrap();
            let done = Instant::now();
            assert_eq!(out.reply, json!({"sent": 20}));
            let steps: Vec<Value> = received.iter().map(|(m, _)| m["step"].clone()).collect();
            assert_eq!(steps, (0..20).map(Value::from).collect::<Vec<_>>());
            // The script sleeps 1.5 s between its last message and its reply: every message
            // was delivered while it was still running.
            for (m, at) in &received {
                assert!(done - *at > Duration::from_millis(700), "{m} arrived late");
            }
        },
    );
}

#[test]
fn oversized_and_malformed_frames_kill_the_child() {
    each("oversized_and_malformed_frames_kill_the_child", |env| {
        for script in ["garbage", "malformed"] {
            let start = Instant::now();
            let err = env
                .script(script)
                .capture_output()
                .run::<Value>()
                .unwrap_err();
            assert!(
                matches!(err, Error::Protocol { .. }),
                "{script}: wrong error: {err}"
            );
            // The script sleeps 60 s after the bad frame: it was killed, not waited for.
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{script}: {:?}",
                start.elapsed()
            );
        }
    });
}

#[test]
fn the_frame_cap_is_configurable_on_both_sides() {
    each("the_frame_cap_is_configurable_on_both_sides", |env| {
        // Python refuses to send a reply over the cap, in the script (a Python error).
        let err = env
            .script("big_reply")
            .input(&5000)
            .max_frame(1000)
            .capture_output()
            .run::<String>();
        let err = err.unwrap_err();
        let Error::Python { error, .. } = &err else {
            panic!("wrong error: {err}")
        };
        assert!(error.message.contains("frame limit"), "{}", error.message);
        // Rust refuses to send input over the cap.
        let err = env
            .script("echo")
            .input(&"y".repeat(5000))
            .max_frame(1000)
            .run::<Value>();
        assert!(matches!(err, Err(Error::FrameTooLarge { .. })), "{err:?}");
        // Raised, the cap lets 70 MB through.
        let out = env
            .script("big_reply")
            .input(&70_000_000)
            .max_frame(80 << 20)
            .run::<String>();
        assert_eq!(out.unwrap().reply.len(), 70_000_000);
    });
}

#[test]
fn a_missing_script_is_named() {
    let env = env_for(&testkit::pyenv::host_python());
    let err = env.script("does_not_exist").run::<Value>().unwrap_err();
    assert!(matches!(err, Error::ScriptNotFound { .. }), "{err}");
    assert!(err.to_string().contains("does_not_exist.py"), "{err}");
}

#[test]
fn bytes_in_a_reply_travel_as_binary_frames_both_ways() {
    #[derive(serde::Serialize)]
    struct Input {
        blob: pybundle_runtime::Buffer,
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        blob: pybundle_runtime::Buffer,
        made: pybundle_runtime::Buffer,
        view: pybundle_runtime::Buffer,
        array: pybundle_runtime::Buffer,
        input_type: String,
    }
    each(
        "bytes_in_a_reply_travel_as_binary_frames_both_ways",
        |env| {
            let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
            let mut heads = Vec::new();
            let out = env
                .script("bytes_reply")
                .input(&Input {
                    blob: pybundle_runtime::Buffer::new(blob.clone()),
                })
                .on_message(|m| heads.push(m))
                .run::<Reply>()
                .unwrap();
            let reply = out.reply;
            assert_eq!(reply.input_type, "bytes");
            assert_eq!(reply.blob.len(), blob.len() + 2);
            assert_eq!(&reply.blob[..blob.len()], &blob[..]);
            assert_eq!(&reply.blob[blob.len()..], b"\x00\xff");
            assert_eq!(reply.made[..], (0..=255u8).collect::<Vec<_>>());
            assert_eq!(
                (&reply.view[..], &reply.array[..]),
                (&b"view"[..], &b"array"[..])
            );
            // Outside a Buffer a callback sees the reference to the frame it arrived in.
            assert_eq!(heads.len(), 1);
        },
    );
}

/// `env.command("name")` runs `scripts/name.py` itself, with no protocol: the environment's
/// interpreter in isolated mode, `PATH` and `CONDA_PREFIX` set and the activation variables
/// given, as `env.python()` does, with the caller's arguments after the script.
#[test]
fn command_runs_the_script_file_with_the_interpreter_and_the_activation_variables() {
    let py = testkit::pyenv::host_python();
    let env = env_for(&py).with_var("PYBUNDLE_TEST_ACTIVATION", "from the manifest");
    let out = env
        .command("plain")
        .unwrap()
        .args(["two words", "--flag"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen,
        json!({
            "executable": py.interpreter,
            "file": scripts_dir().join("plain.py"),
            "name": "__main__",
            "argv": ["two words", "--flag"],
            "isolated": 1,
            "conda_prefix": py.prefix,
            "path_first": py.prefix.join("bin"),
            "activation": "from the manifest",
            "pybundle_imported": false,
        })
    );
}

/// The one `.pyc` the runner wrote for `name` in `dir/__pycache__`.
fn cached_bytecode(dir: &std::path::Path, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir.join("__pycache__"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            file.starts_with(&format!("{name}.")) && file.ends_with(".pyc")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// A script's bytecode is kept beside it as a checked-hash `.pyc` (PEP 552) and used only
/// while the source hashes the same: it is really loaded (a planted `.pyc` matching the source
/// runs instead of the source), an edit that keeps the size and the modification time is seen
/// (a timestamp check would miss it), and a damaged file is replaced.
#[test]
fn a_scripts_bytecode_is_reused_only_while_its_source_hashes_the_same() {
    for py in pythons("a_scripts_bytecode_is_reused_only_while_its_source_hashes_the_same") {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("edit.py");
        let env = Environment::from_parts(&py.prefix, &py.interpreter, dir.path(), lib_dir());
        let reply = || env.script("edit").run::<String>().unwrap().reply;
        std::fs::write(&script, "import pybundle\npybundle.reply('aaaa')\n").unwrap();
        let written = std::fs::metadata(&script).unwrap().modified().unwrap();
        assert_eq!(reply(), "aaaa", "{}", py.label);
        let pyc = cached_bytecode(dir.path(), "edit");
        let bytes = std::fs::read(&pyc).unwrap();
        assert_eq!(bytes[4..8], 3u32.to_le_bytes(), "checked-hash flags");

        // Same size, same modification time, other text: the hash sees it.
        std::fs::write(&script, "import pybundle\npybundle.reply('bbbb')\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&script)
            .unwrap()
            .set_modified(written)
            .unwrap();
        assert_eq!(reply(), "bbbb", "{}", py.label);

        // Bytecode of other code under the current source's header runs: the cache is used.
        let plant = format!(
            "import marshal, _imp, importlib.util as u\n\
             src = open({script:?}, 'rb').read()\n\
             code = compile(\"import pybundle\\npybundle.reply('cccc')\\n\", {script:?}, 'exec')\n\
             key = int.from_bytes(u.MAGIC_NUMBER, 'little')\n\
             head = u.MAGIC_NUMBER + (3).to_bytes(4, 'little') + _imp.source_hash(key, src)\n\
             open({pyc:?}, 'wb').write(head + marshal.dumps(code))\n",
            script = script.to_str().unwrap(),
            pyc = pyc.to_str().unwrap(),
        );
        let status = std::process::Command::new(&py.interpreter)
            .args(["-I", "-c", &plant])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            reply(),
            "cccc",
            "{}: the planted bytecode did not run",
            py.label
        );

        // A damaged file behind a valid header: compiled again, and the file rewritten.
        let mut damaged = std::fs::read(&pyc).unwrap()[..16].to_vec();
        damaged.extend_from_slice(b"not marshal data");
        std::fs::write(&pyc, &damaged).unwrap();
        assert_eq!(reply(), "bbbb", "{}", py.label);
        assert_ne!(std::fs::read(&pyc).unwrap(), damaged, "{}", py.label);
    }
}

/// README: `PYBUNDLE_EXTRA_PYTHONS` names "more interpreters (colon-separated paths) the
/// protocol tests also run on". A protocol test, run again in a child process (this test
/// binary) with the variable naming a wrapper of the host's interpreter, runs it: the wrapper
/// records each start, and the test names it among the interpreters it ran on.
#[test]
fn extra_pythons_are_run_by_the_protocol_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let bin = dir.join("extra/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let starts = dir.join("starts.log");
    let wrapper = bin.join("python3");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho started >> '{}'\nexec '{}' \"$@\"\n",
            starts.display(),
            testkit::pyenv::host_python().interpreter.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // An empty entry, as a trailing `:` leaves, is no interpreter.
    let extra = std::env::join_paths(["".as_ref(), wrapper.as_path()]).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "script::no_input_is_none", "--nocapture"])
        .env("PYBUNDLE_EXTRA_PYTHONS", extra)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let ran: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("no_input_is_none: "))
        .collect();
    let extras: Vec<&&str> = ran.iter().filter(|l| l.starts_with("extra ")).collect();
    assert_eq!(
        extras,
        [&format!("extra python {}", wrapper.display()).as_str()],
        "{ran:?}"
    );
    assert!(ran.iter().any(|l| l.starts_with("host ")), "{ran:?}");
    let started = std::fs::read_to_string(&starts).unwrap_or_default();
    assert!(!started.is_empty(), "the extra interpreter never started");
}
