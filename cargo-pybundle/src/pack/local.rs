//! Local Python packages: an editable install becomes a real one inside the bundle, and nothing
//! packed may point outside it.
//!
//! An editable install (`{ path = ".", editable = true }`, what `pixi init --format pyproject`
//! writes for the project's own package) leaves only a link to the source tree in
//! `site-packages`: a `.pth` file naming a folder, or a `.pth` importing a finder module whose
//! `MAPPING` names each top-level package's folder (setuptools' strict mode). Such a bundle
//! imports on the build machine and fails with `ModuleNotFoundError` everywhere else. So the
//! packer copies what the link makes importable into the bundle, under
//! `site-packages/_pybundle_local/<distribution>/`, and writes the `.pth` again with that
//! relative path (`site` joins relative `.pth` lines to the `site-packages` folder): the same
//! names import, from inside the bundle, and the developer keeps an editable install.
//!
//! What is copied from a `.pth` folder: its importable entries (packages — folders with a
//! valid Python name — and `.py`/extension modules) with everything inside them, leaving out
//! hidden entries, `__pycache__`, bytecode and cargo/pixi build folders (any folder holding a
//! `CACHEDIR.TAG`). `direct_url.json`, which names the source folder for tools like
//! `pip freeze`, is left out for every local (`file://`) install.
//!
//! Afterwards every packed `.pth` file, editable finder and `direct_url.json` is checked: one
//! that still names an absolute path outside the prefix fails the build, naming the package.

use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

use super::walk::{Entry, Source};

/// The folder, inside `site-packages`, that holds copies of editable packages.
pub const LOCAL_DIR: &str = "_pybundle_local";

/// One local distribution found in the prefix.
#[derive(Debug)]
pub struct Local {
    /// Distribution name (from the `.dist-info` folder's name).
    pub name: String,
    /// Whether it was installed editable.
    pub editable: bool,
    /// The source it was installed from.
    pub source: PathBuf,
}

/// Rewrites `entries` (archive paths under `env/`, the prefix's walk) so editable installs are
/// real ones and local installs name no build-machine path; returns what was found.
pub fn make_real(prefix: &Path, env_dir: &str, entries: &mut Vec<Entry>) -> Result<Vec<Local>> {
    let mut found = Vec::new();
    let mut plan = Plan::default();
    for site in site_packages(prefix) {
        let site_rel = format!(
            "{env_dir}/{}",
            site.strip_prefix(prefix).unwrap_or(&site).display()
        );
        for (dist_info, url) in direct_urls(&site)? {
            let Some(source) = url.path else {
                continue;
            };
            let name = dist_name(&dist_info);
            let info_rel = format!("{site_rel}/{}", file_name(&dist_info));
            plan.dropped.push(format!("{info_rel}/direct_url.json"));
            if url.editable {
                plan.editable(&site, &site_rel, &dist_info, &name, &source)?;
            }
            found.push(Local {
                name,
                editable: url.editable,
                source,
            });
        }
    }
    plan.apply(entries);
    check_nothing_points_outside(prefix, env_dir, entries)?;
    Ok(found)
}

/// Changes to the archive's entries.
#[derive(Default)]
struct Plan {
    added: Vec<Entry>,
    seen: std::collections::HashSet<String>,
    dropped: Vec<String>,
    rewritten: BTreeMap<String, Vec<u8>>,
}

impl Plan {
    /// Copies what one editable install links to under `_pybundle_local/<name>` and points its
    /// `.pth` files there.
    fn editable(
        &mut self,
        site: &Path,
        site_rel: &str,
        dist_info: &Path,
        name: &str,
        source: &Path,
    ) -> Result<()> {
        let record = fs_err::read_to_string(dist_info.join("RECORD")).unwrap_or_default();
        // Top-level files the install put into site-packages (`.pth`, finder modules).
        let listed: Vec<&str> = record
            .lines()
            .filter_map(|l| l.split(',').next())
            .filter(|p| !p.contains('/'))
            .collect();
        let dest = format!("{LOCAL_DIR}/{name}");
        let into = format!("{site_rel}/{dest}");
        let mut copied = false;
        for finder in listed.iter().filter(|f| is_finder(f)) {
            for (module, target) in finder_mapping(&fs_err::read_to_string(site.join(finder))?) {
                let target = PathBuf::from(target);
                if target.is_dir() {
                    self.copy_tree(&target, &format!("{into}/{module}"))?;
                } else if target.is_file() {
                    let ext = target.extension().and_then(|e| e.to_str()).unwrap_or("py");
                    self.add_file(&target, &format!("{into}/{module}.{ext}"))?;
                } else {
                    bail!(
                        "the editable install of {name} maps `{module}` to {}, which does not \
                         exist; reinstall it (`cargo pybundle pixi reinstall`)",
                        target.display()
                    );
                }
                copied = true;
            }
            self.dropped.push(format!("{site_rel}/{finder}"));
        }
        for pth in listed.iter().filter(|f| f.ends_with(".pth")) {
            let mut lines = Vec::new();
            for line in fs_err::read_to_string(site.join(pth))?.lines() {
                let folder = Path::new(line.trim());
                if line.starts_with("import ") && line.contains("__editable__") {
                    // Loads setuptools' finder, whose packages are now copied under `dest`.
                    lines.push(dest.clone());
                } else if folder.is_absolute() && folder.is_dir() {
                    self.copy_importable(folder, &into)?;
                    lines.push(dest.clone());
                    copied = true;
                } else {
                    lines.push(line.to_owned());
                }
            }
            lines.dedup();
            let text = format!("{}\n", lines.join("\n"));
            self.rewritten
                .insert(format!("{site_rel}/{pth}"), text.into_bytes());
        }
        if !copied {
            bail!(
                "{name} is installed editable from {}, in a way cargo pybundle cannot turn into a \
                 real install (no folder in its .pth files, no finder mapping); make it \
                 non-editable (`editable = false` in the manifest)",
                source.display()
            );
        }
        Ok(())
    }

    /// Copies the importable entries of `folder` (a `.pth` line) to `into`.
    fn copy_importable(&mut self, folder: &Path, into: &str) -> Result<()> {
        self.dirs(into);
        let mut children: Vec<PathBuf> = fs_err::read_dir(folder)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for child in children {
            let name = file_name(&child);
            if skipped(&child, &name) {
                continue;
            }
            let dest = format!("{into}/{name}");
            if child.is_dir() && is_identifier(&name) {
                self.copy_tree(&child, &dest)?;
            } else if child.is_file() && is_module(&name) {
                self.add_file(&child, &dest)?;
            }
        }
        Ok(())
    }

    /// Copies a whole package folder (bytecode, hidden entries and build folders aside).
    fn copy_tree(&mut self, folder: &Path, into: &str) -> Result<()> {
        self.dirs(into);
        let walker = WalkDir::new(folder)
            .min_depth(1)
            .sort_by_file_name()
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| !skipped(e.path(), &e.file_name().to_string_lossy()));
        for entry in walker {
            let entry = entry.with_context(|| format!("reading {}", folder.display()))?;
            let rel = entry.path().strip_prefix(folder).unwrap_or(entry.path());
            let dest = format!("{into}/{}", rel.display());
            if entry.file_type().is_dir() {
                self.dirs(&dest);
            } else if entry.file_type().is_file() {
                self.add_file(entry.path(), &dest)?;
            } else if entry.file_type().is_symlink() {
                self.added.push(Entry {
                    path: dest,
                    mode: 0o777,
                    source: Source::Symlink(fs_err::read_link(entry.path())?),
                    owner: None,
                });
            }
        }
        Ok(())
    }

    /// `path` and its parents from `_pybundle_local` down, as folder entries.
    fn dirs(&mut self, path: &str) {
        let Some(start) = path.find(LOCAL_DIR) else {
            return;
        };
        let mut end = start + LOCAL_DIR.len();
        loop {
            let dir = &path[..end];
            if self.seen.insert(dir.to_owned()) {
                self.added.push(super::walk::dir_entry(dir));
            }
            if end >= path.len() {
                break;
            }
            end = path[end + 1..]
                .find('/')
                .map_or(path.len(), |n| end + 1 + n);
        }
    }

    fn add_file(&mut self, source: &Path, dest: &str) -> Result<()> {
        let meta = fs_err::metadata(source)?;
        #[cfg(unix)]
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o755;
        #[cfg(not(unix))]
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        self.added.push(Entry {
            path: dest.to_owned(),
            mode,
            source: Source::File(source.to_path_buf()),
            owner: None,
        });
        Ok(())
    }

    fn apply(self, entries: &mut Vec<Entry>) {
        let Plan {
            added,
            dropped,
            mut rewritten,
            ..
        } = self;
        entries.retain(|e| !dropped.contains(&e.path));
        for entry in entries.iter_mut() {
            if let Some(bytes) = rewritten.remove(&entry.path) {
                entry.source = Source::Bytes(bytes);
            }
        }
        if !added.is_empty() {
            entries.extend(added);
            // The walk's order: parents before children, siblings sorted.
            entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
            entries.dedup_by(|a, b| a.path == b.path);
        }
    }
}

/// What `direct_url.json` says about an installed distribution.
struct DirectUrl {
    /// The local folder or file it came from (`file://` URLs only).
    path: Option<PathBuf>,
    editable: bool,
}

/// `(dist-info folder, direct_url.json)` of every distribution in `site` that has one.
fn direct_urls(site: &Path) -> Result<Vec<(PathBuf, DirectUrl)>> {
    let mut out = Vec::new();
    let Ok(read) = fs_err::read_dir(site) else {
        return Ok(out);
    };
    let mut dirs: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "dist-info"))
        .collect();
    dirs.sort();
    for dir in dirs {
        let file = dir.join("direct_url.json");
        let Ok(text) = fs_err::read_to_string(&file) else {
            continue;
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
        let path = json["url"]
            .as_str()
            .and_then(|u| u.strip_prefix("file://"))
            .map(|p| PathBuf::from(percent_decode(p)));
        let editable = json["dir_info"]["editable"].as_bool().unwrap_or(false);
        out.push((dir, DirectUrl { path, editable }));
    }
    Ok(out)
}

/// `name` of `name-1.0.dist-info`.
fn dist_name(dist_info: &Path) -> String {
    let stem = file_name(dist_info);
    let stem = stem.trim_end_matches(".dist-info");
    stem.split('-').next().unwrap_or(stem).to_owned()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_finder(file: &str) -> bool {
    file.starts_with("__editable__") && file.ends_with("_finder.py")
}

/// The `MAPPING = {'name': '/abs/path', ...}` dict of a setuptools editable finder.
fn finder_mapping(source: &str) -> Vec<(String, String)> {
    let Some(start) = source.find("MAPPING") else {
        return Vec::new();
    };
    let rest = &source[start..];
    let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) else {
        return Vec::new();
    };
    let body = &rest[open + 1..close.max(open + 1)];
    let strings: Vec<String> = body
        .split(['\'', '"'])
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect();
    strings
        .chunks(2)
        .filter_map(|pair| match pair {
            [k, v] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// `lib/python3.X/site-packages` folders of the prefix.
fn site_packages(prefix: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "Lib"] {
        let Ok(read) = fs_err::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                if name.starts_with("python") {
                    Some(p.join("site-packages"))
                } else {
                    (name == "site-packages").then_some(p)
                }
            })
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

fn skipped(path: &Path, name: &str) -> bool {
    name.starts_with('.')
        || name == "__pycache__"
        || name.ends_with(".pyc")
        || (path.is_dir() && path.join("CACHEDIR.TAG").is_file())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_module(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    is_identifier(stem) && (ext == "py" || ext.ends_with("so") || ext.ends_with("pyd"))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Fails on a packed `.pth`, editable finder or `direct_url.json` that names an absolute path
/// outside the prefix.
fn check_nothing_points_outside(prefix: &Path, env_dir: &str, entries: &[Entry]) -> Result<()> {
    let prefix_str = prefix.to_string_lossy();
    for entry in entries {
        let name = entry.path.rsplit('/').next().unwrap_or("");
        let linking = name.ends_with(".pth") || is_finder(name) || name == "direct_url.json";
        if !linking || !entry.path.starts_with(env_dir) {
            continue;
        }
        let text = match &entry.source {
            Source::File(path) => fs_err::read_to_string(path).unwrap_or_default(),
            Source::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => continue,
        };
        let named: Vec<String> = if name.ends_with(".pth") {
            // Lines run by `site` (`import …`) are code, not paths.
            text.lines()
                .filter(|l| !l.starts_with("import"))
                .map(|l| l.trim().to_owned())
                .collect()
        } else if name == "direct_url.json" {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|j| j["url"].as_str().map(str::to_owned))
                .and_then(|u| u.strip_prefix("file://").map(percent_decode))
                .into_iter()
                .collect()
        } else {
            finder_mapping(&text).into_iter().map(|(_, v)| v).collect()
        };
        let outside = named
            .into_iter()
            .find(|p| Path::new(p).is_absolute() && !Path::new(p).starts_with(prefix_str.as_ref()));
        if let Some(path) = outside {
            let owner = entry
                .path
                .split('/')
                .find(|p| p.ends_with(".dist-info"))
                .map(|d| dist_name(Path::new(d)))
                .unwrap_or_else(|| name.trim_end_matches(".pth").to_owned());
            bail!(
                "{} in the environment names {path}, outside the environment: the bundle would \
                 import `{owner}` from the build machine's disk. Install it as a real package \
                 (`editable = false`, or a wheel) or remove it from the environment",
                entry.path
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setuptools_finder_mapping_is_read() {
        let src = "import sys\nMAPPING: dict[str, str] = {'mypkg': '/src/mypkg/mypkg', \"other\": \"/x/other.py\"}\nNAMESPACES = {}\n";
        assert_eq!(
            finder_mapping(src),
            [
                ("mypkg".to_owned(), "/src/mypkg/mypkg".to_owned()),
                ("other".to_owned(), "/x/other.py".to_owned())
            ]
        );
        assert!(finder_mapping("nothing here").is_empty());
    }

    /// A prefix with one editable install of each kind (a `.pth` folder in a src layout, a
    /// setuptools finder) and a non-editable local one; the sources live outside it.
    fn prefix_with_local_installs(root: &Path) -> (PathBuf, Vec<Entry>) {
        let prefix = root.join("env");
        let site = prefix.join("lib/python3.11/site-packages");
        let write = |path: &Path, text: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        // hatchling/uv style: `_editable_impl_app.pth` naming `<project>/src`.
        let project = root.join("project");
        write(&project.join("src/app/__init__.py"), "X = 1\n");
        write(&project.join("src/app/data.txt"), "data\n");
        write(&project.join("src/app/__pycache__/x.pyc"), "junk");
        write(&project.join("src/notes.md"), "not importable\n");
        write(&project.join("src/.hidden/x.py"), "");
        write(
            &site.join("_editable_impl_app.pth"),
            &format!("{}\n", project.join("src").display()),
        );
        let app = site.join("app-0.1.0.dist-info");
        write(
            &app.join("RECORD"),
            "_editable_impl_app.pth,sha256=x,1\napp-0.1.0.dist-info/RECORD,,\n",
        );
        write(
            &app.join("direct_url.json"),
            &format!(
                "{{\"url\":\"file://{}\",\"dir_info\":{{\"editable\":true}}}}",
                project.display()
            ),
        );
        // setuptools strict style: a finder with MAPPING and a `.pth` importing it.
        let lib = root.join("lib-src");
        write(&lib.join("lib/core.py"), "Y = 2\n");
        let finder = "__editable___lib_1_0_finder.py";
        write(
            &site.join(finder),
            &format!("MAPPING = {{'lib': '{}'}}\n", lib.join("lib").display()),
        );
        write(
            &site.join("__editable__.lib-1.0.pth"),
            "import __editable___lib_1_0_finder; __editable___lib_1_0_finder.install()\n",
        );
        let libinfo = site.join("lib-1.0.dist-info");
        write(
            &libinfo.join("RECORD"),
            &format!("__editable__.lib-1.0.pth,,\n{finder},,\n"),
        );
        write(
            &libinfo.join("direct_url.json"),
            &format!(
                "{{\"url\":\"file://{}\",\"dir_info\":{{\"editable\":true}}}}",
                lib.display()
            ),
        );
        // A real (non-editable) install from a local folder: only its direct_url names it.
        let real = site.join("real-2.0.dist-info");
        write(&real.join("RECORD"), "real/__init__.py,,\n");
        write(&site.join("real/__init__.py"), "");
        write(
            &real.join("direct_url.json"),
            "{\"url\":\"file:///home/dev/real\",\"dir_info\":{}}",
        );
        let mut entries = Vec::new();
        let set = super::super::walk::globs(&[]).unwrap();
        super::super::walk::walk(&prefix, "env", &set, &mut entries).unwrap();
        (prefix, entries)
    }

    fn content(entries: &[Entry], path: &str) -> String {
        let entry = entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no {path}"));
        match &entry.source {
            Source::File(p) => std::fs::read_to_string(p).unwrap(),
            Source::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            _ => panic!("{path} is not a file"),
        }
    }

    #[test]
    fn editable_installs_are_copied_in_and_pointed_at() {
        let tmp = tempfile::tempdir().unwrap();
        let (prefix, mut entries) = prefix_with_local_installs(tmp.path());
        // A build folder inside the package, marked as a cache (as cargo marks `target/`).
        let build = tmp.path().join("project/src/app/build");
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(
            build.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .unwrap();
        std::fs::write(build.join("generated.py"), "").unwrap();
        let found = make_real(&prefix, "env", &mut entries).unwrap();
        let summary: Vec<(&str, bool)> = found
            .iter()
            .map(|l| (l.name.as_str(), l.editable))
            .collect();
        assert_eq!(summary, [("app", true), ("lib", true), ("real", false)]);
        let site = "env/lib/python3.11/site-packages";
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        for want in [
            format!("{site}/_pybundle_local"),
            format!("{site}/_pybundle_local/app/app/__init__.py"),
            format!("{site}/_pybundle_local/app/app/data.txt"),
            format!("{site}/_pybundle_local/lib/lib/core.py"),
        ] {
            assert!(paths.contains(&want.as_str()), "{want} missing: {paths:#?}");
        }
        for gone in [
            "__pycache__",
            "notes.md",
            ".hidden",
            "direct_url.json",
            "_finder.py",
            "app/build",
        ] {
            assert!(
                !paths.iter().any(|p| p.contains(gone)),
                "{gone} packed: {paths:#?}"
            );
        }
        assert_eq!(
            content(&entries, &format!("{site}/_editable_impl_app.pth")),
            "_pybundle_local/app\n"
        );
        assert_eq!(
            content(&entries, &format!("{site}/__editable__.lib-1.0.pth")),
            "_pybundle_local/lib\n"
        );
        // Parents before children, as a tar needs them.
        let local = paths
            .iter()
            .position(|p| p.ends_with("/_pybundle_local"))
            .unwrap();
        let file = paths
            .iter()
            .position(|p| p.ends_with("_pybundle_local/app/app/__init__.py"))
            .unwrap();
        assert!(local < file);
    }

    #[test]
    fn a_link_outside_the_prefix_fails_naming_the_package() {
        let tmp = tempfile::tempdir().unwrap();
        let (prefix, mut entries) = prefix_with_local_installs(tmp.path());
        let site = prefix.join("lib/python3.11/site-packages");
        // A hand-made .pth that no installer owns, naming a folder on the build machine.
        std::fs::write(site.join("extra.pth"), "/home/dev/elsewhere\n").unwrap();
        entries.push(Entry {
            path: "env/lib/python3.11/site-packages/extra.pth".into(),
            mode: 0o644,
            source: Source::File(site.join("extra.pth")),
            owner: None,
        });
        let err = make_real(&prefix, "env", &mut entries)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("extra.pth") && err.contains("/home/dev/elsewhere"),
            "{err}"
        );
        assert!(err.contains("`extra`"), "{err}");
    }

    #[test]
    fn names_and_modules() {
        assert!(is_identifier("mypkg") && is_identifier("_x1") && !is_identifier("my-pkg"));
        assert!(!is_identifier("1x") && !is_identifier(""));
        assert!(is_module("m.py") && is_module("fast.cpython-311-x86_64-linux-gnu.so"));
        assert!(!is_module("setup.cfg") && !is_module("README.md"));
        assert_eq!(dist_name(Path::new("/s/my_pkg-0.1.0.dist-info")), "my_pkg");
        assert_eq!(percent_decode("/a%20b/c"), "/a b/c");
    }
}
