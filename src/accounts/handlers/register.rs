//! Enterprise registration: the organisation and its first user, in one transaction.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;

use crate::AppState;
use crate::accounts::credit_code;
use crate::accounts::machine::OrgStatus;
use crate::accounts::model::{self, NewOrganisation, NewUser, OrgKind};
use crate::auth::{self, password};
use crate::db;
use crate::errors::AppError;
use crate::input::{valid_email, valid_phone};
use crate::schema::organisations;
use crate::supervision::audit::{self, Actor};
use crate::web::{Page, redirect, redirect_with_flash, render, render_status};

/// The registration form, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RegisterForm {
    /// Organisation name.
    pub name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Legal representative.
    pub legal_representative: String,
    /// Contact person.
    pub contact_name: String,
    /// Contact phone.
    pub contact_phone: String,
    /// Address.
    pub address: String,
    /// Business scope.
    pub business_scope: String,
    /// Contact email.
    pub email: String,
    /// First user's login name.
    pub username: String,
    /// First user's display name.
    pub display_name: String,
    /// Password.
    pub password: String,
    /// Password again.
    pub password_confirm: String,
    /// CSRF token.
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "accounts/register.html")]
struct RegisterPage {
    page: Page,
    form: RegisterForm,
    errors: Vec<(&'static str, String)>,
}
crate::impl_page!(RegisterPage);

impl RegisterPage {
    /// The error for a field, if any.
    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// `GET /register`.
pub async fn register_form(page: Page) -> Result<HttpResponse, AppError> {
    if page.user.is_some() {
        return Ok(redirect("/"));
    }
    render(&RegisterPage {
        page,
        form: RegisterForm::default(),
        errors: Vec::new(),
    })
}

fn limit(
    errors: &mut Vec<(&'static str, String)>,
    page: &Page,
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
) {
    let n = value.trim().chars().count();
    if n < min {
        errors.push((field, page.t("accounts.err_required").to_owned()));
    } else if n > max {
        errors.push((
            field,
            page.t_args("accounts.err_too_long", &[("max", max.to_string())]),
        ));
    }
}

/// The fields of the registration form.
const FIELDS: [&str; 13] = [
    "name",
    "credit_code",
    "legal_representative",
    "contact_name",
    "contact_phone",
    "address",
    "business_scope",
    "email",
    "username",
    "display_name",
    "password",
    "password_confirm",
    "csrf",
];

/// Checks the form; returns the normalized credit code and the field errors.
fn validate(page: &Page, f: &RegisterForm) -> (String, Vec<(&'static str, String)>) {
    let mut errors = Vec::new();
    limit(&mut errors, page, "name", &f.name, 2, 200);
    let code = match credit_code::validate(&f.credit_code) {
        Ok(code) => code,
        Err(e) => {
            errors.push(("credit_code", page.t_args(e.key(), &e.args())));
            String::new()
        }
    };
    limit(
        &mut errors,
        page,
        "legal_representative",
        &f.legal_representative,
        1,
        100,
    );
    limit(&mut errors, page, "contact_name", &f.contact_name, 1, 100);
    if f.contact_phone.trim().is_empty() {
        errors.push(("contact_phone", page.t("accounts.err_required").to_owned()));
    } else if !valid_phone(&f.contact_phone) {
        errors.push(("contact_phone", page.t("accounts.err_phone").to_owned()));
    }
    limit(&mut errors, page, "address", &f.address, 2, 300);
    limit(
        &mut errors,
        page,
        "business_scope",
        &f.business_scope,
        2,
        2000,
    );
    if !valid_email(&f.email) || f.email.len() > 200 {
        errors.push(("email", page.t("accounts.err_email").to_owned()));
    }
    if !model::valid_username(f.username.trim()) {
        errors.push(("username", page.t("accounts.err_username").to_owned()));
    }
    limit(&mut errors, page, "display_name", &f.display_name, 1, 100);
    if f.password.chars().count() < model::MIN_PASSWORD_LEN || f.password.len() > 200 {
        errors.push((
            "password",
            page.t_args(
                "accounts.err_password_short",
                &[("min", model::MIN_PASSWORD_LEN.to_string())],
            ),
        ));
    } else if f.password != f.password_confirm {
        errors.push((
            "password_confirm",
            page.t("accounts.err_password_mismatch").to_owned(),
        ));
    }
    (code, errors)
}

/// `POST /register`: creates the organisation (pending verification) and its first user.
pub async fn register(
    req: HttpRequest,
    page: Page,
    state: web::Data<AppState>,
    form: crate::input::FormAsTyped<RegisterForm>,
) -> Result<HttpResponse, AppError> {
    let (form, problem) = form.into_parts();
    page.check_csrf(&form.csrf)?;
    let (code, mut errors) = validate(&page, &form);
    if let Some(p) = problem {
        let field = FIELDS
            .iter()
            .find(|f| **f == p.field)
            .ok_or_else(|| AppError::invalid("accounts.register_has_errors"))?;
        errors.retain(|(f, _)| f != field);
        errors.push((field, p.message(page.lang)));
    }
    let reshow = |page: Page, mut form: RegisterForm, errors| {
        form.password.clear();
        form.password_confirm.clear();
        render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &RegisterPage { page, form, errors },
        )
    };
    if !errors.is_empty() {
        return reshow(page, form, errors);
    }
    let hash = web::block({
        let p = form.password.clone();
        move || password::hash(&p)
    })
    .await??;
    let addr = auth::source_addr(&req);
    let f = form.clone();
    let now = db::to_micros(state.clock.now());
    let result = crate::web::db(&state, move |conn| {
        db::write_transaction(conn, |conn| {
            let code_taken = organisations::table
                .filter(organisations::credit_code.eq(&code))
                .count()
                .get_result::<i64>(conn)?
                > 0;
            if code_taken {
                return Ok(Err(("credit_code", "accounts.err_credit_code_taken")));
            }
            if model::find_user_by_name(conn, &f.username)?.is_some() {
                return Ok(Err(("username", "accounts.err_username_taken")));
            }
            let org_id = NewOrganisation {
                name: f.name.trim().to_owned(),
                kind: OrgKind::Enterprise.as_str().to_owned(),
                credit_code: Some(code.clone()),
                legal_representative: f.legal_representative.trim().to_owned(),
                contact_name: f.contact_name.trim().to_owned(),
                contact_phone: f.contact_phone.trim().to_owned(),
                address: f.address.trim().to_owned(),
                business_scope: f.business_scope.trim().to_owned(),
                email: f.email.trim().to_owned(),
                status: OrgStatus::Pending.as_str().to_owned(),
                created_at: now,
            }
            .insert(conn)?;
            let mut user = NewUser::new(
                org_id,
                f.username.trim(),
                f.display_name.trim(),
                hash,
                OrgKind::Enterprise.default_role(),
                now,
            );
            user.email = f.email.trim().to_owned();
            let user_id = user.insert(conn)?;
            let actor = Actor {
                user_id: Some(user_id),
                name: user.username.clone(),
                org_id: Some(org_id),
                addr: addr.clone(),
            };
            audit::record(
                conn,
                &actor,
                "organisation.register",
                "organisation",
                &org_id.to_string(),
                serde_json::json!({ "name": f.name.trim(), "credit_code": code }),
            )?;
            audit::record(
                conn,
                &actor,
                "user.create",
                "user",
                &user_id.to_string(),
                serde_json::json!({ "username": user.username, "role": user.role }),
            )?;
            Ok::<_, AppError>(Ok(()))
        })
    })
    .await?;
    match result {
        Ok(()) => Ok(redirect_with_flash(
            "/login",
            "ok",
            "accounts.flash_registered",
        )),
        Err((field, key)) => {
            let msg = page.t(key).to_owned();
            reshow(page, form, vec![(field, msg)])
        }
    }
}
