//! The regulator's working-day calendar: the public holidays and make-up working days of a
//! year (add one, add a range of holidays, remove one; each audited), a month view marking
//! weekends, holidays and make-up days, and a tool that counts N working days from a date.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{Datelike, NaiveDate, NaiveDateTime, Weekday};
use diesel::prelude::*;
use serde::Deserialize;

use crate::AppState;
use crate::accounts::handlers::session::CsrfForm;
use crate::auth::{CurrentUser, Role};
use crate::calendar::{Calendar, CalendarDay, DayKind};
use crate::db::{self, DbConnection};
use crate::errors::AppError;
use crate::i18n::Lang;
use crate::schema::calendar_days;
use crate::supervision::audit;
use crate::web::{Page, redirect_with_flash, render_status};

/// Who may edit the calendar.
pub const EDITORS: &[Role] = &[Role::Regulator];

/// Longest holiday name, in characters.
pub const MAX_NAME: usize = 100;

/// Most days one range may add.
pub const MAX_RANGE_DAYS: i64 = 31;

/// Most working days the preview counts.
pub const MAX_PREVIEW_DAYS: u32 = 366;

/// The years the calendar accepts.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

fn parse_date(s: &str) -> Result<NaiveDate, &'static str> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| YEARS.contains(&d.year()))
        .ok_or("calendar.err_date")
}

fn parse_names(zh: &str, en: &str) -> Result<(String, String), &'static str> {
    let (zh, en) = (zh.trim(), en.trim());
    if zh.is_empty() || en.is_empty() {
        return Err("calendar.err_name_required");
    }
    if zh.chars().count() > MAX_NAME || en.chars().count() > MAX_NAME {
        return Err("calendar.err_name_long");
    }
    Ok((zh.to_owned(), en.to_owned()))
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The form adding one day.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DayForm {
    /// CSRF token.
    pub csrf: String,
    /// The date, `YYYY-MM-DD`.
    pub day: String,
    /// `holiday` or `workday`.
    pub kind: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

impl DayForm {
    /// The day to store, or the message key of the first problem.
    pub fn validate(&self) -> Result<(NaiveDate, DayKind, String, String), &'static str> {
        let day = parse_date(&self.day)?;
        let kind = DayKind::parse(self.kind.trim()).ok_or("calendar.err_kind")?;
        if kind == DayKind::Workday && !is_weekend(day) {
            return Err("calendar.err_workday_weekday");
        }
        let (zh, en) = parse_names(&self.name_zh, &self.name_en)?;
        Ok((day, kind, zh, en))
    }
}

/// The form adding a range of holidays.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RangeForm {
    /// CSRF token.
    pub csrf: String,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, `YYYY-MM-DD`, inclusive.
    pub to: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

impl RangeForm {
    /// The days to store as holidays, or the message key of the first problem.
    pub fn validate(&self) -> Result<(Vec<NaiveDate>, String, String), &'static str> {
        let from = parse_date(&self.from)?;
        let to = parse_date(&self.to)?;
        if to < from {
            return Err("calendar.err_range_order");
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err("calendar.err_range_long");
        }
        let (zh, en) = parse_names(&self.name_zh, &self.name_en)?;
        let days = from.iter_days().take_while(|d| *d <= to).collect();
        Ok((days, zh, en))
    }
}

/// The working-day counting tool (query of the calendar page).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CalendarQuery {
    /// The year shown (default: this year).
    pub year: Option<i32>,
    /// Count from this date.
    pub from: String,
    /// This many working days.
    pub days: String,
}

/// The answer of the counting tool.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The start date.
    pub from: NaiveDate,
    /// Working days counted.
    pub days: u32,
    /// The resulting date.
    pub due_on: NaiveDate,
}

/// One configured day in the list.
#[derive(Debug, Clone)]
pub struct DayRow {
    /// The date, `YYYY-MM-DD`.
    pub day: String,
    /// Message key of its weekday.
    pub weekday_key: String,
    /// `holiday` or `workday`.
    pub kind: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

/// One day of the month view.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Day of the month.
    pub day: u32,
    /// CSS classes (`cal-weekend`, `cal-holiday`, `cal-workday`, `cal-today`).
    pub class: String,
    /// The holiday's name in the page language, if any.
    pub title: String,
}

/// One month of the month view: weeks of seven cells, Monday first.
#[derive(Debug, Clone)]
pub struct MonthView {
    /// Message key of the month's name.
    pub title_key: String,
    /// The weeks; `None` pads days of the neighbouring months.
    pub weeks: Vec<Vec<Option<Cell>>>,
}

fn weekday_key(d: NaiveDate) -> String {
    format!("calendar.wd_{}", d.weekday().number_from_monday())
}

/// The month view of `year`.
pub fn months(
    year: i32,
    days: &[CalendarDay],
    cal: &Calendar,
    today: NaiveDate,
    lang: Lang,
) -> Vec<MonthView> {
    (1..=12)
        .filter_map(|m| {
            let first = NaiveDate::from_ymd_opt(year, m, 1)?;
            let mut weeks = Vec::new();
            let mut week: Vec<Option<Cell>> =
                vec![None; first.weekday().num_days_from_monday() as usize];
            for d in first.iter_days().take_while(|d| d.month() == m) {
                let configured = days.iter().find(|c| c.day == d);
                let mut class = match configured.and_then(|c| DayKind::parse(&c.kind)) {
                    Some(DayKind::Holiday) => "cal-holiday",
                    Some(DayKind::Workday) => "cal-workday",
                    None if !cal.is_working_day(d) => "cal-weekend",
                    None => "",
                }
                .to_owned();
                if d == today {
                    class = format!("{class} cal-today").trim_start().to_owned();
                }
                let title = configured
                    .map(|c| match lang {
                        Lang::Zh => c.name_zh.clone(),
                        Lang::En => c.name_en.clone(),
                    })
                    .unwrap_or_default();
                week.push(Some(Cell {
                    day: d.day(),
                    class,
                    title,
                }));
                if week.len() == 7 {
                    weeks.push(std::mem::take(&mut week));
                }
            }
            if !week.is_empty() {
                week.resize(7, None);
                weeks.push(week);
            }
            Some(MonthView {
                title_key: format!("calendar.month_{m}"),
                weeks,
            })
        })
        .collect()
}

#[derive(Template)]
#[template(path = "calendar/index.html")]
struct CalendarPage {
    page: Page,
    year: i32,
    rows: Vec<DayRow>,
    months: Vec<MonthView>,
    weekday_keys: Vec<String>,
    add: DayForm,
    add_error: Option<String>,
    range: RangeForm,
    range_error: Option<String>,
    query: CalendarQuery,
    preview: Option<Preview>,
    preview_error: Option<&'static str>,
}
crate::impl_page!(CalendarPage);

impl CalendarPage {
    fn preview_text(&self, p: &Preview) -> String {
        self.page.t_args(
            "calendar.preview_result",
            &[
                ("from", p.from.to_string()),
                ("days", p.days.to_string()),
                ("due", p.due_on.to_string()),
                ("weekday", self.page.t(&weekday_key(p.due_on)).to_owned()),
            ],
        )
    }
}

/// What a page render needs besides the data: the forms as typed and their messages.
#[derive(Default)]
struct Forms {
    add: DayForm,
    add_error: Option<&'static str>,
    add_date: String,
    range: RangeForm,
    range_error: Option<&'static str>,
    range_date: String,
}

async fn show(
    page: Page,
    state: &AppState,
    status: StatusCode,
    year: i32,
    query: CalendarQuery,
    forms: Forms,
) -> Result<HttpResponse, AppError> {
    let (all, cal) = crate::web::db(state, |conn| {
        let all = CalendarDay::all(conn)?;
        let cal = Calendar::load(conn)?;
        Ok((all, cal))
    })
    .await?;
    let today = state.clock.today();
    let in_year: Vec<CalendarDay> = all.into_iter().filter(|d| d.day.year() == year).collect();
    let rows = in_year
        .iter()
        .map(|d| DayRow {
            day: d.day.to_string(),
            weekday_key: weekday_key(d.day),
            kind: d.kind.clone(),
            name_zh: d.name_zh.clone(),
            name_en: d.name_en.clone(),
        })
        .collect();
    let months = months(year, &in_year, &cal, today, page.lang);
    let (mut preview, mut preview_error) = (None, None);
    if !query.from.trim().is_empty() || !query.days.trim().is_empty() {
        match (
            parse_date(&query.from),
            query
                .days
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_PREVIEW_DAYS),
        ) {
            (Err(key), _) => preview_error = Some(key),
            (_, None) => preview_error = Some("calendar.err_days"),
            (Ok(from), Some(days)) => {
                preview = Some(Preview {
                    from,
                    days,
                    due_on: cal.add_working_days(from, days),
                })
            }
        }
    }
    let message = |key: Option<&str>, date: String| key.map(|k| page.t_args(k, &[("date", date)]));
    let add_error = message(forms.add_error, forms.add_date);
    let range_error = message(forms.range_error, forms.range_date);
    render_status(
        status,
        &CalendarPage {
            page,
            year,
            rows,
            months,
            weekday_keys: (1..=7).map(|i| format!("calendar.wd_{i}")).collect(),
            add: forms.add,
            add_error,
            range: forms.range,
            range_error,
            query,
            preview,
            preview_error,
        },
    )
}

fn year_or_this(state: &AppState, year: Option<i32>) -> i32 {
    year.filter(|y| YEARS.contains(y))
        .unwrap_or_else(|| state.clock.today().year())
}

/// `GET /regulator/calendar?year=&from=&days=`.
pub async fn calendar(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    q: crate::input::Query<CalendarQuery>,
) -> Result<HttpResponse, AppError> {
    user.require(EDITORS)?;
    let q = q.into_inner();
    let year = year_or_this(&state, q.year);
    show(page, &state, StatusCode::OK, year, q, Forms::default()).await
}

#[derive(Insertable)]
#[diesel(table_name = calendar_days)]
struct NewDay<'a> {
    day: NaiveDate,
    kind: &'a str,
    name_zh: &'a str,
    name_en: &'a str,
    created_by: Option<i64>,
    created_at: chrono::NaiveDateTime,
}

/// The first of `days` already configured.
fn first_taken(conn: &mut DbConnection, days: &[NaiveDate]) -> QueryResult<Option<NaiveDate>> {
    calendar_days::table
        .filter(calendar_days::day.eq_any(days))
        .order(calendar_days::day)
        .select(calendar_days::day)
        .first(conn)
        .optional()
}

/// Why days could not be added: one is configured already, or the database failed.
enum Refused {
    Exists(NaiveDate),
    Db(AppError),
}

impl From<diesel::result::Error> for Refused {
    fn from(e: diesel::result::Error) -> Self {
        Refused::Db(e.into())
    }
}

impl From<AppError> for Refused {
    fn from(e: AppError) -> Self {
        Refused::Db(e)
    }
}

fn insert_days(
    conn: &mut DbConnection,
    user: &CurrentUser,
    days: &[NaiveDate],
    kind: DayKind,
    zh: &str,
    en: &str,
    now: NaiveDateTime,
) -> Result<(), Refused> {
    db::write_transaction(conn, |conn| {
        if let Some(d) = first_taken(conn, days)? {
            return Err(Refused::Exists(d));
        }
        for d in days {
            diesel::insert_into(calendar_days::table)
                .values(NewDay {
                    day: *d,
                    kind: kind.as_str(),
                    name_zh: zh,
                    name_en: en,
                    created_by: Some(user.id),
                    created_at: now,
                })
                .execute(conn)?;
        }
        let (action, object_id) = match days {
            [one] => ("calendar.add_day", one.to_string()),
            [first, .., last] => ("calendar.add_range", format!("{first}..{last}")),
            [] => return Ok(()),
        };
        audit::record(
            conn,
            &user.actor(),
            action,
            "calendar_day",
            &object_id,
            serde_json::json!({
                "kind": kind.as_str(), "name_zh": zh, "name_en": en, "days": days.len()
            }),
        )?;
        Ok(())
    })
}

fn back_to(year: i32) -> String {
    format!("/regulator/calendar?year={year}")
}

/// `POST /regulator/calendar/days`: adds one holiday or make-up working day.
pub async fn add_day(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::Form<DayForm>,
) -> Result<HttpResponse, AppError> {
    user.require(EDITORS)?;
    let form = form.into_inner();
    page.check_csrf(&form.csrf)?;
    let reshow = |page, year, key, date: String, form| {
        let state = state.clone();
        async move {
            let forms = Forms {
                add: form,
                add_error: Some(key),
                add_date: date,
                ..Forms::default()
            };
            show(
                page,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                year,
                CalendarQuery::default(),
                forms,
            )
            .await
        }
    };
    let this_year = year_or_this(&state, None);
    let (day, kind, zh, en) = match form.validate() {
        Ok(v) => v,
        Err(key) => return reshow(page, this_year, key, String::new(), form).await,
    };
    let u = user.clone();
    let now = crate::db::to_micros(state.clock.now());
    let result = crate::web::db(&state, move |conn| {
        Ok(insert_days(conn, &u, &[day], kind, &zh, &en, now))
    })
    .await?;
    match result {
        Ok(()) => Ok(redirect_with_flash(
            &back_to(day.year()),
            "ok",
            "calendar.flash_added",
        )),
        Err(Refused::Exists(d)) => {
            reshow(page, day.year(), "calendar.err_exists", d.to_string(), form).await
        }
        Err(Refused::Db(e)) => Err(e),
    }
}

/// `POST /regulator/calendar/range`: adds every day from `from` to `to` as a holiday.
pub async fn add_range(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::Form<RangeForm>,
) -> Result<HttpResponse, AppError> {
    user.require(EDITORS)?;
    let form = form.into_inner();
    page.check_csrf(&form.csrf)?;
    let reshow = |page, year, key, date: String, form| {
        let state = state.clone();
        async move {
            let forms = Forms {
                range: form,
                range_error: Some(key),
                range_date: date,
                ..Forms::default()
            };
            show(
                page,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                year,
                CalendarQuery::default(),
                forms,
            )
            .await
        }
    };
    let this_year = year_or_this(&state, None);
    let (days, zh, en) = match form.validate() {
        Ok(v) => v,
        Err(key) => return reshow(page, this_year, key, String::new(), form).await,
    };
    let year = days.first().map_or(this_year, |d| d.year());
    let u = user.clone();
    let now = crate::db::to_micros(state.clock.now());
    let result = crate::web::db(&state, move |conn| {
        Ok(insert_days(
            conn,
            &u,
            &days,
            DayKind::Holiday,
            &zh,
            &en,
            now,
        ))
    })
    .await?;
    match result {
        Ok(()) => Ok(redirect_with_flash(
            &back_to(year),
            "ok",
            "calendar.flash_range_added",
        )),
        Err(Refused::Exists(d)) => {
            reshow(page, year, "calendar.err_exists", d.to_string(), form).await
        }
        Err(Refused::Db(e)) => Err(e),
    }
}

/// `POST /regulator/calendar/days/{day}/delete`: removes a configured day.
pub async fn remove_day(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    user.require(EDITORS)?;
    page.check_csrf(form.csrf())?;
    let day = parse_date(&path.into_inner()).map_err(|_| AppError::not_found())?;
    crate::web::db(&state, move |conn| {
        db::write_transaction(conn, |conn| {
            let old: CalendarDay = calendar_days::table
                .find(day)
                .select(CalendarDay::as_select())
                .first(conn)?;
            diesel::delete(calendar_days::table.find(day)).execute(conn)?;
            audit::record(
                conn,
                &user.actor(),
                "calendar.remove_day",
                "calendar_day",
                &day.to_string(),
                serde_json::json!({
                    "kind": old.kind, "name_zh": old.name_zh, "name_en": old.name_en
                }),
            )?;
            Ok::<_, AppError>(())
        })
    })
    .await?;
    Ok(redirect_with_flash(
        &back_to(day.year()),
        "ok",
        "calendar.flash_removed",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn day_form(day: &str, kind: &str, zh: &str, en: &str) -> DayForm {
        DayForm {
            csrf: String::new(),
            day: day.into(),
            kind: kind.into(),
            name_zh: zh.into(),
            name_en: en.into(),
        }
    }

    #[test]
    fn day_form_validation() {
        assert_eq!(
            day_form("2026-10-01", "holiday", " 国庆节 ", "National Day").validate(),
            Ok((
                d(2026, 10, 1),
                DayKind::Holiday,
                "国庆节".into(),
                "National Day".into()
            ))
        );
        let bad = [
            (
                day_form("2026-13-01", "holiday", "a", "b"),
                "calendar.err_date",
            ),
            (
                day_form("1999-01-01", "holiday", "a", "b"),
                "calendar.err_date",
            ),
            (
                day_form("2026-10-01", "rest", "a", "b"),
                "calendar.err_kind",
            ),
            (
                day_form("2026-10-01", "workday", "a", "b"),
                "calendar.err_workday_weekday",
            ),
            (
                day_form("2026-10-01", "holiday", "", "b"),
                "calendar.err_name_required",
            ),
            (
                day_form("2026-10-01", "holiday", &"长".repeat(101), "b"),
                "calendar.err_name_long",
            ),
        ];
        for (form, key) in bad {
            assert_eq!(form.validate().map(|_| ()), Err(key), "{form:?}");
        }
        assert!(
            day_form("2026-09-27", "workday", "国庆调休", "National Day make-up")
                .validate()
                .is_ok(),
            "a make-up working day on a Sunday"
        );
    }

    #[test]
    fn range_form_validation() {
        let f = |from: &str, to: &str| RangeForm {
            csrf: String::new(),
            from: from.into(),
            to: to.into(),
            name_zh: "国庆节".into(),
            name_en: "National Day".into(),
        };
        let (days, _, _) = f("2026-10-01", "2026-10-07").validate().unwrap();
        assert_eq!(days.len(), 7);
        assert_eq!(days[6], d(2026, 10, 7));
        assert_eq!(
            f("2026-10-07", "2026-10-01").validate().map(|_| ()),
            Err("calendar.err_range_order")
        );
        assert_eq!(
            f("2026-01-01", "2026-03-01").validate().map(|_| ()),
            Err("calendar.err_range_long")
        );
        assert_eq!(
            f("2026-10-01", "x").validate().map(|_| ()),
            Err("calendar.err_date")
        );
    }

    #[test]
    fn month_view_marks_weekends_holidays_and_make_up_days() {
        let days = vec![
            CalendarDay {
                day: d(2026, 10, 1),
                kind: "holiday".into(),
                name_zh: "国庆节".into(),
                name_en: "National Day".into(),
            },
            CalendarDay {
                day: d(2026, 10, 10),
                kind: "workday".into(),
                name_zh: "调休".into(),
                name_en: "Make-up day".into(),
            },
        ];
        let cal = Calendar::new([
            (d(2026, 10, 1), DayKind::Holiday),
            (d(2026, 10, 10), DayKind::Workday),
        ]);
        let m = months(2026, &days, &cal, d(2026, 10, 2), Lang::En);
        assert_eq!(m.len(), 12);
        let oct = &m[9];
        assert_eq!(oct.title_key, "calendar.month_10");
        // 1 October 2026 is a Thursday: three blank cells first.
        assert!(oct.weeks[0][..3].iter().all(Option::is_none));
        let cell = |n: u32| {
            oct.weeks
                .iter()
                .flatten()
                .flatten()
                .find(|c| c.day == n)
                .unwrap()
                .clone()
        };
        assert_eq!(cell(1).class, "cal-holiday");
        assert_eq!(cell(1).title, "National Day");
        assert_eq!(cell(2).class, "cal-today");
        assert_eq!(cell(4).class, "cal-weekend");
        assert_eq!(cell(10).class, "cal-workday");
        assert!(oct.weeks.iter().all(|w| w.len() == 7));
    }
}
