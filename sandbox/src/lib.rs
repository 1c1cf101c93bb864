//! The dataop sandbox: runs approved WebAssembly jobs next to raw data and releases only
//! thresholded aggregates. It knows nothing of the web or the database.
//!
//! [`columnar`] is the storage contract for dataset versions shared with the server.

pub mod columnar;
