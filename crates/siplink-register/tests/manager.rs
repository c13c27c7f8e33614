//! Virtual-time tests of the manager.

#[path = "support/sans_io.rs"]
mod sans_io;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sans_io::*;
use siplink_message::Message;
use siplink_register::{
    Event, Input, ManagerConfig, RegistrationConfig, RegistrationId, Registrations, State,
};

fn config_n(n: usize) -> RegistrationConfig {
    let mut cfg = config();
    cfg.aor = uri(&format!("sip:u{n}@example.com"));
    cfg.contact_user = format!("u{n}");
    cfg.credentials = None;
    cfg
}

fn manager(seed: u64) -> Registrations {
    Registrations::with_rng(ManagerConfig::default(), StdRng::seed_from_u64(seed))
}

/// Runs the manager until `end`, answering every REGISTER with `answer`
/// (`None` = no response) at the time it is sent. Returns the send times.
fn run(
    m: &mut Registrations,
    start: Instant,
    end: Instant,
    mut answer: impl FnMut(&Message) -> Option<Message>,
    log: &mut Vec<(Instant, RegistrationId, Message)>,
) {
    let mut now = start;
    loop {
        let mut idle = true;
        let events: Vec<Event> = std::iter::from_fn(|| m.poll_output()).collect();
        for e in events {
            if let Event::Send { id, request, .. } = e {
                idle = false;
                log.push((now, id, request.clone()));
                if let Some(resp) = answer(&request) {
                    m.handle_input(id, Input::Response(resp), now).unwrap();
                }
            }
        }
        if !idle {
            continue;
        }
        match m.poll_timeout() {
            Some(t) if t <= end => {
                now = now.max(t);
                m.handle_timeout(now);
            }
            _ => break,
        }
    }
}

fn per_second(times: impl Iterator<Item = Instant>, t0: Instant) -> BTreeMap<u64, usize> {
    let mut b = BTreeMap::new();
    for t in times {
        *b.entry((t - t0).as_secs()).or_insert(0) += 1;
    }
    b
}

#[test]
fn ten_thousand_registrations_are_staggered_and_refreshes_stay_spread() {
    let t0 = Instant::now();
    let mut m = manager(1);
    let ids: Vec<_> = (0..10_000)
        .map(|n| m.add(config_n(n), t0).unwrap())
        .collect();
    assert_eq!(m.len(), 10_000);
    let mut log = Vec::new();
    let end = t0 + Duration::from_secs(3 * 3600);
    run(&mut m, t0, end, |req| Some(ok(req, 3600)), &mut log);

    // Start-up: the first REGISTER of each registration.
    let mut first = BTreeMap::new();
    for (t, id, _) in &log {
        first.entry(*id).or_insert(*t);
    }
    assert_eq!(first.len(), 10_000);
    let buckets = per_second(first.values().copied(), t0);
    let span = buckets.keys().max().unwrap() + 1;
    let mean = 10_000.0 / span as f64;
    let max = *buckets.values().max().unwrap();
    assert!(
        (max as f64) <= 3.0 * mean,
        "start-up: max {max}/s vs mean {mean}/s"
    );
    assert!(span >= 190, "start-up spread over {span} s");

    // Every registration is registered and refreshes; no refresh burst.
    for id in &ids {
        assert!(matches!(m.state(*id), Some(State::Registered { .. })));
    }
    let refreshes: Vec<Instant> = log
        .iter()
        .filter(|(t, id, _)| first[id] != *t)
        .map(|(t, _, _)| *t)
        .collect();
    assert!(refreshes.len() >= 20_000, "{}", refreshes.len());
    let buckets = per_second(refreshes.iter().copied(), t0);
    let max = *buckets.values().max().unwrap();
    assert!(
        (max as f64) <= 3.0 * mean,
        "refresh: max {max}/s vs start-up mean {mean}/s"
    );
    // Each refresh wave covers at least as many seconds as the start-up did.
    let wave1 = buckets.range(3000..4000).count();
    let wave2 = buckets.range(6000..7800).count();
    assert!(
        wave1 as u64 >= span && wave2 as u64 >= span,
        "{wave1} {wave2}"
    );
    // Every registration refreshed before its binding expired.
    let mut last: BTreeMap<RegistrationId, Instant> = BTreeMap::new();
    for (t, id, _) in &log {
        if let Some(prev) = last.insert(*id, *t) {
            assert!(*t - prev <= Duration::from_secs(3595));
            assert!(*t - prev >= Duration::from_secs(1800));
        }
    }
}

#[test]
fn retries_after_an_outage_are_spread_too() {
    let t0 = Instant::now();
    let mut m = manager(2);
    for n in 0..2_000 {
        m.add(config_n(n), t0).unwrap();
    }
    // The registrar answers 503 for the first 10 minutes.
    let mut log = Vec::new();
    let outage_end = t0 + Duration::from_secs(600);
    run(
        &mut m,
        t0,
        t0 + Duration::from_secs(1200),
        |req| Some(response(req, 503)),
        &mut log,
    );
    let first: BTreeMap<RegistrationId, Instant> =
        log.iter().rev().map(|(t, id, _)| (*id, *t)).collect();
    let start_buckets = per_second(first.values().copied(), t0);
    let start_mean = 2_000.0 / (start_buckets.keys().max().unwrap() + 1) as f64;
    let retries: Vec<Instant> = log
        .iter()
        .filter(|(t, id, _)| first[id] != *t && *t < outage_end)
        .map(|(t, _, _)| *t)
        .collect();
    assert!(retries.len() >= 2_000 * 3, "{}", retries.len());
    // The 503s never line the retries up into a burst above the start-up rate.
    let buckets = per_second(retries.iter().copied(), t0);
    let max = *buckets.values().max().unwrap();
    assert!(
        (max as f64) <= 3.0 * start_mean,
        "retry max {max}/s vs start-up mean {start_mean}/s"
    );
}

#[test]
fn remove_unregisters_then_reports_removed() {
    let t0 = Instant::now();
    let mut m = manager(3);
    let id = m.add(config_n(1), t0).unwrap();
    let mut log = Vec::new();
    run(
        &mut m,
        t0,
        t0 + Duration::from_secs(10),
        |r| Some(ok(r, 3600)),
        &mut log,
    );
    assert!(matches!(m.state(id), Some(State::Registered { .. })));
    let now = t0 + Duration::from_secs(10);
    m.remove(id, now).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_output()).collect();
    let Some(Event::Send { request, .. }) = events.iter().find(|e| matches!(e, Event::Send { .. }))
    else {
        panic!("{events:?}")
    };
    assert_eq!(request.expires().unwrap(), Some(0));
    m.handle_input(id, Input::Response(response(request, 200)), now)
        .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_output()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StateChanged {
            state: State::Unregistered,
            ..
        }
    )));
    assert!(matches!(events.last(), Some(Event::Removed { id: r }) if *r == id));
    assert!(m.is_empty());
    assert_eq!(m.poll_timeout(), None);
    assert!(m.handle_input(id, Input::Timeout, now).is_err());
}

#[test]
fn update_in_place_keeps_the_call_id_and_a_new_identity_unregisters_the_old() {
    let t0 = Instant::now();
    let mut m = manager(4);
    let id = m.add(config_n(1), t0).unwrap();
    let mut log = Vec::new();
    run(
        &mut m,
        t0,
        t0 + Duration::from_secs(10),
        |r| Some(ok(r, 3600)),
        &mut log,
    );
    let call_id = log[0].2.call_id().unwrap().to_owned();

    // Same binding, new expiry: re-registers in place.
    let mut cfg = config_n(1);
    cfg.expires = 600;
    let now = t0 + Duration::from_secs(20);
    m.update(id, cfg, now).unwrap();
    log.clear();
    run(
        &mut m,
        now,
        now + Duration::from_secs(5),
        |r| Some(ok(r, 600)),
        &mut log,
    );
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].2.call_id().unwrap(), call_id);
    assert_eq!(log[0].2.expires().unwrap(), Some(600));

    // Another AOR: the old binding is unregistered, the new one registered.
    let now = now + Duration::from_secs(10);
    m.update(id, config_n(2), now).unwrap();
    let mut log: Vec<(RegistrationId, Message)> = Vec::new();
    let mut removed = Vec::new();
    let mut t = now;
    loop {
        let events: Vec<Event> = std::iter::from_fn(|| m.poll_output()).collect();
        if events.is_empty() {
            match m.poll_timeout() {
                Some(w) if w <= now + Duration::from_secs(5) => {
                    t = t.max(w);
                    m.handle_timeout(t);
                    continue;
                }
                _ => break,
            }
        }
        for e in events {
            match e {
                Event::Send { id, request, .. } => {
                    let resp = if request.expires().unwrap() == Some(0) {
                        response(&request, 200)
                    } else {
                        ok(&request, 3600)
                    };
                    log.push((id, request));
                    m.handle_input(id, Input::Response(resp), t).unwrap();
                }
                Event::Removed { id } => removed.push(id),
                _ => {}
            }
        }
    }
    let unreg = log
        .iter()
        .find(|(_, r)| r.expires().unwrap() == Some(0))
        .unwrap();
    assert_eq!(unreg.1.call_id().unwrap(), call_id);
    assert_ne!(unreg.0, id);
    assert_eq!(removed, vec![unreg.0]);
    let reg = log.iter().find(|(i, _)| *i == id).unwrap();
    assert_ne!(reg.1.call_id().unwrap(), call_id);
    assert_eq!(reg.1.to().unwrap().uri.as_str(), "sip:u2@example.com");
    assert!(matches!(m.state(id), Some(State::Registered { .. })));
    assert_eq!(m.len(), 1);
}

#[test]
fn shutdown_unregisters_everything_within_the_bound() {
    let t0 = Instant::now();
    let mut m = manager(5);
    for n in 0..20 {
        m.add(config_n(n), t0).unwrap();
    }
    let mut log = Vec::new();
    run(
        &mut m,
        t0,
        t0 + Duration::from_secs(10),
        |r| Some(ok(r, 3600)),
        &mut log,
    );
    let now = t0 + Duration::from_secs(10);
    m.shutdown(now);
    // Paced at 2000/s: the first at once, the 20th 9.5 ms later.
    let span = m.stop_span();
    assert_eq!(span, Duration::from_micros(500 * 19));
    let is_unreg = |e: &Event| matches!(e, Event::Send { request, .. } if request.expires().unwrap() == Some(0));
    let mut unregs = std::iter::from_fn(|| m.poll_output())
        .filter(is_unreg)
        .count();
    assert_eq!(unregs, 1);
    while let Some(t) = m.poll_timeout().filter(|&t| t <= now + span) {
        m.handle_timeout(t);
        unregs += std::iter::from_fn(|| m.poll_output())
            .filter(is_unreg)
            .count();
    }
    assert_eq!(unregs, 20);
    // Nobody answers: all gone once the bound passes.
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(4)));
    m.handle_timeout(now + span + Duration::from_secs(4));
    let removed = std::iter::from_fn(|| m.poll_output())
        .filter(|e| matches!(e, Event::Removed { .. }))
        .count();
    assert_eq!(removed, 20);
    assert!(m.is_empty());
}

/// 10,000 registrations shutting down: no burst of unregisters (at most 2 in
/// any millisecond at 2000/s), all sent within 5 s, and a registration that
/// is waiting for its turn can still be removed at once but not updated.
#[test]
fn shutdown_paces_the_unregisters() {
    let t0 = Instant::now();
    let mut m = manager(8);
    let ids: Vec<_> = (0..10_000)
        .map(|n| m.add(config_n(n), t0).unwrap())
        .collect();
    let mut log = Vec::new();
    let up = t0 + Duration::from_secs(300);
    run(&mut m, t0, up, |r| Some(ok(r, 3600)), &mut log);
    assert!(
        ids.iter()
            .all(|&id| matches!(m.state(id), Some(State::Registered { .. })))
    );
    std::iter::from_fn(|| m.poll_output()).for_each(drop);

    m.shutdown(up);
    assert_eq!(m.stop_span(), Duration::from_micros(500 * 9_999));
    let last = *ids.last().unwrap();
    assert!(m.update(last, config_n(9_999), up).is_err());
    m.remove(last, up).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_output()).collect();
    let mut count = 0;
    for e in events {
        if let Event::Send { id, request, .. } = e {
            // The first paced one, and the removed one at once.
            assert!(id == ids[0] || id == last, "{id:?}");
            count += 1;
            m.handle_input(id, Input::Response(ok(&request, 0)), up)
                .unwrap();
        }
    }
    assert_eq!(count, 2);
    let mut per_ms: BTreeMap<u128, usize> = BTreeMap::new();
    let mut now = up;
    loop {
        let events: Vec<Event> = std::iter::from_fn(|| m.poll_output()).collect();
        for e in events {
            if let Event::Send { id, request, .. } = e {
                assert_eq!(request.expires().unwrap(), Some(0));
                *per_ms.entry((now - up).as_millis()).or_default() += 1;
                count += 1;
                m.handle_input(id, Input::Response(ok(&request, 0)), now)
                    .unwrap();
            }
        }
        match m.poll_timeout() {
            Some(t) => {
                now = now.max(t);
                m.handle_timeout(now);
            }
            None => break,
        }
    }
    assert_eq!(count, 10_000);
    assert!(m.is_empty());
    assert!(
        per_ms.values().all(|&n| n <= 2),
        "a burst: {:?}",
        per_ms.values().max()
    );
    assert!((now - up) <= Duration::from_secs(5), "took {:?}", now - up);
}

#[test]
fn a_mass_flow_drop_does_not_cause_a_reregister_storm() {
    let t0 = Instant::now();
    let mut m = manager(6);
    let ids: Vec<_> = (0..2_000)
        .map(|n| {
            let mut cfg = config_n(n);
            cfg.transport = siplink_register::Transport::Tcp;
            m.add(cfg, t0).unwrap()
        })
        .collect();
    let mut log = Vec::new();
    let t1 = t0 + Duration::from_secs(100);
    run(&mut m, t0, t1, |r| Some(ok(r, 3600)), &mut log);
    let start_mean = 2_000.0 / 40.0;
    // The connection to the registrar drops for everyone at once.
    for id in &ids {
        m.handle_input(*id, Input::FlowClosed, t1).unwrap();
    }
    let mut flow_states = 0;
    for e in std::iter::from_fn(|| m.poll_output()) {
        if let Event::StateChanged {
            state: State::Retrying { at, .. },
            ..
        } = e
        {
            assert!(at >= t1);
            flow_states += 1;
        }
    }
    assert!(flow_states >= 2_000);
    log.clear();
    run(
        &mut m,
        t1,
        t1 + Duration::from_secs(300),
        |r| Some(ok(r, 3600)),
        &mut log,
    );
    assert_eq!(log.len(), 2_000, "each re-registers exactly once");
    let buckets = per_second(log.iter().map(|(t, _, _)| *t), t1);
    let max = *buckets.values().max().unwrap();
    assert!((max as f64) <= 3.0 * start_mean, "max {max}/s");
    // The first ones go out promptly.
    assert!(*buckets.keys().min().unwrap() <= 2);
    for id in &ids {
        assert!(matches!(m.state(*id), Some(State::Registered { .. })));
    }
}
