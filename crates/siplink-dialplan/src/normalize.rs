//! Normalisation of dialled numbers as people write them.

use std::borrow::Cow;

/// Removes the separators people put in written numbers: whitespace
/// (including non-breaking and thin spaces), `-`, `.`, `/`, `(`, `)` and the
/// Unicode dashes U+2010 to U+2015.
///
/// Everything else is kept as is: digits, `+`, `*`, `#`, and also letters or
/// other characters, which are neither converted nor rejected. No
/// international prefix is added or removed; use a rewrite for that.
///
/// A [`DialPlan`](crate::DialPlan) matches numbers exactly as given, so call
/// this first if numbers may come in written form. It borrows when there is
/// nothing to remove.
///
/// ```
/// use siplink_dialplan::normalize_number;
///
/// assert_eq!(normalize_number("+44 (0)20 7946-0958"), "+4402079460958");
/// assert_eq!(normalize_number("030.1234.5678"), "03012345678");
/// assert_eq!(normalize_number("*21#"), "*21#");
/// ```
pub fn normalize_number(number: &str) -> Cow<'_, str> {
    if number.chars().any(is_separator) {
        Cow::Owned(number.chars().filter(|&c| !is_separator(c)).collect())
    } else {
        Cow::Borrowed(number)
    }
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '/' | '(' | ')' | '\u{2010}'..='\u{2015}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_separators_only() {
        assert_eq!(normalize_number(" 0 30-12\t34.56/78 "), "03012345678");
        assert_eq!(normalize_number("(555)\u{a0}123\u{2013}4567"), "5551234567");
        assert_eq!(normalize_number("+1-800-FLOWERS"), "+1800FLOWERS");
        assert_eq!(normalize_number(""), "");
    }

    #[test]
    fn borrows_clean_numbers() {
        assert!(matches!(
            normalize_number("+4930123#"),
            Cow::Borrowed("+4930123#")
        ));
        assert!(matches!(normalize_number("1 2"), Cow::Owned(_)));
    }
}
