//! The commands of admission: every change of a call, an application, an expert assignment
//! or an objection. Each is one [`db::write_transaction`] in the same order: read the object,
//! check who may act and every rule the change depends on, commit the move on the workflow
//! kernel ([`workflow::commit`]: compare-and-set on the state read, with its audit entry),
//! write the application's history and queue the mail. A refused or lost move rolls back
//! everything the command wrote.
//!
//! Handlers and the scheduler call these; nothing else writes the admission tables. The time
//! is the caller's (`now`, `today` from the platform clock).

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::forms::{self, ApplicationForm};
use super::machine::{
    ApplicationAction, ApplicationState, AssignmentAction, AssignmentState, CallAction, CallState,
    ObjectionAction, ObjectionState, Recommendation,
};
use super::model::{self, Application, Call, CallFields, Viewer};
use crate::accounts::machine::OrgStatus;
use crate::accounts::model::{OrgKind, find_org};
use crate::auth::{CurrentUser, Role};
use crate::calendar::Calendar;
use crate::catalog::model::{Dataset, OpenType};
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::mail::{self, Notice};
use crate::schema::{
    application_attachments, application_datasets, applications, calls, datasets,
    expert_assignments, objections, organisations,
};
use crate::supervision::audit::{self, Actor};
use crate::workflow::{self, Entry, Machine as _, Move, Refusal};

/// Objections one address may file per hour.
pub const MAX_OBJECTIONS_PER_HOUR: i64 = 5;

/// Whether a dataset may be offered by a call (Hangzhou point 1: never not-open data).
pub fn offerable(d: &Dataset) -> bool {
    matches!(
        OpenType::parse(&d.open_type),
        Some(OpenType::Unconditional | OpenType::Conditional)
    )
}

/// Why the catalog refuses the datasets of a call form (shown beside the form, 422).
#[derive(Debug, Clone)]
pub enum OfferProblem {
    /// A dataset id names no dataset.
    Unknown,
    /// This dataset is not open and may not be offered.
    NotOpen(Box<Dataset>),
}

/// Checks that every dataset `ids` names exists and may be offered.
fn check_offer(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Result<(), OfferProblem>> {
    let found: Vec<Dataset> = datasets::table
        .filter(datasets::id.eq_any(ids))
        .select(Dataset::as_select())
        .load(conn)?;
    if found.len() != ids.len() {
        return Ok(Err(OfferProblem::Unknown));
    }
    Ok(match found.into_iter().find(|d| !offerable(d)) {
        Some(d) => Err(OfferProblem::NotOpen(Box::new(d))),
        None => Ok(()),
    })
}

fn require_regulator(user: &CurrentUser) -> Result<(), AppError> {
    user.require(&[Role::Regulator])
}

/// The audit entry `<kind>.<verb>` filed under object `kind` `id`.
fn entry<'a>(
    actor: &'a Actor,
    kind: &'static str,
    verb: &str,
    id: i64,
    details: serde_json::Value,
) -> Entry<'a> {
    Entry {
        actor,
        action: format!("{kind}.{verb}"),
        object_type: kind,
        object_id: id.to_string(),
        details,
    }
}

/// A mail about application `app_id`.
fn notice<'a>(template: &'a str, args: &'a [(&'a str, String)], app_id: i64) -> Notice<'a> {
    Notice {
        template,
        args,
        object_type: "application",
        object_id: app_id.to_string(),
    }
}

/// Queues a notice for the regulator's staff: each regulator organisation that is not
/// disabled.
fn to_regulators(conn: &mut DbConnection, n: &Notice<'_>) -> QueryResult<()> {
    let orgs: Vec<i64> = organisations::table
        .filter(organisations::kind.eq(OrgKind::Regulator.as_str()))
        .filter(organisations::status.ne(OrgStatus::Disabled.as_str()))
        .select(organisations::id)
        .load(conn)?;
    for org in orgs {
        mail::to_org(conn, org, n)?;
    }
    Ok(())
}

/// The mail arguments naming an application and its call.
fn call_args(
    conn: &mut DbConnection,
    app: &Application,
) -> Result<Vec<(&'static str, String)>, AppError> {
    let call = model::find_call(conn, app.call_id)?.ok_or_else(AppError::not_found)?;
    Ok(vec![
        ("id", app.id.to_string()),
        ("org", app.org_name.clone()),
        ("call_zh", call.title_zh),
        ("call_en", call.title_en),
    ])
}

// ---------------------------------------------------------------------------------------------
// Calls

/// Moves call `c` (in the state it was read in) by `action`: compare-and-set on its state,
/// the publication time set when it is published, the audit entry `call.<verb>`.
fn move_call(
    conn: &mut DbConnection,
    actor: &Actor,
    c: &Call,
    action: CallAction,
    now: NaiveDateTime,
) -> Result<CallState, AppError> {
    let to = c.state.decide(action)?;
    let details = serde_json::json!({ "from": c.state.as_str(), "to": to.as_str() });
    let mv = Move {
        from: c.state,
        action,
        audit: Some(entry(actor, "call", action.verb(), c.id, details)),
    };
    let published_at = if to == CallState::Published {
        Some(now)
    } else {
        c.published_at
    };
    workflow::commit(conn, mv, |conn, from, to| {
        diesel::update(calls::table.find(c.id).filter(calls::state.eq(from)))
            .set((
                calls::state.eq(to),
                calls::updated_at.eq(now),
                calls::published_at.eq(published_at),
            ))
            .execute(conn)
    })
}

/// Creates a draft call offering datasets `ids` (regulator); its id, or why the catalog
/// refuses the datasets.
pub fn create_call(
    conn: &mut DbConnection,
    user: &CurrentUser,
    fields: &CallFields,
    ids: &[i64],
    now: NaiveDateTime,
) -> Result<Result<i64, OfferProblem>, AppError> {
    require_regulator(user)?;
    db::write_transaction(conn, |conn| {
        if let Err(p) = check_offer(conn, ids)? {
            return Ok(Err(p));
        }
        let id: i64 = diesel::insert_into(calls::table)
            .values((
                fields,
                calls::state.eq(CallState::Draft.as_str()),
                calls::created_by.eq(user.id),
                calls::created_at.eq(now),
                calls::updated_at.eq(now),
            ))
            .returning(calls::id)
            .get_result(conn)?;
        model::set_call_datasets(conn, id, ids)?;
        audit::record(
            conn,
            &user.actor(),
            "call.create",
            "call",
            &id.to_string(),
            serde_json::json!({ "title_zh": fields.title_zh, "datasets": ids }),
        )?;
        Ok(Ok(id))
    })
}

/// Saves draft call `id` (regulator): a refusal once it is no longer a draft, or why the
/// catalog refuses the datasets.
pub fn update_call(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    fields: &CallFields,
    ids: &[i64],
    now: NaiveDateTime,
) -> Result<Result<(), OfferProblem>, AppError> {
    require_regulator(user)?;
    db::write_transaction(conn, |conn| {
        let c = model::find_call(conn, id)?.ok_or_else(AppError::not_found)?;
        c.state.decide(CallAction::Edit)?;
        if let Err(p) = check_offer(conn, ids)? {
            return Ok(Err(p));
        }
        let actor = user.actor();
        let details = serde_json::json!({ "title_zh": fields.title_zh, "datasets": ids });
        let mv = Move {
            from: c.state,
            action: CallAction::Edit,
            audit: Some(entry(&actor, "call", CallAction::Edit.verb(), id, details)),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(calls::table.find(id).filter(calls::state.eq(from)))
                .set((fields, calls::state.eq(to), calls::updated_at.eq(now)))
                .execute(conn)
        })?;
        model::set_call_datasets(conn, id, ids)?;
        Ok(Ok(()))
    })
}

/// Publishes, closes or withdraws call `id` (regulator). A call whose closing date has
/// passed is not published.
pub fn change_call(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    action: CallAction,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<CallState, AppError> {
    require_regulator(user)?;
    db::write_transaction(conn, |conn| {
        let c = model::find_call(conn, id)?.ok_or_else(AppError::not_found)?;
        if action == CallAction::Publish && c.closes_on < today {
            return Err(Refusal::new("admission.err_closes_past").into());
        }
        move_call(conn, &user.actor(), &c, action, now)
    })
}

/// Closes call `id` if it is published and its closing date is before `today` (the
/// scheduler); whether it did.
pub fn close_if_due(
    conn: &mut DbConnection,
    id: i64,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<bool, AppError> {
    db::write_transaction(conn, |conn| match model::find_call(conn, id)? {
        Some(c) if c.state == CallState::Published && c.closes_on < today => {
            move_call(conn, &Actor::system(), &c, CallAction::Close, now)?;
            Ok(true)
        }
        _ => Ok(false),
    })
}

// ---------------------------------------------------------------------------------------------
// Applications

/// Moves application `app` (in the state it was read in) by `action`: compare-and-set on its
/// state, the audit entry `application.<code>` and the history entry with `message`.
fn move_application(
    conn: &mut DbConnection,
    actor: &Actor,
    app: &Application,
    action: ApplicationAction,
    message: &str,
    now: NaiveDateTime,
) -> Result<ApplicationState, AppError> {
    let from = app.state;
    let to = from.decide(action)?;
    let details = serde_json::json!({ "from": from.as_str(), "to": to.as_str() });
    let mv = Move {
        from,
        action,
        audit: Some(entry(actor, "application", action.code(), app.id, details)),
    };
    workflow::commit(conn, mv, |conn, from, to| {
        diesel::update(
            applications::table
                .find(app.id)
                .filter(applications::state.eq(from)),
        )
        .set((applications::state.eq(to), applications::updated_at.eq(now)))
        .execute(conn)
    })?;
    model::record_event(conn, app.id, actor, action.code(), (from, to), message, now)?;
    Ok(to)
}

/// The application `id` of `user`'s organisation, or 404.
fn own_application(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Application, AppError> {
    match model::visible(conn, user, id)? {
        (app, Viewer::Owner) => Ok(app),
        _ => Err(AppError::not_found()),
    }
}

/// The application `id` as the regulator reviews it, or 404.
fn reviewed_application(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Application, AppError> {
    require_regulator(user)?;
    match model::visible(conn, user, id)? {
        (app, Viewer::Regulator) => Ok(app),
        _ => Err(AppError::not_found()),
    }
}

/// A change of an editable application that is no move of its own (an attachment added or
/// removed): a compare-and-set of the state it was read in onto itself, so a concurrent
/// submission or return either happens first (and this is refused) or waits for it.
fn edit_application(
    conn: &mut DbConnection,
    app: &Application,
    audit: Entry<'_>,
) -> Result<(), AppError> {
    let mv = Move {
        from: app.state,
        action: ApplicationAction::Save,
        audit: Some(audit),
    };
    workflow::commit(conn, mv, |conn, from, to| {
        diesel::update(
            applications::table
                .find(app.id)
                .filter(applications::state.eq(from)),
        )
        .set(applications::state.eq(to))
        .execute(conn)
    })?;
    Ok(())
}

/// Copies the organisation's current details onto the application.
fn snapshot_org(conn: &mut DbConnection, app_id: i64, org_id: i64) -> Result<(), AppError> {
    let org = find_org(conn, org_id)?.ok_or_else(AppError::not_found)?;
    diesel::update(applications::table.find(app_id))
        .set((
            applications::org_name.eq(&org.name),
            applications::credit_code.eq(org.credit_code.clone().unwrap_or_default()),
            applications::legal_representative.eq(&org.legal_representative),
            applications::contact_name.eq(&org.contact_name),
            applications::contact_phone.eq(&org.contact_phone),
            applications::address.eq(&org.address),
        ))
        .execute(conn)?;
    Ok(())
}

/// Starts (or finds) the application of `user`'s organisation to call `call_id`; its id.
/// Only a verified enterprise may apply, and only while the call takes applications.
pub fn start_application(
    conn: &mut DbConnection,
    user: &CurrentUser,
    call_id: i64,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<i64, AppError> {
    user.require(&[Role::Enterprise])?;
    db::write_transaction(conn, |conn| {
        let call = model::find_call(conn, call_id)?
            .filter(Call::is_public)
            .ok_or_else(AppError::not_found)?;
        let org = find_org(conn, user.org_id)?.ok_or_else(AppError::not_found)?;
        if org.status != OrgStatus::Verified {
            return Err(AppError::http(
                actix_web::http::StatusCode::FORBIDDEN,
                "admission.err_org_not_verified",
            ));
        }
        if let Some(id) = model::application_to_call(conn, call_id, user.org_id)? {
            return Ok(id);
        }
        if !call.is_open(today) {
            return Err(Refusal::new("admission.err_call_not_open").into());
        }
        let id: i64 = diesel::insert_into(applications::table)
            .values((
                applications::call_id.eq(call_id),
                applications::org_id.eq(user.org_id),
                applications::created_by.eq(user.id),
                applications::state.eq(ApplicationState::Draft.as_str()),
                applications::created_at.eq(now),
                applications::updated_at.eq(now),
            ))
            .returning(applications::id)
            .get_result(conn)?;
        snapshot_org(conn, id, user.org_id)?;
        audit::record(
            conn,
            &user.actor(),
            "application.create",
            "application",
            &id.to_string(),
            serde_json::json!({ "call_id": call_id, "state": "draft" }),
        )?;
        Ok(id)
    })
}

/// What [`save_application`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Saved.
    Saved,
    /// Saved and submitted.
    Submitted,
    /// Nothing saved: the form's problem (a message key).
    Invalid(&'static str),
    /// Saved, not submitted: what is missing (message keys).
    Missing(Vec<&'static str>),
}

/// Saves the draft (or returned) application `id` of `user`'s organisation from `form` and,
/// when `submit`, submits it if it is complete: the review is due `review_days` working days
/// after `today`. A first submission is refused once the call no longer takes applications;
/// a resubmission after a return is not.
#[allow(clippy::too_many_arguments)]
pub fn save_application(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    form: &ApplicationForm,
    submit: bool,
    now: NaiveDateTime,
    today: NaiveDate,
    review_days: u32,
) -> Result<Saved, AppError> {
    user.require(&[Role::Enterprise])?;
    db::write_transaction(conn, |conn| {
        let app = own_application(conn, user, id)?;
        app.state.decide(ApplicationAction::Save)?;
        let call = model::find_call(conn, app.call_id)?.ok_or_else(AppError::not_found)?;
        let offered: Vec<i64> = model::call_datasets_of(conn, call.id)?
            .iter()
            .map(|d| d.id)
            .collect();
        let fields = match form.validate(&offered, &call.scenario_list()) {
            Ok(v) => v,
            Err(key) => return Ok(Saved::Invalid(key)),
        };
        let actor = user.actor();
        let ids: Vec<i64> = fields.datasets.iter().map(|d| d.0).collect();
        let mv = Move {
            from: app.state,
            action: ApplicationAction::Save,
            audit: Some(entry(
                &actor,
                "application",
                ApplicationAction::Save.code(),
                id,
                serde_json::json!({ "datasets": ids }),
            )),
        };
        let [basic, technical, scenario, domain] = &fields.evidence;
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                applications::table
                    .find(id)
                    .filter(applications::state.eq(from)),
            )
            .set((
                applications::state.eq(to),
                applications::scenario.eq(&fields.scenario),
                applications::evidence_basic.eq(basic),
                applications::evidence_technical.eq(technical),
                applications::evidence_scenario.eq(scenario),
                applications::evidence_domain.eq(domain),
                applications::declared.eq(fields.declared),
                applications::updated_at.eq(now),
            ))
            .execute(conn)
        })?;
        diesel::delete(
            application_datasets::table.filter(application_datasets::application_id.eq(id)),
        )
        .execute(conn)?;
        for (ds, purpose) in &fields.datasets {
            diesel::insert_into(application_datasets::table)
                .values((
                    application_datasets::application_id.eq(id),
                    application_datasets::dataset_id.eq(ds),
                    application_datasets::purpose.eq(purpose),
                ))
                .execute(conn)?;
        }
        snapshot_org(conn, id, app.org_id)?;
        if !submit {
            return Ok(Saved::Saved);
        }
        let app = model::find_application(conn, id)?.ok_or_else(AppError::not_found)?;
        app.state.decide(ApplicationAction::Submit)?;
        if app.state == ApplicationState::Draft && !call.is_open(today) {
            return Err(Refusal::new("admission.err_call_closed").into());
        }
        let missing = forms::missing(&app, &fields.datasets);
        if !missing.is_empty() {
            return Ok(Saved::Missing(missing));
        }
        move_application(conn, &actor, &app, ApplicationAction::Submit, "", now)?;
        let due = Calendar::load(conn)?.add_working_days(today, review_days);
        diesel::update(applications::table.find(id))
            .set((
                applications::submitted_at.eq(now),
                applications::review_due_on.eq(due),
            ))
            .execute(conn)?;
        let args = [
            ("id", id.to_string()),
            ("org", app.org_name.clone()),
            ("call_zh", call.title_zh.clone()),
            ("call_en", call.title_en.clone()),
            ("due", due.to_string()),
        ];
        let n = notice("admission.mail.received", &args, id);
        mail::to_org(conn, app.org_id, &n)?;
        to_regulators(conn, &n)?;
        Ok(Saved::Submitted)
    })
}

/// A new evidence file of an application, already stored under the data dir.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// Its evidence group.
    pub group: model::EvidenceGroup,
    /// The cleaned file name.
    pub file_name: String,
    /// The content type sniffed from the bytes.
    pub content_type: &'static str,
    /// Size in bytes.
    pub byte_count: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Path relative to the data dir.
    pub storage_path: String,
}

/// Records attachment `att` of the editable application `id` of `user`'s organisation (at
/// most `max_files` per application).
pub fn attach(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    att: &NewAttachment,
    max_files: usize,
    now: NaiveDateTime,
) -> Result<i64, AppError> {
    user.require(&[Role::Enterprise])?;
    db::write_transaction(conn, |conn| {
        let app = own_application(conn, user, id)?;
        app.state.decide(ApplicationAction::Save)?;
        if model::attachments_of(conn, id)?.len() >= max_files {
            return Err(AppError::invalid("admission.err_too_many_files").arg("max", max_files));
        }
        let aid: i64 = diesel::insert_into(application_attachments::table)
            .values((
                application_attachments::application_id.eq(id),
                application_attachments::evidence_group.eq(att.group.as_str()),
                application_attachments::file_name.eq(&att.file_name),
                application_attachments::content_type.eq(att.content_type),
                application_attachments::byte_count.eq(att.byte_count),
                application_attachments::sha256.eq(&att.sha256),
                application_attachments::storage_path.eq(&att.storage_path),
                application_attachments::uploaded_by.eq(user.id),
                application_attachments::created_at.eq(now),
            ))
            .returning(application_attachments::id)
            .get_result(conn)?;
        let actor = user.actor();
        let details = serde_json::json!({
            "attachment_id": aid, "group": att.group.as_str(), "type": att.content_type,
            "bytes": att.byte_count, "sha256": att.sha256
        });
        edit_application(
            conn,
            &app,
            entry(&actor, "application", "attach", id, details),
        )?;
        Ok(aid)
    })
}

/// Removes attachment `aid` of the editable application `id` of `user`'s organisation; the
/// stored file's path (relative to the data dir), for the caller to delete once committed.
pub fn detach(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    aid: i64,
) -> Result<String, AppError> {
    user.require(&[Role::Enterprise])?;
    db::write_transaction(conn, |conn| {
        let app = own_application(conn, user, id)?;
        app.state.decide(ApplicationAction::Save)?;
        let att = model::attachments_of(conn, id)?
            .into_iter()
            .find(|a| a.id == aid)
            .ok_or_else(AppError::not_found)?;
        diesel::delete(application_attachments::table.find(aid)).execute(conn)?;
        let actor = user.actor();
        let details = serde_json::json!({ "attachment_id": aid, "sha256": att.sha256 });
        edit_application(
            conn,
            &app,
            entry(&actor, "application", "detach", id, details),
        )?;
        Ok(att.storage_path)
    })
}

/// Returns application `id` for supplement (regulator), with `missing` (what it lacks) in
/// its history and the applicant's mail.
pub fn return_application(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    missing: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let app = reviewed_application(conn, user, id)?;
        move_application(
            conn,
            &user.actor(),
            &app,
            ApplicationAction::Return,
            missing,
            now,
        )?;
        let mut args = call_args(conn, &app)?;
        args.push(("missing", missing.to_owned()));
        mail::to_org(
            conn,
            app.org_id,
            &notice("admission.mail.returned", &args, app.id),
        )?;
        Ok(())
    })
}

/// Assigns expert `expert_id` to application `id` (regulator); the opinion is due
/// `expert_days` working days after `today`. An expert is assigned once per application.
pub fn assign_expert(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    expert_id: i64,
    now: NaiveDateTime,
    today: NaiveDate,
    expert_days: u32,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let app = reviewed_application(conn, user, id)?;
        app.state.decide(ApplicationAction::AssignExpert)?;
        let expert_name = model::active_expert_name(conn, expert_id)?
            .ok_or_else(|| AppError::invalid("admission.err_expert"))?;
        let actor = user.actor();
        // The move first: its compare-and-set holds the application's row, so the check
        // below sees any assignment a concurrent command made.
        move_application(
            conn,
            &actor,
            &app,
            ApplicationAction::AssignExpert,
            &expert_name,
            now,
        )?;
        let already = model::assignments_of(conn, id)?
            .iter()
            .any(|(a, _)| a.expert_user_id == expert_id);
        if already {
            return Err(Refusal::new("admission.err_expert_assigned").into());
        }
        let due = Calendar::load(conn)?.add_working_days(today, expert_days);
        let aid: i64 = diesel::insert_into(expert_assignments::table)
            .values((
                expert_assignments::application_id.eq(id),
                expert_assignments::expert_user_id.eq(expert_id),
                expert_assignments::state.eq(AssignmentState::Assigned.as_str()),
                expert_assignments::assigned_by.eq(user.id),
                expert_assignments::assigned_at.eq(now),
                expert_assignments::due_on.eq(due),
            ))
            .returning(expert_assignments::id)
            .get_result(conn)?;
        audit::record(
            conn,
            &actor,
            "assignment.create",
            "assignment",
            &aid.to_string(),
            serde_json::json!({
                "application_id": id, "expert_user_id": expert_id, "due_on": due.to_string()
            }),
        )?;
        let mut args = call_args(conn, &app)?;
        args.push(("due", due.to_string()));
        mail::to_user(
            conn,
            expert_id,
            &notice("admission.mail.expert_assigned", &args, id),
        )?;
        Ok(())
    })
}

/// Approves application `id` (regulator) with an optional `note`: the public notice runs
/// `notice_days` working days from `today`.
pub fn approve(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    note: &str,
    now: NaiveDateTime,
    today: NaiveDate,
    notice_days: u32,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let app = reviewed_application(conn, user, id)?;
        move_application(
            conn,
            &user.actor(),
            &app,
            ApplicationAction::Approve,
            note,
            now,
        )?;
        let ends = Calendar::load(conn)?.add_working_days(today, notice_days);
        diesel::update(applications::table.find(id))
            .set((
                applications::decided_at.eq(now),
                applications::notice_ends_on.eq(ends),
                applications::decision_reasons.eq(note),
            ))
            .execute(conn)?;
        let mut args = call_args(conn, &app)?;
        args.push(("ends", ends.to_string()));
        mail::to_org(
            conn,
            app.org_id,
            &notice("admission.mail.approved", &args, id),
        )?;
        Ok(())
    })
}

/// Rejects application `id` (regulator) with `reasons` the applicant sees.
pub fn reject(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    reasons: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    db::write_transaction(conn, |conn| {
        let app = reviewed_application(conn, user, id)?;
        move_application(
            conn,
            &user.actor(),
            &app,
            ApplicationAction::Reject,
            reasons,
            now,
        )?;
        diesel::update(applications::table.find(id))
            .set((
                applications::decided_at.eq(now),
                applications::decision_reasons.eq(reasons),
            ))
            .execute(conn)?;
        let mut args = call_args(conn, &app)?;
        args.push(("reasons", reasons.to_owned()));
        mail::to_org(
            conn,
            app.org_id,
            &notice("admission.mail.rejected", &args, id),
        )?;
        Ok(())
    })
}

/// Files the opinion of the expert `user` assigned to application `id` (once, while the
/// application is under review).
pub fn file_opinion(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    recommendation: Recommendation,
    opinion: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    user.require(&[Role::Expert])?;
    db::write_transaction(conn, |conn| {
        let (app, Viewer::Expert(aid)) = model::visible(conn, user, id)? else {
            return Err(AppError::not_found());
        };
        let (asg, _) = model::assignments_of(conn, id)?
            .into_iter()
            .find(|(a, _)| a.id == aid)
            .ok_or_else(AppError::not_found)?;
        let to = asg.state.decide(AssignmentAction::File)?;
        if !app.state.awaits_review() {
            return Err(Refusal::new("admission.err_app_not_in_review").into());
        }
        let actor = user.actor();
        let details = serde_json::json!({
            "application_id": id, "recommendation": recommendation.as_str(),
            "from": asg.state.as_str(), "to": to.as_str()
        });
        let mv = Move {
            from: asg.state,
            action: AssignmentAction::File,
            audit: Some(entry(&actor, "assignment", "file_opinion", aid, details)),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                expert_assignments::table
                    .find(aid)
                    .filter(expert_assignments::state.eq(from)),
            )
            .set((
                expert_assignments::state.eq(to),
                expert_assignments::recommendation.eq(recommendation.as_str()),
                expert_assignments::opinion.eq(opinion),
                expert_assignments::filed_at.eq(now),
            ))
            .execute(conn)
        })?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Public notice and objections

/// An objection as filed from the public notice page (checked by the form).
#[derive(Debug, Clone)]
pub struct NewObjection {
    /// The objector's name.
    pub name: String,
    /// An email address or phone number.
    pub contact: String,
    /// The grounds.
    pub grounds: String,
    /// The source address (rate limit, audit).
    pub addr: String,
}

/// Files objection `o` to application `id` while its notice runs; the regulator decides
/// within `objection_days` working days of `today`. At most [`MAX_OBJECTIONS_PER_HOUR`]
/// per source address.
pub fn file_objection(
    conn: &mut DbConnection,
    id: i64,
    o: &NewObjection,
    now: NaiveDateTime,
    today: NaiveDate,
    objection_days: u32,
) -> Result<i64, AppError> {
    db::write_transaction(conn, |conn| {
        let app = model::find_application(conn, id)?
            .filter(|a| {
                matches!(
                    a.state,
                    ApplicationState::Notice | ApplicationState::Admitted
                )
            })
            .ok_or_else(AppError::not_found)?;
        if app.state != ApplicationState::Notice || app.notice_ends_on.is_none_or(|d| today > d) {
            return Err(Refusal::new("admission.err_notice_over").into());
        }
        let recent: i64 = objections::table
            .filter(objections::source_addr.eq(&o.addr))
            .filter(objections::filed_at.gt(now - chrono::Duration::hours(1)))
            .count()
            .get_result(conn)?;
        if recent >= MAX_OBJECTIONS_PER_HOUR {
            return Err(AppError::http(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                "admission.err_rate",
            ));
        }
        let due = Calendar::load(conn)?.add_working_days(today, objection_days);
        let oid: i64 = diesel::insert_into(objections::table)
            .values((
                objections::application_id.eq(id),
                objections::name.eq(&o.name),
                objections::contact.eq(&o.contact),
                objections::grounds.eq(&o.grounds),
                objections::state.eq(ObjectionState::Pending.as_str()),
                objections::source_addr.eq(&o.addr),
                objections::filed_at.eq(now),
                objections::due_on.eq(due),
            ))
            .returning(objections::id)
            .get_result(conn)?;
        audit::record(
            conn,
            &Actor::anonymous(&o.name, &o.addr),
            "objection.file",
            "objection",
            &oid.to_string(),
            serde_json::json!({ "application_id": id, "due_on": due.to_string() }),
        )?;
        let args = [
            ("id", id.to_string()),
            ("org", app.org_name.clone()),
            ("due", due.to_string()),
        ];
        to_regulators(conn, &notice("admission.mail.objection_filed", &args, id))?;
        Ok(oid)
    })
}

/// Decides objection `oid` (regulator) with `reasons`; returns its application's id.
/// Upholding sends the application back to review (due `review_days` working days after
/// `today`); dismissing the last pending objection after the notice period admits the
/// applicant at once. The objector (when the contact is an email address) and the applicant
/// are mailed.
#[allow(clippy::too_many_arguments)]
pub fn decide_objection(
    conn: &mut DbConnection,
    user: &CurrentUser,
    oid: i64,
    action: ObjectionAction,
    reasons: &str,
    now: NaiveDateTime,
    today: NaiveDate,
    review_days: u32,
) -> Result<i64, AppError> {
    require_regulator(user)?;
    db::write_transaction(conn, |conn| {
        let o = model::find_objection(conn, oid)?.ok_or_else(AppError::not_found)?;
        let app =
            model::find_application(conn, o.application_id)?.ok_or_else(AppError::not_found)?;
        let to = o.state.decide(action)?;
        if action == ObjectionAction::Uphold {
            app.state.decide(ApplicationAction::UpholdObjection)?;
        }
        let actor = user.actor();
        let details = serde_json::json!({
            "application_id": app.id, "from": o.state.as_str(), "to": to.as_str()
        });
        let mv = Move {
            from: o.state,
            action,
            audit: Some(entry(&actor, "objection", action.verb(), oid, details)),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                objections::table
                    .find(oid)
                    .filter(objections::state.eq(from)),
            )
            .set((
                objections::state.eq(to),
                objections::decided_by.eq(user.id),
                objections::decided_at.eq(now),
                objections::reasons.eq(reasons),
            ))
            .execute(conn)
        })?;
        if action == ObjectionAction::Uphold {
            move_application(
                conn,
                &actor,
                &app,
                ApplicationAction::UpholdObjection,
                reasons,
                now,
            )?;
            let due = Calendar::load(conn)?.add_working_days(today, review_days);
            diesel::update(applications::table.find(app.id))
                .set((
                    applications::review_due_on.eq(due),
                    applications::notice_ends_on.eq(None::<NaiveDate>),
                ))
                .execute(conn)?;
        }
        let outcome_key = match action {
            ObjectionAction::Dismiss => "admission.objection_dismissed",
            ObjectionAction::Uphold => "admission.objection_upheld",
        };
        let args = [
            ("id", app.id.to_string()),
            ("org", app.org_name.clone()),
            (
                "outcome_zh",
                crate::i18n::t(crate::i18n::Lang::Zh, outcome_key).to_owned(),
            ),
            (
                "outcome_en",
                crate::i18n::t(crate::i18n::Lang::En, outcome_key).to_owned(),
            ),
            ("reasons", reasons.to_owned()),
        ];
        let n = notice("admission.mail.objection_decided", &args, app.id);
        if crate::input::valid_email(&o.contact) {
            mail::to_addr(conn, o.contact.trim(), &n)?;
        }
        mail::to_org(conn, app.org_id, &n)?;
        if action == ObjectionAction::Dismiss {
            admit_due(conn, app.id, now, today)?;
        }
        Ok(app.id)
    })
}

/// Admits application `id` (the scheduler) if its notice period ended before `today` with no
/// objection pending (an upheld objection has already sent it back to review); whether it
/// did.
pub fn admit_if_due(
    conn: &mut DbConnection,
    id: i64,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<bool, AppError> {
    db::write_transaction(conn, |conn| admit_due(conn, id, now, today))
}

/// [`admit_if_due`] in the caller's transaction.
fn admit_due(
    conn: &mut DbConnection,
    id: i64,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<bool, AppError> {
    let Some(app) = model::find_application(conn, id)? else {
        return Ok(false);
    };
    if app.state != ApplicationState::Notice || app.notice_ends_on.is_none_or(|d| today <= d) {
        return Ok(false);
    }
    let pending = model::objections_of(conn, id)?
        .iter()
        .any(|o| o.state == ObjectionState::Pending);
    if pending {
        return Ok(false);
    }
    move_application(
        conn,
        &Actor::system(),
        &app,
        ApplicationAction::Admit,
        "",
        now,
    )?;
    diesel::update(applications::table.find(id))
        .set(applications::admitted_at.eq(now))
        .execute(conn)?;
    let args = [("id", id.to_string()), ("org", app.org_name.clone())];
    mail::to_org(
        conn,
        app.org_id,
        &notice("admission.mail.admitted", &args, id),
    )?;
    Ok(true)
}
