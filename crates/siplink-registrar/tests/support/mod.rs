//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_registrar::{
    BindingEvent, BindingTable, FlowId, RegistrarConfig, RequestContext, Transport,
};

/// A REGISTER under construction.
#[derive(Clone)]
pub struct Reg {
    pub ruri: String,
    pub to: String,
    pub call_id: String,
    pub cseq: u32,
    pub contacts: Vec<String>,
    pub expires: Option<u32>,
    pub extra: Vec<(HeaderName, String)>,
}

impl Reg {
    pub fn new(user: &str) -> Reg {
        Reg {
            ruri: "sip:example.com".into(),
            to: format!("<sip:{user}@example.com>"),
            call_id: format!("call-{user}"),
            cseq: 1,
            contacts: vec![format!("<sip:{user}@192.0.2.10:5060>")],
            expires: None,
            extra: Vec::new(),
        }
    }
    pub fn ruri(mut self, r: &str) -> Reg {
        self.ruri = r.into();
        self
    }
    pub fn to(mut self, t: &str) -> Reg {
        self.to = t.into();
        self
    }
    pub fn call_id(mut self, c: &str) -> Reg {
        self.call_id = c.into();
        self
    }
    pub fn cseq(mut self, n: u32) -> Reg {
        self.cseq = n;
        self
    }
    pub fn contacts(mut self, c: &[&str]) -> Reg {
        self.contacts = c.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn expires(mut self, e: u32) -> Reg {
        self.expires = Some(e);
        self
    }
    pub fn header(mut self, n: HeaderName, v: &str) -> Reg {
        self.extra.push((n, v.into()));
        self
    }
    pub fn build(&self) -> Message {
        let mut b = MessageBuilder::request(Method::Register, &self.ruri)
            .header(
                HeaderName::Via,
                "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-test",
            )
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::To, &self.to)
            .header(HeaderName::From, format!("{};tag=f1", self.to))
            .header(HeaderName::CallId, &self.call_id)
            .header(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        for c in &self.contacts {
            b = b.header(HeaderName::Contact, c);
        }
        if let Some(e) = self.expires {
            b = b.header(HeaderName::Expires, e);
        }
        for (n, v) in &self.extra {
            b = b.header(*n, v);
        }
        b.build().expect("test REGISTER builds")
    }
}

/// Virtual time and a source.
#[derive(Clone, Copy)]
pub struct Clock {
    pub t0: Instant,
    pub s0: SystemTime,
    pub source: SocketAddr,
    pub flow: Option<FlowId>,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            t0: Instant::now(),
            s0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            source: "192.0.2.10:5060".parse().unwrap(),
            flow: Some(FlowId::from_raw(1)),
        }
    }
    pub fn at(&self, secs: u64) -> RequestContext {
        RequestContext {
            source: self.source,
            transport: Transport::Tcp,
            flow: self.flow,
            now: self.t0 + Duration::from_secs(secs),
            now_system: self.s0 + Duration::from_secs(secs),
        }
    }
    pub fn from(mut self, source: &str, flow: Option<u64>) -> Clock {
        self.source = source.parse().unwrap();
        self.flow = flow.map(FlowId::from_raw);
        self
    }
}

/// Configuration without authentication.
pub fn open_config() -> RegistrarConfig {
    let mut c = RegistrarConfig::new(["example.com"]);
    c.auth = false;
    c
}

/// The Contact values of a response, as text.
pub fn contacts(msg: &Message) -> Vec<String> {
    msg.contact()
        .unwrap()
        .as_slice()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// Values of a header, as text.
pub fn values(msg: &Message, h: HeaderName) -> Vec<String> {
    msg.header_values(h)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Runs a future that completes without waiting (in-memory stores).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Expires `table` at `now` and takes the expiry events.
pub fn expire(table: &mut BindingTable, now: Instant) -> Vec<BindingEvent> {
    table.handle_timeout(now);
    std::iter::from_fn(|| table.poll_output()).collect()
}
