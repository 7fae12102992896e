//! The big-integer backend in use is the one the build asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_selected_backend_is_the_one_in_use() {
    assert_eq!(party_core::active_backend(), party_core::BACKEND);
    #[cfg(feature = "backend-gmp")]
    assert_eq!(party_core::active_backend(), "gmp");
    #[cfg(not(feature = "backend-gmp"))]
    assert_eq!(party_core::active_backend(), "num-bigint");
}
