//! `@NAME@` placeholders in configuration templates.

/// Replaces each `@NAME@` in `text` by its value from `values` (`NAME` without the
/// `@`s). Panics if a placeholder is left over (a name made of `A`-`Z`, `0`-`9` and
/// `_` between two `@`s), so a misspelt name fails at once instead of reaching the
/// program under test.
///
/// ```
/// let cfg = siplink_testkit::render("listen=udp:127.0.0.1:@PORT@\n", &[("PORT", "5070")]);
/// assert_eq!(cfg, "listen=udp:127.0.0.1:5070\n");
/// ```
pub fn render<V: AsRef<str>>(text: &str, values: &[(&str, V)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("@{name}@"), value.as_ref());
    }
    let left = placeholders(&out);
    assert!(left.is_empty(), "placeholders left unfilled: {left:?}");
    out
}

/// The `@NAME@` placeholders in `text`, in order of appearance, without repeats.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if len > 0 && after.as_bytes().get(len) == Some(&b'@') {
            let name = &after[..len];
            if !found.iter().any(|f| f == name) {
                found.push(name.to_owned());
            }
            rest = &after[len + 1..];
        } else {
            rest = after;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_finds() {
        assert_eq!(
            placeholders("a @X@ b @Y_2@ c @X@ sip:u@host @lower@"),
            ["X", "Y_2"]
        );
        assert_eq!(render("@A@@B@", &[("A", "1"), ("B", "2")]), "12");
        // An address with an `@` is not a placeholder.
        assert_eq!(
            render("sip:1001@@D@", &[("D", "example.com")]),
            "sip:1001@example.com"
        );
    }

    #[test]
    #[should_panic(expected = "placeholders left unfilled")]
    fn a_left_over_placeholder_panics() {
        render("port=@PORT@ dir=@DIR@", &[("PORT", "1")]);
    }
}
