//! The dataop sandbox: runs approved WebAssembly jobs next to raw data and releases only
//! thresholded aggregates. It knows nothing of the web or the database.
//!
//! - [`columnar`]: the storage contract for dataset versions shared with the server.
//! - [`source`]: the reader trait the runtime reads rows through ([`source::TableSource`]).
//! - [`manifest`]: the job manifest (TOML) and the platform [`manifest::Limits`].
//! - [`runtime`]: the wasmtime [`runtime::Runtime`]: validation, caching, runs, outcomes.
//! - [`aggregate`]: host-side aggregation, thresholds, dominance, noise and the released output.
//! - [`noise`]: the exact discrete Laplace and Gaussian samplers.
//! - [`differencing`]: the comparisons of the platform's differencing guard.
//!
//! The ABI between the host and the guest is described in `ABI.md`.

pub mod aggregate;
pub mod bench;
mod budget;
mod cache;
pub mod cli;
pub mod columnar;
pub mod demo;
pub mod differencing;
mod driver;
pub mod manifest;
pub mod noise;
mod purity;
pub mod runtime;
pub mod source;

pub use aggregate::{AggregateOutput, AggregateStats, CellOutput, Output};
pub use manifest::{Limits, Manifest};
pub use runtime::{
    CancelToken, CheckReport, JobModule, OperatorReport, Outcome, RunOptions, RunReport, RunResult,
    Runtime,
};
pub use source::{DatasetInput, MemColumn, MemTable, TableSource};
