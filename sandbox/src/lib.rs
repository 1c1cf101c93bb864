//! The dataop sandbox: runs approved WebAssembly jobs next to raw data and releases only
//! thresholded aggregates. It knows nothing of the web or the database.
//!
//! - [`columnar`]: the storage contract for dataset versions shared with the server.
//! - [`source`]: the reader trait the runtime reads rows through ([`source::TableSource`]).
//! - [`manifest`]: the job manifest (TOML) and the platform [`manifest::Limits`].
//! - [`runtime`]: the wasmtime [`runtime::Runtime`]: validation, caching, runs, outcomes.
//! - [`aggregate`]: host-side aggregation, thresholds, noise and the released output.
//! - [`noise`]: exact discrete Laplace and discrete Gaussian samplers.
//!
//! The ABI between the host and the guest is described in `ABI.md`.

pub mod aggregate;
pub mod bench;
pub mod cli;
pub mod columnar;
pub mod demo;
pub mod manifest;
pub mod noise;
pub mod runtime;
pub mod source;

pub use aggregate::{AggregateOutput, AggregateStats, CellOutput, Output};
pub use manifest::{Limits, Manifest};
pub use runtime::{
    CancelToken, CheckReport, JobModule, Outcome, RunOptions, RunReport, RunResult, Runtime,
};
pub use source::{DatasetInput, MemColumn, MemTable, TableSource};
