//! The regulator's desk: every work queue on one page, each item with its deadline.
//!
//! Domains contribute queues through [`SOURCES`]: a function that returns the domain's
//! sections for the day. The desk page sorts each section's items with
//! [`Deadline::queue_order`] (overdue first, marked) and shows the working days left.

use chrono::NaiveDate;
use diesel::QueryResult;

use crate::calendar::{Calendar, Deadline};
use crate::db::DbConnection;

/// One work queue (e.g. "applications to check").
#[derive(Debug, Clone)]
pub struct QueueSection {
    /// Message key of the queue's title.
    pub title_key: &'static str,
    /// The items waiting, in any order (the desk sorts them).
    pub items: Vec<QueueItem>,
}

/// One item waiting in a queue.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// What the item is, as a person reads it (e.g. "申请 #12 · 某某科技有限公司").
    pub label: String,
    /// Where to act on it.
    pub href: String,
    /// Message key of the item's current state.
    pub state_key: &'static str,
    /// The deadline to act, if one applies.
    pub deadline: Option<Deadline>,
}

/// What a domain gives the desk: its queues on `today`.
pub type QueueSource =
    fn(&mut DbConnection, &Calendar, NaiveDate) -> QueryResult<Vec<QueueSection>>;

/// Every domain's queues, in the order the desk shows them.
pub const SOURCES: &[QueueSource] = &[crate::admission::queues];

/// Collects every queue, each sorted overdue first, then by deadline.
pub fn collect(
    conn: &mut DbConnection,
    cal: &Calendar,
    today: NaiveDate,
) -> QueryResult<Vec<QueueSection>> {
    let mut out = Vec::new();
    for source in SOURCES {
        for mut section in source(conn, cal, today)? {
            section
                .items
                .sort_by(|a, b| match (&a.deadline, &b.deadline) {
                    (Some(x), Some(y)) => Deadline::queue_order(x, y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                });
            out.push(section);
        }
    }
    Ok(out)
}
