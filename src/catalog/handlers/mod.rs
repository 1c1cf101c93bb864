//! Catalog request handlers: one per action.
//!
//! Public: the catalog list and dataset pages, `/api/v1/datasets[/{id}]`. Providers: their
//! datasets, the description and column forms, and the CSV upload. No handler returns data rows.

pub mod versions;

use std::io::Write as _;
use std::path::PathBuf;

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::TryStreamExt as _;
use serde::Deserialize;

use super::forms::{self, ColumnForm, DatasetForm};
use super::ingest::{IngestError, PseudonymKey};
use super::model::{
    self, Category, ColType, Column, Dataset, Filter, OpenType, Role, SharingType, UpdateFrequency,
    Version,
};
use super::ops;
use crate::auth::{CurrentUser, Role as UserRole};
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::i18n::Lang;
use crate::supervision::audit;
use crate::web::{
    Page, app_state, db, human_bytes, redirect, redirect_with_flash, render, render_status,
};

/// Datasets per catalog page.
pub const PER_PAGE: i64 = 20;
/// Largest `per_page` the API accepts.
pub const MAX_PER_PAGE: i64 = 100;

/// One option of a `<select>`.
#[derive(Debug, Clone)]
pub struct Choice {
    /// Submitted value.
    pub value: String,
    /// Shown label.
    pub label: String,
    /// Whether it is selected.
    pub selected: bool,
}

fn choices<T: Copy>(
    all: &[T],
    selected: &str,
    code: fn(T) -> &'static str,
    label: impl Fn(T) -> String,
) -> Vec<Choice> {
    all.iter()
        .map(|v| Choice {
            value: code(*v).to_owned(),
            label: label(*v),
            selected: code(*v) == selected,
        })
        .collect()
}

/// A dataset as listed in the catalog.
#[derive(Debug, Clone)]
pub struct DatasetCard {
    /// Id.
    pub id: i64,
    /// Title in the page language.
    pub title: String,
    /// Start of the description.
    pub summary: String,
    /// Provider name.
    pub provider: String,
    /// Category label.
    pub category: String,
    /// Open type label.
    pub open_type: String,
    /// Open type code (for styling).
    pub open_code: String,
    /// Grade 1–4.
    pub grade: i32,
    /// "Grade n" in the page language.
    pub grade_text: String,
}

fn label_of<T: Copy>(
    page: &Page,
    parsed: Option<T>,
    key: fn(T) -> &'static str,
    raw: &str,
) -> String {
    parsed.map_or_else(|| raw.to_owned(), |v| page.t(key(v)).to_owned())
}

fn card(page: &Page, d: &Dataset, provider: String) -> DatasetCard {
    let description = d.description(page.lang);
    let mut summary: String = description.chars().take(160).collect();
    if description.chars().nth(160).is_some() {
        summary.push('…');
    }
    DatasetCard {
        id: d.id,
        title: d.title(page.lang).to_owned(),
        summary,
        provider,
        category: label_of(
            page,
            Category::parse(&d.category),
            Category::label_key,
            &d.category,
        ),
        open_type: label_of(
            page,
            OpenType::parse(&d.open_type),
            OpenType::label_key,
            &d.open_type,
        ),
        open_code: d.open_type.clone(),
        grade: d.grade,
        grade_text: page.t_args("catalog.grade_n", &[("n", d.grade.to_string())]),
    }
}

/// The metadata of a dataset, labelled in the page language.
#[derive(Debug, Clone)]
pub struct MetaView {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Title in the other language.
    pub other_title: String,
    /// Description.
    pub description: String,
    /// Provider name.
    pub provider: String,
    /// Category label.
    pub category: String,
    /// "Grade n".
    pub grade_text: String,
    /// Open type label.
    pub open_type: String,
    /// Sharing type label.
    pub sharing_type: String,
    /// Update frequency label.
    pub frequency: String,
    /// Source.
    pub source: String,
    /// Contact.
    pub contact: String,
    /// Last change (UTC).
    pub updated_at: String,
}

fn meta_view(page: &Page, d: &Dataset, provider: String) -> MetaView {
    let other = match page.lang {
        Lang::Zh => &d.title_en,
        Lang::En => &d.title_zh,
    };
    MetaView {
        id: d.id,
        title: d.title(page.lang).to_owned(),
        other_title: other.clone(),
        description: d.description(page.lang).to_owned(),
        provider,
        category: label_of(
            page,
            Category::parse(&d.category),
            Category::label_key,
            &d.category,
        ),
        grade_text: page.t_args("catalog.grade_n", &[("n", d.grade.to_string())]),
        open_type: label_of(
            page,
            OpenType::parse(&d.open_type),
            OpenType::label_key,
            &d.open_type,
        ),
        sharing_type: label_of(
            page,
            SharingType::parse(&d.sharing_type),
            SharingType::label_key,
            &d.sharing_type,
        ),
        frequency: label_of(
            page,
            UpdateFrequency::parse(&d.update_frequency),
            UpdateFrequency::label_key,
            &d.update_frequency,
        ),
        source: d.source.clone(),
        contact: d.contact.clone(),
        updated_at: page.time_min(d.updated_at),
    }
}

/// A schema column, labelled in the page language.
#[derive(Debug, Clone)]
pub struct ColumnView {
    /// Id.
    pub id: i64,
    /// Position.
    pub position: i32,
    /// Header name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Type, e.g. `Decimal (2 decimals)`.
    pub ty: String,
    /// Role label.
    pub role: String,
    /// Role code (for styling).
    pub role_code: String,
    /// Whether empty values are allowed.
    pub nullable: bool,
    /// The first codes of a category column: (code, label).
    pub codes: Vec<(String, String)>,
    /// "and n more codes", when not all are shown.
    pub more_codes: Option<String>,
}

fn column_view(page: &Page, c: &Column) -> ColumnView {
    let ty = c.ty();
    let mut ty_label = page.t(ty.label_key()).to_owned();
    match ty {
        ColType::Decimal => {
            ty_label = page.t_args(
                "catalog.type_decimal_scale",
                &[("scale", c.scale.to_string())],
            )
        }
        ColType::Text => {
            ty_label = page.t_args(
                "catalog.type_text_max",
                &[("max", c.max_length.to_string())],
            )
        }
        _ => {}
    }
    let labels = c.code_labels();
    let shown = 30;
    ColumnView {
        id: c.id,
        position: c.position,
        name: c.name.clone(),
        label: c.label(page.lang).to_owned(),
        ty: ty_label,
        role: page.t(c.role().label_key()).to_owned(),
        role_code: c.role.clone(),
        nullable: c.nullable,
        codes: labels
            .iter()
            .take(shown)
            .map(|l| (l.code.clone(), l.label(page.lang).to_owned()))
            .collect(),
        more_codes: (labels.len() > shown).then(|| {
            page.t_args(
                "catalog.more_codes",
                &[("n", (labels.len() - shown).to_string())],
            )
        }),
    }
}

/// A version as listed to its provider.
#[derive(Debug, Clone)]
pub struct VersionView {
    /// Row id.
    pub id: i64,
    /// Number.
    pub no: i32,
    /// Its state's message key.
    pub state_key: &'static str,
    /// Its state's badge class.
    pub badge: &'static str,
    /// Its schema version (published versions).
    pub schema_no: Option<i32>,
    /// Rows.
    pub rows: i64,
    /// Upload size, human-readable.
    pub size: String,
    /// sha256 of the upload.
    pub sha256: String,
    /// Uploader.
    pub uploaded_by: String,
    /// When (UTC).
    pub created_at: String,
}

fn version_view(page: &Page, v: &Version, by: String) -> VersionView {
    let st = v.state;
    VersionView {
        id: v.id,
        no: v.version_no,
        state_key: st.label_key(),
        badge: st.badge(),
        schema_no: (st == super::machine::VersionState::Published).then_some(v.schema_no),
        rows: v.row_count,
        size: human_bytes(v.byte_count.max(0) as u64),
        sha256: v.sha256.clone(),
        uploaded_by: by,
        created_at: page.time(v.created_at),
    }
}

// ---------------------------------------------------------------- public catalog

/// Query of the catalog list (page and API); unknown values are ignored on the page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Search words.
    pub q: String,
    /// Category code.
    pub category: String,
    /// Open type code.
    pub open_type: String,
    /// Provider organisation id.
    pub provider: String,
    /// 1-based page.
    pub page: String,
    /// Page size (API only).
    pub per_page: String,
}

impl ListQuery {
    fn filter(&self) -> Filter {
        Filter {
            q: Some(self.q.chars().take(100).collect::<String>()).filter(|q| !q.trim().is_empty()),
            category: Category::parse(&self.category),
            open_type: OpenType::parse(&self.open_type),
            provider: self.provider.parse().ok(),
        }
    }

    fn page_no(&self) -> i64 {
        self.page.parse::<i64>().unwrap_or(1).clamp(1, 100_000)
    }

    /// The query string of this query on another page.
    fn href(&self, page: i64) -> String {
        let mut parts = vec![format!("page={page}")];
        for (k, v) in [
            ("q", &self.q),
            ("category", &self.category),
            ("open_type", &self.open_type),
            ("provider", &self.provider),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", crate::web::url_encode(v)));
            }
        }
        format!("/catalog?{}", parts.join("&"))
    }
}

#[derive(Template)]
#[template(path = "catalog/list.html")]
struct ListPage {
    page: Page,
    q: String,
    categories: Vec<Choice>,
    open_types: Vec<Choice>,
    providers: Vec<Choice>,
    items: Vec<DatasetCard>,
    count_text: String,
    page_text: String,
    prev_href: Option<String>,
    next_href: Option<String>,
}
crate::impl_page!(ListPage);

/// `GET /catalog`: the public catalog with search, filters and paging.
pub async fn catalog_list(
    req: HttpRequest,
    page: Page,
    query: crate::input::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let state = app_state(&req)?;
    let query = query.into_inner();
    let filter = query.filter();
    let page_no = query.page_no();
    let f = filter.clone();
    let (rows, total, providers) = db(&state, move |conn| {
        let (rows, total) = model::list_datasets(conn, &f, (page_no - 1) * PER_PAGE, PER_PAGE)?;
        Ok((rows, total, model::providers(conn)?))
    })
    .await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let items = rows.into_iter().map(|(d, p)| card(&page, &d, p)).collect();
    let categories = choices(Category::ALL, &query.category, Category::as_str, |c| {
        page.t(c.label_key()).to_owned()
    });
    let open_types = choices(OpenType::ALL, &query.open_type, OpenType::as_str, |o| {
        page.t(o.label_key()).to_owned()
    });
    let providers = providers
        .into_iter()
        .map(|(id, name)| Choice {
            selected: id.to_string() == query.provider,
            value: id.to_string(),
            label: name,
        })
        .collect();
    render(&ListPage {
        q: query.q.clone(),
        categories,
        open_types,
        providers,
        items,
        count_text: page.t_args("catalog.result_count", &[("n", total.to_string())]),
        page_text: page.t_args(
            "catalog.page_of",
            &[("page", page_no.to_string()), ("pages", pages.to_string())],
        ),
        prev_href: (page_no > 1).then(|| query.href(page_no - 1)),
        next_href: (page_no < pages).then(|| query.href(page_no + 1)),
        page,
    })
}

#[derive(Template)]
#[template(path = "catalog/show.html")]
struct ShowPage {
    page: Page,
    meta: MetaView,
    columns: Vec<ColumnView>,
    versions_text: String,
    can_manage: bool,
}
crate::impl_page!(ShowPage);

/// `GET /catalog/{id}`: a dataset's metadata and schema (never its rows).
pub async fn catalog_show(
    req: HttpRequest,
    page: Page,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let state = app_state(&req)?;
    let id = path.into_inner();
    let (d, provider, cols, vers) = db(&state, move |conn| {
        let (d, p) = model::find_dataset(conn, id)?.ok_or_else(AppError::not_found)?;
        Ok((
            d,
            p,
            model::columns_of(conn, id)?,
            model::published_versions_of(conn, id)?,
        ))
    })
    .await?;
    let can_manage = page
        .user
        .as_ref()
        .is_some_and(|u| u.role == UserRole::Provider && u.org_id == d.provider_org_id);
    render(&ShowPage {
        meta: meta_view(&page, &d, provider),
        columns: cols.iter().map(|c| column_view(&page, c)).collect(),
        versions_text: match vers.first() {
            Some((v, _)) => page.t_args(
                "catalog.latest_version",
                &[
                    ("n", vers.len().to_string()),
                    ("no", v.version_no.to_string()),
                    ("rows", v.row_count.to_string()),
                    ("at", page.time_min(v.created_at)),
                ],
            ),
            None => page.t("catalog.no_versions_public").to_owned(),
        },
        can_manage,
        page,
    })
}

fn dataset_json(d: &Dataset, provider: &str) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "title_zh": d.title_zh,
        "title_en": d.title_en,
        "description_zh": d.description_zh,
        "description_en": d.description_en,
        "provider": { "id": d.provider_org_id, "name": provider },
        "category": d.category,
        "grade": d.grade,
        "open_type": d.open_type,
        "sharing_type": d.sharing_type,
        "update_frequency": d.update_frequency,
        "source": d.source,
        "contact": d.contact,
        "created_at": d.created_at.and_utc().to_rfc3339(),
        "updated_at": d.updated_at.and_utc().to_rfc3339(),
    })
}

fn column_json(c: &Column) -> serde_json::Value {
    let mut v = serde_json::json!({
        "position": c.position,
        "name": c.name,
        "label_zh": c.label_zh,
        "label_en": c.label_en,
        "type": c.col_type,
        "role": c.role,
        "nullable": c.nullable,
    });
    match c.ty() {
        ColType::Decimal => v["scale"] = c.scale.into(),
        ColType::Text => v["max_length"] = c.max_length.into(),
        ColType::Category => v["codes"] = serde_json::to_value(c.code_labels()).unwrap_or_default(),
        _ => {}
    }
    v
}

/// `GET /api/v1/datasets`: the catalog as JSON, with the page's filters and paging
/// (`page`, `per_page` up to 100). Unknown filter values are a 400.
pub async fn api_list(
    req: HttpRequest,
    query: crate::input::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let state = app_state(&req)?;
    let query = query.into_inner();
    let filter = query.filter();
    let bad = |field: &str| {
        AppError::bad_request("catalog.err_api_filter").arg("field", field.to_owned())
    };
    if !query.category.is_empty() && filter.category.is_none() {
        return Err(bad("category"));
    }
    if !query.open_type.is_empty() && filter.open_type.is_none() {
        return Err(bad("open_type"));
    }
    if !query.provider.is_empty() && filter.provider.is_none() {
        return Err(bad("provider"));
    }
    let page_no = match query.page.as_str() {
        "" => 1,
        p => p
            .parse::<i64>()
            .ok()
            .filter(|p| (1..=100_000).contains(p))
            .ok_or_else(|| bad("page"))?,
    };
    let per_page = match query.per_page.as_str() {
        "" => PER_PAGE,
        p => p
            .parse::<i64>()
            .ok()
            .filter(|p| (1..=MAX_PER_PAGE).contains(p))
            .ok_or_else(|| bad("per_page"))?,
    };
    let (rows, total) = db(&state, move |conn| {
        Ok(model::list_datasets(
            conn,
            &filter,
            (page_no - 1) * per_page,
            per_page,
        )?)
    })
    .await?;
    let items: Vec<_> = rows.iter().map(|(d, p)| dataset_json(d, p)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "total": total,
        "page": page_no,
        "per_page": per_page,
    })))
}

/// `GET /api/v1/datasets/{id}`: one dataset's metadata, schema and version list as JSON.
pub async fn api_show(req: HttpRequest, path: web::Path<i64>) -> Result<HttpResponse, AppError> {
    let state = app_state(&req)?;
    let id = path.into_inner();
    let (d, provider, cols, vers) = db(&state, move |conn| {
        let (d, p) = model::find_dataset(conn, id)?.ok_or_else(AppError::not_found)?;
        Ok((
            d,
            p,
            model::columns_of(conn, id)?,
            model::published_versions_of(conn, id)?,
        ))
    })
    .await?;
    let mut v = dataset_json(&d, &provider);
    v["columns"] = cols.iter().map(column_json).collect();
    v["versions"] = vers
        .iter()
        .map(|(v, _)| {
            serde_json::json!({
                "version_no": v.version_no,
                "rows": v.row_count,
                "bytes": v.byte_count,
                "sha256": v.sha256,
                "schema_no": v.schema_no,
                "created_at": v.created_at.and_utc().to_rfc3339(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(v))
}

// ---------------------------------------------------------------- provider pages

fn require_provider(user: &CurrentUser) -> Result<(), AppError> {
    user.require(&[UserRole::Provider])
}

/// The dataset `id` if the user's organisation provides it: 404 if there is none, 403 if it
/// belongs to another provider.
fn owned(conn: &mut DbConnection, user_org: i64, id: i64) -> Result<(Dataset, String), AppError> {
    let (d, p) = model::find_dataset(conn, id)?.ok_or_else(AppError::not_found)?;
    if d.provider_org_id != user_org {
        return Err(AppError::forbidden());
    }
    Ok((d, p))
}

#[derive(Template)]
#[template(path = "catalog/mine.html")]
struct MinePage {
    page: Page,
    items: Vec<(DatasetCard, i64)>,
}
crate::impl_page!(MinePage);

/// `GET /provider/datasets`: the datasets of the provider's organisation.
pub async fn my_datasets(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let state = app_state(&req)?;
    let org = user.org_id;
    let rows = db(&state, move |conn| Ok(model::datasets_of(conn, org)?)).await?;
    let items = rows
        .iter()
        .map(|(d, n)| (card(&page, d, user.org_name.clone()), *n))
        .collect();
    render(&MinePage { page, items })
}

#[derive(Template)]
#[template(path = "catalog/dataset_form.html")]
struct DatasetFormPage {
    page: Page,
    action: String,
    cancel: String,
    editing: bool,
    form: DatasetForm,
    error: Option<String>,
    categories: Vec<Choice>,
    grades: Vec<Choice>,
    open_types: Vec<Choice>,
    sharing_types: Vec<Choice>,
    frequencies: Vec<Choice>,
}
crate::impl_page!(DatasetFormPage);

fn dataset_form_page(
    page: Page,
    action: String,
    cancel: String,
    form: DatasetForm,
    error: Option<&str>,
) -> DatasetFormPage {
    let t = |k: &'static str| page.t(k).to_owned();
    let categories = choices(Category::ALL, &form.category, Category::as_str, |c| {
        t(c.label_key())
    });
    let grades = model::GRADES
        .iter()
        .map(|g| Choice {
            value: g.to_string(),
            label: page.t_args("catalog.grade_n", &[("n", g.to_string())]),
            selected: g.to_string() == form.grade,
        })
        .collect();
    let open_types = choices(OpenType::ALL, &form.open_type, OpenType::as_str, |o| {
        t(o.label_key())
    });
    let sharing_types = choices(
        SharingType::ALL,
        &form.sharing_type,
        SharingType::as_str,
        |s| t(s.label_key()),
    );
    let frequencies = choices(
        UpdateFrequency::ALL,
        &form.update_frequency,
        UpdateFrequency::as_str,
        |f| t(f.label_key()),
    );
    let error = error.map(|k| page.t(k).to_owned());
    DatasetFormPage {
        editing: action.ends_with("/edit"),
        action,
        cancel,
        form,
        error,
        categories,
        grades,
        open_types,
        sharing_types,
        frequencies,
        page,
    }
}

/// `GET /provider/datasets/new`: the empty dataset form.
pub async fn new_dataset(page: Page, user: CurrentUser) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let form = DatasetForm {
        grade: "2".into(),
        contact: user.org_name.clone(),
        ..DatasetForm::default()
    };
    render(&dataset_form_page(
        page,
        "/provider/datasets".into(),
        "/provider/datasets".into(),
        form,
        None,
    ))
}

/// `POST /provider/datasets`: creates a dataset of the provider's organisation.
pub async fn create_dataset(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    form: crate::input::Form<DatasetForm>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let form = form.into_inner();
    page.check_csrf(&form.csrf)?;
    let fields = match form.validate() {
        Ok(f) => f,
        Err(key) => {
            return render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &dataset_form_page(
                    page,
                    "/provider/datasets".into(),
                    "/provider/datasets".into(),
                    form,
                    Some(key),
                ),
            );
        }
    };
    let state = app_state(&req)?;
    let id = db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            let id = model::insert_dataset(conn, user.org_id, user.id, &fields)?;
            audit::record(
                conn,
                &user.actor(),
                "dataset.create",
                "dataset",
                &id.to_string(),
                serde_json::json!({ "title_zh": fields.title_zh, "title_en": fields.title_en }),
            )?;
            Ok(id)
        })
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}"),
        "ok",
        "catalog.flash_created",
    ))
}

/// What the manage page shows besides the dataset.
#[derive(Debug, Clone, Default)]
pub struct Refusal {
    /// The summary of why the file was refused.
    pub message: String,
    /// The listed errors: (line, column, reason, value).
    pub errors: Vec<(u64, String, String, String)>,
    /// "n more errors are not listed", when some are not.
    pub more: Option<String>,
}

fn refusal_view(page: &Page, e: &IngestError) -> Refusal {
    let (message, errors, more) = match e {
        IngestError::TooLarge { limit } => (
            page.t_args(
                "catalog.refused_too_large",
                &[("limit", human_bytes(*limit))],
            ),
            Vec::new(),
            0,
        ),
        IngestError::LineTooLong { line } => (
            page.t_args(
                "catalog.refused_line_too_long",
                &[("line", line.to_string())],
            ),
            Vec::new(),
            0,
        ),
        IngestError::Empty => (page.t("catalog.refused_empty").to_owned(), Vec::new(), 0),
        IngestError::NoRows => (page.t("catalog.refused_no_rows").to_owned(), Vec::new(), 0),
        IngestError::BadHeader { expected, found } => (
            page.t_args(
                "catalog.refused_header",
                &[
                    ("expected", expected.join(",")),
                    ("found", found.join(",").chars().take(300).collect()),
                ],
            ),
            Vec::new(),
            0,
        ),
        IngestError::Rejected {
            errors,
            total,
            rows,
        } => (
            page.t_args(
                "catalog.refused_rows",
                &[("total", total.to_string()), ("rows", rows.to_string())],
            ),
            errors
                .iter()
                .map(|e| {
                    let reason = page.t_args(e.reason.message_key(), &e.reason.args());
                    (
                        e.line,
                        e.column.clone().unwrap_or_else(|| "—".into()),
                        reason,
                        e.value.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            total.saturating_sub(errors.len() as u64),
        ),
        IngestError::Io(_) => (page.t("common.error_internal").to_owned(), Vec::new(), 0),
    };
    Refusal {
        message,
        errors,
        more: (more > 0).then(|| page.t_args("catalog.more_errors", &[("n", more.to_string())])),
    }
}

#[derive(Template)]
#[template(path = "catalog/manage.html")]
struct ManagePage {
    page: Page,
    meta: MetaView,
    columns: Vec<ColumnView>,
    versions: Vec<VersionView>,
    column_form: ColumnForm,
    column_error: Option<String>,
    col_types: Vec<Choice>,
    roles: Vec<Choice>,
    refusal: Option<Refusal>,
    upload_help: String,
}
crate::impl_page!(ManagePage);

struct ManageData {
    dataset: Dataset,
    provider: String,
    columns: Vec<Column>,
    versions: Vec<(Version, String)>,
}

async fn manage_data(
    req: &HttpRequest,
    user: &CurrentUser,
    id: i64,
) -> Result<ManageData, AppError> {
    let state = app_state(req)?;
    let org = user.org_id;
    db(&state, move |conn| {
        let (dataset, provider) = owned(conn, org, id)?;
        Ok(ManageData {
            dataset,
            provider,
            columns: model::columns_of(conn, id)?,
            versions: model::versions_of(conn, id)?,
        })
    })
    .await
}

fn manage_page(
    req: &HttpRequest,
    page: Page,
    data: ManageData,
    column_form: ColumnForm,
    column_error: Option<&str>,
    refusal: Option<&IngestError>,
) -> Result<ManagePage, AppError> {
    let state = app_state(req)?;
    let col_types = choices(ColType::ALL, &column_form.col_type, ColType::as_str, |c| {
        page.t(c.label_key()).to_owned()
    });
    let roles = choices(Role::ALL, &column_form.role, Role::as_str, |r| {
        page.t(r.label_key()).to_owned()
    });
    Ok(ManagePage {
        meta: meta_view(&page, &data.dataset, data.provider),
        columns: data.columns.iter().map(|c| column_view(&page, c)).collect(),
        versions: data
            .versions
            .iter()
            .map(|(v, by)| version_view(&page, v, by.clone()))
            .collect(),
        column_error: column_error.map(|k| page.t(k).to_owned()),
        refusal: refusal.map(|e| refusal_view(&page, e)),
        upload_help: page.t_args(
            "catalog.upload_help",
            &[("limit", human_bytes(state.config.upload_limit_bytes))],
        ),
        column_form,
        col_types,
        roles,
        page,
    })
}

fn new_column_form() -> ColumnForm {
    ColumnForm {
        col_type: "text".into(),
        role: "plain".into(),
        scale: "2".into(),
        max_length: "1000".into(),
        ..ColumnForm::default()
    }
}

/// `GET /provider/datasets/{id}`: the provider's page of one dataset: description, schema,
/// versions and the upload form.
pub async fn manage(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let data = manage_data(&req, &user, path.id).await?;
    render(&manage_page(
        &req,
        page,
        data,
        new_column_form(),
        None,
        None,
    )?)
}

/// `GET /provider/datasets/{id}/edit`: the dataset form filled in.
pub async fn edit_dataset(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let id = path.into_inner();
    let state = app_state(&req)?;
    let org = user.org_id;
    let (d, _) = db(&state, move |conn| owned(conn, org, id)).await?;
    render(&dataset_form_page(
        page,
        format!("/provider/datasets/{id}/edit"),
        format!("/provider/datasets/{id}"),
        DatasetForm::from_dataset(&d),
        None,
    ))
}

/// `POST /provider/datasets/{id}/edit`: saves the description.
pub async fn update_dataset(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<i64>,
    form: crate::input::Form<DatasetForm>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let id = path.into_inner();
    let form = form.into_inner();
    page.check_csrf(&form.csrf)?;
    let state = app_state(&req)?;
    let org = user.org_id;
    db(&state, move |conn| owned(conn, org, id)).await?;
    let fields = match form.validate() {
        Ok(f) => f,
        Err(key) => {
            return render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &dataset_form_page(
                    page,
                    format!("/provider/datasets/{id}/edit"),
                    format!("/provider/datasets/{id}"),
                    form,
                    Some(key),
                ),
            );
        }
    };
    db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            owned(conn, user.org_id, id)?;
            model::update_dataset(conn, id, &fields)?;
            audit::record(
                conn,
                &user.actor(),
                "dataset.update",
                "dataset",
                &id.to_string(),
                serde_json::json!({ "title_zh": fields.title_zh, "title_en": fields.title_en }),
            )?;
            Ok(())
        })
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}"),
        "ok",
        "catalog.flash_saved",
    ))
}

/// Validates a column form against the dataset's other columns.
fn check_column(
    form: &ColumnForm,
    others: &[Column],
    editing: Option<i64>,
) -> Result<model::ColumnFields, &'static str> {
    let next = others.iter().map(|c| c.position).max().unwrap_or(0) + 1;
    let fields = form.validate(next)?;
    let others: Vec<&Column> = others.iter().filter(|c| Some(c.id) != editing).collect();
    if others.iter().any(|c| c.name == fields.name) {
        return Err("catalog.err_column_duplicate");
    }
    if editing.is_none() && others.len() >= forms::MAX_COLUMNS {
        return Err("catalog.err_columns_many");
    }
    Ok(fields)
}

/// `POST /provider/datasets/{id}/columns`: adds a schema column.
pub async fn add_column(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<i64>,
    form: crate::input::Form<ColumnForm>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let id = path.into_inner();
    let form = form.into_inner();
    page.check_csrf(&form.csrf)?;
    let data = manage_data(&req, &user, id).await?;
    let fields = match check_column(&form, &data.columns, None) {
        Ok(f) => f,
        Err(key) => {
            return render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &manage_page(&req, page, data, form, Some(key), None)?,
            );
        }
    };
    let state = app_state(&req)?;
    db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            owned(conn, user.org_id, id)?;
            let cid = model::insert_column(conn, id, &fields)?;
            audit::record(
                conn,
                &user.actor(),
                "dataset.column_add",
                "dataset",
                &id.to_string(),
                serde_json::json!({ "column_id": cid, "name": fields.name, "type": fields.col_type, "role": fields.role }),
            )?;
            Ok(())
        })
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}#schema"),
        "ok",
        "catalog.flash_column_added",
    ))
}

#[derive(Template)]
#[template(path = "catalog/column_form.html")]
struct ColumnFormPage {
    page: Page,
    dataset_id: i64,
    dataset_title: String,
    column_id: i64,
    column_form: ColumnForm,
    column_error: Option<String>,
    col_types: Vec<Choice>,
    roles: Vec<Choice>,
}
crate::impl_page!(ColumnFormPage);

fn column_form_page(
    page: Page,
    d: &Dataset,
    cid: i64,
    form: ColumnForm,
    error: Option<&str>,
) -> ColumnFormPage {
    let col_types = choices(ColType::ALL, &form.col_type, ColType::as_str, |c| {
        page.t(c.label_key()).to_owned()
    });
    let roles = choices(Role::ALL, &form.role, Role::as_str, |r| {
        page.t(r.label_key()).to_owned()
    });
    ColumnFormPage {
        dataset_id: d.id,
        dataset_title: d.title(page.lang).to_owned(),
        column_id: cid,
        column_form: form,
        column_error: error.map(|k| page.t(k).to_owned()),
        col_types,
        roles,
        page,
    }
}

/// `GET /provider/datasets/{id}/columns/{cid}/edit`: the column form filled in.
pub async fn edit_column(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let (id, cid) = path.into_inner();
    let data = manage_data(&req, &user, id).await?;
    let column = data
        .columns
        .iter()
        .find(|c| c.id == cid)
        .ok_or_else(AppError::not_found)?;
    render(&column_form_page(
        page,
        &data.dataset,
        cid,
        ColumnForm::from_column(column),
        None,
    ))
}

/// `POST /provider/datasets/{id}/columns/{cid}/edit`: saves a column. Earlier versions keep
/// the schema they were ingested with (it is in their `meta.json`).
pub async fn update_column(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<ColumnForm>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let (id, cid) = path.into_inner();
    let form = form.into_inner();
    page.check_csrf(&form.csrf)?;
    let data = manage_data(&req, &user, id).await?;
    if !data.columns.iter().any(|c| c.id == cid) {
        return Err(AppError::not_found());
    }
    let fields = match check_column(&form, &data.columns, Some(cid)) {
        Ok(f) => f,
        Err(key) => {
            return render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &column_form_page(page, &data.dataset, cid, form, Some(key)),
            );
        }
    };
    let state = app_state(&req)?;
    db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            owned(conn, user.org_id, id)?;
            model::update_column(conn, cid, &fields)?;
            audit::record(
                conn,
                &user.actor(),
                "dataset.column_update",
                "dataset",
                &id.to_string(),
                serde_json::json!({ "column_id": cid, "name": fields.name, "type": fields.col_type, "role": fields.role }),
            )?;
            Ok(())
        })
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}#schema"),
        "ok",
        "catalog.flash_saved",
    ))
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// CSRF token.
    #[serde(default)]
    pub csrf: String,
}

/// `POST /provider/datasets/{id}/columns/{cid}/delete`: removes a column.
pub async fn delete_column(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    page.check_csrf(&form.csrf)?;
    let (id, cid) = path.into_inner();
    let state = app_state(&req)?;
    db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            owned(conn, user.org_id, id)?;
            let name = model::columns_of(conn, id)?
                .into_iter()
                .find(|c| c.id == cid)
                .ok_or_else(AppError::not_found)?
                .name;
            model::delete_column(conn, cid)?;
            audit::record(
                conn,
                &user.actor(),
                "dataset.column_delete",
                "dataset",
                &id.to_string(),
                serde_json::json!({ "column_id": cid, "name": name }),
            )?;
            Ok(())
        })
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}#schema"),
        "ok",
        "catalog.flash_column_deleted",
    ))
}

/// Removes a file when dropped (the uploaded CSV, whatever happens to the request).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bad_multipart(_: actix_multipart::MultipartError) -> AppError {
    AppError::bad_request("catalog.err_upload_form")
}

/// `POST /provider/datasets/{id}/versions` (multipart: `csrf`, then `file`): streams the CSV
/// to disk within the size limit, ingests it, and either records a new draft version (and
/// shows its preview) or shows the refusal with the rows in error.
pub async fn upload_version(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<i64>,
    mut payload: Multipart,
) -> Result<HttpResponse, AppError> {
    require_provider(&user)?;
    let id = path.into_inner();
    let state = app_state(&req)?;
    let org = user.org_id;
    db(&state, move |conn| owned(conn, org, id)).await?;
    let limit = state.config.upload_limit_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    state.scratch.ensure_room(declared.min(limit))?;
    let file_path = state.scratch.file("upload", ".csv");
    let _cleanup = RemoveOnDrop(file_path.clone());
    let mut csrf_ok = false;
    let mut size: Option<u64> = None;
    while let Some(mut field) = payload.try_next().await.map_err(bad_multipart)? {
        match field.name() {
            Some("csrf") => {
                let mut token = Vec::new();
                while let Some(chunk) = field.try_next().await.map_err(bad_multipart)? {
                    if token.len() + chunk.len() > 256 {
                        return Err(AppError::bad_request("catalog.err_upload_form"));
                    }
                    token.extend_from_slice(&chunk);
                }
                page.check_csrf(&String::from_utf8_lossy(&token))?;
                csrf_ok = true;
            }
            Some("file") if csrf_ok && size.is_none() => {
                let mut file = std::fs::File::create(&file_path)?;
                let mut written: u64 = 0;
                let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
                while let Some(chunk) = field.try_next().await.map_err(bad_multipart)? {
                    written += chunk.len() as u64;
                    if written > limit {
                        crate::web::drain_upload(&mut payload, field, written).await;
                        return Err(AppError::http(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "catalog.err_upload_too_large",
                        )
                        .arg("limit", human_bytes(limit)));
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= 1 << 20 {
                        let full = std::mem::replace(&mut buf, Vec::with_capacity(1 << 20));
                        file = web::block(move || file.write_all(&full).map(|_| file)).await??;
                    }
                }
                web::block(move || {
                    file.write_all(&buf)?;
                    file.sync_all()
                })
                .await??;
                size = Some(written);
            }
            Some("file") if !csrf_ok => {
                return Err(AppError::http(StatusCode::FORBIDDEN, "common.error_csrf"));
            }
            _ => return Err(AppError::bad_request("catalog.err_upload_form")),
        }
    }
    if !csrf_ok {
        return Err(AppError::http(StatusCode::FORBIDDEN, "common.error_csrf"));
    }
    if size.unwrap_or(0) == 0 {
        let data = manage_data(&req, &user, id).await?;
        let mut p = manage_page(&req, page, data, new_column_form(), None, None)?;
        p.refusal = Some(Refusal {
            message: p.t("catalog.err_no_file").to_owned(),
            ..Refusal::default()
        });
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &p);
    }
    let key = PseudonymKey::new(&state.secrets.pseudonym_key);
    let actor = user.actor();
    let uid = user.id;
    let st = state.clone();
    let path_for_ingest = file_path.clone();
    state.scratch.ensure_room(size.unwrap_or(0))?;
    let outcome = web::block(move || {
        let file = std::fs::File::open(&path_for_ingest)?;
        ops::add_version(
            &st.pool,
            &st.config.data_dir,
            st.scratch.dir(),
            &key,
            limit,
            &actor,
            uid,
            id,
            file,
        )
    })
    .await??;
    match outcome {
        Ok(added) => Ok(redirect_with_flash(
            &format!("/provider/datasets/{id}/versions/{}", added.id),
            "ok",
            "catalog.flash_version_added",
        )),
        Err(refused) => {
            let data = manage_data(&req, &user, id).await?;
            render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &manage_page(&req, page, data, new_column_form(), None, Some(&refused))?,
            )
        }
    }
}

/// Redirects `/provider` to the provider's datasets.
pub async fn provider_home() -> HttpResponse {
    redirect("/provider/datasets")
}
