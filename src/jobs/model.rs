//! Rows of the job tables and their queries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use rust_decimal::Decimal;

use super::machine::{ComputationState, RunState};
use crate::db::DbConnection;
use crate::schema::{
    budget_debits, computations, job_meters, job_modules, job_releases, jobs, organisations,
    trainings, usage_reports, users,
};

/// Largest module accepted, in bytes (the sandbox's default limit).
pub const MAX_MODULE_BYTES: usize = 16 * 1024 * 1024;
/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// A computation (one operator's module pinned by hash, with manifest and bindings).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = computations)]
pub struct Computation {
    /// Id.
    pub id: i64,
    /// The operator's organisation.
    pub org_id: i64,
    /// The agreement it runs under.
    pub agreement_id: i64,
    /// sha256 of the module.
    pub module_sha256: String,
    /// The manifest (TOML).
    pub manifest: String,
    /// sha256 of the manifest text.
    pub manifest_sha256: String,
    /// The manifest's job name.
    pub name: String,
    /// JSON object: manifest dataset name → catalog dataset id.
    pub bindings: String,
    /// The purpose stated at submission.
    pub purpose: String,
    /// Total epsilon of its aggregates (canonical decimal, `0` without noise).
    pub epsilon: String,
    /// The state.
    #[diesel(deserialize_as = String)]
    pub state: ComputationState,
    /// The approved module hash of the same job name this one differs from.
    pub differs_from: Option<String>,
    /// Submitted by.
    pub submitted_by: i64,
    /// Submitted at.
    pub submitted_at: NaiveDateTime,
    /// Reviewed by.
    pub reviewed_by: Option<i64>,
    /// Reviewed at.
    pub reviewed_at: Option<NaiveDateTime>,
    /// The reviewer's reasons.
    pub review_note: String,
}

impl Computation {
    /// The dataset bindings (manifest name → dataset id).
    pub fn binding_map(&self) -> BTreeMap<String, i64> {
        serde_json::from_str(&self.bindings).unwrap_or_default()
    }
}

/// A run (row of `jobs`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// Its computation.
    pub computation_id: i64,
    /// The operator's organisation.
    pub org_id: i64,
    /// Submitted by.
    pub submitted_by: i64,
    /// The purpose of this run.
    pub purpose: String,
    /// The state.
    #[diesel(deserialize_as = String)]
    pub state: RunState,
    /// Submitted at.
    pub created_at: NaiveDateTime,
    /// Queued at (approval).
    pub queued_at: Option<NaiveDateTime>,
    /// First claimed at.
    pub started_at: Option<NaiveDateTime>,
    /// Ended at.
    pub finished_at: Option<NaiveDateTime>,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease expires.
    pub lease_expires_at: Option<NaiveDateTime>,
    /// Times claimed.
    pub attempts: i32,
    /// Rows processed so far.
    pub rows_done: i64,
    /// Rows to process.
    pub rows_total: i64,
    /// JSON array of the dataset versions read ([`VersionUsed`]).
    pub versions: String,
    /// The sandbox's outcome kind (`finished`, `out_of_time`, …), or empty.
    pub outcome: String,
    /// Why it failed, was cancelled or withheld (a person can read it).
    pub reason: String,
    /// The run report (JSON).
    pub report: Option<String>,
    /// The sandbox output (JSON), before release.
    pub output: Option<String>,
    /// The guest log (platform only).
    pub guest_log: Option<String>,
    /// The reviewer who released or withheld it.
    pub decided_by: Option<i64>,
    /// When.
    pub decided_at: Option<NaiveDateTime>,
    /// The reviewer's note.
    pub decision_note: String,
}

impl Job {
    /// The dataset versions read.
    pub fn versions_used(&self) -> Vec<VersionUsed> {
        serde_json::from_str(&self.versions).unwrap_or_default()
    }

    /// Why it failed, was cancelled or withheld, in `lang` (the platform's reasons are message
    /// keys; the sandbox's outcome and the reviewer's words are shown as written).
    pub fn reason_text(&self, lang: crate::i18n::Lang) -> String {
        if self.reason.starts_with("jobs.why.") {
            why_text(lang, &self.reason)
        } else {
            self.reason.clone()
        }
    }

    /// Percentage of rows processed (0–100), for platform staff.
    pub fn percent(&self) -> i64 {
        percent(self.rows_done, self.rows_total)
    }

    /// The progress an operator is shown (ABI v2, guarantee 8), from the state alone: how far
    /// a run has read, and when, is steered by the module (it can slow down on rows it
    /// chooses), so a running run shows no figure (`None`: the bar only says it runs), a
    /// finished one 100 and any other 0.
    pub fn operator_percent(&self) -> Option<i64> {
        match self.state {
            RunState::Running => None,
            RunState::Finished | RunState::Released | RunState::Withheld => Some(100),
            _ => Some(0),
        }
    }
}

/// A platform reason (`jobs.why.…`) with its arguments: the message key, then ` name=value`
/// for each (values without spaces: numbers and manifest names).
pub fn why(key: &str, args: &[(&str, String)]) -> String {
    args.iter().fold(key.to_owned(), |s, (name, value)| {
        format!("{s} {name}={}", value.replace(char::is_whitespace, "_"))
    })
}

/// A platform reason written by [`why`] (or a bare message key) in `lang`.
pub fn why_text(lang: crate::i18n::Lang, reason: &str) -> String {
    let mut parts = reason.split(' ');
    let key = parts.next().unwrap_or_default();
    let args: Vec<(&str, String)> = parts
        .filter_map(|a| a.split_once('='))
        .map(|(name, value)| (name, value.to_owned()))
        .collect();
    crate::i18n::t_args(lang, key, &args)
}

/// Percent (0–100) of `total` rows that `done` rows are; 0 while the total is unknown.
pub fn percent(done: i64, total: i64) -> i64 {
    if total <= 0 {
        0
    } else {
        done.clamp(0, total) * 100 / total
    }
}

/// A dataset version a run read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct VersionUsed {
    /// The manifest's name of the dataset.
    pub name: String,
    /// The catalog dataset.
    pub dataset_id: i64,
    /// The version row.
    pub version_id: i64,
    /// Its number.
    pub version_no: i32,
    /// Its rows.
    pub rows: i64,
    /// When it was uploaded (the date the data was obtained).
    pub obtained_at: NaiveDateTime,
    /// Its directory relative to the data dir.
    pub storage_path: String,
    /// The dataset's sensitivity grade (1–4) when the run started: its release policy applies.
    #[serde(default = "strictest_grade")]
    pub grade: i32,
}

/// The grade assumed for runs recorded before grades were: the strictest.
fn strictest_grade() -> i32 {
    4
}

/// A dataset as a run's provenance names it: its catalog titles and its provider.
#[derive(Debug, Clone, Default)]
pub struct DatasetLabel {
    /// Title in Chinese.
    pub title_zh: String,
    /// Title in English.
    pub title_en: String,
    /// The providing organisation's name.
    pub provider: String,
}

impl DatasetLabel {
    /// The title in `lang` (the other language's when it is empty).
    pub fn title(&self, lang: crate::i18n::Lang) -> &str {
        crate::i18n::pick(lang, &self.title_zh, &self.title_en)
    }
}

/// The labels of the datasets `ids`, by id, in one query.
pub fn dataset_labels(
    conn: &mut DbConnection,
    ids: &[i64],
) -> QueryResult<BTreeMap<i64, DatasetLabel>> {
    use crate::schema::datasets;
    let rows: Vec<(i64, String, String, String)> = datasets::table
        .inner_join(organisations::table)
        .filter(datasets::id.eq_any(ids))
        .select((
            datasets::id,
            datasets::title_zh,
            datasets::title_en,
            organisations::name,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, title_zh, title_en, provider)| {
            (
                id,
                DatasetLabel {
                    title_zh,
                    title_en,
                    provider,
                },
            )
        })
        .collect())
}

/// A release (the signed files).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = job_releases)]
pub struct Release {
    /// The run.
    pub job_id: i64,
    /// The JSON file.
    pub json_body: String,
    /// Its sha256.
    pub json_sha256: String,
    /// The platform's signature of `json_sha256`.
    pub json_signature: String,
    /// The CSV file.
    pub csv_body: String,
    /// Its sha256.
    pub csv_sha256: String,
    /// The platform's signature of `csv_sha256`.
    pub csv_signature: String,
    /// The signing public key.
    pub public_key: String,
    /// Released at.
    pub released_at: NaiveDateTime,
}

/// Where module bytes are kept.
pub fn module_path(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join("modules").join(format!("{sha256}.wasm"))
}

/// Stores a checked module under its hash (once: a module already stored is left as it is;
/// written in the process's scratch directory and renamed, so a reader never sees half a file
/// and a killed process leaves nothing next to the modules).
pub fn store_module(
    data_dir: &Path,
    scratch: &crate::scratch::Scratch,
    sha256: &str,
    wasm: &[u8],
) -> std::io::Result<()> {
    let path = module_path(data_dir, sha256);
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = scratch.file("module", ".wasm");
    let written = std::fs::write(&tmp, wasm).and_then(|()| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Loads a computation.
pub fn computation(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Computation>> {
    computations::table
        .find(id)
        .select(Computation::as_select())
        .first(conn)
        .optional()
}

/// Loads a run.
pub fn job(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Job>> {
    jobs::table
        .find(id)
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// Loads a release.
pub fn release(conn: &mut DbConnection, job_id: i64) -> QueryResult<Option<Release>> {
    job_releases::table
        .find(job_id)
        .select(Release::as_select())
        .first(conn)
        .optional()
}

/// A run with its computation's name, for lists.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The run.
    pub job: Job,
    /// The job name.
    pub name: String,
    /// The operator's name.
    pub org_name: String,
    /// The module hash.
    pub module_sha256: String,
}

/// Runs of one organisation (or all), newest first, at most `limit`.
pub fn job_rows(
    conn: &mut DbConnection,
    org_id: Option<i64>,
    states: Option<&[&str]>,
    limit: i64,
) -> QueryResult<Vec<JobRow>> {
    rows_before(conn, org_id, states, None, limit)
}

/// A page of an organisation's runs, newest first: at most `limit` with an id below `before`.
pub fn org_job_page(
    conn: &mut DbConnection,
    org_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<JobRow>> {
    rows_before(conn, Some(org_id), None, before, limit)
}

fn rows_before(
    conn: &mut DbConnection,
    org_id: Option<i64>,
    states: Option<&[&str]>,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<JobRow>> {
    let mut q = jobs::table
        .inner_join(computations::table)
        .inner_join(organisations::table)
        .select((
            Job::as_select(),
            computations::name,
            organisations::name,
            computations::module_sha256,
        ))
        .order(jobs::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(org) = org_id {
        q = q.filter(jobs::org_id.eq(org));
    }
    if let Some(states) = states {
        q = q.filter(jobs::state.eq_any(states.to_vec()));
    }
    if let Some(before) = before {
        q = q.filter(jobs::id.lt(before));
    }
    Ok(q.load::<(Job, String, String, String)>(conn)?
        .into_iter()
        .map(|(job, name, org_name, module_sha256)| JobRow {
            job,
            name,
            org_name,
            module_sha256,
        })
        .collect())
}

/// Computations waiting for review, oldest first, with the operator's name.
pub fn pending_computations(conn: &mut DbConnection) -> QueryResult<Vec<(Computation, String)>> {
    computations::table
        .inner_join(organisations::table)
        .filter(computations::state.eq(ComputationState::Pending.as_str()))
        .order(computations::id.asc())
        .select((Computation::as_select(), organisations::name))
        .limit(500)
        .load(conn)
}

/// An organisation's computations, newest first.
pub fn computations_of(conn: &mut DbConnection, org_id: i64) -> QueryResult<Vec<Computation>> {
    computations::table
        .filter(computations::org_id.eq(org_id))
        .order(computations::id.desc())
        .select(Computation::as_select())
        .limit(200)
        .load(conn)
}

/// A module's size, imports and exports.
pub type ModuleInfo = (i64, Vec<String>, Vec<String>);

/// The module's index row.
pub fn module_info(conn: &mut DbConnection, sha256: &str) -> QueryResult<Option<ModuleInfo>> {
    let row: Option<(i64, String, String)> = job_modules::table
        .find(sha256)
        .select((
            job_modules::size,
            job_modules::imports,
            job_modules::exports,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(size, i, e)| {
        (
            size,
            serde_json::from_str(&i).unwrap_or_default(),
            serde_json::from_str(&e).unwrap_or_default(),
        )
    }))
}

/// Whether the user has training current on `today`.
pub fn trained(conn: &mut DbConnection, user_id: i64, today: NaiveDate) -> QueryResult<bool> {
    let n: i64 = trainings::table
        .filter(trainings::user_id.eq(user_id))
        .filter(trainings::trained_on.le(today))
        .filter(trainings::expires_on.ge(today))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// A training record with the user's names.
#[derive(Debug, Clone)]
pub struct TrainingRow {
    /// The user's login name.
    pub username: String,
    /// The user's display name.
    pub display_name: String,
    /// The organisation.
    pub org_name: String,
    /// The course.
    pub course: String,
    /// Trained on.
    pub trained_on: NaiveDate,
    /// Valid until.
    pub expires_on: NaiveDate,
}

/// Every training record, newest first.
pub fn training_rows(conn: &mut DbConnection) -> QueryResult<Vec<TrainingRow>> {
    let rows: Vec<(String, String, String, String, NaiveDate, NaiveDate)> = trainings::table
        .inner_join(users::table.inner_join(organisations::table))
        .order(trainings::id.desc())
        .select((
            users::username,
            users::display_name,
            organisations::name,
            trainings::course,
            trainings::trained_on,
            trainings::expires_on,
        ))
        .limit(1000)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(username, display_name, org_name, course, trained_on, expires_on)| TrainingRow {
                username,
                display_name,
                org_name,
                course,
                trained_on,
                expires_on,
            },
        )
        .collect())
}

/// Epsilon already debited for an organisation and dataset under an agreement.
pub fn epsilon_spent(
    conn: &mut DbConnection,
    org_id: i64,
    agreement_id: i64,
    dataset_id: i64,
) -> QueryResult<Decimal> {
    let rows: Vec<String> = budget_debits::table
        .filter(budget_debits::org_id.eq(org_id))
        .filter(budget_debits::agreement_id.eq(agreement_id))
        .filter(budget_debits::dataset_id.eq(dataset_id))
        .select(budget_debits::epsilon)
        .load(conn)?;
    Ok(rows.iter().map(|s| dec(s)).sum())
}

/// Parses a stored canonical decimal (0 when unreadable, which stored values never are).
pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

/// Released runs of an organisation (or all) without a usage report.
pub fn outstanding_usage(conn: &mut DbConnection, org_id: Option<i64>) -> QueryResult<Vec<i64>> {
    let mut q = jobs::table
        .left_join(usage_reports::table)
        .filter(jobs::state.eq(RunState::Released.as_str()))
        .filter(usage_reports::job_id.is_null())
        .select(jobs::id)
        .order(jobs::id.asc())
        .limit(500)
        .into_boxed();
    if let Some(org) = org_id {
        q = q.filter(jobs::org_id.eq(org));
    }
    q.load(conn)
}

/// What the reviewer of a computation sees of its operator's past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// Its runs counted by state, in the state machine's order (states without runs absent).
    pub runs: Vec<(RunState, i64)>,
    /// Its released runs whose usage report is outstanding.
    pub usage_outstanding: usize,
    /// Entries in its credit record.
    pub credit_records: i64,
}

/// The record of the operator `org_id`.
pub fn operator_record(conn: &mut DbConnection, org_id: i64) -> QueryResult<OperatorRecord> {
    let counts: Vec<(String, i64)> = jobs::table
        .filter(jobs::org_id.eq(org_id))
        .group_by(jobs::state)
        .select((jobs::state, diesel::dsl::count_star()))
        .load(conn)?;
    let runs = RunState::ALL
        .into_iter()
        .filter_map(|st| Some((st, counts.iter().find(|(s, _)| s == st.as_str())?.1)))
        .collect();
    Ok(OperatorRecord {
        runs,
        usage_outstanding: outstanding_usage(conn, Some(org_id))?.len(),
        credit_records: crate::admission::model::credit_record_count(conn, org_id)?,
    })
}

/// The usage report of a run: (body, filed at).
pub fn usage_of(
    conn: &mut DbConnection,
    job_id: i64,
) -> QueryResult<Option<(String, NaiveDateTime)>> {
    usage_reports::table
        .find(job_id)
        .select((usage_reports::body, usage_reports::filed_at))
        .first(conn)
        .optional()
}

/// Metering rows of a run: (dataset id, version id, rows read, price per job, per 1000 rows).
pub type MeterRow = (i64, i64, i64, Option<String>, Option<String>);

/// The metering of a run.
pub fn meters_of(conn: &mut DbConnection, job_id: i64) -> QueryResult<Vec<MeterRow>> {
    job_meters::table
        .filter(job_meters::job_id.eq(job_id))
        .order(job_meters::id.asc())
        .select((
            job_meters::dataset_id,
            job_meters::version_id,
            job_meters::rows_read,
            job_meters::price_per_job,
            job_meters::price_per_thousand_rows,
        ))
        .load(conn)
}
