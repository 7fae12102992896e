//! Deterministic kill points for the crash tests (issue #15). In a build
//! with the `test-kill-points` feature (turned on only by the `mpc` crate's
//! `insecure-test-data` feature, never in a release build) the process
//! aborts (`std::process::abort`: no destructor, no flush, no goodbye) when
//! it reaches the point named by the environment variable
//! `MPC_TEST_KILL_AT`. The coordinator's points:
//!
//! - `coordinator:created`: a session is stored, before the router hears
//!   of it;
//! - `coordinator:report`: a party's result report is recorded, before the
//!   session is completed;
//! - `coordinator:completing`: every result is in and agrees, before the
//!   completion is written.
//!
//! Without the feature [`reached`] does nothing and reads nothing.

/// The environment variable naming the point.
pub const KILL_AT_ENV: &str = "MPC_TEST_KILL_AT";

/// Aborts the process if `point` is the one `MPC_TEST_KILL_AT` names.
#[cfg(feature = "test-kill-points")]
pub(crate) fn reached(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var(KILL_AT_ENV).ok())
        .as_deref()
        == Some(point)
    {
        eprintln!("{KILL_AT_ENV}={point}: aborting the process (test kill point)");
        std::process::abort();
    }
}

/// Does nothing: a build without the `test-kill-points` feature.
#[cfg(not(feature = "test-kill-points"))]
#[inline(always)]
pub(crate) fn reached(_point: &str) {}
