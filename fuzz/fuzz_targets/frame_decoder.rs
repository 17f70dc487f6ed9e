//! The frame decoder: arbitrary bytes as a child's output, read the way the worker and script
//! readers read it. Input: 3 bytes of frame cap (big-endian), then the stream.
//!
//! Checked beyond "no panic": the decoder never reads past its input nor delivers a frame over
//! the cap, re-encoding the frames it delivered gives back exactly the bytes it consumed, and
//! a stream it reads to the end without complaint was consumed whole.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pybundle_runtime::fuzzing;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, stream @ ..] = data else {
        return;
    };
    let cap = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
    let decoded = fuzzing::decode_frames(stream, cap);
    assert!(decoded.consumed <= stream.len());
    let mut again = Vec::with_capacity(decoded.consumed);
    for frame in &decoded.frames {
        assert!(
            frame.payload.len() <= cap,
            "a frame over the cap was delivered"
        );
        assert_eq!(frame.message, frame.parsed.is_some());
        again.extend(fuzzing::encode_frame(&frame.payload, cap).expect("under the cap"));
    }
    assert_eq!(
        again,
        stream[..decoded.consumed],
        "frames do not re-encode to the input"
    );
    let malformed = decoded
        .frames
        .last()
        .is_some_and(|f| matches!(f.parsed, Some(Err(_))));
    if decoded.error.is_none() && !malformed {
        assert_eq!(
            decoded.consumed,
            stream.len(),
            "input left over without an error"
        );
    }
});
