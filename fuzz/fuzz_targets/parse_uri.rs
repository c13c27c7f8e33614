//! URI parser: arbitrary bytes never panic; a parsed URI prints back byte for byte,
//! re-parses to the same URI and is equivalent to itself; equivalence between the
//! two halves of the input is symmetric.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_message::Uri;

fn check(data: &[u8]) -> Option<Uri> {
    let uri = Uri::parse(data.to_vec()).ok()?;
    assert_eq!(uri.as_bytes(), data);
    assert!(uri.equivalent(&uri));
    // The same URI with its scheme in another case: not byte-identical, so this
    // exercises the comparison rules rather than the identical-text shortcut.
    let colon = data.iter().position(|&c| c == b':').expect("scheme");
    let mut other = data.to_vec();
    other[..colon]
        .iter_mut()
        .filter(|c| c.is_ascii_alphabetic())
        .for_each(|c| *c ^= 0x20);
    let other = Uri::parse(other).expect("scheme case does not matter");
    assert!(uri.equivalent(&other) && other.equivalent(&uri));
    let again = Uri::parse(uri.to_string()).expect("display re-parses");
    assert_eq!(again, uri);
    if let Some(sip) = uri.as_sip() {
        let _ = (
            sip.user_unescaped(),
            sip.transport(),
            sip.maddr(),
            sip.ttl(),
            sip.lr(),
        );
        let rebuilt = sip.to_builder().build().expect("builder re-builds");
        assert!(rebuilt.equivalent(sip));
    }
    Some(uri)
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let (a, b) = data.split_at(data.len() / 2);
    if let (Some(a), Some(b)) = (check(a), check(b)) {
        assert_eq!(a.equivalent(&b), b.equivalent(&a));
    }
});
