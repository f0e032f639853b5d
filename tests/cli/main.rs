//! The integration tests, as one test binary: each drives the real `necrosis-report` binary or
//! reads the records it wrote. One binary, not one per file, because each links polars (a dozen
//! of them cost minutes of linking and gigabytes of disk); `cargo test --test cli -- kill_resume`
//! runs one module.

mod architectures;
mod bad_input;
mod common;
mod factorial;
mod kill_resume;
mod larger_nets;
mod mutations;
mod round_trip;
mod shards;
