//! [`Resolver`] on hickory-resolver (feature `hickory`): A/AAAA, NAPTR and
//! SRV over DNS, for RFC 3263 ([`resolve_uri`](crate::resolve_uri)).

use std::fmt;
use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::error::{Error, Result};
use crate::resolve::{BoxFuture, Naptr, Resolver, Srv};

/// DNS resolution with hickory-resolver.
#[derive(Clone)]
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HickoryResolver").finish_non_exhaustive()
    }
}

fn err(name: &str, e: impl fmt::Display) -> Error {
    Error::Resolve {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// A DNS name as text, without the final dot of a fully qualified name.
fn name_text(n: &impl fmt::Display) -> String {
    let s = n.to_string();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => s,
    }
}

impl HickoryResolver {
    /// A resolver with the system's configuration (`/etc/resolv.conf`) and
    /// hosts file. Must be called within a tokio runtime.
    pub fn from_system_conf() -> Result<Self> {
        let inner = TokioResolver::builder_tokio()
            .map_err(|e| err("system resolver configuration", e))?
            .build()
            .map_err(|e| err("system resolver", e))?;
        Ok(HickoryResolver { inner })
    }

    /// Wraps a resolver built by the caller (other name servers, options...).
    pub fn from_resolver(inner: TokioResolver) -> Self {
        HickoryResolver { inner }
    }

    async fn records(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>> {
        match self.inner.lookup(name, rtype).await {
            Ok(l) => Ok(l.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(err(name, e)),
        }
    }
}

impl Resolver for HickoryResolver {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let ips: Vec<IpAddr> = self
                .inner
                .lookup_ip(host)
                .await
                .map_err(|e| err(host, e))?
                .iter()
                .collect();
            if ips.is_empty() {
                return Err(err(host, "no address"));
            }
            Ok(ips)
        })
    }

    fn lookup_naptr<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Naptr>>> {
        Box::pin(async move {
            Ok(self
                .records(domain, RecordType::NAPTR)
                .await?
                .into_iter()
                .filter_map(|d| match d {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        service: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: name_text(&n.replacement),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Srv>>> {
        Box::pin(async move {
            Ok(self
                .records(name, RecordType::SRV)
                .await?
                .into_iter()
                .filter_map(|d| match d {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: name_text(&s.target),
                    }),
                    _ => None,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No network here: an address literal and the hosts file only.
    #[tokio::test]
    async fn literals_and_hosts_file() {
        let r = HickoryResolver::from_system_conf().unwrap();
        assert_eq!(
            r.lookup_ip("192.0.2.7").await.unwrap(),
            vec!["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        let local = r.lookup_ip("localhost").await.unwrap();
        assert!(local.iter().all(|ip| ip.is_loopback()), "{local:?}");
        let t = crate::resolve_uri(&r, "127.0.0.1", None, None, false)
            .await
            .unwrap();
        assert_eq!(t[0].addr, "127.0.0.1:5060".parse().unwrap());
    }

    /// A tiny DNS server on 127.0.0.1 answering NAPTR, SRV and A for
    /// `sip.test`, so that the record mapping is tested end to end.
    async fn fake_dns() -> std::net::SocketAddr {
        use hickory_resolver::proto::op::Message;
        use hickory_resolver::proto::rr::rdata::{A, NAPTR, SRV};
        use hickory_resolver::proto::rr::{Name, Record};
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            for _ in 0..64 {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                resp.metadata.recursion_available = true;
                let Some(q) = req.queries.first().cloned() else {
                    continue;
                };
                let name = q.name().clone();
                let rdata: Vec<RData> = match (name.to_string().as_str(), q.query_type()) {
                    ("sip.test.", RecordType::NAPTR) => vec![
                        RData::NAPTR(NAPTR::new(
                            20,
                            10,
                            b"s".to_vec().into(),
                            b"SIP+D2T".to_vec().into(),
                            Vec::new().into(),
                            Name::from_ascii("_sip._tcp.sip.test.").unwrap(),
                        )),
                        RData::NAPTR(NAPTR::new(
                            10,
                            10,
                            b"s".to_vec().into(),
                            b"SIPS+D2T".to_vec().into(),
                            Vec::new().into(),
                            Name::from_ascii("_sips._tcp.sip.test.").unwrap(),
                        )),
                    ],
                    ("_sips._tcp.sip.test.", RecordType::SRV) => vec![RData::SRV(SRV::new(
                        0,
                        5,
                        5061,
                        Name::from_ascii("pbx.sip.test.").unwrap(),
                    ))],
                    ("_sip._tcp.sip.test.", RecordType::SRV) => vec![RData::SRV(SRV::new(
                        0,
                        5,
                        5060,
                        Name::from_ascii("pbx.sip.test.").unwrap(),
                    ))],
                    ("pbx.sip.test.", RecordType::A) => {
                        vec![RData::A(A("127.0.0.1".parse().unwrap()))]
                    }
                    _ => vec![],
                };
                resp.add_query(q);
                for d in rdata {
                    resp.add_answer(Record::from_rdata(name.clone(), 60, d));
                }
                let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn naptr_srv_a_from_a_dns_server() {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let dns = fake_dns().await;
        let mut ns = NameServerConfig::udp(dns.ip());
        ns.connections[0].port = dns.port();
        let inner = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        )
        .build()
        .unwrap();
        let r = HickoryResolver::from_resolver(inner);
        let naptr = r.lookup_naptr("sip.test").await.unwrap();
        assert_eq!(naptr.len(), 2);
        assert!(naptr.iter().any(|n| n.service == "SIPS+D2T"
            && n.replacement == "_sips._tcp.sip.test"
            && n.flags == "s"));
        assert_eq!(r.lookup_naptr("none.sip.test").await.unwrap(), vec![]);
        let t = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            crate::resolve_uri(&r, "sip.test", None, None, false),
        )
        .await
        .unwrap()
        .unwrap();
        let got: Vec<_> = t.iter().map(|t| (t.protocol, t.addr.to_string())).collect();
        assert_eq!(
            got,
            vec![
                (crate::Protocol::Tls, "127.0.0.1:5061".to_string()),
                (crate::Protocol::Tcp, "127.0.0.1:5060".to_string()),
            ]
        );
        assert_eq!(t[0].server_name.as_deref(), Some("sip.test"));
    }

    #[test]
    fn names_lose_the_final_dot() {
        assert_eq!(name_text(&"sip.example.com."), "sip.example.com");
        assert_eq!(name_text(&"."), ".");
    }
}
