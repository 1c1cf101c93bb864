//! Every action on computations and runs, each one transaction: check the state machine,
//! change the rows (conditionally on the state read, so a concurrent change is a conflict
//! rather than a lost update), write the audit entry and queue the emails.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use dataop_sandbox::Limits;
use diesel::prelude::*;
use rust_decimal::Decimal;

use super::machine::{ComputationAction, ComputationState, RunAction, RunState};
use super::model::{self, Computation, Job};
use super::submit::{self, Checked, Loaded, Problem};
use super::{differencing, output};
use crate::agreements::{self as agr, seal::SealKey};
use crate::auth::{CurrentUser, Role};
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::input::note;
use crate::mail::{self, Notice};
use crate::schema::{
    budget_debits, computations, job_modules, job_releases, jobs, trainings, usage_reports, users,
};
use crate::scratch::Scratch;
use crate::supervision::audit::{self, Actor};
use crate::workflow::{self, Machine as _, Move};

fn record(
    conn: &mut DbConnection,
    actor: &Actor,
    verb: &str,
    object_type: &str,
    id: i64,
    details: serde_json::Value,
) -> QueryResult<i64> {
    audit::record(
        conn,
        actor,
        &format!("{object_type}.{verb}"),
        object_type,
        &id.to_string(),
        details,
    )
}

fn notify_org(
    conn: &mut DbConnection,
    org_id: i64,
    template: &str,
    job_id: i64,
    args: &[(&str, String)],
) -> QueryResult<()> {
    mail::to_org(
        conn,
        org_id,
        &Notice {
            template,
            args,
            object_type: "job",
            object_id: job_id.to_string(),
        },
    )
}

fn notify_role(
    conn: &mut DbConnection,
    role: Role,
    template: &str,
    object_type: &str,
    id: i64,
    args: &[(&str, String)],
) -> QueryResult<()> {
    mail::to_orgs_with_role(
        conn,
        role,
        &Notice {
            template,
            args,
            object_type,
            object_id: id.to_string(),
        },
    )
}

/// Loads a run or 404.
pub fn load_job(conn: &mut DbConnection, id: i64) -> Result<Job, AppError> {
    model::job(conn, id)?.ok_or_else(AppError::not_found)
}

/// Loads a computation or 404.
pub fn load_computation(conn: &mut DbConnection, id: i64) -> Result<Computation, AppError> {
    model::computation(conn, id)?.ok_or_else(AppError::not_found)
}

/// Moves a run by `action` from the state it had when read (a run changed meanwhile is a 409);
/// a run that ends loses its lease and gets its end time, and a finished output that is not
/// released loses the persons the differencing guard kept of it. Returns the new state.
pub(crate) fn move_job(
    conn: &mut DbConnection,
    job: &Job,
    action: RunAction,
    now: NaiveDateTime,
) -> Result<RunState, AppError> {
    let ends = job
        .state
        .decide(action)
        .is_ok_and(|to| to.is_final() || to == RunState::Finished);
    let mv = Move {
        from: job.state,
        action,
        audit: None,
    };
    let to = workflow::commit(conn, mv, |conn, from, to| {
        let target = jobs::table
            .filter(jobs::id.eq(job.id))
            .filter(jobs::state.eq(from));
        if ends {
            diesel::update(target)
                .set((
                    jobs::state.eq(to),
                    jobs::finished_at.eq(job.finished_at.unwrap_or(now)),
                    jobs::lease_owner.eq(None::<String>),
                    jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)
        } else {
            diesel::update(target).set(jobs::state.eq(to)).execute(conn)
        }
    })?;
    if job.state == RunState::Finished && to != RunState::Released {
        differencing::forget(conn, job.id)?;
    }
    Ok(to)
}

/// Records a user's training (platform admin). `username` must be an active member of an
/// enterprise; the period must be in order.
pub fn record_training(
    conn: &mut DbConnection,
    admin: &CurrentUser,
    username: &str,
    course: &str,
    trained_on: NaiveDate,
    expires_on: NaiveDate,
    now: NaiveDateTime,
) -> Result<i64, AppError> {
    admin.require(&[Role::PlatformAdmin])?;
    let course = note(course, "jobs.err.course_empty")?;
    if expires_on < trained_on {
        return Err(AppError::invalid("jobs.err.training_dates"));
    }
    db::write_transaction(conn, |conn| {
        let user: Option<i64> = users::table
            .filter(users::username.eq(username.trim()))
            .filter(users::status.eq("active"))
            .select(users::id)
            .first(conn)
            .optional()?;
        let user_id = user.ok_or_else(|| AppError::invalid("jobs.err.training_user"))?;
        let id: i64 = diesel::insert_into(trainings::table)
            .values((
                trainings::user_id.eq(user_id),
                trainings::course.eq(&course),
                trainings::trained_on.eq(trained_on),
                trainings::expires_on.eq(expires_on),
                trainings::recorded_by.eq(admin.id),
                trainings::recorded_at.eq(now),
            ))
            .returning(trainings::id)
            .get_result(conn)?;
        record(
            conn,
            &admin.actor(),
            "record",
            "training",
            id,
            serde_json::json!({
                "user_id": user_id, "course": course,
                "trained_on": trained_on.to_string(), "expires_on": expires_on.to_string(),
            }),
        )?;
        Ok(id)
    })
}

/// What a submission became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The run.
    pub job_id: i64,
    /// Its computation.
    pub computation_id: i64,
    /// Whether it was queued at once (the computation was approved already).
    pub queued: bool,
}

/// Where a submission is checked and its module kept.
pub struct SubmitContext<'a> {
    /// The sandbox's limits (the k floor, the release policy per grade).
    pub limits: &'a Limits,
    /// The data dir the module is stored under.
    pub data_dir: &'a Path,
    /// This process's scratch directory (the module is written there, then renamed).
    pub scratch: &'a Scratch,
    /// Who reviews new computations.
    pub reviewer: Role,
}

/// Submits a run: in one transaction, after the operator's submissions lock (so concurrent
/// submissions see each other's runs), checks every rule ([`submit::check`]: the run budget,
/// the remaining epsilon and the agreement in force are read there) and, when all hold, stores
/// the module and records the module index row, the computation (the approved one with the
/// same pin when there is one, else a pending one naming the approved hash it differs from)
/// and the run. On refusal, the failed rules, all of them, and nothing written.
pub fn submit(
    conn: &mut DbConnection,
    user: &CurrentUser,
    loaded: &Loaded,
    cx: &SubmitContext<'_>,
    today: NaiveDate,
    now: NaiveDateTime,
) -> Result<Result<Submitted, Vec<Problem>>, AppError> {
    db::write_transaction(conn, |conn| {
        db::lock(conn, db::Lock::Submissions(user.org_id))?;
        let checked =
            match submit::check(conn, cx.limits, user.id, user.org_id, loaded, today, now)? {
                Ok(c) => c,
                Err(problems) => return Ok(Err(problems)),
            };
        model::store_module(
            cx.data_dir,
            cx.scratch,
            &checked.module_sha256,
            &loaded.submission.module,
        )
        .map_err(anyhow::Error::from)?;
        record_submission(
            conn,
            user,
            &checked,
            &loaded.submission.manifest,
            cx.reviewer,
            now,
        )
        .map(Ok)
    })
}

/// Records a checked submission (inside [`submit`]'s transaction).
fn record_submission(
    conn: &mut DbConnection,
    user: &CurrentUser,
    checked: &Checked,
    manifest_text: &str,
    reviewer: Role,
    now: NaiveDateTime,
) -> Result<Submitted, AppError> {
    let manifest_sha256 = agr::model::sha256_hex(manifest_text);
    let bindings = serde_json::to_string(&checked.bindings).map_err(anyhow::Error::from)?;
    {
        let known: i64 = job_modules::table
            .filter(job_modules::sha256.eq(&checked.module_sha256))
            .count()
            .get_result(conn)?;
        if known == 0 {
            diesel::insert_into(job_modules::table)
                .values((
                    job_modules::sha256.eq(&checked.module_sha256),
                    job_modules::size.eq(checked.size as i64),
                    // ABI v2 modules import nothing.
                    job_modules::imports.eq("[]"),
                    job_modules::exports.eq(serde_json::json!(checked.exports).to_string()),
                    job_modules::created_at.eq(now),
                ))
                .execute(conn)?;
        }
        let pinned: Option<Computation> = computations::table
            .filter(computations::org_id.eq(user.org_id))
            .filter(computations::agreement_id.eq(checked.agreement.id))
            .filter(computations::module_sha256.eq(&checked.module_sha256))
            .filter(computations::manifest_sha256.eq(&manifest_sha256))
            .filter(computations::bindings.eq(&bindings))
            .filter(
                computations::state
                    .eq(ComputationState::Pending.as_str())
                    .or(computations::state.eq(ComputationState::Approved.as_str())),
            )
            .order(computations::id.desc())
            .select(Computation::as_select())
            .first(conn)
            .optional()?;
        let (computation_id, approved, new) = match pinned {
            Some(c) => (c.id, c.state == ComputationState::Approved, false),
            None => {
                let differs_from: Option<String> = computations::table
                    .filter(computations::org_id.eq(user.org_id))
                    .filter(computations::name.eq(&checked.manifest.name))
                    .filter(computations::state.eq(ComputationState::Approved.as_str()))
                    .filter(computations::module_sha256.ne(&checked.module_sha256))
                    .order(computations::id.desc())
                    .select(computations::module_sha256)
                    .first(conn)
                    .optional()?;
                let id: i64 = diesel::insert_into(computations::table)
                    .values((
                        computations::org_id.eq(user.org_id),
                        computations::agreement_id.eq(checked.agreement.id),
                        computations::module_sha256.eq(&checked.module_sha256),
                        computations::manifest.eq(manifest_text),
                        computations::manifest_sha256.eq(&manifest_sha256),
                        computations::name.eq(&checked.manifest.name),
                        computations::bindings.eq(&bindings),
                        computations::purpose.eq(&checked.purpose),
                        computations::epsilon.eq(checked.epsilon.normalize().to_string()),
                        computations::state.eq(ComputationState::Pending.as_str()),
                        computations::differs_from.eq(&differs_from),
                        computations::submitted_by.eq(user.id),
                        computations::submitted_at.eq(now),
                    ))
                    .returning(computations::id)
                    .get_result(conn)?;
                record(
                    conn,
                    &user.actor(),
                    "submit",
                    "computation",
                    id,
                    serde_json::json!({
                        "module_sha256": checked.module_sha256,
                        "manifest_sha256": manifest_sha256,
                        "agreement": checked.agreement.number,
                        "differs_from": differs_from,
                    }),
                )?;
                (id, false, true)
            }
        };
        let state = if approved {
            RunState::Queued
        } else {
            RunState::AwaitingApproval
        };
        let job_id: i64 = diesel::insert_into(jobs::table)
            .values((
                jobs::computation_id.eq(computation_id),
                jobs::org_id.eq(user.org_id),
                jobs::submitted_by.eq(user.id),
                jobs::purpose.eq(&checked.purpose),
                jobs::state.eq(state.as_str()),
                jobs::created_at.eq(now),
                jobs::queued_at.eq(approved.then_some(now)),
            ))
            .returning(jobs::id)
            .get_result(conn)?;
        record(
            conn,
            &user.actor(),
            "submit",
            "job",
            job_id,
            serde_json::json!({ "computation_id": computation_id, "state": state.as_str() }),
        )?;
        if new {
            notify_role(
                conn,
                reviewer,
                "jobs.mail.review_needed",
                "computation",
                computation_id,
                &[
                    ("operator", user.org_name.clone()),
                    ("name", checked.manifest.name.clone()),
                    ("id", computation_id.to_string()),
                ],
            )?;
        }
        Ok(Submitted {
            job_id,
            computation_id,
            queued: approved,
        })
    }
}

/// The reviewer approves (`None`) or rejects (`Some(reasons)`) a computation; its waiting runs
/// are queued or refused with it.
pub fn decide_computation(
    conn: &mut DbConnection,
    reviewer: &CurrentUser,
    id: i64,
    rejection: Option<&str>,
    now: NaiveDateTime,
) -> Result<ComputationState, AppError> {
    let reasons = match rejection {
        Some(text) => note(text, "jobs.err.reasons_empty")?,
        None => String::new(),
    };
    db::write_transaction(conn, |conn| {
        let c = load_computation(conn, id)?;
        let action = if rejection.is_some() {
            ComputationAction::Reject
        } else {
            ComputationAction::Approve
        };
        let to = move_computation(conn, &c, action, reviewer, &reasons, now)?;
        let waiting: Vec<Job> = jobs::table
            .filter(jobs::computation_id.eq(id))
            .filter(jobs::state.eq(RunState::AwaitingApproval.as_str()))
            .select(Job::as_select())
            .load(conn)?;
        let run_action = if to == ComputationState::Approved {
            RunAction::Approve
        } else {
            RunAction::Reject
        };
        for j in &waiting {
            let st = move_job(conn, j, run_action, now)?;
            if st == RunState::Queued {
                diesel::update(jobs::table.find(j.id))
                    .set(jobs::queued_at.eq(now))
                    .execute(conn)?;
            } else {
                diesel::update(jobs::table.find(j.id))
                    .set(jobs::reason.eq(&reasons))
                    .execute(conn)?;
            }
        }
        record(
            conn,
            &reviewer.actor(),
            if to == ComputationState::Approved {
                "approve"
            } else {
                "reject"
            },
            "computation",
            id,
            serde_json::json!({
                "module_sha256": c.module_sha256,
                "reasons": reasons,
                "runs": waiting.iter().map(|j| j.id).collect::<Vec<_>>(),
            }),
        )?;
        let template = if to == ComputationState::Approved {
            "jobs.mail.approved"
        } else {
            "jobs.mail.rejected"
        };
        notify_org(
            conn,
            c.org_id,
            template,
            waiting.first().map_or(0, |j| j.id),
            &[
                ("name", c.name.clone()),
                ("hash", c.module_sha256.clone()),
                ("reasons", reasons.clone()),
            ],
        )?;
        Ok(to)
    })
}

/// Moves a computation by the reviewer's `action` from the state it had when read (changed
/// meanwhile: 409), recording who decided, when, and the reasons. Returns the new state.
fn move_computation(
    conn: &mut DbConnection,
    c: &Computation,
    action: ComputationAction,
    reviewer: &CurrentUser,
    reasons: &str,
    now: NaiveDateTime,
) -> Result<ComputationState, AppError> {
    let mv = Move {
        from: c.state,
        action,
        audit: None,
    };
    workflow::commit(conn, mv, |conn, from, to| {
        diesel::update(
            computations::table
                .filter(computations::id.eq(c.id))
                .filter(computations::state.eq(from)),
        )
        .set((
            computations::state.eq(to),
            computations::reviewed_by.eq(reviewer.id),
            computations::reviewed_at.eq(now),
            computations::review_note.eq(reasons),
        ))
        .execute(conn)
    })
}

/// The reviewer revokes an approved computation's approval (reasons required): its queued and
/// running runs are cancelled (a running run's worker stops at its next lease renewal), the
/// operator is told, and the same module submitted again is a new computation that needs its
/// own approval. Returns the cancelled runs.
pub fn revoke_computation(
    conn: &mut DbConnection,
    reviewer: &CurrentUser,
    id: i64,
    reasons: &str,
    now: NaiveDateTime,
) -> Result<Vec<i64>, AppError> {
    let reasons = note(reasons, "jobs.err.reasons_empty")?;
    db::write_transaction(conn, |conn| {
        let c = load_computation(conn, id)?;
        move_computation(conn, &c, ComputationAction::Revoke, reviewer, &reasons, now)?;
        let live: Vec<Job> = jobs::table
            .filter(jobs::computation_id.eq(id))
            .filter(jobs::state.eq_any([RunState::Queued.as_str(), RunState::Running.as_str()]))
            .select(Job::as_select())
            .load(conn)?;
        for j in &live {
            move_job(conn, j, RunAction::Cancel, now)?;
            diesel::update(jobs::table.find(j.id))
                .set(jobs::reason.eq(REVOKED))
                .execute(conn)?;
        }
        let cancelled: Vec<i64> = live.iter().map(|j| j.id).collect();
        record(
            conn,
            &reviewer.actor(),
            "revoke",
            "computation",
            id,
            serde_json::json!({
                "module_sha256": c.module_sha256,
                "reasons": reasons,
                "runs_cancelled": cancelled,
            }),
        )?;
        notify_org(
            conn,
            c.org_id,
            "jobs.mail.revoked",
            cancelled.first().copied().unwrap_or(0),
            &[
                ("name", c.name.clone()),
                ("hash", c.module_sha256.clone()),
                ("reasons", reasons.clone()),
                ("runs", cancelled.len().to_string()),
            ],
        )?;
        Ok(cancelled)
    })
}

/// Cancels a run (its operator, or a reviewer). A running run's worker notices at its next
/// lease renewal and stops the sandbox.
pub fn cancel(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let j = load_job(conn, id)?;
        move_job(conn, &j, RunAction::Cancel, now)?;
        diesel::update(jobs::table.find(id))
            .set(jobs::reason.eq(CANCELLED))
            .execute(conn)?;
        record(
            conn,
            &user.actor(),
            "cancel",
            "job",
            id,
            serde_json::json!({ "from": j.state }),
        )?;
        Ok(())
    })
}

/// The agreement ref of a computation's bindings if every bound dataset is still covered on
/// `today` by the computation's agreement.
pub fn agreement_still_covers(
    conn: &mut DbConnection,
    c: &Computation,
    today: NaiveDate,
) -> QueryResult<Option<agr::AgreementRef>> {
    let mut found = None;
    for dataset_id in c.binding_map().values() {
        match agr::in_force_for(conn, c.org_id, *dataset_id, today)? {
            Some(a) if a.id == c.agreement_id => found = Some(a),
            _ => return Ok(None),
        }
    }
    Ok(found)
}

/// Whether the computation's epsilon still fits every bound dataset's remaining budget.
pub fn budget_fits(
    conn: &mut DbConnection,
    c: &Computation,
    a: &agr::AgreementRef,
) -> QueryResult<bool> {
    let eps = model::dec(&c.epsilon);
    if eps.is_zero() {
        return Ok(true);
    }
    for dataset_id in c.binding_map().values() {
        if eps > super::submit::remaining_epsilon(conn, c.org_id, a, *dataset_id)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What a release attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseResult {
    /// The output was released.
    Released,
    /// The agreement had ended: the output was withheld.
    AgreementEnded,
    /// The privacy budget no longer covers it: the output was withheld.
    BudgetExhausted,
    /// The differencing guard found cells 1 to k − 1 persons apart: the output was withheld.
    Differencing,
}

/// The reviewer releases a finished run's output: the agreement and the budget are checked
/// again and the differencing guard compares its cells (the output is withheld when one
/// fails), the signed files are written, the budget is debited, and the operator is told. The
/// guard's kept cells count as released with the run (less those kept already).
pub fn release(
    conn: &mut DbConnection,
    reviewer: &CurrentUser,
    id: i64,
    seal: &SealKey,
    today: NaiveDate,
    now: NaiveDateTime,
    zone: chrono_tz::Tz,
) -> Result<ReleaseResult, AppError> {
    db::write_transaction(conn, |conn| {
        let j = load_job(conn, id)?;
        j.state.decide(RunAction::Release)?;
        let c = load_computation(conn, j.computation_id)?;
        let Some(a) = agreement_still_covers(conn, &c, today)? else {
            withhold_inner(
                conn,
                &reviewer.actor(),
                &j,
                &c,
                RunAction::AgreementEnded,
                AGREEMENT_ENDED,
                now,
            )?;
            return Ok(ReleaseResult::AgreementEnded);
        };
        if !budget_fits(conn, &c, &a)? {
            withhold_inner(
                conn,
                &reviewer.actor(),
                &j,
                &c,
                RunAction::Withhold,
                BUDGET_EXHAUSTED,
                now,
            )?;
            return Ok(ReleaseResult::BudgetExhausted);
        }
        db::lock(conn, db::Lock::Releases(j.org_id))?;
        let check = differencing::check(conn, &j)?;
        if !check.findings.is_empty() {
            differencing::record(conn, &check.findings)?;
            withhold_inner(
                conn,
                &reviewer.actor(),
                &j,
                &c,
                RunAction::Withhold,
                DIFFERENCING,
                now,
            )?;
            return Ok(ReleaseResult::Differencing);
        }
        move_job(conn, &j, RunAction::Release, now)?;
        differencing::drop_kept(conn, &check.already_kept)?;
        diesel::update(jobs::table.find(id))
            .set((jobs::decided_by.eq(reviewer.id), jobs::decided_at.eq(now)))
            .execute(conn)?;
        let files = output::build(conn, &j, &c, &a.number, now, zone)?;
        let json_sha = agr::model::sha256_hex(&files.json);
        let csv_sha = agr::model::sha256_hex(&files.csv);
        diesel::insert_into(job_releases::table)
            .values((
                job_releases::job_id.eq(id),
                job_releases::json_body.eq(&files.json),
                job_releases::json_sha256.eq(&json_sha),
                job_releases::json_signature.eq(seal.sign_hex(json_sha.as_bytes())),
                job_releases::csv_body.eq(&files.csv),
                job_releases::csv_sha256.eq(&csv_sha),
                job_releases::csv_signature.eq(seal.sign_hex(csv_sha.as_bytes())),
                job_releases::public_key.eq(seal.public_hex()),
                job_releases::released_at.eq(now),
            ))
            .execute(conn)?;
        let eps = model::dec(&c.epsilon);
        if !eps.is_zero() {
            for dataset_id in c.binding_map().values() {
                diesel::insert_into(budget_debits::table)
                    .values((
                        budget_debits::org_id.eq(c.org_id),
                        budget_debits::agreement_id.eq(a.id),
                        budget_debits::dataset_id.eq(dataset_id),
                        budget_debits::job_id.eq(id),
                        budget_debits::epsilon.eq(eps.normalize().to_string()),
                        budget_debits::created_at.eq(now),
                    ))
                    .execute(conn)?;
            }
        }
        record(
            conn,
            &reviewer.actor(),
            "release",
            "job",
            id,
            serde_json::json!({
                "json_sha256": json_sha, "csv_sha256": csv_sha,
                "epsilon_debited": eps.normalize().to_string(),
            }),
        )?;
        notify_org(
            conn,
            j.org_id,
            "jobs.mail.released",
            id,
            &[("id", id.to_string()), ("name", c.name.clone())],
        )?;
        Ok(ReleaseResult::Released)
    })
}

fn withhold_inner(
    conn: &mut DbConnection,
    actor: &Actor,
    j: &Job,
    c: &Computation,
    action: RunAction,
    reasons: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    move_job(conn, j, action, now)?;
    diesel::update(jobs::table.find(j.id))
        .set((
            jobs::decided_by.eq(actor.user_id),
            jobs::decided_at.eq(now),
            jobs::decision_note.eq(reasons),
            jobs::reason.eq(reasons),
        ))
        .execute(conn)?;
    record(
        conn,
        actor,
        "withhold",
        "job",
        j.id,
        serde_json::json!({ "reasons": reasons }),
    )?;
    notify_org(
        conn,
        j.org_id,
        "jobs.mail.withheld",
        j.id,
        &[
            ("id", j.id.to_string()),
            ("name", c.name.clone()),
            ("reasons", reason_both(reasons)),
        ],
    )?;
    Ok(())
}

/// The reviewer withholds a finished run's output, with reasons.
pub fn withhold(
    conn: &mut DbConnection,
    reviewer: &CurrentUser,
    id: i64,
    reasons: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let reasons = note(reasons, "jobs.err.reasons_empty")?;
    db::write_transaction(conn, |conn| {
        let j = load_job(conn, id)?;
        let c = load_computation(conn, j.computation_id)?;
        withhold_inner(
            conn,
            &reviewer.actor(),
            &j,
            &c,
            RunAction::Withhold,
            &reasons,
            now,
        )
    })
}

/// The operator files how a released output was used (once).
pub fn file_usage(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    body: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let body = note(body, "jobs.err.usage_empty")?;
    db::write_transaction(conn, |conn| {
        let j = load_job(conn, id)?;
        if j.org_id != user.org_id {
            return Err(AppError::not_found());
        }
        if j.state != RunState::Released {
            return Err(AppError::conflict("jobs.refuse.not_released"));
        }
        if model::usage_of(conn, id)?.is_some() {
            return Err(AppError::conflict("jobs.refuse.usage_filed"));
        }
        diesel::insert_into(usage_reports::table)
            .values((
                usage_reports::job_id.eq(id),
                usage_reports::org_id.eq(j.org_id),
                usage_reports::body.eq(&body),
                usage_reports::filed_by.eq(user.id),
                usage_reports::filed_at.eq(now),
            ))
            .execute(conn)?;
        record(
            conn,
            &user.actor(),
            "usage_report",
            "job",
            id,
            serde_json::json!({ "chars": body.chars().count() }),
        )?;
        Ok(())
    })
}

/// Stops one run because its agreement ended, or no longer covers its data (`reason`, a
/// message key): a waiting, queued or running run is cancelled (a worker running it notices at
/// its next lease renewal), a finished output is withheld. Whether it was stopped (a run that
/// changed meanwhile is left alone).
fn stop_one(
    conn: &mut DbConnection,
    actor: &Actor,
    j: &Job,
    reason: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let Ok(to) = j.state.decide(RunAction::AgreementEnded) else {
        return Ok(false);
    };
    let n = diesel::update(
        jobs::table
            .filter(jobs::id.eq(j.id))
            .filter(jobs::state.eq(j.state.as_str())),
    )
    .set((
        jobs::state.eq(to.as_str()),
        jobs::reason.eq(reason),
        jobs::finished_at.eq(j.finished_at.unwrap_or(now)),
        jobs::lease_owner.eq(None::<String>),
        jobs::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if n == 0 {
        return Ok(false);
    }
    if j.state == RunState::Finished {
        differencing::forget(conn, j.id)?;
    }
    record(
        conn,
        actor,
        if to == RunState::Withheld {
            "withhold"
        } else {
            "cancel"
        },
        "job",
        j.id,
        serde_json::json!({ "from": j.state, "reason": reason }),
    )?;
    if to == RunState::Withheld {
        let name: String = computations::table
            .find(j.computation_id)
            .select(computations::name)
            .first(conn)?;
        notify_org(
            conn,
            j.org_id,
            "jobs.mail.withheld",
            j.id,
            &[
                ("id", j.id.to_string()),
                ("name", name),
                ("reasons", reason_both(reason)),
            ],
        )?;
    }
    Ok(true)
}

/// The reason recorded on runs stopped because their agreement ended (a message key).
pub const AGREEMENT_ENDED: &str = "jobs.why.agreement_ended";
/// The reason recorded on runs and approvals stopped because an amendment of their agreement
/// removed a dataset they use (a message key).
pub const AGREEMENT_AMENDED: &str = "jobs.why.agreement_amended";
/// The reason recorded when the privacy budget no longer covers a run (a message key).
pub const BUDGET_EXHAUSTED: &str = "jobs.why.budget_exhausted";
/// The reason recorded when the differencing guard withheld an output (a message key; the
/// cells are shown to platform staff only).
pub const DIFFERENCING: &str = "jobs.why.differencing";
/// The reason recorded when a bound dataset has no version (a message key).
pub const NO_DATA: &str = "jobs.why.no_data";
/// The reason recorded when a run's workers died too often (a message key).
pub const TOO_MANY_ATTEMPTS: &str = "jobs.why.too_many_attempts";
/// The reason recorded on runs cancelled by a person (a message key; who is in the audit log).
pub const CANCELLED: &str = "jobs.why.cancelled";
/// The reason recorded on the runs cancelled when their computation's approval was revoked
/// (a message key).
pub const REVOKED: &str = "jobs.why.revoked";

/// A stored reason in both languages (for emails): the platform's own reasons are message
/// keys; the sandbox's outcomes and the reviewer's words are kept as written.
pub fn reason_both(reason: &str) -> String {
    if reason.starts_with("jobs.why.") {
        format!(
            "{} / {}",
            super::model::why_text(crate::i18n::Lang::Zh, reason),
            super::model::why_text(crate::i18n::Lang::En, reason)
        )
    } else {
        reason.to_owned()
    }
}

/// The message key of a sandbox outcome kind (`Outcome`'s `kind` tag), if it is one.
pub fn outcome_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "finished" => "jobs.outcome.finished",
        "refused" => "jobs.outcome.refused",
        "out_of_time" => "jobs.outcome.out_of_time",
        "out_of_memory" => "jobs.outcome.out_of_memory",
        "too_many_groups" => "jobs.outcome.too_many_groups",
        "too_many_contributions" => "jobs.outcome.too_many_contributions",
        "log_limit" => "jobs.outcome.log_limit",
        "cancelled" => "jobs.outcome.cancelled",
        "guest_violation" => "jobs.outcome.guest_violation",
        "guest_trap" => "jobs.outcome.guest_trap",
        "host_error" => "jobs.outcome.host_error",
        "stopped" => "jobs.outcome.stopped",
        _ => return None,
    })
}

/// A sandbox outcome for an email read in either language: its name in Chinese and English,
/// then the sandbox's own technical words.
pub fn outcome_both(kind: &str, detail: &str) -> String {
    match outcome_key(kind) {
        Some(key) if detail.is_empty() => format!(
            "{} / {}",
            crate::i18n::t(crate::i18n::Lang::Zh, key),
            crate::i18n::t(crate::i18n::Lang::En, key)
        ),
        Some(key) => format!(
            "{} / {} ({detail})",
            crate::i18n::t(crate::i18n::Lang::Zh, key),
            crate::i18n::t(crate::i18n::Lang::En, key)
        ),
        None => detail.to_owned(),
    }
}

const OPEN: [&str; 4] = ["awaiting_approval", "queued", "running", "finished"];

/// Stops every open run under agreement `agreement_id` (called by each exit route, inside its
/// transaction); how many it stopped.
pub fn stop_for_agreement(
    conn: &mut DbConnection,
    actor: &Actor,
    agreement_id: i64,
    now: NaiveDateTime,
) -> QueryResult<u64> {
    let open: Vec<Job> = jobs::table
        .inner_join(computations::table)
        .filter(computations::agreement_id.eq(agreement_id))
        .filter(jobs::state.eq_any(OPEN))
        .select(Job::as_select())
        .load(conn)?;
    let mut stopped = 0;
    for j in &open {
        if stop_one(conn, actor, j, AGREEMENT_ENDED, now)? {
            stopped += 1;
        }
    }
    Ok(stopped)
}

/// The reaction to a sealed amendment ([`crate::reactions::agreement_amended`], inside the
/// seal's transaction): a computation whose datasets the amendment all keeps moves to it with
/// its approval and its open runs; one that uses a removed dataset loses its approval (pending:
/// rejected, approved: revoked) and its open runs are stopped, with the reason
/// [`AGREEMENT_AMENDED`]; the operator is told by mail what stopped.
pub fn carry_over_amendment(
    conn: &mut DbConnection,
    actor: &Actor,
    am: &crate::reactions::Amendment,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let under: Vec<Computation> = computations::table
        .filter(computations::agreement_id.eq(am.previous_id))
        .order(computations::id.asc())
        .select(Computation::as_select())
        .load(conn)?;
    let mut stopped_runs = 0u64;
    let mut stopped: Vec<(i64, String)> = Vec::new();
    let mut org = None;
    for c in &under {
        if !c.binding_map().values().any(|d| am.removed.contains(d)) {
            diesel::update(computations::table.find(c.id))
                .set(computations::agreement_id.eq(am.agreement_id))
                .execute(conn)?;
            record(
                conn,
                actor,
                "carry_over",
                "computation",
                c.id,
                serde_json::json!({ "from": am.previous_id, "to": am.agreement_id }),
            )?;
            continue;
        }
        org = Some(c.org_id);
        let open: Vec<Job> = jobs::table
            .filter(jobs::computation_id.eq(c.id))
            .filter(jobs::state.eq_any(OPEN))
            .select(Job::as_select())
            .load(conn)?;
        for j in &open {
            if stop_one(conn, actor, j, AGREEMENT_AMENDED, now)? {
                stopped_runs += 1;
            }
        }
        let action = match c.state {
            ComputationState::Pending => ComputationAction::Reject,
            _ => ComputationAction::Revoke,
        };
        if let Ok(to) = c.state.decide(action) {
            let n = diesel::update(
                computations::table
                    .filter(computations::id.eq(c.id))
                    .filter(computations::state.eq(c.state.as_str())),
            )
            .set((
                computations::state.eq(to.as_str()),
                computations::reviewed_by.eq(actor.user_id),
                computations::reviewed_at.eq(now),
                computations::review_note.eq(AGREEMENT_AMENDED),
            ))
            .execute(conn)?;
            if n > 0 {
                record(
                    conn,
                    actor,
                    if to == ComputationState::Revoked {
                        "revoke"
                    } else {
                        "reject"
                    },
                    "computation",
                    c.id,
                    serde_json::json!({
                        "reason": "agreement_amended",
                        "amendment": am.number,
                        "runs_stopped": open.iter().map(|j| j.id).collect::<Vec<_>>(),
                    }),
                )?;
                stopped.push((c.id, c.name.clone()));
            }
        }
    }
    if let Some(org_id) = org {
        mail::to_org(
            conn,
            org_id,
            &Notice {
                template: "jobs.mail.amended",
                args: &[
                    ("number", am.number.clone()),
                    (
                        "names",
                        stopped
                            .iter()
                            .map(|(_, n)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    ("computations", stopped.len().to_string()),
                    ("runs", stopped_runs.to_string()),
                    ("reasons", reason_both(AGREEMENT_AMENDED)),
                ],
                object_type: "agreement",
                object_id: am.agreement_id.to_string(),
            },
        )?;
    }
    Ok(())
}

/// The scheduler's sweep: stops the open runs under agreements that no longer run (a safety
/// net behind [`stop_for_agreement`]). Returns how many runs it stopped.
pub fn stop_ended_agreements(conn: &mut DbConnection, now: NaiveDateTime) -> anyhow::Result<u64> {
    let open: Vec<i64> = jobs::table
        .inner_join(computations::table)
        .filter(jobs::state.eq_any(OPEN))
        .select(computations::agreement_id)
        .distinct()
        .load(conn)?;
    let stale = agr::not_running(conn, &open)?;
    let mut stopped = 0;
    for agreement_id in stale {
        stopped += db::write_transaction(conn, |conn| {
            stop_for_agreement(conn, &Actor::system(), agreement_id, now)
        })?;
    }
    Ok(stopped)
}

/// A privacy budget line of a running agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    /// The operator's name.
    pub operator: String,
    /// The agreement's number.
    pub agreement: String,
    /// The dataset's title as the agreement names it (Chinese, the agreement's language).
    pub dataset: String,
    /// The dataset's English catalog title.
    pub dataset_en: String,
    /// The epsilon the agreement allows.
    pub budget: Decimal,
    /// The epsilon debited by released runs.
    pub spent: Decimal,
}

/// Privacy budgets of one organisation's running agreements (or of all).
pub fn budgets(conn: &mut DbConnection, org_id: Option<i64>) -> QueryResult<Vec<BudgetLine>> {
    let lines = agr::running_datasets(conn, org_id)?;
    let ids: Vec<i64> = lines.iter().map(|(_, d)| d.dataset_id).collect();
    let titles = crate::catalog::model::titles(conn, &ids)?;
    lines
        .into_iter()
        .map(|(a, d)| {
            Ok(BudgetLine {
                spent: model::epsilon_spent(conn, a.operator_org_id, a.id, d.dataset_id)?,
                operator: a.operator_name,
                agreement: a.number,
                dataset_en: titles
                    .get(&d.dataset_id)
                    .map(|t| t.1.clone())
                    .unwrap_or_default(),
                dataset: d.dataset_title,
                budget: model::dec(&d.epsilon),
            })
        })
        .collect()
}

/// A run budget line of a running agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunBudgetLine {
    /// The operator's name.
    pub operator: String,
    /// The agreement's number.
    pub agreement: String,
    /// Runs allowed per period.
    pub budget: i32,
    /// The period (`day`, `week` or `month`).
    pub period: String,
    /// Runs counted against the period ending now (as the submission check counts them).
    pub used: i64,
}

impl RunBudgetLine {
    /// Runs still allowed in the period.
    pub fn remaining(&self) -> i64 {
        (i64::from(self.budget) - self.used).max(0)
    }
}

/// Run budgets of one organisation's running agreements (or of all), with the runs used in
/// the period ending at `now`.
pub fn run_budgets(
    conn: &mut DbConnection,
    org_id: Option<i64>,
    now: NaiveDateTime,
) -> QueryResult<Vec<RunBudgetLine>> {
    agr::running(conn, org_id)?
        .into_iter()
        .map(|a| {
            let since = super::submit::period_start(&a.run_period, now);
            let used = super::submit::runs_since(conn, a.id, since)?;
            Ok(RunBudgetLine {
                operator: a.operator_name,
                agreement: a.number,
                budget: a.run_budget,
                period: a.run_period,
                used,
            })
        })
        .collect()
}
