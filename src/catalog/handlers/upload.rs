//! The CSV upload of a new version (streamed to the ingest, limits on size and fields).

use super::*;

/// Removes a file when dropped (the uploaded CSV, whatever happens to the request).
pub(super) struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn bad_multipart(_: actix_multipart::MultipartError) -> AppError {
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
                let token = crate::input::multipart_text(&mut field, "csrf", 256).await?;
                page.check_csrf(&token)?;
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
            &st.clock,
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
