//! `GET /api/v1/jobs` and `GET /api/v1/jobs/{id}`: what the operator sees of its runs.

use super::*;

/// Runs listed per page of `GET /api/v1/jobs` by default, and at most.
pub(super) const API_PAGE: i64 = 50;
pub(super) const API_MAX_PAGE: i64 = 200;

/// Query of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize)]
pub struct ApiListQuery {
    /// Only runs with a smaller id (the `next` link of the previous page).
    #[serde(default)]
    before: String,
    /// Runs per page (1 to 200, default 50).
    #[serde(default)]
    limit: String,
}

/// `GET /api/v1/jobs?before=ID&limit=N` (bearer token): the runs of the caller's organisation,
/// newest first, a page at a time; `next` links to the following page (`null` on the last).
pub async fn api_list(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: crate::input::Query<ApiListQuery>,
) -> Result<HttpResponse, AppError> {
    let bad = |field: &str| AppError::bad_request("jobs.err.api_query").arg("field", field);
    let before = match query.before.as_str() {
        "" => None,
        b => Some(
            b.parse::<i64>()
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| bad("before"))?,
        ),
    };
    let limit = match query.limit.as_str() {
        "" => API_PAGE,
        l => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=API_MAX_PAGE).contains(l))
            .ok_or_else(|| bad("limit"))?,
    };
    let org = user.org_id;
    let rows = db(&state, move |conn| {
        Ok(model::org_job_page(conn, org, before, limit + 1)?)
    })
    .await?;
    let more = rows.len() as i64 > limit;
    let items: Vec<_> = rows
        .iter()
        .take(limit as usize)
        .map(|r| {
            serde_json::json!({
                "id": r.job.id,
                "computation": r.job.computation_id,
                "name": r.name,
                "state": r.job.state,
                "final": r.job.state.is_final(),
                "created_at": r.job.created_at.and_utc().to_rfc3339(),
                "url": format!("/api/v1/jobs/{}", r.job.id),
            })
        })
        .collect();
    let next = more
        .then(|| items.last().and_then(|j| j["id"].as_i64()))
        .flatten()
        .map(|id| format!("/api/v1/jobs?before={id}&limit={limit}"));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}

/// `GET /api/v1/jobs/{id}`: the run's state, progress, reason and report.
pub async fn api_status(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let u = user.clone();
    let j = db(&state, move |conn| load_visible(conn, &u, id)).await?;
    let staff = crate::jobs::sees_all(&user);
    let report: serde_json::Value = j
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .map(|r| {
            if staff {
                r
            } else {
                operator_report(&r, j.rows_total)
            }
        })
        .unwrap_or(serde_json::Value::Null);
    let reason = match sandbox_failure(&j) {
        Some(kind) if !staff => ops::outcome_both(operator_kind(kind), ""),
        _ => j.reason.clone(),
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": j.id,
        "state": j.state,
        "final": j.state.is_final(),
        // How far a run has read is steered by the module: platform staff only (ABI v2, 8).
        "rows_done": staff.then_some(j.rows_done),
        "rows_total": j.rows_total,
        "reason": reason,
        "report": report,
        "output": (j.state == RunState::Released).then(|| format!("/api/v1/jobs/{id}/output")),
    })))
}

/// What an operator may see of a stored run report (`RunReport::for_operator`): the
/// outcome's kind as an operator is shown it, the rows of the datasets (`rows_total`, pinned
/// at the start) as rows read, and coarse figures; never the exact figures or messages the
/// guest can steer.
pub(super) fn operator_report(report: &serde_json::Value, rows_total: i64) -> serde_json::Value {
    let finished = report["outcome"]["kind"] == "finished";
    let cells = |k: &str| {
        if finished {
            report[k].as_u64().unwrap_or(0)
        } else {
            0
        }
    };
    serde_json::json!({
        "outcome": operator_kind(report["outcome"]["kind"].as_str().unwrap_or("")),
        "rows_read": rows_total,
        "cells_released": cells("cells_released"),
        "cells_suppressed": cells("cells_suppressed"),
        "elapsed_s": (report["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0).ceil().max(1.0) as u64,
    })
}

/// The sandbox outcome kind of a run that the sandbox ended without finishing, if so (its
/// stored reason then holds the sandbox's details, for platform staff only).
pub(super) fn sandbox_failure(job: &Job) -> Option<&str> {
    (!job.reason.starts_with("jobs.why.") && job.outcome != "finished" && !job.reason.is_empty())
        .then_some(job.outcome.as_str())
        .filter(|k| ops::outcome_key(k).is_some())
}
