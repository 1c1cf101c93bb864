//! Working days and the platform clock.
//!
//! Deadlines in the regulations are counted in working days (DOMAIN.md, "Requests and
//! deadlines"): Saturdays and Sundays are rest days, public holidays are rest days, and the
//! Chinese calendar also moves some weekend days to be working days (调休, make-up working days).
//! The regulator keeps the exceptions in the `calendar_days` table; everything else follows the
//! weekday rule.
//!
//! The [`Clock`] is the one source of "now" for deadlines, notices, expiry and the scheduler. It
//! reads the system time plus an offset that only tests move ([`Clock::advance`]), so a test can
//! walk past a deadline without waiting for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Utc, Weekday};
use chrono_tz::Tz;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConnection;
use crate::schema::calendar_days;

/// The platform clock: system time plus an offset that tests can move forward, and the
/// configured time zone (`time_zone`) in which dates are counted and times are shown.
#[derive(Debug, Clone)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
    zone: Tz,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(crate::config::DEFAULT_TIME_ZONE)
    }
}

impl Clock {
    /// A clock counting dates in `zone`.
    pub fn new(zone: Tz) -> Self {
        Clock {
            offset_secs: Arc::default(),
            zone,
        }
    }

    /// The current instant, UTC (as stored in timestamp columns).
    pub fn now(&self) -> NaiveDateTime {
        Utc::now().naive_utc() + Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Today's date in the configured time zone.
    pub fn today(&self) -> NaiveDate {
        self.local(self.now()).date()
    }

    /// The configured time zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// A stored (UTC) instant as the wall-clock time of the configured zone.
    pub fn local(&self, t: NaiveDateTime) -> NaiveDateTime {
        local(self.zone, t)
    }

    /// Moves the clock forward (tests and demos only: nothing in the server calls this).
    pub fn advance(&self, by: Duration) {
        self.offset_secs
            .fetch_add(by.num_seconds(), Ordering::Relaxed);
    }
}

/// A stored (UTC) instant as the wall-clock time of `zone`.
pub fn local(zone: Tz, t: NaiveDateTime) -> NaiveDateTime {
    t.and_utc().with_timezone(&zone).naive_local()
}

/// What a date in `calendar_days` is, overriding the weekday rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// A public holiday: a rest day even on a weekday.
    Holiday,
    /// A make-up working day (调休上班): a working day even on a weekend.
    Workday,
}

impl DayKind {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            DayKind::Holiday => "holiday",
            DayKind::Workday => "workday",
        }
    }

    /// Parses a stored code.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "holiday" => Some(DayKind::Holiday),
            "workday" => Some(DayKind::Workday),
            _ => None,
        }
    }
}

/// One configured exception to the weekday rule.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = calendar_days)]
pub struct CalendarDay {
    /// The date.
    pub day: NaiveDate,
    /// `holiday` or `workday`.
    pub kind: String,
    /// Its name in Chinese (e.g. 国庆节).
    pub name_zh: String,
    /// Its name in English.
    pub name_en: String,
}

impl CalendarDay {
    /// Every configured day, in date order.
    pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<CalendarDay>> {
        calendar_days::table
            .select(CalendarDay::as_select())
            .order(calendar_days::day)
            .load(conn)
    }
}

/// The most working days any computation walks; deadlines are weeks, not centuries, so a
/// larger count is a bug or hostile input and is cut off here.
pub const MAX_WORKING_DAYS: u32 = 3660;

/// The working-day calendar: the weekday rule plus the configured exceptions.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    exceptions: HashMap<NaiveDate, DayKind>,
}

impl Calendar {
    /// A calendar with the given exceptions.
    pub fn new(exceptions: impl IntoIterator<Item = (NaiveDate, DayKind)>) -> Self {
        Self {
            exceptions: exceptions.into_iter().collect(),
        }
    }

    /// The calendar as configured in the database.
    pub fn load(conn: &mut DbConnection) -> QueryResult<Self> {
        let days = CalendarDay::all(conn)?;
        Ok(Self::new(days.into_iter().filter_map(|d| {
            DayKind::parse(&d.kind).map(|k| (d.day, k))
        })))
    }

    /// Whether `day` is a working day.
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        match self.exceptions.get(&day) {
            Some(DayKind::Holiday) => false,
            Some(DayKind::Workday) => true,
            None => !matches!(day.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    /// The deadline `n` working days after `start`: the `n`-th working day strictly after it
    /// (a request received on a Friday with a 5-day limit is due the next Friday). `n` is
    /// capped at [`MAX_WORKING_DAYS`].
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut left = n.min(MAX_WORKING_DAYS);
        while left > 0 {
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days from `today` to `deadline`: the number of working days after today up to and
    /// including the deadline, 0 on the deadline itself, negative (the working days since) once
    /// it has passed.
    pub fn working_days_left(&self, today: NaiveDate, deadline: NaiveDate) -> i64 {
        let (from, to, sign) = if deadline >= today {
            (today, deadline, 1)
        } else {
            (deadline, today, -1)
        };
        let mut count = 0i64;
        let mut day = from;
        while day < to && count <= i64::from(MAX_WORKING_DAYS) {
            day = day.succ_opt().unwrap_or(to);
            if self.is_working_day(day) {
                count += 1;
            }
        }
        sign * count
    }

    /// The deadline as a queue shows it.
    pub fn deadline(&self, today: NaiveDate, due_on: NaiveDate) -> Deadline {
        let days_left = self.working_days_left(today, due_on);
        Deadline {
            due_on,
            days_left,
            overdue: today > due_on,
        }
    }
}

/// A deadline with its standing on a given day, for queues and item pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// The last day to act.
    pub due_on: NaiveDate,
    /// Working days left (negative: working days overdue).
    pub days_left: i64,
    /// Whether the deadline has passed.
    pub overdue: bool,
}

impl Deadline {
    /// Orders queue items: overdue first (most overdue first), then by date.
    pub fn queue_order(a: &Deadline, b: &Deadline) -> std::cmp::Ordering {
        b.overdue.cmp(&a.overdue).then(a.due_on.cmp(&b.due_on))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// The 2025 National Day holiday: 1–8 October off, Sunday 28 September and Saturday
    /// 11 October worked.
    fn national_day_2025() -> Calendar {
        let mut ex: Vec<_> = (1..=8)
            .map(|i| (d(2025, 10, i), DayKind::Holiday))
            .collect();
        ex.push((d(2025, 9, 28), DayKind::Workday));
        ex.push((d(2025, 10, 11), DayKind::Workday));
        Calendar::new(ex)
    }

    #[test]
    fn weekends_are_skipped() {
        let cal = Calendar::default();
        // Friday 2026-11-20 + 5 working days = Friday 2026-11-27.
        assert_eq!(cal.add_working_days(d(2026, 11, 20), 5), d(2026, 11, 27));
        // Saturday + 1 = Monday.
        assert_eq!(cal.add_working_days(d(2026, 11, 21), 1), d(2026, 11, 23));
        assert_eq!(cal.add_working_days(d(2026, 11, 20), 0), d(2026, 11, 20));
    }

    #[test]
    fn holidays_are_skipped_and_make_up_days_count() {
        let cal = national_day_2025();
        assert!(cal.is_working_day(d(2025, 9, 28)), "make-up Sunday");
        assert!(!cal.is_working_day(d(2025, 10, 1)));
        assert!(cal.is_working_day(d(2025, 10, 11)), "make-up Saturday");
        // Friday 26 Sep + 1: Sunday 28 is a make-up day.
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 1), d(2025, 9, 28));
        // Objection filed Tuesday 30 Sep, 5 working days (Jilin art. 12): 9, 10, 11 (Sat),
        // 13, 14 October.
        assert_eq!(cal.add_working_days(d(2025, 9, 30), 5), d(2025, 10, 14));
        // The same on a calendar without the holiday: 1, 2, 3, 6, 7 October.
        assert_eq!(
            Calendar::default().add_working_days(d(2025, 9, 30), 5),
            d(2025, 10, 7)
        );
    }

    #[test]
    fn days_left_counts_working_days_and_goes_negative() {
        let cal = national_day_2025();
        assert_eq!(cal.working_days_left(d(2025, 9, 30), d(2025, 10, 14)), 5);
        assert_eq!(cal.working_days_left(d(2025, 10, 14), d(2025, 10, 14)), 0);
        assert_eq!(cal.working_days_left(d(2025, 10, 15), d(2025, 10, 14)), -1);
        // Over a weekend: Friday deadline seen on Monday is 1 working day overdue.
        let plain = Calendar::default();
        assert_eq!(
            plain.working_days_left(d(2026, 11, 23), d(2026, 11, 20)),
            -1
        );
        let dl = plain.deadline(d(2026, 11, 23), d(2026, 11, 20));
        assert!(dl.overdue);
    }

    #[test]
    fn huge_counts_are_capped() {
        let cal = Calendar::default();
        let far = cal.add_working_days(d(2026, 1, 1), u32::MAX);
        assert!(far < d(2042, 1, 1));
    }

    #[test]
    fn queue_order_puts_overdue_first() {
        let today = d(2026, 11, 23);
        let cal = Calendar::default();
        let mut v = [
            cal.deadline(today, d(2026, 11, 30)),
            cal.deadline(today, d(2026, 11, 20)),
            cal.deadline(today, d(2026, 11, 24)),
        ];
        v.sort_by(Deadline::queue_order);
        assert_eq!(
            v.iter().map(|x| x.due_on).collect::<Vec<_>>(),
            [d(2026, 11, 20), d(2026, 11, 24), d(2026, 11, 30)]
        );
    }

    #[test]
    fn the_clock_moves_only_forward_by_advance() {
        let c = Clock::default();
        let a = c.today();
        c.advance(Duration::days(3));
        assert_eq!(c.today() - a, Duration::days(3));
    }
}
