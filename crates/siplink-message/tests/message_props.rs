//! Property tests for whole messages.
//!
//! Well-formed requests and responses are generated from generators of URIs
//! (sip/sips/tel, escapes, IPv4/IPv6/domain hosts, ports, parameters) and header
//! values (Via, From/To with display names and tags, Call-ID, CSeq, Max-Forwards,
//! Contact and Route lists, extension headers), written with random header-name
//! case, compact forms, folded lines and random bodies. Properties:
//!
//! * parse → `to_bytes()` gives the same bytes, and the typed views read back the
//!   generated values; `validate()` accepts every generated message;
//! * parse → one edit → the output is exactly the input with that one line
//!   changed (every other line byte for byte) and `reparse()` reads the edit back;
//! * random bytes, and random mutations of valid messages, never make
//!   [`Message::parse`], a typed accessor, `validate()` or an edit panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use siplink_message::{HeaderName, Message, Role, ValidationOptions};

// ----- a small deterministic RNG for rendering choices -----

/// SplitMix64: rendering choices (LWS, name case, line grouping, order) come
/// from a generated seed so that the value generators stay simple.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// Optional linear white space (`SWS`), sometimes a folded line.
fn sws(rng: &mut Rng) -> &'static str {
    if rng.chance(60) {
        ""
    } else {
        rng.pick(&[" ", "\t", "  ", "\r\n ", " \r\n\t"])
    }
}

/// Required linear white space (`LWS`), sometimes a folded line.
fn lws(rng: &mut Rng) -> &'static str {
    if rng.chance(60) {
        " "
    } else {
        rng.pick(&["  ", "\t", "\r\n ", " \r\n  "])
    }
}

fn random_case(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.chance(50) {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A header name as a peer might write it: canonical, lower, upper, random case
/// or compact form.
fn header_name(rng: &mut Rng, canonical: &str, compact: Option<char>) -> String {
    match rng.below(6) {
        0 | 1 => canonical.to_string(),
        2 => canonical.to_ascii_lowercase(),
        3 => canonical.to_ascii_uppercase(),
        4 => random_case(rng, canonical),
        _ => match compact {
            Some(c) => random_case(rng, &c.to_string()),
            None => canonical.to_string(),
        },
    }
}

// ----- character sets -----

const ALNUM: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const TOKEN_EXTRA: &str = "-.!%*_+`'~";
const WORD_EXTRA: &str = "-.!%*_+`'~()<>:\\\"/[]?{}";
const UTF8: &[char] = &['é', 'ü', 'ß', '日', '本', '€', 'Ω', '😀'];

fn charset(extra: &str) -> Vec<char> {
    ALNUM.chars().chain(extra.chars()).collect()
}

fn text_of(set: Vec<char>, len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(select(set), len).prop_map(|v| v.into_iter().collect())
}

fn token(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    text_of(charset(TOKEN_EXTRA), len)
}

/// URI component text from `unreserved` + `extra`, with `%HH` escapes.
fn escaped(extra: &'static str, len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let set = charset(&format!("-_.!~*'(){extra}"));
    vec(
        prop_oneof![
            8 => select(set).prop_map(String::from),
            1 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
            1 => any::<u8>().prop_map(|b| format!("%{b:02x}")),
        ],
        len,
    )
    .prop_map(|v| v.concat())
}

// ----- hosts and URIs -----

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    (
        vec(label(), 0..3),
        "[a-zA-Z]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?",
        any::<bool>(),
    )
        .prop_map(|(mut labels, top, dot)| {
            labels.push(top);
            let mut s = labels.join(".");
            if dot {
                s.push('.');
            }
            s
        })
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string())
}

fn ipv6() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|a| Ipv6Addr::from(a).to_string()),
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_ipv6_mapped().to_string()),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("2001:db8::{a:x}:{b:X}")),
    ]
}

/// A host as it appears in a URI or Via sent-by.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => domain(),
        2 => ipv4(),
        2 => ipv6().prop_map(|a| format!("[{a}]")),
    ]
}

fn sip_uri(with_headers: bool) -> impl Strategy<Value = String> {
    let max_headers = if with_headers { 3 } else { 1 };
    (
        select(vec!["sip", "sip", "SIP", "Sip", "sips", "SIPS"]),
        proptest::option::of((
            escaped("&=+$,;?/", 1..10),
            proptest::option::weighted(0.2, escaped("&=+$,", 0..6)),
        )),
        host(),
        proptest::option::of(any::<u16>()),
        (
            proptest::option::of(select(vec!["udp", "tcp", "TLS", "sctp", "ws"])),
            any::<bool>(),
            proptest::option::weighted(0.2, ipv4()),
            proptest::option::weighted(0.2, any::<u8>()),
            proptest::option::weighted(0.2, select(vec!["phone", "ip"])),
        ),
        vec(
            (
                escaped("[]/:&+$", 0..5),
                proptest::option::of(escaped("[]/:&+$", 1..8)),
            ),
            0..3,
        ),
        vec(
            (escaped("[]/?:+$", 0..5), escaped("[]/?:+$", 0..8)),
            0..max_headers,
        ),
    )
        .prop_map(
            |(
                scheme,
                user,
                host,
                port,
                (transport, lr, maddr, ttl, user_param),
                params,
                headers,
            )| {
                let mut s = format!("{scheme}:");
                if let Some((u, pw)) = user {
                    s.push_str(&u);
                    if let Some(pw) = pw {
                        s.push(':');
                        s.push_str(&pw);
                    }
                    s.push('@');
                }
                s.push_str(&host);
                if let Some(p) = port {
                    s.push_str(&format!(":{p}"));
                }
                if let Some(t) = transport {
                    s.push_str(&format!(";transport={t}"));
                }
                if lr {
                    s.push_str(";lr");
                }
                if let Some(m) = maddr {
                    s.push_str(&format!(";maddr={m}"));
                }
                if let Some(t) = ttl {
                    s.push_str(&format!(";ttl={t}"));
                }
                if let Some(u) = user_param {
                    s.push_str(&format!(";user={u}"));
                }
                // Distinct names: an index after a letter.
                for (i, (n, v)) in params.iter().enumerate() {
                    s.push_str(&format!(";x{i}{n}"));
                    if let Some(v) = v {
                        s.push('=');
                        s.push_str(v);
                    }
                }
                for (i, (n, v)) in headers.iter().enumerate() {
                    s.push(if i == 0 { '?' } else { '&' });
                    s.push_str(&format!("h{i}{n}={v}"));
                }
                s
            },
        )
}

fn tel_uri() -> impl Strategy<Value = String> {
    let global = (
        vec(("[0-9]", proptest::option::of("[-.()]")), 1..12),
        proptest::option::weighted(0.3, "[0-9]{1,5}"),
    )
        .prop_map(|(digits, ext)| {
            let mut s = String::from("tel:+");
            for (d, sep) in digits {
                s.push_str(&d);
                s.push_str(sep.as_deref().unwrap_or(""));
            }
            if let Some(e) = ext {
                s.push_str(&format!(";ext={e}"));
            }
            s
        });
    let local = (
        "[0-9][0-9a-fA-F*#-]{0,8}",
        prop_oneof![domain(), "\\+[0-9]{1,6}"],
    )
        .prop_map(|(n, ctx)| format!("tel:{n};phone-context={ctx}"));
    (
        prop_oneof![global, local],
        vec(
            (
                "[a-z0-9-]{0,4}",
                proptest::option::of(escaped("[]/:&+$", 1..6)),
            ),
            0..2,
        ),
    )
        .prop_map(|(mut s, params)| {
            for (i, (n, v)) in params.iter().enumerate() {
                s.push_str(&format!(";y{i}{n}"));
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(v);
                }
            }
            s
        })
}

/// A Request-URI (no URI headers, which validation refuses).
fn request_uri() -> impl Strategy<Value = String> {
    prop_oneof![4 => sip_uri(false), 1 => tel_uri()]
}

/// A URI inside a name-addr.
fn addr_uri() -> impl Strategy<Value = String> {
    prop_oneof![4 => sip_uri(true), 1 => tel_uri()]
}

// ----- name-addr values -----

#[derive(Debug, Clone)]
enum DisplayName {
    None,
    Token(Vec<String>),
    /// (as written inside the quotes, decoded)
    Quoted(Vec<(String, String)>),
}

impl DisplayName {
    fn expected(&self) -> Option<String> {
        match self {
            DisplayName::None => None,
            DisplayName::Token(words) => Some(words.join(" ")),
            DisplayName::Quoted(units) => Some(units.iter().map(|u| u.1.as_str()).collect()),
        }
    }
}

fn display_name() -> impl Strategy<Value = DisplayName> {
    let printable: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    let unit = prop_oneof![
        8 => select(printable).prop_map(|c| (c.to_string(), c.to_string())),
        1 => Just(("\\\"".to_string(), "\"".to_string())),
        1 => Just(("\\\\".to_string(), "\\".to_string())),
        1 => select(charset(",;<>@:")).prop_map(|c| (format!("\\{c}"), c.to_string())),
        2 => select(UTF8.to_vec()).prop_map(|c| (c.to_string(), c.to_string())),
    ];
    prop_oneof![
        2 => Just(DisplayName::None),
        2 => vec(token(1..8), 1..4).prop_map(DisplayName::Token),
        3 => vec(unit, 0..14).prop_map(DisplayName::Quoted),
    ]
}

/// A generic parameter value: token or quoted string (as written).
fn gen_value() -> impl Strategy<Value = String> {
    let quoted: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    prop_oneof![
        3 => token(1..10),
        1 => text_of(quoted, 0..10).prop_map(|s| format!("\"{s}\"")),
        1 => Just("\"a \\\" b, c\"".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct NameAddrGen {
    display: DisplayName,
    uri: String,
    /// Header parameters (distinct names), values as written.
    params: Vec<(String, Option<String>)>,
    /// Written as an addr-spec when possible.
    prefer_addr_spec: bool,
}

impl NameAddrGen {
    fn tag(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.0 == "tag")
            .and_then(|p| p.1.as_deref())
    }

    fn render(&self, rng: &mut Rng) -> String {
        let plain_uri = !self.uri.contains([';', '?', ',']);
        let mut s = String::new();
        match &self.display {
            DisplayName::None if self.prefer_addr_spec && plain_uri => s.push_str(&self.uri),
            DisplayName::None => s.push_str(&format!("<{}>", self.uri)),
            DisplayName::Token(words) => {
                s.push_str(&words.join(" "));
                s.push_str(lws(rng));
                s.push_str(&format!("<{}>", self.uri));
            }
            DisplayName::Quoted(units) => {
                s.push('"');
                units.iter().for_each(|u| s.push_str(&u.0));
                s.push('"');
                s.push_str(sws(rng));
                s.push_str(&format!("<{}>", self.uri));
            }
        }
        for (n, v) in &self.params {
            s.push_str(sws(rng));
            s.push(';');
            s.push_str(sws(rng));
            s.push_str(n);
            if let Some(v) = v {
                s.push_str(sws(rng));
                s.push('=');
                s.push_str(sws(rng));
                s.push_str(v);
            }
        }
        s
    }
}

/// Extension header parameters with distinct names.
fn ext_params(max: usize) -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    vec((token(0..5), proptest::option::of(gen_value())), 0..max).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (n, val))| (format!("p{i}{n}"), val))
            .collect()
    })
}

fn name_addr(
    tag: impl Strategy<Value = Option<String>>,
    extra: impl Strategy<Value = Vec<(String, Option<String>)>>,
) -> impl Strategy<Value = NameAddrGen> {
    (
        display_name(),
        addr_uri(),
        tag,
        extra,
        ext_params(3),
        any::<bool>(),
    )
        .prop_map(|(display, uri, tag, extra, ext, prefer_addr_spec)| {
            let mut params = Vec::new();
            if let Some(t) = tag {
                params.push(("tag".to_string(), Some(t)));
            }
            params.extend(extra);
            params.extend(ext);
            NameAddrGen {
                display,
                uri,
                params,
                prefer_addr_spec,
            }
        })
}

fn no_params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    Just(Vec::new())
}

fn contact() -> impl Strategy<Value = NameAddrGen> {
    let extra = (
        proptest::option::of(any::<u32>()),
        proptest::option::of(select(vec!["0", "1", "0.5", "0.125", "1.000"])),
    )
        .prop_map(|(e, q)| {
            let mut v = Vec::new();
            if let Some(e) = e {
                v.push(("expires".to_string(), Some(e.to_string())));
            }
            if let Some(q) = q {
                v.push(("q".to_string(), Some(q.to_string())));
            }
            v
        });
    name_addr(Just(None), extra)
}

// ----- Via -----

#[derive(Debug, Clone)]
struct ViaGen {
    transport: String,
    host: String,
    port: Option<u16>,
    branch: String,
    received: Option<String>,
    rport: Option<Option<u16>>,
    ttl: Option<u8>,
    maddr: Option<String>,
    ext: Vec<(String, Option<String>)>,
    /// Where `branch` goes among the parameters.
    branch_at: usize,
}

fn via() -> impl Strategy<Value = ViaGen> {
    (
        select(vec!["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "Tcp"]),
        host(),
        proptest::option::of(any::<u16>()),
        (any::<bool>(), token(1..12)),
        proptest::option::of(prop_oneof![
            ipv4(),
            ipv6(),
            ipv6().prop_map(|a| format!("[{a}]"))
        ]),
        proptest::option::of(proptest::option::of(any::<u16>())),
        proptest::option::weighted(0.2, any::<u8>()),
        proptest::option::weighted(0.2, prop_oneof![ipv4(), domain()]),
        ext_params(3),
        0..8usize,
    )
        .prop_map(
            |(transport, host, port, (magic, b), received, rport, ttl, maddr, ext, branch_at)| {
                ViaGen {
                    transport: transport.to_string(),
                    host,
                    port,
                    branch: if magic { format!("z9hG4bK{b}") } else { b },
                    received,
                    rport,
                    ttl,
                    maddr,
                    ext,
                    branch_at,
                }
            },
        )
}

impl ViaGen {
    fn render(&self, rng: &mut Rng) -> String {
        let slash = |rng: &mut Rng| if rng.chance(10) { " / " } else { "/" };
        let mut s = format!("SIP{}2.0{}{}", slash(rng), slash(rng), self.transport);
        s.push_str(lws(rng));
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        let mut params: Vec<(String, Option<String>)> = Vec::new();
        if let Some(r) = &self.received {
            params.push(("received".into(), Some(r.clone())));
        }
        if let Some(r) = self.rport {
            params.push(("rport".into(), r.map(|p| p.to_string())));
        }
        if let Some(t) = self.ttl {
            params.push(("ttl".into(), Some(t.to_string())));
        }
        if let Some(m) = &self.maddr {
            params.push(("maddr".into(), Some(m.clone())));
        }
        params.extend(self.ext.iter().cloned());
        let at = self.branch_at.min(params.len());
        params.insert(at, ("branch".into(), Some(self.branch.clone())));
        for (n, v) in params {
            s.push_str(sws(rng));
            s.push(';');
            s.push_str(sws(rng));
            s.push_str(&n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(&v);
            }
        }
        s
    }
}

// ----- whole messages -----

const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(METHODS.to_vec()).prop_map(String::from),
        1 => token(1..12),
    ]
}

#[derive(Debug, Clone)]
enum Start {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

fn start() -> impl Strategy<Value = Start> {
    let reason_chars: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .chain(['\t'])
        .chain(UTF8.iter().copied())
        .collect();
    prop_oneof![
        (method(), request_uri()).prop_map(|(method, uri)| Start::Request { method, uri }),
        (100u16..700, text_of(reason_chars, 0..20))
            .prop_map(|(code, reason)| Start::Response { code, reason }),
    ]
}

#[derive(Debug, Clone)]
struct Model {
    start: Start,
    vias: Vec<ViaGen>,
    from: NameAddrGen,
    to: NameAddrGen,
    call_id: String,
    cseq: (u32, String),
    max_forwards: Option<(u8, usize)>,
    contacts: Vec<NameAddrGen>,
    routes: Vec<NameAddrGen>,
    /// Extension headers: name (distinct) and the words of the value.
    extensions: Vec<(String, Vec<String>)>,
    body: Vec<u8>,
    seed: u64,
}

impl Model {
    fn cseq_method(&self) -> &str {
        match &self.start {
            Start::Request { method, .. } => method,
            Start::Response { .. } => &self.cseq.1,
        }
    }
}

fn call_id() -> impl Strategy<Value = String> {
    (
        text_of(charset(WORD_EXTRA), 1..16),
        proptest::option::of(text_of(charset(WORD_EXTRA), 1..10)),
    )
        .prop_map(|(a, b)| match b {
            Some(b) => format!("{a}@{b}"),
            None => a,
        })
}

fn extension_header() -> impl Strategy<Value = (String, Vec<String>)> {
    let word: Vec<char> = (0x21u8..0x7f)
        .map(char::from)
        .chain(UTF8.iter().copied())
        .collect();
    (token(0..6), vec(text_of(word, 1..8), 0..5))
}

fn model() -> impl Strategy<Value = Model> {
    (
        start(),
        vec(via(), 1..4),
        name_addr(token(1..10).prop_map(Some), no_params()),
        name_addr(proptest::option::of(token(1..10)), no_params()),
        call_id(),
        (any::<u32>(), method()),
        proptest::option::of((any::<u8>(), 0..3usize)),
        vec(contact(), 0..4),
        vec(name_addr(Just(None), no_params()), 0..4),
        vec(extension_header(), 0..4),
        vec(any::<u8>(), 0..48),
        any::<u64>(),
    )
        .prop_map(
            |(
                start,
                vias,
                from,
                to,
                call_id,
                cseq,
                max_forwards,
                contacts,
                routes,
                ext,
                body,
                seed,
            )| {
                Model {
                    start,
                    vias,
                    from,
                    to,
                    call_id,
                    cseq,
                    max_forwards,
                    contacts,
                    routes,
                    extensions: ext
                        .into_iter()
                        .enumerate()
                        .map(|(i, (n, words))| (format!("X-{i}-{n}"), words))
                        .collect(),
                    body,
                    seed,
                }
            },
        )
}

/// One rendered header line.
#[derive(Debug, Clone)]
struct Line {
    kind: HeaderName,
    raw_name: String,
    /// The whole line, CRLF included.
    text: String,
    /// The list elements on this line (list headers), as written.
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rendered {
    start: String,
    lines: Vec<Line>,
    body: Vec<u8>,
}

impl Rendered {
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.start.clone().into_bytes();
        for l in &self.lines {
            out.extend_from_slice(l.text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn line(rng: &mut Rng, kind: HeaderName, compact: Option<char>, values: Vec<String>) -> Line {
    let raw_name = match kind.canonical() {
        Some(c) => header_name(rng, c, compact),
        None => unreachable!(),
    };
    ext_line(rng, kind, raw_name, values)
}

fn ext_line(rng: &mut Rng, kind: HeaderName, raw_name: String, values: Vec<String>) -> Line {
    let mut text = raw_name.clone();
    text.push_str(rng.pick(&["", "", "", " ", "\t", " \t"]));
    text.push(':');
    text.push_str(sws(rng));
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            text.push_str(sws(rng));
            text.push(',');
            text.push_str(sws(rng));
        }
        text.push_str(v);
    }
    if rng.chance(10) {
        text.push_str(rng.pick(&[" ", "\t", "  "]));
    }
    text.push_str("\r\n");
    Line {
        kind,
        raw_name,
        text,
        values,
    }
}

/// Splits `values` into header lines at random.
fn list_lines(
    rng: &mut Rng,
    kind: HeaderName,
    compact: Option<char>,
    values: Vec<String>,
) -> Vec<Line> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for v in values {
        match groups.last_mut() {
            Some(g) if rng.chance(50) => g.push(v),
            _ => groups.push(vec![v]),
        }
    }
    groups
        .into_iter()
        .map(|g| line(rng, kind, compact, g))
        .collect()
}

fn render(m: &Model) -> Rendered {
    let mut rng = Rng(m.seed);
    let start = match &m.start {
        Start::Request { method, uri } => format!("{method} {uri} SIP/2.0\r\n"),
        Start::Response { code, reason } => format!("SIP/2.0 {code} {reason}\r\n"),
    };
    let mut lines = Vec::new();
    let vias: Vec<String> = m.vias.iter().map(|v| v.render(&mut rng)).collect();
    lines.extend(list_lines(&mut rng, HeaderName::Via, Some('v'), vias));
    let v = m.from.render(&mut rng);
    lines.push(line(&mut rng, HeaderName::From, Some('f'), vec![v]));
    let v = m.to.render(&mut rng);
    lines.push(line(&mut rng, HeaderName::To, Some('t'), vec![v]));
    lines.push(line(
        &mut rng,
        HeaderName::CallId,
        Some('i'),
        vec![m.call_id.clone()],
    ));
    let cseq = format!("{}{}{}", m.cseq.0, lws(&mut rng), m.cseq_method());
    lines.push(line(&mut rng, HeaderName::CSeq, None, vec![cseq]));
    if let Some((n, zeros)) = m.max_forwards {
        let v = format!("{}{n}", "0".repeat(zeros));
        lines.push(line(&mut rng, HeaderName::MaxForwards, None, vec![v]));
    }
    let contacts: Vec<String> = m.contacts.iter().map(|c| c.render(&mut rng)).collect();
    lines.extend(list_lines(
        &mut rng,
        HeaderName::Contact,
        Some('m'),
        contacts,
    ));
    let routes: Vec<String> = m.routes.iter().map(|c| c.render(&mut rng)).collect();
    lines.extend(list_lines(&mut rng, HeaderName::Route, None, routes));
    for (name, words) in &m.extensions {
        let mut value = String::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                value.push_str(rng.pick(&[" ", " ", "  ", "\t", "\r\n ", " \r\n\t"]));
            }
            value.push_str(w);
        }
        let raw = random_case(&mut rng, name);
        lines.push(ext_line(&mut rng, HeaderName::Other, raw, vec![value]));
    }
    if !m.body.is_empty() {
        lines.push(line(
            &mut rng,
            HeaderName::ContentType,
            Some('c'),
            vec!["application/octet-stream".into()],
        ));
    }
    lines.push(line(
        &mut rng,
        HeaderName::ContentLength,
        Some('l'),
        vec![m.body.len().to_string()],
    ));

    // Shuffle the lines, keeping the relative order of lines of the same header.
    let mut keys: Vec<u64> = lines.iter().map(|_| rng.next()).collect();
    let mut kinds: Vec<HeaderName> = lines.iter().map(|l| l.kind).collect();
    kinds.dedup();
    for kind in kinds {
        let idx: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].kind == kind)
            .collect();
        let mut ks: Vec<u64> = idx.iter().map(|&i| keys[i]).collect();
        ks.sort_unstable();
        for (&i, k) in idx.iter().zip(ks) {
            keys[i] = k;
        }
    }
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let lines = order.into_iter().map(|i| lines[i].clone()).collect();
    Rendered {
        start,
        lines,
        body: m.body.clone(),
    }
}

// ----- checks -----

fn strip_lws(v: &str) -> String {
    v.replace("\r\n", "")
}

fn check_name_addr(
    got: &siplink_message::headers::NameAddr,
    want: &NameAddrGen,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.uri.as_str(), want.uri.as_str());
    let display = want.display.expected();
    prop_assert_eq!(got.display_name.as_deref(), display.as_deref());
    prop_assert_eq!(got.tag(), want.tag());
    prop_assert_eq!(got.params.len(), want.params.len());
    for (p, (n, _)) in got.params.iter().zip(&want.params) {
        prop_assert_eq!(&*p.name, n.as_str());
    }
    Ok(())
}

/// The typed views read back what was generated.
fn check_views(msg: &Message, m: &Model, r: &Rendered) -> Result<(), TestCaseError> {
    match &m.start {
        Start::Request { method, uri } => {
            prop_assert!(msg.is_request());
            prop_assert_eq!(msg.method().map(|m| m.as_str()), Some(method.as_str()));
            prop_assert_eq!(msg.request_uri().unwrap().as_str(), uri.as_str());
        }
        Start::Response { code, reason } => {
            prop_assert_eq!(msg.status(), Some(*code));
            prop_assert_eq!(msg.reason(), Some(reason.as_bytes()));
        }
    }
    prop_assert_eq!(msg.version(), b"SIP/2.0");
    prop_assert_eq!(msg.header_count(), r.lines.len());
    for (h, l) in msg.headers().zip(&r.lines) {
        prop_assert_eq!(h.name(), l.kind);
        prop_assert_eq!(h.raw_name(), l.raw_name.as_bytes());
    }

    // A clone has no views yet: its top Via is read on its own.
    let fresh = msg.clone();
    let vias = msg.via().unwrap();
    prop_assert_eq!(fresh.top_via().unwrap(), &vias[0]);
    prop_assert_eq!(vias.len(), m.vias.len());
    for (got, want) in vias.iter().zip(&m.vias) {
        prop_assert_eq!(got.branch(), Some(want.branch.as_str()));
        prop_assert_eq!(&*got.transport, want.transport.as_str());
        prop_assert_eq!(got.host.to_string(), want.host.clone());
        prop_assert_eq!(got.port, want.port);
        prop_assert_eq!(got.received(), want.received.as_deref());
        prop_assert_eq!(got.rport(), want.rport);
        prop_assert_eq!(got.ttl(), want.ttl);
        prop_assert_eq!(got.maddr(), want.maddr.as_deref());
        prop_assert_eq!(got.has_magic_cookie(), want.branch.starts_with("z9hG4bK"));
    }
    prop_assert_eq!(
        msg.top_via().unwrap().branch(),
        Some(m.vias[0].branch.as_str())
    );
    check_name_addr(msg.from().unwrap(), &m.from)?;
    check_name_addr(msg.to().unwrap(), &m.to)?;
    prop_assert_eq!(msg.call_id().unwrap(), m.call_id.as_str());
    let cseq = msg.cseq().unwrap();
    prop_assert_eq!(cseq.seq, m.cseq.0);
    prop_assert_eq!(cseq.method.as_str(), m.cseq_method());
    prop_assert_eq!(msg.max_forwards().unwrap(), m.max_forwards.map(|x| x.0));
    let contacts = msg.contact().unwrap();
    prop_assert!(!contacts.is_star());
    prop_assert_eq!(contacts.as_slice().len(), m.contacts.len());
    for (got, want) in contacts.as_slice().iter().zip(&m.contacts) {
        check_name_addr(got, want)?;
        let exp = want.params.iter().find(|p| p.0 == "expires");
        prop_assert_eq!(
            got.expires(),
            exp.and_then(|p| p.1.as_deref())
                .map(|e| e.parse::<u32>().unwrap())
        );
    }
    let routes = msg.route().unwrap();
    prop_assert_eq!(routes.len(), m.routes.len());
    for (got, want) in routes.iter().zip(&m.routes) {
        check_name_addr(got, want)?;
    }
    for (name, words) in &m.extensions {
        let got: Vec<&[u8]> = msg.header_values_named(name).collect();
        prop_assert_eq!(got.len(), 1);
        // Folded lines are kept inside the value.
        let line = r
            .lines
            .iter()
            .find(|l| l.raw_name.eq_ignore_ascii_case(name))
            .unwrap();
        prop_assert_eq!(got[0], line.values[0].as_bytes());
        prop_assert_eq!(
            strip_lws(&line.values[0]).split_whitespace().count(),
            words.len()
        );
    }
    prop_assert_eq!(&msg.body()[..], &m.body[..]);
    prop_assert_eq!(msg.content_length(), Some(m.body.len() as u32));
    if m.body.is_empty() {
        prop_assert_eq!(msg.content_type().unwrap(), None);
    } else {
        prop_assert!(
            msg.content_type()
                .unwrap()
                .unwrap()
                .is("application", "octet-stream")
        );
    }
    Ok(())
}

/// Calls every accessor and validation; only panics matter.
fn exercise(msg: &Message) {
    let _ = (msg.is_request(), msg.method(), msg.status(), msg.reason());
    let _ = (msg.version(), msg.request_uri_bytes(), msg.request_uri());
    for h in msg.headers() {
        let _ = (h.name(), h.raw_name(), h.value(), h.value_str());
    }
    if let Ok(vias) = msg.via() {
        for v in vias {
            let _ = (
                v.branch(),
                v.received(),
                v.rport(),
                v.maddr(),
                v.ttl(),
                v.sent_by(),
            );
            let _ = v.to_string();
        }
    }
    let _ = msg.top_via();
    for na in [msg.from(), msg.to()].into_iter().flatten() {
        let _ = (na.tag(), na.to_string());
    }
    if let Ok(c) = msg.contact() {
        for na in c.as_slice() {
            let _ = (na.expires(), na.q(), na.instance(), na.reg_id());
        }
    }
    for list in [msg.route(), msg.record_route(), msg.path()]
        .into_iter()
        .flatten()
    {
        for na in list {
            let _ = na.to_string();
        }
    }
    let _ = (msg.call_id(), msg.cseq(), msg.max_forwards());
    let _ = (msg.expires(), msg.min_expires(), msg.content_type());
    let _ = (msg.www_authenticate(), msg.proxy_authenticate());
    let _ = (msg.authorization(), msg.proxy_authorization());
    let _ = (msg.allow(), msg.supported(), msg.require());
    let _ = (msg.proxy_require(), msg.unsupported(), msg.retry_after());
    let _ = (msg.user_agent(), msg.server(), msg.check_date());
    let _ = (msg.body(), msg.content_length(), msg.trailing_bytes());
    for role in [Role::Uas, Role::Proxy, Role::Syntax] {
        let _ = msg.validate_with(&ValidationOptions {
            role,
            supported: vec!["100rel".into()],
        });
    }
    let _ = msg.to_string();
}

/// Parses `data`; on success checks the unedited round trip, exercises every
/// view and checks that an edited copy re-parses.
fn parse_anything(data: &[u8]) -> Result<(), TestCaseError> {
    let Ok(msg) = Message::parse(data.to_vec()) else {
        return Ok(());
    };
    exercise(&msg);
    let lead = data.chunks(2).take_while(|c| *c == b"\r\n").count() * 2;
    prop_assert_eq!(
        &msg.to_bytes()[..],
        &data[lead..data.len() - msg.trailing_bytes()]
    );
    let mut edited = msg.clone();
    edited.prepend_header(HeaderName::Via, "SIP/2.0/UDP p.invalid;branch=z9hG4bKprop");
    edited.set_header(HeaderName::MaxForwards, "70");
    let re = edited.reparse();
    prop_assert!(
        re.is_ok(),
        "edited message does not re-parse: {:?}",
        re.err()
    );
    let re = re.unwrap();
    prop_assert_eq!(re.max_forwards(), Ok(Some(70)));
    prop_assert_eq!(re.body(), msg.body());
    exercise(&re);
    let mut edited = msg;
    if edited.remove_first_value(HeaderName::Via) {
        let re = edited.reparse();
        prop_assert!(
            re.is_ok(),
            "re-parse after remove_first_value: {:?}",
            re.err()
        );
        exercise(&re.unwrap());
    }
    Ok(())
}

// ----- edits -----

#[derive(Debug, Clone)]
enum Edit {
    SetMaxForwards(u8),
    PrependVia(ViaGen, u64),
    RemoveFirstVia,
    SetBody(Vec<u8>),
    AppendExtension(String, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let value: Vec<char> = (0x20u8..0x7f).map(char::from).collect();
    prop_oneof![
        any::<u8>().prop_map(Edit::SetMaxForwards),
        (via(), any::<u64>()).prop_map(|(v, s)| Edit::PrependVia(v, s)),
        Just(Edit::RemoveFirstVia),
        vec(any::<u8>(), 0..40).prop_map(Edit::SetBody),
        (token(1..6), text_of(value, 1..20))
            .prop_map(|(n, v)| Edit::AppendExtension(format!("Y-{n}"), v.trim().to_string())),
    ]
}

fn canonical_line(name: &str, value: &str) -> Line {
    Line {
        kind: HeaderName::from_bytes(name.as_bytes()),
        raw_name: name.to_string(),
        text: format!("{name}: {value}\r\n"),
        values: vec![value.to_string()],
    }
}

/// What the message must serialise to after `edit`.
/// What the edit methods write for a value: every line break, with the
/// whitespace that follows it, becomes one space (no header injection).
fn unfold_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            while matches!(chars.peek(), Some('\r' | '\n' | ' ' | '\t')) {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn expected_after(r: &Rendered, edit: &Edit) -> Rendered {
    let mut out = r.clone();
    match edit {
        Edit::SetMaxForwards(n) => {
            let new = canonical_line("Max-Forwards", &n.to_string());
            match out
                .lines
                .iter()
                .position(|l| l.kind == HeaderName::MaxForwards)
            {
                Some(at) => out.lines[at] = new,
                None => out.lines.push(new),
            }
        }
        Edit::PrependVia(v, seed) => {
            let text = v.render(&mut Rng(*seed));
            let at = out
                .lines
                .iter()
                .position(|l| l.kind == HeaderName::Via)
                .unwrap();
            out.lines
                .insert(at, canonical_line("Via", &unfold_str(&text)));
        }
        Edit::RemoveFirstVia => {
            let at = out
                .lines
                .iter()
                .position(|l| l.kind == HeaderName::Via)
                .unwrap();
            let l = &out.lines[at];
            if l.values.len() == 1 {
                out.lines.remove(at);
            } else {
                let rest = l.values[1..].to_vec();
                let mut new = canonical_line(&l.raw_name, &unfold_str(&rest.join(", ")));
                new.kind = HeaderName::Via;
                new.values = rest;
                out.lines[at] = new;
            }
        }
        Edit::SetBody(b) => {
            let at = out
                .lines
                .iter()
                .position(|l| l.kind == HeaderName::ContentLength)
                .unwrap();
            out.lines[at] = canonical_line("Content-Length", &b.len().to_string());
            out.body = b.clone();
        }
        Edit::AppendExtension(n, v) => out.lines.push(canonical_line(n, v)),
    }
    out
}

fn apply(msg: &mut Message, edit: &Edit) {
    match edit {
        Edit::SetMaxForwards(n) => msg.set_header(HeaderName::MaxForwards, n.to_string()),
        Edit::PrependVia(v, seed) => msg.prepend_header(HeaderName::Via, v.render(&mut Rng(*seed))),
        Edit::RemoveFirstVia => assert!(msg.remove_first_value(HeaderName::Via)),
        Edit::SetBody(b) => msg.set_body(None, b.clone()),
        Edit::AppendExtension(n, v) => msg.append_extension_header(n, v.clone()),
    }
}

// ----- mutations -----

fn mutate(data: &mut Vec<u8>, seed: u64, count: usize) {
    let mut rng = Rng(seed);
    for _ in 0..count {
        if data.is_empty() {
            data.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(data.len());
        match rng.below(7) {
            0 => data[at] ^= (rng.below(255) + 1) as u8,
            1 => data.insert(at, rng.pick(b"\r\n \t:;,<>\"\\@=%[]0")),
            2 => data.insert(at, rng.next() as u8),
            3 => {
                data.remove(at);
            }
            4 => data.truncate(at),
            5 => {
                // Duplicate the line around `at`.
                let s = data[..at]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let e = data[at..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(data.len(), |p| at + p + 1);
                let dup = data[s..e].to_vec();
                data.splice(e..e, dup);
            }
            _ => {
                // Remove the line around `at`.
                let s = data[..at]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let e = data[at..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(data.len(), |p| at + p + 1);
                data.drain(s..e);
            }
        }
    }
}

/// Header-ish fragments for lines that often get past the line parser.
const FRAGMENTS: &[&str] = &[
    "Via",
    "v",
    "From",
    "To",
    "t",
    "Call-ID",
    "CSeq",
    "Contact",
    "m",
    "Route",
    "Record-Route",
    "Path",
    "Max-Forwards",
    "Expires",
    "Content-Type",
    "Content-Length",
    "l",
    "Require",
    "Supported",
    "Retry-After",
    "Date",
    "WWW-Authenticate",
    "Authorization",
    ":",
    ": ",
    " ",
    "\t",
    "\r\n ",
    ";",
    ",",
    "<",
    ">",
    "\"",
    "\\",
    "@",
    "=",
    "sip:",
    "sips:",
    "tel:+1",
    "SIP/2.0/UDP ",
    "branch=z9hG4bK",
    "tag=",
    "received=",
    "rport",
    "[2001:db8::1]",
    "192.0.2.1",
    ":5060",
    "example.com",
    "INVITE",
    "1",
    "0",
    "70",
    "%41",
    "%",
    "*",
    "é",
    "(",
    ")",
    "Digest ",
    "realm=\"r\"",
    "nonce=",
    "?",
    "&",
    "lr",
    "expires=",
    "q=0.5",
];

fn fragment_line() -> impl Strategy<Value = String> {
    vec(select(FRAGMENTS.to_vec()), 1..12).prop_map(|v| v.concat())
}

// ----- properties -----

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        .. ProptestConfig::default()
    })]

    #[test]
    fn generated_messages_round_trip_and_read_back(m in model(), lead in 0..3usize, junk in vec(any::<u8>(), 0..8)) {
        let r = render(&m);
        let bytes = r.bytes();
        let msg = Message::parse(bytes.clone());
        prop_assert!(msg.is_ok(), "{:?}\n{}", msg.err(), String::from_utf8_lossy(&bytes));
        let msg = msg.unwrap();
        prop_assert!(!msg.is_edited());
        prop_assert_eq!(&msg.to_bytes()[..], &bytes[..]);
        check_views(&msg, &m, &r)?;
        let v = msg.validate();
        prop_assert!(v.is_ok(), "{:?}\n{}", v, String::from_utf8_lossy(&bytes));

        // Leading CRLFs and trailing datagram bytes do not change anything.
        let mut framed = b"\r\n".repeat(lead);
        framed.extend_from_slice(&bytes);
        framed.extend_from_slice(&junk);
        let again = Message::parse(framed).unwrap();
        prop_assert_eq!(again.trailing_bytes(), junk.len());
        prop_assert_eq!(&again.to_bytes()[..], &bytes[..]);
        check_views(&again, &m, &r)?;

        // A re-parse of the unedited message is the same message.
        let re = msg.reparse().unwrap();
        prop_assert_eq!(&re.to_bytes()[..], &bytes[..]);
    }

    #[test]
    fn one_edit_changes_one_line(m in model(), e in edit()) {
        let r = render(&m);
        let mut msg = Message::parse(r.bytes()).unwrap();
        if matches!(e, Edit::SetMaxForwards(_)) {
            // set_header replaces every line; the model has at most one.
            prop_assert!(msg.count(HeaderName::MaxForwards) <= 1);
        }
        apply(&mut msg, &e);
        prop_assert!(msg.is_edited());
        let want = expected_after(&r, &e).bytes();
        let out = msg.to_bytes();
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
        prop_assert_eq!(&out[..], &want[..]);

        let re = msg.reparse();
        prop_assert!(re.is_ok(), "{:?}", re.err());
        let re = re.unwrap();
        prop_assert_eq!(&re.to_bytes()[..], &out[..]);
        let branches = |msg: &Message| -> Vec<String> {
            msg.via().unwrap().iter().map(|v| v.branch().unwrap().to_string()).collect()
        };
        let old: Vec<String> = m.vias.iter().map(|v| v.branch.clone()).collect();
        match &e {
            Edit::SetMaxForwards(n) => {
                prop_assert_eq!(re.max_forwards(), Ok(Some(*n)));
                prop_assert_eq!(re.count(HeaderName::MaxForwards), 1);
                prop_assert_eq!(branches(&re), old);
            }
            Edit::PrependVia(v, _) => {
                prop_assert_eq!(re.top_via().unwrap().branch(), Some(v.branch.as_str()));
                prop_assert_eq!(&branches(&re)[1..], &old[..]);
            }
            Edit::RemoveFirstVia => {
                let vias = re.via().unwrap();
                prop_assert_eq!(vias.len(), old.len() - 1);
                prop_assert_eq!(&branches(&re)[..], &old[1..]);
            }
            Edit::SetBody(b) => {
                prop_assert_eq!(&re.body()[..], &b[..]);
                prop_assert_eq!(re.content_length(), Some(b.len() as u32));
                prop_assert_eq!(msg.content_length(), Some(b.len() as u32));
            }
            Edit::AppendExtension(n, v) => {
                let got: Vec<&[u8]> = re.header_values_named(n).collect();
                prop_assert_eq!(got, vec![v.as_bytes()]);
            }
        }
        // Everything else reads the same.
        prop_assert_eq!(re.call_id(), msg.call_id());
        prop_assert_eq!(re.call_id().unwrap(), m.call_id.as_str());
        prop_assert_eq!(re.cseq().unwrap().seq, m.cseq.0);
        prop_assert_eq!(re.from().unwrap().tag(), m.from.tag());
        prop_assert_eq!(re.to().unwrap().tag(), m.to.tag());
        prop_assert_eq!(re.contact().unwrap().as_slice().len(), m.contacts.len());
        prop_assert_eq!(re.route().unwrap().len(), m.routes.len());
        if !matches!(e, Edit::RemoveFirstVia) || m.vias.len() > 1 {
            let v = re.validate();
            prop_assert!(v.is_ok(), "{:?}", v);
        }
    }

    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..400)) {
        parse_anything(&data)?;
    }

    #[test]
    fn random_header_lines_never_panic(
        m in start(),
        lines in vec(fragment_line(), 0..10),
        body in vec(any::<u8>(), 0..16),
    ) {
        let mut data = match m {
            Start::Request { method, uri } => format!("{method} {uri} SIP/2.0\r\n"),
            Start::Response { code, reason } => format!("SIP/2.0 {code} {reason}\r\n"),
        }
        .into_bytes();
        for l in lines {
            data.extend_from_slice(l.as_bytes());
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(&body);
        parse_anything(&data)?;
    }

    #[test]
    fn mutated_messages_never_panic(m in model(), seed in any::<u64>(), count in 1..6usize) {
        let mut data = render(&m).bytes();
        mutate(&mut data, seed, count);
        parse_anything(&data)?;
    }
}
