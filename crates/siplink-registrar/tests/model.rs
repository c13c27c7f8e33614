//! Property test: the registrar over a BindingTable behaves like a simple map
//! from (AOR, contact) to expiry time, under virtual time.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use siplink_registrar::{Aor, BindingTable, Registrar};
use support::{Clock, Reg, contacts, expire, open_config};

#[derive(Debug, Clone)]
enum Op {
    Register { aor: u8, contact: u8, expires: u32 },
    Advance(u64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, prop_oneof![Just(0u32), 60u32..5000]).prop_map(
            |(aor, contact, expires)| Op::Register { aor, contact, expires }
        ),
        2 => (1u64..3000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn registrar_matches_a_map_model(ops in prop::collection::vec(op(), 1..60)) {
        let r = Registrar::new(open_config(), None).unwrap();
        let mut t = BindingTable::new();
        let c = Clock::new();
        let mut model: HashMap<(u8, u8), Instant> = HashMap::new();
        let mut now = 0u64;
        let mut cseq = [0u32; 3];
        for op in ops {
            let at = c.at(now).now;
            match op {
                Op::Register { aor, contact, expires } => {
                    cseq[aor as usize] += 1;
                    let req = Reg::new(&format!("u{aor}"))
                        .contacts(&[&format!("<sip:u@192.0.2.{contact}>")])
                        .expires(expires)
                        .cseq(cseq[aor as usize])
                        .build();
                    let d = r.handle_register(&req, &c.at(now), &mut t).unwrap();
                    prop_assert_eq!(d.status(), 200);
                    model.retain(|_, exp| *exp > at);
                    if expires == 0 {
                        model.remove(&(aor, contact));
                    } else {
                        model.insert((aor, contact), at + Duration::from_secs(u64::from(expires.min(3600))));
                    }
                    let listed = contacts(&d.response).len();
                    let expected = model.keys().filter(|(a, _)| *a == aor).count();
                    prop_assert_eq!(listed, expected);
                }
                Op::Advance(s) => now += s,
                Op::Expire => {
                    let ev = expire(&mut t, at);
                    prop_assert!(ev.iter().all(|e| e.binding.expires_at <= at));
                    prop_assert!(t.poll_timeout().is_none_or(|n| n > at));
                    let before = model.len();
                    model.retain(|_, exp| *exp > at);
                    // Everything expired in the model was in the table.
                    prop_assert!(ev.len() >= before - model.len());
                }
            }
            let at = c.at(now).now;
            let mut live = 0;
            for a in 0u8..3 {
                let aor = Aor::parse(&format!("sip:u{a}@example.com")).unwrap();
                let found = t.lookup(&aor, at);
                let want = model.iter().filter(|((x, _), exp)| *x == a && **exp > at).count();
                prop_assert_eq!(found.len(), want);
                for f in &found {
                    prop_assert!(f.binding.expires_at > at);
                }
                live += found.len();
            }
            prop_assert!(t.usage().bindings >= live);
            prop_assert!(t.usage().aors <= 3);
        }
        expire(&mut t, c.at(now + 10_000).now);
        prop_assert_eq!(t.usage(), Default::default());
        prop_assert_eq!(t.poll_timeout(), None);
    }
}
