//! Stream framer: split and coalesced reads, keepalives, limits, Content-Length
//! handling, and split-independence properties.

use bytes::Bytes;
use proptest::prelude::*;
use siplink_message::Error;
use siplink_message::framer::{Frame, Framer, FramerConfig, PING, PONG};

/// Pushes `chunks` one by one, draining frames after each push. Returns the frames
/// and the error that stopped the framer, if any.
fn run_chunks<'a>(
    config: FramerConfig,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Frame>, Option<Error>, Framer) {
    let mut framer = Framer::new(config);
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert!(
                        framer.buffered() <= config.max_message_size.max(3),
                        "{} bytes buffered",
                        framer.buffered()
                    );
                    break;
                }
                Err(e) => return (frames, Some(e), framer),
            }
        }
    }
    (frames, None, framer)
}

fn run(data: &[u8]) -> (Vec<Frame>, Option<Error>, Framer) {
    run_chunks(FramerConfig::default(), [data])
}

fn frames(data: &[u8]) -> Vec<Frame> {
    let (frames, err, _) = run(data);
    assert_eq!(err, None);
    frames
}

fn msg(m: &[u8]) -> Frame {
    Frame::Message(Bytes::copy_from_slice(m))
}

const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 63104 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";

const MESSAGE: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS client.example.com;branch=z9hG4bK-1\r\n\
Call-ID: m1\r\n\
CSeq: 2 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: 12\r\n\
\r\n\
Hello world!";

#[test]
fn single_message_exact_bytes() {
    assert_eq!(frames(OPTIONS), vec![msg(OPTIONS)]);
    assert_eq!(frames(MESSAGE), vec![msg(MESSAGE)]);
}

#[test]
fn one_byte_pushes() {
    let mut stream = Vec::new();
    stream.extend_from_slice(MESSAGE);
    stream.extend_from_slice(PING);
    stream.extend_from_slice(OPTIONS);
    let (got, err, framer) = run_chunks(FramerConfig::default(), stream.chunks(1));
    assert_eq!(err, None);
    assert_eq!(got, vec![msg(MESSAGE), Frame::Ping, msg(OPTIONS)]);
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn partial_message_waits() {
    let mut framer = Framer::default();
    framer.push(&MESSAGE[..MESSAGE.len() - 1]);
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.buffered(), MESSAGE.len() - 1);
    framer.push(&MESSAGE[MESSAGE.len() - 1..]);
    assert_eq!(framer.next_frame(), Ok(Some(msg(MESSAGE))));
    assert_eq!(framer.next_frame(), Ok(None));
}

#[test]
fn hundred_coalesced_messages() {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        let body = format!("body number {i}");
        let m = format!(
            "MESSAGE sip:u{i}@example.com SIP/2.0\r\nCSeq: {i} MESSAGE\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.extend_from_slice(m.as_bytes());
        expected.push(msg(m.as_bytes()));
    }
    let (got, err, framer) = run(&stream);
    assert_eq!(err, None);
    assert_eq!(got, expected);
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn frames_are_split_from_the_buffer_and_outlive_the_framer() {
    let mut framer = Framer::default();
    framer.push(MESSAGE);
    let Ok(Some(Frame::Message(m))) = framer.next_frame() else {
        panic!("no message")
    };
    drop(framer);
    assert_eq!(&m[..], MESSAGE);
}

#[test]
fn leading_crlfs_are_skipped() {
    let mut stream = b"\r\n".to_vec();
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(MESSAGE);
    assert_eq!(frames(&stream), vec![msg(OPTIONS), msg(MESSAGE)]);
    // Three CRLFs: a ping, then a leading CRLF.
    let mut stream = b"\r\n\r\n\r\n".to_vec();
    stream.extend_from_slice(OPTIONS);
    assert_eq!(frames(&stream), vec![Frame::Ping, msg(OPTIONS)]);
}

#[test]
fn lone_crlf_waits_for_the_next_bytes() {
    let mut framer = Framer::default();
    framer.push(b"\r\n");
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.buffered(), 2);
    framer.push(b"\r");
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(b"\n");
    assert_eq!(framer.next_frame(), Ok(Some(Frame::Ping)));
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn ping_is_reported_whole_or_split() {
    assert_eq!(frames(PING), vec![Frame::Ping]);
    for split in 1..PING.len() {
        let (got, err, _) = run_chunks(FramerConfig::default(), [&PING[..split], &PING[split..]]);
        assert_eq!(err, None);
        assert_eq!(got, vec![Frame::Ping], "split at {split}");
    }
    let mut stream = PING.to_vec();
    stream.extend_from_slice(PING);
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(PING);
    assert_eq!(
        frames(&stream),
        vec![Frame::Ping, Frame::Ping, msg(OPTIONS), Frame::Ping]
    );
}

#[test]
fn pong_after_ping_sent() {
    let mut framer = Framer::default();
    framer.push(OPTIONS);
    assert_eq!(framer.next_frame(), Ok(Some(msg(OPTIONS))));
    framer.ping_sent();
    assert!(framer.awaiting_pong());
    framer.push(b"\r");
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(b"\n");
    // Armed: reported at once, without waiting for a possible second CRLF.
    assert_eq!(framer.next_frame(), Ok(Some(Frame::Pong)));
    assert!(!framer.awaiting_pong());
    assert_eq!(framer.buffered(), 0);
    // Not armed any more: a lone CRLF before a message is skipped.
    framer.push(PONG);
    framer.push(OPTIONS);
    assert_eq!(framer.next_frame(), Ok(Some(msg(OPTIONS))));
    assert_eq!(framer.next_frame(), Ok(None));
}

#[test]
fn pong_followed_by_message_in_one_read() {
    let mut framer = Framer::default();
    framer.ping_sent();
    framer.push(b"\r\n");
    framer.push(MESSAGE);
    assert_eq!(framer.next_frame(), Ok(Some(Frame::Pong)));
    assert_eq!(framer.next_frame(), Ok(Some(msg(MESSAGE))));
    assert_eq!(framer.next_frame(), Ok(None));
}

#[test]
fn armed_framer_reads_crossing_ping_as_pong() {
    // Documented trade-off: while armed, the first CRLF is a pong; the second
    // half of the peer's ping is then a pending lone CRLF.
    let mut framer = Framer::default();
    framer.ping_sent();
    framer.push(PING);
    assert_eq!(framer.next_frame(), Ok(Some(Frame::Pong)));
    assert_eq!(framer.next_frame(), Ok(None));
    assert_eq!(framer.buffered(), 2);
}

#[test]
fn pong_only_at_message_boundaries() {
    let mut framer = Framer::default();
    framer.push(&MESSAGE[..40]);
    framer.ping_sent();
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(&MESSAGE[40..]);
    framer.push(PONG);
    assert_eq!(framer.next_frame(), Ok(Some(msg(MESSAGE))));
    assert_eq!(framer.next_frame(), Ok(Some(Frame::Pong)));
}

fn small(max_message_size: usize, max_headers: usize) -> FramerConfig {
    FramerConfig {
        max_message_size,
        max_headers,
    }
}

#[test]
fn default_limits() {
    let c = FramerConfig::default();
    assert_eq!((c.max_message_size, c.max_headers), (64 * 1024, 128));
}

#[test]
fn message_at_the_size_limit_passes() {
    let (got, err, _) = run_chunks(small(MESSAGE.len(), 128), [MESSAGE]);
    assert_eq!((got, err), (vec![msg(MESSAGE)], None));
    let (got, err, _) = run_chunks(small(MESSAGE.len() - 1, 128), [MESSAGE]);
    assert_eq!(got, vec![]);
    assert_eq!(
        err,
        Some(Error::TooLarge {
            size: MESSAGE.len(),
            limit: MESSAGE.len() - 1
        })
    );
}

#[test]
fn oversize_header_section_is_an_error_before_it_ends() {
    let limit = 1000;
    let mut framer = Framer::new(small(limit, 128));
    framer.push(b"INVITE sip:bob@example.com SIP/2.0\r\n");
    let mut err = None;
    for _ in 0..100 {
        framer.push(b"X-Filler: 0123456789\r\n");
        match framer.next_frame() {
            Ok(None) => assert!(framer.buffered() <= limit),
            Ok(Some(f)) => panic!("unexpected frame {f:?}"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let Some(Error::TooLarge { size, limit: 1000 }) = err else {
        panic!("expected TooLarge, got {err:?}")
    };
    assert!(size > 1000 && size < 1100);
    // Poisoned: same error again, input dropped.
    assert!(framer.is_poisoned());
    assert_eq!(framer.buffered(), 0);
    assert!(matches!(framer.next_frame(), Err(Error::TooLarge { .. })));
}

#[test]
fn oversize_content_length_claim() {
    let m = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 100000\r\n\r\nabc";
    let (got, err, framer) = run(m);
    assert_eq!(got, vec![]);
    assert_eq!(
        err,
        Some(Error::TooLarge {
            size: 51 + 100_000,
            limit: 64 * 1024
        })
    );
    assert_eq!(framer.buffered(), 0);
    // A claim that overflows usize arithmetic once the header length is added.
    let m = format!("MESSAGE sip:a@b SIP/2.0\r\nl: {}\r\n\r\n", usize::MAX);
    let (_, err, _) = run(m.as_bytes());
    assert!(
        matches!(
            err,
            Some(Error::TooLarge {
                size: usize::MAX,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn too_many_headers() {
    let mut m = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..5 {
        m.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    let tail = b"Content-Length: 0\r\n\r\n";
    // 6 headers: at the limit of 6 passes, over the limit of 5 fails.
    let whole = [&m[..], tail].concat();
    let (got, err, _) = run_chunks(small(4096, 6), [&whole[..]]);
    assert_eq!((got, err), (vec![msg(&whole)], None));
    let (got, err, _) = run_chunks(small(4096, 5), [&whole[..]]);
    assert_eq!(got, vec![]);
    assert_eq!(err, Some(Error::TooManyHeaders { limit: 5 }));
    // Detected as soon as the line is complete, before the header section ends.
    let (_, err, _) = run_chunks(small(4096, 2), [&m[..]]);
    assert_eq!(err, Some(Error::TooManyHeaders { limit: 2 }));
}

#[test]
fn folded_lines_are_one_header() {
    let m: &[u8] = b"INVITE sip:a@b SIP/2.0\r\n\
Subject: I know you're there,\r\n \
 pick up the phone\r\n\t and talk to me!\r\n\
Content-Length\r\n :\r\n\t 4\r\n\
\r\n\
body";
    let (got, err, _) = run_chunks(small(4096, 2), [m]);
    assert_eq!((got, err), (vec![msg(m)], None));
    let (got, err, _) = run_chunks(small(4096, 2), m.chunks(1));
    assert_eq!((got, err), (vec![msg(m)], None));
    let (_, err, _) = run_chunks(small(4096, 1), [m]);
    assert_eq!(err, Some(Error::TooManyHeaders { limit: 1 }));
}

#[test]
fn missing_content_length() {
    let m = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    let (got, err, framer) = run(m);
    assert_eq!(got, vec![]);
    assert_eq!(err, Some(Error::MissingContentLength));
    assert!(framer.is_poisoned());
    // A header merely starting with the name is not Content-Length.
    let (_, err, _) = run(b"INVITE sip:a@b SIP/2.0\r\nContent-Lengthy: 0\r\nlx: 0\r\n\r\n");
    assert_eq!(err, Some(Error::MissingContentLength));
    // The start line is not a header even if it looks like one.
    let (_, err, _) = run(b"l: 0\r\n\r\n");
    assert_eq!(err, Some(Error::MissingContentLength));
}

fn invalid_cl(data: &[u8]) -> (usize, &'static str) {
    match run(data).1 {
        Some(Error::InvalidContentLength { offset, reason }) => (offset, reason),
        other => panic!("expected InvalidContentLength, got {other:?}"),
    }
}

#[test]
fn bad_content_length_values() {
    let start = b"MESSAGE sip:a@b SIP/2.0\r\n"; // 25 bytes
    let case = |h: &str| invalid_cl(&[&start[..], h.as_bytes(), b"\r\n\r\n"].concat());
    assert_eq!(
        case("Content-Length: abc"),
        (25 + 16, "not a non-negative decimal number")
    );
    assert_eq!(
        case("Content-Length: -1"),
        (25 + 16, "not a non-negative decimal number")
    );
    assert_eq!(
        case("Content-Length: 1.5"),
        (25 + 16, "not a non-negative decimal number")
    );
    assert_eq!(case("Content-Length: 12, 12"), (25 + 16, "multiple values"));
    assert_eq!(case("Content-Length:   "), (25 + 18, "empty value"));
    assert_eq!(
        case("l: 99999999999999999999999999"),
        (25 + 3, "value too large")
    );
    // Offsets count from the message, not from the stream.
    let mut stream = PING.to_vec();
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(start);
    stream.extend_from_slice(b"l: x\r\n\r\n");
    assert_eq!(
        invalid_cl(&stream),
        (28, "not a non-negative decimal number")
    );
}

#[test]
fn duplicate_content_length() {
    // RFC 4475 mcl01-like: headers that disagree.
    let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 1\r\n\r\nx";
    assert_eq!(invalid_cl(m), (47, "conflicting Content-Length headers"));
    // Headers that agree frame fine (the parser may still reject them).
    let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 01\r\n\r\nx";
    assert_eq!(frames(m), vec![msg(m)]);
}

#[test]
fn content_length_spellings() {
    for h in [
        "Content-Length: 12",
        "Content-Length :  12",
        "content-length:12",
        "CONTENT-LENGTH\t:\t12 ",
        "l: 12",
        "L:12",
        "Content-Length: 0012",
    ] {
        let m = format!("MESSAGE sip:a@b SIP/2.0\r\n{h}\r\nX: y\r\n\r\nHello world!TRAILING");
        let m = m.as_bytes();
        let (got, err, framer) = run(m);
        assert_eq!(err, None, "{h}");
        assert_eq!(got, vec![msg(&m[..m.len() - 8])], "{h}");
        assert_eq!(framer.buffered(), 8);
    }
}

#[test]
fn body_with_crlfcrlf_and_binary_bytes() {
    // RFC 4475 §3.1.1.11 (mpart01)-like: a multipart body with an empty line
    // between part headers and part content, and binary content with CRs, LFs
    // and NULs. Only Content-Length decides where the message ends.
    let mut body = b"--7a9cbec02ceef655\r\n\
Content-Type: text/plain\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
Hello\r\n\
--7a9cbec02ceef655\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n"
        .to_vec();
    body.extend_from_slice(&[
        0x30, 0x82, 0x01, 0x52, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    ]);
    body.extend_from_slice(b"\r\n\r\n\r\n\0\0\x0d\x0a\xff\xfe\r\r\n\n");
    body.extend_from_slice(b"\r\n--7a9cbec02ceef655--\r\n");
    let mut m = format!(
        "MESSAGE sip:kumiko@example.org SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\r\n\
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\r\n\
Content-Length: {}\r\n\
\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(&body);
    let mut stream = m.clone();
    stream.extend_from_slice(PING);
    stream.extend_from_slice(&m);
    assert_eq!(frames(&stream), vec![msg(&m), Frame::Ping, msg(&m)]);
    let (got, err, _) = run_chunks(FramerConfig::default(), stream.chunks(7));
    assert_eq!(err, None);
    assert_eq!(got, vec![msg(&m), Frame::Ping, msg(&m)]);
}

#[test]
fn bare_lf_does_not_end_the_header_section() {
    let (got, err, framer) = run(b"OPTIONS sip:a@b SIP/2.0\nl: 0\n\n");
    assert_eq!((got, err), (vec![], None));
    assert_eq!(framer.buffered(), 30);
}

#[test]
fn garbage_runs_into_the_limit() {
    let junk = vec![0u8; 10_000];
    let (got, err, _) = run_chunks(small(1024, 128), junk.chunks(100));
    assert_eq!(got, vec![]);
    assert!(matches!(err, Some(Error::TooLarge { limit: 1024, .. })));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// One unit of a generated stream.
#[derive(Debug, Clone)]
enum Item {
    /// A whole message (exact bytes).
    Message(Vec<u8>),
    /// A CRLFCRLF ping.
    Ping,
    /// A single leading CRLF.
    Crlf,
}

fn header_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "Via: SIP/2.0/TCP [a-z]{1,12}\\.example\\.com;branch=z9hG4bK[a-z0-9]{1,16}",
        "(From|To|Call-ID|CSeq|Contact|Subject|X-[A-Za-z]{1,8}) ?: [ -~]{0,60}",
        "[A-Za-z][A-Za-z0-9-]{1,15}: [!-~]{1,10}(\r\n[ \t]{1,3}[!-~]{1,10}){1,3}",
        "(Content-Type|Content-Lengthy|Lx|c): [!-~]{0,20}",
    ]
}

fn content_length_line(len: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("Content-Length: {len}")),
        Just(format!("l: {len}")),
        Just(format!("content-length :  {len}")),
        Just(format!("L:{len}  ")),
        Just(format!("Content-Length:\r\n\t{len}")),
        Just(format!("CONTENT-LENGTH: 000{len}")),
    ]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    let start = prop_oneof![
        "(INVITE|OPTIONS|MESSAGE|BYE) sip:[a-z]{1,8}@[a-z]{1,8}\\.com SIP/2\\.0",
        "SIP/2\\.0 [1-6][0-9]{2} [A-Za-z ]{0,20}",
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..50),
    ];
    (
        start,
        proptest::collection::vec(header_line(), 0..8),
        body,
        any::<proptest::sample::Index>(),
        any::<bool>(),
    )
        .prop_flat_map(|(start, headers, body, at, dup)| {
            let len = body.len();
            (
                Just((start, headers, body, at, dup)),
                content_length_line(len),
                content_length_line(len),
            )
        })
        .prop_map(|((start, mut headers, body, at, dup), cl, cl2)| {
            let pos = at.index(headers.len() + 1);
            headers.insert(pos, cl);
            if dup {
                headers.push(cl2);
            }
            let mut m = start.into_bytes();
            m.extend_from_slice(b"\r\n");
            for h in headers {
                // Headers with a name that could be read as Content-Length were
                // excluded by construction, except the CL lines themselves.
                m.extend_from_slice(h.as_bytes());
                m.extend_from_slice(b"\r\n");
            }
            m.extend_from_slice(b"\r\n");
            m.extend_from_slice(&body);
            m
        })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => message().prop_map(Item::Message),
        1 => Just(Item::Ping),
        1 => Just(Item::Crlf),
    ]
}

/// The stream's bytes and the frames a framer must produce for it: runs of
/// keepalive CRLFs pair up greedily into pings; an odd one out is skipped (or
/// stays buffered at the end of the stream).
fn expected(items: &[Item]) -> (Vec<u8>, Vec<Frame>, usize) {
    let mut stream = Vec::new();
    let mut frames = Vec::new();
    let mut crlfs = 0;
    for item in items {
        match item {
            Item::Message(m) => {
                frames.extend(std::iter::repeat_n(Frame::Ping, crlfs / 2));
                crlfs = 0;
                stream.extend_from_slice(m);
                frames.push(msg(m));
            }
            Item::Ping => {
                stream.extend_from_slice(PING);
                crlfs += 2;
            }
            Item::Crlf => {
                stream.extend_from_slice(PONG);
                crlfs += 1;
            }
        }
    }
    frames.extend(std::iter::repeat_n(Frame::Ping, crlfs / 2));
    (stream, frames, 2 * (crlfs % 2))
}

/// Cuts `data` at the given points.
fn split<'a>(data: &'a [u8], cuts: &[proptest::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut last = 0;
    for p in points {
        chunks.push(&data[last..p]);
        last = p;
    }
    chunks.push(&data[last..]);
    chunks
}

/// Errors compared by kind: [`Error::TooLarge`]'s `size` is what was buffered
/// when the limit was hit, which depends on the read sizes.
fn kind(e: &Option<Error>) -> Option<Error> {
    match e {
        Some(Error::TooLarge { size, limit }) if size > limit => Some(Error::TooLarge {
            size: 0,
            limit: *limit,
        }),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stream_frames_whatever_the_split(
        items in proptest::collection::vec(item(), 0..12),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
    ) {
        let (stream, want, left) = expected(&items);
        let (got, err, framer) = run_chunks(FramerConfig::default(), split(&stream, &cuts));
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, want.clone());
        prop_assert_eq!(framer.buffered(), left);
        // Byte by byte too.
        let (got, err, _) = run_chunks(FramerConfig::default(), stream.chunks(1));
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn random_bytes_split_independent_and_bounded(
        data in proptest::collection::vec(
            prop_oneof![
                3 => any::<u8>(),
                2 => Just(b'\r'),
                2 => Just(b'\n'),
                1 => Just(b' '),
                1 => Just(b':'),
                1 => Just(b'l'),
                1 => b'0'..=b'9',
            ],
            0..600,
        ),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..16),
        max_message_size in 0usize..300,
        max_headers in 0usize..8,
    ) {
        let config = FramerConfig { max_message_size, max_headers };
        // run_chunks asserts the buffer bound after every Ok(None).
        let (whole, whole_err, _) = run_chunks(config, [&data[..]]);
        let (parts, parts_err, _) = run_chunks(config, split(&data, &cuts));
        prop_assert_eq!(&whole, &parts);
        prop_assert_eq!(kind(&whole_err), kind(&parts_err));
        for frame in &whole {
            if let Frame::Message(m) = frame {
                prop_assert!(m.len() <= max_message_size);
                prop_assert!(!m.starts_with(b"\r\n"));
            }
        }
    }

    #[test]
    fn messages_and_pings_with_random_limits(
        items in proptest::collection::vec(item(), 1..6),
        max_message_size in 0usize..400,
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        // Either every message fits and comes out whole, or the first one that
        // does not is a TooLarge error after exactly the frames before it.
        let (stream, want, _) = expected(&items);
        let config = FramerConfig { max_message_size, max_headers: 128 };
        let (got, err, _) = run_chunks(config, split(&stream, &cuts));
        let fits = |f: &Frame| match f {
            Frame::Message(m) => m.len() <= max_message_size,
            _ => true,
        };
        let ok = want.iter().take_while(|f| fits(f)).count();
        prop_assert_eq!(&got[..], &want[..ok]);
        if ok < want.len() {
            let is_too_large = matches!(err, Some(Error::TooLarge { .. }));
            prop_assert!(is_too_large, "{:?}", err);
        } else {
            prop_assert_eq!(err, None);
        }
    }
}
