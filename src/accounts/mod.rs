//! Organisations, users, registration, login, API tokens and the account admin pages.
//!
//! * [`machine`]: the organisation and user status machines; [`model`]: the rows and queries;
//!   [`ops`]: the status commands; [`credit_code`]: the unified social credit code.
//! * [`handlers`]: registration, login and the account page ([`handlers::session`], which
//!   also purges expired sessions), the admin pages.
//!
//! Files, named as in every domain: `machine.rs` the state machines, `model.rs` the rows and
//! the domain's public queries, `ops.rs` the commands (every state change, each one
//! transaction), `forms.rs` the forms and their validation, `handlers/` the HTTP handlers (one
//! file per page group: parse, call one command or query, render).

pub mod credit_code;
pub mod handlers;
pub mod machine;
pub mod model;
pub mod ops;

use actix_web::web;

use crate::auth::password;
use crate::db::DbConnection;
use crate::supervision::audit::{self, Actor};
use model::{NewOrganisation, NewUser, OrgKind};

/// Mounts the account routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(handlers::session::login_form))
        .route("/login", web::post().to(handlers::session::login))
        .route("/logout", web::post().to(handlers::session::logout))
        .route(
            "/register",
            web::get().to(handlers::register::register_form),
        )
        .route("/register", web::post().to(handlers::register::register))
        .route("/account", web::get().to(handlers::session::account))
        .route(
            "/account/tokens",
            web::post().to(handlers::session::create_token),
        )
        .route(
            "/account/tokens/{id}/revoke",
            web::post().to(handlers::session::revoke_token),
        )
        .route(
            "/api/v1/tokens",
            web::post().to(handlers::session::api_issue_token),
        )
        .route("/api/v1/me", web::get().to(handlers::session::api_me))
        .route("/admin/orgs", web::get().to(handlers::admin::orgs))
        .route(
            "/admin/orgs/{id}/verify",
            web::post().to(handlers::admin::org_verify),
        )
        .route(
            "/admin/orgs/{id}/disable",
            web::post().to(handlers::admin::org_disable),
        )
        .route("/admin/users", web::get().to(handlers::admin::users_list))
        .route(
            "/admin/users/{id}/disable",
            web::post().to(handlers::admin::user_disable),
        )
        .route(
            "/admin/users/{id}/enable",
            web::post().to(handlers::admin::user_enable),
        );
}

/// Creates a platform administrator (in the first platform organisation, created if missing);
/// returns the user id. Used by `dataop user create`.
pub fn create_admin(
    conn: &mut DbConnection,
    username: &str,
    display_name: &str,
    password: &str,
    now: chrono::NaiveDateTime,
) -> anyhow::Result<i64> {
    use crate::schema::organisations;
    use diesel::prelude::*;

    let username = username.trim().to_lowercase();
    anyhow::ensure!(
        model::valid_username(&username),
        "the user name must be 3-32 characters of a-z, 0-9, '.', '_' or '-'"
    );
    anyhow::ensure!(
        password.chars().count() >= model::MIN_PASSWORD_LEN,
        "the password must have at least {} characters",
        model::MIN_PASSWORD_LEN
    );
    let hash = password::hash(password)?;
    let id = crate::db::write_transaction(conn, |conn| {
        anyhow::ensure!(
            model::find_user_by_name(conn, &username)?.is_none(),
            "a user named {username} already exists"
        );
        let org_id = match organisations::table
            .filter(organisations::kind.eq(OrgKind::Platform.as_str()))
            .order(organisations::id.asc())
            .select(organisations::id)
            .first::<i64>(conn)
            .optional()?
        {
            Some(id) => id,
            None => {
                NewOrganisation::simple("Platform operator", OrgKind::Platform, now).insert(conn)?
            }
        };
        let id = NewUser::new(
            org_id,
            &username,
            display_name,
            hash,
            OrgKind::Platform.default_role(),
            now,
        )
        .insert(conn)?;
        audit::record(
            conn,
            &Actor::system(),
            "user.create",
            "user",
            &id.to_string(),
            serde_json::json!({ "username": username, "role": "platform_admin", "via": "cli" }),
        )?;
        Ok(id)
    })?;
    Ok(id)
}
