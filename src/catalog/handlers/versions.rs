//! The preview page of a dataset version and its publish and discard actions.
//!
//! The preview shows the version's facts, its columns with their types and roles, the value
//! summaries computed at upload ([`super::summary`]) and how its schema compares with the
//! published one; never a row. Only the provider's own organisation and platform staff see it;
//! only the provider publishes or discards.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::CsrfForm;
use crate::auth::{CurrentUser, Role as UserRole};
use crate::catalog::machine::VersionState;
use crate::catalog::model::{self, Column};
use crate::catalog::ops::{self, SchemaColumn, SchemaDiff};
use crate::errors::AppError;
use crate::web::human_bytes;
use crate::web::{Page, app_state, db, redirect_with_flash, render};

/// One column of the preview.
#[derive(Debug, Clone)]
pub struct PreviewColumn {
    /// Header name.
    pub name: String,
    /// Label in the page language (empty when the catalog no longer declares the column).
    pub label: String,
    /// Type label.
    pub ty: String,
    /// Role label.
    pub role: String,
    /// NULL values.
    pub nulls: String,
    /// `min – max` of numbers and dates.
    pub range: String,
    /// The most frequent category codes: `code (count)`.
    pub top: Vec<String>,
}

#[derive(Template)]
#[template(path = "catalog/version.html")]
struct PreviewPage {
    page: Page,
    dataset_id: i64,
    title: String,
    version_id: i64,
    no: i32,
    rows: i64,
    size: String,
    sha256: String,
    uploaded_by: String,
    created_at: String,
    state_key: &'static str,
    badge: &'static str,
    schema_text: String,
    diff: SchemaDiff,
    columns: Vec<PreviewColumn>,
    can_decide: bool,
}
crate::impl_page!(PreviewPage);

fn preview_column(
    page: &Page,
    c: &SchemaColumn,
    declared: &[Column],
    s: Option<&crate::catalog::summary::ColumnSummary>,
) -> PreviewColumn {
    let role = match c.role {
        dataop_sandbox::columnar::ColumnRole::Identifier => model::Role::Identifier,
        dataop_sandbox::columnar::ColumnRole::PrivacyUnit => model::Role::PrivacyUnit,
        dataop_sandbox::columnar::ColumnRole::QuasiIdentifier => model::Role::QuasiIdentifier,
        dataop_sandbox::columnar::ColumnRole::Sensitive => model::Role::Sensitive,
        dataop_sandbox::columnar::ColumnRole::Plain => model::Role::Plain,
    };
    let ty = model::ColType::parse(c.type_code()).unwrap_or(model::ColType::Text);
    PreviewColumn {
        name: c.name.clone(),
        label: declared
            .iter()
            .find(|d| d.name == c.name)
            .map(|d| d.label(page.lang).to_owned())
            .unwrap_or_default(),
        ty: page.t(ty.label_key()).to_owned(),
        role: page.t(role.label_key()).to_owned(),
        nulls: s.map_or_else(|| "—".to_owned(), |s| s.nulls.to_string()),
        range: match s.and_then(|s| Some((s.min.as_ref()?, s.max.as_ref()?))) {
            Some((lo, hi)) => format!("{lo} – {hi}"),
            None => String::new(),
        },
        top: s
            .map(|s| {
                s.top
                    .iter()
                    .map(|(code, n)| format!("{code} ({n})"))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `GET /provider/datasets/{id}/versions/{vid}`: the version's preview (its provider's
/// organisation and platform staff).
pub async fn preview(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, AppError> {
    user.require(&[UserRole::Provider, UserRole::PlatformAdmin])?;
    let (id, vid) = path.into_inner();
    let state = app_state(&req)?;
    let data_dir = state.config.data_dir.clone();
    let u = user.clone();
    let (d, v, by, declared, schema, published) = db(&state, move |conn| {
        let (d, _) = model::find_dataset(conn, id)?.ok_or_else(AppError::not_found)?;
        if u.role == UserRole::Provider && d.provider_org_id != u.org_id {
            return Err(AppError::forbidden());
        }
        let (v, by) = model::find_version(conn, vid)?.ok_or_else(AppError::not_found)?;
        if v.dataset_id != id {
            return Err(AppError::not_found());
        }
        let schema = match v.state {
            VersionState::Draft | VersionState::Published => ops::schema_of(&data_dir, &v)?,
            VersionState::Incomplete | VersionState::Discarded => Vec::new(),
        };
        let published = match model::newest_published(conn, id)? {
            Some(p) if p.id != v.id => {
                let s = ops::schema_of(&data_dir, &p)?;
                Some((p, s))
            }
            _ => None,
        };
        Ok((d, v, by, model::columns_of(conn, id)?, schema, published))
    })
    .await?;
    let st = v.state;
    let diff = match (&published, st) {
        (Some((_, old)), VersionState::Draft) => SchemaDiff::between(old, &schema),
        _ => SchemaDiff::default(),
    };
    let schema_text = match (st, &published) {
        (VersionState::Published, _) => page.t_args(
            "catalog.preview_schema_of",
            &[("schema", v.schema_no.to_string())],
        ),
        (VersionState::Draft, None) => page.t("catalog.preview_schema_first").to_owned(),
        (VersionState::Draft, Some((p, _))) if diff.is_empty() => page.t_args(
            "catalog.preview_schema_same",
            &[
                ("no", p.version_no.to_string()),
                ("schema", p.schema_no.to_string()),
            ],
        ),
        (VersionState::Draft, Some((p, _))) => page.t_args(
            "catalog.preview_schema_new",
            &[
                ("no", p.version_no.to_string()),
                ("schema", p.schema_no.to_string()),
            ],
        ),
        _ => String::new(),
    };
    let summaries = v.summaries();
    let columns = schema
        .iter()
        .map(|c| {
            preview_column(
                &page,
                c,
                &declared,
                summaries.iter().find(|s| s.name == c.name),
            )
        })
        .collect();
    render(&PreviewPage {
        dataset_id: id,
        title: d.title(page.lang).to_owned(),
        version_id: v.id,
        no: v.version_no,
        rows: v.row_count,
        size: human_bytes(v.byte_count.max(0) as u64),
        sha256: v.sha256.clone(),
        uploaded_by: by,
        created_at: page.time(v.created_at),
        state_key: st.label_key(),
        badge: st.badge(),
        schema_text,
        diff,
        columns,
        can_decide: st == VersionState::Draft
            && user.role == UserRole::Provider
            && d.provider_org_id == user.org_id,
        page,
    })
}

/// `POST /provider/datasets/{id}/versions/{vid}/publish`: the provider publishes a draft.
pub async fn publish(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let (id, vid) = path.into_inner();
    let state = app_state(&req)?;
    let data_dir = state.config.data_dir.clone();
    let now = state.clock.now();
    let published = db(&state, move |conn| {
        ops::publish(conn, &user, &data_dir, id, vid, now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}/versions/{vid}"),
        "ok",
        if published.new_schema {
            "catalog.flash_published_new_schema"
        } else {
            "catalog.flash_published"
        },
    ))
}

/// `POST /provider/datasets/{id}/versions/{vid}/discard`: the provider discards a draft.
pub async fn discard(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let (id, vid) = path.into_inner();
    let state = app_state(&req)?;
    let data_dir = state.config.data_dir.clone();
    let now = state.clock.now();
    db(&state, move |conn| {
        ops::discard(conn, &user, &data_dir, id, vid, now)
    })
    .await?;
    Ok(redirect_with_flash(
        &format!("/provider/datasets/{id}#versions"),
        "ok",
        "catalog.flash_discarded",
    ))
}
