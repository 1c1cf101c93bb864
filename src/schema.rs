//! The diesel schema shared by both backends (hand-written, kept in step with the migrations).
//!
//! Domains that add tables may declare them in their own module (e.g. `src/catalog/schema.rs`)
//! and join them to these with `diesel::joinable!` / `allow_tables_to_appear_in_same_query!`.

diesel::table! {
    /// Organisations: regulator, providers, the platform operator, enterprises, expert panels.
    organisations (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        credit_code -> Nullable<Text>,
        legal_representative -> Text,
        contact_name -> Text,
        contact_phone -> Text,
        address -> Text,
        business_scope -> Text,
        email -> Text,
        status -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// People who log in; each belongs to one organisation and has one role.
    users (id) {
        id -> BigInt,
        org_id -> BigInt,
        username -> Text,
        display_name -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        status -> Text,
        created_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Server-side records of browser sessions and API tokens (revocable).
    sessions (id) {
        id -> Text,
        user_id -> BigInt,
        kind -> Text,
        label -> Text,
        source_addr -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The hash-chained audit log.
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor_user_id -> Nullable<BigInt>,
        actor_name -> Text,
        org_id -> Nullable<BigInt>,
        action -> Text,
        object_type -> Text,
        object_id -> Text,
        source_addr -> Text,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::joinable!(users -> organisations (org_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(organisations, users, sessions, audit_log);
