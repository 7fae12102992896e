//! Deterministic kill points for the crash tests (issue #15). In a build
//! with the `test-kill-points` feature (turned on only by the `mpc` crate's
//! `insecure-test-data` feature, never in a release build) the process
//! aborts (`std::process::abort`: no destructor, no flush, no goodbye) when
//! it reaches the point named by the environment variable
//! `MPC_TEST_KILL_AT`. A server party's points are `{stage}:{round}`:
//! `aux_info`, `keygen`, `sign`, `presign` or `online_sign` and the 1-based
//! round as cggmp24's tracer counts them, reached when the session's
//! protocol begins that round, after the messages of the step that began
//! it were handed to the socket (a step sends round `r`'s messages and
//! begins round `r + 1`; the first step also begins round 1, so `X:1` and
//! `X:2` are reached in the same step).
//!
//! Without the feature [`reached_round`] does nothing and reads nothing.

/// The environment variable naming the point.
pub const KILL_AT_ENV: &str = "MPC_TEST_KILL_AT";

/// Aborts the process if `{stage}:{round}` is the point `MPC_TEST_KILL_AT`
/// names.
#[cfg(feature = "test-kill-points")]
pub(crate) fn reached_round(stage: &str, round: u16) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(at) = AT
        .get_or_init(|| std::env::var(KILL_AT_ENV).ok())
        .as_deref()
    else {
        return;
    };
    if at.split_once(':') == Some((stage, &round.to_string())) {
        eprintln!("{KILL_AT_ENV}={at}: aborting the process (test kill point)");
        std::process::abort();
    }
}

/// Does nothing: a build without the `test-kill-points` feature.
#[cfg(not(feature = "test-kill-points"))]
#[inline(always)]
pub(crate) fn reached_round(_stage: &str, _round: u16) {}
