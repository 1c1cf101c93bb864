//! Organisations and users: rows, kinds, statuses and their transitions.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::machine::{OrgStatus, UserStatus};
use crate::auth::Role;
use crate::db::DbConnection;
use crate::schema::{organisations, users};

/// What an organisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// The public-data authority.
    Regulator,
    /// A data provider (government department).
    Provider,
    /// The platform operator.
    Platform,
    /// A registered enterprise (applicant / operator / buyer).
    Enterprise,
    /// The expert committee.
    ExpertPanel,
}

impl OrgKind {
    /// All kinds.
    pub const ALL: [OrgKind; 5] = [
        OrgKind::Regulator,
        OrgKind::Provider,
        OrgKind::Platform,
        OrgKind::Enterprise,
        OrgKind::ExpertPanel,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Regulator => "regulator",
            OrgKind::Provider => "provider",
            OrgKind::Platform => "platform",
            OrgKind::Enterprise => "enterprise",
            OrgKind::ExpertPanel => "expert_panel",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<OrgKind> {
        OrgKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The role users of such an organisation get.
    pub fn default_role(self) -> Role {
        match self {
            OrgKind::Regulator => Role::Regulator,
            OrgKind::Provider => Role::Provider,
            OrgKind::Platform => Role::PlatformAdmin,
            OrgKind::Enterprise => Role::Enterprise,
            OrgKind::ExpertPanel => Role::Expert,
        }
    }
}

/// A row of `organisations`.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = organisations)]
pub struct Organisation {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Kind (see [`OrgKind`]).
    pub kind: String,
    /// Unified social credit code (GB 32100-2015).
    pub credit_code: Option<String>,
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
    /// Status.
    #[diesel(deserialize_as = String)]
    pub status: OrgStatus,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
}

/// A new organisation.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = organisations)]
pub struct NewOrganisation {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Unified social credit code.
    pub credit_code: Option<String>,
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
    /// Status.
    pub status: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

impl NewOrganisation {
    /// A minimal organisation of `kind` named `name`, verified, created at `now`.
    pub fn simple(name: &str, kind: OrgKind, now: NaiveDateTime) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.as_str().to_owned(),
            credit_code: None,
            legal_representative: String::new(),
            contact_name: String::new(),
            contact_phone: String::new(),
            address: String::new(),
            business_scope: String::new(),
            email: String::new(),
            status: OrgStatus::Verified.as_str().to_owned(),
            created_at: now,
        }
    }

    /// Inserts it; returns the id.
    pub fn insert(&self, conn: &mut DbConnection) -> QueryResult<i64> {
        diesel::insert_into(organisations::table)
            .values(self)
            .returning(organisations::id)
            .get_result(conn)
    }
}

/// A row of `users`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Organisation.
    pub org_id: i64,
    /// Login name (lower case).
    pub username: String,
    /// Name shown on pages.
    pub display_name: String,
    /// Email.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role (see [`Role`]).
    pub role: String,
    /// Status.
    #[diesel(deserialize_as = String)]
    pub status: UserStatus,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last successful login.
    pub last_login_at: Option<NaiveDateTime>,
}

/// A new user.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    /// Organisation.
    pub org_id: i64,
    /// Login name (lower case).
    pub username: String,
    /// Name shown on pages.
    pub display_name: String,
    /// Email.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: String,
    /// Status.
    pub status: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

impl NewUser {
    /// An active user of `org_id` with `role` and an already hashed password, created at `now`.
    pub fn new(
        org_id: i64,
        username: &str,
        display_name: &str,
        password_hash: String,
        role: Role,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            org_id,
            username: username.to_lowercase(),
            display_name: display_name.to_owned(),
            email: String::new(),
            password_hash,
            role: role.as_str().to_owned(),
            status: UserStatus::Active.as_str().to_owned(),
            created_at: now,
        }
    }

    /// Inserts it; returns the id.
    pub fn insert(&self, conn: &mut DbConnection) -> QueryResult<i64> {
        diesel::insert_into(users::table)
            .values(self)
            .returning(users::id)
            .get_result(conn)
    }
}

/// Finds a user by login name (case-insensitive: names are stored in lower case).
pub fn find_user_by_name(conn: &mut DbConnection, username: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::username.eq(username.trim().to_lowercase()))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Finds an organisation.
pub fn find_org(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Organisation>> {
    organisations::table
        .find(id)
        .select(Organisation::as_select())
        .first(conn)
        .optional()
}

/// Every organisation's id and name, by name (at most `limit`), e.g. for a filter.
pub fn org_names(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<(i64, String)>> {
    organisations::table
        .order(organisations::name)
        .limit(limit)
        .select((organisations::id, organisations::name))
        .load(conn)
}

/// Whether a login name is acceptable: 3–32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// The minimum password length.
pub const MIN_PASSWORD_LEN: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(valid_username("alpha"));
        assert!(valid_username("a.b-c_1"));
        assert!(!valid_username("ab"));
        assert!(!valid_username("Alpha"));
        assert!(!valid_username("-x1"));
    }
}
