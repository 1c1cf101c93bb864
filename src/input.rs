//! Reading what people send: urlencoded forms, query strings and the text fields of multipart
//! forms, decoded in one place so that no handler sees text that was silently altered.
//!
//! A value that is not UTF-8 (which a lossy decoder would turn into U+FFFD) or that holds a
//! control character other than tab, line feed and carriage return (NUL, which PostgreSQL
//! refuses, among them) is refused with a 422 naming the field. A form larger than
//! [`FORM_LIMIT`] is refused with a 413 naming the field where it was cut and the limit.
//!
//! Handlers take [`Form`] (refuses on the first problem, before the handler runs) or, when they
//! show the form again on a problem, [`FormAsTyped`], which hands over the form as typed with
//! the problem so the page is shown again with both.

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, ResponseError as _};
use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use chrono::{Months, NaiveDate};

use crate::errors::AppError;
use crate::i18n::{self, Lang};

/// Largest urlencoded form body read. Every form's fields fit with room to spare (the longest,
/// an application with its four evidence texts, is under 300 KiB percent-encoded at its limits),
/// so a longer one is cut inside a field that is itself over its limit.
pub const FORM_LIMIT: usize = 1024 * 1024;

/// The longest free text of a form field (a description, a purpose, reasons, a note), in
/// characters.
pub const MAX_TEXT: usize = 4000;

/// Checks a required free-text field: trimmed, non-empty (else the message `empty_key`), at
/// most [`MAX_TEXT`] characters (else `common.too_long`).
pub fn note(text: &str, empty_key: &'static str) -> Result<String, AppError> {
    let t = text.trim();
    if t.is_empty() {
        Err(AppError::invalid(empty_key))
    } else if t.chars().count() > MAX_TEXT {
        Err(AppError::invalid("common.too_long").arg("max", MAX_TEXT))
    } else {
        Ok(t.to_owned())
    }
}

/// Bytes of an oversize body read and dropped so the client gets the 413 answer rather than a
/// reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Whether `c` may appear in text people type: anything but control characters, except tab,
/// line feed and carriage return.
pub fn allowed_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// The value of field `name` as text: UTF-8 and no control character but tab and line breaks;
/// otherwise the 422 naming the field.
pub fn text(name: &str, bytes: Vec<u8>) -> Result<String, AppError> {
    let s = String::from_utf8(bytes).map_err(|_| not_utf8(name))?;
    no_control(name, &s)?;
    Ok(s)
}

fn not_utf8(name: &str) -> AppError {
    AppError::invalid("common.error_field_utf8").arg("field", shown(name))
}

fn no_control(name: &str, s: &str) -> Result<(), AppError> {
    match s.chars().find(|c| !allowed_char(*c)) {
        None => Ok(()),
        Some(c) => Err(AppError::invalid("common.error_field_control")
            .arg("field", shown(name))
            .arg("char", format!("U+{:04X}", u32::from(c)))),
    }
}

/// A field name as messages show it (a name that is itself bad is shown lossily, shortened).
fn shown(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if allowed_char(c) { c } else { '\u{FFFD}' })
        .take(64)
        .collect();
    clean
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a byte;
/// a `%` not followed by two hex digits stays as it is).
pub fn percent_decode(raw: &[u8]) -> Vec<u8> {
    decode(raw, true)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in forms).
fn decode(raw: &[u8], plus_is_space: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// What is wrong with a form: the field and the refusal naming it.
#[derive(Debug)]
pub struct InputProblem {
    /// The field's name as posted (lossily decoded).
    pub field: String,
    /// The refusal (422, or 413 for a form cut at [`FORM_LIMIT`]).
    pub error: AppError,
}

impl InputProblem {
    /// The message in `lang`.
    pub fn message(&self, lang: crate::i18n::Lang) -> String {
        self.error.message(lang).2
    }

    /// The status to show the form again with: 413 for a form cut at [`FORM_LIMIT`], else 422.
    pub fn status(&self) -> StatusCode {
        self.error.status_code()
    }
}

/// The first problem of an urlencoded body: a key or value that is not allowed text.
fn check_pairs(body: &[u8]) -> Option<InputProblem> {
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let field = String::from_utf8_lossy(&percent_decode(k)).into_owned();
        if let Err(error) =
            text(&field, percent_decode(k)).and_then(|_| text(&field, percent_decode(v)))
        {
            return Some(InputProblem { field, error });
        }
    }
    None
}

/// The name of the field that is being read at the end of a cut body.
fn last_field(body: &[u8]) -> String {
    let start = body.iter().rposition(|b| *b == b'&').map_or(0, |i| i + 1);
    let pair = &body[start..];
    let key = pair
        .iter()
        .position(|b| *b == b'=')
        .map_or(pair, |i| &pair[..i]);
    String::from_utf8_lossy(&percent_decode(key)).into_owned()
}

/// A form body as read: the bytes (at most [`FORM_LIMIT`]) and whether it was cut.
struct Body {
    bytes: Vec<u8>,
    cut: bool,
}

async fn read_body(req: &HttpRequest, mut payload: Payload) -> Result<Body, AppError> {
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !urlencoded {
        return Err(AppError::bad_request("common.error_bad_request"));
    }
    let mut bytes = Vec::new();
    let mut read = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| AppError::bad_request("common.error_bad_request"))?;
        read += chunk.len();
        let room = FORM_LIMIT.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if read >= DRAIN_LIMIT {
            break;
        }
    }
    Ok(Body {
        cut: read > FORM_LIMIT,
        bytes,
    })
}

/// The 413 of a form cut at [`FORM_LIMIT`], naming the field where it was cut.
fn too_large(body: &[u8]) -> InputProblem {
    let field = last_field(body);
    InputProblem {
        error: AppError::http(StatusCode::PAYLOAD_TOO_LARGE, "common.error_form_too_large")
            .arg("field", shown(&field))
            .arg("max", human_limit(FORM_LIMIT)),
        field,
    }
}

fn deserialize<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|_| AppError::bad_request("common.error_bad_request"))
}

/// An urlencoded form whose every field is allowed text; on a problem the request is refused
/// (422 naming the field, 413 when too large) before the handler runs.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T> Form<T> {
    /// The form.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Form<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Form<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let body = read_body(&req, payload).await?;
            if body.cut {
                return Err(too_large(&body.bytes).error);
            }
            if let Some(p) = check_pairs(&body.bytes) {
                return Err(p.error);
            }
            deserialize(&body.bytes).map(Form)
        })
    }
}

/// An urlencoded form as typed, with its problem if it has one (a field that is not allowed
/// text, or a form cut at [`FORM_LIMIT`]): for handlers that show the form again with the
/// problem. A handler must not act on a form that has a problem.
#[derive(Debug)]
pub struct FormAsTyped<T> {
    value: T,
    problem: Option<InputProblem>,
}

impl<T> FormAsTyped<T> {
    /// The form as typed (bytes that are not UTF-8 shown as U+FFFD) and its problem.
    pub fn into_parts(self) -> (T, Option<InputProblem>) {
        (self.value, self.problem)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for FormAsTyped<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let mut body = read_body(&req, payload).await?;
            let problem = if body.cut {
                let e = too_large(&body.bytes);
                // Keep whole pairs and the cut field's text up to a whole escape.
                if let Some(i) = body.bytes.iter().rposition(|b| *b == b'%')
                    && body.bytes.len() - i < 3
                {
                    body.bytes.truncate(i);
                }
                Some(e)
            } else {
                check_pairs(&body.bytes)
            };
            Ok(FormAsTyped {
                value: deserialize(&body.bytes)?,
                problem,
            })
        })
    }
}

/// A query string whose every parameter is allowed text; otherwise a 422 naming it.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    /// The query.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let q = req.query_string().as_bytes();
        std::future::ready(match check_pairs(q) {
            Some(p) => Err(p.error),
            None => deserialize(q).map(Query),
        })
    }
}

/// Reads the text field `name` of a multipart form, at most `max` bytes: the 413 naming the
/// field and its limit when longer, the 422 of [`text`] when it is not allowed text.
pub async fn multipart_text(
    field: &mut actix_multipart::Field,
    name: &str,
    max: usize,
) -> Result<String, AppError> {
    let bytes = multipart_bytes(field, name, max).await?;
    text(name, bytes)
}

/// Reads the text field `name` of a multipart form for a handler that shows the form again:
/// the text as typed (bytes that are not UTF-8 shown as U+FFFD; kept up to four times `max`
/// bytes, the rest read and dropped) and the problem: over `max` bytes (413 naming the field
/// and its limit) or not allowed text (the 422 of [`text`]).
pub async fn multipart_text_as_typed(
    field: &mut actix_multipart::Field,
    name: &str,
    max: usize,
) -> Result<(String, Option<AppError>), AppError> {
    let keep = max.saturating_mul(4);
    let mut buf = Vec::new();
    let mut read = 0usize;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|_| AppError::bad_request("common.error_bad_request"))?;
        read += chunk.len();
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if read >= DRAIN_LIMIT {
            break;
        }
    }
    if read > max {
        let typed = String::from_utf8_lossy(&buf).into_owned();
        return Ok((typed, Some(field_too_large(name, max))));
    }
    Ok(match String::from_utf8(buf) {
        Ok(s) => {
            let problem = no_control(name, &s).err();
            (s, problem)
        }
        Err(e) => (
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
            Some(not_utf8(name)),
        ),
    })
}

/// Reads field `name` of a multipart form whole, at most `max` bytes (else the 413 naming the
/// field and its limit).
pub async fn multipart_bytes(
    field: &mut actix_multipart::Field,
    name: &str,
    max: usize,
) -> Result<Vec<u8>, AppError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|_| AppError::bad_request("common.error_bad_request"))?;
        if buf.len() + chunk.len() > max {
            return Err(field_too_large(name, max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The 413 of field `name` over its limit of `max` bytes.
pub fn field_too_large(name: &str, max: usize) -> AppError {
    AppError::http(
        StatusCode::PAYLOAD_TOO_LARGE,
        "common.error_field_too_large",
    )
    .arg("field", shown(name))
    .arg("max", human_limit(max))
}

/// Whether `s` reads as an email address: one `@` with text before it and a domain with an
/// inner dot after it, no whitespace and no angle brackets (the registration form, and an
/// objector's contact on the public notice).
pub fn valid_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// Whether `s` reads as a phone number: digits with an optional leading `+` and spaces,
/// hyphens or brackets between them, 7 to 15 digits (E.164 has at most 15).
pub fn valid_phone(s: &str) -> bool {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    body.starts_with(|c: char| c.is_ascii_digit() || c == '(')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')'))
        && (7..=15).contains(&digits)
}

/// A byte limit as messages show it: `16 KiB`, `2 MiB`, or bytes.
pub fn human_limit(max: usize) -> String {
    if max >= 1024 * 1024 && max.is_multiple_of(1024 * 1024) {
        format!("{} MiB", max / (1024 * 1024))
    } else if max >= 1024 && max.is_multiple_of(1024) {
        format!("{} KiB", max / 1024)
    } else {
        format!("{max} bytes")
    }
}

/// The days a form accepts for a kind of date, so that a typo such as 9999-12-31 is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSpan {
    /// Something that happened (a training, a birth): from 1900-01-01 to today.
    Past,
    /// Something planned (an opening or closing date, a deadline, an expiry): from a year before
    /// today to ten years after it.
    Planned,
}

impl DateSpan {
    /// The first and last day accepted when today is `today`.
    pub fn bounds(self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        match self {
            Self::Past => (NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(today), today),
            Self::Planned => (
                today.checked_sub_months(Months::new(12)).unwrap_or(today),
                today.checked_add_months(Months::new(120)).unwrap_or(today),
            ),
        }
    }

    /// `d` when it is within the span, else the message in `lang` naming the field by its
    /// label (`label_key`) and the days accepted.
    pub fn check(
        self,
        lang: Lang,
        label_key: &str,
        d: NaiveDate,
        today: NaiveDate,
    ) -> Result<NaiveDate, String> {
        self.refuse(lang, label_key, d, today)
            .map_err(|e| e.message(lang).2)
    }

    /// [`DateSpan::check`] for a handler that answers with a refusal: the 422 with that
    /// message (the field's label in `lang`, the page's language).
    pub fn refuse(
        self,
        lang: Lang,
        label_key: &str,
        d: NaiveDate,
        today: NaiveDate,
    ) -> Result<NaiveDate, AppError> {
        let (min, max) = self.bounds(today);
        if (min..=max).contains(&d) {
            return Ok(d);
        }
        let key = match self {
            Self::Past => "common.error_date_past",
            Self::Planned => "common.error_date_planned",
        };
        Err(AppError::invalid(key)
            .arg("field", i18n::t(lang, label_key))
            .arg("date", d)
            .arg("min", min)
            .arg("max", max))
    }
}

/// Whether `next` is a safe place to return to after the language switch or the login: a path
/// on this site. It starts with one `/` not followed by another `/` or a `\`, and neither it
/// nor its percent-decoded form holds a `\`, whitespace or a control character (browsers drop
/// tabs and line breaks, so `/\t/evil.example/` would leave the site).
pub fn is_local_path(next: &str) -> bool {
    let decoded = decode(next.as_bytes(), false);
    [next.as_bytes(), decoded.as_slice()].iter().all(|b| {
        let s = String::from_utf8_lossy(b);
        s.starts_with('/')
            && !s[1..].starts_with(['/', '\\'])
            && !s.contains('\\')
            && !s
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\u{FFFD}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_phone_numbers() {
        assert!(valid_email("a@b.cn"));
        assert!(valid_email(" li.si@example.com.cn "));
        for bad in [
            "0571-123", "a@b", "a b@c.cn", "@b.cn", "a@.cn", "a@b@c.cn", "<a@b.cn>",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        for ok in ["13800000000", "0571-88886666", "+86 (571) 8888 6666"] {
            assert!(valid_phone(ok), "{ok}");
        }
        for bad in [
            "x",
            "123456",
            "+86 571 8888 66666666",
            "0571-8888x666",
            "a@b.cn",
        ] {
            assert!(!valid_phone(bad), "{bad}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode(b"a+b%20c%2F%e4%b8%ad"),
            "a b c/中".as_bytes()
        );
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
        assert_eq!(percent_decode(b"%41"), b"A");
    }

    #[test]
    fn local_paths() {
        for ok in [
            "/",
            "/catalog",
            "/jobs/3?tab=a&b=%2Fc",
            "/catalog?q=%E4%B8%AD+x",
        ] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "catalog",
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example/",
            "/%09/evil.example/",
            "/%2F/evil.example/",
            "/%5Cevil.example",
            "/a b",
            "/a%20b",
            "/%FF",
            "/a%00b",
            "/a%0d%0aSet-Cookie:x",
            "https://evil.example/",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }

    #[test]
    fn form_text_rules() {
        assert!(check_pairs(b"a=1&b=%E4%B8%AD+x&c=line%0D%0Anext%09tab").is_none());
        let p = check_pairs(b"a=1&purpose=%FF%FE").unwrap();
        assert_eq!(p.field, "purpose");
        assert!(p.error.to_string().contains("common.error_field_utf8"));
        let p = check_pairs(b"title=a%00b").unwrap();
        assert_eq!(p.field, "title");
        assert!(p.error.to_string().contains("common.error_field_control"));
        assert_eq!(last_field(b"a=1&purpose=xxxx"), "purpose");
        assert_eq!(human_limit(16 * 1024), "16 KiB");
    }

    #[test]
    fn date_spans() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            DateSpan::Planned.bounds(today),
            (d("2025-12-04"), d("2036-12-04"))
        );
        assert_eq!(DateSpan::Past.bounds(today), (d("1900-01-01"), today));
        let far = DateSpan::Planned
            .check(
                Lang::En,
                "admission.field_closes_on",
                d("9999-12-31"),
                today,
            )
            .unwrap_err();
        assert!(
            far.contains("Closes on") && far.contains("2036-12-04"),
            "{far}"
        );
        assert!(
            DateSpan::Past
                .check(Lang::Zh, "jobs.trained_on", today, today)
                .is_ok()
        );
    }
}
