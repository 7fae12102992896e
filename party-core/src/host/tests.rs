//! The machine driven by hand and by an in-memory router: failover, resends,
//! deadline, report schedule, progress de-duplication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand_core::OsRng;
use uuid::Uuid;

use super::*;
use crate::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, VerifiedDescriptor, DESCRIPTOR_VERSION,
};
use crate::identity::{CoordinatorKey, PartyIdentity};
use crate::session::{AuxSource, SessionInput};
use crate::wire::{ClientToRouter, ReportBody, RouterToClient, SignedReport};

const T0: u64 = 1_900_000_000_000;
const URLS: [&str; 2] = ["ws://router-a/ws", "ws://router-b/ws"];

fn test_aux(n: usize, i: usize) -> crate::AuxInfo {
    let path = format!("{}/test-data/aux-n{n}.json", env!("CARGO_MANIFEST_DIR"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crate::codec::decode(&hex::decode(v["aux"][i].as_str().unwrap()).unwrap()).unwrap()
}

/// A 2-of-3 keygen (reusing the PUBLIC test aux info) expiring at `T0 + 60 s`.
struct Setup {
    ids: Vec<PartyIdentity>,
    descriptor: VerifiedDescriptor,
}

fn setup() -> Setup {
    let coordinator = CoordinatorKey::generate(&mut OsRng);
    let ids: Vec<PartyIdentity> = (0..3)
        .map(|_| PartyIdentity::generate(&mut OsRng))
        .collect();
    let d = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: Uuid::new_v4(),
        kind: SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: ids
            .iter()
            .enumerate()
            .map(|(k, id)| Participant {
                party_id: format!("party-{k}"),
                keygen_index: k as u16,
                identity: id.public(),
            })
            .collect(),
        expires_at: T0 / 1000 + 60,
        authorization: None,
    };
    let descriptor = d
        .sign(&coordinator)
        .unwrap()
        .verify(&coordinator.public())
        .unwrap();
    Setup { ids, descriptor }
}

fn host(s: &Setup, k: usize, urls: &[&str], coordinators: usize) -> PartyHost {
    let config = HostConfig {
        router_urls: urls.iter().map(|u| u.to_string()).collect(),
        first_router: 0,
        join_token: format!("token-{k}"),
        coordinators,
        approved: None,
    };
    let mut h = PartyHost::new(s.descriptor.clone(), s.ids[k].clone(), config, T0).unwrap();
    // Admission first: the session id is to be recorded before anything.
    let a = drain(&mut h);
    assert!(
        matches!(&a[..], [Action::Record(Admission { session_id, approved: None })] if *session_id == s.descriptor.descriptor().session_id),
        "{a:?}"
    );
    h.admission_recorded(Ok(()), T0);
    h
}

fn drain(h: &mut PartyHost) -> Vec<Action> {
    std::iter::from_fn(|| h.poll_action()).collect()
}

fn aux_input(k: usize) -> SessionInput {
    SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(3, k))))
}

fn challenge() -> String {
    serde_json::to_string(&RouterToClient::Challenge { nonce: [7; 32] }).unwrap()
}

fn joined_msg(s: &Setup, position: u16) -> String {
    serde_json::to_string(&RouterToClient::Joined {
        session_id: s.descriptor.descriptor().session_id,
        position,
    })
    .unwrap()
}

fn report_body(body: &str) -> ReportBody {
    let signed: SignedReport = serde_json::from_str(body).unwrap();
    signed.peek().unwrap().body
}

/// Every report queued in `actions`: (id, body, best effort).
fn reports(actions: &[Action]) -> Vec<(u64, ReportBody, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendReport {
                id,
                body,
                best_effort,
            } => Some((*id, report_body(body), *best_effort)),
            _ => None,
        })
        .collect()
}

fn frames(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendFrame(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Input, connect, challenge, join; returns the actions of the join.
fn join_first(s: &Setup, h: &mut PartyHost, k: usize) -> Vec<Action> {
    let a = drain(h);
    assert!(
        matches!(&a[..], [Action::NeedInput(InputRequest::AuxInfo { index, parties: 3, .. })] if usize::from(*index) == k)
    );
    h.provide_input(aux_input(k), T0);
    let a = drain(h);
    assert!(
        matches!(&a[..], [Action::Connect { router: 0, url }] if url == URLS[0]),
        "{a:?}"
    );
    h.text_received(&challenge(), T0);
    let a = drain(h);
    let [Action::SendText(join)] = &a[..] else {
        panic!("{a:?}")
    };
    let join: ClientToRouter = serde_json::from_str(join).unwrap();
    assert!(
        matches!(join, ClientToRouter::JoinSession { token, .. } if token == format!("token-{k}"))
    );
    h.text_received(&joined_msg(s, k as u16), T0);
    drain(h)
}

#[test]
fn a_dropped_connection_rejoins_at_the_next_url_and_resends_every_frame() {
    let s = setup();
    let mut h = host(&s, 0, &URLS, 1);
    let a = join_first(&s, &mut h, 0);
    assert!(matches!(
        a[0],
        Action::Joined {
            router: 0,
            rejoin: false
        }
    ));
    let first = frames(&a);
    assert!(!first.is_empty(), "round 1 went out");
    assert!(reports(&a).iter().any(|(_, b, _)| *b == ReportBody::Joined));

    h.connection_closed(T0 + 10);
    let a = drain(&mut h);
    assert!(
        matches!(&a[..], [Action::RouterFailed { router: 0 }, Action::Connect { router: 1, url }] if url == URLS[1]),
        "{a:?}"
    );
    h.text_received(&challenge(), T0 + 11);
    assert!(matches!(&drain(&mut h)[..], [Action::SendText(_)]));
    h.text_received(&joined_msg(&s, 0), T0 + 12);
    let a = drain(&mut h);
    assert!(
        matches!(
            a[0],
            Action::Joined {
                router: 1,
                rejoin: true
            }
        ),
        "{a:?}"
    );
    assert_eq!(frames(&a), first, "every frame sent so far, in order");
    assert!(reports(&a).is_empty(), "joined is reported once");
}

#[test]
fn connection_failures_move_round_robin_with_backoff() {
    let s = setup();
    let mut h = host(&s, 1, &URLS, 1);
    drain(&mut h);
    h.provide_input(aux_input(1), T0);
    assert!(matches!(
        &drain(&mut h)[..],
        [Action::Connect { router: 0, .. }]
    ));
    let mut now = T0;
    let mut expected_wait = BACKOFF_START_MS;
    for attempt in 1..=6usize {
        h.connection_closed(now);
        let a = drain(&mut h);
        assert!(matches!(&a[..], [Action::RouterFailed { .. }]), "{a:?}");
        let at = h.wake_at().unwrap();
        assert_eq!(at, now + expected_wait, "attempt {attempt}");
        h.tick(at - 1);
        assert!(drain(&mut h).is_empty(), "nothing before the backoff ends");
        now = at;
        h.tick(now);
        let a = drain(&mut h);
        let want = attempt % 2;
        assert!(
            matches!(&a[..], [Action::Connect { router, url }] if *router == want && url == URLS[want]),
            "{a:?}"
        );
        expected_wait = (expected_wait * 2).min(BACKOFF_MAX_MS);
    }
    assert_eq!(expected_wait, BACKOFF_MAX_MS);
    // The second URL answers: joined, and the backoff starts over.
    h.text_received(&challenge(), now);
    drain(&mut h);
    h.text_received(&joined_msg(&s, 1), now);
    let a = drain(&mut h);
    assert!(
        matches!(
            a[0],
            Action::Joined {
                router: 0,
                rejoin: false
            }
        ),
        "{a:?}"
    );
}

#[test]
fn the_deadline_fails_the_session_and_names_the_unreachable_router() {
    let s = setup();
    let deadline = s.descriptor.descriptor().expires_at * 1000;
    // Joined, then the protocol stalls.
    let mut h = host(&s, 0, &URLS, 1);
    join_first(&s, &mut h, 0);
    assert_eq!(h.wake_at(), Some(deadline));
    h.tick(deadline - 1);
    assert!(drain(&mut h).is_empty());
    h.tick(deadline);
    let a = drain(&mut h);
    assert!(matches!(a[0], Action::CloseConnection), "{a:?}");
    let r = reports(&a);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].1,
        ReportBody::Failed {
            reason: "deadline passed before the protocol finished".into(),
            blamed: None
        }
    );
    assert!(!r[0].2, "a failure is not best effort");
    h.report_result(r[0].0, ReportOutcome::Delivered, deadline + 5);
    let a = drain(&mut h);
    assert!(
        matches!(
            &a[..],
            [Action::Finished(Outcome::Failed { blamed: None, .. })]
        ),
        "{a:?}"
    );
    assert!(h.is_finished());
    assert_eq!(h.wake_at(), None);

    // No router ever answers.
    let mut h = host(&s, 1, &URLS, 1);
    drain(&mut h);
    h.provide_input(aux_input(1), T0);
    drain(&mut h);
    h.connection_closed(T0);
    drain(&mut h);
    h.tick(deadline);
    let r = reports(&drain(&mut h));
    assert!(
        matches!(&r[0].1, ReportBody::Failed { reason, .. } if reason == "no router reachable before the deadline")
    );
}

#[test]
fn the_final_report_is_retried_with_backoff_until_the_grace_period_ends() {
    let s = setup();
    let deadline = s.descriptor.descriptor().expires_at * 1000;
    let mut h = host(&s, 2, &URLS, 2);
    drain(&mut h);
    h.input_failed("no aux info stored for this party group".into(), T0);
    let r = reports(&drain(&mut h));
    let [(
        id,
        ReportBody::Failed {
            reason,
            blamed: None,
        },
        false,
    )] = &r[..]
    else {
        panic!("{r:?}")
    };
    assert_eq!(reason, "no aux info stored for this party group");
    let id = *id;
    let mut now = T0;
    let mut wait = BACKOFF_START_MS;
    let mut tries = 1;
    loop {
        h.report_result(id, ReportOutcome::Unavailable, now);
        let a = drain(&mut h);
        if let [Action::Finished(Outcome::Failed { .. })] = &a[..] {
            break;
        }
        assert!(a.is_empty(), "{a:?}");
        let at = h.wake_at().unwrap();
        assert_eq!(at, now + wait);
        wait = (wait * 2).min(BACKOFF_MAX_MS);
        now = at;
        h.tick(now);
        let r = reports(&drain(&mut h));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, id, "the same report again");
        tries += 1;
    }
    assert!(
        now >= deadline + REPORT_GRACE_MS,
        "retried until the grace period ended"
    );
    assert!(now < deadline + REPORT_GRACE_MS + BACKOFF_MAX_MS);
    assert!(tries > 10);

    // A refusal is final at once.
    let mut h = host(&s, 2, &URLS, 2);
    drain(&mut h);
    h.input_failed("nothing".into(), T0);
    let r = reports(&drain(&mut h));
    h.report_result(r[0].0, ReportOutcome::Refused, T0);
    assert!(matches!(&drain(&mut h)[..], [Action::Finished(_)]));
}

#[test]
fn progress_is_reported_once_per_step_and_best_effort() {
    let s = setup();
    let mut h = host(&s, 0, &URLS, 2);
    drain(&mut h);
    h.input_progress("primes", 25, T0);
    let a = drain(&mut h);
    assert!(matches!(&a[0], Action::Progress(p) if p.stage == "primes" && p.percent == Some(25)));
    let r = reports(&a);
    assert_eq!(
        r,
        vec![(
            r[0].0,
            ReportBody::Progress {
                stage: "primes".into(),
                round: 0,
                percent: Some(25)
            },
            true
        )]
    );
    h.input_progress("primes", 25, T0 + 1);
    assert!(
        drain(&mut h).is_empty(),
        "the same step is not reported twice"
    );
    h.input_progress("primes", 50, T0 + 2);
    assert_eq!(reports(&drain(&mut h)).len(), 1);

    // Best effort: one try per coordinator (two here), then dropped.
    let id = r[0].0;
    h.report_result(id, ReportOutcome::Unavailable, T0 + 3);
    let at = h.wake_at().unwrap();
    assert_eq!(at, T0 + 3 + BACKOFF_START_MS);
    h.tick(at);
    assert_eq!(reports(&drain(&mut h))[0].0, id);
    h.report_result(id, ReportOutcome::Unavailable, at);
    assert!(drain(&mut h).is_empty());
    assert_eq!(
        h.wake_at(),
        Some(s.descriptor.descriptor().expires_at * 1000),
        "only the deadline is left"
    );
}

#[test]
fn router_refusals_are_final_unless_transient() {
    let s = setup();
    let refuse = |code: &str| {
        serde_json::to_string(&RouterToClient::Error {
            code: code.into(),
            message: "no".into(),
        })
        .unwrap()
    };
    let mut h = host(&s, 0, &URLS, 1);
    drain(&mut h);
    h.provide_input(aux_input(0), T0);
    drain(&mut h);
    h.text_received(&challenge(), T0);
    drain(&mut h);
    h.text_received(&refuse("not_ready"), T0);
    let a = drain(&mut h);
    assert!(
        matches!(
            &a[..],
            [Action::CloseConnection, Action::RouterFailed { router: 0 }]
        ),
        "{a:?}"
    );
    h.tick(h.wake_at().unwrap());
    assert!(matches!(
        &drain(&mut h)[..],
        [Action::Connect { router: 1, .. }]
    ));
    h.text_received(&challenge(), T0 + 200);
    drain(&mut h);
    h.text_received(&refuse("invalid_token"), T0 + 200);
    let r = reports(&drain(&mut h));
    assert!(
        matches!(&r[..], [(_, ReportBody::Failed { reason, .. }, false)] if reason == "router refused (invalid_token): no")
    );
}

/// Frame header: version u8 | session [16] | stage u8 | sender u16 | recipient u16.
fn route(frame: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([frame[18], frame[19]]),
        u16::from_be_bytes([frame[20], frame[21]]),
    )
}

#[test]
fn three_hosts_complete_a_keygen_through_a_router_that_drops_one_of_them() {
    let s = setup();
    let mut hosts: Vec<PartyHost> = (0..3).map(|k| host(&s, k, &URLS, 1)).collect();
    // The router's log of every frame; what each party was sent.
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut delivered = [0usize; 3];
    let mut connected = [false; 3];
    let mut results: Vec<Option<[u8; 33]>> = vec![None; 3];
    let mut finished = [false; 3];
    let mut dropped_once = false;
    let mut replays = 0;
    let now = T0 + 1_000;
    for (k, h) in hosts.iter_mut().enumerate() {
        drain(h);
        h.provide_input(aux_input(k), now);
    }
    for _ in 0..10_000 {
        let mut progress = false;
        for k in 0..3 {
            let actions = drain(&mut hosts[k]);
            progress |= !actions.is_empty();
            for a in actions {
                match a {
                    Action::Connect { .. } => hosts[k].text_received(&challenge(), now),
                    Action::SendText(_) => {
                        // Joined: the router replays the log from the start.
                        connected[k] = true;
                        delivered[k] = 0;
                        hosts[k].text_received(&joined_msg(&s, k as u16), now);
                    }
                    Action::SendFrame(f) if connected[k] => log.push(f),
                    Action::CloseConnection => connected[k] = false,
                    Action::SendReport { id, body, .. } => {
                        if let ReportBody::KeygenResult { public_key, .. } = report_body(&body) {
                            results[k] = Some(public_key);
                        }
                        hosts[k].report_result(id, ReportOutcome::Delivered, now);
                    }
                    Action::StoreOutput(_) => hosts[k].output_stored(now),
                    Action::FrameDropped(_) => replays += 1,
                    Action::Finished(o) => {
                        assert_eq!(o, Outcome::Completed);
                        finished[k] = true;
                    }
                    _ => {}
                }
            }
        }
        // Party 0 loses its connection once, after its first round went out.
        if !dropped_once && log.len() >= 3 {
            dropped_once = true;
            connected[0] = false;
            hosts[0].connection_closed(now);
            continue;
        }
        for k in 0..3 {
            while connected[k] && delivered[k] < log.len() {
                let f = log[delivered[k]].clone();
                delivered[k] += 1;
                let (sender, recipient) = route(&f);
                if usize::from(sender) != k
                    && (recipient == u16::MAX || usize::from(recipient) == k)
                {
                    hosts[k].frame_received(&f, now);
                    progress = true;
                }
            }
        }
        if finished.iter().all(|f| *f) {
            break;
        }
        assert!(
            progress,
            "the hosts converge: {finished:?} {delivered:?} {} {hosts:?}",
            log.len()
        );
    }
    assert!(finished.iter().all(|f| *f), "every host finished");
    assert!(dropped_once);
    assert!(
        replays > 0,
        "resent and replayed frames were dropped as replays"
    );
    let key = results[0].unwrap();
    assert!(
        results.iter().all(|r| *r == Some(key)),
        "everyone reports the same key"
    );
}

#[test]
fn a_protocol_failure_is_reported_with_its_culprit() {
    let s = setup();
    let mut h = host(&s, 0, &URLS, 1);
    join_first(&s, &mut h, 0);
    // Party 1 sends a well-sealed frame whose payload is no keygen message.
    let d = s.descriptor.descriptor();
    let peers = s.ids.iter().map(PartyIdentity::public).collect();
    let mut ch1 = crate::envelope::Channel::new(
        d.session_id,
        s.descriptor.execution_id(),
        1,
        s.ids[1].clone(),
        peers,
    );
    let frame = ch1
        .seal_broadcast(crate::envelope::Stage::Keygen, b"not a keygen message")
        .unwrap();
    h.frame_received(&frame, T0 + 1);
    let a = drain(&mut h);
    assert!(matches!(a[0], Action::CloseConnection), "{a:?}");
    let r = reports(&a);
    assert!(
        matches!(&r[..], [(_, ReportBody::Failed { blamed: Some(1), reason }, false)] if reason.contains("party 1")),
        "{r:?}"
    );
    h.report_result(r[0].0, ReportOutcome::Delivered, T0 + 2);
    assert!(matches!(
        &drain(&mut h)[..],
        [Action::Finished(Outcome::Failed {
            blamed: Some(1),
            ..
        })]
    ));
}

#[test]
fn a_step_the_host_could_not_run_fails_the_session_once() {
    let s = setup();
    let mut h = host(&s, 0, &URLS, 1);
    join_first(&s, &mut h, 0);
    h.host_failed("protocol task panicked".into(), T0 + 1);
    h.host_failed("again".into(), T0 + 2);
    let r = reports(&drain(&mut h));
    assert!(
        matches!(&r[..], [(_, ReportBody::Failed { reason, blamed: None }, false)] if reason == "protocol task panicked"),
        "{r:?}"
    );
}

#[test]
fn a_host_refusal_before_admission_is_the_sessions_only_action() {
    let s = setup();
    let config = HostConfig {
        router_urls: URLS.iter().map(|u| u.to_string()).collect(),
        first_router: 0,
        join_token: "token-0".into(),
        coordinators: 1,
        approved: None,
    };
    let mut h = PartyHost::new(s.descriptor.clone(), s.ids[0].clone(), config, T0).unwrap();
    h.host_refused("party_busy", "at its session bound".into(), T0);
    let a = drain(&mut h);
    // No admission record, no connection, no frame: the refusal only.
    assert_eq!(a.len(), 1, "{a:?}");
    let r = reports(&a);
    let id = match &r[..] {
        [(id, ReportBody::Refused { code, reason }, false)]
            if code == "party_busy" && reason == "at its session bound" =>
        {
            *id
        }
        other => panic!("{other:?}"),
    };
    h.report_result(id, ReportOutcome::Delivered, T0 + 1);
    let a = drain(&mut h);
    assert!(
        matches!(&a[..], [Action::Finished(Outcome::Failed { reason, blamed: None })] if reason.contains("party_busy")),
        "{a:?}"
    );
    // Once admitted, a host refusal changes nothing.
    let mut admitted = host(&s, 1, &URLS, 1);
    admitted.host_refused("party_busy", "late".into(), T0 + 1);
    assert!(reports(&drain(&mut admitted)).is_empty());
}
