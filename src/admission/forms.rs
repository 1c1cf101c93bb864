//! The admission forms (call, application, review decisions, objection) and their validation.
//!
//! Forms with repeated or per-dataset fields are posted as urlencoded pairs and read with
//! [`Pairs`]; each form is kept as typed so it can be shown again with the problem named.

use chrono::NaiveDate;

use super::model::{Application, Call, CallFields, EvidenceGroup};
use crate::catalog::model::Category;
use crate::input::{valid_email, valid_phone};
use crate::web::too_long;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest call text, conditions or evidence text, in characters.
pub const MAX_LONG: usize = 20_000;
/// Longest short text (scenario, purpose, reasons line), in characters.
pub const MAX_SHORT: usize = 2_000;
/// Most datasets a call may offer (and an application request).
pub const MAX_DATASETS: usize = 50;
/// Most scenarios a call may list.
pub const MAX_SCENARIOS: usize = 30;
/// Most fields a posted form may have.
pub const MAX_PAIRS: usize = 400;

/// Urlencoded form fields as posted (repeated keys kept).
#[derive(Debug, Clone, Default)]
pub struct Pairs(pub Vec<(String, String)>);

impl Pairs {
    /// The first value of `key` (empty if absent).
    pub fn get(&self, key: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether `key` was posted.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

/// The call form as typed.
#[derive(Debug, Clone, Default)]
pub struct CallForm {
    /// Domain code.
    pub domain: String,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Chinese text.
    pub body_zh: String,
    /// English text.
    pub body_en: String,
    /// Scenarios, one per line.
    pub scenarios: String,
    /// Conditions.
    pub conditions: String,
    /// Opening date `YYYY-MM-DD`.
    pub opens_on: String,
    /// Closing date `YYYY-MM-DD`.
    pub closes_on: String,
    /// Ids of the offered datasets (as typed).
    pub datasets: Vec<String>,
}

impl CallForm {
    /// Reads the posted fields.
    pub fn from_pairs(p: &Pairs) -> Self {
        Self {
            domain: p.get("domain"),
            title_zh: p.get("title_zh"),
            title_en: p.get("title_en"),
            body_zh: p.get("body_zh"),
            body_en: p.get("body_en"),
            scenarios: p.get("scenarios"),
            conditions: p.get("conditions"),
            opens_on: p.get("opens_on"),
            closes_on: p.get("closes_on"),
            datasets: p.all("dataset"),
        }
    }

    /// The form filled from a stored call.
    pub fn from_call(c: &Call, dataset_ids: &[i64]) -> Self {
        Self {
            domain: c.domain.clone(),
            title_zh: c.title_zh.clone(),
            title_en: c.title_en.clone(),
            body_zh: c.body_zh.clone(),
            body_en: c.body_en.clone(),
            scenarios: c.scenarios.clone(),
            conditions: c.conditions.clone(),
            opens_on: c.opens_on.to_string(),
            closes_on: c.closes_on.to_string(),
            datasets: dataset_ids.iter().map(i64::to_string).collect(),
        }
    }

    /// Whether dataset `id` is ticked.
    pub fn offers(&self, id: &i64) -> bool {
        let id = id.to_string();
        self.datasets.contains(&id)
    }

    /// The fields to store and the dataset ids, or the message key of the first problem
    /// (whether each dataset may be offered is checked against the catalog by the caller).
    pub fn validate(&self) -> Result<(CallFields, Vec<i64>), &'static str> {
        let title_zh = self.title_zh.trim();
        let title_en = self.title_en.trim();
        if title_zh.is_empty() || title_en.is_empty() {
            return Err("admission.err_title_required");
        }
        if too_long(title_zh, MAX_TITLE) || too_long(title_en, MAX_TITLE) {
            return Err("admission.err_title_long");
        }
        let domain = Category::parse(&self.domain).ok_or("admission.err_domain")?;
        if [&self.body_zh, &self.body_en, &self.conditions]
            .iter()
            .any(|t| too_long(t, MAX_LONG))
            || too_long(&self.scenarios, MAX_SHORT * 2)
        {
            return Err("admission.err_text_long");
        }
        let scenarios: Vec<&str> = self
            .scenarios
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if scenarios.is_empty() {
            return Err("admission.err_scenarios_required");
        }
        if scenarios.len() > MAX_SCENARIOS || scenarios.iter().any(|s| too_long(s, 200)) {
            return Err("admission.err_scenarios_many");
        }
        let date = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
        let opens_on = date(&self.opens_on).ok_or("admission.err_dates")?;
        let closes_on = date(&self.closes_on).ok_or("admission.err_dates")?;
        if closes_on < opens_on {
            return Err("admission.err_dates_order");
        }
        let mut ids: Vec<i64> = Vec::new();
        for d in &self.datasets {
            let id = d
                .trim()
                .parse::<i64>()
                .map_err(|_| "admission.err_datasets")?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err("admission.err_datasets_required");
        }
        if ids.len() > MAX_DATASETS {
            return Err("admission.err_datasets_many");
        }
        Ok((
            CallFields {
                domain: domain.as_str().to_owned(),
                title_zh: title_zh.to_owned(),
                title_en: title_en.to_owned(),
                body_zh: self.body_zh.trim().to_owned(),
                body_en: self.body_en.trim().to_owned(),
                scenarios: scenarios.join("\n"),
                conditions: self.conditions.trim().to_owned(),
                opens_on,
                closes_on,
            },
            ids,
        ))
    }
}

/// The application form as typed.
#[derive(Debug, Clone, Default)]
pub struct ApplicationForm {
    /// `save` or `submit`.
    pub op: String,
    /// The chosen scenario.
    pub scenario: String,
    /// Ids of the requested datasets (as typed).
    pub datasets: Vec<String>,
    /// Purposes typed per dataset id.
    pub purposes: Vec<(String, String)>,
    /// Evidence text per group, in [`EvidenceGroup::ALL`] order.
    pub evidence: [String; 4],
    /// The declaration box.
    pub declared: bool,
}

/// The application's fields to store.
#[derive(Debug, Clone, Default)]
pub struct ApplicationFields {
    /// Scenario.
    pub scenario: String,
    /// Requested datasets with purposes.
    pub datasets: Vec<(i64, String)>,
    /// Evidence per group.
    pub evidence: [String; 4],
    /// Declaration.
    pub declared: bool,
}

impl ApplicationForm {
    /// Reads the posted fields.
    pub fn from_pairs(p: &Pairs) -> Self {
        let purposes =
            p.0.iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("purpose_")
                        .map(|id| (id.to_owned(), v.clone()))
                })
                .collect();
        Self {
            op: p.get("op"),
            scenario: p.get("scenario"),
            datasets: p.all("dataset"),
            purposes,
            evidence: EvidenceGroup::ALL.map(|g| p.get(&format!("evidence_{}", g.as_str()))),
            declared: p.has("declared"),
        }
    }

    /// The form filled from a stored application.
    pub fn from_application(a: &Application, requested: &[(i64, String)]) -> Self {
        Self {
            op: String::new(),
            scenario: a.scenario.clone(),
            datasets: requested.iter().map(|(id, _)| id.to_string()).collect(),
            purposes: requested
                .iter()
                .map(|(id, p)| (id.to_string(), p.clone()))
                .collect(),
            evidence: EvidenceGroup::ALL.map(|g| a.evidence(g).to_owned()),
            declared: a.declared,
        }
    }

    /// Whether dataset `id` is ticked.
    pub fn requests(&self, id: &i64) -> bool {
        self.datasets.contains(&id.to_string())
    }

    /// The purpose typed for dataset `id`.
    pub fn purpose(&self, id: &i64) -> &str {
        let id = id.to_string();
        self.purposes
            .iter()
            .find(|(k, _)| *k == id)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The evidence typed for group `i` (index in [`EvidenceGroup::ALL`]).
    pub fn evidence_at(&self, i: &usize) -> &str {
        self.evidence.get(*i).map_or("", String::as_str)
    }

    /// The fields to store, or the message key of the first problem. `offered` are the ids
    /// the call offers, `scenarios` its scenarios.
    pub fn validate(
        &self,
        offered: &[i64],
        scenarios: &[String],
    ) -> Result<ApplicationFields, &'static str> {
        let scenario = self.scenario.trim();
        if !scenario.is_empty() && !scenarios.iter().any(|s| s == scenario) {
            return Err("admission.err_scenario_unknown");
        }
        if self.evidence.iter().any(|e| too_long(e, MAX_LONG)) {
            return Err("admission.err_text_long");
        }
        let mut datasets: Vec<(i64, String)> = Vec::new();
        for d in &self.datasets {
            let id = d
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| offered.contains(id))
                .ok_or("admission.err_dataset_not_offered")?;
            let purpose = self.purpose(&id).trim();
            if too_long(purpose, MAX_SHORT) {
                return Err("admission.err_text_long");
            }
            if !datasets.iter().any(|(x, _)| *x == id) {
                datasets.push((id, purpose.to_owned()));
            }
        }
        if datasets.len() > MAX_DATASETS {
            return Err("admission.err_datasets_many");
        }
        Ok(ApplicationFields {
            scenario: scenario.to_owned(),
            datasets,
            evidence: self.evidence.clone().map(|e| e.trim().to_owned()),
            declared: self.declared,
        })
    }
}

/// What an application still lacks before it can be submitted: message keys, in form order.
pub fn missing(a: &Application, datasets: &[(i64, String)]) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.credit_code.trim().is_empty() || a.legal_representative.trim().is_empty() {
        out.push("admission.missing_org_details");
    }
    if a.scenario.trim().is_empty() {
        out.push("admission.missing_scenario");
    }
    if datasets.is_empty() {
        out.push("admission.missing_datasets");
    }
    if datasets.iter().any(|(_, p)| p.trim().is_empty()) {
        out.push("admission.missing_purpose");
    }
    for g in EvidenceGroup::ALL {
        if a.evidence(g).trim().is_empty() {
            out.push(match g {
                EvidenceGroup::Basic => "admission.missing_evidence_basic",
                EvidenceGroup::Technical => "admission.missing_evidence_technical",
                EvidenceGroup::Scenario => "admission.missing_evidence_scenario",
                EvidenceGroup::Domain => "admission.missing_evidence_domain",
            });
        }
    }
    if !a.declared {
        out.push("admission.missing_declaration");
    }
    out
}

/// Longest objector name, in characters.
pub const MAX_OBJECTOR_NAME: usize = 100;
/// Longest objector contact, in characters.
pub const MAX_CONTACT: usize = 200;
/// Longest grounds of an objection, in characters.
pub const MAX_GROUNDS: usize = 5_000;

/// The objection form as typed (the arithmetic check is the handler's).
#[derive(Debug, Clone, Default)]
pub struct ObjectionForm {
    /// Name.
    pub name: String,
    /// Contact.
    pub contact: String,
    /// Grounds.
    pub grounds: String,
}

impl ObjectionForm {
    /// Reads the posted fields.
    pub fn from_pairs(p: &Pairs) -> Self {
        Self {
            name: p.get("name"),
            contact: p.get("contact"),
            grounds: p.get("grounds"),
        }
    }

    /// The name, contact (an email address or a phone number) and grounds, trimmed, or the
    /// message key of the first problem.
    pub fn validate(&self) -> Result<(String, String, String), &'static str> {
        let (name, contact, grounds) = (self.name.trim(), self.contact.trim(), self.grounds.trim());
        if name.is_empty() || contact.is_empty() || grounds.is_empty() {
            return Err("admission.err_objection_fields");
        }
        if self.name.chars().count() > MAX_OBJECTOR_NAME
            || self.contact.chars().count() > MAX_CONTACT
            || self.grounds.chars().count() > MAX_GROUNDS
        {
            return Err("admission.err_objection_long");
        }
        if !valid_email(&self.contact) && !valid_phone(&self.contact) {
            return Err("admission.err_objection_contact");
        }
        Ok((name.to_owned(), contact.to_owned(), grounds.to_owned()))
    }
}

/// Reasons text: trimmed, required, at most [`MAX_LONG`] characters.
pub fn reasons(text: &str, required_key: &'static str) -> Result<String, &'static str> {
    let t = text.trim();
    if t.is_empty() {
        return Err(required_key);
    }
    if too_long(t, MAX_LONG) {
        return Err("admission.err_text_long");
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_pairs() -> Pairs {
        Pairs(
            [
                ("domain", "medical_services"),
                ("title_zh", "通告"),
                ("title_en", "Call"),
                ("scenarios", "保险\n\n科研\n"),
                ("opens_on", "2026-11-01"),
                ("closes_on", "2026-12-31"),
                ("dataset", "3"),
                ("dataset", "3"),
                ("dataset", "5"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        )
    }

    #[test]
    fn call_form_rules() {
        let (f, ids) = CallForm::from_pairs(&call_pairs()).validate().unwrap();
        assert_eq!(ids, [3, 5]);
        assert_eq!(f.scenarios, "保险\n科研");
        let mut c = CallForm::from_pairs(&call_pairs());
        c.closes_on = "2026-10-01".into();
        assert_eq!(c.validate().unwrap_err(), "admission.err_dates_order");
        let mut c = CallForm::from_pairs(&call_pairs());
        c.datasets.clear();
        assert_eq!(c.validate().unwrap_err(), "admission.err_datasets_required");
        let mut c = CallForm::from_pairs(&call_pairs());
        c.domain = "x".into();
        assert_eq!(c.validate().unwrap_err(), "admission.err_domain");
    }

    #[test]
    fn application_form_rules() {
        let p = Pairs(vec![
            ("scenario".into(), "科研".into()),
            ("dataset".into(), "3".into()),
            ("purpose_3".into(), " 研究 ".into()),
            ("evidence_basic".into(), "x".into()),
        ]);
        let f = ApplicationForm::from_pairs(&p);
        let fields = f.validate(&[3], &["科研".into()]).unwrap();
        assert_eq!(fields.datasets, [(3, "研究".to_owned())]);
        assert!(!fields.declared);
        assert_eq!(
            f.validate(&[4], &["科研".into()]).unwrap_err(),
            "admission.err_dataset_not_offered"
        );
        assert_eq!(
            f.validate(&[3], &["保险".into()]).unwrap_err(),
            "admission.err_scenario_unknown"
        );
        assert_eq!(reasons("  ", "k"), Err("k"));
    }

    #[test]
    fn objection_form_rules() {
        let form = |name: &str, contact: &str, grounds: &str| ObjectionForm {
            name: name.into(),
            contact: contact.into(),
            grounds: grounds.into(),
        };
        assert_eq!(
            form(" 张三 ", "z@example.cn", " 理由 ").validate(),
            Ok(("张三".into(), "z@example.cn".into(), "理由".into()))
        );
        assert!(form("张三", "13800000000", "理由").validate().is_ok());
        assert_eq!(
            form("张三", " ", "理由").validate(),
            Err("admission.err_objection_fields")
        );
        assert_eq!(
            form("张三", "somewhere", "理由").validate(),
            Err("admission.err_objection_contact")
        );
        assert_eq!(
            form("张三", "z@example.cn", &"理".repeat(MAX_GROUNDS + 1)).validate(),
            Err("admission.err_objection_long")
        );
    }
}
