//! necrosis: train CNNs with dfdx and record what every neuron does, every epoch.
//!
//! The pipeline flows one way: [`data`] → [`model`] (built from [`arch`] on the tape ops of
//! [`ops`] and [`activation`]) → [`train`] loop → [`hooks`] (instruments) → [`record`] (the run
//! directory of `docs/records.md`). The analysis crate reads those records and never this crate.

pub mod activation;
pub mod arch;
pub mod cli;
pub mod config;
pub mod data;
pub mod hooks;
pub mod model;
pub mod ops;
pub mod optim;
pub mod param;
pub mod record;
pub mod sweep;
pub mod sweep_file;
pub mod train;
