//! Catalog request handlers, one file per page group: `public` (the catalog and its API),
//! `datasets` (the provider's datasets and columns), `upload` (a new version), [`versions`]
//! (a version's preview, publication and discard). This file holds the views they share.
//!
//! Public: the catalog list and dataset pages, `/api/v1/datasets[/{id}]`. Providers: their
//! datasets, the description and column forms, and the CSV upload. No handler returns data rows.

mod datasets;
mod public;
mod upload;
pub mod versions;

pub use datasets::*;
pub use public::*;
pub use upload::*;

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
