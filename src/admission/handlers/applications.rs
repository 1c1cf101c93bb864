//! Applications (提交申请): a verified enterprise starts one against an open call, saves and
//! resumes its draft, and submits it; the application page shows the status, the history and
//! every message to the applicant, the review to the regulator and the opinion form to an
//! assigned expert.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use diesel::QueryResult;

use super::calls::{DatasetLine, dataset_line};
use super::clock;
use crate::AppState;
use crate::admission::forms::{self, ApplicationForm, Pairs};
use crate::admission::machine::{ApplicationState, Recommendation};
use crate::admission::model::{self, Application, EvidenceGroup, Viewer, visible};
use crate::admission::ops::{self, Saved};
use crate::auth::{CurrentUser, Role};
use crate::calendar::{Calendar, Deadline};
use crate::catalog::handlers::Choice;
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::web::{Page, db, human_bytes, redirect, redirect_with_flash, render, render_status};

/// A deadline as a page shows it.
#[derive(Debug, Clone)]
pub struct DeadlineView {
    /// The date.
    pub due_on: String,
    /// "n working days left" / "n working days overdue".
    pub text: String,
    /// Whether it has passed.
    pub overdue: bool,
}

/// The view of a deadline.
pub fn deadline_view(page: &Page, d: Deadline) -> DeadlineView {
    let text = if d.overdue {
        page.t_args(
            "admission.days_overdue",
            &[("n", d.days_left.abs().to_string())],
        )
    } else {
        page.t_args("admission.days_left", &[("n", d.days_left.to_string())])
    };
    DeadlineView {
        due_on: d.due_on.to_string(),
        text,
        overdue: d.overdue,
    }
}

/// One entry of an application's history.
#[derive(Debug, Clone)]
pub struct EventView {
    /// When (UTC).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What, as a person reads it.
    pub action: String,
    /// The state after.
    pub to_state: String,
    /// The message that came with it.
    pub message: String,
}

/// An attachment line.
#[derive(Debug, Clone)]
pub struct AttachmentView {
    /// Id.
    pub id: i64,
    /// Group label.
    pub group: String,
    /// File name.
    pub name: String,
    /// Size, human readable.
    pub size: String,
    /// Content type.
    pub content_type: String,
}

/// An expert assignment line.
#[derive(Debug, Clone)]
pub struct AssignmentView {
    /// Id.
    pub id: i64,
    /// The expert.
    pub expert: String,
    /// State code.
    pub state: &'static str,
    /// State label.
    pub state_label: String,
    /// The opinion's due date and standing.
    pub due: DeadlineView,
    /// Recommendation label (once filed).
    pub recommendation: String,
    /// The opinion.
    pub opinion: String,
}

/// An objection line.
#[derive(Debug, Clone)]
pub struct ObjectionView {
    /// Id.
    pub id: i64,
    /// Objector.
    pub name: String,
    /// Contact.
    pub contact: String,
    /// Grounds.
    pub grounds: String,
    /// State code.
    pub state: &'static str,
    /// State label.
    pub state_label: String,
    /// Decision deadline.
    pub due: DeadlineView,
    /// Reasons of the decision.
    pub reasons: String,
    /// Filed at (UTC).
    pub filed_at: String,
}

/// The application page.
#[derive(Template)]
#[template(path = "admission/application.html")]
pub struct ApplicationPage {
    page: Page,
    app: Application,
    state_label: String,
    call_id: i64,
    call_title: String,
    viewer_owner: bool,
    viewer_regulator: bool,
    editable: bool,
    form: ApplicationForm,
    offered: Vec<DatasetLine>,
    scenarios: Vec<String>,
    groups: Vec<(usize, String, String)>,
    requested: Vec<(String, String)>,
    attachments: Vec<AttachmentView>,
    events: Vec<EventView>,
    error: Option<String>,
    missing: Vec<String>,
    review_due: Option<DeadlineView>,
    notice_due: Option<DeadlineView>,
    assignments: Vec<AssignmentView>,
    my_assignment: Option<AssignmentView>,
    experts: Vec<(i64, String)>,
    recommendations: Vec<Choice>,
    credit: Vec<(String, String, String)>,
    objections: Vec<ObjectionView>,
    can_review: bool,
    upload_hint: String,
}
crate::impl_page!(ApplicationPage);

/// Builds the application page for `user` (with a re-shown form, an error and the missing
/// items when a save or submission was refused).
pub async fn build_page(
    state: &AppState,
    page: Page,
    user: &CurrentUser,
    id: i64,
    form: Option<ApplicationForm>,
    error: Option<String>,
    missing: Vec<&'static str>,
) -> Result<ApplicationPage, AppError> {
    let u = user.clone();
    let today = state.clock.today();
    let data = db(state, move |conn| {
        let (app, viewer) = visible(conn, &u, id)?;
        let call = model::find_call(conn, app.call_id)?.ok_or_else(AppError::not_found)?;
        let offered = model::call_datasets_of(conn, app.call_id)?;
        let requested = model::requested_datasets(conn, id)?;
        let attachments = model::attachments_of(conn, id)?;
        let events = model::events_of(conn, id)?;
        let assignments = model::assignments_of(conn, id)?;
        let objections = if matches!(viewer, Viewer::Expert(_)) {
            Vec::new()
        } else {
            model::objections_of(conn, id)?
        };
        let (credit, experts) = if viewer == Viewer::Regulator {
            let experts = model::active_experts(conn)?;
            (model::credit_records_of(conn, app.org_id)?, experts)
        } else {
            (Vec::new(), Vec::new())
        };
        let cal = Calendar::load(conn)?;
        Ok((
            app,
            viewer,
            call,
            offered,
            requested,
            attachments,
            events,
            assignments,
            objections,
            credit,
            experts,
            cal,
        ))
    })
    .await?;
    let (
        app,
        viewer,
        call,
        offered,
        requested,
        attachments,
        events,
        assignments,
        objections,
        credit,
        experts,
        cal,
    ) = data;
    let editable = viewer == Viewer::Owner && app.state.is_editable();
    let requested_pairs: Vec<(i64, String)> =
        requested.iter().map(|(d, p)| (d.id, p.clone())).collect();
    let form = form.unwrap_or_else(|| ApplicationForm::from_application(&app, &requested_pairs));
    let assignment_view = |(a, name): &(model::Assignment, String)| AssignmentView {
        id: a.id,
        expert: name.clone(),
        state: a.state.as_str(),
        state_label: page.t(a.state.label_key()).to_owned(),
        due: deadline_view(&page, cal.deadline(today, a.due_on)),
        recommendation: a
            .recommendation()
            .map(|r| page.t(r.label_key()).to_owned())
            .unwrap_or_default(),
        opinion: a.opinion.clone(),
    };
    let my_assignment = match viewer {
        Viewer::Expert(aid) => assignments
            .iter()
            .find(|(a, _)| a.id == aid)
            .map(assignment_view),
        _ => None,
    };
    let assignments_v = if viewer == Viewer::Regulator {
        assignments.iter().map(assignment_view).collect()
    } else {
        Vec::new()
    };
    let group_label = |code: &str| {
        EvidenceGroup::parse(code)
            .map_or_else(|| code.to_owned(), |g| page.t(g.label_key()).to_owned())
    };
    let state_label = page.t(app.state.label_key()).to_owned();
    let app_state = app.state;
    Ok(ApplicationPage {
        state_label,
        call_id: call.id,
        call_title: call.title(page.lang).to_owned(),
        viewer_owner: viewer == Viewer::Owner,
        viewer_regulator: viewer == Viewer::Regulator,
        editable,
        form,
        offered: offered.iter().map(|d| dataset_line(&page, d)).collect(),
        scenarios: call.scenario_list(),
        groups: EvidenceGroup::ALL
            .iter()
            .enumerate()
            .map(|(i, g)| (i, g.as_str().to_owned(), page.t(g.label_key()).to_owned()))
            .collect(),
        requested: requested
            .iter()
            .map(|(d, p)| (d.title(page.lang).to_owned(), p.clone()))
            .collect(),
        attachments: attachments
            .iter()
            .map(|a| AttachmentView {
                id: a.id,
                group: group_label(&a.evidence_group),
                name: a.file_name.clone(),
                size: human_bytes(a.byte_count.max(0) as u64),
                content_type: a.content_type.clone(),
            })
            .collect(),
        events: events
            .iter()
            .map(|e| EventView {
                at: page.time_min(e.at),
                actor: e.actor_name.clone(),
                action: page.t(&format!("admission.event.{}", e.action)).to_owned(),
                to_state: page.t(e.to_state.label_key()).to_owned(),
                message: e.message.clone(),
            })
            .collect(),
        error,
        missing: missing.iter().map(|k| page.t(k).to_owned()).collect(),
        review_due: app
            .review_due_on
            .filter(|_| app_state.awaits_review())
            .map(|d| deadline_view(&page, cal.deadline(today, d))),
        notice_due: app
            .notice_ends_on
            .filter(|_| app_state == ApplicationState::Notice)
            .map(|d| deadline_view(&page, cal.deadline(today, d))),
        assignments: assignments_v,
        my_assignment,
        experts,
        recommendations: Recommendation::ALL
            .iter()
            .map(|r| Choice {
                value: r.as_str().to_owned(),
                label: page.t(r.label_key()).to_owned(),
                selected: false,
            })
            .collect(),
        credit: credit
            .iter()
            .map(|c| {
                (
                    c.created_at.format("%Y-%m-%d").to_string(),
                    page.t(&c.kind_key()).to_owned(),
                    c.summary.clone(),
                )
            })
            .collect(),
        objections: objections
            .iter()
            .map(|o| ObjectionView {
                id: o.id,
                name: o.name.clone(),
                contact: if viewer == Viewer::Regulator {
                    o.contact.clone()
                } else {
                    String::new()
                },
                grounds: o.grounds.clone(),
                state: o.state.as_str(),
                state_label: page.t(o.state.label_key()).to_owned(),
                due: deadline_view(&page, cal.deadline(today, o.due_on)),
                reasons: o.reasons.clone(),
                filed_at: page.time_min(o.filed_at),
            })
            .collect(),
        can_review: viewer == Viewer::Regulator && app_state.awaits_review(),
        upload_hint: page.t_args(
            "admission.upload_hint",
            &[("limit", human_bytes(super::attachments::MAX_FILE_BYTES))],
        ),
        app,
        page,
    })
}

/// `GET /applications/{id}`: the application as the viewer may see it.
pub async fn show(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    let p = build_page(&state, page, &user, path.id, None, None, Vec::new()).await?;
    render(&p)
}

/// One application in a list.
#[derive(Debug, Clone)]
pub struct AppLine {
    /// Id.
    pub id: i64,
    /// Call title.
    pub call: String,
    /// Organisation.
    pub org: String,
    /// State code.
    pub state: String,
    /// State label.
    pub state_label: String,
    /// Last change (UTC).
    pub updated: String,
}

/// Lines for applications in the page language.
pub fn app_lines(
    conn: &mut DbConnection,
    page: &Page,
    apps: &[Application],
) -> QueryResult<Vec<AppLine>> {
    let mut out = Vec::new();
    for a in apps {
        let call = model::find_call(conn, a.call_id)?
            .map(|c| c.title(page.lang).to_owned())
            .unwrap_or_default();
        out.push(AppLine {
            id: a.id,
            call,
            org: a.org_name.clone(),
            state: a.state.as_str().to_owned(),
            state_label: page.t(a.state.label_key()).to_owned(),
            updated: page.time_min(a.updated_at),
        });
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "admission/mine.html")]
struct MinePage {
    page: Page,
    apps: Vec<AppLine>,
}
crate::impl_page!(MinePage);

/// `GET /applications`: the applications of the user's organisation.
pub async fn mine(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let org = user.org_id;
    let p = page.clone();
    let apps = db(&state, move |conn| {
        let apps = model::applications_of_org(conn, org)?;
        Ok(app_lines(conn, &p, &apps)?)
    })
    .await?;
    render(&MinePage { page, apps })
}

/// `POST /calls/{id}/apply`: starts (or resumes) the organisation's application to an open
/// call. Only a verified enterprise may apply.
pub async fn start(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    page.check_csrf(&Pairs(form.into_inner()).get("csrf"))?;
    let call_id = path.into_inner();
    let (now, today) = clock(&state);
    let id = db(&state, move |conn| {
        ops::start_application(conn, &user, call_id, now, today)
    })
    .await?;
    Ok(redirect(&format!("/applications/{id}")))
}

/// `POST /applications/{id}` (`op` = `save` or `submit`): saves the draft (or the returned
/// application) and, for `submit`, submits it when it is complete; an incomplete one is saved
/// and shown again with the list of what is missing. A first submission is refused (409) once
/// the call no longer takes applications; a resubmission after a return for supplement is not.
pub async fn save(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::FormAsTyped<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let id = path.into_inner();
    let (pairs, problem) = form.into_parts();
    let pairs = Pairs(pairs);
    if pairs.0.len() > forms::MAX_PAIRS {
        return Err(AppError::bad_request("admission.err_form_too_big"));
    }
    page.check_csrf(&pairs.get("csrf"))?;
    let form = ApplicationForm::from_pairs(&pairs);
    if let Some(problem) = problem {
        let msg = problem.message(page.lang);
        let p = build_page(&state, page, &user, id, Some(form), Some(msg), Vec::new()).await?;
        return render_status(problem.status(), &p);
    }
    let submit = form.op == "submit";
    let (now, today) = clock(&state);
    let review_days = state.config.review_days;
    let u = user.clone();
    let f = form.clone();
    let outcome = db(&state, move |conn| {
        ops::save_application(conn, &u, id, &f, submit, now, today, review_days)
    })
    .await?;
    match outcome {
        Saved::Saved => Ok(redirect_with_flash(
            &format!("/applications/{id}"),
            "ok",
            "admission.flash_saved",
        )),
        Saved::Submitted => Ok(redirect_with_flash(
            &format!("/applications/{id}"),
            "ok",
            "admission.flash_submitted",
        )),
        Saved::Invalid(key) => {
            let msg = page.t(key).to_owned();
            let p = build_page(&state, page, &user, id, Some(form), Some(msg), Vec::new()).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
        Saved::Missing(missing) => {
            let msg = page.t("admission.err_incomplete").to_owned();
            let p = build_page(&state, page, &user, id, None, Some(msg), missing).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
    }
}
