//! necrosis: train CNNs with dfdx and record what every neuron does, every epoch.
//!
//! The pipeline flows one way: [`data`] → [`model`] (built from [`arch`] on the tape ops of
//! [`ops`] and [`activation`]) → [`train`] loop → [`hooks`] (instruments) → [`records`] (the run
//! directory of `docs/records.md`, a crate of its own that the analysis reads too). The analysis
//! crate reads those records and never this crate.

pub mod activation;
pub mod arch;
pub mod data;
pub mod hooks;
pub mod init;
pub mod interventions;
pub mod layers;
pub mod model;
pub mod ops;
pub mod optim;
pub mod param;
pub mod profile;
pub mod saturation;
pub mod site_capture;
pub mod surgery;
pub mod sweep;
pub mod train;
pub mod wiring;

/// The run-record format (manifest, tables, checkpoints), shared with the analysis.
pub use necrosis_records as records;

/// Keeps the allocator from returning freed memory to the OS between training steps.
///
/// Every step allocates and frees the same few large buffers (im2col columns, activations,
/// gradients). mimalloc purges freed memory after 10 ms by default, so each step faulted its
/// buffers in again and the kernel zeroed every page (≈ 7 % of a LeNet step in `perf`). Binaries
/// that use mimalloc as their global allocator call this once at start-up.
pub fn keep_freed_memory() {
    // mimalloc 3's `mi_option_purge_delay` (= 15 in its `mi_option_e`); -1 means never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores an integer option; any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
