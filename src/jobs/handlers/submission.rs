//! Submission: the form (`/jobs/new`, `POST /jobs`) and `POST /api/v1/jobs` (with its idempotency key).

use super::*;

#[derive(Template)]
#[template(path = "jobs/new.html")]
pub(super) struct NewPage {
    page: Page,
    trained: bool,
    datasets: Vec<(i64, String)>,
    problems: Vec<String>,
    manifest: String,
    purpose: String,
}
crate::impl_page!(NewPage);

pub(super) async fn new_page(
    state: &web::Data<AppState>,
    page: Page,
    user: &CurrentUser,
    sub: &Submission,
    problems: Vec<String>,
) -> Result<NewPage, AppError> {
    let (uid, org) = (user.id, user.org_id);
    let today = state.clock.today();
    let (trained, datasets) = db(state, move |conn| {
        Ok((
            model::trained(conn, uid, today)?,
            crate::agreements::datasets_in_force(conn, org, today)?,
        ))
    })
    .await?;
    Ok(NewPage {
        page,
        trained,
        datasets,
        problems,
        manifest: sub.manifest.clone(),
        purpose: sub.purpose.clone(),
    })
}

/// `GET /jobs/new`: the submission form (operators).
pub async fn new_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let p = new_page(&state, page, &user, &Submission::default(), Vec::new()).await?;
    render(&p)
}

pub(super) fn bad_form(_: actix_multipart::MultipartError) -> AppError {
    AppError::bad_request("jobs.err.form")
}

/// Reads a submission (multipart: `module`, `manifest`, `purpose`, `dataset.<name>`, and
/// `csrf` from browsers): the submission as typed, the CSRF token read, if any, and the first
/// problem of its text fields (one over its limit, or text that is not allowed), which the
/// caller answers without acting on the submission.
pub(super) async fn read_submission(
    mut payload: Multipart,
) -> Result<(Submission, String, Option<AppError>), AppError> {
    let mut sub = Submission::default();
    let mut csrf = String::new();
    let mut problem = None;
    while let Some(mut field) = payload.try_next().await.map_err(bad_form)? {
        let name = field.name().unwrap_or("").to_owned();
        let (value, p) = match name.as_str() {
            "module" => {
                sub.module = input::multipart_bytes(&mut field, &name, MAX_MODULE_BYTES).await?;
                continue;
            }
            "csrf" => input::multipart_text_as_typed(&mut field, &name, 256).await?,
            "manifest" => {
                input::multipart_text_as_typed(&mut field, &name, MAX_MANIFEST_BYTES).await?
            }
            "purpose" => {
                input::multipart_text_as_typed(&mut field, &name, MAX_PURPOSE_BYTES).await?
            }
            n if n.starts_with("dataset.") && sub.bindings.len() < MAX_BINDINGS => {
                input::multipart_text_as_typed(&mut field, &name, 64).await?
            }
            _ => return Err(AppError::bad_request("jobs.err.form")),
        };
        if problem.is_none() {
            problem = p;
        }
        match name.as_str() {
            "csrf" => csrf = value,
            "manifest" => sub.manifest = value,
            "purpose" => sub.purpose = value,
            n => {
                let v = value.trim();
                if !v.is_empty() {
                    sub.bindings
                        .insert(n["dataset.".len()..].to_owned(), v.to_owned());
                }
            }
        }
    }
    Ok((sub, csrf, problem))
}

/// Checks and records a submission (with the answer under `claim`'s idempotency key, in the
/// same transaction); the failed rules on refusal.
pub(super) async fn do_submit(
    state: &web::Data<AppState>,
    user: &CurrentUser,
    sub: Submission,
    claim: Option<idempotency::Claim>,
) -> Result<Result<ops::Submitted, Vec<Problem>>, AppError> {
    user.require(&[Role::Enterprise])?;
    let st = state.clone();
    let u = user.clone();
    let reviewer = crate::jobs::reviewer_role(state);
    db(state, move |conn| {
        let rt = st.sandbox.runtime(&st.config.data_dir, &st.secrets)?;
        let loaded = submit::load(&rt, sub);
        let cx = ops::SubmitContext {
            limits: rt.limits(),
            data_dir: &st.config.data_dir,
            scratch: &st.scratch,
            reviewer,
        };
        let now = crate::db::to_micros(st.clock.now());
        let submitted = crate::db::write_transaction(conn, |conn| {
            let submitted = match ops::submit(conn, &u, &loaded, &cx, st.clock.today(), now)? {
                Ok(s) => s,
                Err(problems) => return Ok(Err(problems)),
            };
            if let Some(claim) = &claim {
                let answer = idempotency::Recorded {
                    status: StatusCode::CREATED.as_u16(),
                    body: submitted_json(&submitted),
                };
                idempotency::record(conn, claim, &answer, now)?;
            }
            Ok::<_, AppError>(Ok(submitted))
        })?;
        let submitted = match submitted {
            Ok(s) => s,
            Err(problems) => return Ok(Err(problems)),
        };
        if submitted.queued {
            crate::jobs::worker::announce_queued(&st, conn);
        }
        Ok(Ok(submitted))
    })
    .await
}

/// `POST /jobs` (multipart): submits from the browser; the form is shown again with every
/// failed rule on refusal.
pub async fn submit_form(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let (sub, csrf, problem) = read_submission(payload).await?;
    page.check_csrf(&csrf)?;
    let keep = Submission {
        module: Vec::new(),
        ..sub.clone()
    };
    if let Some(e) = problem {
        let (status, _, msg) = e.message(page.lang);
        let p = new_page(&state, page, &user, &keep, vec![msg]).await?;
        return render_status(status, &p);
    }
    match do_submit(&state, &user, sub, None).await? {
        Ok(s) => Ok(redirect_with_flash(
            &format!("/jobs/{}", s.job_id),
            "ok",
            if s.queued {
                "jobs.flash.queued"
            } else {
                "jobs.flash.awaiting"
            },
        )),
        Err(problems) => {
            let lang = page.lang;
            let msgs = problems.iter().map(|p| p.message(lang)).collect();
            let p = new_page(&state, page, &user, &keep, msgs).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
    }
}

/// The API's answer to a recorded submission.
pub(super) fn submitted_json(s: &ops::Submitted) -> serde_json::Value {
    serde_json::json!({
        "id": s.job_id,
        "computation": s.computation_id,
        "state": if s.queued { "queued" } else { "awaiting_approval" },
        "url": format!("/jobs/{}", s.job_id),
    })
}

/// The idempotency hash of a submission: what it asks for, not how it was encoded.
pub(super) fn submission_hash(sub: &Submission) -> String {
    let bindings = serde_json::to_string(&sub.bindings).unwrap_or_default();
    idempotency::request_hash(
        "POST /api/v1/jobs",
        &[
            &sub.module,
            sub.manifest.as_bytes(),
            sub.purpose.as_bytes(),
            bindings.as_bytes(),
        ],
    )
}

/// The answer already recorded under `claim`, if any (422 when the key was used for another
/// request).
pub(super) async fn recorded_answer(
    state: &web::Data<AppState>,
    claim: &Option<idempotency::Claim>,
) -> Result<Option<HttpResponse>, AppError> {
    let Some(claim) = claim.clone() else {
        return Ok(None);
    };
    let now = state.clock.now();
    match db(state, move |conn| {
        Ok(idempotency::prior(conn, &claim, now)?)
    })
    .await?
    {
        idempotency::Prior::None => Ok(None),
        idempotency::Prior::Same(answer) => Ok(Some(answer.replay())),
        idempotency::Prior::Different => Err(idempotency::reused()),
    }
}

/// `POST /api/v1/jobs` (multipart, bearer token): 201 with the run, or 422 naming every
/// failed rule.
///
/// With an `Idempotency-Key` header (see [`crate::idempotency`]), the run and the answer are
/// recorded together under the key, within the caller's organisation: the same key with the
/// same submission answers the recorded 201 again (header `Idempotent-Replayed: true`, the
/// same run), even when both requests arrive at once; with another submission it answers
/// 422. A refusal is not recorded.
pub async fn api_submit(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    if !user.via_token {
        return Err(AppError::unauthorized());
    }
    user.require(&[Role::Enterprise])?;
    let key = idempotency::Key::from_request(&req)?;
    let (sub, _, problem) = read_submission(payload).await?;
    if let Some(e) = problem {
        return Err(e);
    }
    let claim = key.map(|key| idempotency::Claim {
        scope: idempotency::org_scope(user.org_id),
        key,
        request_hash: submission_hash(&sub),
    });
    if let Some(answer) = recorded_answer(&state, &claim).await? {
        return Ok(answer);
    }
    let lang = lang_of(&req);
    let submitted = match do_submit(&state, &user, sub, claim.clone()).await {
        Ok(s) => s,
        // A request with the same key committed first: this one was rolled back.
        Err(e) => return recorded_answer(&state, &claim).await?.ok_or(e),
    };
    match submitted {
        Ok(s) => Ok(HttpResponse::Created().json(submitted_json(&s))),
        Err(problems) => {
            let list: Vec<_> = problems
                .iter()
                .map(|p| serde_json::json!({ "rule": p.rule, "message": p.message(lang) }))
                .collect();
            Ok(HttpResponse::UnprocessableEntity().json(serde_json::json!({
                "error": {
                    "status": 422,
                    "code": "jobs.err.refused",
                    "message": problems.first().map(|p| p.message(lang)).unwrap_or_default(),
                },
                "problems": list,
            })))
        }
    }
}
