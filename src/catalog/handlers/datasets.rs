//! The provider's datasets: the list, the description form, the management page, the columns.

use super::*;

pub(super) fn require_provider(user: &CurrentUser) -> Result<(), AppError> {
    user.require(&[UserRole::Provider])
}

/// The dataset `id` if the user's organisation provides it: 404 if there is none, 403 if it
/// belongs to another provider.
pub(super) fn owned(
    conn: &mut DbConnection,
    user_org: i64,
    id: i64,
) -> Result<(Dataset, String), AppError> {
    let (d, p) = model::find_dataset(conn, id)?.ok_or_else(AppError::not_found)?;
    if d.provider_org_id != user_org {
        return Err(AppError::forbidden());
    }
    Ok((d, p))
}

#[derive(Template)]
#[template(path = "catalog/mine.html")]
pub(super) struct MinePage {
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
pub(super) struct DatasetFormPage {
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

pub(super) fn dataset_form_page(
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
    let now = crate::db::to_micros(state.clock.now());
    let id = db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            let id = model::insert_dataset(conn, user.org_id, user.id, &fields, now)?;
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

pub(super) fn refusal_view(page: &Page, e: &IngestError) -> Refusal {
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
pub(super) struct ManagePage {
    page: Page,
    meta: MetaView,
    columns: Vec<ColumnView>,
    versions: Vec<VersionView>,
    column_form: ColumnForm,
    column_error: Option<String>,
    col_types: Vec<Choice>,
    roles: Vec<Choice>,
    pub(super) refusal: Option<Refusal>,
    upload_help: String,
}
crate::impl_page!(ManagePage);

pub(super) struct ManageData {
    dataset: Dataset,
    provider: String,
    columns: Vec<Column>,
    versions: Vec<(Version, String)>,
}

pub(super) async fn manage_data(
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

pub(super) fn manage_page(
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

pub(super) fn new_column_form() -> ColumnForm {
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
    let now = crate::db::to_micros(state.clock.now());
    db(&state, move |conn| {
        crate::db::write_transaction(conn, |conn| {
            owned(conn, user.org_id, id)?;
            model::update_dataset(conn, id, &fields, now)?;
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
pub(super) fn check_column(
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
pub(super) struct ColumnFormPage {
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

pub(super) fn column_form_page(
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
