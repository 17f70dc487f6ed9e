//! The channel's small packages that exercise what Python alone does not:
//! `pybundle-hello-entry` (noarch python with an entry point: pixi writes a `bin/` script whose
//! shebang holds the install prefix, with no placeholder recorded anywhere) and
//! `pybundle-reloc-test` (a compiled program and a text file holding the placeholder, plus an
//! activation script).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};
use fs_err as fs;

use super::package::{self, Package, Record};
use super::placeholder;
use crate::tools;

const HELLO_INIT: &str = r#""""pybundle-hello-entry: a noarch package whose entry point shows the prefix."""
import sys


def main():
    print("pybundle-hello from " + sys.prefix)
"#;

/// `pybundle-hello-entry`: noarch python, entry point `pybundle-hello`.
pub fn hello_entry(work: &Path, channel: &Path, build: &str) -> Result<Record> {
    let stage = work.join("pybundle-hello-entry");
    let module = stage.join("site-packages").join("pybundle_hello_entry");
    fs::create_dir_all(&module)?;
    fs::write(module.join("__init__.py"), HELLO_INIT)?;
    let pkg = Package {
        name: "pybundle-hello-entry",
        version: "1.0",
        build,
        subdir: "noarch",
        depends: vec!["python".into()],
        noarch_python: Some(vec!["pybundle-hello = pybundle_hello_entry:main".into()]),
    };
    package::write(&pkg, &stage, channel)
}

/// `pybundle-reloc-test`: `bin/pybundle-reloc-test` prints `PREFIX=<its compiled-in prefix>`
/// (a binary-mode placeholder file); `share/pybundle-reloc-test/prefix.txt` holds the prefix as
/// text; an activation script exports `PYBUNDLE_TEST_DATA`.
pub fn reloc_test(cc: &Path, work: &Path, channel: &Path, build: &str) -> Result<Record> {
    let stage = work.join("pybundle-reloc-test");
    let placeholder = placeholder();
    let bin = stage.join("bin");
    fs::create_dir_all(&bin)?;
    let source = work.join("pybundle-reloc-test.c");
    fs::write(
        &source,
        format!(
            "#include <stdio.h>\n\
             static const char prefix[] = \"{placeholder}\";\n\
             int main(void) {{\n    printf(\"PREFIX=%s\\n\", prefix);\n    return 0;\n}}\n"
        ),
    )?;
    let program = bin.join("pybundle-reloc-test");
    // -s: no debug info or symbols naming the temp build directory.
    tools::run(
        Command::new(cc)
            .args(["-O2", "-s", "-o"])
            .arg(&program)
            .arg(&source),
        "compiling pybundle-reloc-test",
    )?;
    let compiled = fs::read(&program)?;
    let hits = memchr::memmem::find_iter(&compiled, placeholder.as_bytes()).count();
    if hits != 1 {
        bail!(
            "{} holds the placeholder {hits} times, expected once",
            program.display()
        );
    }

    let share = stage.join("share").join("pybundle-reloc-test");
    fs::create_dir_all(&share)?;
    fs::write(share.join("prefix.txt"), format!("{placeholder}\n"))?;
    let activate = stage.join("etc").join("conda").join("activate.d");
    fs::create_dir_all(&activate)?;
    fs::write(
        activate.join("pybundle-reloc-test.sh"),
        "export PYBUNDLE_TEST_DATA=\"$CONDA_PREFIX/share/pybundle-reloc-test\"\n",
    )?;
    let pkg = Package {
        name: "pybundle-reloc-test",
        version: "1.0",
        build,
        subdir: "linux-64",
        depends: Vec::new(),
        noarch_python: None,
    };
    package::write(&pkg, &stage, channel)
}
