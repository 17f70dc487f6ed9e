//! Packing: the conda prefix, the application's scripts and the `pybundle` Python package into
//! one deterministic zstd tar (the archive contract is in `pybundle_runtime::format`).
//!
//! The same inputs always give the same bytes: entries come from a sorted walk, every header
//! has the fixed mtime, uid/gid 0 and no user names, modes are kept, symlinks stay symlinks.

pub mod activation;
pub mod key;
pub mod local;
pub mod scan;
pub mod strip;
pub mod tarball;
pub mod walk;

use anyhow::{bail, Context as _, Result};
use pybundle_runtime::format::{
    self, write, FileMode, Manifest, PackageInfo, PythonInfo, Relocation, ENV_DIR, PYTHON_PKG_DIR,
    SCRIPTS_DIR,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tar::EntryType;

use crate::ui::Ui;
use walk::{dir_entry, globs, walk, Entry, Source};

/// Everything packing needs.
#[derive(Clone, Debug)]
pub struct Input {
    /// Application (Cargo package) name.
    pub name: String,
    /// The installed conda prefix.
    pub prefix: PathBuf,
    /// Conda platform, e.g. `linux-64`.
    pub platform: String,
    /// The application's scripts folder.
    pub scripts: PathBuf,
    /// Globs relative to the prefix and to the scripts folder.
    pub exclude: Vec<String>,
    /// zstd level.
    pub level: i32,
    /// What to leave out of the prefix's libraries and programs.
    pub strip: strip::Strip,
    /// pixi's package cache (`pixi info`'s `cache_dir`), for packages that do not record
    /// `extracted_package_dir`.
    pub pkgs_cache: Option<PathBuf>,
    /// The `pybundle` Python package packed under `lib/`.
    pub python: crate::runtime::PythonHalf,
    /// How to run the environment through pixi to capture its activation variables; `None`
    /// sources the prefix's activate.d scripts instead (see [`activation`]).
    pub activation: Option<activation::PixiRun>,
}

/// What packing produced.
#[derive(Clone, Debug)]
pub struct Packed {
    /// The manifest written as the first entry.
    pub manifest: Manifest,
    /// Binary files holding the build prefix that could not be relocated.
    pub unrelocatable: Vec<String>,
    /// Size of the archive in bytes.
    pub archive_size: u64,
}

/// Packs `input` into `dest`: the entries to pack, the tar body (relocation table built on the
/// way), the activation variables, then the manifest in front.
pub fn pack(input: &Input, dest: &Path, ui: &Ui) -> Result<Packed> {
    if !input.scripts.is_dir() {
        bail!(
            "the scripts folder {} does not exist; create it with your .py files or set `scripts` \
             in [package.metadata.pybundle]",
            input.scripts.display()
        );
    }
    let build_prefix = input
        .prefix
        .to_str()
        .context("the environment prefix is not valid UTF-8")?;
    let records = scan::conda_records(&input.prefix)?;
    let (placed, missing) = scan::placeholders(&records, input.pkgs_cache.as_deref())?;
    for pkg in &missing {
        ui.warn(format!(
            "package cache copy of {pkg} not found; its files are relocated by scanning only"
        ));
    }
    let python = python_info(&records)?;
    let (mut packages, owners) = packages(&records, &input.prefix);
    let entries = entries(input, &owners, ui)?;

    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut body_file = tempfile::tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut stripper = (input.strip == strip::Strip::DebugInfo).then(strip::Stripper::from_env);
    let builder = write::Body::new(std::io::BufWriter::new(&mut body_file), input.level)
        .context("starting zstd")?;
    let body = write_body(
        &entries,
        &placed,
        build_prefix,
        stripper.as_mut(),
        builder,
        &mut packages,
        ui,
    )?;
    if let Some(s) = &stripper {
        s.report(ui);
    }
    let activation = activation(input, ui);
    packages.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let manifest = Manifest {
        format_version: format::FORMAT_VERSION,
        id: body.id,
        name: input.name.clone(),
        creator: format!("cargo-pybundle {}", env!("CARGO_PKG_VERSION")),
        platform: input.platform.clone(),
        python,
        build_prefix: build_prefix.to_owned(),
        relocations: body.relocations,
        activation,
        scripts_dir: SCRIPTS_DIR.to_owned(),
        unpacked_size: body.unpacked_size,
        file_count: entries.len() as u64,
        packages,
    };
    let json = serde_json::to_vec_pretty(&manifest).context("serializing the manifest")?;
    let frame1 = write::manifest_frame(&json, input.level).context("compressing the manifest")?;
    let archive_size = tarball::assemble(&frame1, &mut body_file, dest)?;
    Ok(Packed {
        manifest,
        unrelocatable: body.unrelocatable,
        archive_size,
    })
}

/// One entry per installed package (conda records, then PyPI distributions no conda package
/// owns), and which package owns each file (paths relative to the prefix).
fn packages(
    records: &[scan::CondaRecord],
    prefix: &Path,
) -> (Vec<PackageInfo>, BTreeMap<String, usize>) {
    let info = |name: &str, version: &str, build: &str| PackageInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        build: build.to_owned(),
        size: 0,
        files: 0,
    };
    let mut packages: Vec<PackageInfo> = records
        .iter()
        .map(|r| info(&r.name, &r.version, &r.build))
        .collect();
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        for f in &r.files {
            owners.insert(f.clone(), i);
        }
    }
    // PyPI packages (not owned by a conda package: conda's python packages have dist-info
    // directories too, listed in their conda-meta files).
    let pypi: Vec<_> = scan::pypi_packages(prefix)
        .into_iter()
        .filter(|(_, _, files)| files.iter().all(|f| !owners.contains_key(f)))
        .collect();
    for (name, version, files) in pypi {
        packages.push(info(&name, &version, ""));
        for f in files {
            owners.insert(f, packages.len() - 1);
        }
    }
    (packages, owners)
}

/// The archive's entries in order: the prefix (our stamp left out, editable installs made
/// real), the scripts folder, the runtime's Python package.
fn entries(input: &Input, owners: &BTreeMap<String, usize>, ui: &Ui) -> Result<Vec<Entry>> {
    let exclude = globs(&input.exclude)?;
    let mut entries = vec![dir_entry(ENV_DIR)];
    let mut special = walk(&input.prefix, ENV_DIR, &exclude, &mut entries)?;
    // Our stamp names the build machine's prefix and means nothing anywhere else.
    let stamp = format!("{ENV_DIR}/conda-meta/{}", crate::resolve::STAMP);
    entries.retain(|e| e.path != stamp);
    for local in local::make_real(&input.prefix, ENV_DIR, &mut entries)? {
        if local.editable {
            ui.status(
                "Bundling",
                format!(
                    "{} from {} (installed editable here; the bundle gets a copy)",
                    local.name,
                    local.source.display()
                ),
            );
        }
    }
    for e in &mut entries {
        let rel = e.path.strip_prefix("env/").unwrap_or("");
        e.owner = owners.get(rel).copied();
    }
    entries.push(dir_entry(SCRIPTS_DIR));
    special.extend(walk(&input.scripts, SCRIPTS_DIR, &exclude, &mut entries)?);
    for path in special {
        ui.warn(format!(
            "{}: not a file, folder or symlink; left out of the bundle",
            path.display()
        ));
    }
    entries.push(dir_entry(PYTHON_PKG_DIR));
    input.python.entries(&mut entries)?;
    Ok(entries)
}

/// What writing the body found.
struct Body {
    id: String,
    relocations: Vec<Relocation>,
    unrelocatable: Vec<String>,
    unpacked_size: u64,
}

/// Writes every entry into the compressed tar body, choosing each file's source (the package
/// cache's original for declared placeholders) and building the relocation table.
fn write_body(
    entries: &[Entry],
    placed: &BTreeMap<String, scan::Placed>,
    build_prefix: &str,
    mut stripper: Option<&mut strip::Stripper>,
    mut builder: write::Body<std::io::BufWriter<&mut std::fs::File>>,
    packages: &mut [PackageInfo],
    ui: &Ui,
) -> Result<Body> {
    let mut relocations = Vec::new();
    let mut unrelocatable = Vec::new();
    let mut unpacked_size = 0u64;
    let total: u64 = entries.iter().filter_map(|e| e.size()).sum();
    let bar = ui.bytes_bar(Some(total), "Packing");
    for entry in entries {
        let rel = entry.path.strip_prefix("env/");
        let (kind, content): (EntryType, std::borrow::Cow<'_, [u8]>) = match &entry.source {
            Source::Dir => (EntryType::Directory, Default::default()),
            Source::Symlink(target) => {
                if target.starts_with(build_prefix) {
                    ui.warn(format!(
                        "{} is an absolute symlink into the build prefix",
                        entry.path
                    ));
                }
                builder.symlink(&entry.path, entry.mode, target)?;
                if let Some(i) = entry.owner {
                    packages[i].files += 1;
                }
                continue;
            }
            Source::Embedded(bytes) => (EntryType::Regular, (*bytes).into()),
            Source::Bytes(bytes) => (EntryType::Regular, bytes.as_slice().into()),
            Source::File(path) => {
                let placed_here = rel.and_then(|r| placed.get(r));
                let source = placed_here.map_or(path.as_path(), |p| p.source.as_path());
                let mut content = fs_err::read(source)?;
                if let (Some(stripper), Some(_)) = (stripper.as_deref_mut(), rel) {
                    content = stripper.debug_info(&entry.path, content)?;
                }
                if let Some(p) = placed_here {
                    relocations.push(Relocation {
                        path: entry.path.clone(),
                        placeholder: p.placeholder.clone(),
                        mode: p.mode,
                    });
                } else if rel.is_some() {
                    match scan::scan(&content, build_prefix.as_bytes()) {
                        scan::Hit::None => {}
                        scan::Hit::Text => relocations.push(Relocation {
                            path: entry.path.clone(),
                            placeholder: build_prefix.to_owned(),
                            mode: FileMode::Text,
                        }),
                        scan::Hit::Binary => unrelocatable.push(entry.path.clone()),
                    }
                }
                (EntryType::Regular, content.into())
            }
        };
        let size = content.len() as u64;
        builder.append(kind, &entry.path, entry.mode, &content)?;
        if kind == EntryType::Directory {
            continue;
        }
        unpacked_size += size;
        bar.inc(size);
        if let Some(i) = entry.owner {
            packages[i].size += size;
            packages[i].files += 1;
        }
    }
    let (_, id) = builder.finish().context("finishing the archive body")?;
    bar.finish_and_clear();
    relocations.sort();
    Ok(Body {
        id,
        relocations,
        unrelocatable,
        unpacked_size,
    })
}

/// The activation variables: captured through pixi, or from the activate.d scripts of a bare
/// prefix; a failure is a warning (the bundle then sets none).
fn activation(input: &Input, ui: &Ui) -> BTreeMap<String, String> {
    let captured = match &input.activation {
        Some(run) => activation::capture(run, &input.prefix, ui),
        None => activation::from_scripts(&input.prefix),
    };
    captured.unwrap_or_else(|err| {
        ui.warn(format!("{err:#}; the bundle sets no activation variables"));
        BTreeMap::new()
    })
}

/// The interpreter from the `python` conda package.
fn python_info(records: &[scan::CondaRecord]) -> Result<PythonInfo> {
    let Some(python) = records.iter().find(|r| r.name == "python") else {
        bail!("the environment has no `python` package; add `python = \"3.11.*\"` to [dependencies] in pixi.toml");
    };
    let mut parts = python.version.split('.');
    let (major, minor) = (parts.next().unwrap_or("3"), parts.next().unwrap_or(""));
    let path = if cfg!(windows) {
        format!("{ENV_DIR}/python.exe")
    } else {
        format!("{ENV_DIR}/bin/python{major}.{minor}")
    };
    Ok(PythonInfo {
        path,
        version: python.version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    const PLACEHOLDER: &str = "/opt/build_placehold_placehold_placehold";

    /// A hand-made prefix and package cache: one conda package with a binary and a text
    /// placeholder file, an entry-point-like text file, a binary naming the prefix, a symlink.
    fn fake_env(root: &Path) -> Input {
        let prefix = root.join("env-prefix");
        let pkg = root.join("pkgs/python-3.11.7-h0");
        let p = prefix.to_str().unwrap();
        for (dir, files) in [
            (
                &prefix,
                vec![
                    (
                        "bin/python3.11",
                        format!("\x7fELF\0{p}/lib\0\0\0\0").into_bytes(),
                    ),
                    (
                        "bin/tool",
                        format!("#!{p}/bin/python3.11\nprint(1)\n").into_bytes(),
                    ),
                    ("lib/libx.so", format!("\0\x01{p}").into_bytes()),
                    ("share/a.txt", format!("{p}/share\n").into_bytes()),
                ],
            ),
            (
                &pkg,
                vec![
                    (
                        "bin/python3.11",
                        format!("\x7fELF\0{PLACEHOLDER}/lib\0").into_bytes(),
                    ),
                    ("share/a.txt", format!("{PLACEHOLDER}/share\n").into_bytes()),
                ],
            ),
        ] {
            for (rel, content) in files {
                std::fs::create_dir_all(dir.join(rel).parent().unwrap()).unwrap();
                std::fs::write(dir.join(rel), content).unwrap();
            }
        }
        std::os::unix::fs::symlink("python3.11", prefix.join("bin/python3")).unwrap();
        std::fs::create_dir_all(prefix.join("conda-meta")).unwrap();
        let record = serde_json::json!({
            "name": "python", "version": "3.11.7", "build": "h0",
            "files": ["bin/python3", "bin/python3.11", "bin/tool", "lib/libx.so", "share/a.txt"],
            "extracted_package_dir": pkg,
        });
        std::fs::write(
            prefix.join("conda-meta/python-3.11.7-h0.json"),
            record.to_string(),
        )
        .unwrap();
        let paths = serde_json::json!({"paths_version": 1, "paths": [
            {"_path": "bin/python3.11", "prefix_placeholder": PLACEHOLDER, "file_mode": "binary"},
            {"_path": "share/a.txt", "prefix_placeholder": PLACEHOLDER, "file_mode": "text"},
            {"_path": "bin/tool"},
        ]});
        std::fs::create_dir_all(pkg.join("info")).unwrap();
        std::fs::write(pkg.join("info/paths.json"), paths.to_string()).unwrap();
        let scripts = root.join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::write(scripts.join("main.py"), "print('hi')\n").unwrap();
        Input {
            name: "app".into(),
            prefix,
            platform: "linux-64".into(),
            scripts,
            exclude: crate::metadata::DEFAULT_EXCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            level: 3,
            strip: strip::Strip::None,
            pkgs_cache: None,
            python: crate::runtime::PythonHalf::Own,
            activation: None,
        }
    }

    fn entry(archive: &[u8], wanted: &str) -> tar::Header {
        let tar = zstd::decode_all(archive).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let found = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some(wanted));
        found
            .map(|e| e.header().clone())
            .unwrap_or_else(|| panic!("{wanted} missing"))
    }

    fn content(archive: &[u8], wanted: &str) -> Vec<u8> {
        let tar = zstd::decode_all(archive).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some(wanted) {
                let mut out = Vec::new();
                e.read_to_end(&mut out).unwrap();
                return out;
            }
        }
        panic!("{wanted} missing")
    }

    #[test]
    fn relocation_table_from_placeholders_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        let input = fake_env(dir.path());
        let dest = dir.path().join("out/bundle.tar.zst");
        let packed = pack(
            &input,
            &dest,
            &Ui {
                quiet: true,
                verbose: 0,
            },
        )
        .unwrap();
        let m = &packed.manifest;
        let build_prefix = input.prefix.to_str().unwrap();
        let got: Vec<(&str, &str, FileMode)> = m
            .relocations
            .iter()
            .map(|r| (r.path.as_str(), r.placeholder.as_str(), r.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("env/bin/python3.11", PLACEHOLDER, FileMode::Binary),
                ("env/bin/tool", build_prefix, FileMode::Text),
                ("env/share/a.txt", PLACEHOLDER, FileMode::Text),
            ]
        );
        assert_eq!(packed.unrelocatable, ["env/lib/libx.so"]);
        assert_eq!(
            (m.python.path.as_str(), m.python.version.as_str()),
            ("env/bin/python3.11", "3.11.7")
        );

        let archive = std::fs::read(&dest).unwrap();
        // Placeholder files come from the package cache, with the placeholder inside.
        let original =
            std::fs::read(dir.path().join("pkgs/python-3.11.7-h0/bin/python3.11")).unwrap();
        assert_eq!(content(&archive, "env/bin/python3.11"), original);
        let link = entry(&archive, "env/bin/python3");
        assert_eq!(link.entry_type(), tar::EntryType::Symlink);
        assert_eq!(
            link.link_name().unwrap().unwrap().to_str(),
            Some("python3.11")
        );
        assert_eq!(content(&archive, "scripts/main.py"), b"print('hi')\n");
        let h = entry(&archive, "env/bin/tool");
        assert_eq!(
            (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
            (format::ARCHIVE_MTIME, 0, 0)
        );
        assert_eq!(m.packages[0].files, 5);

        // The same inputs again: the same bytes.
        let again = dir.path().join("again.tar.zst");
        pack(
            &input,
            &again,
            &Ui {
                quiet: true,
                verbose: 0,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(again).unwrap(), archive);
    }

    /// A program built by `cc -g` that holds `text` as a string constant.
    fn debug_program(dir: &Path, text: &str, out: &Path) {
        let src = dir.join("p.c");
        std::fs::write(
            &src,
            format!(
                "const char *where = \"{text}\";\nint main(void) {{ return where[0] == 0; }}\n"
            ),
        )
        .unwrap();
        let status = std::process::Command::new("cc")
            .args(["-g", "-O1", "-o"])
            .arg(out)
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn debug_info_is_left_out_of_the_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = fake_env(dir.path());
        // The placeholder copy of the interpreter, and a library of the app's scripts folder.
        let cached = dir.path().join("pkgs/python-3.11.7-h0/bin/python3.11");
        debug_program(dir.path(), &format!("{PLACEHOLDER}/lib"), &cached);
        debug_program(dir.path(), "mine", &input.scripts.join("own.so"));
        let original = std::fs::read(&cached).unwrap();
        let own = std::fs::read(input.scripts.join("own.so")).unwrap();
        let quiet = Ui {
            quiet: true,
            verbose: 0,
        };

        let kept = dir.path().join("kept.tar.zst");
        pack(&input, &kept, &quiet).unwrap();
        assert_eq!(
            content(&std::fs::read(&kept).unwrap(), "env/bin/python3.11"),
            original
        );

        input.strip = strip::Strip::DebugInfo;
        let dest = dir.path().join("stripped.tar.zst");
        let packed = pack(&input, &dest, &quiet).unwrap();
        let archive = std::fs::read(&dest).unwrap();
        let python = content(&archive, "env/bin/python3.11");
        assert!(
            python.len() < original.len(),
            "{} !< {}",
            python.len(),
            original.len()
        );
        let sections = |data: &[u8]| -> Vec<String> {
            use object::{Object as _, ObjectSection as _};
            let file = object::File::parse(data).unwrap();
            file.sections()
                .map(|s| s.name().unwrap().to_owned())
                .collect()
        };
        assert!(sections(&original).iter().any(|n| n == ".debug_info"));
        assert!(!sections(&python).iter().any(|n| n.starts_with(".debug")));
        // Still the placeholder copy, still relocated at first run; the scripts are the app's.
        assert!(memchr::memmem::find(&python, PLACEHOLDER.as_bytes()).is_some());
        assert!(packed
            .manifest
            .relocations
            .iter()
            .any(|r| r.path == "env/bin/python3.11" && r.mode == FileMode::Binary));
        assert_eq!(content(&archive, "scripts/own.so"), own);
        let entry_size = entry(&archive, "env/bin/python3.11").size().unwrap();
        assert_eq!(entry_size, python.len() as u64);
    }

    #[test]
    fn missing_python_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let input = fake_env(dir.path());
        std::fs::remove_file(input.prefix.join("conda-meta/python-3.11.7-h0.json")).unwrap();
        let err = pack(&input, &dir.path().join("x.tar.zst"), &Ui::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `python` package"), "{err}");
        assert!(!dir.path().join("x.tar.zst").exists());
    }
}
