//! Reactions of one domain to another's events, as registries (like [`crate::scheduler`]'s):
//! the domain where something happens calls the function here inside its transaction, and
//! each registered domain reacts in that transaction, so neither imports the other. The
//! regulator desk's queue sources are registered here too: the desk shows the queues of the
//! domains without importing them.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::QueryResult;

use crate::calendar::Calendar;
use crate::db::DbConnection;
use crate::supervision::audit::Actor;
use crate::supervision::desk::{self, QueueSection, QueueSource};

/// Every domain's queues on the regulator's desk, in the order the desk shows them.
pub const DESK_SOURCES: &[QueueSource] = &[
    crate::admission::queues,
    crate::agreements::queues::sections,
];

/// The regulator desk's queues on `today`, each sorted overdue first, then by deadline.
pub fn desk_queues(
    conn: &mut DbConnection,
    cal: &Calendar,
    today: NaiveDate,
) -> QueryResult<Vec<QueueSection>> {
    desk::collect_from(DESK_SOURCES, conn, cal, today)
}

/// A reaction to an agreement's end: (agreement id, when); how many pieces of the operator's
/// pending work it stopped.
type AgreementEnded = fn(&mut DbConnection, &Actor, i64, NaiveDateTime) -> QueryResult<u64>;

/// Who reacts when an agreement ends (expiry, termination on request, for breach or for a
/// violation).
const ON_AGREEMENT_ENDED: &[(&str, AgreementEnded)] = &[(
    "jobs: cancel the open runs, withhold the outputs waiting for release",
    crate::jobs::ops::stop_for_agreement,
)];

/// Agreement `agreement_id` ended (called inside the exit's transaction); how many pieces of
/// pending work the reactions stopped.
pub fn agreement_ended(
    conn: &mut DbConnection,
    actor: &Actor,
    agreement_id: i64,
    now: NaiveDateTime,
) -> QueryResult<u64> {
    let mut stopped = 0;
    for (_, react) in ON_AGREEMENT_ENDED {
        stopped += react(conn, actor, agreement_id, now)?;
    }
    Ok(stopped)
}

/// A reaction to a new schema version of a dataset: (dataset id, schema version).
type SchemaPublished = fn(&mut DbConnection, &Actor, i64, i32) -> QueryResult<()>;

/// Who reacts when a dataset's provider publishes a new schema version.
const ON_SCHEMA_PUBLISHED: &[(&str, SchemaPublished)] = &[(
    "agreements: ask the operators to accept it",
    crate::agreements::schemas::schema_published,
)];

/// A new schema version `schema_no` of `dataset_id` was published.
pub fn schema_published(
    conn: &mut DbConnection,
    actor: &Actor,
    dataset_id: i64,
    schema_no: i32,
) -> QueryResult<()> {
    for (_, react) in ON_SCHEMA_PUBLISHED {
        react(conn, actor, dataset_id, schema_no)?;
    }
    Ok(())
}

/// A sealed amendment that superseded the version it amends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amendment {
    /// The superseded version.
    pub previous_id: i64,
    /// The sealed amendment.
    pub agreement_id: i64,
    /// Its number.
    pub number: String,
    /// The datasets both versions cover.
    pub kept: Vec<i64>,
    /// The datasets the previous version covered and the amendment does not.
    pub removed: Vec<i64>,
}

/// A reaction to a sealed amendment.
type AgreementAmended = fn(&mut DbConnection, &Actor, &Amendment, NaiveDateTime) -> QueryResult<()>;

/// Who reacts when an amendment is sealed.
const ON_AGREEMENT_AMENDED: &[(&str, AgreementAmended)] = &[(
    "jobs: carry the computations over, stop those on removed datasets",
    crate::jobs::ops::carry_over_amendment,
)];

/// An amendment was sealed (called inside the seal's transaction).
pub fn agreement_amended(
    conn: &mut DbConnection,
    actor: &Actor,
    amendment: &Amendment,
    now: NaiveDateTime,
) -> QueryResult<()> {
    for (_, react) in ON_AGREEMENT_AMENDED {
        react(conn, actor, amendment, now)?;
    }
    Ok(())
}
