//! README.md states some of this crate's defaults and limits in words; the test here rebuilds
//! each of those sentences from the constant the code uses, so changing either side fails it
//! (docs/CLAIMS.md names this test as their backing).

use std::time::Duration;

/// `bytes` as README writes a size: in the largest of GiB, MiB, KiB that divides it exactly.
fn size(bytes: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// `wait` as README writes it: whole minutes as "N minutes", otherwise whole seconds "N s".
fn time(wait: Duration) -> String {
    let secs = wait.as_secs();
    assert_eq!(
        Duration::from_secs(secs),
        wait,
        "README writes whole seconds"
    );
    if secs >= 120 && secs % 60 == 0 {
        format!("{} minutes", secs / 60)
    } else {
        format!("{secs} s")
    }
}

#[test]
fn the_numbers_readme_states_are_the_ones_the_code_uses() {
    use crate::bundle::{DEFAULT_LOCK_TIMEOUT, DEFAULT_REPAIR_WAIT};
    use crate::extract::limits;
    use crate::script::DEFAULT_CAPTURE_LIMIT;
    use crate::worker::{DEFAULT_FRAME_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_STDERR_TAIL};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let sentences = [
        format!(
            "`frame_timeout` ({}) for a message stuck halfway",
            time(DEFAULT_FRAME_TIMEOUT)
        ),
        format!(
            "`max_in_flight` ({}) for answers not yet taken",
            size(DEFAULT_MAX_IN_FLIGHT)
        ),
        format!(
            "`capture_limit` ({}, the end kept) for a script's captured output",
            size(DEFAULT_CAPTURE_LIMIT)
        ),
        format!(
            "(`Bundle::lock_timeout`, {} by default)",
            time(DEFAULT_LOCK_TIMEOUT)
        ),
        format!(
            "`ready()` waits at most `repair_wait` ({}) and then fails",
            time(DEFAULT_REPAIR_WAIT)
        ),
        format!(
            "Stderr is drained into a bounded tail ({}),",
            size(DEFAULT_STDERR_TAIL)
        ),
        format!(
            "a zstd window of at most {} (what the highest compression level uses);",
            size(1 << limits::MAX_WINDOW_LOG)
        ),
        format!(
            "a text file relocated of at most {}, growing to at most twice its size plus {}",
            size(limits::MAX_TEXT_RELOCATION as usize),
            size(limits::TEXT_GROWTH_SLACK as usize)
        ),
        format!(
            "binary files relocated in {} windows",
            size(crate::relocate::window::WINDOW)
        ),
    ];
    let missing: Vec<&String> = sentences.iter().filter(|s| !readme.contains(*s)).collect();
    assert!(missing.is_empty(), "README.md no longer says {missing:#?}");
}

#[test]
fn sizes_and_times_are_written_as_readme_writes_them() {
    assert_eq!(size(1 << 30), "1 GiB");
    assert_eq!(size(3 << 20), "3 MiB");
    assert_eq!(size(1536), "1536 bytes");
    assert_eq!(time(Duration::from_secs(600)), "10 minutes");
    assert_eq!(time(Duration::from_secs(90)), "90 s");
}
