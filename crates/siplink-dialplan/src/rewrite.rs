//! Rewrite templates: `$1`, `${1}`, `${name}` and `$$`.

use std::borrow::Cow;

use regex_automata::util::captures::GroupInfo;
use regex_automata::{Input, PatternID, meta};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as is (`$$` already turned into `$`).
    Literal(String),
    /// The text of a capture group, by index (0 is the whole match).
    Group(usize),
}

/// A fault in a template: byte offset and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub(crate) position: usize,
    pub(crate) message: String,
}

/// A template checked against the groups of its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `template`, resolving group references against `groups` (the
    /// groups of a single-pattern regex).
    pub(crate) fn parse(template: &str, groups: &GroupInfo) -> Result<Self, TemplateError> {
        let group_len = groups.group_len(PatternID::ZERO);
        let resolve = |name: &str, position: usize| -> Result<usize, TemplateError> {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                match name.parse::<usize>() {
                    Ok(n) if n < group_len => Ok(n),
                    _ => Err(TemplateError {
                        position,
                        message: format!(
                            "no capture group {name} (the pattern has {} group{})",
                            group_len - 1,
                            if group_len == 2 { "" } else { "s" }
                        ),
                    }),
                }
            } else {
                groups
                    .to_index(PatternID::ZERO, name)
                    .ok_or_else(|| TemplateError {
                        position,
                        message: format!("no capture group named `{name}`"),
                    })
            }
        };

        let bytes = template.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = 0;
        while let Some(found) = template[rest..].find('$') {
            let at = rest + found;
            literal.push_str(&template[rest..at]);
            match bytes.get(at + 1) {
                Some(b'$') => {
                    literal.push('$');
                    rest = at + 2;
                }
                Some(b'{') => {
                    let start = at + 2;
                    let Some(len) = template[start..].find('}') else {
                        return Err(TemplateError {
                            position: at,
                            message: "unclosed `${`".into(),
                        });
                    };
                    let name = &template[start..start + len];
                    if name.is_empty() {
                        return Err(TemplateError {
                            position: at,
                            message: "empty group name in `${}`".into(),
                        });
                    }
                    let index = resolve(name, at)?;
                    push_group(&mut pieces, &mut literal, index);
                    rest = start + len + 1;
                }
                Some(b) if b.is_ascii_digit() => {
                    let start = at + 1;
                    let len = bytes[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let index = resolve(&template[start..start + len], at)?;
                    push_group(&mut pieces, &mut literal, index);
                    rest = start + len;
                }
                _ => {
                    return Err(TemplateError {
                        position: at,
                        message: "`$` must be followed by a group number, `{name}` or `$` \
                                  (write `$$` for a literal `$`)"
                            .into(),
                    });
                }
            }
        }
        literal.push_str(&template[rest..]);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self { pieces })
    }

    /// Heap bytes used by the template.
    fn memory_usage(&self) -> usize {
        self.pieces.capacity() * std::mem::size_of::<Piece>()
            + self
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Literal(s) => s.capacity(),
                    Piece::Group(_) => 0,
                })
                .sum::<usize>()
    }
}

fn push_group(pieces: &mut Vec<Piece>, literal: &mut String, index: usize) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
    }
    pieces.push(Piece::Group(index));
}

/// A pattern's capturing regex and its template, used only once that
/// pattern has won a lookup.
#[derive(Debug, Clone)]
pub(crate) struct Rewriter {
    regex: meta::Regex,
    template: Template,
}

impl Rewriter {
    pub(crate) fn new(regex: meta::Regex, template: Template) -> Self {
        Self { regex, template }
    }

    /// Replaces the first (leftmost-first) match of the pattern in `number`
    /// with the expanded template. In full-match mode the regex is anchored
    /// at both ends, so the match is the whole number and the result is the
    /// template alone.
    pub(crate) fn apply<'a>(&self, number: &'a str) -> Cow<'a, str> {
        let mut caps = self.regex.create_captures();
        self.regex.search_captures(&Input::new(number), &mut caps);
        let Some(whole) = caps.get_match() else {
            // Cannot happen for a number the plan matched with this pattern;
            // leave the number alone rather than panic.
            return Cow::Borrowed(number);
        };
        let mut out = String::with_capacity(number.len() + 8);
        out.push_str(&number[..whole.start()]);
        for piece in &self.template.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Group(index) => {
                    if let Some(span) = caps.get_group(*index) {
                        out.push_str(&number[span.range()]);
                    }
                }
            }
        }
        out.push_str(&number[whole.end()..]);
        Cow::Owned(out)
    }

    /// Heap bytes used by the regex and template.
    pub(crate) fn memory_usage(&self) -> usize {
        self.regex.memory_usage() + self.template.memory_usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(pattern: &str) -> GroupInfo {
        meta::Regex::new(pattern).unwrap().group_info().clone()
    }

    #[test]
    fn parses_all_reference_forms() {
        let g = groups(r"(?<area>0[0-9]{2})([0-9]+)");
        let t = Template::parse("+44${area}$2-$$${1}$0", &g).unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Literal("+44".into()),
                Piece::Group(1),
                Piece::Group(2),
                Piece::Literal("-$".into()),
                Piece::Group(1),
                Piece::Group(0),
            ]
        );
    }

    #[test]
    fn digits_after_dollar_are_read_greedily() {
        let g = groups("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)");
        let t = Template::parse("$11x", &g).unwrap();
        assert_eq!(t.pieces, vec![Piece::Group(11), Piece::Literal("x".into())]);
        let t = Template::parse("${1}1", &g).unwrap();
        assert_eq!(t.pieces, vec![Piece::Group(1), Piece::Literal("1".into())]);
    }

    #[test]
    fn rejects_malformed_templates() {
        let g = groups("(?<n>[0-9])");
        let cases = [
            ("ab$", 2, "must be followed"),
            ("$x", 0, "must be followed"),
            ("x${1", 1, "unclosed"),
            ("${}", 0, "empty group name"),
            ("$2", 0, "no capture group 2 (the pattern has 1 group)"),
            ("+${99999999999999999999999}", 1, "no capture group"),
            ("${m}", 0, "no capture group named `m`"),
        ];
        for (template, position, message) in cases {
            let err = Template::parse(template, &g).unwrap_err();
            assert_eq!(err.position, position, "{template}");
            assert!(err.message.contains(message), "{template}: {}", err.message);
        }
    }
}
