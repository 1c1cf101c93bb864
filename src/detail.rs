//! Action forms of detail pages (an agreement, an application, a job, …): a refused action
//! shows its detail page again, with the refusal's 4xx status, what was typed kept in the form
//! and the reason beside it, instead of a bare error page.
//!
//! A domain mounts each action with [`action`], naming the action's handler and the detail
//! page's handler (which takes its id as `web::Path<Id>`). When the action answers 400, 409,
//! 413 or 422, the detail handler runs again for the same request, its [`Page`] carrying a
//! [`Refused`]; the template asks the page for it by the form's action path:
//!
//! ```text
//! {% let act = format!("/agreements/{}/termination-request", a.id) %}
//! <form method="post" action="{{ act }}">
//!   {% if let Some(e) = refused_here(act) %}<p class="field-error" role="alert">{{ e }}</p>{% endif %}
//!   <textarea name="note">{{ kept(act, "note") }}</textarea>
//! ```
//!
//! URL-encoded forms are read here (up to [`KEEP_LIMIT`] bytes; the handler reads the same
//! bytes); a multipart handler keeps its text fields with [`keep`].

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{
    Error, FromRequest, Handler, HttpMessage, HttpRequest, Resource, Responder, ResponseError as _,
    guard, web,
};
use futures_util::StreamExt as _;

use crate::errors::AppError;
use crate::web::Page;

/// Most bytes of a URL-encoded form kept for showing again (larger forms are passed on
/// untouched, and shown again empty).
pub const KEEP_LIMIT: usize = 256 * 1024;

/// The id of a detail page's path (`{id}`; an action's other parameters are ignored).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Id {
    /// The object's id.
    pub id: i64,
}

/// A refused action form: where it was posted, what was typed, and why it was refused.
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// The path the form was posted to (its `action`).
    pub action: String,
    /// The fields as typed (without the CSRF token).
    pub fields: Vec<(String, String)>,
    /// The refusal, in the page language.
    pub message: String,
}

/// Text fields of a multipart form, kept by its handler for showing again.
#[derive(Debug, Clone, Default)]
struct Kept(Vec<(String, String)>);

/// Keeps a text field a multipart handler read, so the form shows it again when the action
/// is refused.
pub fn keep(req: &HttpRequest, name: &str, value: &str) {
    let mut ext = req.extensions_mut();
    match ext.get_mut::<Kept>() {
        Some(k) => k.0.push((name.to_owned(), value.to_owned())),
        None => {
            ext.insert(Kept(vec![(name.to_owned(), value.to_owned())]));
        }
    }
}

/// The POST route `path` answered by `handler`, whose refusals show the detail page of
/// `show` again (see the module documentation).
pub fn action<H, HA, S, SA>(
    path: &str,
    handler: H,
    show: S,
) -> Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    >,
>
where
    H: Handler<HA>,
    HA: FromRequest + 'static,
    H::Output: Responder + 'static,
    S: Handler<SA>,
    SA: FromRequest + 'static,
    S::Output: Responder + 'static,
{
    web::resource(path)
        .guard(guard::Post())
        .route(web::post().to(handler))
        .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
            let show = show.clone();
            again(req, next, show)
        }))
}

/// Whether a refusal with `status` shows the detail page again.
fn shows_again(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 409 | 413 | 422)
}

async fn again<S, SA>(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
    show: S,
) -> Result<ServiceResponse<BoxBody>, Error>
where
    S: Handler<SA>,
    SA: FromRequest + 'static,
    S::Output: Responder + 'static,
{
    let typed = read_form(&mut req).await;
    let action = req.path().to_owned();
    let res = next.call(req).await?;
    let Some(refusal) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<AppError>())
    else {
        return Ok(res);
    };
    let status = refusal.status_code();
    if !shows_again(status) {
        return Ok(res);
    }
    let req = res.request().clone();
    let Ok(mut page) = Page::build(&req).await else {
        return Ok(res);
    };
    let (_, _, message) = refusal.message(page.lang);
    let mut fields = typed;
    if let Some(k) = req.extensions().get::<Kept>() {
        fields.extend(k.0.iter().cloned());
    }
    fields.retain(|(k, _)| k != "csrf");
    page.refused = Some(Refused {
        action,
        fields,
        message,
    });
    req.extensions_mut().insert(page);
    let Ok(args) = SA::from_request(&req, &mut Payload::None).await else {
        return Ok(res);
    };
    let mut shown = show.call(args).await.respond_to(&req).map_into_boxed_body();
    if shown.status() != StatusCode::OK {
        return Ok(res);
    }
    *shown.status_mut() = status;
    Ok(res.into_response(shown))
}

/// Reads a URL-encoded body (at most [`KEEP_LIMIT`] bytes) and puts it back for the handler;
/// the fields, or nothing for other bodies.
async fn read_form(req: &mut ServiceRequest) -> Vec<(String, String)> {
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Vec::new();
    }
    let mut payload = req.take_payload();
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(bytes) if buf.len() + bytes.len() <= KEEP_LIMIT => buf.extend_from_slice(&bytes),
            other => {
                let head = futures_util::stream::iter([Ok(buf.freeze())]);
                let rest = futures_util::stream::iter([other]).chain(payload);
                req.set_payload(Payload::Stream {
                    payload: Box::pin(head.chain(rest)),
                });
                return Vec::new();
            }
        }
    }
    let bytes = buf.freeze();
    let fields = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    req.set_payload(Payload::from(bytes));
    fields
}

impl Page {
    /// The refusal of the form posted to `action`, if that form was just refused.
    pub fn refused_here(&self, action: &str) -> Option<&str> {
        self.refused
            .as_ref()
            .filter(|r| r.action == action)
            .map(|r| r.message.as_str())
    }

    /// What was typed in field `name` of the form posted to `action` when it was refused
    /// (empty otherwise).
    pub fn kept(&self, action: &str, name: &str) -> &str {
        self.refused
            .as_ref()
            .filter(|r| r.action == action)
            .and_then(|r| r.fields.iter().find(|(k, _)| k == name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether `value` was chosen in field `name` of the refused form posted to `action`.
    pub fn kept_is(&self, action: &str, name: &str, value: &str) -> bool {
        self.refused.as_ref().is_some_and(|r| {
            r.action == action && r.fields.iter().any(|(k, v)| k == name && v == value)
        })
    }
}
