//! Public notice (公开结果): approved applications are listed publicly for the notice period;
//! anyone may file an objection (with an arithmetic check signed by the server, length limits
//! and a per-address rate limit); the regulator dismisses or upholds each objection within
//! `objection_days` working days.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use sha2::Sha256;

use super::applications::{DeadlineView, deadline_view};
use super::{clock, require_regulator};
use crate::AppState;
use crate::admission::forms::{self, ObjectionForm, Pairs};
use crate::admission::machine::{ApplicationState, ObjectionAction};
use crate::admission::model::{self, Application};
use crate::admission::ops::{self, NewObjection};
use crate::auth::CurrentUser;
use crate::calendar::Calendar;
use crate::errors::AppError;
use crate::web::{Page, db, redirect_with_flash, render, render_status};

/// How long an arithmetic check stays valid, in seconds.
pub const CHECK_TTL_SECS: i64 = 3600;

/// An application on the public notice page.
#[derive(Debug, Clone)]
pub struct NoticeView {
    /// Application id.
    pub id: i64,
    /// Organisation.
    pub org: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Call title.
    pub call: String,
    /// Dataset titles.
    pub datasets: Vec<String>,
    /// Scenario.
    pub scenario: String,
    /// Last day of the notice.
    pub ends: Option<DeadlineView>,
    /// Whether objections are taken today.
    pub running: bool,
}

fn notice_view(
    conn: &mut crate::db::DbConnection,
    page: &Page,
    cal: &Calendar,
    today: chrono::NaiveDate,
    a: &Application,
) -> Result<NoticeView, AppError> {
    let call = model::find_call(conn, a.call_id)?
        .map(|c| c.title(page.lang).to_owned())
        .unwrap_or_default();
    let datasets = model::requested_datasets(conn, a.id)?
        .iter()
        .map(|(d, _)| d.title(page.lang).to_owned())
        .collect();
    let running =
        a.state == ApplicationState::Notice && a.notice_ends_on.is_some_and(|d| today <= d);
    Ok(NoticeView {
        id: a.id,
        org: a.org_name.clone(),
        credit_code: a.credit_code.clone(),
        call,
        datasets,
        scenario: a.scenario.clone(),
        ends: a
            .notice_ends_on
            .filter(|_| running)
            .map(|d| deadline_view(page, cal.deadline(today, d))),
        running,
    })
}

#[derive(Template)]
#[template(path = "admission/notices.html")]
struct NoticesPage {
    page: Page,
    running: Vec<NoticeView>,
    admitted: Vec<NoticeView>,
}
crate::impl_page!(NoticesPage);

/// `GET /notices`: applications under public notice, and the admitted operators.
pub async fn list(page: Page, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let today = state.clock.today();
    let p = page.clone();
    let (running, admitted) = db(&state, move |conn| {
        let cal = Calendar::load(conn)?;
        let mut running = Vec::new();
        for a in model::applications_in(conn, &[ApplicationState::Notice])? {
            running.push(notice_view(conn, &p, &cal, today, &a)?);
        }
        let mut admitted = Vec::new();
        for a in model::applications_in(conn, &[ApplicationState::Admitted])? {
            admitted.push(notice_view(conn, &p, &cal, today, &a)?);
        }
        Ok((running, admitted))
    })
    .await?;
    render(&NoticesPage {
        page,
        running,
        admitted,
    })
}

/// A signed arithmetic check: the question shown and the token posted back.
#[derive(Debug, Clone)]
pub struct Check {
    /// "3 + 4".
    pub question: String,
    /// `expires.nonce.mac` where mac = HMAC(key, "objection|expires|nonce|answer").
    pub token: String,
}

fn check_mac(key: &[u8], expires: i64, nonce: &str, answer: i64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key");
    mac.update(format!("objection|{expires}|{nonce}|{answer}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A new check valid for [`CHECK_TTL_SECS`] from `now`.
pub fn new_check(key: &[u8], now: NaiveDateTime) -> Check {
    let mut rng = rand::rng();
    let a: i64 = rng.random_range(1..=9);
    let b: i64 = rng.random_range(1..=9);
    let nonce = format!("{:016x}", rng.random::<u64>());
    let expires = now.and_utc().timestamp() + CHECK_TTL_SECS;
    Check {
        question: format!("{a} + {b}"),
        token: format!(
            "{expires}.{nonce}.{}",
            check_mac(key, expires, &nonce, a + b)
        ),
    }
}

/// Whether `answer` answers the check `token` and the token has not expired.
pub fn verify_check(key: &[u8], now: NaiveDateTime, token: &str, answer: &str) -> bool {
    let mut parts = token.splitn(3, '.');
    let (Some(exp), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(exp), Ok(answer)) = (exp.parse::<i64>(), answer.trim().parse::<i64>()) else {
        return false;
    };
    exp >= now.and_utc().timestamp()
        && nonce.len() <= 32
        && crate::auth::constant_time_eq(&check_mac(key, exp, nonce, answer), mac)
}

#[derive(Template)]
#[template(path = "admission/notice.html")]
struct NoticePage {
    page: Page,
    item: NoticeView,
    check: Check,
    form: ObjectionForm,
    error: Option<String>,
}
crate::impl_page!(NoticePage);

async fn notice_page(
    state: &AppState,
    page: Page,
    id: i64,
    form: ObjectionForm,
    error: Option<String>,
) -> Result<NoticePage, AppError> {
    let today = state.clock.today();
    let p = page.clone();
    let item = db(state, move |conn| {
        let a = model::find_application(conn, id)?
            .filter(|a| {
                matches!(
                    a.state,
                    ApplicationState::Notice | ApplicationState::Admitted
                )
            })
            .ok_or_else(AppError::not_found)?;
        let cal = Calendar::load(conn)?;
        notice_view(conn, &p, &cal, today, &a)
    })
    .await?;
    Ok(NoticePage {
        page,
        item,
        check: new_check(&state.secrets.session_key, state.clock.now()),
        form,
        error,
    })
}

/// `GET /notices/{id}`: one application under notice, with the objection form.
pub async fn show(
    page: Page,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    render(
        &notice_page(
            &state,
            page,
            path.into_inner(),
            ObjectionForm::default(),
            None,
        )
        .await?,
    )
}

/// `POST /notices/{id}/objections` (`name`, `contact`, `grounds`, `check`, `answer`): files an
/// objection while the notice runs; the regulators are emailed.
pub async fn object(
    req: HttpRequest,
    page: Page,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::FormAsTyped<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (pairs, input_problem) = form.into_parts();
    let pairs = Pairs(pairs);
    page.check_csrf(&pairs.get("csrf"))?;
    let form = ObjectionForm::from_pairs(&pairs);
    let checked = if let Some(p) = input_problem {
        Err(p.message(page.lang))
    } else if !verify_check(
        &state.secrets.session_key,
        state.clock.now(),
        &pairs.get("check"),
        &pairs.get("answer"),
    ) {
        Err(page.t("admission.err_check").to_owned())
    } else {
        form.validate().map_err(|key| page.t(key).to_owned())
    };
    let (name, contact, grounds) = match checked {
        Ok(v) => v,
        Err(msg) => {
            let p = notice_page(&state, page, id, form, Some(msg)).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &p);
        }
    };
    let objection = NewObjection {
        name,
        contact,
        grounds,
        addr: crate::auth::source_addr(&req),
    };
    let (now, today) = clock(&state);
    let days = state.config.objection_days;
    db(&state, move |conn| {
        ops::file_objection(conn, id, &objection, now, today, days)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/notices/{id}"),
        "ok",
        "admission.flash_objection_filed",
    ))
}

/// The application page of objection `{id}`, where the forms deciding it are: shown again
/// when a decision is refused (see [`crate::detail`]).
pub async fn objection_page(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let oid = path.id;
    let app_id = db(&state, move |conn| {
        let o = model::find_objection(conn, oid)?.ok_or_else(AppError::not_found)?;
        Ok(o.application_id)
    })
    .await?;
    let p = super::applications::build_page(&state, page, &user, app_id, None, None, Vec::new())
        .await?;
    render(&p)
}

/// `POST /admission/objections/{id}/{dismiss|uphold}` (`reasons`, required): decides an
/// objection. Upholding sends the application back to review; dismissing the last pending
/// objection after the notice period admits the applicant at once. Mounted with
/// [`crate::detail::action`]: a refusal shows [`objection_page`] again.
pub async fn decide(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    require_regulator(&user)?;
    let (oid, segment) = path.into_inner();
    let action = ObjectionAction::from_segment(&segment).ok_or_else(AppError::not_found)?;
    let pairs = Pairs(form.into_inner());
    page.check_csrf(&pairs.get("csrf"))?;
    let reasons = forms::reasons(&pairs.get("reasons"), "admission.err_reasons_required")
        .map_err(AppError::invalid)?;
    let (now, today) = clock(&state);
    let review_days = state.config.review_days;
    let app_id = db(&state, move |conn| {
        ops::decide_objection(conn, &user, oid, action, &reasons, now, today, review_days)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/applications/{app_id}#objections"),
        "ok",
        "admission.flash_objection_decided",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_check_is_signed_and_expires() {
        let key = b"k";
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let c = new_check(key, now);
        let (a, b) = c.question.split_once(" + ").unwrap();
        let answer = a.parse::<i64>().unwrap() + b.parse::<i64>().unwrap();
        assert!(verify_check(key, now, &c.token, &answer.to_string()));
        assert!(!verify_check(key, now, &c.token, &(answer + 1).to_string()));
        assert!(!verify_check(b"other", now, &c.token, &answer.to_string()));
        let later = now + chrono::Duration::seconds(CHECK_TTL_SECS + 1);
        assert!(!verify_check(key, later, &c.token, &answer.to_string()));
        assert!(!verify_check(key, now, "garbage", "1"));
    }
}
