//! Static assets (CSS, fonts, images) embedded in the binary at build time by `build.rs` and
//! served under `/static/`, so an installed `dataop` needs no files beside it and no CDN.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::errors::AppError;

include!(concat!(env!("OUT_DIR"), "/static_files.rs"));

/// One embedded file with its validator.
struct Asset {
    bytes: &'static [u8],
    etag: String,
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    STATIC_FILES
        .iter()
        .map(|(path, bytes)| {
            let digest = Sha256::digest(bytes);
            let etag = format!("\"{}\"", hex::encode(&digest[..12]));
            (*path, Asset { bytes, etag })
        })
        .collect()
});

/// The media type of an asset, from its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /static/{path}`: an embedded asset, with an ETag so browsers revalidate cheaply.
pub async fn serve(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let Some(asset) = ASSETS.get(path.as_str()) else {
        return Err(AppError::not_found());
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, asset.etag.clone()))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type(content_type(&path)).body(asset.bytes))
}
