//! `GET /metrics`: the router's counters move as it registers sessions,
//! admits and refuses parties, relays frames and closes sessions, and no
//! session id or token shows up in the text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{on_both_backends, TestBackend, TestRouter};
use party_core::envelope::Stage;
use party_core::identity::PartyIdentity;
use party_core::wire::RouterToClient;
use rand_core::OsRng;

on_both_backends!(metrics_count_sessions_joins_and_frames);

/// The value of the series `series` (name and labels exactly as rendered,
/// e.g. `x_total{reason="a"}`), 0 when it is absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

async fn metrics_count_sessions_joins_and_frames(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let (content_type, before) = r.metrics().await;
    assert_eq!(content_type, mpc_telemetry::CONTENT_TYPE);

    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    // A refused join.
    let mut intruder = r.client().await;
    let reply = intruder
        .join(s.session_id, "not-a-token", &s.parties[0].identity)
        .await;
    intruder.expect_error(reply, "bad_token").await;

    let mut ch0 = s.channel(0);
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|i| ch0.seal_broadcast(Stage::Sign, &[i; 100]).unwrap())
        .collect();
    let bytes: usize = frames.iter().map(Vec::len).sum();
    for f in &frames {
        c0.send_frame(f.clone()).await;
    }
    // Party 0's frames are relayed one after the other: once this one
    // arrives, the three before it are counted.
    let last = ch0.seal_broadcast(Stage::Sign, b"last").unwrap();
    c0.send_frame(last.clone()).await;
    for f in &frames {
        assert_eq!(&c1.next_frame().await, f);
    }
    assert_eq!(c1.next_frame().await, last);

    let (_, during) = r.metrics().await;
    let moved = |series: &str, by: f64| {
        let (b, d) = (value(&before, series), value(&during, series));
        assert!(
            d >= b + by,
            "{series}: {b} -> {d}, expected +{by}\n{during}"
        );
    };
    moved("mpc_router_sessions_registered_total", 1.0);
    moved("mpc_router_frames_relayed_total", 3.0);
    moved("mpc_router_frame_bytes_relayed_total", bytes as f64);
    moved("mpc_router_join_refusals_total{reason=\"bad_token\"}", 1.0);
    // This test's two parties are connected now (other tests may add more).
    assert!(
        value(&during, "mpc_router_connections{kind=\"session\"}") >= 2.0,
        "{during}"
    );
    // And a control connection.
    let server = PartyIdentity::generate(&mut OsRng);
    let mut control = r.client().await;
    assert!(matches!(
        control.control("server-party-1", &server).await,
        RouterToClient::Registered { .. }
    ));
    let (_, with_control) = r.metrics().await;
    assert!(
        value(&with_control, "mpc_router_connections{kind=\"control\"}") >= 1.0,
        "{with_control}"
    );

    let (status, _) = r
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 204);
    for c in [&mut c0, &mut c1] {
        assert!(matches!(
            c.next_json().await,
            RouterToClient::SessionClosed { .. }
        ));
        c.expect_closed().await;
    }
    let (_, after) = r.metrics().await;
    let (b, a) = (
        value(&before, "mpc_router_sessions_closed_total"),
        value(&after, "mpc_router_sessions_closed_total"),
    );
    assert!(a >= b + 1.0, "sessions closed: {b} -> {a}\n{after}");

    // Labels carry kinds and reasons only.
    for text in [&during, &after] {
        assert!(!text.contains(&s.session_id.to_string()));
        for p in &s.parties {
            assert!(!text.contains(&p.token));
            assert!(!text.contains(&common::token_hash(&p.token)));
        }
    }
}
