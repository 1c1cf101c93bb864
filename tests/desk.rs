//! The regulator's desk and working-day calendar over HTTP: holidays and make-up days entered
//! through the calendar page change the deadlines the platform computes; bad input is re-shown
//! with a message; only the regulator gets in.

mod common;

use chrono::NaiveDate;
use common::{DEMO_PASSWORD, TestApp};
use dataop::calendar::Calendar;
use dataop::schema::audit_log;
use diesel::prelude::*;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// The counting tool's answer for 5 working days after Wednesday 30 September 2026.
fn five_days_after_sep_30(app: &TestApp, c: &reqwest::blocking::Client) -> String {
    let (status, html) = app.get_text(c, "/regulator/calendar?year=2026&from=2026-09-30&days=5");
    assert_eq!(status, 200);
    let i = html.find("preview-result").expect("a result");
    let rest = &html[i..];
    rest[..rest.find("</p>").unwrap()].to_owned()
}

fn audited(app: &TestApp, action: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut app.conn())
        .unwrap()
}

#[test]
fn holidays_and_make_up_days_entered_in_the_ui_change_deadlines() {
    let app = TestApp::builder().demo().start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let page = "/regulator/calendar?year=2026";

    // Without holidays: 1, 2, 5, 6, 7 October.
    assert!(five_days_after_sep_30(&app, &reg).contains("后为 2026-10-07"));

    // The National Day week as holidays, 1–8 October.
    let r = app.post_form_from(
        &reg,
        page,
        "/regulator/calendar/range",
        &[
            ("from", "2026-10-01"),
            ("to", "2026-10-08"),
            ("name_zh", "国庆节"),
            ("name_en", "National Day"),
        ],
    );
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap());
    assert_eq!(r.headers()["location"], page);
    // 9 (Friday), 12, 13, 14, 15 October.
    assert!(five_days_after_sep_30(&app, &reg).contains("后为 2026-10-15"));

    // Saturday 10 October is worked (调休).
    let r = app.post_form_from(
        &reg,
        page,
        "/regulator/calendar/days",
        &[
            ("day", "2026-10-10"),
            ("kind", "workday"),
            ("name_zh", "国庆节调休上班"),
            ("name_en", "National Day make-up working day"),
        ],
    );
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap());
    // 9, 10 (Saturday, worked), 12, 13, 14 October.
    let answer = five_days_after_sep_30(&app, &reg);
    assert!(answer.contains("后为 2026-10-14"), "{answer}");
    let cal = Calendar::load(&mut app.conn()).unwrap();
    assert_eq!(cal.add_working_days(d(2026, 9, 30), 5), d(2026, 10, 14));

    let (_, html) = app.get_text(&reg, page);
    assert_eq!(html.matches("class=\"calendar-row\"").count(), 9);
    assert!(html.contains("国庆节调休上班"), "{html}");
    assert!(html.contains("National Day make-up working day"));
    assert!(
        html.contains("title=\"国庆节\">1</td>"),
        "the month view marks it: {html}"
    );
    assert!(html.contains("class=\"cal-holiday\""));
    assert!(html.contains("class=\"cal-workday\" title=\"国庆节调休上班\">10</td>"));
    assert!(html.contains("class=\"cal-weekend\">11</td>"));
    assert_eq!(audited(&app, "calendar.add_range"), 1);
    assert_eq!(audited(&app, "calendar.add_day"), 1);

    // Removing the make-up day brings the deadline back.
    let r = app.post_form_from(
        &reg,
        page,
        "/regulator/calendar/days/2026-10-10/delete",
        &[],
    );
    assert_eq!(r.status().as_u16(), 303);
    assert!(five_days_after_sep_30(&app, &reg).contains("后为 2026-10-15"));
    assert_eq!(audited(&app, "calendar.remove_day"), 1);
    let r = app.post_form_from(
        &reg,
        page,
        "/regulator/calendar/days/2026-10-10/delete",
        &[],
    );
    assert_eq!(r.status().as_u16(), 404, "it is gone");
}

#[test]
fn bad_calendar_input_is_re_shown_with_a_message() {
    let app = TestApp::builder().demo().start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let page = "/regulator/calendar";

    let r = app.post_form_from(
        &reg,
        page,
        "/regulator/calendar/days",
        &[
            ("day", "2026-10-12"),
            ("kind", "workday"),
            ("name_zh", "周一调休"),
            ("name_en", "Monday make-up"),
        ],
    );
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().unwrap();
    assert!(html.contains("调休上班日必须是周六或周日"), "{html}");
    assert!(
        html.contains("value=\"周一调休\""),
        "what was typed is kept"
    );
    assert!(html.contains("value=\"2026-10-12\""));

    let holiday = [
        ("day", "2026-10-01"),
        ("kind", "holiday"),
        ("name_zh", "国庆节"),
        ("name_en", "National Day"),
    ];
    let r = app.post_form_from(&reg, page, "/regulator/calendar/days", &holiday);
    assert_eq!(r.status().as_u16(), 303);
    let r = app.post_form_from(&reg, page, "/regulator/calendar/days", &holiday);
    assert_eq!(r.status().as_u16(), 422, "the same day twice");
    assert!(r.text().unwrap().contains("2026-10-01 已在工作日历中"));

    let r = app.post_form_from(
        &reg,
        page,
        "/regulator/calendar/range",
        &[
            ("from", "2026-09-28"),
            ("to", "2026-10-03"),
            ("name_zh", "国庆节"),
            ("name_en", "National Day"),
        ],
    );
    assert_eq!(
        r.status().as_u16(),
        422,
        "a range overlapping a configured day"
    );
    assert!(r.text().unwrap().contains("2026-10-01 已在工作日历中"));
    for (from, to, message) in [
        ("2026-10-07", "2026-10-01", "结束日不能早于起始日"),
        ("2026-01-01", "2026-12-31", "一个假期最多 31 天"),
        (
            "2026-02-30",
            "2026-03-01",
            "请输入 2000 年至 2100 年之间的有效日期",
        ),
    ] {
        let r = app.post_form_from(
            &reg,
            page,
            "/regulator/calendar/range",
            &[
                ("from", from),
                ("to", to),
                ("name_zh", "春节"),
                ("name_en", "Spring Festival"),
            ],
        );
        assert_eq!(r.status().as_u16(), 422);
        let html = r.text().unwrap();
        assert!(html.contains(message), "{from}..{to}: {html}");
        assert!(html.contains("value=\"Spring Festival\""));
    }
    let rows: i64 = dataop::schema::calendar_days::table
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(rows, 1, "nothing half-written");

    let (status, html) = app.get_text(&reg, "/regulator/calendar?from=2026-10-01&days=9999");
    assert_eq!(status, 200);
    assert!(html.contains("请输入 0 至 366 之间的工作日数"));

    let r = app.post_form(
        &reg,
        "/regulator/calendar/days",
        &[
            ("day", "2026-05-01"),
            ("kind", "holiday"),
            ("name_zh", "劳动节"),
            ("name_en", "Labour Day"),
        ],
    );
    assert_eq!(r.status().as_u16(), 403, "no CSRF token");
}

#[test]
fn only_the_regulator_sees_the_desk_and_edits_the_calendar() {
    let app = TestApp::builder().demo().start();
    let reg = app.logged_in("regulator", DEMO_PASSWORD);
    let (status, html) = app.get_text(&reg, "/regulator/desk");
    assert_eq!(status, 200);
    assert!(html.contains("主管部门工作台"), "{html}");
    assert!(
        html.contains("目前没有待办队列") || html.contains("该队列中没有待办事项"),
        "with nothing waiting the desk says so: {html}"
    );
    assert!(
        html.contains("href=\"/regulator/desk\""),
        "the nav links the desk"
    );
    assert!(html.contains("href=\"/regulator/calendar\""));

    for user in ["alpha", "platform", "provider", "expert"] {
        let c = app.logged_in(user, DEMO_PASSWORD);
        for path in ["/regulator/desk", "/regulator/calendar"] {
            assert_eq!(app.get_text(&c, path).0, 403, "{user} {path}");
        }
        let (_, home) = app.get_text(&c, "/");
        assert!(!home.contains("href=\"/regulator/desk\""), "{user}");
        let r = app.post_form_from(
            &c,
            "/",
            "/regulator/calendar/days",
            &[
                ("day", "2026-05-01"),
                ("kind", "holiday"),
                ("name_zh", "劳动节"),
                ("name_en", "Labour Day"),
            ],
        );
        assert_eq!(r.status().as_u16(), 403, "{user}");
    }
    let anonymous = app.client();
    let r = app.get(&anonymous, "/regulator/desk");
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}
