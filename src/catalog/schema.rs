//! The catalog's tables (mirrors `migrations/*/2026-11-23-000003_catalog`).

use crate::schema::{organisations, users};

diesel::table! {
    /// Datasets described by providers in the catalog.
    datasets (id) {
        id -> BigInt,
        provider_org_id -> BigInt,
        title_zh -> Text,
        title_en -> Text,
        description_zh -> Text,
        description_en -> Text,
        category -> Text,
        grade -> Integer,
        open_type -> Text,
        sharing_type -> Text,
        update_frequency -> Text,
        source -> Text,
        contact -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// The declared columns of a dataset, in CSV order (`position`).
    dataset_columns (id) {
        id -> BigInt,
        dataset_id -> BigInt,
        position -> Integer,
        name -> Text,
        label_zh -> Text,
        label_en -> Text,
        col_type -> Text,
        scale -> Integer,
        max_length -> Integer,
        codes -> Text,
        role -> Text,
        nullable -> Bool,
    }
}

diesel::table! {
    /// Immutable uploaded versions of a dataset's data (stored columnar in the data dir).
    dataset_versions (id) {
        id -> BigInt,
        dataset_id -> BigInt,
        version_no -> Integer,
        row_count -> BigInt,
        byte_count -> BigInt,
        sha256 -> Text,
        storage_path -> Text,
        uploaded_by -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::joinable!(datasets -> organisations (provider_org_id));
diesel::joinable!(dataset_columns -> datasets (dataset_id));
diesel::joinable!(dataset_versions -> datasets (dataset_id));
diesel::joinable!(dataset_versions -> users (uploaded_by));

diesel::allow_tables_to_appear_in_same_query!(
    datasets,
    dataset_columns,
    dataset_versions,
    organisations
);
diesel::allow_tables_to_appear_in_same_query!(datasets, users);
diesel::allow_tables_to_appear_in_same_query!(dataset_columns, users);
diesel::allow_tables_to_appear_in_same_query!(dataset_versions, users);
