//! Training records (platform admin).

use super::*;

#[derive(Template)]
#[template(path = "jobs/trainings.html")]
pub(super) struct TrainingsPage {
    page: Page,
    rows: Vec<model::TrainingRow>,
    today: NaiveDate,
    error: Option<String>,
    form: TrainingForm,
    /// Whether the visitor records trainings (the platform admin) or only sees them.
    can_record: bool,
}
crate::impl_page!(TrainingsPage);

/// The training form.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrainingForm {
    #[serde(default)]
    csrf: String,
    /// Login name of the trained user.
    #[serde(default)]
    pub username: String,
    /// The course.
    #[serde(default)]
    pub course: String,
    /// Trained on (YYYY-MM-DD).
    #[serde(default)]
    pub trained_on: String,
    /// Valid until (YYYY-MM-DD).
    #[serde(default)]
    pub expires_on: String,
}

pub(super) async fn trainings_page(
    state: &web::Data<AppState>,
    page: Page,
    error: Option<String>,
    form: TrainingForm,
) -> Result<TrainingsPage, AppError> {
    let rows = db(state, |conn| Ok(model::training_rows(conn)?)).await?;
    Ok(TrainingsPage {
        can_record: page.has_role(&[Role::PlatformAdmin]),
        page,
        rows,
        today: state.clock.today(),
        error,
        form,
    })
}

/// `GET /admin/trainings`: training records. The platform admin records them; the regulator,
/// who supervises staff training before operating (Hangzhou plan, point 5), sees them.
pub async fn trainings(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::PlatformAdmin, Role::Regulator])?;
    let p = trainings_page(&state, page, None, TrainingForm::default()).await?;
    render(&p)
}

/// `POST /admin/trainings`: records a training.
pub async fn record_training(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: crate::input::FormAsTyped<TrainingForm>,
) -> Result<HttpResponse, AppError> {
    let (f, problem) = form.into_parts();
    page.check_csrf(&f.csrf)?;
    user.require(&[Role::PlatformAdmin])?;
    let parse = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
    let lang: Lang = page.lang;
    let today = state.clock.today();
    if let Some(problem) = problem {
        let p = trainings_page(&state, page, Some(problem.message(lang)), f).await?;
        return render_status(problem.status(), &p);
    }
    let dates = match (parse(&f.trained_on), parse(&f.expires_on)) {
        (Some(on), Some(until)) => DateSpan::Past
            .check(lang, "jobs.trained_on", on, today)
            .and_then(|on| {
                DateSpan::Planned
                    .check(lang, "jobs.expires_on", until, today)
                    .map(|until| (on, until))
            }),
        _ => Err(crate::i18n::t(lang, "jobs.err.training_dates").to_owned()),
    };
    let (on, until) = match dates {
        Ok(d) => d,
        Err(msg) => {
            let p = trainings_page(&state, page, Some(msg), f).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &p);
        }
    };
    let now = state.clock.now();
    let f2 = f.clone();
    let result = db(&state, move |conn| {
        ops::record_training(conn, &user, &f2.username, &f2.course, on, until, now)
    })
    .await;
    match result {
        Ok(_) => Ok(redirect_with_flash(
            "/admin/trainings",
            "ok",
            "jobs.flash.training_recorded",
        )),
        Err(e @ AppError::Http { .. }) if e.message(lang).0 == StatusCode::UNPROCESSABLE_ENTITY => {
            let msg = e.message(lang).2;
            let p = trainings_page(&state, page, Some(msg), f).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
        Err(e) => Err(e),
    }
}
