//! Two real users on one machine: the attacks of issue 20 (1a, 1b, 1c, 2, 3), each run for
//! real with `useradd`-made users and `setpriv`, and each now failing safely: the attacker's
//! code never runs, the victim gets a clear error or proceeds safely, and nothing is written
//! outside the cache.
//!
//! Needs root (to make users and switch to them); skipped with a printed line otherwise, and
//! CI runs as root. The victim is this test binary again (`users_child`), run as the victim
//! user (or as root for 1a); the attacker is a shell or `flock` run as the attacker user.
//!
//! The attacker's code, were it ever run, would leave a file in the world-writable evidence
//! directory: every test ends by checking that it is empty.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pybundle_runtime::{Bundle, Error};
use sha2::{Digest, Sha256};

use crate::bundle::{build, hex, sample};

const ROLE: &str = "PYBUNDLE_USERS_ROLE";

#[derive(Clone, Copy, Debug)]
struct User {
    uid: u32,
    gid: u32,
}

/// The victim and the attacker, created once (`useradd` is not safe to run concurrently).
fn users(test: &str) -> Option<(User, User)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED {test}: needs root to create two users and switch between them");
        return None;
    }
    static MADE: Mutex<Option<(User, User)>> = Mutex::new(None);
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pair) = *made {
        return Some(pair);
    }
    let make = |name: &str| {
        if !Command::new("id")
            .arg(name)
            .output()
            .unwrap()
            .status
            .success()
        {
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--user-group"])
                .args(["--shell", "/usr/sbin/nologin", name])
                .output()
                .expect("useradd runs");
            assert!(
                out.status.success(),
                "useradd {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, name]).output().unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        User {
            uid: id("-u"),
            gid: id("-g"),
        }
    };
    let pair = (make("pbvictim"), make("pbattacker"));
    *made = Some(pair);
    Some(pair)
}

/// `program args…` as `user`, through `setpriv` (no supplementary groups).
fn as_user(user: User, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args(["--clear-groups", "--"])
        .arg(program);
    cmd
}

/// A shell script run as the attacker.
fn attacker_sh(attacker: User, script: &str) -> Command {
    let mut cmd = as_user(attacker, "/bin/sh");
    cmd.args(["-c", script]);
    cmd
}

/// An attacker process running beside the victim, in a process group of its own that is
/// killed (group and all) when the guard goes, whatever the test's outcome.
struct Attacker(Child);

impl Attacker {
    fn spawn(mut cmd: Command) -> Attacker {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Attacker(child)
    }

    fn id(&self) -> u32 {
        self.0.id()
    }

    /// Waits for it to end by itself (at most `within`); its exit code.
    fn wait(mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < until, "the attacker process did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects; the group is the one this guard started.
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn chown(path: &Path, user: User) {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, owner: Option<User>, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    if let Some(owner) = owner {
        chown(path, owner);
    }
    chmod(path, mode);
}

/// The scene: a root-owned 0755 scratch directory, the bundle archive in it, and an
/// evidence directory anyone may write to.
struct Scene {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    archive: PathBuf,
    dir_name: String,
    marker: String,
    evidence: PathBuf,
}

fn scene(name: &str) -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    chmod(&dir, 0o755);
    let archive = dir.join("app.tar.zst");
    let bytes = build(&sample(name, "users"));
    std::fs::write(&archive, &bytes).unwrap();
    chmod(&archive, 0o644);
    let m = pybundle_runtime::manifest_of(&bytes).unwrap();
    let frame = zstd::zstd_safe::find_frame_compressed_size(&bytes).unwrap();
    let marker = format!("{}\n{}\n", m.id, hex(&Sha256::digest(&bytes[..frame])));
    let evidence = dir.join("evidence");
    mkdir(&evidence, None, 0o1777);
    Scene {
        _tmp: tmp,
        dir_name: format!("{name}-{}", &m.id[..16]),
        marker,
        archive,
        evidence,
        dir,
    }
}

impl Scene {
    /// The attacker's copy of a ready bundle at `at`: a complete-looking tree whose
    /// interpreter leaves evidence, with the marker the real one would have.
    fn plant_fake_bundle(&self, at: &Path, owner: User) {
        let bin = at.join("env/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(at.join(".pybundle")).unwrap();
        let python = bin.join("python3.11");
        std::fs::write(
            &python,
            format!(
                "#!/bin/sh\ntouch {}/attacker-code-ran-as-$(id -u)\necho pwned\n",
                self.evidence.display()
            ),
        )
        .unwrap();
        chmod(&python, 0o755);
        std::os::unix::fs::symlink("python3.11", bin.join("python3")).unwrap();
        std::fs::write(at.join(".pybundle/complete"), &self.marker).unwrap();
        for p in crate::bundle::list(at) {
            chown(&at.join(p), owner);
        }
        chown(at, owner);
    }

    fn no_evidence(&self) {
        let found: Vec<_> = std::fs::read_dir(&self.evidence)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(found.is_empty(), "the attacker's code ran: {found:?}");
    }

    /// The victim: this test binary as `user` (`None`: as root), making the bundle ready
    /// and running its interpreter. Returns its one result line and peak RSS (KiB).
    fn victim(&self, user: Option<User>, envs: &[(&str, &Path)], lock_ms: Option<u64>) -> Victim {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match user {
            Some(u) => as_user(u, &exe),
            None => Command::new(&exe),
        };
        cmd.args([
            "--exact",
            "users::users_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "victim")
        .env("PB_ARCHIVE", &self.archive)
        .env_remove("PYBUNDLE_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", "/nonexistent");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(ms) = lock_ms {
            cmd.env("PB_LOCK_MS", ms.to_string());
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "the victim did not exit normally ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.find("VICTIM-").map(|at| l[at..].to_owned()))
            .unwrap_or_else(|| panic!("no result line in:\n{text}"));
        Victim {
            line,
            rss_kb: crate::limits::peak_rss_of(&text),
            took: started.elapsed(),
        }
    }
}

#[derive(Debug)]
struct Victim {
    line: String,
    rss_kb: u64,
    took: Duration,
}

impl Victim {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.line, "VICTIM-OK interp-ran victim",
            "the victim should have run the real interpreter"
        );
        self
    }

    fn refused(&self, variant: &str, says: &[&str]) -> &Self {
        assert!(
            self.line.starts_with(&format!("VICTIM-ERR {variant} ")),
            "expected {variant}: {}",
            self.line
        );
        for part in says {
            assert!(self.line.contains(part), "`{part}` not in: {}", self.line);
        }
        self
    }
}

/// Not a test on its own: the victim process of the tests below.
#[test]
fn users_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    assert_eq!(role, "victim");
    let archive = PathBuf::from(std::env::var("PB_ARCHIVE").unwrap());
    let result = Bundle::from_file(&archive).and_then(|mut bundle| {
        if let Ok(ms) = std::env::var("PB_LOCK_MS") {
            bundle = bundle.lock_timeout(Duration::from_millis(ms.parse().unwrap()));
        }
        let env = bundle.ready()?;
        // Give an attacker who waits for this moment time to swap things under us.
        if let Some(signal) = std::env::var_os("PB_SIGNAL") {
            std::fs::write(PathBuf::from(signal).join("ready"), "").unwrap();
            let swapped = PathBuf::from(std::env::var_os("PB_SWAPPED").unwrap());
            let until = Instant::now() + Duration::from_secs(3);
            while !swapped.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // What a spawn site does before it starts anything.
        env.check_location()?;
        let out = Command::new(env.interpreter())
            .arg("victim")
            .output()
            .map_err(|e| Error::Io {
                action: "cannot run",
                path: env.interpreter().to_path_buf(),
                source: e,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    match result {
        Ok(out) => println!("VICTIM-OK {out}"),
        Err(e) => {
            let variant = match &e {
                Error::Cache { .. } => "Cache",
                Error::LockTimeout { .. } => "LockTimeout",
                Error::Moved { .. } => "Moved",
                _ => "Other",
            };
            println!("VICTIM-ERR {variant} {}", e.to_string().replace('\n', " "));
        }
    }
    crate::limits::print_peak_rss();
}

/// Every file under `dir` owned by `user`: nothing was written there by anyone else.
fn all_owned_by(dir: &Path, user: User) {
    for p in crate::bundle::list(dir) {
        let uid = std::fs::symlink_metadata(dir.join(&p)).unwrap().uid();
        assert_eq!(
            uid,
            user.uid,
            "{p} in {} is not the attacker's",
            dir.display()
        );
    }
}

/// (1a) Root running with another user's HOME (`sudo -E`, a service with `User=root` and
/// `HOME=/home/app`): that user swaps `~/.cache` right after `ready()`. Now `ready()` refuses
/// the cache, naming her home directory, before creating anything in it.
#[test]
fn root_with_another_users_home_refuses_it() {
    let Some((_, attacker)) = users("1a") else {
        return;
    };
    let s = scene("root-home");
    let home = s.dir.join("home-attacker");
    mkdir(&home, Some(attacker), 0o755);
    mkdir(&home.join(".cache"), Some(attacker), 0o755);
    s.plant_fake_bundle(
        &home.join(".cache-evil/pybundle").join(&s.dir_name),
        attacker,
    );
    chown(&home.join(".cache-evil"), attacker);
    chown(&home.join(".cache-evil/pybundle"), attacker);
    let signal = s.dir.join("signal");
    mkdir(&signal, None, 0o755);
    // The swap, the moment root signals it is ready.
    let script = format!(
        "cd {h} && i=0; while [ $i -lt 500 ]; do if [ -e {sig}/ready ]; then \
         mv .cache .cache-old && mv .cache-evil .cache && touch swapped; exit 0; fi; \
         i=$((i+1)); sleep 0.01; done; exit 3",
        h = home.display(),
        sig = signal.display()
    );
    let swapper = Attacker::spawn(attacker_sh(attacker, &script));
    let v = s.victim(
        None,
        &[
            ("HOME", &home),
            ("PB_SIGNAL", &signal),
            ("PB_SWAPPED", &home.join("swapped")),
        ],
        None,
    );
    v.refused(
        "Cache",
        &[
            &format!("`{}` is owned by uid {}", home.display(), attacker.uid),
            "PYBUNDLE_CACHE_DIR",
        ],
    );
    assert_eq!(
        swapper.wait(Duration::from_secs(20)),
        Some(3),
        "root never signalled ready"
    );
    s.no_evidence();
    all_owned_by(&home, attacker);
}

/// (1b) `PYBUNDLE_CACHE_DIR` under a directory another user owns, with that user swapping
/// what is in it in a loop: refused every time. Under a sticky shared directory (`/tmp`),
/// the victim's own cache directory cannot be renamed or replaced by the attacker, so the
/// victim proceeds safely; one the attacker made there first is refused.
#[test]
fn a_cache_below_another_users_directory_is_refused_and_sticky_ones_hold() {
    let Some((victim, attacker)) = users("1b") else {
        return;
    };
    let s = scene("shared");
    let shared = s.dir.join("shared");
    mkdir(&shared, Some(attacker), 0o777);
    s.plant_fake_bundle(&shared.join("evil").join(&s.dir_name), attacker);
    let swap = |dir: &Path| {
        let script = format!(
            "cd {d} && while :; do mv cache real 2>/dev/null; \
             ln -sfn evil cache 2>/dev/null; rm -f cache 2>/dev/null; \
             mv real cache 2>/dev/null; done",
            d = dir.display(),
        );
        Attacker::spawn(attacker_sh(attacker, &script))
    };
    let swapper = swap(&shared);
    let cache = shared.join("cache");
    for _ in 0..20 {
        // Refused at `shared`, or (when the loop has just put its link there) at the link:
        // both are the attacker's.
        s.victim(Some(victim), &[("PYBUNDLE_CACHE_DIR", &cache)], None)
            .refused(
                "Cache",
                &[
                    &shared.display().to_string(),
                    &format!("is owned by uid {}", attacker.uid),
                ],
            );
    }
    drop(swapper);

    let sticky = s.dir.join("sticky");
    mkdir(&sticky, None, 0o1777);
    let cache = sticky.join("cache");
    // Made there first by the attacker: refused.
    mkdir(&cache, Some(attacker), 0o777);
    s.victim(Some(victim), &[("PYBUNDLE_CACHE_DIR", &cache)], None)
        .refused("Cache", &["and `cache` in it is not yours"]);
    std::fs::remove_dir(&cache).unwrap();
    // Made by the victim: the attacker's swapping loop fails on every step (sticky bit).
    s.victim(Some(victim), &[("PYBUNDLE_CACHE_DIR", &cache)], None)
        .ok();
    std::fs::create_dir_all(sticky.join("evil")).unwrap();
    s.plant_fake_bundle(&sticky.join("evil").join(&s.dir_name), attacker);
    chown(&sticky.join("evil"), attacker);
    let swapper = swap(&sticky);
    for _ in 0..20 {
        s.victim(Some(victim), &[("PYBUNDLE_CACHE_DIR", &cache)], None)
            .ok();
    }
    drop(swapper);
    assert_eq!(std::fs::symlink_metadata(&cache).unwrap().uid(), victim.uid);
    s.no_evidence();
}

/// (1c) The victim's own cache root with mode 0777: the attacker planted a symlinked lock
/// file (which made the victim create a file in their own home) and a bundle directory of
/// hers. Now the root is made private first, the link is refused without being followed,
/// her directory is refused, and once they are gone the victim proceeds.
#[test]
fn a_world_writable_root_is_made_private_and_what_was_planted_is_refused() {
    let Some((victim, attacker)) = users("1c") else {
        return;
    };
    let s = scene("open");
    let vhome = s.dir.join("vhome");
    mkdir(&vhome, Some(victim), 0o755);
    let root = s.dir.join("vroot");
    mkdir(&root, Some(victim), 0o777);
    let target = vhome.join("created-through-the-link");
    let lock = root.join(format!("{}.lock", s.dir_name));
    let planted = attacker_sh(
        attacker,
        &format!("ln -s {} {}", target.display(), lock.display()),
    )
    .status()
    .unwrap();
    assert!(
        planted.success(),
        "the attacker can plant while the root is 0777"
    );
    s.plant_fake_bundle(&root.join(&s.dir_name), attacker);
    let envs: &[(&str, &Path)] = &[("PYBUNDLE_CACHE_DIR", &root)];
    s.victim(Some(victim), envs, None)
        .refused("Cache", &["the lock file is a symlink"]);
    assert!(!target.exists(), "nothing was created through the link");
    assert_eq!(
        crate::bundle::mode(&root),
        0o755,
        "the root was made private"
    );
    let again = attacker_sh(attacker, &format!("touch {}/more", root.display()))
        .status()
        .unwrap();
    assert!(
        !again.success(),
        "the attacker can no longer add to the root"
    );
    std::fs::remove_file(&lock).unwrap();
    s.victim(Some(victim), envs, None)
        .refused("Cache", &[&format!("owned by uid {}", attacker.uid)]);
    std::fs::remove_dir_all(root.join(&s.dir_name)).unwrap();
    s.victim(Some(victim), envs, None).ok();
    s.no_evidence();
}

/// (2) Lock files: another user can no longer open one (0600), so cannot block starts; an
/// older runtime's 0644 lock file already held by another user makes a start wait only
/// its lock timeout, then fail naming the lock and the holder's pid, and it is private from
/// then on. Root using a shared sticky directory as its cache is not blocked by a lock file
/// planted there: it is not root's, and refused at once.
#[test]
fn another_user_cannot_block_the_lock_and_every_wait_is_bounded() {
    let Some((victim, attacker)) = users("2") else {
        return;
    };
    let s = scene("locked");
    let root = s.dir.join("cachedir");
    // What systemd's CacheDirectory= makes.
    mkdir(&root, Some(victim), 0o755);
    let envs: &[(&str, &Path)] = &[("PYBUNDLE_CACHE_DIR", &root)];
    s.victim(Some(victim), envs, None).ok();
    let lock = root.join(format!("{}.lock", s.dir_name));
    assert_eq!(crate::bundle::mode(&lock), 0o600);
    let out = as_user(attacker, "flock")
        .args(["-x", "-n"])
        .arg(&lock)
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.victim(Some(victim), envs, None).ok();

    // An older runtime's 0644 lock, opened and held by the attacker.
    chmod(&lock, 0o644);
    let mut flock = as_user(attacker, "flock");
    flock.args(["-x", "-o"]).arg(&lock).args(["sleep", "60"]);
    let holder = Attacker::spawn(flock);
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&holder.id().to_string()))
    {
        assert!(
            Instant::now() < until,
            "the attacker's flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = s.victim(Some(victim), envs, Some(1500));
    v.refused(
        "LockTimeout",
        &[
            &lock.display().to_string(),
            &format!("held by process {}", holder.id()),
        ],
    );
    assert!(v.took < Duration::from_secs(10), "bounded: {:?}", v.took);
    assert_eq!(crate::bundle::mode(&lock), 0o600, "made private on the way");
    drop(holder);
    s.victim(Some(victim), envs, None).ok();

    // Root with a shared sticky directory as its cache, a lock file planted and held there.
    let tmpish = s.dir.join("tmpish");
    mkdir(&tmpish, None, 0o1777);
    let planted = tmpish.join(format!("{}.lock", s.dir_name));
    let holder = Attacker::spawn(attacker_sh(
        attacker,
        &format!(
            "touch {p} && chmod 644 {p} && exec flock -x -o {p} sleep 60",
            p = planted.display()
        ),
    ));
    let until = Instant::now() + Duration::from_secs(10);
    while !planted.exists() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = s.victim(None, &[("PYBUNDLE_CACHE_DIR", &tmpish)], Some(1500));
    v.refused(
        "Cache",
        &[&format!(
            "the lock file is owned by uid {}, not by you",
            attacker.uid
        )],
    );
    assert!(
        v.took < Duration::from_secs(5),
        "refused at once: {:?}",
        v.took
    );
    drop(holder);
    s.no_evidence();
}

/// (3) A completion marker pointed at `/dev/zero` or replaced by a fifo. In a bundle
/// directory of another user it is never opened (the owner is checked first); in the
/// victim's own it is no marker (no symlink followed, no blocking open, size-capped), and
/// the victim extracts again. Either way fast and small.
#[test]
fn a_hostile_marker_is_never_read_past_its_owner_or_its_size() {
    let Some((victim, attacker)) = users("3") else {
        return;
    };
    let s = scene("marker");
    let root = s.dir.join("cachedir");
    mkdir(&root, Some(victim), 0o755);
    let envs: &[(&str, &Path)] = &[("PYBUNDLE_CACHE_DIR", &root)];
    let bundle = root.join(&s.dir_name);
    let marker = bundle.join(".pybundle/complete");
    for how in ["/dev/zero", "fifo"] {
        // The attacker's directory in the victim's root (as a shared root could have left).
        s.plant_fake_bundle(&bundle, attacker);
        std::fs::remove_file(&marker).unwrap();
        if how == "fifo" {
            assert!(Command::new("mkfifo")
                .arg(&marker)
                .status()
                .unwrap()
                .success());
        } else {
            std::os::unix::fs::symlink(how, &marker).unwrap();
        }
        chown(&marker, attacker);
        let v = s.victim(Some(victim), envs, Some(2000));
        v.refused("Cache", &[&format!("owned by uid {}", attacker.uid)]);
        assert!(v.took < Duration::from_secs(5), "{how}: {:?}", v.took);
        assert!(v.rss_kb < 64 * 1024, "{how}: {} KiB", v.rss_kb);
        std::fs::remove_dir_all(&bundle).unwrap();

        // The victim's own directory with such a marker: not complete, extracted again.
        s.victim(Some(victim), envs, None).ok();
        std::fs::remove_file(&marker).unwrap();
        if how == "fifo" {
            assert!(Command::new("mkfifo")
                .arg(&marker)
                .status()
                .unwrap()
                .success());
        } else {
            std::os::unix::fs::symlink(how, &marker).unwrap();
        }
        chown(&marker, victim);
        let v = s.victim(Some(victim), envs, Some(2000));
        v.ok();
        assert!(v.took < Duration::from_secs(10), "{how}: {:?}", v.took);
        assert!(v.rss_kb < 64 * 1024, "{how}: {} KiB", v.rss_kb);
        assert!(std::fs::symlink_metadata(&marker).unwrap().is_file());
        std::fs::remove_dir_all(&bundle).unwrap();
    }
    s.no_evidence();
}

/// Group-writable directories on the way: fine when the group is the victim's own (the
/// user-private group a `umask 002` system gives everyone), refused when another user is in it.
#[test]
fn a_group_writable_directory_counts_only_with_a_group_of_ones_own() {
    let Some((victim, attacker)) = users("group") else {
        return;
    };
    let shared_gid = {
        static MADE: Mutex<Option<u32>> = Mutex::new(None);
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        if made.is_none() {
            if !Command::new("getent")
                .args(["group", "pbshared"])
                .output()
                .unwrap()
                .status
                .success()
            {
                assert!(Command::new("groupadd")
                    .args(["--system", "pbshared"])
                    .status()
                    .unwrap()
                    .success());
            }
            let members = "pbvictim,pbattacker";
            assert!(Command::new("gpasswd")
                .args(["-M", members, "pbshared"])
                .status()
                .unwrap()
                .success());
            let out = Command::new("getent")
                .args(["group", "pbshared"])
                .output()
                .unwrap();
            let line = String::from_utf8(out.stdout).unwrap();
            *made = Some(line.split(':').nth(2).unwrap().parse().unwrap());
        }
        made.unwrap()
    };
    let s = scene("group");
    let home = s.dir.join("home-victim");
    mkdir(&home, Some(victim), 0o775);
    let envs: &[(&str, &Path)] = &[("PYBUNDLE_CACHE_DIR", &home.join("cache"))];
    s.victim(Some(victim), envs, None).ok();
    // The same directory, its group now shared with the attacker.
    std::os::unix::fs::chown(&home, None, Some(shared_gid)).unwrap();
    chmod(&home, 0o775);
    s.victim(Some(victim), envs, None).refused(
        "Cache",
        &[&format!(
            "`{}` is writable by group {shared_gid}",
            home.display()
        )],
    );
    // Why: the attacker, with that group, can change what lies in it.
    let planted = home.join("planted-by-the-attacker");
    let out = Command::new("setpriv")
        .arg(format!("--reuid={}", attacker.uid))
        .arg(format!("--regid={}", attacker.gid))
        .arg(format!("--groups={shared_gid}"))
        .args(["--", "touch"])
        .arg(&planted)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&planted).unwrap();
    s.no_evidence();
}
