//! The INSECURE test switches (PUBLIC test primes and aux info). They exist
//! only in builds with the `insecure-test-data` feature, which the test
//! suite turns on; `cargo run --release -p mpc`, the Dockerfile and release
//! builds have none of them, so no operator can switch them on by mistake.

use std::path::PathBuf;

/// `--insecure-test-data DIR`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TestData {
    /// INSECURE, tests only: the PUBLIC test data in this directory
    /// (party-core/test-data): test primes instead of generated ones (and,
    /// for a party, its aux info for a group that has none).
    #[cfg(feature = "insecure-test-data")]
    #[arg(
        long = "insecure-test-data",
        value_name = "DIR",
        alias = "insecure-test-primes"
    )]
    dir: Option<PathBuf>,
}

impl TestData {
    /// The directory, when given (never in a build without the feature).
    pub fn dir(&self) -> Option<PathBuf> {
        #[cfg(feature = "insecure-test-data")]
        return self.dir.clone();
        #[cfg(not(feature = "insecure-test-data"))]
        None
    }
}

/// `--insecure-test-aux`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TestAux {
    /// INSECURE, tests only: keygens reuse the PUBLIC pregenerated aux info
    /// of the test data, so they skip aux-info generation.
    #[cfg(feature = "insecure-test-data")]
    #[arg(long = "insecure-test-aux")]
    on: bool,
}

impl TestAux {
    /// Whether it was given (never in a build without the feature).
    pub fn on(&self) -> bool {
        #[cfg(feature = "insecure-test-data")]
        return self.on;
        #[cfg(not(feature = "insecure-test-data"))]
        false
    }
}

/// `--insecure-test-index N`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TestIndex {
    /// Which party's test primes to use (0-based), with --insecure-test-data.
    #[cfg(feature = "insecure-test-data")]
    #[arg(long = "insecure-test-index", default_value_t = 0)]
    index: usize,
}

impl TestIndex {
    /// The index (0 in a build without the feature).
    pub fn index(&self) -> usize {
        #[cfg(feature = "insecure-test-data")]
        return self.index;
        #[cfg(not(feature = "insecure-test-data"))]
        0
    }
}
