//! Bencode (the encoding of rtpengine's ng protocol): byte strings, integers, lists and
//! dictionaries. Decoding is bounded (input size, nesting depth, item count) and never
//! panics; encoding writes dictionary keys sorted, as the format requires.

use std::collections::BTreeMap;

use crate::Error;

/// A bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A byte string.
    Bytes(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A list.
    List(Vec<Value>),
    /// A dictionary (byte-string keys, kept sorted).
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Bounds on decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BencodeLimits {
    /// Input size in bytes (default 256 KiB).
    pub max_len: usize,
    /// Nesting depth of lists and dictionaries (default 32).
    pub max_depth: usize,
    /// Values in all (default 65 536).
    pub max_items: usize,
}

impl Default for BencodeLimits {
    fn default() -> Self {
        BencodeLimits {
            max_len: 256 * 1024,
            max_depth: 32,
            max_items: 65_536,
        }
    }
}

impl Value {
    /// A byte-string value from text.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Bytes(s.as_ref().as_bytes().to_vec())
    }

    /// A list of byte strings.
    pub fn str_list<I, S>(items: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Value::List(items.into_iter().map(Value::str).collect())
    }

    /// The bytes of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A byte string that is UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// An integer (or a byte string of digits: rtpengine writes some numbers so).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bytes(_) => self.as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries of a dictionary.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value of dictionary key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.get(key.as_bytes())
    }

    /// Encodes into `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    out.extend_from_slice(k.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Encodes to a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one value filling `input`, with the default limits.
    pub fn decode(input: &[u8]) -> Result<Value, Error> {
        Value::decode_with(input, &BencodeLimits::default())
    }

    /// Decodes exactly one value filling `input` within `limits`.
    pub fn decode_with(input: &[u8], limits: &BencodeLimits) -> Result<Value, Error> {
        if input.len() > limits.max_len {
            return Err(Error::Bencode {
                offset: 0,
                what: "input over the size limit",
            });
        }
        let mut d = Decoder {
            input,
            pos: 0,
            items: 0,
            limits,
        };
        let v = d.value(0)?;
        if d.pos != input.len() {
            return Err(d.err("trailing bytes after the value"));
        }
        Ok(v)
    }
}

/// A dictionary builder: `dict([("command", Value::str("ping"))])`.
pub fn dict<K: AsRef<str>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_ref().as_bytes().to_vec(), v))
            .collect(),
    )
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: &'a BencodeLimits,
}

impl Decoder<'_> {
    fn err(&self, what: &'static str) -> Error {
        Error::Bencode {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(self.err("too many values"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'i') => {
                self.pos += 1;
                let n = self.integer(b'e')?;
                Ok(Value::Int(n))
            }
            Some(b'l') => {
                if depth >= self.limits.max_depth {
                    return Err(self.err("nested too deep"));
                }
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated list")),
                        Some(b'e') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        Some(_) => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(b'd') => {
                if depth >= self.limits.max_depth {
                    return Err(self.err("nested too deep"));
                }
                self.pos += 1;
                let mut map = BTreeMap::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated dictionary")),
                        Some(b'e') => {
                            self.pos += 1;
                            return Ok(Value::Dict(map));
                        }
                        Some(b'0'..=b'9') => {
                            let at = self.pos;
                            let key = self.string()?;
                            let v = self.value(depth + 1)?;
                            if map.insert(key, v).is_some() {
                                return Err(Error::Bencode {
                                    offset: at,
                                    what: "duplicate dictionary key",
                                });
                            }
                        }
                        Some(_) => return Err(self.err("dictionary key is not a byte string")),
                    }
                }
            }
            Some(b'0'..=b'9') => Ok(Value::Bytes(self.string()?)),
            Some(_) => Err(self.err("not the start of a value")),
        }
    }

    /// Digits (with an optional `-`) up to `end`, which is consumed.
    fn integer(&mut self, end: u8) -> Result<i64, Error> {
        let start = self.pos;
        let rest = &self.input[start..];
        // A sign and 19 digits at most: never scan further (no quadratic input).
        let len = rest
            .iter()
            .take(21)
            .position(|&b| b == end)
            .ok_or_else(|| self.err("unterminated number"))?;
        let text = &rest[..len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let ok = !digits.is_empty()
            && digits.len() <= 19
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && text != b"-0";
        if !ok {
            return Err(self.err("malformed number"));
        }
        // All ASCII digits (and a sign), so UTF-8; may still overflow i64.
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| self.err("number out of range"))?;
        self.pos = start + len + 1;
        Ok(n)
    }

    fn string(&mut self) -> Result<Vec<u8>, Error> {
        let n = self.integer(b':')?;
        let n = usize::try_from(n).map_err(|_| self.err("negative string length"))?;
        if n > self.input.len() - self.pos {
            return Err(self.err("string longer than the input"));
        }
        let s = self.input[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_encodes_the_spec_examples() {
        // The examples of BEP 3 (the BitTorrent specification that defines bencode).
        assert_eq!(Value::decode(b"4:spam").unwrap(), Value::str("spam"));
        assert_eq!(Value::decode(b"i3e").unwrap(), Value::Int(3));
        assert_eq!(Value::decode(b"i-3e").unwrap(), Value::Int(-3));
        assert_eq!(Value::decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(
            Value::decode(b"l4:spam4:eggse").unwrap(),
            Value::str_list(["spam", "eggs"])
        );
        let d = Value::decode(b"d3:cow3:moo4:spam4:eggse").unwrap();
        assert_eq!(d.get("cow").unwrap().as_str(), Some("moo"));
        assert_eq!(d.encode(), b"d3:cow3:moo4:spam4:eggse");
        assert_eq!(Value::decode(b"0:").unwrap(), Value::Bytes(vec![]));
    }

    #[test]
    fn refuses_malformed_numbers_and_structures() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i99999999999999999999e",
            b"i1",
            b"5:abc",
            b"l",
            b"d3:cow",
            b"di1e3:mooe",
            b"d1:a1:b1:a1:ce",
            b"x",
            b"",
            b"i1ei2e",
            b"-1:",
        ] {
            assert!(
                Value::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = [b"l".repeat(40), b"e".repeat(40)].concat();
        assert!(matches!(
            Value::decode(&deep),
            Err(Error::Bencode {
                what: "nested too deep",
                ..
            })
        ));
        let ok = [b"l".repeat(10), b"e".repeat(10)].concat();
        assert!(Value::decode(&ok).is_ok());
        let limits = BencodeLimits {
            max_items: 3,
            ..Default::default()
        };
        assert!(Value::decode_with(b"li1ei2ee", &limits).is_ok());
        assert!(Value::decode_with(b"li1ei2ei3ee", &limits).is_err());
    }

    #[test]
    fn keys_are_written_sorted_whatever_the_input_order() {
        let v = Value::decode(b"d1:b1:x1:a1:ye").unwrap();
        assert_eq!(v.encode(), b"d1:a1:y1:b1:xe");
    }
}
