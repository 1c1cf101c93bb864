//! The regulator's draft form and its validation.
//!
//! The form is posted as a list of fields so the chosen datasets can repeat (`dataset=3&
//! dataset=5`) with one privacy budget each (`epsilon_3=1.0`). It is kept as typed so it can be
//! shown again with the message; [`DraftForm::validate`] returns the values to store or the
//! first problem (a message key with its arguments).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::model::{Agreement, AgreementDataset, MAX_TRIAL_MONTHS};
use crate::input::MAX_TEXT;

/// Most datasets one agreement may cover (and most fields the form reads).
pub const MAX_DATASETS: usize = 200;
/// Most form fields read.
pub const MAX_FIELDS: usize = 2 * MAX_DATASETS + 20;
/// Largest run budget per period.
pub const MAX_RUNS: i32 = 1_000_000;
/// Largest privacy budget (epsilon) per dataset.
pub const MAX_EPSILON: i64 = 100;
/// Periods a run budget may count over.
pub const RUN_PERIODS: [&str; 3] = ["day", "week", "month"];

/// The draft form as typed.
#[derive(Debug, Clone, Default)]
pub struct DraftForm {
    /// CSRF token.
    pub csrf: String,
    /// Chosen dataset ids, as typed.
    pub datasets: Vec<String>,
    /// Epsilon per dataset id, as typed.
    pub epsilon: BTreeMap<String, String>,
    /// Purpose.
    pub purpose: String,
    /// Scenario.
    pub scenario: String,
    /// Security measures.
    pub security_measures: String,
    /// Disposal at the end.
    pub disposal: String,
    /// Trial months.
    pub trial_months: String,
    /// Price per job.
    pub price_per_job: String,
    /// Price per thousand rows.
    pub price_per_thousand_rows: String,
    /// Platform share, percent.
    pub split_platform: String,
    /// Provider share, percent.
    pub split_provider: String,
    /// Operator share, percent.
    pub split_operator: String,
    /// Runs per period.
    pub run_budget: String,
    /// The period.
    pub run_period: String,
}

/// A validation problem: message key and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Message key.
    pub key: &'static str,
    /// `{name}` arguments.
    pub args: Vec<(&'static str, String)>,
}

fn problem(key: &'static str) -> Problem {
    Problem {
        key,
        args: Vec::new(),
    }
}

/// The validated terms of a draft.
#[derive(Debug, Clone)]
pub struct Terms {
    /// (dataset id, canonical epsilon), by id.
    pub datasets: Vec<(i64, String)>,
    /// Purpose.
    pub purpose: String,
    /// Scenario.
    pub scenario: String,
    /// Security measures.
    pub security_measures: String,
    /// Disposal.
    pub disposal: String,
    /// Trial months.
    pub trial_months: i32,
    /// Price per job, two decimals.
    pub price_per_job: Option<String>,
    /// Price per thousand rows, two decimals.
    pub price_per_thousand_rows: Option<String>,
    /// Shares (platform, provider, operator), canonical.
    pub split: (String, String, String),
    /// Runs per period.
    pub run_budget: i32,
    /// Period.
    pub run_period: String,
}

impl DraftForm {
    /// Reads the posted fields (at most [`MAX_FIELDS`]; unknown ones are ignored).
    pub fn from_fields(fields: Vec<(String, String)>) -> Self {
        let mut f = DraftForm::default();
        for (k, v) in fields.into_iter().take(MAX_FIELDS) {
            match k.as_str() {
                "csrf" => f.csrf = v,
                "dataset" => f.datasets.push(v),
                "purpose" => f.purpose = v,
                "scenario" => f.scenario = v,
                "security_measures" => f.security_measures = v,
                "disposal" => f.disposal = v,
                "trial_months" => f.trial_months = v,
                "price_per_job" => f.price_per_job = v,
                "price_per_thousand_rows" => f.price_per_thousand_rows = v,
                "split_platform" => f.split_platform = v,
                "split_provider" => f.split_provider = v,
                "split_operator" => f.split_operator = v,
                "run_budget" => f.run_budget = v,
                "run_period" => f.run_period = v,
                other => {
                    if let Some(id) = other.strip_prefix("epsilon_") {
                        f.epsilon.insert(id.to_owned(), v);
                    }
                }
            }
        }
        f
    }

    /// A form prefilled from an admitted application: all approved datasets, its scenario.
    pub fn from_application(scenario: &str, approved: &[(i64, String)]) -> Self {
        DraftForm {
            datasets: approved.iter().map(|(id, _)| id.to_string()).collect(),
            epsilon: approved
                .iter()
                .map(|(id, _)| (id.to_string(), "1".to_owned()))
                .collect(),
            purpose: approved
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            scenario: scenario.to_owned(),
            trial_months: "0".into(),
            run_budget: "100".into(),
            run_period: "month".into(),
            ..Default::default()
        }
    }

    /// The form filled from a stored agreement (editing a draft, drafting an amendment).
    pub fn from_agreement(a: &Agreement, ds: &[AgreementDataset]) -> Self {
        DraftForm {
            csrf: String::new(),
            datasets: ds.iter().map(|d| d.dataset_id.to_string()).collect(),
            epsilon: ds
                .iter()
                .map(|d| (d.dataset_id.to_string(), d.epsilon.clone()))
                .collect(),
            purpose: a.purpose.clone(),
            scenario: a.scenario.clone(),
            security_measures: a.security_measures.clone(),
            disposal: a.disposal.clone(),
            trial_months: a.trial_months.to_string(),
            price_per_job: a.price_per_job.clone().unwrap_or_default(),
            price_per_thousand_rows: a.price_per_thousand_rows.clone().unwrap_or_default(),
            split_platform: a.split_platform.clone(),
            split_provider: a.split_provider.clone(),
            split_operator: a.split_operator.clone(),
            run_budget: a.run_budget.to_string(),
            run_period: a.run_period.clone(),
        }
    }

    /// Whether dataset `id` is ticked.
    pub fn has_dataset(&self, id: &i64) -> bool {
        let id = id.to_string();
        self.datasets.contains(&id)
    }

    /// The epsilon typed for dataset `id`.
    pub fn epsilon_of(&self, id: &i64) -> String {
        self.epsilon
            .get(&id.to_string())
            .cloned()
            .unwrap_or_default()
    }

    /// Validates against the datasets the application was approved for.
    pub fn validate(&self, approved: &BTreeSet<i64>) -> Result<Terms, Problem> {
        let text = |s: &str, key: &'static str| -> Result<String, Problem> {
            let s = s.trim();
            if s.is_empty() {
                Err(problem(key))
            } else if s.chars().count() > MAX_TEXT {
                Err(Problem {
                    key: "common.too_long",
                    args: vec![("max", MAX_TEXT.to_string())],
                })
            } else {
                Ok(s.to_owned())
            }
        };
        let mut ids = BTreeSet::new();
        for raw in self.datasets.iter().take(MAX_DATASETS + 1) {
            let id: i64 = raw
                .trim()
                .parse()
                .map_err(|_| problem("agreements.err.dataset_not_approved"))?;
            if !approved.contains(&id) {
                return Err(Problem {
                    key: "agreements.err.dataset_not_approved",
                    args: vec![("id", id.to_string())],
                });
            }
            ids.insert(id);
        }
        if ids.is_empty() {
            return Err(problem("agreements.err.no_datasets"));
        }
        let mut datasets = Vec::new();
        for id in ids {
            let raw = self.epsilon_of(&id);
            let eps = parse_decimal(&raw, 6)
                .filter(|e| *e >= Decimal::ZERO && *e <= Decimal::from(MAX_EPSILON))
                .ok_or_else(|| Problem {
                    key: "agreements.err.epsilon",
                    args: vec![("id", id.to_string()), ("max", MAX_EPSILON.to_string())],
                })?;
            datasets.push((id, eps.normalize().to_string()));
        }
        let purpose = text(&self.purpose, "agreements.err.purpose")?;
        let scenario = text(&self.scenario, "agreements.err.scenario")?;
        let security_measures = text(&self.security_measures, "agreements.err.security")?;
        let disposal = text(&self.disposal, "agreements.err.disposal")?;
        let trial_raw = self.trial_months.trim();
        let trial_months: i32 = if trial_raw.is_empty() {
            0
        } else {
            trial_raw
                .parse()
                .ok()
                .filter(|m| *m >= 0)
                .ok_or_else(|| problem("agreements.err.trial_number"))?
        };
        if trial_months > MAX_TRIAL_MONTHS {
            return Err(Problem {
                key: "agreements.err.trial_too_long",
                args: vec![
                    ("months", trial_months.to_string()),
                    ("max", MAX_TRIAL_MONTHS.to_string()),
                ],
            });
        }
        let price = |s: &str| -> Result<Option<String>, Problem> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            let mut d = parse_decimal(s, 2)
                .filter(|d| *d >= Decimal::ZERO && *d <= Decimal::from(1_000_000_000i64))
                .ok_or_else(|| problem("agreements.err.price"))?;
            d.rescale(2);
            Ok(Some(d.to_string()))
        };
        let price_per_job = price(&self.price_per_job)?;
        let price_per_thousand_rows = price(&self.price_per_thousand_rows)?;
        if price_per_job.is_none() && price_per_thousand_rows.is_none() {
            return Err(problem("agreements.err.price_missing"));
        }
        let share = |s: &str| -> Result<Decimal, Problem> {
            parse_decimal(s.trim(), 4)
                .filter(|d| *d >= Decimal::ZERO && *d <= Decimal::ONE_HUNDRED)
                .ok_or_else(|| problem("agreements.err.split_value"))
        };
        let (p, v, o) = (
            share(&self.split_platform)?,
            share(&self.split_provider)?,
            share(&self.split_operator)?,
        );
        let sum = p + v + o;
        if sum != Decimal::ONE_HUNDRED {
            return Err(Problem {
                key: "agreements.err.split_sum",
                args: vec![("sum", sum.normalize().to_string())],
            });
        }
        let run_budget: i32 = self
            .run_budget
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_RUNS).contains(n))
            .ok_or_else(|| Problem {
                key: "agreements.err.run_budget",
                args: vec![("max", MAX_RUNS.to_string())],
            })?;
        let run_period = RUN_PERIODS
            .iter()
            .find(|p| **p == self.run_period.trim())
            .ok_or_else(|| problem("agreements.err.run_period"))?
            .to_string();
        Ok(Terms {
            datasets,
            purpose,
            scenario,
            security_measures,
            disposal,
            trial_months,
            price_per_job,
            price_per_thousand_rows,
            split: (
                p.normalize().to_string(),
                v.normalize().to_string(),
                o.normalize().to_string(),
            ),
            run_budget,
            run_period,
        })
    }
}

/// Parses a plain decimal (digits, one point, at most `max_scale` decimals; no exponent).
pub fn parse_decimal(s: &str, max_scale: u32) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty()
        || s.len() > 24
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return None;
    }
    let d: Decimal = s.parse().ok()?;
    (d.scale() <= max_scale).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> DraftForm {
        DraftForm::from_fields(
            [
                ("dataset", "7"),
                ("epsilon_7", "1.50"),
                ("purpose", "p"),
                ("scenario", "s"),
                ("security_measures", "m"),
                ("disposal", "d"),
                ("trial_months", "6"),
                ("price_per_job", "0.1"),
                ("price_per_thousand_rows", ""),
                ("split_platform", "33.33"),
                ("split_provider", "33.33"),
                ("split_operator", "33.34"),
                ("run_budget", "10"),
                ("run_period", "month"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        )
    }

    #[test]
    fn validates_and_canonicalizes() {
        let t = good().validate(&BTreeSet::from([7])).unwrap();
        assert_eq!(t.datasets, vec![(7, "1.5".to_owned())]);
        assert_eq!(t.price_per_job.as_deref(), Some("0.10"));
        assert_eq!(t.split.2, "33.34");
        assert_eq!(t.trial_months, 6);
    }

    #[test]
    fn refusals() {
        let approved = BTreeSet::from([7]);
        assert_eq!(
            good().validate(&BTreeSet::from([8])).unwrap_err().key,
            "agreements.err.dataset_not_approved"
        );
        let mut f = good();
        f.trial_months = "7".into();
        assert_eq!(
            f.validate(&approved).unwrap_err().key,
            "agreements.err.trial_too_long"
        );
        let mut f = good();
        f.split_operator = "33.33".into();
        let e = f.validate(&approved).unwrap_err();
        assert_eq!(e.key, "agreements.err.split_sum");
        assert_eq!(e.args, vec![("sum", "99.99".to_owned())]);
        let mut f = good();
        f.price_per_job = "0.123".into();
        assert_eq!(
            f.validate(&approved).unwrap_err().key,
            "agreements.err.price"
        );
        let mut f = good();
        f.price_per_job = "-1".into();
        assert_eq!(
            f.validate(&approved).unwrap_err().key,
            "agreements.err.price"
        );
        let mut f = good();
        f.price_per_job = "1e3".into();
        assert_eq!(
            f.validate(&approved).unwrap_err().key,
            "agreements.err.price"
        );
        let mut f = good();
        f.epsilon.insert("7".into(), "-0.5".into());
        assert_eq!(
            f.validate(&approved).unwrap_err().key,
            "agreements.err.epsilon"
        );
    }
}
