//! A throwaway copy of the bare root and the way programs run in it: `unshare --net` (only a
//! loopback interface) plus `chroot` (none of the build machine's files), with a fresh PID
//! namespace so `/proc` can be mounted the way a real machine has it, and an empty environment.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The unprivileged user of the target machine.
pub const USER: u32 = 1000;

/// How long one program may run before it is killed (a hang must not hang the suite).
const TIMEOUT_SECS: u32 = 180;

/// A working copy of the cached root, deleted on drop unless [`Machine::keep`] was called.
pub struct Machine {
    root: Option<tempfile::TempDir>,
}

impl Machine {
    /// Copies `cached` beside itself (`cp -a` keeps devices, owners and modes), so every run
    /// starts from the same pristine machine and never changes the cache.
    pub fn copy_of(cached: &Path) -> Result<Self> {
        let parent = cached.parent().context("the cached root has no parent")?;
        let root = tempfile::Builder::new().prefix("run-").tempdir_in(parent)?;
        let status = Command::new("cp")
            .args(["-a", "--reflink=auto", "--no-target-directory"])
            .arg(cached)
            .arg(root.path())
            .status()
            .context("starting cp")?;
        if !status.success() {
            bail!(
                "cannot copy {} to {} ({status})",
                cached.display(),
                root.path().display()
            );
        }
        Ok(Self { root: Some(root) })
    }

    /// The root on the host side.
    pub fn root(&self) -> &Path {
        self.root.as_ref().map_or(Path::new("/"), |r| r.path())
    }

    /// A path inside the machine, seen from the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.root().join(inside.trim_start_matches('/'))
    }

    /// Keeps the copy for inspection after a failure; returns where it is.
    pub fn keep(&mut self) -> PathBuf {
        match self.root.take() {
            Some(root) => root.keep(),
            None => PathBuf::from("/"),
        }
    }

    /// Inode of a path inside the machine (to tell "the same directory" from "made again").
    pub fn inode(&self, inside: &str) -> Result<u64> {
        let path = self.host_path(inside);
        Ok(fs_err::metadata(&path)?.ino())
    }

    /// Runs `run` inside the machine and waits for it.
    pub fn run(&self, run: &Run) -> Result<Outcome> {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", &TIMEOUT_SECS.to_string()])
            .args(["unshare", "--net", "--pid", "--fork"])
            .arg(format!(
                "--mount-proc={}",
                self.root().join("proc").display()
            ))
            // A real machine's loopback is up (the service example serves on 127.0.0.1); the
            // host's `ip` does it before chroot, so the root needs no iproute2.
            .args(["sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
            .arg("chroot");
        if let Some(uid) = run.user {
            cmd.arg(format!("--userspec={uid}:{uid}"));
        }
        cmd.arg(self.root())
            .args(["/usr/bin/env", "-i", "-C", &run.cwd])
            .arg(format!("HOME={}", run.home))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
            .arg("LANG=C.UTF-8");
        for (key, value) in &run.env {
            cmd.arg(format!("{key}={value}"));
        }
        cmd.args(&run.argv);
        let started = Instant::now();
        let out: Output = cmd
            .output()
            .with_context(|| format!("starting unshare + chroot for {:?}", run.argv))?;
        let elapsed = started.elapsed();
        if out.status.code() == Some(124) {
            bail!(
                "{:?} did not finish within {TIMEOUT_SECS} s and was killed; its stderr:\n{}",
                run.argv,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Outcome {
            success: out.status.success(),
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        })
    }
}

/// One program to run inside the machine.
#[derive(Clone)]
pub struct Run {
    /// Program and arguments, paths as seen inside.
    pub argv: Vec<String>,
    /// `None`: root; `Some(uid)`: that uid and the same gid.
    pub user: Option<u32>,
    /// `HOME` (the default cache lives under it).
    pub home: String,
    /// Working directory inside.
    pub cwd: String,
    /// Further environment variables (the environment starts empty).
    pub env: Vec<(String, String)>,
}

impl Run {
    /// `argv` as root, at home in /root.
    pub fn root(argv: &[&str]) -> Self {
        Self {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            user: None,
            home: "/root".into(),
            cwd: "/".into(),
            env: Vec::new(),
        }
    }

    /// `argv` as the unprivileged user with this home.
    pub fn user(argv: &[&str], home: &str) -> Self {
        Self {
            user: Some(USER),
            home: home.into(),
            cwd: home.into(),
            ..Self::root(argv)
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.cwd = cwd.into();
        self
    }
}

/// What a program did.
pub struct Outcome {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit status, for messages.
    pub status: String,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Wall time, including unshare and chroot (a few milliseconds).
    pub elapsed: Duration,
}

impl Outcome {
    /// Fails, showing the program's output, unless it exited with 0.
    pub fn expect_success(self, what: &str) -> Result<Self> {
        if !self.success {
            bail!("{what} failed ({})\n{}", self.status, self.output());
        }
        Ok(self)
    }

    /// Fails, showing the program's output, unless stdout holds `needle`.
    pub fn expect_stdout(self, needle: &str) -> Result<Self> {
        if !self.stdout.contains(needle) {
            bail!("expected `{needle}` on stdout\n{}", self.output());
        }
        Ok(self)
    }

    /// Stdout and stderr, labelled, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            with_newline(&self.stdout),
            with_newline(&self.stderr)
        )
    }

    /// Milliseconds, for reports.
    pub fn ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1000.0
    }
}

fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}
