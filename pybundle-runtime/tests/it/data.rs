//! Data across the channel: numpy arrays both ways (float32, int64, bool; 0-d; non-contiguous,
//! Fortran-ordered and big-endian arrays converted; object and string arrays refused with a
//! clear error), numpy scalars, `Vec<u8>` receiving bytes, borrowed buffers, and the
//! `ndarray` conversions. numpy comes from PyPI into a virtualenv of the host's Python, made
//! once under the target directory (the local conda channel has no numpy).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use pybundle_runtime::{Buffer, BufferRef, Environment, Error, NdArray, Worker};
use serde_json::{json, Value};

use crate::script::{lib_dir, scripts_dir};

/// A virtualenv of the host's Python with numpy installed (from PyPI), reused across runs.
fn numpy_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("numpy-venv");
            let python = venv.join("bin/python");
            // Test processes (nextest runs one per test) make it one at a time.
            let guard = std::fs::File::create(venv.with_extension("lock")).unwrap();
            // SAFETY: flock on a descriptor this function owns; released when `guard` drops.
            let locked = unsafe { libc::flock(guard.as_raw_fd(), libc::LOCK_EX) };
            assert_eq!(locked, 0, "cannot lock {}.lock", venv.display());
            let works = |p: &PathBuf| {
                Command::new(p)
                    .args(["-I", "-c", "import numpy"])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !works(&python) {
                let host = testkit::pyenv::host_python().interpreter;
                let made = Command::new(&host)
                    .args(["-m", "venv", "--clear"])
                    .arg(&venv)
                    .status();
                assert!(
                    made.is_ok_and(|s| s.success()),
                    "cannot make a venv at {}",
                    venv.display()
                );
                let pip = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "numpy"])
                    .status();
                assert!(
                    pip.is_ok_and(|s| s.success()),
                    "cannot install numpy from PyPI into {}",
                    venv.display()
                );
                assert!(
                    works(&python),
                    "numpy does not import in {}",
                    venv.display()
                );
            }
            python
        })
        .clone()
}

fn numpy_env() -> Environment {
    let python = numpy_python();
    let prefix = python
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    Environment::from_parts(prefix, python, scripts_dir(), lib_dir())
}

fn numpy_worker() -> Worker {
    numpy_env()
        .worker(["wnp"])
        .max_frame(300 << 20)
        .forward_stderr(false)
        .start()
        .unwrap()
}

#[test]
fn float32_int64_and_bool_arrays_round_trip() {
    let w = numpy_worker();
    let a = NdArray::from_vec(vec![0.5f32, 1.5, -2.0, 4.25], vec![2, 2]).unwrap();
    let info: Value = w.call("wnp.info", &(&a,)).unwrap();
    assert_eq!(
        info,
        json!({"type": "ndarray", "dtype": "<f4", "shape": [2, 2],
               "values": [[0.5, 1.5], [-2.0, 4.25]], "writable": true})
    );
    let scaled: NdArray = w.call("wnp.scale", &(&a, 2)).unwrap();
    assert_eq!((scaled.dtype(), scaled.shape()), ("<f4", &[2, 2][..]));
    assert_eq!(scaled.as_slice::<f32>().unwrap(), [1.0, 3.0, -4.0, 8.5]);
    // The array Python gets is writable, over the received bytes.
    let doubled: NdArray = w.call("wnp.double_in_place", &(&a,)).unwrap();
    assert_eq!(doubled.to_vec::<f32>().unwrap(), [1.0, 3.0, -4.0, 8.5]);

    let made: NdArray = w.call("wnp.make", &("f32",)).unwrap();
    assert_eq!(made.shape(), [2, 3]);
    assert_eq!(
        made.as_slice::<f32>().unwrap(),
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    );
    let ints: NdArray = w.call("wnp.make", &("i64",)).unwrap();
    assert_eq!(ints.to_vec::<i64>().unwrap(), [1, -2, 3i64.pow(30)]);
    let i = NdArray::from_vec(vec![i64::MIN, 0, i64::MAX], vec![3]).unwrap();
    let info: Value = w.call("wnp.info", &(&i,)).unwrap();
    assert_eq!(info["values"], json!([i64::MIN, 0, i64::MAX]));
    let flags: NdArray = w.call("wnp.make", &("bool",)).unwrap();
    assert_eq!((flags.dtype(), flags.shape()), ("|b1", &[2, 2][..]));
    assert_eq!(
        flags.as_slice::<bool>().unwrap(),
        [true, false, false, true]
    );
    let sent = NdArray::from_slice(&[true, true, false], vec![3]).unwrap();
    assert_eq!(
        w.call::<Value>("wnp.info", &(&sent,)).unwrap()["values"],
        json!([true, true, false])
    );
    // Asking for the wrong element type is an error naming both.
    let err = made.as_slice::<f64>().unwrap_err();
    assert!(
        matches!(err, Error::Array { .. }) && err.to_string().contains("<f4"),
        "{err}"
    );
}

#[test]
fn zero_d_strided_fortran_and_big_endian_arrays_arrive_in_c_order_little_endian() {
    let w = numpy_worker();
    let scalar: NdArray = w.call("wnp.make", &("zero_d",)).unwrap();
    assert_eq!((scalar.shape(), scalar.len()), (&[][..], 1));
    assert_eq!(scalar.to_vec::<f64>().unwrap(), [7.5]);
    let zero_d = NdArray::from_vec(vec![3u8], vec![]).unwrap();
    let info: Value = w.call("wnp.info", &(&zero_d,)).unwrap();
    assert_eq!((&info["shape"], &info["values"]), (&json!([]), &json!(3)));

    let strided: NdArray = w.call("wnp.make", &("strided",)).unwrap();
    assert_eq!(strided.shape(), [4, 3]);
    assert_eq!(
        strided.to_vec::<i32>().unwrap(),
        [0, 2, 4, 5, 7, 9, 10, 12, 14, 15, 17, 19]
    );
    let fortran: NdArray = w.call("wnp.make", &("fortran",)).unwrap();
    assert_eq!(
        fortran.to_vec::<f64>().unwrap(),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    let big: NdArray = w.call("wnp.make", &("big_endian",)).unwrap();
    assert_eq!(big.dtype(), "<i4", "converted to little-endian");
    assert_eq!(big.to_vec::<i32>().unwrap(), [0, 1, 2, 3]);
}

#[test]
fn numpy_scalars_are_plain_values_and_unsendable_arrays_are_a_clear_error() {
    let w = numpy_worker();
    let scalars: Value = w.call("wnp.make", &("scalars",)).unwrap();
    assert_eq!(scalars, json!({"f32": 1.5, "i64": 1u64 << 40, "b": true}));
    for (kind, dtype) in [("objects", "object"), ("strings", "<U4")] {
        let err = w.call::<Value>("wnp.make", &(kind,)).unwrap_err();
        let error = err.python_error().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(error.type_name, "TypeError");
        assert!(
            error
                .message
                .contains(&format!("dtype {dtype} cannot be sent")),
            "{}",
            error.message
        );
    }
    // The worker goes on.
    assert_eq!(
        w.call::<f64>(
            "wnp.total",
            &(NdArray::from_vec(vec![1.0f64, 2.0], vec![2]).unwrap(),)
        )
        .unwrap(),
        3.0
    );
}

#[test]
fn an_array_sent_to_an_environment_without_numpy_says_so() {
    let env = crate::script::env_for(&testkit::pyenv::host_python());
    let w = env.worker(["wmod"]).forward_stderr(false).start().unwrap();
    let a = NdArray::from_vec(vec![1.0f32], vec![1]).unwrap();
    let err = w.call::<Value>("wmod.echo", &(&a,)).unwrap_err();
    let error = err.python_error().unwrap_or_else(|| panic!("{err}"));
    assert!(
        error.message.contains("numpy is not installed"),
        "{}",
        error.message
    );
}

#[test]
fn byte_types_receive_buffers_and_borrowed_buffers_go_as_they_are() {
    let env = crate::script::env_for(&testkit::pyenv::host_python());
    let w = env.worker(["wmod"]).forward_stderr(false).start().unwrap();
    #[derive(serde::Deserialize)]
    struct Made {
        payload: Vec<u8>,
        n: usize,
    }
    let made: Made = w.call("wmod.make_bytes", &(4096,)).unwrap();
    assert_eq!(made.n, 4096);
    assert_eq!(
        made.payload,
        (0..=255u8).cycle().take(4096).collect::<Vec<_>>()
    );
    let plain: Vec<u8> = w.call("wmod.echo", &(Buffer::new(vec![1, 2, 3]),)).unwrap();
    assert_eq!(plain, [1, 2, 3]);

    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
    // Borrowed, with a blocking call: written from `data` itself.
    let info: Value = w.call("wmod.buffer_info", &(BufferRef(&data),)).unwrap();
    assert_eq!(
        info,
        json!({"type": "bytes", "len": 3_000_000, "first": 0, "last": data[2_999_999]})
    );
    // Borrowed, submitted: copied once, so the handle may outlive the borrow.
    let handle = {
        let short_lived = data.clone();
        w.request("wmod.buffer_info")
            .args(&(BufferRef(&short_lived),))
            .submit::<Value>()
            .unwrap()
    };
    assert_eq!(handle.wait().unwrap()["len"], 3_000_000);
    // Echoed back into a Buffer, which hands its bytes over without a copy.
    let back: Buffer = w.call("wmod.echo", &(BufferRef(&data),)).unwrap();
    assert_eq!(back.into_vec(), data);
}

/// Python reads a large array frame into the memory of an earlier one that nothing refers to
/// any more (`Channel.recycle`), and never into memory a function kept: an array, a view of it
/// or a memoryview over it that a function held on to keeps its values.
#[test]
fn large_array_frames_reuse_memory_no_one_kept_and_never_memory_someone_did() {
    let w = numpy_worker();
    let n = 1usize << 19; // 2 MiB of float32: above the 1 MiB the reuse starts at
    let filled = |value: f32, len: usize| NdArray::from_vec(vec![value; len], vec![len]).unwrap();
    let take = |value: f32, len: usize, keep: &str| -> f64 {
        w.call("wnp.take", &(&filled(value, len), keep)).unwrap()
    };
    let reused = || w.call::<u64>("wnp.reused", &()).unwrap();
    let whole = n as f64;

    assert_eq!(
        (take(1.0, n, ""), reused()),
        (whole, 0),
        "the first one is fresh"
    );
    assert_eq!((take(2.0, n, ""), reused()), (2.0 * whole, 1));
    // Kept by the function: its memory is never handed out again.
    assert_eq!((take(3.0, n, "array"), reused()), (3.0 * whole, 2));
    assert_eq!((take(4.0, n, ""), reused()), (4.0 * whole, 2));
    assert_eq!((take(5.0, n, "view"), reused()), (5.0 * whole, 3));
    assert_eq!((take(6.0, n, "memoryview"), reused()), (6.0 * whole, 3));
    assert_eq!((take(7.0, n, ""), reused()), (7.0 * whole, 3));
    // Below 1 MiB nothing is reused, nor let go; a large frame of another size lets it go.
    assert_eq!((take(8.0, 1000, ""), reused()), (8000.0, 3));
    assert_eq!((take(9.0, n, ""), reused()), (9.0 * whole, 4));
    let other = n + n / 4;
    assert_eq!((take(1.0, other, ""), reused()), (other as f64, 4));
    assert_eq!((take(2.0, other, ""), reused()), (2.0 * other as f64, 5));
    assert_eq!((take(3.0, n, ""), reused()), (3.0 * whole, 5));

    let kept: Vec<f64> = w.call("wnp.kept_sums", &()).unwrap();
    assert_eq!(
        kept,
        [3.0 * whole, 5.0 * whole / 2.0, 6.0 * whole],
        "what functions kept was written over"
    );
}

/// A large `bytes` frame is read into the memory of the last `bytes` of its size that nothing
/// refers to any more, as array frames are (`Channel.recycle`): what the function gets is the
/// new content whole, with its hash computed anew (a hash cached by an earlier call would be
/// stale), and a `bytes` a function kept — in a list, under a memoryview, as a dict key — is
/// never written over.
#[test]
fn large_bytes_frames_reuse_memory_no_one_kept_and_never_memory_someone_did() {
    let env = crate::script::env_for(&testkit::pyenv::host_python());
    let w = env.worker(["wmod"]).forward_stderr(false).start().unwrap();
    let n = (1usize << 21) + 5; // above the 1 MiB the reuse starts at
    let take = |value: u8, len: usize, keep: &str| -> (Value, u64) {
        let got: Value = w
            .call("wmod.take_bytes", &(BufferRef(&vec![value; len]), keep))
            .unwrap();
        (got, w.call::<u64>("wmod.bytes_reused", &()).unwrap())
    };
    let whole = |len: usize| json!(["bytes", len, true, true]);

    assert_eq!(take(1, n, ""), (whole(n), 0), "the first one is fresh");
    // Every call hashes its `bytes` (`take_bytes`' last check), so a reused one whose cached
    // hash were not reset would fail that check; "hash" hashes it before as well.
    assert_eq!(take(2, n, "hash"), (whole(n), 1));
    assert_eq!(take(3, n, ""), (whole(n), 2));
    // Kept by the function: its memory is never handed out again.
    assert_eq!(take(4, n, "list"), (whole(n), 3));
    assert_eq!(take(5, n, ""), (whole(n), 3));
    assert_eq!(take(6, n, "memoryview"), (whole(n), 4));
    assert_eq!(take(7, n, "dict key"), (whole(n), 4));
    assert_eq!(take(8, n, ""), (whole(n), 4));
    // Below 1 MiB nothing is reused, nor let go; a large frame of another size lets it go.
    assert_eq!(take(9, 1000, ""), (whole(1000), 4));
    assert_eq!(take(10, n, ""), (whole(n), 5));
    let other = n * 2;
    assert_eq!(take(11, other, ""), (whole(other), 5));
    assert_eq!(take(12, other, ""), (whole(other), 6));
    assert_eq!(take(13, n, ""), (whole(n), 6));

    let kept: Vec<bool> = w.call("wmod.kept_bytes_intact", &()).unwrap();
    assert_eq!(
        kept,
        [true, true, true],
        "what functions kept was written over"
    );
}

/// The Rust side reads a large frame into the memory of a received `Buffer` dropped since
/// (`buffer::receive_memory`, whose unit test checks the reuse itself): what arrives is the
/// new frame whole, and a `Buffer` still held keeps its bytes.
#[test]
fn large_frames_received_after_others_were_dropped_arrive_whole() {
    let env = crate::script::env_for(&testkit::pyenv::host_python());
    let w = env.worker(["wmod"]).forward_stderr(false).start().unwrap();
    let n = (1usize << 21) + 3;
    let filled = |value: u8| -> Buffer { w.call("wmod.filled", &(n, value)).unwrap() };
    let held = filled(1);
    let mut last = filled(2);
    for value in 3..8u8 {
        drop(last);
        last = filled(value);
        assert!(
            last.len() == n && last.iter().all(|&b| b == value),
            "frame {value}"
        );
    }
    assert!(held.len() == n && held.iter().all(|&b| b == 1));
    // Taken out as a vector: the caller's, and whole.
    let taken = filled(9).into_vec();
    drop(last);
    let next = filled(10);
    assert!(taken.iter().all(|&b| b == 9) && next.iter().all(|&b| b == 10));
}

#[test]
fn a_script_takes_and_replies_with_arrays() {
    #[derive(serde::Serialize)]
    struct Input {
        a: NdArray,
        k: i64,
    }
    let a = NdArray::from_vec((0..12).map(|i| i as f32).collect(), vec![3, 4]).unwrap();
    let out = numpy_env()
        .script("array_reply")
        .input(&Input { a, k: 3 })
        .arg("x")
        .run::<(NdArray, Value)>()
        .unwrap();
    let (arr, meta) = out.reply;
    assert_eq!((arr.dtype(), arr.shape()), ("<f4", &[2, 2][..]));
    assert_eq!(arr.to_vec::<f32>().unwrap(), [0.0, 3.0, 12.0, 15.0]);
    assert_eq!(meta, json!({"k": 3, "argv": ["x"], "dtype": "float32"}));
}

#[test]
fn ndarray_arrays_convert_both_ways() {
    let w = numpy_worker();
    let m = ndarray::Array2::from_shape_fn((3, 2), |(i, j)| (i * 10 + j) as f64);
    let info: Value = w.call("wnp.info", &(NdArray::from(m.clone()),)).unwrap();
    assert_eq!(
        info["values"],
        json!([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    );
    // A transposed view (not C order) goes in C order of its own shape.
    let t = NdArray::from_ndarray(&m.t());
    assert_eq!(t.shape(), [2, 3]);
    let back: NdArray = w.call("wnp.scale", &(&t, 2)).unwrap();
    let arr = back.to_ndarray::<f64>().unwrap();
    assert_eq!(arr.shape(), [2, 3]);
    assert_eq!(arr[[1, 2]], 42.0);
    assert_eq!(back.view::<f64>().unwrap()[[0, 1]], 20.0);
}
