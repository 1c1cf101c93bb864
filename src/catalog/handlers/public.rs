//! The public catalog (`/catalog`, `/catalog/{id}`) and `/api/v1/datasets[/{id}]`.

use super::*;

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
pub(super) struct ListPage {
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
pub(super) struct ShowPage {
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

pub(super) fn dataset_json(d: &Dataset, provider: &str) -> serde_json::Value {
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

pub(super) fn column_json(c: &Column) -> serde_json::Value {
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
