//! Every action on agreements, each one transaction: check the state machine, change the rows,
//! write the audit entry (which is also the agreement's history) and queue the emails.
//!
//! The handlers and the scheduler call these; nothing else writes the agreement tables. This
//! file holds drafting to sealing and amendments; `exits` the end of a term, the termination
//! routes, rectification orders, termination requests and the disposal confirmation.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::forms::Terms;
use super::machine::{
    AgreementAction, AgreementState, EndReason, RectificationAction, RectificationState,
    RequestAction, RequestState,
};
use super::model::{self, Agreement, AgreementDataset};
use super::seal::SealKey;
use crate::admission::machine::ApplicationState;
use crate::admission::model as admission;
use crate::auth::CurrentUser;
use crate::calendar::Calendar;
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::input::MAX_TEXT;
use crate::mail::{self, Notice};
use crate::schema::{
    agreement_datasets, agreement_exits, agreement_signatures, agreements, credit_records,
    datasets, organisations, rectifications, sessions, termination_requests, users,
};
use crate::supervision::audit::Actor;
use crate::workflow::{self, Entry, Machine as _, Move};

mod exits;

pub use exits::*;

/// Longest rectification period, in working days.
pub const MAX_RECTIFICATION_DAYS: i32 = 60;

/// "Now" for stored timestamps: the platform clock truncated to microseconds (what both
/// backends store exactly, so the canonical text reads back identically).
pub fn stamp(now: NaiveDateTime) -> NaiveDateTime {
    db::to_micros(now)
}

/// Whether `action` may happen to `a` as read (a check before the command's other work; the
/// move itself is committed by [`move_agreement`]).
fn check(a: &Agreement, action: AgreementAction) -> Result<AgreementState, AppError> {
    Ok(a.state.decide(action)?)
}

/// An optional note (a decision's remark): trimmed and cut at [`MAX_TEXT`] characters.
pub fn optional_note(text: &str) -> String {
    text.trim().chars().take(MAX_TEXT).collect()
}

fn load(conn: &mut DbConnection, id: i64) -> Result<Agreement, AppError> {
    model::find(conn, id)?.ok_or_else(AppError::not_found)
}

/// An agreement as its operator may act on it: its own, and no longer a draft (drafts are
/// the regulator's until sent); anything else is 404.
fn load_for_operator(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Agreement, AppError> {
    let a = load(conn, id)?;
    if a.operator_org_id != user.org_id || a.state == AgreementState::Draft {
        return Err(AppError::not_found());
    }
    Ok(a)
}

/// The audit entry `agreement.<verb>` filed under agreement `id`.
fn entry<'a>(actor: &'a Actor, verb: &str, id: i64, details: serde_json::Value) -> Entry<'a> {
    Entry {
        actor,
        action: format!("agreement.{verb}"),
        object_type: "agreement",
        object_id: id.to_string(),
        details,
    }
}

/// Moves agreement `a` (in the state it was read in) by `action` on the workflow kernel:
/// compare-and-set on its state, with `audit` its command's entry.
fn move_agreement(
    conn: &mut DbConnection,
    a: &Agreement,
    action: AgreementAction,
    now: NaiveDateTime,
    audit: Option<Entry<'_>>,
) -> Result<AgreementState, AppError> {
    let mv = Move {
        from: a.state,
        action,
        audit,
    };
    workflow::commit(conn, mv, |conn, from, to| {
        diesel::update(
            agreements::table
                .find(a.id)
                .filter(agreements::state.eq(from)),
        )
        .set((agreements::state.eq(to), agreements::updated_at.eq(now)))
        .execute(conn)
    })
}

fn notify_parties(
    conn: &mut DbConnection,
    a: &Agreement,
    template: &str,
    args: &[(&str, String)],
) -> QueryResult<()> {
    let notice = Notice {
        template,
        args,
        object_type: "agreement",
        object_id: a.id.to_string(),
    };
    mail::to_org(conn, a.operator_org_id, &notice)?;
    mail::to_org(conn, a.regulator_org_id, &notice)
}

fn notify_operator(
    conn: &mut DbConnection,
    a: &Agreement,
    template: &str,
    args: &[(&str, String)],
) -> QueryResult<()> {
    mail::to_org(
        conn,
        a.operator_org_id,
        &Notice {
            template,
            args,
            object_type: "agreement",
            object_id: a.id.to_string(),
        },
    )
}

/// An application an agreement may be drafted from.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Application id.
    pub id: i64,
    /// The applicant (future operator).
    pub org_id: i64,
    /// Its name.
    pub org_name: String,
    /// The scenario applied for.
    pub scenario: String,
    /// Approved datasets: (id, title, purpose).
    pub datasets: Vec<(i64, String, String)>,
}

/// The admitted application `id` (read through admission's public queries), or 409 when it
/// exists but is not admitted.
pub fn admitted(conn: &mut DbConnection, id: i64) -> Result<Admitted, AppError> {
    let a = admission::for_agreement(conn, id)?.ok_or_else(AppError::not_found)?;
    if a.state != ApplicationState::Admitted {
        return Err(AppError::conflict("agreements.refuse.not_admitted"));
    }
    Ok(Admitted {
        id,
        org_id: a.org_id,
        org_name: a.org_name,
        scenario: a.scenario,
        datasets: a.datasets,
    })
}

/// Admitted applications without a live agreement (the regulator's "to draft" list).
pub fn admitted_without_agreement(conn: &mut DbConnection) -> QueryResult<Vec<(i64, String)>> {
    let with: Vec<i64> = agreements::table
        .filter(agreements::state.ne_all(ended_codes()))
        .select(agreements::application_id)
        .load(conn)?;
    admission::admitted_except(conn, &with, 200)
}

fn ended_codes() -> Vec<&'static str> {
    let mut v: Vec<&str> = EndReason::ALL.iter().map(|r| r.as_str()).collect();
    v.push(AgreementState::Superseded.as_str());
    v
}

fn dataset_rows(
    conn: &mut DbConnection,
    agreement_id: i64,
    chosen: &[(i64, String)],
) -> QueryResult<Vec<AgreementDataset>> {
    let ids: Vec<i64> = chosen.iter().map(|(id, _)| *id).collect();
    let info: Vec<(i64, String, i64, String)> = datasets::table
        .inner_join(organisations::table)
        .filter(datasets::id.eq_any(&ids))
        .select((
            datasets::id,
            datasets::title_zh,
            datasets::provider_org_id,
            organisations::name,
        ))
        .load(conn)?;
    Ok(chosen
        .iter()
        .filter_map(|(id, eps)| {
            info.iter()
                .find(|i| i.0 == *id)
                .map(|(_, title, provider, pname)| AgreementDataset {
                    agreement_id,
                    dataset_id: *id,
                    dataset_title: title.clone(),
                    provider_org_id: *provider,
                    provider_name: pname.clone(),
                    epsilon: eps.clone(),
                })
        })
        .collect())
}

fn replace_datasets(
    conn: &mut DbConnection,
    agreement_id: i64,
    chosen: &[(i64, String)],
) -> QueryResult<()> {
    diesel::delete(
        agreement_datasets::table.filter(agreement_datasets::agreement_id.eq(agreement_id)),
    )
    .execute(conn)?;
    let rows = dataset_rows(conn, agreement_id, chosen)?;
    insert_datasets(conn, &rows)
}

fn insert_datasets(conn: &mut DbConnection, rows: &[AgreementDataset]) -> QueryResult<()> {
    for row in rows {
        diesel::insert_into(agreement_datasets::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// The approved dataset ids of the agreement's application.
pub fn approved_ids(conn: &mut DbConnection, application_id: i64) -> QueryResult<BTreeSet<i64>> {
    admission::dataset_ids_of(conn, application_id)
}

/// Drafts an agreement from an admitted application; returns its id.
pub fn create_draft(
    conn: &mut DbConnection,
    user: &CurrentUser,
    application_id: i64,
    terms: &Terms,
    now: NaiveDateTime,
    year: i32,
) -> Result<i64, AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let app = admitted(conn, application_id)?;
        let live: i64 = agreements::table
            .filter(agreements::application_id.eq(application_id))
            .filter(agreements::state.ne_all(ended_codes()))
            .count()
            .get_result(conn)?;
        if live > 0 {
            return Err(AppError::conflict("agreements.refuse.exists"));
        }
        let credit_code: String = organisations::table
            .find(app.org_id)
            .select(organisations::credit_code)
            .first::<Option<String>>(conn)?
            .unwrap_or_default();
        let number = model::next_number(conn, year)?;
        let id: i64 = diesel::insert_into(agreements::table)
            .values((
                agreements::number.eq(&number),
                agreements::version.eq(1),
                agreements::application_id.eq(application_id),
                agreements::regulator_org_id.eq(user.org_id),
                agreements::regulator_name.eq(&user.org_name),
                agreements::operator_org_id.eq(app.org_id),
                agreements::operator_name.eq(&app.org_name),
                agreements::operator_credit_code.eq(credit_code),
                agreements::state.eq(AgreementState::Draft.as_str()),
                agreements::purpose.eq(&terms.purpose),
                agreements::scenario.eq(&terms.scenario),
                agreements::security_measures.eq(&terms.security_measures),
                agreements::disposal.eq(&terms.disposal),
                agreements::trial_months.eq(terms.trial_months),
                agreements::price_per_job.eq(&terms.price_per_job),
                agreements::price_per_thousand_rows.eq(&terms.price_per_thousand_rows),
                agreements::split_platform.eq(&terms.split.0),
                agreements::split_provider.eq(&terms.split.1),
                agreements::split_operator.eq(&terms.split.2),
                agreements::run_budget.eq(terms.run_budget),
                agreements::run_period.eq(&terms.run_period),
                agreements::created_by.eq(user.id),
                agreements::created_at.eq(now),
                agreements::updated_at.eq(now),
            ))
            .returning(agreements::id)
            .get_result(conn)?;
        replace_datasets(conn, id, &terms.datasets)?;
        entry(
            &user.actor(),
            "draft",
            id,
            serde_json::json!({ "number": number, "application_id": application_id }),
        )
        .record(conn)?;
        Ok(id)
    })
}

fn write_terms(conn: &mut DbConnection, id: i64, t: &Terms, now: NaiveDateTime) -> QueryResult<()> {
    diesel::update(agreements::table.find(id))
        .set((
            agreements::purpose.eq(&t.purpose),
            agreements::scenario.eq(&t.scenario),
            agreements::security_measures.eq(&t.security_measures),
            agreements::disposal.eq(&t.disposal),
            agreements::trial_months.eq(t.trial_months),
            agreements::price_per_job.eq(&t.price_per_job),
            agreements::price_per_thousand_rows.eq(&t.price_per_thousand_rows),
            agreements::split_platform.eq(&t.split.0),
            agreements::split_provider.eq(&t.split.1),
            agreements::split_operator.eq(&t.split.2),
            agreements::run_budget.eq(t.run_budget),
            agreements::run_period.eq(&t.run_period),
            agreements::updated_at.eq(now),
        ))
        .execute(conn)?;
    replace_datasets(conn, id, &t.datasets)
}

/// Changes a draft (409 once it left the draft state).
pub fn update_draft(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    terms: &Terms,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        let actor = user.actor();
        let edit = entry(&actor, "edit", id, serde_json::json!({}));
        move_agreement(conn, &a, AgreementAction::Edit, now, Some(edit))?;
        write_terms(conn, id, terms, now)?;
        Ok(())
    })
}

/// Drafts an amendment of an agreement in force (a new version with the same terms); returns
/// its id.
pub fn amend(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    now: NaiveDateTime,
) -> Result<i64, AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        check(&a, AgreementAction::Supersede)?;
        let open: i64 = agreements::table
            .filter(agreements::previous_id.eq(id))
            .filter(agreements::state.ne_all(ended_codes()))
            .count()
            .get_result(conn)?;
        if open > 0 {
            return Err(AppError::conflict("agreements.refuse.amendment_open"));
        }
        let version = a.version + 1;
        let number = model::amendment_number(&a.number, version);
        let new_id: i64 = diesel::insert_into(agreements::table)
            .values((
                agreements::number.eq(&number),
                agreements::version.eq(version),
                agreements::previous_id.eq(id),
                agreements::application_id.eq(a.application_id),
                agreements::regulator_org_id.eq(user.org_id),
                agreements::regulator_name.eq(&user.org_name),
                agreements::operator_org_id.eq(a.operator_org_id),
                agreements::operator_name.eq(&a.operator_name),
                agreements::operator_credit_code.eq(&a.operator_credit_code),
                agreements::state.eq(AgreementState::Draft.as_str()),
                agreements::purpose.eq(&a.purpose),
                agreements::scenario.eq(&a.scenario),
                agreements::security_measures.eq(&a.security_measures),
                agreements::disposal.eq(&a.disposal),
                agreements::trial_months.eq(a.trial_months),
                agreements::price_per_job.eq(&a.price_per_job),
                agreements::price_per_thousand_rows.eq(&a.price_per_thousand_rows),
                agreements::split_platform.eq(&a.split_platform),
                agreements::split_provider.eq(&a.split_provider),
                agreements::split_operator.eq(&a.split_operator),
                agreements::run_budget.eq(a.run_budget),
                agreements::run_period.eq(&a.run_period),
                agreements::created_by.eq(user.id),
                agreements::created_at.eq(now),
                agreements::updated_at.eq(now),
            ))
            .returning(agreements::id)
            .get_result(conn)?;
        let ds: Vec<AgreementDataset> = model::datasets_of(conn, id)?
            .into_iter()
            .map(|d| AgreementDataset {
                agreement_id: new_id,
                ..d
            })
            .collect();
        insert_datasets(conn, &ds)?;
        entry(
            &user.actor(),
            "amend",
            new_id,
            serde_json::json!({ "number": number, "amends": a.number }),
        )
        .record(conn)?;
        Ok(new_id)
    })
}

/// Sends a draft to the operator to sign.
pub fn submit(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        let actor = user.actor();
        let submitted = entry(&actor, "submit", id, serde_json::json!({}));
        move_agreement(conn, &a, AgreementAction::Submit, now, Some(submitted))?;
        notify_operator(
            conn,
            &a,
            "agreements.mail.ready_to_sign",
            &[
                ("number", a.number.clone()),
                ("operator", a.operator_name.clone()),
            ],
        )?;
        Ok(())
    })
}

/// The operator signs, typing its organisation's name as confirmation.
pub fn operator_sign(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    typed_name: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load_for_operator(conn, user, id)?;
        check(&a, AgreementAction::OperatorSign)?;
        if typed_name.trim() != a.operator_name {
            return Err(
                AppError::invalid("agreements.err.sign_name").arg("name", a.operator_name.clone())
            );
        }
        diesel::insert_into(agreement_signatures::table)
            .values((
                agreement_signatures::agreement_id.eq(id),
                agreement_signatures::operator_signed_by.eq(user.id),
                agreement_signatures::operator_signed_name.eq(&a.operator_name),
                agreement_signatures::operator_signed_at.eq(now),
            ))
            .execute(conn)?;
        let actor = user.actor();
        let signed = entry(
            &actor,
            "operator_sign",
            id,
            serde_json::json!({ "signed_as": a.operator_name }),
        );
        move_agreement(conn, &a, AgreementAction::OperatorSign, now, Some(signed))?;
        Ok(())
    })
}

/// The operator returns the agreement to the regulator with what it wants changed (back to
/// draft; the regulator edits and sends it again).
pub fn operator_return(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    comments: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load_for_operator(conn, user, id)?;
        let actor = user.actor();
        let returned = entry(
            &actor,
            "operator_return",
            id,
            serde_json::json!({ "comments": comments }),
        );
        move_agreement(
            conn,
            &a,
            AgreementAction::OperatorReturn,
            now,
            Some(returned),
        )?;
        mail::to_org(
            conn,
            a.regulator_org_id,
            &Notice {
                template: "agreements.mail.returned",
                args: &[
                    ("number", a.number.clone()),
                    ("operator", a.operator_name.clone()),
                    ("comments", comments.to_owned()),
                ],
                object_type: "agreement",
                object_id: id.to_string(),
            },
        )?;
        Ok(())
    })
}

/// The regulator seals: the term starts (an amendment keeps the term of the version it
/// amends), the canonical text is hashed and signed, the schema version of each dataset it
/// reads is recorded ([`super::schemas::record_at_seal`]), and a sealed amendment supersedes
/// the version it amends: the operator's work under it carries over for the datasets the
/// amendment keeps and stops for those it removes ([`crate::reactions::agreement_amended`]).
pub fn seal(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    now: NaiveDateTime,
    today: NaiveDate,
    key: &SealKey,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let mut a = load(conn, id)?;
        let read = a.clone();
        let to = check(&a, AgreementAction::Seal)?;
        let previous = match a.previous_id {
            Some(p) => {
                let prev = load(conn, p)?;
                check(&prev, AgreementAction::Supersede)?;
                Some(prev)
            }
            None => None,
        };
        let (starts_on, ends_on) = match &previous {
            Some(prev) => (
                prev.starts_on.unwrap_or(today),
                prev.ends_on.unwrap_or_else(|| model::term_end(today)),
            ),
            None => (today, model::term_end(today)),
        };
        a.state = to;
        a.sealed_at = Some(now);
        a.sealed_by = Some(user.id);
        a.starts_on = Some(starts_on);
        a.ends_on = Some(ends_on);
        let text = model::canonical_of(conn, &a)?;
        let hash = model::sha256_hex(&text);
        let signature = key.sign_hex(text.as_bytes());
        let actor = user.actor();
        let sealed = entry(
            &actor,
            "seal",
            id,
            serde_json::json!({ "sha256": hash, "starts_on": starts_on, "ends_on": ends_on }),
        );
        let mv = Move {
            from: read.state,
            action: AgreementAction::Seal,
            audit: Some(sealed),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                agreements::table
                    .find(id)
                    .filter(agreements::state.eq(from)),
            )
            .set((
                agreements::state.eq(to),
                agreements::starts_on.eq(starts_on),
                agreements::ends_on.eq(ends_on),
                agreements::updated_at.eq(now),
            ))
            .execute(conn)
        })?;
        diesel::update(agreement_signatures::table.find(id))
            .set((
                agreement_signatures::sealed_by.eq(user.id),
                agreement_signatures::sealed_at.eq(now),
                agreement_signatures::canonical_sha256.eq(&hash),
                agreement_signatures::signature.eq(&signature),
                agreement_signatures::public_key.eq(key.public_hex()),
            ))
            .execute(conn)?;
        super::schemas::record_at_seal(conn, &a, previous.as_ref(), now)?;
        if let Some(prev) = &previous {
            let superseded = entry(
                &actor,
                "supersede",
                prev.id,
                serde_json::json!({ "by": a.number }),
            );
            move_agreement(
                conn,
                prev,
                AgreementAction::Supersede,
                now,
                Some(superseded),
            )?;
            let before: Vec<i64> = model::datasets_of(conn, prev.id)?
                .into_iter()
                .map(|d| d.dataset_id)
                .collect();
            let after: Vec<i64> = model::datasets_of(conn, a.id)?
                .into_iter()
                .map(|d| d.dataset_id)
                .collect();
            let (kept, removed) = before.into_iter().partition(|d| after.contains(d));
            crate::reactions::agreement_amended(
                conn,
                &actor,
                &crate::reactions::Amendment {
                    previous_id: prev.id,
                    agreement_id: a.id,
                    number: a.number.clone(),
                    kept,
                    removed,
                },
                now,
            )?;
        }
        notify_parties(
            conn,
            &a,
            "agreements.mail.sealed",
            &[
                ("number", a.number.clone()),
                ("starts_on", starts_on.to_string()),
                ("ends_on", ends_on.to_string()),
            ],
        )?;
        Ok(())
    })
}
