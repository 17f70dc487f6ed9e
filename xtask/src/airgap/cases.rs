//! The cases run on the bare machine, each printed as it runs; a failure names its case and
//! shows the program's stdout and stderr.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use super::machine::{Machine, Run, USER};
use super::root::{FORBIDDEN, SYSTEM_LIBRARIES};
use crate::tools;

/// Home of the unprivileged user.
const HOME: &str = "/home/user";
/// A home the user cannot write to (no cache can be made under it).
const READ_ONLY_HOME: &str = "/home/readonly";
/// The copy of hello in a path with spaces.
const SPACED: &str = "/opt/air gap/hello copy";
/// The test hook counting extractions (see pybundle-runtime's cache module).
const EXTRACT_LOG_ENV: &str = "PYBUNDLE_TEST_EXTRACT_LOG";
/// Extension modules allowed to lack a system library (see root::SYSTEM_LIBRARIES).
const UNSUPPORTED_MODULES: &[&str] = &["_tkinter."];

/// Prints and counts the cases.
struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    fn case(&mut self, name: &str, body: impl FnOnce() -> Result<String>) {
        eprintln!("xtask: airgap: case: {name} ...");
        match body() {
            Ok(detail) => {
                eprintln!("xtask: airgap: ok: {name}: {detail}");
                self.passed += 1;
            }
            Err(err) => {
                eprintln!("xtask: airgap: FAILED: {name}: {err:#}");
                self.failed.push(name.to_owned());
            }
        }
    }
}

/// Sets the machine up for `binaries` and runs every case; returns how many passed and the
/// names of those that failed.
pub fn run_all(machine: &Machine, binaries: &[(String, PathBuf)]) -> Result<(usize, Vec<String>)> {
    install(machine, binaries)?;
    let has = |name: &str| binaries.iter().any(|(n, _)| n == name);
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };

    report.case("the machine is bare: no network, no python", || {
        bare(machine)
    });
    if has("hello") {
        hello_cases(machine, &mut report);
    }
    if has("outliers") {
        report.case(
            "outliers prints [7, 113, 835] (numpy in the bundle)",
            || {
                let out = machine
                    .run(&Run::root(&["/opt/airgap/outliers"]))?
                    .expect_success("outliers")?
                    .expect_stdout("[7, 113, 835]")?;
                Ok(format!(
                    "{} in {:.0} ms (first run)",
                    out.stdout.trim(),
                    out.ms()
                ))
            },
        );
    }
    if has("service") {
        report.case(
            "service answers 400 HTTP requests through its worker pool",
            || {
                // Its self-test: serve on 127.0.0.1, 400 requests from 8 clients, check each answer.
                let out = machine
                    .run(&Run::root(&["/opt/airgap/service", "400", "8"]))?
                    .expect_success("service")?
                    .expect_stdout("all answers correct")?;
                Ok(format!("{:.0} ms: {}", out.ms(), one_line(&out.stdout)))
            },
        );
    }
    for name in ["pyreport", "pyreport-offline"]
        .into_iter()
        .filter(|n| has(n))
    {
        report.case(
            &format!("{name}: its own package, a console script and click from the bundle"),
            || {
                let binary = format!("/opt/airgap/{name}");
                let argv = [binary.as_str(), "to", "be", "or", "not", "to", "be"];
                let mut detail = Vec::new();
                for run in [Run::root(&argv), Run::user(&argv, HOME)] {
                    let out = machine
                        .run(&run)?
                        .expect_success(name)?
                        .expect_stdout(
                            "6 words, 4 distinct, most common Some(\"to\") (style plain)",
                        )?
                        .expect_stdout("console script: pyreport, version 0.1.0")?
                        .expect_stdout("/_pybundle_local/pyreport/pyreport/__init__.py")?
                        .expect_stdout("click 8.1.7")?;
                    detail.push(format!("{:.0} ms", out.ms()));
                }
                Ok(format!(
                    "root and user, first runs in {}",
                    detail.join(" and ")
                ))
            },
        );
    }
    report.case(
        "every library of the extracted environments resolves on the machine",
        || libraries(machine),
    );
    report.case(
        "the programs link only glibc and libgcc_s, GLIBC_2.34 at most",
        || linkage(binaries),
    );
    Ok((report.passed, report.failed))
}

/// The shared libraries a program may need (Debian's `libc6` and `libgcc-s1`).
const PROGRAM_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libgcc_s.so.1",
    "libm.so.6",
    "ld-linux-x86-64.so.2",
];

/// The newest glibc symbol version a program may ask for (what README promises).
const MAX_GLIBC: (u32, u32) = (2, 34);

/// `readelf` on each built program: its NEEDED libraries and the newest `GLIBC_x.y` it asks for.
fn linkage(binaries: &[(String, PathBuf)]) -> Result<String> {
    let mut detail = Vec::new();
    for (name, binary) in binaries {
        let dynamic = tools::output(Command::new("readelf").arg("-dW").arg(binary), "readelf -d")?;
        let needed: Vec<&str> = dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split_once('[')?.1.split_once(']').map(|(lib, _)| lib))
            .collect();
        if let Some(other) = needed.iter().find(|lib| !PROGRAM_LIBRARIES.contains(lib)) {
            bail!(
                "{name} needs {other} (all: {needed:?}); README promises glibc and libgcc_s only"
            );
        }
        let versions = tools::output(Command::new("readelf").arg("-VW").arg(binary), "readelf -V")?;
        let newest = versions
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .filter_map(|w| w.strip_prefix("GLIBC_"))
            .filter_map(|v| {
                let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
                Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
            })
            .max()
            .context("no GLIBC_ symbol versions")?;
        if newest > MAX_GLIBC {
            bail!(
                "{name} asks for GLIBC_{}.{}, newer than the GLIBC_{}.{} README promises",
                newest.0,
                newest.1,
                MAX_GLIBC.0,
                MAX_GLIBC.1
            );
        }
        detail.push(format!("{name}: GLIBC_{}.{}", newest.0, newest.1));
    }
    Ok(format!(
        "{} ({})",
        PROGRAM_LIBRARIES.join(", "),
        detail.join(", ")
    ))
}

/// Copies the binaries in and makes the users' homes.
fn install(machine: &Machine, binaries: &[(String, PathBuf)]) -> Result<()> {
    let opt = machine.host_path("/opt/airgap");
    fs::create_dir_all(&opt)?;
    for (name, binary) in binaries {
        fs::copy(binary, opt.join(name))?;
    }
    if let Some((_, hello)) = binaries.iter().find(|(n, _)| n == "hello") {
        let spaced = machine.host_path(SPACED);
        fs::create_dir_all(spaced.parent().context("spaced path has a parent")?)?;
        fs::copy(hello, &spaced)?;
    }
    for (home, mode) in [(HOME, 0o755), (READ_ONLY_HOME, 0o555)] {
        let dir = machine.host_path(home);
        fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(USER), Some(USER))
            .with_context(|| format!("chown {}", dir.display()))?;
        fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn bare(machine: &Machine) -> Result<String> {
    let probe = format!(
        "for p in {}; do command -v $p && exit 1; done; cat /proc/net/dev",
        FORBIDDEN.join(" ")
    );
    let out = machine.run(&Run::root(&["/bin/sh", "-c", &probe]))?;
    if !out.success {
        bail!("a forbidden program is on PATH\n{}", out.output());
    }
    let interfaces: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .filter(|name| !name.contains('|'))
        .collect();
    if interfaces != ["lo"] {
        bail!(
            "expected only the loopback interface, found {interfaces:?}\n{}",
            out.output()
        );
    }
    Ok(format!(
        "no {} on PATH; network interfaces: {interfaces:?}",
        FORBIDDEN.join("/")
    ))
}

fn hello_cases(machine: &Machine, report: &mut Report) {
    let hello = "/opt/airgap/hello";
    let log = "/tmp/extractions-root.log";
    let as_root = Run::root(&[hello, "airgap"]).env(EXTRACT_LOG_ENV, log);
    let mut first_ms = 0.0;
    report.case("hello as root (first run extracts)", || {
        let out = machine
            .run(&as_root)?
            .expect_success("hello")?
            .expect_stdout("hello, airgap")?
            .expect_stdout("/root/.cache/pybundle/hello-")?;
        first_ms = out.ms();
        Ok(format!("{:.0} ms: {}", out.ms(), one_line(&out.stdout)))
    });
    report.case("hello again: no second extraction, same directory", || {
        let dir = bundle_dir(machine, "/root/.cache/pybundle", "hello")?;
        let before = machine.inode(&dir)?;
        let out = machine
            .run(&as_root)?
            .expect_success("hello (second run)")?
            .expect_stdout("hello, airgap")?;
        let after = machine.inode(&dir)?;
        let extractions = fs::read_to_string(machine.host_path(log))?.lines().count();
        if before != after || extractions != 1 {
            bail!(
                "{dir}: inode {before} -> {after}, {extractions} extractions logged (want 1)\n{}",
                out.output()
            );
        }
        Ok(format!(
            "first run {first_ms:.0} ms, second {:.0} ms; {dir} inode {after} unchanged, 1 \
             extraction",
            out.ms()
        ))
    });
    report.case("hello as uid 1000, default cache under its home", || {
        let out = machine
            .run(&Run::user(&[hello, "user"], HOME))?
            .expect_success("hello as uid 1000")?
            .expect_stdout("hello, user")?
            .expect_stdout(&format!("{HOME}/.cache/pybundle/hello-"))?;
        let dir = bundle_dir(machine, &format!("{HOME}/.cache/pybundle"), "hello")?;
        let owner = fs::metadata(machine.host_path(&dir))?.uid();
        if owner != USER {
            bail!("{dir} is owned by uid {owner}, not {USER}");
        }
        Ok(format!("{:.0} ms: {}", out.ms(), one_line(&out.stdout)))
    });
    report.case("hello copied to a path with spaces, run from /tmp", || {
        let out = machine
            .run(&Run::user(&[SPACED, "spaces"], HOME).cwd("/tmp"))?
            .expect_success(SPACED)?
            .expect_stdout("hello, spaces")?;
        Ok(format!("{:.0} ms: {}", out.ms(), one_line(&out.stdout)))
    });
    report.case(
        "hello with a read-only home and no PYBUNDLE_CACHE_DIR",
        || {
            // No silent fallback: a program that picks another cache directory by itself puts
            // executables where nobody chose (and where another user may have planted some).
            let out = machine.run(&Run::user(&[hello, "readonly"], READ_ONLY_HOME))?;
            if out.success {
                bail!(
                    "ran from a fallback cache directory instead of refusing:\n{}",
                    out.output()
                );
            }
            if !out.stderr.contains("PYBUNDLE_CACHE_DIR") {
                bail!(
                    "failed without saying how to choose a cache directory (PYBUNDLE_CACHE_DIR)\n{}",
                    out.output()
                );
            }
            let first = format!("refused, saying: {}", out.stderr.trim());
            let cache = "/tmp/pybundle-readonly-home";
            machine
                .run(
                    &Run::user(&[hello, "readonly"], READ_ONLY_HOME)
                        .env("PYBUNDLE_CACHE_DIR", cache),
                )?
                .expect_success("hello with PYBUNDLE_CACHE_DIR set")?
                .expect_stdout(cache)?;
            Ok(format!("{first}; with PYBUNDLE_CACHE_DIR={cache} it runs"))
        },
    );
}

/// `ldd` (inside the machine) on every ELF file of every environment extracted under /root,
/// then the stdlib modules that load system libraries, imported by the bundled interpreter.
fn libraries(machine: &Machine) -> Result<String> {
    let cache = "/root/.cache/pybundle";
    let mut elves = Vec::new();
    let mut pythons = Vec::new();
    // Libraries shipped in the bundle: a wheel's vendored libraries (numpy.libs) have no RUNPATH
    // of their own, so a lone ldd misses their siblings, which the loading module's RPATH finds.
    let mut bundled = std::collections::HashSet::new();
    for entry in fs::read_dir(machine.host_path(cache))? {
        let env = entry?.path().join("env");
        if !env.is_dir() {
            continue;
        }
        for file in walkdir::WalkDir::new(&env) {
            let file = file?;
            if file.file_type().is_file() && is_elf(file.path()) {
                elves.push(inside(machine, file.path())?);
                bundled.insert(file.file_name().to_string_lossy().into_owned());
            }
        }
        if let Some(python) = interpreter(&env.join("bin")) {
            pythons.push(inside(machine, &python)?);
        }
    }
    if elves.is_empty() || pythons.is_empty() {
        bail!("no extracted environment with an interpreter under {cache}");
    }
    let mut argv = vec!["/usr/bin/ldd".to_owned()];
    argv.extend(elves.iter().cloned());
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    // ldd exits non-zero for a static file; only "not found" lines matter here.
    let out = machine.run(&Run::root(&refs))?;
    let mut missing = not_found(&out.stdout);
    missing.retain(|(_, lib)| !bundled.contains(lib));
    let (allowed, missing): (Vec<_>, Vec<_>) = missing.into_iter().partition(|(file, _)| {
        let name = file.rsplit('/').next().unwrap_or(file);
        UNSUPPORTED_MODULES.iter().any(|m| name.starts_with(m))
    });
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(f, l)| format!("{f}: {l}")).collect();
        bail!(
            "libraries missing on the bare machine (add their Debian packages to \
             root::SYSTEM_LIBRARIES and README's air-gapped section):\n{}",
            list.join("\n")
        );
    }
    let imports = "import warnings; warnings.simplefilter('ignore')\n\
                   import bz2, crypt, ctypes, curses, hashlib, lzma, nis, readline, sqlite3, ssl, \
                   uuid, zlib\n\
                   ssl.create_default_context(); sqlite3.connect(':memory:').execute('select 1')\n\
                   ctypes.CDLL(None); print('imported')";
    for python in &pythons {
        machine
            .run(&Run::root(&[python, "-c", imports]))?
            .expect_success(&format!(
                "{python} importing the stdlib's extension modules"
            ))?
            .expect_stdout("imported")?;
    }
    let packages: Vec<&str> = SYSTEM_LIBRARIES.iter().map(|(p, _)| *p).collect();
    let allowed: std::collections::BTreeSet<&str> =
        allowed.iter().map(|(_, lib)| lib.as_str()).collect();
    Ok(format!(
        "{} ELF files resolve (unsupported, as documented: {:?}); ssl, sqlite3, ctypes, ... \
         import in {} interpreter(s); the machine has only {}",
        elves.len(),
        allowed,
        pythons.len(),
        packages.join(", ")
    ))
}

/// `(file, library)` for each "not found" line of a multi-file ldd output.
fn not_found(ldd: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut missing = Vec::new();
    for line in ldd.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = line.trim_end_matches(':').to_owned();
        } else if let Some((lib, _)) = line.trim().split_once(" => not found") {
            missing.push((current.clone(), lib.to_owned()));
        }
    }
    missing
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// `python3.X` in a bin directory.
fn interpreter(bin: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(bin).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("python3."))
            .is_some_and(|minor| minor.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The path of a host file as seen inside the machine.
fn inside(machine: &Machine, host: &Path) -> Result<String> {
    let rel = host.strip_prefix(machine.root())?;
    Ok(format!("/{}", rel.display()))
}

/// The one `<app>-<id16>` directory of `app` under a cache root inside the machine.
fn bundle_dir(machine: &Machine, cache: &str, app: &str) -> Result<String> {
    let prefix = format!("{app}-");
    let mut found = Vec::new();
    for entry in fs::read_dir(machine.host_path(cache))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && !name.ends_with(".lock") && entry.path().is_dir() {
            found.push(format!("{cache}/{name}"));
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one {app} bundle directory in {cache}, found {found:?}"),
    }
}

fn one_line(text: &str) -> String {
    text.trim().replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_read_per_file() {
        let out = "/a/x.so:\n\tlinux-vdso.so.1 (0x1)\n\tlibssl.so.3 => not found\n\
                   /a/y.so:\n\tlibc.so.6 => /lib/libc.so.6 (0x2)\n\tlibz.so.1 => not found\n";
        assert_eq!(
            not_found(out),
            [
                ("/a/x.so".to_owned(), "libssl.so.3".to_owned()),
                ("/a/y.so".to_owned(), "libz.so.1".to_owned())
            ]
        );
        assert!(not_found("/a/z.so:\n\tlibc.so.6 => /lib/libc.so.6\n").is_empty());
    }
}
