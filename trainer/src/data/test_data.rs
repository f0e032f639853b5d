//! Where the loader tests find their data (tests only).
//!
//! Two sources, so that a bare `git clone` passes `cargo test` and CI still checks the real files:
//! - the small fixtures committed in `trainer/tests/fixtures/` (the first 256 + 64 MNIST records and the
//!   40 CIFAR sample PNGs; `scripts/make_fixtures.py` says where they came from), always there;
//! - the full data sets in the folder named by `NECROSIS_DATA_DIR` (laid out like
//!   `../shared/data`: `mnist/`, `cifar-samples/`), opt-in. Unset, the tests that need them pass
//!   after printing "skipped" to the terminal; set to a folder that lacks them, they fail, so a CI
//!   that sets it cannot skip them by accident.

use std::io::Write;
use std::path::PathBuf;

/// The environment variable naming the folder of full data sets.
pub const DATA_DIR_VAR: &str = "NECROSIS_DATA_DIR";

/// A fixture folder committed under `trainer/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `$NECROSIS_DATA_DIR/<name>` when the variable is set (panicking if that folder is missing);
/// `None`, after saying "skipped" on the terminal, when it is not.
pub fn full_data(test: &str, name: &str) -> Option<PathBuf> {
    match std::env::var_os(DATA_DIR_VAR) {
        Some(root) => {
            let dir = PathBuf::from(root).join(name);
            assert!(
                dir.is_dir(),
                "{DATA_DIR_VAR} is set but {} is not a folder",
                dir.display()
            );
            Some(dir)
        }
        None => {
            // Straight to the terminal: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "test {test} skipped: set {DATA_DIR_VAR} to the folder holding {name}/ to run it"
            );
            None
        }
    }
}
