//! The regulator's desk: every work queue on one page, each item with its deadline.
//!
//! Domains contribute queues through a [`QueueSource`] registered at the top level
//! ([`crate::reactions::DESK_SOURCES`]): a function that returns the domain's sections for the
//! day, so the desk imports no domain. The desk page sorts each section's items with
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

/// Collects the queues of `sources`, each sorted overdue first, then by deadline (items
/// without a deadline last).
pub fn collect_from(
    sources: &[QueueSource],
    conn: &mut DbConnection,
    cal: &Calendar,
    today: NaiveDate,
) -> QueryResult<Vec<QueueSection>> {
    let mut out = Vec::new();
    for source in sources {
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

#[cfg(test)]
mod tests {
    use diesel::Connection as _;
    use diesel::sqlite::SqliteConnection;

    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn item(label: &str, due: Option<NaiveDate>, cal: &Calendar, today: NaiveDate) -> QueueItem {
        QueueItem {
            label: label.into(),
            href: format!("/x/{label}"),
            state_key: "test.state",
            deadline: due.map(|due| cal.deadline(today, due)),
        }
    }

    fn test_source(
        _: &mut DbConnection,
        cal: &Calendar,
        today: NaiveDate,
    ) -> QueryResult<Vec<QueueSection>> {
        Ok(vec![
            QueueSection {
                title_key: "test.first",
                items: vec![
                    item("none", None, cal, today),
                    item("later", Some(d(30)), cal, today),
                    item("soon", Some(d(24)), cal, today),
                    item("late", Some(d(20)), cal, today),
                    item("later-still", Some(d(27)), cal, today),
                    item("very-late", Some(d(13)), cal, today),
                ],
            },
            QueueSection {
                title_key: "test.empty",
                items: vec![],
            },
        ])
    }

    #[test]
    fn sections_keep_their_order_and_items_are_overdue_first_then_by_date() {
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        let cal = Calendar::default();
        let sections = collect_from(&[test_source], &mut conn, &cal, d(23)).unwrap();
        assert_eq!(
            sections.iter().map(|s| s.title_key).collect::<Vec<_>>(),
            ["test.first", "test.empty"]
        );
        let labels: Vec<_> = sections[0].items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(
            labels,
            ["very-late", "late", "soon", "later-still", "later", "none"]
        );
        let late = sections[0].items[1].deadline.unwrap();
        assert!(late.overdue);
        assert_eq!(late.days_left, -1, "Friday's deadline seen on Monday");
        assert!(sections[1].items.is_empty());
    }
}
