//! The run page (report, sources, output, the differencing guard for staff) and the signed downloads.

use super::*;

/// The figures of a run report a person reads first.
#[derive(Debug, Clone, Default)]
pub struct ReportSummary {
    /// How the run ended, in the page language.
    pub outcome: String,
    /// Wall-clock time: milliseconds for platform staff, whole seconds (rounded up) for the
    /// operator.
    pub elapsed: String,
    /// Instances the rows were split across.
    pub instances: String,
    /// Largest linear memory of one instance, MiB.
    pub memory_mib: String,
    /// Rows handed to the job.
    pub rows_read: String,
    /// Contributions emitted.
    pub contributions: String,
    /// Cells released.
    pub cells_released: String,
    /// Cells suppressed.
    pub cells_suppressed: String,
    /// Epsilon spent; `None` when no noise was added.
    pub epsilon_spent: Option<String>,
}

pub(super) fn summary(
    report: &serde_json::Value,
    rows_total: i64,
    lang: Lang,
    staff: bool,
) -> ReportSummary {
    if !staff {
        let r = operator_report(report, rows_total);
        let kind = r["outcome"].as_str().unwrap_or("").to_owned();
        return ReportSummary {
            outcome: ops::outcome_key(&kind)
                .map(|k| crate::i18n::t(lang, k).to_owned())
                .unwrap_or(kind),
            elapsed: format!("≤ {} s", r["elapsed_s"]),
            rows_read: r["rows_read"].to_string(),
            cells_released: r["cells_released"].to_string(),
            cells_suppressed: r["cells_suppressed"].to_string(),
            epsilon_spent: report["epsilon_spent"]
                .as_f64()
                .filter(|e| *e > 0.0)
                .map(|e| e.to_string()),
            ..ReportSummary::default()
        };
    }
    let f = |k: &str| match &report[k] {
        serde_json::Value::Null => String::new(),
        v => v.to_string(),
    };
    let kind = report["outcome"]["kind"].as_str().unwrap_or("").to_owned();
    ReportSummary {
        outcome: ops::outcome_key(&kind)
            .map(|k| crate::i18n::t(lang, k).to_owned())
            .unwrap_or(kind),
        elapsed: report["elapsed_ms"]
            .as_f64()
            .map(|v| format!("{v:.1} ms"))
            .unwrap_or_default(),
        instances: f("instances"),
        memory_mib: report["memory_peak_bytes"]
            .as_f64()
            .map(|v| format!("{:.1}", v / 1_048_576.0))
            .unwrap_or_default(),
        rows_read: f("rows_read"),
        contributions: f("contributions"),
        cells_released: f("cells_released"),
        cells_suppressed: f("cells_suppressed"),
        epsilon_spent: report["epsilon_spent"]
            .as_f64()
            .filter(|e| *e > 0.0)
            .map(|_| f("epsilon_spent")),
    }
}

/// Why a run failed, was cancelled or withheld, as shown on the job page.
#[derive(Debug, Clone)]
pub struct ReasonView {
    /// In the page language.
    pub text: String,
    /// The sandbox's or the host's own words, when `text` translates them (else empty).
    pub detail: String,
}

/// The reason of a run in `lang`: the platform's reasons are message keys, an outcome of a
/// known kind (the sandbox's, or a host error while preparing the run) is translated with its
/// technical text kept as detail, and the reviewer's words are shown as written.
/// The details of a sandbox outcome, and which of the kinds a module can bring about it is,
/// are shown to platform staff (`staff`) only: they may carry what the guest chose.
pub(super) fn reason_view(job: &Job, lang: Lang, staff: bool) -> Option<ReasonView> {
    if job.reason.is_empty() {
        return None;
    }
    let kind = sandbox_failure(job).map(|k| if staff { k } else { operator_kind(k) });
    Some(match kind.and_then(ops::outcome_key) {
        Some(key) => ReasonView {
            text: crate::i18n::t(lang, key).to_owned(),
            detail: if staff {
                job.reason.clone()
            } else {
                String::new()
            },
        },
        None => ReasonView {
            text: job.reason_text(lang),
            detail: String::new(),
        },
    })
}

/// A dataset version a run read, as shown on the job page.
#[derive(Debug, Clone)]
pub struct SourceView {
    /// The catalog dataset.
    pub dataset_id: i64,
    /// Its catalog title in the page language.
    pub title: String,
    /// The providing organisation.
    pub provider: String,
    /// The manifest's name of the dataset.
    pub binding: String,
    /// The version row.
    pub version_id: i64,
    /// The version number.
    pub version_no: i32,
    /// Its rows.
    pub rows: i64,
    /// The date the data was obtained (the version's upload).
    pub obtained_on: NaiveDate,
}

pub(super) fn sources(
    conn: &mut crate::db::DbConnection,
    versions: Vec<model::VersionUsed>,
    lang: Lang,
) -> Result<Vec<SourceView>, AppError> {
    let ids: Vec<i64> = versions.iter().map(|v| v.dataset_id).collect();
    let labels = model::dataset_labels(conn, &ids)?;
    Ok(versions
        .into_iter()
        .map(|v| {
            let label = labels.get(&v.dataset_id).cloned().unwrap_or_default();
            SourceView {
                dataset_id: v.dataset_id,
                title: label.title(lang).to_owned(),
                provider: label.provider,
                binding: v.name,
                version_id: v.version_id,
                version_no: v.version_no,
                rows: v.rows,
                obtained_on: v.obtained_at.date(),
            }
        })
        .collect())
}

/// A computation's binding of a manifest dataset to a catalog dataset, as the reviewer sees it.
#[derive(Debug, Clone)]
pub struct BindingView {
    /// The manifest's name of the dataset.
    pub binding: String,
    /// The catalog dataset.
    pub dataset_id: i64,
    /// Its catalog title in the page language.
    pub title: String,
    /// The providing organisation.
    pub provider: String,
}

pub(super) fn bound_datasets(
    conn: &mut crate::db::DbConnection,
    c: &Computation,
    lang: Lang,
) -> Result<Vec<BindingView>, AppError> {
    let map = c.binding_map();
    let ids: Vec<i64> = map.values().copied().collect();
    let labels = model::dataset_labels(conn, &ids)?;
    Ok(map
        .into_iter()
        .map(|(binding, dataset_id)| {
            let label = labels.get(&dataset_id).cloned().unwrap_or_default();
            BindingView {
                binding,
                dataset_id,
                title: label.title(lang).to_owned(),
                provider: label.provider,
            }
        })
        .collect())
}

/// A run's metering of one dataset version, as the reviewer sees it on the job page.
#[derive(Debug, Clone)]
pub struct MeterView {
    /// The catalog dataset.
    pub dataset_id: i64,
    /// Its catalog title in the page language (empty when the version is not among the run's
    /// sources).
    pub title: String,
    /// The version number, when known.
    pub version_no: Option<i32>,
    /// Rows read of it.
    pub rows_read: i64,
    /// The agreement's price per job at the time.
    pub price_per_job: Option<String>,
    /// The agreement's price per 1,000 rows at the time.
    pub price_per_thousand_rows: Option<String>,
}

/// The metering rows labelled with the sources they read.
pub(super) fn meter_views(meters: Vec<model::MeterRow>, sources: &[SourceView]) -> Vec<MeterView> {
    meters
        .into_iter()
        .map(
            |(dataset_id, version_id, rows_read, price_per_job, price_per_thousand_rows)| {
                let source = sources.iter().find(|s| s.version_id == version_id);
                MeterView {
                    dataset_id,
                    title: source.map(|s| s.title.clone()).unwrap_or_default(),
                    version_no: source.map(|s| s.version_no),
                    rows_read,
                    price_per_job,
                    price_per_thousand_rows,
                }
            },
        )
        .collect()
}

/// The signed files of a release, as shown on the job page.
#[derive(Debug, Clone)]
pub struct ReleaseView {
    /// sha256 of the CSV file.
    pub csv_sha256: String,
    /// Signature of it.
    pub csv_signature: String,
    /// sha256 of the JSON file.
    pub json_sha256: String,
    /// Signature of it.
    pub json_signature: String,
    /// The public key.
    pub public_key: String,
    /// Released at.
    pub released_at: String,
}

/// A pair of cells the differencing guard found, as platform staff see it.
#[derive(Debug, Clone)]
pub struct FindingView {
    /// The aggregate and key labels of the run's cell.
    pub cell: String,
    /// The run that released the other cell (`None`: this release).
    pub other_job: Option<i64>,
    /// The aggregate and key labels of the other cell.
    pub other_cell: String,
    /// Persons in exactly one of the two.
    pub difference: i64,
    /// The threshold they were compared with.
    pub k: i64,
}

/// What the differencing guard says of a run, for platform staff only.
#[derive(Debug, Clone)]
pub struct GuardView {
    /// The output waits for review and was checked now (else: the pairs that withheld it).
    pub live: bool,
    /// The pairs found.
    pub findings: Vec<FindingView>,
}

pub(super) fn guard_view(
    job: &Job,
    findings: Vec<crate::jobs::differencing::Finding>,
    live: bool,
) -> GuardView {
    let cell = |aggregate: &str, labels: Vec<String>| {
        if labels.is_empty() {
            aggregate.to_owned()
        } else {
            format!("{aggregate}: {}", labels.join(" · "))
        }
    };
    GuardView {
        live,
        findings: findings
            .into_iter()
            .map(|f| FindingView {
                cell: cell(&f.aggregate, f.labels()),
                other_cell: cell(&f.other_aggregate, f.other_labels()),
                other_job: (f.other_job_id != job.id).then_some(f.other_job_id),
                difference: f.difference,
                k: f.k,
            })
            .collect(),
    }
}

/// The differencing guard's view of run `j` for platform staff: checked now while its output
/// waits for review, or the pairs that withheld it.
pub(super) fn guard_of(
    conn: &mut crate::db::DbConnection,
    j: &Job,
) -> Result<Option<GuardView>, AppError> {
    Ok(match j.state {
        RunState::Finished => Some(guard_view(
            j,
            crate::jobs::differencing::check(conn, j)?.findings,
            true,
        )),
        RunState::Withheld => {
            let found = crate::jobs::differencing::findings_of(conn, j.id)?;
            (!found.is_empty()).then(|| guard_view(j, found, false))
        }
        _ => None,
    })
}

#[derive(Template)]
#[template(path = "jobs/show.html")]
pub(super) struct ShowPage {
    page: Page,
    job: Job,
    computation: Computation,
    state_: RunState,
    refresh: bool,
    operator: bool,
    reviewer: bool,
    platform_admin: bool,
    staff: bool,
    show_output: bool,
    tables: Vec<Table>,
    charts: Vec<Chart>,
    report: String,
    summary: Option<ReportSummary>,
    release: Option<ReleaseView>,
    usage: Option<(String, String)>,
    meters: Vec<MeterView>,
    sources: Vec<SourceView>,
    reason: Option<ReasonView>,
    guard: Option<GuardView>,
}
crate::impl_page!(ShowPage);

/// `GET /jobs/{id}`: state, progress (refreshing itself while it waits or runs), report,
/// output for review or as released, downloads, usage report.
pub async fn show(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    let id = path.id;
    let u = user.clone();
    let lang = page.lang;
    let staff = crate::jobs::sees_all(&user);
    let (job, computation, release, usage, meters, sources, guard) = db(&state, move |conn| {
        let j = load_visible(conn, &u, id)?;
        let c = ops::load_computation(conn, j.computation_id)?;
        let r = model::release(conn, id)?;
        let usage = model::usage_of(conn, id)?;
        let meters = model::meters_of(conn, id)?;
        let sources = sources(conn, j.versions_used(), lang)?;
        let guard = if staff { guard_of(conn, &j)? } else { None };
        Ok((j, c, r, usage, meters, sources, guard))
    })
    .await?;
    let st = job.state;
    let reviewer = crate::jobs::is_reviewer(&state, &user);
    let operator = user.org_id == job.org_id;
    let show_output = st == RunState::Released
        || (crate::jobs::sees_all(&user) && matches!(st, RunState::Finished | RunState::Withheld));
    let mut tables = if show_output {
        output::tables(job.output.as_deref().unwrap_or(""))
    } else {
        Vec::new()
    };
    if !tables.is_empty() {
        let c = computation.clone();
        tables = db(&state, move |conn| {
            output::label_keys(conn, &c, &mut tables, lang)?;
            Ok(tables)
        })
        .await?;
    }
    let charts: Vec<Chart> = if st == RunState::Released {
        tables.iter().map(output::chart).collect()
    } else {
        Vec::new()
    };
    let parsed = job
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
    let report = parsed
        .as_ref()
        .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
        .unwrap_or_default();
    let summary = parsed
        .as_ref()
        .map(|r| summary(r, job.rows_total, lang, staff));
    let report = if staff { report } else { String::new() };
    render(&ShowPage {
        refresh: matches!(
            st,
            RunState::AwaitingApproval | RunState::Queued | RunState::Running
        ),
        state_: st,
        reason: reason_view(&job, lang, staff),
        staff,
        computation,
        operator,
        reviewer,
        platform_admin: user.role == Role::PlatformAdmin,
        show_output,
        tables,
        charts,
        report,
        summary,
        release: release.map(|r| ReleaseView {
            csv_sha256: r.csv_sha256,
            csv_signature: r.csv_signature,
            json_sha256: r.json_sha256,
            json_signature: r.json_signature,
            public_key: r.public_key,
            released_at: page.time(r.released_at),
        }),
        usage: usage.map(|(b, t)| (b, page.time(t))),
        page,
        meters: meter_views(meters, &sources),
        sources,
        guard,
        job,
    })
}

pub(super) async fn released_file(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: i64,
) -> Result<model::Release, AppError> {
    db(&state, move |conn| {
        let j = load_visible(conn, &user, id)?;
        if j.state != RunState::Released {
            return Err(AppError::not_found());
        }
        model::release(conn, id)?.ok_or_else(AppError::not_found)
    })
    .await
}

pub(super) fn signed(
    body: String,
    sha: String,
    sig: String,
    key: String,
    content_type: &str,
    name: String,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .insert_header(("X-Dataop-Sha256", sha))
        .insert_header(("X-Dataop-Signature", sig))
        .insert_header(("X-Dataop-Public-Key", key))
        .body(body)
}

/// `GET /jobs/{id}/output.csv` (and under `/api/v1`): the released CSV with its provenance.
pub async fn download_csv(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let r = released_file(user, state, id).await?;
    Ok(signed(
        r.csv_body,
        r.csv_sha256,
        r.csv_signature,
        r.public_key,
        "text/csv; charset=utf-8",
        format!("dataop-job-{id}.csv"),
    ))
}

/// `GET /jobs/{id}/output.json` (and `/api/v1/jobs/{id}/output`): the released JSON.
pub async fn download_json(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let r = released_file(user, state, id).await?;
    Ok(signed(
        r.json_body,
        r.json_sha256,
        r.json_signature,
        r.public_key,
        "application/json",
        format!("dataop-job-{id}.json"),
    ))
}
