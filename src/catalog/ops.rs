//! Turning an uploaded CSV file into a dataset version, and the version's workflow
//! ([`super::machine`]): draft → published or discarded.
//!
//! Versions live at `<data_dir>/datasets/<dataset_id>/<version_no>/` in the
//! `dataop-columnar/1` layout of [`dataop_sandbox::columnar`]. The ingest writes into the
//! process's scratch directory under `<data_dir>/tmp/` (same file system, see
//! [`crate::scratch`]), so a refused file leaves nothing behind. A whole
//! version then goes into place in three steps, so its files and its row agree whatever
//! moment the process dies:
//!
//! 1. its row is committed as `incomplete`, reserving its number (never read by anyone);
//! 2. its directory is renamed into place;
//! 3. the row moves to `draft`, with its audit entry and the provider's mail.
//!
//! A process killed after step 1 leaves an `incomplete` row (with or without its directory):
//! [`reconcile`], run when the server starts, abandons it and removes its files. A directory
//! without any row (left by a release that renamed before it committed) is removed there too,
//! and by the next upload that needs its place.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use dataop_sandbox::columnar::{ColumnRole, ColumnSpec, ColumnType, VersionReader};
use diesel::prelude::*;

use super::ingest::{self, IngestError, PseudonymKey};
use super::machine::{VersionAction, VersionState};
use super::model::{self, NewVersion, Version};
use super::summary;
use crate::auth::{CurrentUser, Role};
use crate::calendar::Clock;
use crate::db::{self, DbConnection, DbPool};
use crate::errors::AppError;
use crate::mail::{self, Notice};
use crate::schema::dataset_versions;
use crate::supervision::audit::{self, Actor};
use crate::workflow::{self, Machine as _, Move};

/// A version that was added (as a draft).
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

/// Where the versions' directories are.
fn versions_root(data_dir: &Path) -> PathBuf {
    data_dir.join("datasets")
}

/// The directory of a version, relative to the data dir.
pub fn storage_path(dataset_id: i64, version_no: i32) -> String {
    format!("datasets/{dataset_id}/{version_no}")
}

/// Ingests `input` as the next version of dataset `dataset_id`, uploaded by `user_id`, with
/// its work files in `scratch` (the process's [`crate::scratch::Scratch`] directory); the
/// version is a draft until its provider publishes it ([`publish`]).
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
    clock: &Clock,
) -> Result<Result<Added, IngestError>, AppError> {
    let (columns, provider_org) = {
        let mut conn = pool.get()?;
        let (d, _) = model::find_dataset(&mut conn, dataset_id)?.ok_or_else(AppError::not_found)?;
        (model::columns_of(&mut conn, dataset_id)?, d.provider_org_id)
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
    let summaries = summary::of_version(ingested.dir()).map_err(anyhow::Error::from)?;
    let summary_json = serde_json::to_string(&summaries).map_err(anyhow::Error::from)?;
    let mut conn = pool.get()?;
    // Step 1: the row reserves the number.
    let reserved = crate::db::write_transaction(&mut conn, |conn| -> Result<Version, AppError> {
        db::lock(conn, db::Lock::DatasetVersions(dataset_id))?;
        let version_no = model::next_version_no(conn, dataset_id)?;
        let id = model::insert_version(
            conn,
            &NewVersion {
                dataset_id,
                version_no,
                row_count: rows as i64,
                byte_count: bytes as i64,
                sha256: sha256.clone(),
                storage_path: storage_path(dataset_id, version_no),
                uploaded_by: user_id,
                created_at: db::to_micros(clock.now()),
                state: VersionState::Incomplete.as_str().to_owned(),
                summary: summary_json.clone(),
            },
        )?;
        Ok(model::find_version(conn, id)?
            .ok_or_else(AppError::not_found)?
            .0)
    })?;
    // Step 2: the files go into place. A directory already there has no row of its own (this
    // row holds the number): it is what a killed server of an older release left.
    let dest = data_dir.join(&reserved.storage_path);
    let placed = remove_dir_if_present(&dest).and_then(|()| ingested.persist(&dest));
    fail::fail_point!("catalog::version_in_place", |_| -> Result<
        Result<Added, IngestError>,
        AppError,
    > {
        // Why it is here: tests/catalog_kill.rs kills the server between the rename of a
        // version's directory and the commit that completes its row, and checks that the
        // next start reconciles both (only active when FAILPOINTS names it).
        std::process::abort()
    });
    // Step 3: the row completes, with its audit entry and mail; or, when the files could not
    // be placed or the row was abandoned meanwhile, nothing of it stays.
    let completed = placed
        .map_err(|e| AppError::Internal(e.into()))
        .and_then(|()| {
            crate::db::write_transaction(&mut conn, |conn| {
                move_version(
                    conn,
                    &reserved,
                    VersionAction::Complete,
                    None,
                    db::to_micros(clock.now()),
                )?;
                audit::record(
                    conn,
                    actor,
                    "dataset.version_upload",
                    "dataset_version",
                    &reserved.id.to_string(),
                    serde_json::json!({
                        "dataset_id": dataset_id,
                        "version_no": reserved.version_no,
                        "rows": rows,
                        "bytes": bytes,
                        "sha256": sha256,
                    }),
                )?;
                notify_provider(
                    conn,
                    provider_org,
                    "catalog.mail.version_uploaded",
                    &reserved,
                    &[],
                )?;
                Ok(())
            })
        });
    match completed {
        Ok(()) => Ok(Ok(Added {
            id: reserved.id,
            version_no: reserved.version_no,
            rows,
            sha256,
        })),
        Err(e) => {
            let _ = remove_dir_if_present(&dest);
            let _ = crate::db::write_transaction(&mut conn, |conn| {
                abandon(
                    conn,
                    &reserved,
                    &Actor::system(),
                    db::to_micros(clock.now()),
                )
            });
            Err(e)
        }
    }
}

/// Removes a directory tree if it exists.
fn remove_dir_if_present(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Moves a version by `action` from the state it had when read (a version changed meanwhile
/// is a 409), recording who decided a publication or discard and when. Returns the new state.
fn move_version(
    conn: &mut DbConnection,
    v: &Version,
    action: VersionAction,
    decided_by: Option<i64>,
    now: NaiveDateTime,
) -> Result<VersionState, AppError> {
    let mv = Move {
        from: v.state,
        action,
        audit: None,
    };
    let to = workflow::commit(conn, mv, |conn, from, to| {
        let target = dataset_versions::table
            .filter(dataset_versions::id.eq(v.id))
            .filter(dataset_versions::state.eq(from));
        if decided_by.is_some() {
            diesel::update(target)
                .set((
                    dataset_versions::state.eq(to),
                    dataset_versions::decided_by.eq(decided_by),
                    dataset_versions::decided_at.eq(now),
                ))
                .execute(conn)
        } else {
            diesel::update(target)
                .set(dataset_versions::state.eq(to))
                .execute(conn)
        }
    })?;
    Ok(to)
}

/// Abandons an incomplete version (its upload died before its files were in place); audited
/// as the system's. Its files are removed by the caller after the commit.
fn abandon(
    conn: &mut DbConnection,
    v: &Version,
    actor: &Actor,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    move_version(conn, v, VersionAction::Abandon, None, now)?;
    audit::record(
        conn,
        actor,
        "dataset.version_abandon",
        "dataset_version",
        &v.id.to_string(),
        serde_json::json!({ "dataset_id": v.dataset_id, "version_no": v.version_no }),
    )?;
    Ok(())
}

fn notify_provider(
    conn: &mut DbConnection,
    org_id: i64,
    template: &str,
    v: &Version,
    more: &[(&str, String)],
) -> QueryResult<()> {
    let title: String = crate::schema::datasets::table
        .find(v.dataset_id)
        .select(crate::schema::datasets::title_zh)
        .first(conn)?;
    let mut args = vec![
        ("dataset", title),
        ("version", v.version_no.to_string()),
        (
            "url",
            format!("/provider/datasets/{}/versions/{}", v.dataset_id, v.id),
        ),
    ];
    args.extend(more.iter().cloned());
    mail::to_org(
        conn,
        org_id,
        &Notice {
            template,
            args: &args,
            object_type: "dataset_version",
            object_id: v.id.to_string(),
        },
    )
}

/// What [`reconcile`] put right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Incomplete versions abandoned.
    pub abandoned: usize,
    /// Directories removed (of abandoned or discarded versions, or without any row).
    pub removed: usize,
}

/// Makes the versions' files and rows agree after a process died in the middle of an upload
/// or a discard (run when the server starts): an `incomplete` row is abandoned and its
/// directory removed; a discarded version's directory, and a directory under `datasets/` that
/// no row names, are removed.
pub fn reconcile(pool: &DbPool, data_dir: &Path, clock: &Clock) -> Result<Reconciled, AppError> {
    let mut done = Reconciled::default();
    let mut conn = pool.get()?;
    for v in model::versions_in(&mut conn, VersionState::Incomplete)? {
        crate::db::write_transaction(&mut conn, |conn| {
            abandon(conn, &v, &Actor::system(), db::to_micros(clock.now()))
        })?;
        done.abandoned += 1;
    }
    let discarded: Vec<String> = model::versions_in(&mut conn, VersionState::Discarded)?
        .into_iter()
        .map(|v| v.storage_path)
        .collect();
    for rel in discarded {
        let dir = data_dir.join(rel);
        if dir.exists() {
            remove_dir_if_present(&dir).map_err(anyhow::Error::from)?;
            done.removed += 1;
        }
    }
    let known: std::collections::HashSet<String> =
        model::storage_paths(&mut conn)?.into_iter().collect();
    let root = versions_root(data_dir);
    let Ok(datasets) = std::fs::read_dir(&root) else {
        return Ok(done);
    };
    for d in datasets.flatten() {
        let Ok(versions) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for v in versions.flatten() {
            let rel = format!(
                "datasets/{}/{}",
                d.file_name().to_string_lossy(),
                v.file_name().to_string_lossy()
            );
            if !known.contains(&rel) {
                remove_dir_if_present(&v.path()).map_err(anyhow::Error::from)?;
                done.removed += 1;
            }
        }
    }
    if done != Reconciled::default() {
        tracing::warn!(
            abandoned = done.abandoned,
            removed = done.removed,
            "dataset versions reconciled after an interrupted upload or discard"
        );
    }
    Ok(done)
}

/// The schema of a version as jobs and agreements see it: each column's name, type (with its
/// category codes) and role, in file order.
pub fn schema_of(data_dir: &Path, v: &Version) -> Result<Vec<SchemaColumn>, AppError> {
    let reader = VersionReader::open(&data_dir.join(&v.storage_path))
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(reader.meta().columns.iter().map(SchemaColumn::of).collect())
}

/// One column of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaColumn {
    /// Name.
    pub name: String,
    /// Type, with its category codes or decimal scale.
    pub ty: ColumnType,
    /// Role.
    pub role: ColumnRole,
}

impl SchemaColumn {
    fn of(c: &ColumnSpec) -> Self {
        SchemaColumn {
            name: c.name.clone(),
            ty: c.ty.clone(),
            role: c.role,
        }
    }

    /// The type's code (`integer`, `decimal`, `date`, `category`, `text`).
    pub fn type_code(&self) -> &'static str {
        match self.ty {
            ColumnType::Integer => "integer",
            ColumnType::Decimal { .. } => "decimal",
            ColumnType::Date => "date",
            ColumnType::Category { .. } => "category",
            ColumnType::Text => "text",
        }
    }
}

/// How a schema differs from another: the names of the columns added, removed, and changed
/// (type, role or category codes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDiff {
    /// Columns only in the new schema.
    pub added: Vec<String>,
    /// Columns only in the old schema.
    pub removed: Vec<String>,
    /// Columns in both with another type, role or domain.
    pub changed: Vec<String>,
}

impl SchemaDiff {
    /// Compares `new` with `old`.
    pub fn between(old: &[SchemaColumn], new: &[SchemaColumn]) -> Self {
        let find =
            |list: &[SchemaColumn], name: &str| list.iter().find(|c| c.name == name).cloned();
        SchemaDiff {
            added: new
                .iter()
                .filter(|c| find(old, &c.name).is_none())
                .map(|c| c.name.clone())
                .collect(),
            removed: old
                .iter()
                .filter(|c| find(new, &c.name).is_none())
                .map(|c| c.name.clone())
                .collect(),
            changed: new
                .iter()
                .filter(|c| find(old, &c.name).is_some_and(|o| o != **c))
                .map(|c| c.name.clone())
                .collect(),
        }
    }

    /// Whether the schemas are the same (column order aside).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The version `version_id` of dataset `dataset_id`, for its provider's organisation `org_id`
/// (404 when it is not that dataset's, 403 for another organisation's dataset).
fn own_version(
    conn: &mut DbConnection,
    org_id: i64,
    dataset_id: i64,
    version_id: i64,
) -> Result<(model::Dataset, Version), AppError> {
    let (d, _) = model::find_dataset(conn, dataset_id)?.ok_or_else(AppError::not_found)?;
    if d.provider_org_id != org_id {
        return Err(AppError::forbidden());
    }
    let (v, _) = model::find_version(conn, version_id)?.ok_or_else(AppError::not_found)?;
    if v.dataset_id != dataset_id {
        return Err(AppError::not_found());
    }
    Ok((d, v))
}

/// What a publication did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The schema version the version belongs to.
    pub schema_no: i32,
    /// Whether it opened a new schema version (agreements in force must accept it before
    /// their jobs read it).
    pub new_schema: bool,
}

/// The provider publishes a draft: it joins the schema version of the newest published version
/// when its schema is the same, else opens the next schema version, which the operators of the
/// agreements in force on the dataset are asked to accept ([`crate::reactions`]).
pub fn publish(
    conn: &mut DbConnection,
    user: &CurrentUser,
    data_dir: &Path,
    dataset_id: i64,
    version_id: i64,
    now: NaiveDateTime,
) -> Result<Published, AppError> {
    user.require(&[Role::Provider])?;
    publish_as(
        conn,
        &user.actor(),
        (user.id, user.org_id),
        data_dir,
        (dataset_id, version_id),
        now,
    )
}

/// [`publish`] by `actor`, user `by` = (user id, organisation id) of the provider (the demo
/// seed publishes its version this way).
pub fn publish_as(
    conn: &mut DbConnection,
    actor: &Actor,
    by: (i64, i64),
    data_dir: &Path,
    (dataset_id, version_id): (i64, i64),
    now: NaiveDateTime,
) -> Result<Published, AppError> {
    crate::db::write_transaction(conn, |conn| {
        let (d, v) = own_version(conn, by.1, dataset_id, version_id)?;
        v.state.decide(VersionAction::Publish)?;
        db::lock(conn, db::Lock::DatasetVersions(dataset_id))?;
        let schema = schema_of(data_dir, &v)?;
        let (schema_no, new_schema) = match model::newest_published(conn, dataset_id)? {
            None => (1, false),
            Some(cur) if SchemaDiff::between(&schema_of(data_dir, &cur)?, &schema).is_empty() => {
                (cur.schema_no, false)
            }
            Some(_) => (
                model::current_schema_no(conn, dataset_id)?.unwrap_or(0) + 1,
                true,
            ),
        };
        move_version(conn, &v, VersionAction::Publish, Some(by.0), now)?;
        diesel::update(dataset_versions::table.find(v.id))
            .set(dataset_versions::schema_no.eq(schema_no))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            "dataset.version_publish",
            "dataset_version",
            &v.id.to_string(),
            serde_json::json!({
                "dataset_id": dataset_id,
                "version_no": v.version_no,
                "schema_no": schema_no,
                "new_schema": new_schema,
            }),
        )?;
        notify_provider(
            conn,
            d.provider_org_id,
            "catalog.mail.version_published",
            &v,
            &[("schema", schema_no.to_string())],
        )?;
        if new_schema {
            crate::reactions::schema_published(conn, actor, dataset_id, schema_no)?;
        }
        Ok(Published {
            schema_no,
            new_schema,
        })
    })
}

/// The provider discards a draft: it is never read, and its files are removed (after the
/// commit; [`reconcile`] removes them if the process dies first).
pub fn discard(
    conn: &mut DbConnection,
    user: &CurrentUser,
    data_dir: &Path,
    dataset_id: i64,
    version_id: i64,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    user.require(&[Role::Provider])?;
    let v = crate::db::write_transaction(conn, |conn| -> Result<Version, AppError> {
        let (d, v) = own_version(conn, user.org_id, dataset_id, version_id)?;
        move_version(conn, &v, VersionAction::Discard, Some(user.id), now)?;
        audit::record(
            conn,
            &user.actor(),
            "dataset.version_discard",
            "dataset_version",
            &v.id.to_string(),
            serde_json::json!({ "dataset_id": dataset_id, "version_no": v.version_no }),
        )?;
        notify_provider(
            conn,
            d.provider_org_id,
            "catalog.mail.version_discarded",
            &v,
            &[],
        )?;
        Ok(v)
    })?;
    remove_dir_if_present(&data_dir.join(&v.storage_path)).map_err(anyhow::Error::from)?;
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
