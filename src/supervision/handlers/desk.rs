//! The regulator's desk page (`/regulator/desk`): every work queue with each item's state,
//! deadline and working days left; overdue items first and marked red, items due within
//! [`DUE_SOON_DAYS`] working days marked amber.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::AppState;
use crate::auth::{CurrentUser, Role};
use crate::calendar::Calendar;
use crate::errors::AppError;
use crate::supervision::desk::{QueueItem, QueueSection};
use crate::web::{Page, render};

/// Who sees the desk.
pub const READERS: &[Role] = &[Role::Regulator];

/// Items due within this many working days are marked as due soon.
pub const DUE_SOON_DAYS: i64 = 2;

/// How urgent an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// The deadline has passed.
    Overdue,
    /// Due within [`DUE_SOON_DAYS`] working days.
    DueSoon,
    /// Later, or no deadline.
    Normal,
}

impl Urgency {
    /// The urgency of a queue item.
    pub fn of(item: &QueueItem) -> Self {
        match &item.deadline {
            Some(d) if d.overdue => Urgency::Overdue,
            Some(d) if d.days_left <= DUE_SOON_DAYS => Urgency::DueSoon,
            _ => Urgency::Normal,
        }
    }

    /// The CSS name (`overdue`, `due-soon`, or empty).
    pub fn css(self) -> &'static str {
        match self {
            Urgency::Overdue => "overdue",
            Urgency::DueSoon => "due-soon",
            Urgency::Normal => "",
        }
    }
}

/// One row of a desk table.
#[derive(Debug, Clone)]
pub struct DeskRow {
    /// The item.
    pub item: QueueItem,
    /// How urgent it is.
    pub urgency: Urgency,
}

/// One queue on the desk.
#[derive(Debug, Clone)]
pub struct DeskSection {
    /// Message key of the title.
    pub title_key: &'static str,
    /// The rows, in desk order.
    pub rows: Vec<DeskRow>,
}

impl From<QueueSection> for DeskSection {
    fn from(s: QueueSection) -> Self {
        DeskSection {
            title_key: s.title_key,
            rows: s
                .items
                .into_iter()
                .map(|item| DeskRow {
                    urgency: Urgency::of(&item),
                    item,
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "supervision/desk.html")]
struct DeskPage {
    page: Page,
    today: String,
    sections: Vec<DeskSection>,
}
crate::impl_page!(DeskPage);

impl DeskPage {
    fn days_left_text(&self, row: &DeskRow) -> String {
        match &row.item.deadline {
            None => String::new(),
            Some(d) if d.days_left < 0 => self
                .page
                .t_args("desk.days_overdue", &[("n", (-d.days_left).to_string())]),
            Some(d) if d.overdue => self.page.t("desk.overdue").to_owned(),
            Some(d) => self
                .page
                .t_args("desk.days_left", &[("n", d.days_left.to_string())]),
        }
    }
}

/// `GET /regulator/desk`.
pub async fn desk(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(READERS)?;
    let today = state.clock.today();
    let sections = crate::web::db(&state, move |conn| {
        let cal = Calendar::load(conn)?;
        Ok(crate::reactions::desk_queues(conn, &cal, today)?)
    })
    .await?;
    render(&DeskPage {
        page,
        today: today.to_string(),
        sections: sections.into_iter().map(DeskSection::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::i18n::Lang;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn page() -> Page {
        Page {
            lang: Lang::En,
            user: None,
            nav: Vec::new(),
            csrf: String::new(),
            flash: None,
            path: "/regulator/desk".into(),
            zone: crate::config::DEFAULT_TIME_ZONE,
            refused: None,
        }
    }

    fn item(label: &str, due: Option<NaiveDate>) -> QueueItem {
        let cal = Calendar::default();
        QueueItem {
            label: label.into(),
            href: format!("/items/{label}"),
            state_key: "desk.item",
            deadline: due.map(|due| cal.deadline(d(23), due)),
        }
    }

    #[test]
    fn urgency_marks_overdue_and_items_due_within_two_working_days() {
        assert_eq!(Urgency::of(&item("a", Some(d(20)))), Urgency::Overdue);
        assert_eq!(Urgency::of(&item("b", Some(d(23)))), Urgency::DueSoon);
        assert_eq!(Urgency::of(&item("c", Some(d(25)))), Urgency::DueSoon);
        assert_eq!(Urgency::of(&item("d", Some(d(26)))), Urgency::Normal);
        assert_eq!(Urgency::of(&item("e", None)), Urgency::Normal);
    }

    #[test]
    fn the_page_shows_badges_days_left_and_empty_sections() {
        let html = DeskPage {
            page: page(),
            today: "2026-11-23".into(),
            sections: vec![
                DeskSection::from(QueueSection {
                    title_key: "desk.title",
                    items: vec![
                        item("late-one", Some(d(18))),
                        item("soon-one", Some(d(24))),
                        item("later-one", Some(d(30))),
                        item("open-one", None),
                    ],
                }),
                DeskSection::from(QueueSection {
                    title_key: "desk.deadline",
                    items: vec![],
                }),
            ],
        }
        .render()
        .unwrap();
        let late = html.find("late-one").unwrap();
        assert!(late < html.find("soon-one").unwrap());
        assert!(html.contains("row-overdue"));
        assert!(html.contains("<span class=\"badge badge-overdue\">Overdue</span>"));
        assert!(html.contains("working days overdue: 3"), "{html}");
        assert!(html.contains("<span class=\"badge badge-due-soon\">Due soon</span>"));
        assert!(html.contains("working days left: 1"));
        assert!(html.contains("working days left: 5"));
        assert!(html.contains("No deadline"));
        assert!(html.contains("Nothing is waiting in this queue."));
        assert!(!html.contains("No work queue has anything for you yet."));
    }
}
