//! The schema versions of its datasets an agreement reads.
//!
//! A dataset's provider may publish a version whose columns differ from the published one
//! before it (a new schema version, [`crate::catalog::versions::publish`]). An agreement in
//! force keeps reading the last version of the schema its operator accepted until the operator
//! accepts the new one on the agreement's page: the agreement names datasets, not columns, so
//! a new schema stays within its scope, but it changes what the operator's approved
//! computations read, and only the operator can tell that they still compute what they should.
//! The regulator is told of each acceptance.
//!
//! Sealing records, per dataset, the schema version the agreement starts from: the published
//! one, or for a dataset an amendment keeps, the one its operator had accepted. A dataset with
//! no row (nothing was published when the agreement was sealed) reads schema version 1.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::machine::state_running;
use super::model::{self, Agreement};
use crate::auth::{CurrentUser, Role};
use crate::catalog::model as catalog;
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::mail::{self, Notice};
use crate::schema::{agreement_datasets, agreement_schemas, agreements};
use crate::supervision::audit::{self, Actor};

/// The schema version of `dataset_id` that agreement `agreement_id` reads.
pub fn accepted(conn: &mut DbConnection, agreement_id: i64, dataset_id: i64) -> QueryResult<i32> {
    Ok(agreement_schemas::table
        .find((agreement_id, dataset_id))
        .select(agreement_schemas::schema_no)
        .first(conn)
        .optional()?
        .unwrap_or(1))
}

/// A newer schema version of one of an agreement's datasets, waiting for its operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The dataset.
    pub dataset_id: i64,
    /// Its title as the agreement names it.
    pub title: String,
    /// The schema version the agreement reads.
    pub accepted: i32,
    /// The newest published schema version.
    pub current: i32,
}

/// The datasets of agreement `a` whose newest published schema version is newer than the one
/// it reads.
pub fn pending(conn: &mut DbConnection, a: &Agreement) -> QueryResult<Vec<Pending>> {
    let mut out = Vec::new();
    for d in model::datasets_of(conn, a.id)? {
        let accepted = accepted(conn, a.id, d.dataset_id)?;
        if let Some(current) = catalog::current_schema_no(conn, d.dataset_id)?
            && current > accepted
        {
            out.push(Pending {
                dataset_id: d.dataset_id,
                title: d.dataset_title,
                accepted,
                current,
            });
        }
    }
    Ok(out)
}

fn put(
    conn: &mut DbConnection,
    agreement_id: i64,
    dataset_id: i64,
    schema_no: i32,
    by: Option<i64>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(agreement_schemas::table.find((agreement_id, dataset_id))).execute(conn)?;
    diesel::insert_into(agreement_schemas::table)
        .values((
            agreement_schemas::agreement_id.eq(agreement_id),
            agreement_schemas::dataset_id.eq(dataset_id),
            agreement_schemas::schema_no.eq(schema_no),
            agreement_schemas::accepted_by.eq(by),
            agreement_schemas::accepted_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records, when agreement `a` is sealed (inside the seal's transaction), the schema version
/// it starts from for each of its datasets: what the amended version `previous` read for a
/// dataset it kept, else the newest published one.
pub fn record_at_seal(
    conn: &mut DbConnection,
    a: &Agreement,
    previous: Option<&Agreement>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let before: Vec<i64> = match previous {
        Some(p) => model::datasets_of(conn, p.id)?
            .into_iter()
            .map(|d| d.dataset_id)
            .collect(),
        None => Vec::new(),
    };
    for d in model::datasets_of(conn, a.id)? {
        let schema_no = match previous {
            Some(p) if before.contains(&d.dataset_id) => Some(accepted(conn, p.id, d.dataset_id)?),
            _ => catalog::current_schema_no(conn, d.dataset_id)?,
        };
        if let Some(n) = schema_no {
            put(conn, a.id, d.dataset_id, n, None, now)?;
        }
    }
    Ok(())
}

/// The reaction to a new schema version of `dataset_id` ([`crate::reactions`]): the operator
/// of every agreement in force on the dataset is asked to accept it.
pub fn schema_published(
    conn: &mut DbConnection,
    _actor: &Actor,
    dataset_id: i64,
    schema_no: i32,
) -> QueryResult<()> {
    let rows: Vec<(i64, String, i64, String)> = agreements::table
        .inner_join(agreement_datasets::table)
        .filter(agreement_datasets::dataset_id.eq(dataset_id))
        .filter(state_running())
        .select((
            agreements::id,
            agreements::number,
            agreements::operator_org_id,
            agreement_datasets::dataset_title,
        ))
        .load(conn)?;
    for (id, number, operator, title) in rows {
        mail::to_org(
            conn,
            operator,
            &Notice {
                template: "agreements.mail.schema_pending",
                args: &[
                    ("number", number),
                    ("dataset", title),
                    ("schema", schema_no.to_string()),
                    ("id", id.to_string()),
                ],
                object_type: "agreement",
                object_id: id.to_string(),
            },
        )?;
    }
    Ok(())
}

/// The operator accepts the newest published schema version of `dataset_id` for its agreement
/// `id` in force: its jobs read that schema's versions from now on. Audited; the regulator is
/// told.
pub fn accept(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    dataset_id: i64,
    now: NaiveDateTime,
) -> Result<i32, AppError> {
    user.require(&[Role::Enterprise])?;
    db::write_transaction(conn, |conn| {
        let a = model::find(conn, id)?.ok_or_else(AppError::not_found)?;
        if a.operator_org_id != user.org_id {
            return Err(AppError::not_found());
        }
        if !a.state.is_running() {
            return Err(AppError::conflict("agreements.refuse.schema_not_running"));
        }
        let Some(p) = pending(conn, &a)?
            .into_iter()
            .find(|p| p.dataset_id == dataset_id)
        else {
            return Err(AppError::conflict("agreements.refuse.schema_none_pending"));
        };
        put(conn, id, dataset_id, p.current, Some(user.id), now)?;
        audit::record(
            conn,
            &user.actor(),
            "agreement.schema_accept",
            "agreement",
            &id.to_string(),
            serde_json::json!({
                "dataset_id": dataset_id,
                "from": p.accepted,
                "to": p.current,
            }),
        )?;
        mail::to_org(
            conn,
            a.regulator_org_id,
            &Notice {
                template: "agreements.mail.schema_accepted",
                args: &[
                    ("number", a.number.clone()),
                    ("operator", a.operator_name.clone()),
                    ("dataset", p.title.clone()),
                    ("schema", p.current.to_string()),
                ],
                object_type: "agreement",
                object_id: id.to_string(),
            },
        )?;
        Ok(p.current)
    })
}
