//! Evidence attachments: PDF, PNG or JPEG only (recognized by their first bytes, never by the
//! name), at most [`MAX_FILE_BYTES`] each and [`MAX_FILES`] per application, stored under
//! `<data_dir>/attachments/<application>/` (outside any web root) and served only to the
//! applicant's organisation and the reviewers (regulator, assigned experts).

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::TryStreamExt as _;
use sha2::{Digest, Sha256};

use super::clock;
use crate::AppState;
use crate::admission::model::{self, EvidenceGroup, visible};
use crate::admission::ops::{self, NewAttachment};
use crate::auth::{CurrentUser, Role};
use crate::errors::AppError;
use crate::input;
use crate::web::human_bytes;
use crate::web::{Page, db, redirect_with_flash};

/// Largest attachment, in bytes (10 MiB).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Most attachments per application.
pub const MAX_FILES: usize = 20;
/// Longest kept file name, in characters.
const MAX_NAME: usize = 120;

/// The content type and extension of an accepted file, from its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"%PDF-") {
        Some(("application/pdf", "pdf"))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else {
        None
    }
}

/// A file name fit to show: no path, no control characters, at most [`MAX_NAME`] characters.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    if cleaned.trim().is_empty() {
        "attachment".into()
    } else {
        cleaned
    }
}

fn bad_form(_: actix_multipart::MultipartError) -> AppError {
    AppError::bad_request("admission.err_upload_form")
}

/// `POST /applications/{id}/attachments` (multipart: `csrf`, `group`, then `file`): adds an
/// evidence file to an editable application of the user's organisation.
pub async fn upload(
    req: HttpRequest,
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    mut payload: Multipart,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    let id = path.into_inner();
    let mut csrf_ok = false;
    let mut group: Option<EvidenceGroup> = None;
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(mut field) = payload.try_next().await.map_err(bad_form)? {
        match field.name() {
            Some("csrf") => {
                page.check_csrf(&input::multipart_text(&mut field, "csrf", 256).await?)?;
                csrf_ok = true;
            }
            Some("group") => {
                let value = input::multipart_text(&mut field, "group", 256).await?;
                crate::detail::keep(&req, "group", &value);
                group = EvidenceGroup::parse(value.trim());
            }
            Some("file") if csrf_ok && file.is_none() => {
                let name = clean_name(
                    field
                        .content_disposition()
                        .and_then(|cd| cd.get_filename())
                        .unwrap_or(""),
                );
                let mut bytes = Vec::new();
                while let Some(chunk) = field.try_next().await.map_err(bad_form)? {
                    if (bytes.len() + chunk.len()) as u64 > MAX_FILE_BYTES {
                        crate::web::drain_upload(&mut payload, field, 0).await;
                        return Err(AppError::http(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "admission.err_file_too_large",
                        )
                        .arg("limit", human_bytes(MAX_FILE_BYTES)));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some((name, bytes));
            }
            Some("file") => return Err(AppError::http(StatusCode::FORBIDDEN, "common.error_csrf")),
            _ => return Err(AppError::bad_request("admission.err_upload_form")),
        }
    }
    if !csrf_ok {
        return Err(AppError::http(StatusCode::FORBIDDEN, "common.error_csrf"));
    }
    let group = group.ok_or_else(|| AppError::invalid("admission.err_group"))?;
    let (name, bytes) = file
        .filter(|(_, b)| !b.is_empty())
        .ok_or_else(|| AppError::invalid("admission.err_no_file"))?;
    let (content_type, ext) =
        sniff(&bytes).ok_or_else(|| AppError::invalid("admission.err_file_type"))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let rel = format!("attachments/{id}/{}.{ext}", uuid::Uuid::new_v4().simple());
    let full = state.config.data_dir.join(&rel);
    let size = bytes.len() as i64;
    let dir = full
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("attachment path has no parent")))?;
    let written = full.clone();
    let tmp = state.scratch.file("attachment", ".part");
    state.scratch.ensure_room(bytes.len() as u64)?;
    web::block(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let stored = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &written));
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        stored
    })
    .await??;
    let att = NewAttachment {
        group,
        file_name: name,
        content_type,
        byte_count: size,
        sha256: sha,
        storage_path: rel,
    };
    let (now, _) = clock(&state);
    let result = db(&state, move |conn| {
        ops::attach(conn, &user, id, &att, MAX_FILES, now)
    })
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&full);
    }
    result?;
    Ok(redirect_with_flash(
        &format!("/applications/{id}#attachments"),
        "ok",
        "admission.flash_attached",
    ))
}

/// `GET /applications/{id}/attachments/{aid}`: the file, for the applicant's organisation,
/// the regulator and the experts assigned to the application (404 for anyone else).
pub async fn download(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, AppError> {
    let (id, aid) = path.into_inner();
    let att = db(&state, move |conn| {
        visible(conn, &user, id)?;
        model::attachments_of(conn, id)?
            .into_iter()
            .find(|a| a.id == aid)
            .ok_or_else(AppError::not_found)
    })
    .await?;
    let full = state.config.data_dir.join(&att.storage_path);
    let bytes = web::block(move || std::fs::read(full)).await??;
    let ext = sniff(&bytes).map_or("bin", |(_, e)| e);
    Ok(HttpResponse::Ok()
        .content_type(att.content_type.as_str())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"attachment-{aid}.{ext}\"; filename*=UTF-8''{}",
                crate::web::url_encode(&att.file_name)
            ),
        ))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .body(bytes))
}

/// `POST /applications/{id}/attachments/{aid}/delete`: removes an attachment of an editable
/// application.
pub async fn delete(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    form: crate::input::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Enterprise])?;
    page.check_csrf(&crate::admission::forms::Pairs(form.into_inner()).get("csrf"))?;
    let (id, aid) = path.into_inner();
    let rel = db(&state, move |conn| ops::detach(conn, &user, id, aid)).await?;
    let _ = std::fs::remove_file(state.config.data_dir.join(rel));
    Ok(redirect_with_flash(
        &format!("/applications/{id}#attachments"),
        "ok",
        "admission.flash_detached",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_content() {
        assert_eq!(
            sniff(b"%PDF-1.7\n...").map(|t| t.0),
            Some("application/pdf")
        );
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").map(|t| t.1), Some("png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).map(|t| t.1), Some("jpg"));
        assert_eq!(sniff(b"just text pretending to be a pdf"), None);
        assert_eq!(clean_name("..\\..\\a/b/证明.pdf"), "证明.pdf");
        assert_eq!(clean_name(""), "attachment");
    }
}
