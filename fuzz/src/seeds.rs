//! Writes seed corpora for the fuzz targets from real inputs: frames the real Python half of
//! the protocol writes (host `python3` running `pybundle._script`, as the runtime starts it),
//! and, given a bundle archive written by `cargo pybundle pack`, its manifest (as archive, as
//! JSON and as raw tar), windows of its binary and text files around their placeholders, and
//! a small real body for the `archive` target beside the hostile shapes of
//! [`hostile_seeds`].
//!
//! Usage: `seeds <corpus dir> [<archive>]`; `cargo xtask stress` runs it.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pybundle_runtime::format::{FileMode, Manifest};
use pybundle_runtime::fuzzing;

mod hostile_seeds;

/// The prefix a first run would write, as long as a real cache path.
const NEW_PREFIX: &str = "/home/user/.cache/pybundle/hello-0123456789abcdef/env";

/// The frame cap for frame seeds: 64 KiB as the 3-byte prefix the target reads.
const CAP: [u8; 3] = [0x01, 0x00, 0x00];

/// Scripts for the real Python runner: progress messages, nested and non-ASCII data, bytes,
/// an exception with a traceback, and a plain reply.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "progress",
        "import pybundle\nfor i in range(3):\n    pybundle.send({'step': i, 'of': 3})\n\
         pybundle.reply({'input': pybundle.input(), 'text': 'h\u{e9}llo \u{2713}', \
         'nested': [[1, 2.5, None, True], {'k': 'v'}]})\n",
    ),
    (
        "bytes",
        "import pybundle\npybundle.reply({'blob': bytes(range(256)), 'n': 1})\n",
    ),
    (
        "error",
        "def f(x):\n    raise ValueError('bad value: %r' % (x,))\nf([1, 'two'])\n",
    ),
    ("plain", "import pybundle\npybundle.reply(42)\n"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let corpus = PathBuf::from(args.next().ok_or("usage: seeds <corpus dir> [<archive>]")?);
    let archive = args.next().map(PathBuf::from);
    let frames = frame_seeds(&corpus.join("frame_decoder"))?;
    eprintln!("seeds: {frames} real frame streams");
    if let Some(archive) = archive {
        let bytes = std::fs::read(&archive)?;
        let (manifests, windows) = archive_seeds(&bytes, &corpus)?;
        let manifest = fuzzing::manifest(&bytes)?;
        let limits = hostile_seeds::write_seeds(&bytes, &manifest, &corpus)?;
        eprintln!(
            "seeds: {manifests} manifest seeds, {windows} relocation windows, {limits} archive \
             and text relocation seeds from {}",
            archive.display()
        );
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}

/// Runs each script through the real runner and keeps what it wrote on the frame channel.
fn frame_seeds(dir: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let python = std::env::var_os("PYBUNDLE_HOST_PYTHON").unwrap_or_else(|| "python3".into());
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pybundle-runtime/python");
    let scratch = std::env::temp_dir().join(format!("pybundle-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let mut count = 0;
    for (name, source) in SCRIPTS {
        let script = scratch.join(format!("{name}.py"));
        std::fs::write(&script, source)?;
        // The command line and start message the runtime uses (pybundle-runtime's protocol).
        let mut child = Command::new(&python)
            .arg("-I")
            .args(fuzzing::script_command(&lib, 65536, &script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let start = fuzzing::encode_frame(&fuzzing::script_start(br#"{"seed":[1,"x"]}"#), 65536)?;
        child.stdin.take().ok_or("no stdin")?.write_all(&start)?;
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .ok_or("no stdout")?
            .read_to_end(&mut out)?;
        child.wait()?;
        let decoded = fuzzing::decode_frames(&out, 65536);
        if decoded.frames.is_empty() || decoded.error.is_some() {
            return Err(format!(
                "the Python runner wrote no clean frames for {name}.py ({} bytes, {:?}); is \
                 {} a Python 3.8+?",
                out.len(),
                decoded.error,
                python.to_string_lossy()
            )
            .into());
        }
        write(dir, &format!("python-{name}"), &[&CAP[..], &out].concat())?;
        // The same stream under a cap it exceeds, to start the over-the-cap paths.
        write(
            dir,
            &format!("python-{name}-small-cap"),
            &[&[0, 0, 8][..], &out].concat(),
        )?;
        count += 1;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(count)
}

/// Manifest seeds (first zstd frame; manifest JSON) and relocation windows from an archive.
fn archive_seeds(
    archive: &[u8],
    corpus: &Path,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let manifest: Manifest = fuzzing::manifest(archive)?;
    let first_len = zstd::zstd_safe::find_frame_compressed_size(archive)
        .map_err(|code| format!("no zstd frame at the start of the archive ({code})"))?;
    let dir = corpus.join("manifest");
    write(
        &dir,
        "archive-first-frame",
        &[&[0u8][..], &archive[..first_len]].concat(),
    )?;
    write(
        &dir,
        "manifest-json",
        &[&[1u8][..], &serde_json::to_vec_pretty(&manifest)?].concat(),
    )?;

    let binaries: Vec<_> = manifest
        .relocations
        .iter()
        .filter(|r| r.mode == FileMode::Binary && r.placeholder.len() <= 255)
        .collect();
    let dir = corpus.join("binary_relocation");
    let mut windows = 0;
    let mut tar = tar::Archive::new(zstd::stream::read::Decoder::new(archive)?);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(reloc) = binaries.iter().find(|r| r.path == path) else {
            continue;
        };
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let placeholder = reloc.placeholder.as_bytes();
        let Some(at) = memchr::memmem::find(&data, placeholder) else {
            continue;
        };
        // A window around the first occurrence: the fuzzer works on small inputs.
        let window = &data[at.saturating_sub(256)..(at + placeholder.len() + 768).min(data.len())];
        let seed = [
            &[placeholder.len() as u8, NEW_PREFIX.len() as u8][..],
            placeholder,
            NEW_PREFIX.as_bytes(),
            window,
        ]
        .concat();
        write(&dir, &format!("window-{windows}"), &seed)?;
        windows += 1;
        if windows == 16 {
            break;
        }
    }
    Ok((2, windows))
}
