//! The commands: each strings the steps together (config → pixi → resolve → pack → cargo).

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};

use crate::cli::{
    BuildArgs, CargoArgs, Command, InspectArgs, PackArgs, PackageArgs, PixiArgs, Pybundle,
    PythonArgs, RunArgs, TestArgs,
};
use crate::failure::{ChildExit, Step};
use crate::metadata::{self, Config, Target};
use crate::pack::{self, key::Key};
use crate::project::Project;
use crate::ui::Ui;
use crate::{cargo_build, mirror, pixi, resolve, runtime};
use pybundle_runtime::format::SCRIPTS_DIR;

/// File name of the archive inside `<target dir>/pybundle/<package>/`.
pub const ARCHIVE_NAME: &str = "bundle.tar.zst";

/// Runs the parsed command line. The clap types stop here: each step gets its own options.
pub fn run(cli: Pybundle, ui: &Ui) -> Result<()> {
    match cli.command {
        Command::Build(args) => build_command(&args, ui),
        Command::Run(args) => run_app(&args, ui),
        Command::Test(args) => test(&args, ui),
        Command::Python(args) => python(&args, ui),
        Command::Pack(args) => pack_only(&args, ui),
        Command::Inspect(args) => inspect(&args, ui),
        Command::Pixi(args) => pixi_passthrough(&args, ui),
        Command::Init(args) => init_project(&args, ui),
    }
}

fn selection(args: &PackageArgs) -> metadata::Selection {
    metadata::Selection {
        package: args.package.clone(),
        manifest_path: args.manifest_path.clone(),
        target_dir: args.target_dir.clone(),
    }
}

/// `cargo pybundle init`: writes the project and says what to do next.
fn init_project(args: &crate::cli::InitArgs, ui: &Ui) -> Result<()> {
    let written = crate::init::init(&crate::init::Options {
        dir: args.dir.clone(),
        name: args.name.clone(),
        runtime_path: args.runtime_path.clone(),
        force: args.force,
    })?;
    for path in &written {
        ui.status("Created", path.display());
    }
    ui.status(
        "Next",
        format!(
            "cd {} && cargo pybundle run -- some words to count",
            args.dir.display()
        ),
    );
    Ok(())
}

/// What an archive is prepared for.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// `cargo build` follows, with these arguments after `--`: the package must link
    /// pybundle-runtime, which must read the format written.
    Build(&'a [String]),
    /// `pack`: the archive alone.
    Pack,
    /// `python`: the environment in place and its development record; the archive is only
    /// packed when no record exists yet (the record takes the interpreter and the activation
    /// from it).
    Develop,
}

impl<'a> Purpose<'a> {
    fn cargo_args(self) -> &'a [String] {
        match self {
            Purpose::Build(args) => args,
            Purpose::Pack | Purpose::Develop => &[],
        }
    }
}

/// Config, pixi, resolve and pack (or reuse); returns the package and its archive.
///
/// `release` picks the default compression level and the archive's folder
/// (`<target>/pybundle/<package>/{debug,release}/`), so dev and release builds do not repack
/// each other's archive back and forth.
pub fn prepare(
    args: &PackageArgs,
    release: bool,
    purpose: Purpose<'_>,
    ui: &Ui,
) -> Result<(Target, PathBuf)> {
    let target =
        metadata::load(&selection(args), Some(purpose.cargo_args())).context(Step::Config)?;
    let config = &target.config;
    let mirrors = mirror::effective(&config.channel_mirrors).context(Step::Config)?;
    if !config.scripts.is_dir() {
        return Err(anyhow::anyhow!(
            "the scripts folder {} does not exist; create it with your .py files or set `scripts` \
             in [package.metadata.pybundle] of {}",
            config.scripts.display(),
            target.manifest_path.display()
        ))
        .context(Step::Config);
    }
    let project = Project::read(&config.manifest).context(Step::Config)?;
    let for_build = matches!(purpose, Purpose::Build(_));
    let python = runtime::python_half(&target, for_build, ui).context(Step::Config)?;
    let work = target.work_dir();
    let _lock = lock_work_dir(&work, ui).context(Step::Pack)?;
    let layer = mirror::layer(&mirrors, &work).context(Step::Config)?;
    let choice = choice(args.pixi.clone(), config, &project).context(Step::Config)?;
    let pixi = pixi::locate(&choice, ui).context(Step::Pixi)?;
    project.check_lock_readable(&pixi).context(Step::Pixi)?;
    let request = resolve::Request {
        project: &project,
        environment: &config.environment,
        lock: config.lock,
        config: &layer,
    };
    let probe = resolve::probe(&pixi, request, ui).context(Step::Config)?;
    let resolved = resolve::install(&pixi, request, probe, ui).context(Step::Resolve)?;

    let input = pack::Input {
        name: target.name.clone(),
        prefix: resolved.prefix.clone(),
        platform: resolved.platform.clone(),
        scripts: config.scripts.clone(),
        exclude: config.exclude.clone(),
        level: config.level(release),
        strip: config.strip(release),
        pkgs_cache: None,
        python,
        activation: Some(request.pixi_run(&pixi)),
    };
    let out_dir = work.join(if release { "release" } else { "debug" });
    fs_err::create_dir_all(&out_dir).context(Step::Pack)?;
    let archive = out_dir.join(ARCHIVE_NAME);
    let key_path = out_dir.join(format!("{ARCHIVE_NAME}.key"));
    if matches!(purpose, Purpose::Develop) && recorded(&target, &resolved.prefix) {
        return Ok((target, archive));
    }
    let key = reuse_key(&input, &project, &pixi, &layer).context(Step::Pack)?;
    if archive.is_file() && fs_err::read_to_string(&key_path).ok().as_deref() == Some(key.as_str())
    {
        ui.status(
            "Fresh",
            format!("bundle unchanged, reusing {}", archive.display()),
        );
        write_dev_record(&target, &project, &resolved.prefix, &archive).context(Step::Pack)?;
        return Ok((target, archive));
    }
    // The key goes first and comes back last: an interrupted pack is never taken as fresh.
    if key_path.exists() {
        fs_err::remove_file(&key_path).context(Step::Pack)?;
    }
    ui.status(
        "Packing",
        format!("{} ({})", target.name, resolved.prefix.display()),
    );
    let packed = pack::pack(&input, &archive, ui)
        .with_context(|| format!("writing {}", archive.display()))
        .context(Step::Pack)?;
    write_atomic(&key_path, key.as_bytes()).context(Step::Pack)?;
    report(&packed, &archive, ui);
    write_dev_record(&target, &project, &resolved.prefix, &archive).context(Step::Pack)?;
    Ok((target, archive))
}

/// Whether the development record names the environment at `prefix` (and its interpreter
/// is there).
fn recorded(target: &Target, prefix: &Path) -> bool {
    let path = pybundle_runtime::dev::Record::path(&target.target_dir, &target.name);
    fs_err::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<pybundle_runtime::dev::Record>(&b).ok())
        .is_some_and(|r| r.prefix == prefix && r.interpreter.is_file())
}

/// Records the environment in place for development mode (see `pybundle_runtime::dev`): a
/// debug build without a bundle finds it and runs the live scripts with the same interpreter
/// and activation as the bundle.
fn write_dev_record(
    target: &Target,
    project: &Project,
    prefix: &Path,
    archive: &Path,
) -> Result<()> {
    use pybundle_runtime::dev::{Record, RECORD_VERSION};
    let manifest = pybundle_runtime::manifest_of(&fs_err::read(archive)?)
        .with_context(|| format!("reading the manifest of {}", archive.display()))?;
    let interpreter = manifest
        .python
        .path
        .strip_prefix(&format!("{}/", pybundle_runtime::format::ENV_DIR))
        .map(|rel| prefix.join(rel))
        .with_context(|| {
            format!(
                "the manifest's python path `{}` is not in env/",
                manifest.python.path
            )
        })?;
    let record = Record {
        version: RECORD_VERSION,
        package: target.name.clone(),
        binaries: target.executables.clone(),
        manifest_path: target.manifest_path.clone(),
        prefix: prefix.to_path_buf(),
        interpreter,
        scripts: target.config.scripts.clone(),
        project_root: project.root.clone(),
        activation: manifest.activation,
    };
    let json = serde_json::to_vec_pretty(&record)?;
    write_atomic(&Record::path(&target.target_dir, &target.name), &json)
}

/// Which pixi to use: `--pixi`/`PYBUNDLE_PIXI`, else the configured or default version, checked
/// against the manifest's `requires-pixi`.
fn choice(explicit: Option<PathBuf>, config: &Config, project: &Project) -> Result<pixi::Choice> {
    let requires = project
        .requires_pixi()?
        .map(|spec| (spec, project.manifest.clone()));
    Ok(pixi::Choice {
        explicit,
        version: config.pixi_version.clone(),
        sha256: config.pixi_sha256.clone(),
        requires,
    })
}

/// Holds `<work>/.lock` for the rest of `prepare`: two builds of one package at once would
/// otherwise run pixi on the same prefix and race on the archive.
fn lock_work_dir(work: &Path, ui: &Ui) -> Result<std::fs::File> {
    crate::lock::exclusive(&work.join(".lock"), "another build of this package", ui)
}

fn reuse_key(
    input: &pack::Input,
    project: &Project,
    pixi: &pixi::Pixi,
    layer: &mirror::ConfigLayer,
) -> Result<String> {
    let mut key = Key::new();
    key.part("name", input.name.as_bytes());
    // A rebuilt cargo-pybundle of the same version (development) may pack differently.
    if let Some(meta) = std::env::current_exe().ok().and_then(|p| p.metadata().ok()) {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        key.part("exe", format!("{} {:?}", meta.len(), mtime).as_bytes());
    }
    // Activation is captured by this pixi, which may record other variables than another.
    key.part("pixi", pixi.version.to_string().as_bytes());
    key.part("platform", input.platform.as_bytes());
    key.part("prefix", input.prefix.to_string_lossy().as_bytes());
    key.part("exclude", input.exclude.join("\n").as_bytes());
    key.part("level", &input.level.to_le_bytes());
    key.part("strip", input.strip.name().as_bytes());
    key.file("manifest", &project.manifest)?;
    key.file("lock", &project.lock_file())?;
    key.file("project config", &project.local_config())?;
    if let Some(file) = layer.file() {
        // Not the file's text: a file:// mirror's loopback port changes from run to run.
        key.part("mirrored", file.as_os_str().as_encoded_bytes());
    }
    for script in project.activation_scripts() {
        key.file(&format!("activation {script}"), &project.root.join(&script))?;
    }
    key.tree("conda-meta", &input.prefix.join("conda-meta"))?;
    // The scripts as packed: what `exclude` leaves out (the `__pycache__` that a script run in
    // development mode writes beside it) does not change the key.
    let mut scripts = Vec::new();
    let exclude = pack::walk::globs(&input.exclude)?;
    pack::walk::walk(&input.scripts, SCRIPTS_DIR, &exclude, &mut scripts)?;
    key.entries(&scripts)?;
    // As packed: no bytecode, so a stray `__pycache__` in a runtime checkout does not change it.
    input.python.key(&mut key)?;
    Ok(key.finish())
}

fn report(packed: &pack::Packed, archive: &Path, ui: &Ui) {
    let m = &packed.manifest;
    ui.status(
        "Packed",
        format!(
            "{} ({:.1} MB from {:.1} MB, {} entries, {} relocations, python {})",
            archive.display(),
            packed.archive_size as f64 / 1e6,
            m.unpacked_size as f64 / 1e6,
            m.file_count,
            m.relocations.len(),
            m.python.version
        ),
    );
    for line in unrelocatable_warnings(&packed.unrelocatable) {
        ui.warn(line);
    }
}

/// The build's warnings for binary files that hold the build prefix without a placeholder:
/// one per file for the first 20, then how many more.
fn unrelocatable_warnings(paths: &[String]) -> Vec<String> {
    const SHOWN: usize = 20;
    let mut lines: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|path| {
            format!(
                "{path}: binary file holds the build prefix with no room to relocate it; it \
                 keeps the build machine's path"
            )
        })
        .collect();
    if paths.len() > SHOWN {
        lines.push(format!("… and {} more such files", paths.len() - SHOWN));
    }
    lines
}

fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = pack::tarball::readable_temp(".pybundle-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, content)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `cargo pybundle build`: prints the path of each binary built, one a line, on stdout.
fn build_command(args: &BuildArgs, ui: &Ui) -> Result<()> {
    for bin in build(args, ui)? {
        ui.result(bin.display());
    }
    Ok(())
}

/// Prepare and `cargo build`; returns the binaries built.
fn build(args: &BuildArgs, ui: &Ui) -> Result<Vec<PathBuf>> {
    let (target, archive, options) =
        prepare_for_cargo(&args.package, &args.cargo, &args.cargo_args, ui)?;
    let binaries = cargo_build::build(&target, &options, &archive, ui).context(Step::Cargo)?;
    Ok(binaries)
}

/// [`prepare`] for a cargo command that builds the package's programs, and that command's
/// options.
fn prepare_for_cargo(
    package: &PackageArgs,
    cargo: &CargoArgs,
    extra: &[String],
    ui: &Ui,
) -> Result<(Target, PathBuf, cargo_build::Options)> {
    let (target, archive) = prepare(package, cargo.release, Purpose::Build(extra), ui)?;
    Ok((target, archive, cargo_options(cargo, package, extra)))
}

fn cargo_options(
    cargo: &CargoArgs,
    package: &PackageArgs,
    extra: &[String],
) -> cargo_build::Options {
    cargo_build::Options {
        release: cargo.release,
        target: cargo.target.clone(),
        features: cargo.features.clone(),
        all_features: cargo.all_features,
        no_default_features: cargo.no_default_features,
        bin: cargo.bin.clone(),
        target_dir: package.target_dir.clone(),
        extra: extra.to_vec(),
    }
}

/// `cargo pybundle test`: `cargo test` of the package, its programs reading the bundle from
/// `PYBUNDLE_ARCHIVE` (they have none appended). Exits with cargo's status.
fn test(args: &TestArgs, ui: &Ui) -> Result<()> {
    let (target, archive, options) =
        prepare_for_cargo(&args.package, &args.cargo, &args.cargo_args, ui)?;
    let mut cmd = cargo_build::command("test", &target, &options, ui);
    cmd.env(
        pybundle_runtime::dev::ARCHIVE_VAR,
        std::path::absolute(&archive)?,
    );
    ui.status(
        "Testing",
        format!("{} with {}", target.name, archive.display()),
    );
    let status = cmd
        .status()
        .context("running cargo test")
        .context(Step::Cargo)?;
    exit_with(status)
}

/// `cargo pybundle python`: the interpreter of the environment in place, as development mode
/// runs it (activation variables), with the runtime's `pybundle` package and the scripts
/// folder on `PYTHONPATH`.
fn python(args: &PythonArgs, ui: &Ui) -> Result<()> {
    let (target, _) = prepare(&args.package, false, Purpose::Develop, ui)?;
    let record_path = pybundle_runtime::dev::Record::path(&target.target_dir, &target.name);
    let record: pybundle_runtime::dev::Record =
        serde_json::from_slice(&fs_err::read(&record_path)?)
            .with_context(|| format!("reading {}", record_path.display()))?;
    let lib = target.work_dir().join("python");
    runtime::python_half(&target, false, ui)
        .and_then(|half| half.write_to(&lib))
        .with_context(|| format!("writing the pybundle Python package to {}", lib.display()))
        .context(Step::Pack)?;
    let mut path = vec![lib, record.scripts.clone()];
    path.extend(
        std::env::var_os("PYTHONPATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let mut cmd = std::process::Command::new(&record.interpreter);
    for (k, v) in record.variables() {
        let current = std::env::var(&k).ok();
        cmd.env(
            &k,
            pybundle_runtime::dev::compose(&k, &v, current.as_deref()),
        );
    }
    cmd.env("PYTHONPATH", std::env::join_paths(path)?)
        .args(&args.args);
    let status = cmd
        .status()
        .with_context(|| format!("running {}", record.interpreter.display()))?;
    exit_with(status)
}

fn run_app(args: &RunArgs, ui: &Ui) -> Result<()> {
    let build_args = BuildArgs {
        package: args.package.clone(),
        cargo: args.cargo.clone(),
        cargo_args: Vec::new(),
    };
    let binaries = build(&build_args, ui)?;
    let binary = match binaries.as_slice() {
        [one] => one.clone(),
        [] => bail!("the build produced no executable to run"),
        many => {
            let wanted = args.cargo.bin.as_deref();
            let found = many
                .iter()
                .find(|b| wanted.is_some_and(|w| b.file_stem().is_some_and(|s| s == w)));
            match found {
                Some(b) => b.clone(),
                None => bail!(
                    "the package has several binaries; choose one with --bin ({})",
                    many.iter()
                        .filter_map(|b| b.file_stem())
                        .map(|s| s.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    ui.status("Running", binary.display());
    let status = std::process::Command::new(&binary)
        .args(&args.args)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    exit_with(status)
}

fn pack_only(args: &PackArgs, ui: &Ui) -> Result<()> {
    if let Some(out) = &args.output {
        // Fail before the long part if the destination cannot be written.
        check_writable(out).context(Step::Pack)?;
    }
    let (_, archive) = prepare(&args.package, args.release, Purpose::Pack, ui)?;
    match &args.output {
        Some(out) => {
            let bytes = fs_err::read(&archive).context(Step::Pack)?;
            write_atomic(out, &bytes)
                .with_context(|| {
                    format!(
                        "cannot write the archive to {}; choose a writable --output path",
                        out.display()
                    )
                })
                .context(Step::Pack)?;
            ui.result(out.display());
        }
        None => ui.result(archive.display()),
    }
    Ok(())
}

fn check_writable(out: &Path) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".pybundle-probe-")
        .tempfile_in(dir)
        .map(drop)
        .with_context(|| {
            format!(
                "cannot write the archive to {}; choose a writable --output path",
                out.display()
            )
        })
}

fn inspect(args: &InspectArgs, ui: &Ui) -> Result<()> {
    let report = crate::inspect::inspect(&args.file)?;
    if args.json {
        ui.result(serde_json::to_string_pretty(&report.manifest)?);
        return Ok(());
    }
    ui.result(crate::inspect::render(&report, args.top).trim_end());
    Ok(())
}

/// `cargo pybundle pixi`: the same pixi `build` uses for the package (its `pixi-version` and
/// `pixi-sha256`, the manifest's `requires-pixi`) with the same channel mirrors, run in the
/// pixi manifest's folder. Outside a Cargo package with a pybundle table: the default pixi.
fn pixi_passthrough(args: &PixiArgs, ui: &Ui) -> Result<()> {
    let selected = args.package.manifest_path.is_some() || args.package.package.is_some();
    let target = match metadata::load(&selection(&args.package), None) {
        Ok(target) => Some(target),
        Err(err) if selected => return Err(err.context(Step::Config)),
        Err(err) => {
            tracing::debug!("no package to take pixi settings from: {err:#}");
            None
        }
    };
    let configured = target.as_ref().map(|t| &t.config);
    let project = configured.and_then(|c| Project::read(&c.manifest).ok());
    let choice = match (configured, &project) {
        (Some(config), Some(project)) => {
            choice(args.package.pixi.clone(), config, project).context(Step::Config)?
        }
        _ => pixi::Choice {
            explicit: args.package.pixi.clone(),
            version: configured.and_then(|c| c.pixi_version.clone()),
            sha256: configured.and_then(|c| c.pixi_sha256.clone()),
            requires: None,
        },
    };
    let mirrors = mirror::effective(configured.map_or(&Default::default(), |c| &c.channel_mirrors))
        .context(Step::Config)?;
    let work = match &target {
        Some(target) => target.work_dir(),
        None => std::env::temp_dir().join(format!("cargo-pybundle-pixi-{}", std::process::id())),
    };
    let layer = mirror::layer(&mirrors, &work).context(Step::Config)?;
    let pixi = pixi::locate(&choice, ui).context(Step::Pixi)?;
    let mut cmd = std::process::Command::new(pixi.path());
    layer.apply(&mut cmd);
    if let Some(dir) = configured.and_then(|c| c.manifest.parent()) {
        cmd.current_dir(dir);
    }
    let status = cmd
        .args(&args.args)
        .status()
        .with_context(|| format!("running {}", pixi.path().display()));
    if target.is_none() && layer.file().is_some() {
        let _ = fs_err::remove_dir_all(&work);
    }
    exit_with(status?)
}

fn exit_with(status: std::process::ExitStatus) -> Result<()> {
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(ChildExit(u8::try_from(code).unwrap_or(1)).into()),
        None => Err(ChildExit(1)).context(format!("the program was killed ({status})")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_unrelocatable_binary_is_warned_about_up_to_twenty() {
        let paths: Vec<String> = (0..22).map(|i| format!("env/lib/lib{i}.so")).collect();
        let lines = super::unrelocatable_warnings(&paths);
        assert_eq!(lines.len(), 21);
        assert_eq!(
            lines[0],
            "env/lib/lib0.so: binary file holds the build prefix with no room to relocate it; it \
             keeps the build machine's path"
        );
        assert_eq!(lines[20], "… and 2 more such files");
        assert!(super::unrelocatable_warnings(&[]).is_empty());
    }
}
