//! Stream framer: arbitrary bytes in arbitrary read sizes.
//!
//! The first three input bytes choose the limits and the chunking; the rest is
//! the stream. The same stream is framed twice, in one push and in chunks, and
//! both runs must agree (split independence). Along the way: no panic, the
//! buffer stays within the limit, and every message frame is within the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_message::Error;
use siplink_message::framer::{Frame, Framer, FramerConfig};

/// Frames `chunks`, draining after each push; returns the frames and the error
/// that ended the stream, if any.
fn run<'a>(
    config: FramerConfig,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Frame>, Option<Error>) {
    let mut framer = Framer::new(config);
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    if let Frame::Message(m) = &frame {
                        assert!(m.len() <= config.max_message_size);
                    }
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(framer.buffered() <= config.max_message_size.max(3));
                    break;
                }
                Err(e) => {
                    // Poisoned: the same error again, nothing buffered.
                    assert_eq!(framer.next_frame().err().as_ref(), Some(&e));
                    assert_eq!(framer.buffered(), 0);
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

/// Error kinds compare equal across splits; `TooLarge::size` is what happened to
/// be buffered when the limit was hit.
fn kind(e: Option<Error>) -> Option<Error> {
    match e {
        Some(Error::TooLarge { limit, .. }) => Some(Error::TooLarge { size: 0, limit }),
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let [size, headers, chunking, stream @ ..] = data else {
        return;
    };
    // Small limits so that the limit paths are reached often.
    let config = FramerConfig {
        max_message_size: usize::from(*size) * 8,
        max_headers: usize::from(*headers % 32),
    };
    let (whole, whole_err) = run(config, std::iter::once(stream));

    // Chunk sizes from a small LCG seeded by `chunking`: 1..=64 bytes.
    let mut state = u32::from(*chunking);
    let mut rest = stream;
    let chunks = std::iter::from_fn(|| {
        if rest.is_empty() {
            return None;
        }
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((state >> 16) as usize % 64 + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    });
    let (parts, parts_err) = run(config, chunks);

    assert_eq!(whole, parts);
    assert_eq!(kind(whole_err), kind(parts_err));
});
