//! Agreement rows, their queries, and the canonical text that the seal signs.
//!
//! # The canonical text
//!
//! The seal signs the UTF-8 bytes of one JSON object, serialized without any whitespace, with
//! the keys of every object in byte order (serde_json's sorted map), strings as serde_json
//! escapes them, decimals as their stored canonical strings, dates `YYYY-MM-DD` and times
//! `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC). Its fields:
//!
//! `format` (`"dataop-agreement/1"`), `number`, `version`, `previous_number` (or null),
//! `application_id`, `parties` {`regulator`, `operator` {`name`, `credit_code`}, `providers`
//! [names, sorted, unique]}, `datasets` [{`id`, `title`, `provider`, `epsilon`} by id],
//! `purpose`, `scenario`, `security_measures`, `disposal`, `trial_months`, `price_per_job`,
//! `price_per_thousand_rows` (null when not agreed), `revenue_split` {`platform`, `provider`,
//! `operator`}, `run_budget` {`runs`, `period`}, `operator_signature` {`name`, `signed_at`},
//! `term` {`starts_on`, `ends_on`}, `sealed_at`.
//!
//! Everything is rebuilt from the stored row when verifying, so a change to any of these
//! columns after sealing makes the hash differ and the agreement fails verification.

use chrono::{Months, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::machine::{AgreementState, RectificationState, RequestState};
use crate::db::DbConnection;
use crate::schema::{
    agreement_datasets, agreement_exits, agreement_signatures, agreements, rectifications,
    termination_requests,
};

/// Months of an agreement's term (Hangzhou point 8).
pub const TERM_MONTHS: u32 = 24;
/// Longest trial period, in months (Hangzhou point 8).
pub const MAX_TRIAL_MONTHS: i32 = 6;
/// Days before the end of the term when both parties are warned.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// A row of `agreements` (the terms; signatures and exit are in their own tables).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agreements)]
pub struct AgreementRow {
    /// Id.
    pub id: i64,
    /// Number, e.g. `DATAOP-2026-0001` (amendments `DATAOP-2026-0001-V2`).
    pub number: String,
    /// Version (1 for the original).
    pub version: i32,
    /// The version this one amends.
    pub previous_id: Option<i64>,
    /// The admitted application it was drafted from.
    pub application_id: i64,
    /// The regulator's organisation.
    pub regulator_org_id: i64,
    /// Its name, as drafted.
    pub regulator_name: String,
    /// The operator's organisation.
    pub operator_org_id: i64,
    /// Its name, as drafted.
    pub operator_name: String,
    /// Its unified social credit code, as drafted.
    pub operator_credit_code: String,
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: AgreementState,
    /// Purpose.
    pub purpose: String,
    /// Application scenario.
    pub scenario: String,
    /// Security measures.
    pub security_measures: String,
    /// Data disposal at the end.
    pub disposal: String,
    /// Trial months (0–6), the first months of the term.
    pub trial_months: i32,
    /// Price per job (canonical decimal).
    pub price_per_job: Option<String>,
    /// Price per thousand rows read (canonical decimal).
    pub price_per_thousand_rows: Option<String>,
    /// Revenue share of the platform, percent.
    pub split_platform: String,
    /// Revenue share of the data providers, percent.
    pub split_provider: String,
    /// Revenue share of the operator, percent.
    pub split_operator: String,
    /// Runs allowed per period.
    pub run_budget: i32,
    /// The period of the run budget (`day`, `week`, `month`).
    pub run_period: String,
    /// Drafted by.
    pub created_by: i64,
    /// Drafted at.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// First day of the term.
    pub starts_on: Option<NaiveDate>,
    /// Last day of the term.
    pub ends_on: Option<NaiveDate>,
    /// When the expiry warning went out.
    pub expiry_warned_at: Option<NaiveDateTime>,
}

/// A row of `agreement_signatures`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agreement_signatures)]
pub struct SignatureRow {
    /// The agreement.
    pub agreement_id: i64,
    /// Signed by (operator user).
    pub operator_signed_by: i64,
    /// The name typed when signing.
    pub operator_signed_name: String,
    /// Signed at.
    pub operator_signed_at: NaiveDateTime,
    /// Sealed by (regulator user).
    pub sealed_by: Option<i64>,
    /// Sealed at.
    pub sealed_at: Option<NaiveDateTime>,
    /// SHA-256 of the canonical text, hex.
    pub canonical_sha256: Option<String>,
    /// Ed25519 signature of the canonical text, hex.
    pub signature: Option<String>,
    /// The seal's public key, hex.
    pub public_key: Option<String>,
}

/// A row of `agreement_exits`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agreement_exits)]
pub struct ExitRow {
    /// The agreement.
    pub agreement_id: i64,
    /// The end reason code.
    pub reason: String,
    /// Why, in words (reason, legal basis).
    pub note: String,
    /// Ended by (none: the scheduler).
    pub ended_by: Option<i64>,
    /// When.
    pub ended_at: NaiveDateTime,
    /// Disposal confirmation: what was deleted.
    pub disposal_what: Option<String>,
    /// Disposal confirmation: when.
    pub disposal_on: Option<NaiveDate>,
    /// Disposal confirmation: by whom.
    pub disposal_by: Option<String>,
    /// Filed by.
    pub disposal_filed_by: Option<i64>,
    /// Filed at.
    pub disposal_filed_at: Option<NaiveDateTime>,
}

/// An agreement with its signatures and exit, as pages and the canonical text use it.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Id.
    pub id: i64,
    /// Number, e.g. `DATAOP-2026-0001` (amendments `DATAOP-2026-0001-V2`).
    pub number: String,
    /// Version (1 for the original).
    pub version: i32,
    /// The version this one amends.
    pub previous_id: Option<i64>,
    /// The admitted application it was drafted from.
    pub application_id: i64,
    /// The regulator's organisation.
    pub regulator_org_id: i64,
    /// Its name, as drafted.
    pub regulator_name: String,
    /// The operator's organisation.
    pub operator_org_id: i64,
    /// Its name, as drafted.
    pub operator_name: String,
    /// Its unified social credit code, as drafted.
    pub operator_credit_code: String,
    /// State.
    pub state: AgreementState,
    /// Purpose.
    pub purpose: String,
    /// Application scenario.
    pub scenario: String,
    /// Security measures.
    pub security_measures: String,
    /// Data disposal at the end.
    pub disposal: String,
    /// Trial months (0–6), the first months of the term.
    pub trial_months: i32,
    /// Price per job (canonical decimal).
    pub price_per_job: Option<String>,
    /// Price per thousand rows read (canonical decimal).
    pub price_per_thousand_rows: Option<String>,
    /// Revenue share of the platform, percent.
    pub split_platform: String,
    /// Revenue share of the data providers, percent.
    pub split_provider: String,
    /// Revenue share of the operator, percent.
    pub split_operator: String,
    /// Runs allowed per period.
    pub run_budget: i32,
    /// The period of the run budget (`day`, `week`, `month`).
    pub run_period: String,
    /// Drafted by.
    pub created_by: i64,
    /// Drafted at.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// Signed by (operator user).
    pub operator_signed_by: Option<i64>,
    /// The name typed when signing.
    pub operator_signed_name: Option<String>,
    /// Signed at.
    pub operator_signed_at: Option<NaiveDateTime>,
    /// Sealed by (regulator user).
    pub sealed_by: Option<i64>,
    /// Sealed at.
    pub sealed_at: Option<NaiveDateTime>,
    /// First day of the term.
    pub starts_on: Option<NaiveDate>,
    /// Last day of the term.
    pub ends_on: Option<NaiveDate>,
    /// SHA-256 of the canonical text, hex.
    pub canonical_sha256: Option<String>,
    /// Ed25519 signature of the canonical text, hex.
    pub signature: Option<String>,
    /// The seal's public key, hex.
    pub public_key: Option<String>,
    /// When the expiry warning went out.
    pub expiry_warned_at: Option<NaiveDateTime>,
    /// When it ended.
    pub ended_at: Option<NaiveDateTime>,
    /// Why it ended, in words (reason, legal basis).
    pub end_note: String,
    /// Disposal confirmation: what was deleted.
    pub disposal_what: Option<String>,
    /// Disposal confirmation: when.
    pub disposal_on: Option<NaiveDate>,
    /// Disposal confirmation: by whom.
    pub disposal_by: Option<String>,
    /// Filed by.
    pub disposal_filed_by: Option<i64>,
    /// Filed at.
    pub disposal_filed_at: Option<NaiveDateTime>,
}

impl Agreement {
    /// Puts the parts together.
    pub fn assemble(r: AgreementRow, sig: Option<SignatureRow>, exit: Option<ExitRow>) -> Self {
        Agreement {
            id: r.id,
            number: r.number,
            version: r.version,
            previous_id: r.previous_id,
            application_id: r.application_id,
            regulator_org_id: r.regulator_org_id,
            regulator_name: r.regulator_name,
            operator_org_id: r.operator_org_id,
            operator_name: r.operator_name,
            operator_credit_code: r.operator_credit_code,
            state: r.state,
            purpose: r.purpose,
            scenario: r.scenario,
            security_measures: r.security_measures,
            disposal: r.disposal,
            trial_months: r.trial_months,
            price_per_job: r.price_per_job,
            price_per_thousand_rows: r.price_per_thousand_rows,
            split_platform: r.split_platform,
            split_provider: r.split_provider,
            split_operator: r.split_operator,
            run_budget: r.run_budget,
            run_period: r.run_period,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            operator_signed_by: sig.as_ref().map(|s| s.operator_signed_by),
            operator_signed_name: sig.as_ref().map(|s| s.operator_signed_name.clone()),
            operator_signed_at: sig.as_ref().map(|s| s.operator_signed_at),
            sealed_by: sig.as_ref().and_then(|s| s.sealed_by),
            sealed_at: sig.as_ref().and_then(|s| s.sealed_at),
            starts_on: r.starts_on,
            ends_on: r.ends_on,
            canonical_sha256: sig.as_ref().and_then(|s| s.canonical_sha256.clone()),
            signature: sig.as_ref().and_then(|s| s.signature.clone()),
            public_key: sig.and_then(|s| s.public_key),
            expiry_warned_at: r.expiry_warned_at,
            ended_at: exit.as_ref().map(|x| x.ended_at),
            end_note: exit.as_ref().map(|x| x.note.clone()).unwrap_or_default(),
            disposal_what: exit.as_ref().and_then(|x| x.disposal_what.clone()),
            disposal_on: exit.as_ref().and_then(|x| x.disposal_on),
            disposal_by: exit.as_ref().and_then(|x| x.disposal_by.clone()),
            disposal_filed_by: exit.as_ref().and_then(|x| x.disposal_filed_by),
            disposal_filed_at: exit.and_then(|x| x.disposal_filed_at),
        }
    }

    /// Whether it has ended and still lacks the operator's disposal confirmation.
    pub fn disposal_outstanding(&self) -> bool {
        matches!(self.state, AgreementState::Ended(_)) && self.disposal_filed_at.is_none()
    }

    /// The last day of the trial period, if there is one and the term started.
    pub fn trial_ends_on(&self) -> Option<NaiveDate> {
        let start = self.starts_on?;
        (self.trial_months > 0)
            .then(|| start.checked_add_months(Months::new(self.trial_months as u32)))
            .flatten()
            .and_then(|d| d.pred_opt())
    }
}

/// One dataset of an agreement.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agreement_datasets)]
pub struct AgreementDataset {
    /// The agreement.
    pub agreement_id: i64,
    /// The dataset.
    pub dataset_id: i64,
    /// Its title when drafted.
    pub dataset_title: String,
    /// Its provider.
    pub provider_org_id: i64,
    /// The provider's name when drafted.
    pub provider_name: String,
    /// Privacy budget (epsilon) for the term, canonical decimal.
    pub epsilon: String,
}

/// A rectification order.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rectifications)]
pub struct Rectification {
    /// Id.
    pub id: i64,
    /// The agreement.
    pub agreement_id: i64,
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: RectificationState,
    /// What must be corrected.
    pub order_text: String,
    /// Working days allowed.
    pub working_days: i32,
    /// Last day to answer.
    pub due_on: NaiveDate,
    /// Ordered by.
    pub ordered_by: i64,
    /// Ordered at.
    pub ordered_at: NaiveDateTime,
    /// The operator's answer.
    pub answer: Option<String>,
    /// Answered by.
    pub answered_by: Option<i64>,
    /// Answered at.
    pub answered_at: Option<NaiveDateTime>,
    /// The regulator's note on its decision.
    pub decision_note: String,
    /// Decided by.
    pub decided_by: Option<i64>,
    /// Decided at.
    pub decided_at: Option<NaiveDateTime>,
}

/// A termination request.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = termination_requests)]
pub struct TerminationRequest {
    /// Id.
    pub id: i64,
    /// The agreement.
    pub agreement_id: i64,
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: RequestState,
    /// The operator's reason.
    pub reason: String,
    /// Requested by.
    pub requested_by: i64,
    /// Requested at.
    pub requested_at: NaiveDateTime,
    /// The regulator's note.
    pub decision_note: String,
    /// Decided by.
    pub decided_by: Option<i64>,
    /// Decided at.
    pub decided_at: Option<NaiveDateTime>,
}

/// Completes agreement rows with their signatures and exits (same order).
pub fn complete(conn: &mut DbConnection, rows: Vec<AgreementRow>) -> QueryResult<Vec<Agreement>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let sigs: Vec<SignatureRow> = agreement_signatures::table
        .filter(agreement_signatures::agreement_id.eq_any(&ids))
        .select(SignatureRow::as_select())
        .load(conn)?;
    let exits: Vec<ExitRow> = agreement_exits::table
        .filter(agreement_exits::agreement_id.eq_any(&ids))
        .select(ExitRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let sig = sigs.iter().find(|s| s.agreement_id == r.id).cloned();
            let exit = exits.iter().find(|x| x.agreement_id == r.id).cloned();
            Agreement::assemble(r, sig, exit)
        })
        .collect())
}

/// Loads agreements by id (in id order).
pub fn load_ids(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Agreement>> {
    let rows = agreements::table
        .filter(agreements::id.eq_any(ids))
        .order(agreements::id)
        .select(AgreementRow::as_select())
        .load(conn)?;
    complete(conn, rows)
}

/// Loads an agreement.
pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Agreement>> {
    Ok(load_ids(conn, &[id])?.pop())
}

/// Loads an agreement by number.
pub fn find_by_number(conn: &mut DbConnection, number: &str) -> QueryResult<Option<Agreement>> {
    let rows = agreements::table
        .filter(agreements::number.eq(number))
        .select(AgreementRow::as_select())
        .load(conn)?;
    Ok(complete(conn, rows)?.pop())
}

/// The datasets of an agreement, by dataset id.
pub fn datasets_of(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<AgreementDataset>> {
    agreement_datasets::table
        .filter(agreement_datasets::agreement_id.eq(id))
        .order(agreement_datasets::dataset_id)
        .select(AgreementDataset::as_select())
        .load(conn)
}

/// The rectification orders of an agreement, newest first.
pub fn rectifications_of(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<Rectification>> {
    rectifications::table
        .filter(rectifications::agreement_id.eq(id))
        .order(rectifications::id.desc())
        .select(Rectification::as_select())
        .load(conn)
}

/// The termination requests of an agreement, newest first.
pub fn requests_of(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<TerminationRequest>> {
    termination_requests::table
        .filter(termination_requests::agreement_id.eq(id))
        .order(termination_requests::id.desc())
        .select(TerminationRequest::as_select())
        .load(conn)
}

/// Whether the organisation has an agreement whose term runs, other than `except`.
pub fn org_has_running(conn: &mut DbConnection, org_id: i64, except: i64) -> QueryResult<bool> {
    let n: i64 = agreements::table
        .filter(agreements::operator_org_id.eq(org_id))
        .filter(agreements::id.ne(except))
        .filter(super::machine::state_running())
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The next agreement number of `year`: `DATAOP-<year>-<4-digit sequence>`.
pub fn next_number(conn: &mut DbConnection, year: i32) -> QueryResult<String> {
    // Two drafts at the same instant must not get the same number. SQLite writes one
    // transaction at a time already; on PostgreSQL a transaction-scoped advisory lock
    // serializes the numbering (call this inside the drafting transaction).
    crate::db::lock(conn, crate::db::Lock::AgreementNumbers)?;
    let prefix = format!("DATAOP-{year}-");
    let n: i64 = agreements::table
        .filter(agreements::number.like(format!("{prefix}%")))
        .filter(agreements::version.eq(1))
        .count()
        .get_result(conn)?;
    Ok(format!("{prefix}{:04}", n + 1))
}

/// The number of version `version` of the agreement numbered `base`.
pub fn amendment_number(base: &str, version: i32) -> String {
    let root = base.split("-V").next().unwrap_or(base);
    format!("{root}-V{version}")
}

/// The last day of a term starting on `start`.
pub fn term_end(start: NaiveDate) -> NaiveDate {
    start
        .checked_add_months(Months::new(TERM_MONTHS))
        .and_then(|d| d.pred_opt())
        .unwrap_or(start)
}

/// A timestamp as the canonical text writes it.
pub fn fmt_ts(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// The canonical text of a sealed (or about to be sealed) agreement; see the module docs.
pub fn canonical_text(
    a: &Agreement,
    datasets: &[AgreementDataset],
    previous_number: Option<&str>,
) -> String {
    let mut providers: Vec<&str> = datasets.iter().map(|d| d.provider_name.as_str()).collect();
    providers.sort_unstable();
    providers.dedup();
    let ds: Vec<serde_json::Value> = datasets
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d.dataset_id,
                "title": d.dataset_title,
                "provider": d.provider_name,
                "epsilon": d.epsilon,
            })
        })
        .collect();
    sort_keys(serde_json::json!({
        "format": "dataop-agreement/1",
        "number": a.number,
        "version": a.version,
        "previous_number": previous_number,
        "application_id": a.application_id,
        "parties": {
            "regulator": a.regulator_name,
            "operator": { "name": a.operator_name, "credit_code": a.operator_credit_code },
            "providers": providers,
        },
        "datasets": ds,
        "purpose": a.purpose,
        "scenario": a.scenario,
        "security_measures": a.security_measures,
        "disposal": a.disposal,
        "trial_months": a.trial_months,
        "price_per_job": a.price_per_job,
        "price_per_thousand_rows": a.price_per_thousand_rows,
        "revenue_split": {
            "platform": a.split_platform,
            "provider": a.split_provider,
            "operator": a.split_operator,
        },
        "run_budget": { "runs": a.run_budget, "period": a.run_period },
        "operator_signature": {
            "name": a.operator_signed_name,
            "signed_at": a.operator_signed_at.map(fmt_ts),
        },
        "term": {
            "starts_on": a.starts_on.map(|d| d.to_string()),
            "ends_on": a.ends_on.map(|d| d.to_string()),
        },
        "sealed_at": a.sealed_at.map(fmt_ts),
    }))
    .to_string()
}

/// The value with the keys of every object in byte order, whatever map serde_json is built
/// with (the `preserve_order` feature would otherwise keep insertion order).
fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

/// SHA-256 of a text, hex.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The canonical text of a stored agreement (loading its datasets and previous number).
pub fn canonical_of(conn: &mut DbConnection, a: &Agreement) -> QueryResult<String> {
    let ds = datasets_of(conn, a.id)?;
    let prev = match a.previous_id {
        Some(p) => Some(
            agreements::table
                .find(p)
                .select(agreements::number)
                .first::<String>(conn)?,
        ),
        None => None,
    };
    Ok(canonical_text(a, &ds, prev.as_deref()))
}

/// Parses a stored decimal (stored values are always valid; a corrupt one reads as zero).
pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

/// An amount of money for display: two decimal places.
pub fn money(s: &str) -> String {
    let mut d = dec(s);
    d.rescale(2);
    d.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Agreement, Vec<AgreementDataset>) {
        let t = NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_micro_opt(2, 3, 4, 5)
            .unwrap();
        let row = AgreementRow {
            id: 1,
            number: "DATAOP-2026-0001".into(),
            version: 1,
            previous_id: None,
            application_id: 7,
            regulator_org_id: 1,
            regulator_name: "市数据局".into(),
            operator_org_id: 5,
            operator_name: "阿尔法".into(),
            operator_credit_code: "91330106700000230X".into(),
            state: AgreementState::InForce,
            purpose: "p \"q\"".into(),
            scenario: "s".into(),
            security_measures: "m".into(),
            disposal: "d".into(),
            trial_months: 3,
            price_per_job: Some("0.10".into()),
            price_per_thousand_rows: None,
            split_platform: "20".into(),
            split_provider: "30".into(),
            split_operator: "50".into(),
            run_budget: 100,
            run_period: "month".into(),
            created_by: 1,
            created_at: t,
            updated_at: t,
            starts_on: Some(t.date()),
            ends_on: Some(term_end(t.date())),
            expiry_warned_at: None,
        };
        let sig = SignatureRow {
            agreement_id: 1,
            operator_signed_by: 3,
            operator_signed_name: "阿尔法".into(),
            operator_signed_at: t,
            sealed_by: Some(2),
            sealed_at: Some(t),
            canonical_sha256: None,
            signature: None,
            public_key: None,
        };
        let ds = vec![AgreementDataset {
            agreement_id: 1,
            dataset_id: 9,
            dataset_title: "门诊".into(),
            provider_org_id: 2,
            provider_name: "卫健委".into(),
            epsilon: "1.5".into(),
        }];
        (Agreement::assemble(row, Some(sig), None), ds)
    }

    #[test]
    fn canonical_text_is_pinned() {
        let (a, ds) = sample();
        let text = canonical_text(&a, &ds, None);
        assert_eq!(
            text,
            concat!(
                r#"{"application_id":7,"datasets":[{"epsilon":"1.5","id":9,"provider":"卫健委","title":"门诊"}],"#,
                r#""disposal":"d","format":"dataop-agreement/1","number":"DATAOP-2026-0001","#,
                r#""operator_signature":{"name":"阿尔法","signed_at":"2026-11-23T02:03:04.000005"},"#,
                r#""parties":{"operator":{"credit_code":"91330106700000230X","name":"阿尔法"},"#,
                r#""providers":["卫健委"],"regulator":"市数据局"},"previous_number":null,"#,
                r#""price_per_job":"0.10","price_per_thousand_rows":null,"purpose":"p \"q\"","#,
                r#""revenue_split":{"operator":"50","platform":"20","provider":"30"},"#,
                r#""run_budget":{"period":"month","runs":100},"scenario":"s","#,
                r#""sealed_at":"2026-11-23T02:03:04.000005","security_measures":"m","#,
                r#""term":{"ends_on":"2028-11-22","starts_on":"2026-11-23"},"trial_months":3,"#,
                r#""version":1}"#
            )
        );
        let mut changed = a.clone();
        changed.purpose.push('.');
        assert_ne!(
            sha256_hex(&canonical_text(&changed, &ds, None)),
            sha256_hex(&text)
        );
        assert_eq!(a.trial_ends_on(), NaiveDate::from_ymd_opt(2027, 2, 22));
    }

    #[test]
    fn term_and_numbers() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(term_end(d), NaiveDate::from_ymd_opt(2028, 11, 22).unwrap());
        let leap = NaiveDate::from_ymd_opt(2028, 2, 29).unwrap();
        assert_eq!(
            term_end(leap),
            NaiveDate::from_ymd_opt(2030, 2, 27).unwrap()
        );
        assert_eq!(
            amendment_number("DATAOP-2026-0001", 2),
            "DATAOP-2026-0001-V2"
        );
        assert_eq!(
            amendment_number("DATAOP-2026-0001-V2", 3),
            "DATAOP-2026-0001-V3"
        );
        assert_eq!(money("0.3"), "0.30");
    }
}
