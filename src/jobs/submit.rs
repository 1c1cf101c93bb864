//! Submission checks: every rule is checked at once, and each failed rule is named.
//!
//! The rules, in the order they are reported: the submitter's training is current; the
//! purpose is given; the manifest parses; the module passes the sandbox's validation; every
//! dataset of the manifest is bound to a catalog dataset; an agreement in force covers each of
//! them (one agreement for the whole job); every column read (and every dimension's column)
//! is a readable column of its dataset (identifier, privacy-unit and text columns never are);
//! no aggregate declares k below the platform floor; the job's epsilon fits the remaining
//! budget of every dataset; the release policy of the datasets' grades holds
//! (`release_policy`); the agreement's run budget for its period is not used up.
//!
//! Two steps: [`load`] reads what needs no database (the manifest, the module compiled by the
//! sandbox), before any transaction; [`check`] the rest, inside the transaction that records
//! the run ([`super::ops::submit`], after the operator's submissions lock), so two concurrent
//! submissions never both take the last run of a budget or the last epsilon.
//!
//! Bindings: a form field `dataset.<manifest name>` holds the catalog dataset id. Without it,
//! a manifest dataset is bound to the dataset of the operator's agreements in force when they
//! cover exactly one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use rust_decimal::Decimal;

use super::model::{self, MAX_MANIFEST_BYTES};
use super::refusal;
use crate::agreements::{self as agr, AgreementRef};
use crate::catalog::model::{self as catalog, ColType};
use crate::db::DbConnection;
use crate::i18n::{Lang, t, t_args};
use crate::input::MAX_TEXT;
use crate::schema::{computations, datasets, jobs};
use dataop_sandbox::manifest::{PolicyBreach, check_policy};
use dataop_sandbox::{JobModule, Limits, Manifest, Runtime};

/// What the operator sent.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// The module bytes (binary or WAT text).
    pub module: Vec<u8>,
    /// The manifest (TOML).
    pub manifest: String,
    /// The purpose of the run.
    pub purpose: String,
    /// Explicit bindings: manifest dataset name → catalog dataset id (as typed).
    pub bindings: BTreeMap<String, String>,
}

/// A failed rule: its message key and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The rule's code (`training`, `manifest`, `module`, `agreement`, `column`, `k`, …).
    pub rule: &'static str,
    /// Values for the message's placeholders.
    pub args: Vec<(&'static str, String)>,
    /// Values that read differently by language (a catalog title): placeholder, Chinese,
    /// English.
    pub localized: Vec<(&'static str, String, String)>,
}

impl Problem {
    fn new(rule: &'static str) -> Self {
        Problem {
            rule,
            args: Vec::new(),
            localized: Vec::new(),
        }
    }

    fn arg(mut self, name: &'static str, value: impl ToString) -> Self {
        self.args.push((name, value.to_string()));
        self
    }

    /// Placeholder `name` as the message `key` in the message's language.
    fn translated(mut self, name: &'static str, key: &str) -> Self {
        self.localized.push((
            name,
            t(Lang::Zh, key).to_owned(),
            t(Lang::En, key).to_owned(),
        ));
        self
    }

    /// The `{reason}` placeholder: why the sandbox refused the manifest or the module, in the
    /// message's language.
    fn refusal(mut self, reason: &refusal::Reason) -> Self {
        self.localized
            .push(("reason", reason.message(Lang::Zh), reason.message(Lang::En)));
        self
    }

    /// The `{dataset}` placeholder: the catalog title in the message's language.
    fn dataset(mut self, title: &(String, String)) -> Self {
        self.localized
            .push(("dataset", title.0.clone(), title.1.clone()));
        self
    }

    /// The message in `lang` (`jobs.rule.<rule>`).
    pub fn message(&self, lang: Lang) -> String {
        let mut args = self.args.clone();
        args.extend(
            self.localized
                .iter()
                .map(|(name, zh, en)| (*name, crate::i18n::pick(lang, zh, en).to_owned())),
        );
        t_args(lang, &format!("jobs.rule.{}", self.rule), &args)
    }
}

/// What passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// sha256 of the module.
    pub module_sha256: String,
    /// Module size.
    pub size: usize,
    /// Module exports.
    pub exports: Vec<String>,
    /// Manifest dataset name → catalog dataset id.
    pub bindings: BTreeMap<String, i64>,
    /// The agreement.
    pub agreement: AgreementRef,
    /// Total epsilon the job spends.
    pub epsilon: Decimal,
    /// Trimmed purpose.
    pub purpose: String,
}

/// The total epsilon of a manifest's aggregates (exact decimal of each declared value).
pub fn manifest_epsilon(m: &Manifest) -> Decimal {
    m.aggregates
        .iter()
        .filter_map(|a| a.epsilon)
        .filter_map(|e| Decimal::from_f64_retain(e).map(|d| d.round_dp(6).normalize()))
        .sum()
}

/// Start of the run-budget period ending at `now`: the last day, 7 days or 30 days.
pub fn period_start(period: &str, now: NaiveDateTime) -> NaiveDateTime {
    now - match period {
        "day" => Duration::days(1),
        "week" => Duration::days(7),
        _ => Duration::days(30),
    }
}

/// Runs counted against an agreement's run budget since `since` (refused and cancelled runs
/// that never started are not counted).
pub fn runs_since(
    conn: &mut DbConnection,
    agreement_id: i64,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    jobs::table
        .inner_join(computations::table)
        .filter(computations::agreement_id.eq(agreement_id))
        .filter(jobs::created_at.ge(since))
        .filter(
            jobs::state.ne("refused").and(
                jobs::state
                    .ne("cancelled")
                    .or(jobs::started_at.is_not_null()),
            ),
        )
        .count()
        .get_result(conn)
}

/// The remaining epsilon of an organisation on a dataset under an agreement.
pub fn remaining_epsilon(
    conn: &mut DbConnection,
    org_id: i64,
    a: &AgreementRef,
    dataset_id: i64,
) -> QueryResult<Decimal> {
    let budget = model::dec(&a.epsilon);
    Ok(budget - model::epsilon_spent(conn, org_id, a.id, dataset_id)?)
}

/// A submission as the sandbox read it, before the database is consulted: the manifest parsed,
/// the module validated and compiled (which takes time, so it is done before the transaction
/// that checks the rest), and the rules that need nothing else.
pub struct Loaded {
    /// What the operator sent.
    pub submission: Submission,
    manifest: Option<Manifest>,
    module: Option<Arc<JobModule>>,
    purpose: String,
    problems: Vec<Problem>,
}

/// Reads a submission without the database: the purpose is given and fits, the manifest parses,
/// the module passes the sandbox's validation and exports what the manifest calls, no aggregate
/// declares k below the platform floor, every binding names a dataset of the manifest.
pub fn load(rt: &Runtime, submission: Submission) -> Loaded {
    let mut problems = Vec::new();
    let sub = &submission;
    let purpose = sub.purpose.trim().to_owned();
    if purpose.is_empty() {
        problems.push(Problem::new("purpose"));
    } else if purpose.chars().count() > MAX_TEXT {
        problems.push(Problem::new("purpose_long").arg("max", MAX_TEXT));
    }
    let manifest = if sub.manifest.len() > MAX_MANIFEST_BYTES {
        problems.push(Problem::new("manifest_long").arg("max", MAX_MANIFEST_BYTES));
        None
    } else {
        match Manifest::from_toml(&sub.manifest) {
            Ok(m) => Some(m),
            Err(reason) => {
                let reason = refusal::manifest(&sub.manifest, &reason);
                problems.push(Problem::new("manifest").refusal(&reason));
                None
            }
        }
    };
    let module = if sub.module.is_empty() {
        problems.push(Problem::new("module_missing"));
        None
    } else {
        match rt.load(&sub.module) {
            Ok(m) => Some(m),
            Err(outcome) => {
                problems.push(Problem::new("module").refusal(&refusal::module(&outcome)));
                None
            }
        }
    };
    if let Some(manifest) = &manifest {
        if let Some(m) = &module
            && let Err(outcome) = rt.check_exports(m, manifest)
        {
            problems.push(Problem::new("module").refusal(&refusal::module(&outcome)));
        }
        let floor = rt.limits().k_floor;
        for a in &manifest.aggregates {
            if let Some(k) = a.k
                && k < floor
            {
                problems.push(
                    Problem::new("k")
                        .arg("aggregate", &a.name)
                        .arg("k", k)
                        .arg("floor", floor),
                );
            }
        }
        let declared: BTreeSet<&str> = manifest.datasets.iter().map(|d| d.name.as_str()).collect();
        for name in sub.bindings.keys() {
            if !declared.contains(name.as_str()) {
                problems.push(Problem::new("binding_unknown").arg("name", name));
            }
        }
    }
    Loaded {
        manifest,
        module,
        purpose,
        problems,
        submission,
    }
}

/// Checks a loaded submission against every rule (call it inside the transaction that records
/// the run, after [`crate::db::Lock::Submissions`] of the operator: the run budget, the
/// remaining epsilon and the agreement in force are read there); the failed rules, all of them,
/// on refusal.
#[allow(clippy::too_many_arguments)]
pub fn check(
    conn: &mut DbConnection,
    limits: &Limits,
    user_id: i64,
    org_id: i64,
    loaded: &Loaded,
    today: NaiveDate,
    now: NaiveDateTime,
) -> QueryResult<Result<Checked, Vec<Problem>>> {
    let mut problems = Vec::new();
    if !model::trained(conn, user_id, today)? {
        problems.push(Problem::new("training"));
    }
    problems.extend(loaded.problems.iter().cloned());
    let sub = &loaded.submission;
    let Some(manifest) = &loaded.manifest else {
        return Ok(Err(problems));
    };
    let in_force = agr::datasets_in_force(conn, org_id, today)?;
    let mut bindings = BTreeMap::new();
    for d in &manifest.datasets {
        let id = match sub.bindings.get(&d.name) {
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(id) if catalog::find_dataset(conn, id)?.is_some() => Some(id),
                _ => {
                    problems.push(
                        Problem::new("binding_bad")
                            .arg("name", &d.name)
                            .arg("value", raw.trim()),
                    );
                    None
                }
            },
            None if in_force.len() == 1 => Some(in_force[0].0),
            None => {
                problems.push(Problem::new("binding_missing").arg("name", &d.name));
                None
            }
        };
        if let Some(id) = id {
            bindings.insert(d.name.clone(), id);
        }
    }
    let mut agreement: Option<AgreementRef> = None;
    let mut epsilon_ok = true;
    let epsilon = manifest_epsilon(manifest);
    for d in &manifest.datasets {
        let Some(&dataset_id) = bindings.get(&d.name) else {
            continue;
        };
        let title: (String, String) = datasets::table
            .find(dataset_id)
            .select((datasets::title_zh, datasets::title_en))
            .first(conn)?;
        match agr::in_force_for(conn, org_id, dataset_id, today)? {
            None => problems.push(Problem::new("agreement").dataset(&title)),
            Some(a) => {
                match &agreement {
                    Some(first) if first.id != a.id => {
                        problems.push(Problem::new("one_agreement"));
                    }
                    _ => {}
                }
                let remaining = remaining_epsilon(conn, org_id, &a, dataset_id)?;
                if epsilon > remaining && epsilon_ok {
                    epsilon_ok = false;
                    problems.push(
                        Problem::new("epsilon")
                            .arg("epsilon", epsilon)
                            .arg("remaining", remaining.normalize())
                            .dataset(&title),
                    );
                }
                agreement.get_or_insert(a);
            }
        }
        let columns = catalog::columns_of(conn, dataset_id)?;
        let readable = |name: &str| -> Option<bool> {
            let c = columns.iter().find(|c| c.name == name)?;
            Some(!c.role().is_identifying() && c.ty() != ColType::Text)
        };
        for col in &d.columns {
            match readable(col) {
                None => problems.push(Problem::new("column").arg("column", col).dataset(&title)),
                Some(false) => problems.push(
                    Problem::new("column_forbidden")
                        .arg("column", col)
                        .dataset(&title),
                ),
                Some(true) => {}
            }
        }
        for a in &manifest.aggregates {
            for dim in &a.dimensions {
                let of_this = dim
                    .dataset
                    .as_deref()
                    .map_or(manifest.datasets.len() == 1, |n| n == d.name);
                if let (true, Some(col)) = (of_this, &dim.column)
                    && !columns
                        .iter()
                        .any(|c| &c.name == col && c.ty() == ColType::Category)
                {
                    problems.push(Problem::new("dimension").arg("column", col).dataset(&title));
                }
            }
        }
    }
    problems.extend(release_policy(conn, limits, manifest, &bindings)?);
    if let Some(a) = &agreement {
        let used = runs_since(conn, a.id, period_start(&a.run_period, now))?;
        if used >= i64::from(a.run_budget) {
            problems.push(
                Problem::new("run_budget")
                    .arg("budget", a.run_budget)
                    .translated("period", &format!("agreements.period.{}", a.run_period)),
            );
        }
    }
    match (problems.is_empty(), &loaded.module, agreement) {
        (true, Some(module), Some(agreement)) => Ok(Ok(Checked {
            manifest: manifest.clone(),
            module_sha256: module.sha256().to_owned(),
            size: module.size(),
            exports: module.exports(),
            bindings,
            agreement,
            epsilon,
            purpose: loaded.purpose.clone(),
        })),
        _ => Ok(Err(problems)),
    }
}

/// The release policy of the bound datasets' grades (ABI v2, guarantee 5; the platform's
/// `grade_policy`): every rule the manifest breaks, each named with the grade and the
/// dataset whose grade it is: k below the grade's minimum, no epsilon where the grade requires
/// differential privacy (for every aggregate, or for those with measures), and more epsilon
/// per release than the grade allows.
fn release_policy(
    conn: &mut DbConnection,
    limits: &Limits,
    manifest: &Manifest,
    bindings: &BTreeMap<String, i64>,
) -> QueryResult<Vec<Problem>> {
    let mut graded: BTreeMap<&str, (u8, (String, String))> = BTreeMap::new();
    for (name, &id) in bindings {
        let (grade, zh, en): (i32, String, String) = datasets::table
            .find(id)
            .select((datasets::grade, datasets::title_zh, datasets::title_en))
            .first(conn)?;
        graded.insert(name.as_str(), (u8::try_from(grade).unwrap_or(4), (zh, en)));
    }
    let grade_of = |name: &str| graded.get(name).map(|(g, _)| *g);
    Ok(check_policy(manifest, &grade_of, limits)
        .into_iter()
        .map(|r| {
            let rule = match r.breach {
                PolicyBreach::MinK { .. } => "policy_min_k",
                PolicyBreach::DpRequired { .. } => "policy_dp_required",
                PolicyBreach::DpForMeasures { .. } => "policy_dp_for_measures",
                PolicyBreach::EpsilonCap { .. } => "policy_epsilon_cap",
            };
            let problem = r
                .args()
                .into_iter()
                .filter(|(name, _)| *name != "dataset")
                .fold(Problem::new(rule), |p, (name, value)| p.arg(name, value));
            match graded.get(r.dataset.as_str()) {
                Some((_, title)) => problem.dataset(title),
                None => problem.arg("dataset", &r.dataset),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_is_the_exact_sum_of_declared_values() {
        let m = Manifest::from_toml(
            r#"abi = 2
name = "x"
[[datasets]]
name = "d"
columns = ["a"]
[[aggregates]]
name = "one"
dataset = "d"
epsilon = 0.1
[[aggregates]]
name = "two"
dataset = "d"
epsilon = 0.2
[[aggregates]]
name = "three"
dataset = "d"
"#,
        )
        .unwrap();
        assert_eq!(manifest_epsilon(&m).to_string(), "0.3");
    }

    #[test]
    fn periods() {
        let now = NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        assert_eq!(period_start("day", now), now - Duration::days(1));
        assert_eq!(period_start("week", now), now - Duration::days(7));
        assert_eq!(period_start("month", now), now - Duration::days(30));
    }
}
