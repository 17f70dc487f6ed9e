//! The conformance test: the real Python half (the host's `python3` running the shipped
//! `pybundle` package through the runners, started as the runtime starts them) is sent every
//! message the Rust half can send, and sends every message the Rust half can receive; each is
//! encoded and decoded by the crate's own code, and the sets are compared with the table. Also
//! here: the check that no protocol JSON is built outside the protocol modules.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout};

use super::table::{self, Sender, MESSAGES};
use super::{argv, write_frame, Kind, Limits, Message, Outgoing, Reader};
use crate::buffer::{self, Buffer};
use crate::child::{self, ChildGuard};
use crate::Environment;

const MAX: usize = 1 << 20;
/// No binary frames.
const NONE: &[Vec<u8>] = &[];

struct Peer {
    guard: ChildGuard,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    reader: Reader,
}

impl Peer {
    fn start(env: &Environment, layout: &table::Argv, args: Vec<OsString>) -> Peer {
        let mut guard =
            child::spawn_runner(env.python(), env.interpreter(), layout, args, true).unwrap();
        let stdin = guard.child().stdin.take();
        let stdout = guard.child().stdout.take().unwrap();
        // stderr is piped and never read here: the runners write little to it.
        Peer {
            guard,
            stdin,
            stdout,
            reader: Reader::new(Limits {
                max_frame: MAX,
                max_message: MAX * 4,
            }),
        }
    }

    fn send<F: AsRef<[u8]>>(
        &mut self,
        msg: Outgoing<'_>,
        frames: &[F],
        sent: &mut BTreeSet<&'static str>,
    ) {
        let stdin = self.stdin.as_mut().unwrap();
        write_frame(stdin, &msg.encode(), MAX).unwrap();
        for frame in frames {
            write_frame(stdin, frame.as_ref(), MAX).unwrap();
        }
        sent.insert(msg.name());
    }

    fn recv(&mut self, seen: &mut BTreeSet<&'static str>) -> Option<Message> {
        loop {
            if let Some(msg) = self.reader.next().unwrap() {
                seen.insert(msg.kind.name());
                return Some(msg);
            }
            if self.reader.read_from(&self.stdout).unwrap() == 0 {
                assert_eq!(self.reader.at_end(), None);
                return None;
            }
        }
    }

    fn expect(&mut self, kind: Kind, seen: &mut BTreeSet<&'static str>) -> Message {
        let msg = self
            .recv(seen)
            .unwrap_or_else(|| panic!("no `{}`", kind.name()));
        assert_eq!(msg.kind, kind, "{:?}", String::from_utf8_lossy(msg.data()));
        msg
    }

    fn exit_code(mut self) -> Option<i32> {
        drop(self.stdin.take());
        self.guard.wait().unwrap().code()
    }
}

fn setup(modules: &[(&str, &str)]) -> (tempfile::TempDir, Environment) {
    let dir = tempfile::tempdir().unwrap();
    let (scripts, lib) = (dir.path().join("scripts"), dir.path().join("lib"));
    std::fs::create_dir_all(&scripts).unwrap();
    crate::PYTHON_PACKAGE.extract(&lib).unwrap();
    for (name, source) in modules {
        std::fs::write(scripts.join(format!("{name}.py")), source).unwrap();
    }
    let py = testkit::pyenv::host_python();
    let env = Environment::from_parts(&py.prefix, &py.interpreter, scripts, lib);
    (dir, env)
}

fn worker_args(env: &Environment, modules: &[&str]) -> Vec<OsString> {
    argv(&table::WORKER_ARGV, |name| match name {
        "lib" => vec![env.lib_dir().into()],
        "max_frame" => vec![MAX.to_string().into()],
        "threads" => vec!["2".into()],
        "scripts" => vec![env.scripts_dir().into()],
        _ => modules.iter().map(Into::into).collect(),
    })
}

fn script_args(env: &Environment, script: &Path) -> Vec<OsString> {
    argv(&table::SCRIPT_ARGV, |name| match name {
        "lib" => vec![env.lib_dir().into()],
        "max_frame" => vec![MAX.to_string().into()],
        "script" => vec![script.into()],
        _ => vec!["--flag".into()],
    })
}

const CONF: &str = r#"
import logging
import time
import pybundle

_TAG = None


def _setup(tag, blob):
    global _TAG
    _TAG = tag + blob.decode()


def echo(*args, **kwargs):
    pybundle.send({"got": list(args), "blob": args[-1]})
    logging.getLogger("conf").info("echo %d", args[0])
    logging.getLogger("conf").debug("below the level asked for")
    return {"args": list(args), "kwargs": kwargs, "blob": args[-1] + b"!", "tag": _TAG}

def boom():
    raise ValueError("boom")

def wait():
    while not pybundle.cancelled():
        time.sleep(0.005)
    return "late"
"#;

#[test]
fn both_halves_exchange_every_message_of_the_table() {
    let (_dir, env) = setup(&[
        ("conf", CONF),
        ("broken", "raise ImportError('broken on purpose')\n"),
        (
            "replies_bytes",
            "import pybundle\nblob = pybundle.input()['blob']\npybundle.send(blob[:2])\n\
             pybundle.reply({'blob': blob + b'?', 'n': len(blob)})\n",
        ),
        ("raises", "raise KeyError('k')\n"),
    ]);
    let (mut sent, mut seen) = (BTreeSet::new(), BTreeSet::new());

    // A worker: start, ready, a call with positional and keyword arguments and a buffer each
    // way (with a progress message), an exception, a ping, a cancel, shutdown.
    let mut w = Peer::start(&env, &table::WORKER_ARGV, worker_args(&env, &["conf"]));
    // The init call, with a buffer, runs before `ready`.
    let init = super::Init {
        func: "conf._setup",
        args: br#"["set:",{"$buffer":0}]"#,
        kwargs: None,
    };
    let start = Outgoing::Start {
        log_level: Some(20),
        init: Some(init),
        input: None,
        buffers: 1,
    };
    w.send(start, &[b"up".to_vec()], &mut sent);
    let ready = w.expect(Kind::Ready, &mut seen);
    assert_eq!(ready.pid, Some(w.guard.pid()));
    let (args, frames) =
        buffer::to_json_with_buffers(&(1, "é", Buffer::new(b"\x00\xffbytes".to_vec()))).unwrap();
    let call = Outgoing::Call {
        id: 1,
        func: "conf.echo",
        args: &args,
        kwargs: Some(br#"{"scale":2}"#),
        buffers: frames.len(),
    };
    w.send(call, &frames, &mut sent);
    let progress = w.expect(Kind::Message, &mut seen);
    assert_eq!(progress.id, Some(1));
    let value: (serde_json::Value, Buffer) = {
        #[derive(serde::Deserialize)]
        struct Progress {
            got: serde_json::Value,
            blob: Buffer,
        }
        let p: Progress = buffer::from_payload(progress.into_payload()).unwrap();
        (p.got, p.blob)
    };
    assert_eq!(value.0[1], "é");
    assert_eq!(&value.1[..], b"\x00\xffbytes");
    let log = w.expect(Kind::Log, &mut seen);
    let record = log.log.as_ref().unwrap();
    assert_eq!((log.id, record.level), (Some(1), 20));
    assert_eq!(
        (record.logger.as_str(), record.message.as_str()),
        ("conf", "echo 1")
    );
    let result = w.expect(Kind::Result, &mut seen);
    assert_eq!(result.id, Some(1));
    #[derive(serde::Deserialize)]
    struct Echoed {
        args: (i64, String, Buffer),
        kwargs: serde_json::Value,
        blob: Buffer,
        tag: String,
    }
    let echoed: Echoed = buffer::from_payload(result.into_payload()).unwrap();
    assert_eq!((echoed.args.0, echoed.args.1.as_str()), (1, "é"));
    assert_eq!(&echoed.args.2[..], b"\x00\xffbytes");
    assert_eq!(echoed.kwargs, serde_json::json!({"scale": 2}));
    assert_eq!(&echoed.blob[..], b"\x00\xffbytes!");
    assert_eq!(echoed.tag, "set:up");

    let boom = Outgoing::Call {
        id: 2,
        func: "conf.boom",
        args: b"[]",
        kwargs: None,
        buffers: 0,
    };
    w.send(boom, NONE, &mut sent);
    let error = w.expect(Kind::Error, &mut seen);
    assert_eq!(error.id, Some(2));
    let error = error.error.unwrap();
    assert_eq!(
        (error.type_name.as_str(), error.message.as_str()),
        ("ValueError", "boom")
    );
    assert!(error.traceback.contains("conf.py"), "{}", error.traceback);

    w.send(Outgoing::Ping { id: 3 }, NONE, &mut sent);
    assert_eq!(w.expect(Kind::Pong, &mut seen).id, Some(3));

    let wait = Outgoing::Call {
        id: 4,
        func: "conf.wait",
        args: b"[]",
        kwargs: None,
        buffers: 0,
    };
    w.send(wait, NONE, &mut sent);
    w.send(Outgoing::Cancel { id: 4 }, NONE, &mut sent);
    w.send(Outgoing::Ping { id: 5 }, NONE, &mut sent);
    // A cancelled call is answered by `finished`, not its result; the pong may come first.
    let mut got: Vec<(Kind, Option<u64>)> = (0..2)
        .map(|_| w.recv(&mut seen).map(|m| (m.kind, m.id)).unwrap())
        .collect();
    got.sort_by_key(|(k, _)| k.name());
    assert_eq!(got, [(Kind::Finished, Some(4)), (Kind::Pong, Some(5))]);
    w.send(Outgoing::Shutdown, NONE, &mut sent);
    assert!(w.recv(&mut seen).is_none(), "output after shutdown");
    assert_eq!(w.exit_code(), Some(0));

    // A worker whose import fails.
    let mut w = Peer::start(&env, &table::WORKER_ARGV, worker_args(&env, &["broken"]));
    w.send(
        Outgoing::Start {
            log_level: None,
            init: None,
            input: None,
            buffers: 0,
        },
        NONE,
        &mut sent,
    );
    let fatal = w.expect(Kind::Fatal, &mut seen).error.unwrap();
    assert_eq!(fatal.type_name, "ImportError");
    assert_ne!(w.exit_code(), Some(0));

    // Scripts: bytes in the input, a progress message and the reply; an exception.
    let script = env.scripts_dir().join("replies_bytes.py");
    let mut s = Peer::start(&env, &table::SCRIPT_ARGV, script_args(&env, &script));
    #[derive(serde::Serialize)]
    struct Input {
        blob: Buffer,
    }
    let (input, frames) = buffer::to_json_with_buffers(&Input {
        blob: Buffer::new(b"abc".to_vec()),
    })
    .unwrap();
    let start = Outgoing::Start {
        log_level: None,
        init: None,
        input: Some(&input),
        buffers: frames.len(),
    };
    s.send(start, &frames, &mut sent);
    let progress: Buffer =
        buffer::from_payload(s.expect(Kind::Message, &mut seen).into_payload()).unwrap();
    assert_eq!(&progress[..], b"ab");
    #[derive(serde::Deserialize)]
    struct Reply {
        blob: Buffer,
        n: usize,
    }
    let reply: Reply =
        buffer::from_payload(s.expect(Kind::Reply, &mut seen).into_payload()).unwrap();
    assert_eq!((&reply.blob[..], reply.n), (&b"abc?"[..], 3));
    assert_eq!(s.exit_code(), Some(0));
    let script = env.scripts_dir().join("raises.py");
    let mut s = Peer::start(&env, &table::SCRIPT_ARGV, script_args(&env, &script));
    s.send(
        Outgoing::Start {
            log_level: None,
            init: None,
            input: None,
            buffers: 0,
        },
        NONE,
        &mut sent,
    );
    let error = s.expect(Kind::Error, &mut seen);
    assert_eq!(
        (error.id, error.error.unwrap().type_name.as_str()),
        (None, "KeyError")
    );
    assert_eq!(s.exit_code(), Some(1));

    let of = |sender| -> BTreeSet<&str> {
        MESSAGES
            .iter()
            .filter(|m| m.sender == sender)
            .map(|m| m.name)
            .collect()
    };
    assert_eq!(sent, of(Sender::Runtime), "runtime messages exercised");
    assert_eq!(seen, of(Sender::Python), "Python messages exercised");
}

/// Source files of a directory tree with the given extension.
fn sources(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

#[test]
fn no_protocol_json_is_built_outside_the_protocol_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    let mut rust = Vec::new();
    sources(&root.join("src"), "rs", &mut rust);
    for path in rust {
        if path.starts_with(root.join("src/protocol")) || path.ends_with("src/protocol.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Test modules may craft raw frames on purpose (to feed the decoder).
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        for (i, line) in code.lines().enumerate() {
            if line.contains(r#""type""#) || line.contains(r#"\"type\""#) {
                offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
            }
        }
    }
    let mut python = Vec::new();
    sources(&root.join("python"), "py", &mut python);
    for path in python {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The generated message module, the channel (framing, the error record) and the
        // array format.
        if ["_protocol.py", "_channel.py", "_arrays.py"].contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let building = [
                "\"type\":",
                "'type':",
                "(type=",
                " type=",
                "\"buffers\":",
                "\"id\":",
            ];
            if building.iter().any(|p| line.contains(p)) {
                offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "protocol JSON built by hand:\n{}",
        offenders.join("\n")
    );
}
