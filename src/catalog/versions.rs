//! Turning an uploaded CSV file into a dataset version: ingest, then move the finished
//! directory into place and record it, in one transaction with its audit entry.
//!
//! Versions live at `<data_dir>/datasets/<dataset_id>/<version_no>/` in the
//! `dataop-columnar/1` layout of [`dataop_sandbox::columnar`]; the ingest writes into
//! process's scratch directory under `<data_dir>/tmp/` (same file system, see
//! [`crate::scratch`]) and the directory is renamed only once the whole file has been accepted,
//! so a refused file leaves nothing behind.

use std::io::Read;
use std::path::{Path, PathBuf};

use diesel::RunQueryDsl as _;

use super::ingest::{self, IngestError, PseudonymKey};
use super::model::{self, NewVersion};
use crate::db::{Backend, DbConnection, DbPool};
use crate::errors::AppError;
use crate::supervision::audit::{self, Actor};

/// A version that was added.
#[derive(Debug, Clone)]
pub struct Added {
    /// Row id of the version.
    pub id: i64,
    /// Its number within the dataset.
    pub version_no: i32,
    /// Data rows.
    pub rows: u64,
    /// sha256 of the uploaded file.
    pub sha256: String,
}

/// The directory of a version, relative to the data dir.
pub fn storage_path(dataset_id: i64, version_no: i32) -> String {
    format!("datasets/{dataset_id}/{version_no}")
}

/// Ingests `input` as the next version of dataset `dataset_id`, uploaded by `user_id`, with
/// its work files in `scratch` (the process's [`crate::scratch::Scratch`] directory).
///
/// Returns `Ok(Err(_))` when the file is refused (the refusal is audited, nothing is kept) and
/// `Err(_)` for internal failures. Blocking: call it off the async executor.
#[allow(clippy::too_many_arguments)]
pub fn add_version<R: Read>(
    pool: &DbPool,
    data_dir: &Path,
    scratch: &Path,
    key: &PseudonymKey,
    limit_bytes: u64,
    actor: &Actor,
    user_id: i64,
    dataset_id: i64,
    input: R,
) -> Result<Result<Added, IngestError>, AppError> {
    let columns = {
        let mut conn = pool.get()?;
        model::columns_of(&mut conn, dataset_id)?
    };
    if columns.is_empty() {
        return Err(AppError::invalid("catalog.err_no_columns"));
    }
    let specs: Vec<_> = columns.iter().map(model::Column::to_ingest).collect();
    let ingested = match ingest::ingest(input, &specs, key, limit_bytes, scratch) {
        Ok(i) => i,
        Err(IngestError::Io(e)) => return Err(e.into()),
        Err(refused) => {
            let mut conn = pool.get()?;
            crate::db::write_transaction(&mut conn, |conn| {
                audit::record(
                    conn,
                    actor,
                    "dataset.version_refused",
                    "dataset",
                    &dataset_id.to_string(),
                    refusal_details(&refused),
                )
            })?;
            return Ok(Err(refused));
        }
    };
    let rows = ingested.rows;
    let bytes = ingested.bytes;
    let sha256 = ingested.sha256.clone();
    let mut conn = pool.get()?;
    let mut moved: Option<PathBuf> = None;
    let result = crate::db::write_transaction(&mut conn, |conn| -> Result<Added, AppError> {
        lock_dataset(conn, dataset_id)?;
        let version_no = model::next_version_no(conn, dataset_id)?;
        let rel = storage_path(dataset_id, version_no);
        let dest = data_dir.join(&rel);
        ingested.persist(&dest)?;
        moved = Some(dest);
        let id = model::insert_version(
            conn,
            &NewVersion {
                dataset_id,
                version_no,
                row_count: rows as i64,
                byte_count: bytes as i64,
                sha256: sha256.clone(),
                storage_path: rel,
                uploaded_by: user_id,
                created_at: crate::db::now(),
            },
        )?;
        audit::record(
            conn,
            actor,
            "dataset.version_upload",
            "dataset_version",
            &id.to_string(),
            serde_json::json!({
                "dataset_id": dataset_id,
                "version_no": version_no,
                "rows": rows,
                "bytes": bytes,
                "sha256": sha256,
            }),
        )?;
        Ok(Added {
            id,
            version_no,
            rows,
            sha256: sha256.clone(),
        })
    });
    if result.is_err()
        && let Some(dir) = moved
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    result.map(Ok)
}

/// Serializes version numbering of one dataset on PostgreSQL (SQLite writers are already
/// serialized by [`crate::db::write_transaction`]).
fn lock_dataset(conn: &mut DbConnection, dataset_id: i64) -> diesel::QueryResult<()> {
    if conn.backend() == Backend::Postgres {
        diesel::sql_query(format!(
            "SELECT pg_advisory_xact_lock({})",
            0x0CA7_0000_0000_0000_i64 ^ dataset_id
        ))
        .execute(conn)?;
    }
    Ok(())
}

fn refusal_details(e: &IngestError) -> serde_json::Value {
    match e {
        IngestError::Rejected { total, rows, .. } => {
            serde_json::json!({ "reason": "bad_rows", "errors": total, "rows": rows })
        }
        IngestError::TooLarge { limit } => {
            serde_json::json!({ "reason": "too_large", "limit": limit })
        }
        IngestError::LineTooLong { line } => {
            serde_json::json!({ "reason": "line_too_long", "line": line })
        }
        IngestError::Empty => serde_json::json!({ "reason": "empty" }),
        IngestError::BadHeader { .. } => serde_json::json!({ "reason": "bad_header" }),
        IngestError::NoRows => serde_json::json!({ "reason": "no_rows" }),
        IngestError::Io(_) => serde_json::json!({ "reason": "io" }),
    }
}
