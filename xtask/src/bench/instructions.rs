//! Warm start counted in instructions: `valgrind --tool=callgrind` over the hello program
//! (and every process it starts) and over a bare interpreter start. Unlike the times, a count
//! does not move with what else the machine runs, so it shows the runtime's own warm-start cost
//! on a shared machine too.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::measure::{row, warm_cache};
use super::{Row, Setup, Topic};

/// The hello program's warm run and `python -I -c pass`, in millions of instructions.
pub fn warm(s: &Setup) -> Result<Topic> {
    let cache = warm_cache(s)?;
    let hello_env = [("PYBUNDLE_CACHE_DIR", cache.as_os_str())];
    let rows = match counted(s, &hello_env) {
        Ok((hello, bare)) => vec![
            row(
                "hello, warm run (ours: the program and its python)",
                Some("hello_warm_minstr"),
                "M instr",
                &[hello],
            ),
            row(
                "`python -I -c pass` (bare interpreter start)",
                Some("python_bare_minstr"),
                "M instr",
                &[bare],
            ),
        ],
        Err(e) => vec![
            empty("hello, warm run (ours)", &e),
            empty("`python -I -c pass`", &e),
        ],
    };
    Ok(Topic {
        title: "Warm start, in instructions".into(),
        compare: true,
        about: "The hello example's warm run (after one untimed run: its cache and bytecode \
                are in place) and a bare `python -I -c pass` of the same interpreter, each run \
                once under `valgrind --tool=callgrind --trace-children=yes`: the instructions \
                of every process summed. The difference is what the runtime adds to a start \
                (the program, the cache check, the runner's imports, the reply); it is the same \
                on a loaded machine as on an idle one."
            .into(),
        rows,
    })
}

fn empty(what: &str, why: &anyhow::Error) -> Row {
    let mut r = row(what, None, "M instr", &[]);
    r.note = format!("{why:#}");
    r
}

/// (hello, bare python), each in millions of instructions.
fn counted(s: &Setup, hello_env: &[(&str, &OsStr)]) -> Result<(f64, f64)> {
    let out = s.work.join("callgrind");
    fs_err::create_dir_all(&out)?;
    // The untimed run: the cache is extracted and the scripts' bytecode written.
    let warmup = Command::new(&s.hello)
        .arg("bench")
        .envs(hello_env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .context("starting hello")?;
    if !warmup.status.success() {
        bail!("hello failed: {}", String::from_utf8_lossy(&warmup.stderr));
    }
    let hello = callgrind(&out, &s.hello, &["bench".as_ref()], hello_env)?;
    let bare = callgrind(
        &out,
        &s.python(),
        &["-I", "-c", "pass"].map(OsStr::new),
        &[],
    )?;
    Ok((hello, bare))
}

/// Millions of instructions `program args` and its children ran, by callgrind's
/// "Collected" lines (one per process).
fn callgrind(out: &Path, program: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Result<f64> {
    let result = Command::new("valgrind")
        .args(["--tool=callgrind", "--trace-children=yes"])
        .arg(format!(
            "--callgrind-out-file={}/callgrind.%p",
            out.display()
        ))
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .context("cannot start `valgrind` (install Debian's valgrind package)")?;
    let stderr = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() {
        bail!(
            "valgrind {} failed ({}): {}",
            program.display(),
            result.status,
            stderr.trim()
        );
    }
    let total = collected(&stderr);
    if total == 0 {
        bail!(
            "valgrind printed no `Collected` line for {}",
            program.display()
        );
    }
    Ok(total as f64 / 1e6)
}

/// The sum of callgrind's `==PID== Collected : N` lines.
fn collected(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.split_once("Collected :"))
        .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn collected_sums_every_process() {
        let err = "==1== Callgrind\n==12== Collected : 1480545\n==13== Collected : 40729974\n";
        assert_eq!(super::collected(err), 42_210_519);
        assert_eq!(super::collected("no counts"), 0);
    }
}
