//! The platform admin's and regulator's account pages: all organisations and users, verify or
//! disable an organisation, disable or re-enable a user (disabling revokes sessions and tokens).
//! Verifying an organisation emails its users and contact address.

use actix_web::{HttpResponse, web};
use askama::Template;
use diesel::prelude::*;

use crate::AppState;
use crate::accounts::handlers::session::CsrfForm;
use crate::accounts::machine::{OrgAction, UserAction};
use crate::accounts::model::Organisation;
use crate::accounts::ops;
use crate::auth::{CurrentUser, Role};
use crate::errors::AppError;
use crate::schema::{organisations, users};
use crate::web::{Page, redirect_with_flash, render};

const ADMINS: &[Role] = &[Role::PlatformAdmin, Role::Regulator];

/// A user row on the users page.
#[derive(Debug, Clone)]
pub struct UserView {
    /// Id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role message key.
    pub role_key: String,
    /// Status.
    pub status: String,
    /// Organisation name.
    pub org_name: String,
    /// Last login.
    pub last_login: String,
}

#[derive(Template)]
#[template(path = "accounts/orgs.html")]
struct OrgsPage {
    page: Page,
    orgs: Vec<Organisation>,
    /// Entries in each organisation's credit record (信用档案), by organisation id.
    credit: std::collections::HashMap<i64, i64>,
}
crate::impl_page!(OrgsPage);

impl OrgsPage {
    /// The number of credit-record entries of an organisation.
    fn credit_count(&self, org_id: &i64) -> i64 {
        self.credit.get(org_id).copied().unwrap_or(0)
    }
}

#[derive(Template)]
#[template(path = "accounts/users.html")]
struct UsersPage {
    page: Page,
    users: Vec<UserView>,
}
crate::impl_page!(UsersPage);

/// `GET /admin/orgs`.
pub async fn orgs(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(ADMINS)?;
    let (orgs, credit) = crate::web::db(&state, |conn| {
        let orgs = organisations::table
            .order(organisations::id.asc())
            .limit(1000)
            .select(Organisation::as_select())
            .load(conn)?;
        let credit = crate::admission::model::credit_record_counts(conn)?;
        Ok((orgs, credit.into_iter().collect()))
    })
    .await?;
    render(&OrgsPage { page, orgs, credit })
}

/// `GET /admin/users`.
pub async fn users_list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(ADMINS)?;
    let rows = crate::web::db(&state, |conn| {
        Ok(users::table
            .inner_join(organisations::table)
            .order(users::id.asc())
            .limit(1000)
            .select((
                users::id,
                users::username,
                users::display_name,
                users::role,
                users::status,
                organisations::name,
                users::last_login_at,
            ))
            .load::<(
                i64,
                String,
                String,
                String,
                String,
                String,
                Option<chrono::NaiveDateTime>,
            )>(conn)?)
    })
    .await?;
    let users = rows
        .into_iter()
        .map(
            |(id, username, display_name, role, status, org_name, last)| UserView {
                id,
                username,
                display_name,
                role_key: Role::parse(&role).map(|r| r.label_key()).unwrap_or(role),
                status,
                org_name,
                last_login: last.map(|t| page.time_min(t)).unwrap_or_default(),
            },
        )
        .collect();
    render(&UsersPage { page, users })
}

async fn change_org(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    id: i64,
    csrf: &str,
    action: OrgAction,
) -> Result<HttpResponse, AppError> {
    user.require(ADMINS)?;
    page.check_csrf(csrf)?;
    crate::web::db(&state, move |conn| ops::change_org(conn, &user, id, action)).await?;
    Ok(redirect_with_flash(
        "/admin/orgs",
        "ok",
        "accounts.flash_saved",
    ))
}

/// `POST /admin/orgs/{id}/verify`.
pub async fn org_verify(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    change_org(
        page,
        user,
        state,
        path.into_inner(),
        form.csrf(),
        OrgAction::Verify,
    )
    .await
}

/// `POST /admin/orgs/{id}/disable`: also revokes every session and token of its users.
pub async fn org_disable(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    change_org(
        page,
        user,
        state,
        path.into_inner(),
        form.csrf(),
        OrgAction::Disable,
    )
    .await
}

async fn change_user(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    id: i64,
    csrf: &str,
    action: UserAction,
) -> Result<HttpResponse, AppError> {
    user.require(ADMINS)?;
    page.check_csrf(csrf)?;
    crate::web::db(&state, move |conn| {
        ops::change_user(conn, &user, id, action)
    })
    .await?;
    Ok(redirect_with_flash(
        "/admin/users",
        "ok",
        "accounts.flash_saved",
    ))
}

/// `POST /admin/users/{id}/disable`: also revokes the user's sessions and tokens.
pub async fn user_disable(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    change_user(
        page,
        user,
        state,
        path.into_inner(),
        form.csrf(),
        UserAction::Disable,
    )
    .await
}

/// `POST /admin/users/{id}/enable`.
pub async fn user_enable(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    form: crate::input::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    change_user(
        page,
        user,
        state,
        path.into_inner(),
        form.csrf(),
        UserAction::Enable,
    )
    .await
}
