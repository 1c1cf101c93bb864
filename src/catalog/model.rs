//! Catalog data: the vocabularies (category, open and sharing type, ...), the rows of the
//! catalog tables and their queries.

use chrono::NaiveDateTime;
use dataop_sandbox::columnar::{ColumnRole, ColumnSpec, ColumnType};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::ingest::IngestColumn;
use super::machine::VersionState;
use crate::db::DbConnection;
use crate::schema::{dataset_columns, dataset_versions, datasets, organisations, users};

type Db = <DbConnection as diesel::Connection>::Backend;

diesel::define_sql_function! {
    /// SQL `lower(text)` (both backends).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Declares a closed vocabulary stored as snake_case text, with a message key per value.
macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident, $prefix:literal { $($(#[$vm:meta])* $variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            /// Every value, in display order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// Parses a stored code.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// The message key of the value's label.
            pub fn label_key(self) -> &'static str {
                match self {
                    $($name::$variant => concat!("catalog.", $prefix, ".", $code)),+
                }
            }
        }
    };
}

vocabulary! {
    /// Health data categories (Jinan measures art. 12) plus "other".
    Category, "category" {
        /// 基础信息
        BasicInformation => "basic_information",
        /// 公共卫生
        PublicHealth => "public_health",
        /// 计划生育
        FamilyPlanning => "family_planning",
        /// 医疗服务
        MedicalServices => "medical_services",
        /// 医疗保障
        MedicalInsurance => "medical_insurance",
        /// 药品管理
        DrugManagement => "drug_management",
        /// 综合管理
        GeneralManagement => "general_management",
        /// 新兴业态
        NewBusinessForms => "new_business_forms",
        /// 其他
        Other => "other",
    }
}

vocabulary! {
    /// Open type (Jilin art. 19; Chongqing art. 17).
    OpenType, "open_type" {
        /// 无条件开放
        Unconditional => "unconditional",
        /// 有条件开放
        Conditional => "conditional",
        /// 不予开放
        NotOpen => "not_open",
    }
}

vocabulary! {
    /// Sharing type between government units.
    SharingType, "sharing_type" {
        /// 无条件共享
        Unconditional => "unconditional",
        /// 有条件共享
        Conditional => "conditional",
        /// 不予共享
        NotShared => "not_shared",
    }
}

vocabulary! {
    /// How often the provider updates the data.
    UpdateFrequency, "frequency" {
        /// 实时
        Realtime => "realtime",
        /// 每日
        Daily => "daily",
        /// 每周
        Weekly => "weekly",
        /// 每月
        Monthly => "monthly",
        /// 每季度
        Quarterly => "quarterly",
        /// 每年
        Yearly => "yearly",
        /// 不定期
        Irregular => "irregular",
    }
}

vocabulary! {
    /// The declared type of a column.
    ColType, "type" {
        /// Whole number.
        Integer => "integer",
        /// Decimal with a fixed number of decimals.
        Decimal => "decimal",
        /// Calendar date.
        Date => "date",
        /// One code of a declared domain.
        Category => "category",
        /// Free text.
        Text => "text",
    }
}

vocabulary! {
    /// What a column means for privacy.
    Role, "role" {
        /// Directly identifies a person (ID number, name): pseudonymized, never computed on.
        Identifier => "identifier",
        /// The person the row is about: pseudonymized, used only to count distinct people.
        PrivacyUnit => "privacy_unit",
        /// Identifies in combination (age, district, sex).
        QuasiIdentifier => "quasi_identifier",
        /// Sensitive attribute (diagnosis, costs).
        Sensitive => "sensitive",
        /// Anything else.
        Plain => "plain",
    }
}

impl Role {
    /// The sandbox's role.
    pub fn to_columnar(self) -> ColumnRole {
        match self {
            Role::Identifier => ColumnRole::Identifier,
            Role::PrivacyUnit => ColumnRole::PrivacyUnit,
            Role::QuasiIdentifier => ColumnRole::QuasiIdentifier,
            Role::Sensitive => ColumnRole::Sensitive,
            Role::Plain => ColumnRole::Plain,
        }
    }

    /// Whether values are replaced by pseudonyms at ingest.
    pub fn is_identifying(self) -> bool {
        matches!(self, Role::Identifier | Role::PrivacyUnit)
    }
}

/// Sensitivity grades, 1 (lowest) to 4.
pub const GRADES: [i32; 4] = [1, 2, 3, 4];

/// A row of `datasets`.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = datasets)]
pub struct Dataset {
    /// Id.
    pub id: i64,
    /// The providing organisation.
    pub provider_org_id: i64,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Chinese description.
    pub description_zh: String,
    /// English description.
    pub description_en: String,
    /// [`Category`] code.
    pub category: String,
    /// Sensitivity grade 1–4.
    pub grade: i32,
    /// [`OpenType`] code.
    pub open_type: String,
    /// [`SharingType`] code.
    pub sharing_type: String,
    /// [`UpdateFrequency`] code.
    pub update_frequency: String,
    /// Where the data comes from (system, survey, ...).
    pub source: String,
    /// Contact for questions about the data.
    pub contact: String,
    /// User who created the entry.
    pub created_by: i64,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// Last change of the description (UTC).
    pub updated_at: NaiveDateTime,
}

impl Dataset {
    /// The title in `lang` (falling back to the other language when empty).
    pub fn title(&self, lang: crate::i18n::Lang) -> &str {
        crate::i18n::pick(lang, &self.title_zh, &self.title_en)
    }

    /// The description in `lang` (falling back to the other language when empty).
    pub fn description(&self, lang: crate::i18n::Lang) -> &str {
        crate::i18n::pick(lang, &self.description_zh, &self.description_en)
    }
}

/// The describing fields of a dataset, as inserted or updated.
#[derive(Debug, Clone, Default, Insertable, AsChangeset)]
#[diesel(table_name = datasets)]
pub struct DatasetFields {
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Chinese description.
    pub description_zh: String,
    /// English description.
    pub description_en: String,
    /// [`Category`] code.
    pub category: String,
    /// Grade 1–4.
    pub grade: i32,
    /// [`OpenType`] code.
    pub open_type: String,
    /// [`SharingType`] code.
    pub sharing_type: String,
    /// [`UpdateFrequency`] code.
    pub update_frequency: String,
    /// Source.
    pub source: String,
    /// Contact.
    pub contact: String,
}

/// Inserts a dataset of `provider_org_id` created by `user_id` at `now`; returns its id.
pub fn insert_dataset(
    conn: &mut DbConnection,
    provider_org_id: i64,
    user_id: i64,
    fields: &DatasetFields,
    now: NaiveDateTime,
) -> QueryResult<i64> {
    diesel::insert_into(datasets::table)
        .values((
            fields,
            datasets::provider_org_id.eq(provider_org_id),
            datasets::created_by.eq(user_id),
            datasets::created_at.eq(now),
            datasets::updated_at.eq(now),
        ))
        .returning(datasets::id)
        .get_result(conn)
}

/// Replaces the describing fields of dataset `id` (at `now`).
pub fn update_dataset(
    conn: &mut DbConnection,
    id: i64,
    fields: &DatasetFields,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(datasets::table.find(id))
        .set((fields, datasets::updated_at.eq(now)))
        .execute(conn)
}

/// A dataset with its provider's name.
pub fn find_dataset(conn: &mut DbConnection, id: i64) -> QueryResult<Option<(Dataset, String)>> {
    datasets::table
        .inner_join(organisations::table)
        .filter(datasets::id.eq(id))
        .select((Dataset::as_select(), organisations::name))
        .first(conn)
        .optional()
}

/// The catalog titles (Chinese, English) of datasets `ids`.
pub fn titles(
    conn: &mut DbConnection,
    ids: &[i64],
) -> QueryResult<std::collections::BTreeMap<i64, (String, String)>> {
    Ok(datasets::table
        .filter(datasets::id.eq_any(ids))
        .select((datasets::id, datasets::title_zh, datasets::title_en))
        .load::<(i64, String, String)>(conn)?
        .into_iter()
        .map(|(id, zh, en)| (id, (zh, en)))
        .collect())
}

/// Filters of the public catalog.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Words searched in titles and descriptions (both languages, case-insensitive).
    pub q: Option<String>,
    /// Only this category.
    pub category: Option<Category>,
    /// Only this open type.
    pub open_type: Option<OpenType>,
    /// Only this provider.
    pub provider: Option<i64>,
}

fn filtered(f: &Filter) -> datasets::BoxedQuery<'static, Db> {
    let mut query = datasets::table.into_boxed();
    if let Some(c) = f.category {
        query = query.filter(datasets::category.eq(c.as_str()));
    }
    if let Some(o) = f.open_type {
        query = query.filter(datasets::open_type.eq(o.as_str()));
    }
    if let Some(p) = f.provider {
        query = query.filter(datasets::provider_org_id.eq(p));
    }
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let escaped: String = q
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        query = query.filter(
            lower(datasets::title_zh)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(datasets::title_en).like(pattern.clone()).escape('\\'))
                .or(lower(datasets::description_zh)
                    .like(pattern.clone())
                    .escape('\\'))
                .or(lower(datasets::description_en).like(pattern).escape('\\')),
        );
    }
    query
}

/// One page of the catalog: datasets with their provider names, and the total count.
pub fn list_datasets(
    conn: &mut DbConnection,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<(Dataset, String)>, i64)> {
    let total: i64 = filtered(filter).count().get_result(conn)?;
    let rows: Vec<Dataset> = filtered(filter)
        .order(datasets::id.asc())
        .offset(offset)
        .limit(limit)
        .select(Dataset::as_select())
        .load(conn)?;
    let org_ids: Vec<i64> = rows.iter().map(|d| d.provider_org_id).collect();
    let names: Vec<(i64, String)> = organisations::table
        .filter(organisations::id.eq_any(org_ids))
        .select((organisations::id, organisations::name))
        .load(conn)?;
    let rows = rows
        .into_iter()
        .map(|d| {
            let name = names
                .iter()
                .find(|(id, _)| *id == d.provider_org_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            (d, name)
        })
        .collect();
    Ok((rows, total))
}

/// The organisations that list at least one dataset (id, name), by name.
pub fn providers(conn: &mut DbConnection) -> QueryResult<Vec<(i64, String)>> {
    let ids: Vec<i64> = datasets::table
        .select(datasets::provider_org_id)
        .distinct()
        .load(conn)?;
    organisations::table
        .filter(organisations::id.eq_any(ids))
        .order(organisations::name.asc())
        .select((organisations::id, organisations::name))
        .load(conn)
}

/// The datasets of one provider, with their number of versions.
pub fn datasets_of(conn: &mut DbConnection, org_id: i64) -> QueryResult<Vec<(Dataset, i64)>> {
    let rows: Vec<Dataset> = datasets::table
        .filter(datasets::provider_org_id.eq(org_id))
        .order(datasets::id.asc())
        .select(Dataset::as_select())
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
    let counts: Vec<(i64, i64)> = dataset_versions::table
        .filter(dataset_versions::dataset_id.eq_any(ids))
        .group_by(dataset_versions::dataset_id)
        .select((dataset_versions::dataset_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|d| {
            let n = counts
                .iter()
                .find(|(id, _)| *id == d.id)
                .map_or(0, |(_, n)| *n);
            (d, n)
        })
        .collect())
}

/// One code of a category column's domain, with its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeLabel {
    /// The code as written in the CSV.
    pub code: String,
    /// Chinese label.
    pub zh: String,
    /// English label.
    pub en: String,
}

impl CodeLabel {
    /// The label in `lang` (the code when empty).
    pub fn label(&self, lang: crate::i18n::Lang) -> &str {
        let l = crate::i18n::pick(lang, &self.zh, &self.en);
        if l.is_empty() { &self.code } else { l }
    }
}

/// A row of `dataset_columns`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dataset_columns)]
pub struct Column {
    /// Id.
    pub id: i64,
    /// The dataset.
    pub dataset_id: i64,
    /// Position in the CSV (1-based order; gaps allowed).
    pub position: i32,
    /// Header name in the CSV.
    pub name: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// [`ColType`] code.
    pub col_type: String,
    /// Decimals of a decimal column.
    pub scale: i32,
    /// Longest text of a text column, in characters.
    pub max_length: i32,
    /// JSON array of [`CodeLabel`] (category columns).
    pub codes: String,
    /// [`Role`] code.
    pub role: String,
    /// Whether an empty value is allowed.
    pub nullable: bool,
    /// Smallest value of an integer column, if it declares one.
    pub min_value: Option<i64>,
    /// Largest value of an integer column, if it declares one.
    pub max_value: Option<i64>,
}

impl Column {
    /// The declared type.
    pub fn ty(&self) -> ColType {
        ColType::parse(&self.col_type).unwrap_or(ColType::Text)
    }

    /// The declared role.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Identifier)
    }

    /// The label in `lang` (the name when empty).
    pub fn label(&self, lang: crate::i18n::Lang) -> &str {
        let l = crate::i18n::pick(lang, &self.label_zh, &self.label_en);
        if l.is_empty() { &self.name } else { l }
    }

    /// The category domain.
    pub fn code_labels(&self) -> Vec<CodeLabel> {
        serde_json::from_str(&self.codes).unwrap_or_default()
    }

    /// The spec the ingest and the sandbox use.
    pub fn to_ingest(&self) -> IngestColumn {
        let ty = match self.ty() {
            ColType::Integer => ColumnType::Integer,
            ColType::Decimal => ColumnType::Decimal {
                scale: self.scale.clamp(0, 6) as u32,
            },
            ColType::Date => ColumnType::Date,
            ColType::Category => ColumnType::Category {
                codes: self.code_labels().into_iter().map(|c| c.code).collect(),
            },
            ColType::Text => ColumnType::Text,
        };
        IngestColumn {
            spec: ColumnSpec {
                name: self.name.clone(),
                ty,
                role: self.role().to_columnar(),
                nullable: self.nullable,
            },
            max_chars: self.max_length.max(1) as u32,
            min: self.min_value,
            max: self.max_value,
        }
    }
}

/// The fields of a column, as inserted or updated.
#[derive(Debug, Clone, Default, Insertable, AsChangeset)]
#[diesel(table_name = dataset_columns, treat_none_as_null = true)]
pub struct ColumnFields {
    /// Position in the CSV.
    pub position: i32,
    /// Header name.
    pub name: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// [`ColType`] code.
    pub col_type: String,
    /// Decimals (decimal columns).
    pub scale: i32,
    /// Longest text (text columns).
    pub max_length: i32,
    /// JSON array of [`CodeLabel`].
    pub codes: String,
    /// [`Role`] code.
    pub role: String,
    /// Whether empty values are allowed.
    pub nullable: bool,
    /// Smallest value (integer columns), if declared.
    pub min_value: Option<i64>,
    /// Largest value (integer columns), if declared.
    pub max_value: Option<i64>,
}

/// The columns of a dataset in CSV order.
pub fn columns_of(conn: &mut DbConnection, dataset_id: i64) -> QueryResult<Vec<Column>> {
    dataset_columns::table
        .filter(dataset_columns::dataset_id.eq(dataset_id))
        .order((dataset_columns::position.asc(), dataset_columns::id.asc()))
        .select(Column::as_select())
        .load(conn)
}

/// Adds a column to a dataset; returns its id.
pub fn insert_column(
    conn: &mut DbConnection,
    dataset_id: i64,
    fields: &ColumnFields,
) -> QueryResult<i64> {
    diesel::insert_into(dataset_columns::table)
        .values((fields, dataset_columns::dataset_id.eq(dataset_id)))
        .returning(dataset_columns::id)
        .get_result(conn)
}

/// Replaces a column's fields.
pub fn update_column(
    conn: &mut DbConnection,
    id: i64,
    fields: &ColumnFields,
) -> QueryResult<usize> {
    diesel::update(dataset_columns::table.find(id))
        .set(fields)
        .execute(conn)
}

/// Removes a column.
pub fn delete_column(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(dataset_columns::table.find(id)).execute(conn)
}

/// A row of `dataset_versions`.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = dataset_versions)]
pub struct Version {
    /// Id.
    pub id: i64,
    /// The dataset.
    pub dataset_id: i64,
    /// 1, 2, ... per dataset.
    pub version_no: i32,
    /// Data rows.
    pub row_count: i64,
    /// Size of the uploaded CSV in bytes.
    pub byte_count: i64,
    /// sha256 of the uploaded CSV.
    pub sha256: String,
    /// Directory of the columnar version, relative to the data dir.
    pub storage_path: String,
    /// Who uploaded it.
    pub uploaded_by: i64,
    /// When (UTC).
    pub created_at: NaiveDateTime,
    /// The state.
    #[diesel(deserialize_as = String)]
    pub state: VersionState,
    /// Its schema version within the dataset (set when it is published).
    pub schema_no: i32,
    /// JSON array of [`super::summary::ColumnSummary`] (empty for versions uploaded before
    /// summaries were kept).
    pub summary: String,
    /// Who published or discarded it.
    pub decided_by: Option<i64>,
    /// When.
    pub decided_at: Option<NaiveDateTime>,
}

impl Version {
    /// The value summaries of its columns.
    pub fn summaries(&self) -> Vec<super::summary::ColumnSummary> {
        serde_json::from_str(&self.summary).unwrap_or_default()
    }
}

/// A new version row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dataset_versions)]
pub struct NewVersion {
    /// The dataset.
    pub dataset_id: i64,
    /// Its number.
    pub version_no: i32,
    /// Data rows.
    pub row_count: i64,
    /// Bytes of the upload.
    pub byte_count: i64,
    /// sha256 of the upload.
    pub sha256: String,
    /// Directory relative to the data dir.
    pub storage_path: String,
    /// Uploader.
    pub uploaded_by: i64,
    /// When.
    pub created_at: NaiveDateTime,
    /// [`VersionState`] code (a new version is `incomplete` until its files are in place).
    pub state: String,
    /// JSON of its value summaries.
    pub summary: String,
}

/// The versions of a dataset, newest first, with the uploader's name.
pub fn versions_of(
    conn: &mut DbConnection,
    dataset_id: i64,
) -> QueryResult<Vec<(Version, String)>> {
    dataset_versions::table
        .inner_join(users::table)
        .filter(dataset_versions::dataset_id.eq(dataset_id))
        .order(dataset_versions::version_no.desc())
        .select((Version::as_select(), users::display_name))
        .load(conn)
}

/// The published versions of a dataset, newest first, with the uploader's name (what the
/// public catalog lists).
pub fn published_versions_of(
    conn: &mut DbConnection,
    dataset_id: i64,
) -> QueryResult<Vec<(Version, String)>> {
    dataset_versions::table
        .inner_join(users::table)
        .filter(dataset_versions::dataset_id.eq(dataset_id))
        .filter(dataset_versions::state.eq(VersionState::Published.as_str()))
        .order(dataset_versions::version_no.desc())
        .select((Version::as_select(), users::display_name))
        .load(conn)
}

/// A version with its uploader's name.
pub fn find_version(conn: &mut DbConnection, id: i64) -> QueryResult<Option<(Version, String)>> {
    dataset_versions::table
        .inner_join(users::table)
        .filter(dataset_versions::id.eq(id))
        .select((Version::as_select(), users::display_name))
        .first(conn)
        .optional()
}

/// The versions of every dataset in `state`, oldest first.
pub fn versions_in(conn: &mut DbConnection, state: VersionState) -> QueryResult<Vec<Version>> {
    dataset_versions::table
        .filter(dataset_versions::state.eq(state.as_str()))
        .order(dataset_versions::id.asc())
        .select(Version::as_select())
        .load(conn)
}

/// The storage path of every version row (whatever its state).
pub fn storage_paths(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    dataset_versions::table
        .select(dataset_versions::storage_path)
        .load(conn)
}

/// The newest published version of a dataset (of any schema).
pub fn newest_published(conn: &mut DbConnection, dataset_id: i64) -> QueryResult<Option<Version>> {
    dataset_versions::table
        .filter(dataset_versions::dataset_id.eq(dataset_id))
        .filter(dataset_versions::state.eq(VersionState::Published.as_str()))
        .order(dataset_versions::version_no.desc())
        .select(Version::as_select())
        .first(conn)
        .optional()
}

/// The newest published version of schema version `schema_no` of a dataset: what a job reads
/// under an agreement that accepted that schema.
pub fn published_of_schema(
    conn: &mut DbConnection,
    dataset_id: i64,
    schema_no: i32,
) -> QueryResult<Option<Version>> {
    dataset_versions::table
        .filter(dataset_versions::dataset_id.eq(dataset_id))
        .filter(dataset_versions::state.eq(VersionState::Published.as_str()))
        .filter(dataset_versions::schema_no.eq(schema_no))
        .order(dataset_versions::version_no.desc())
        .select(Version::as_select())
        .first(conn)
        .optional()
}

/// The highest schema version published for a dataset (`None` before its first publication).
pub fn current_schema_no(conn: &mut DbConnection, dataset_id: i64) -> QueryResult<Option<i32>> {
    dataset_versions::table
        .filter(dataset_versions::dataset_id.eq(dataset_id))
        .filter(dataset_versions::state.eq(VersionState::Published.as_str()))
        .select(diesel::dsl::max(dataset_versions::schema_no))
        .first(conn)
}

/// The number the next version of a dataset gets.
pub fn next_version_no(conn: &mut DbConnection, dataset_id: i64) -> QueryResult<i32> {
    let max: Option<i32> = dataset_versions::table
        .filter(dataset_versions::dataset_id.eq(dataset_id))
        .select(diesel::dsl::max(dataset_versions::version_no))
        .first(conn)?;
    Ok(max.unwrap_or(0) + 1)
}

/// Inserts a version row; returns its id.
pub fn insert_version(conn: &mut DbConnection, v: &NewVersion) -> QueryResult<i64> {
    diesel::insert_into(dataset_versions::table)
        .values(v)
        .returning(dataset_versions::id)
        .get_result(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip() {
        assert_eq!(Category::ALL.len(), 9);
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(*c));
        }
        assert_eq!(OpenType::parse("not_open"), Some(OpenType::NotOpen));
        assert_eq!(OpenType::parse("nope"), None);
        assert_eq!(Role::PrivacyUnit.label_key(), "catalog.role.privacy_unit");
    }
}
