//! The job manifest (TOML, ABI v2) and its resolution against the datasets of a run.
//!
//! The manifest declares everything the host needs to drive the guest's pure functions: the
//! columns of each dataset (the parameters of its row functions, in order), the optional
//! per-person stage, and the aggregates (the only outputs) with their domains, bounds and
//! privacy settings. [`plan`] binds it to the run's inputs and applies the platform's
//! [`Limits`] and per-grade [`ReleasePolicy`] before anything runs.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::columnar::{ColumnRole, ColumnType, Storage};
use crate::noise::Scale;
use crate::source::DatasetInput;

/// The ABI version this host implements.
pub const ABI_VERSION: u32 = 2;

/// A job manifest, as written in TOML (see `ABI.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// ABI version the job was written for (must be 2).
    pub abi: u32,
    /// Name of the job.
    pub name: String,
    /// The datasets the job reads.
    pub datasets: Vec<DatasetDecl>,
    /// The per-person stage's inputs: per dataset, the rows kept and the measures summed per
    /// person (none: no per-person stage).
    #[serde(default)]
    pub person: Vec<PersonDecl>,
    /// The aggregates the job contributes to (the only outputs).
    pub aggregates: Vec<AggregateDecl>,
}

/// A dataset the job reads and the columns it reads from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDecl {
    /// Name of the dataset in the manifest and in export names.
    pub name: String,
    /// Columns the guest's row functions receive, in this order.
    pub columns: Vec<String>,
}

/// One input of the per-person stage: a dataset's rows, filtered and measured per row by the
/// guest (`person.<dataset>.keep`, `person.<dataset>.<measure>`), counted and summed per person
/// by the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonDecl {
    /// The dataset.
    pub dataset: String,
    /// A person's kept rows are counted up to this bound (and their sums clamped to it).
    #[serde(default = "default_person_rows")]
    pub max_rows: u32,
    /// Measures summed per person.
    #[serde(default)]
    pub measures: Vec<MeasureDecl>,
}

fn default_person_rows() -> u32 {
    100
}

/// An output table: cells keyed by dimensions, with counts, distinct persons and measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDecl {
    /// Name of the aggregate.
    pub name: String,
    /// The dataset whose rows contribute (row stage), one contribution per kept row.
    pub dataset: Option<String>,
    /// One contribution per person from the per-person stage instead of rows.
    #[serde(default)]
    pub per_person: bool,
    /// The dimensions of the group key (none: one cell).
    #[serde(default)]
    pub dimensions: Vec<DimensionDecl>,
    /// Measures summed and averaged per cell.
    #[serde(default)]
    pub measures: Vec<MeasureDecl>,
    /// Minimum number of distinct persons per released cell (raised to the platform floor and
    /// to the grade's minimum).
    pub k: Option<u64>,
    /// Differential privacy budget of this aggregate (none: no noise).
    pub epsilon: Option<f64>,
    /// Cells one person may contribute to (the lowest cell numbers are kept).
    #[serde(default = "default_cells_per_person")]
    pub max_cells_per_person: u32,
    /// Contributions one person may make to one cell (their count and sums are clamped to it).
    #[serde(default = "default_rows_per_person_cell")]
    pub max_rows_per_person_cell: u32,
}

fn default_cells_per_person() -> u32 {
    1
}

fn default_rows_per_person_cell() -> u32 {
    100
}

/// One dimension of a group key: the codes of a category column, or integer bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionDecl {
    /// Name of the dimension in the output and in export names.
    pub name: String,
    /// Dataset of `column` (may be left out when the job reads one dataset).
    pub dataset: Option<String>,
    /// A category column whose declared codes are the domain of this dimension.
    pub column: Option<String>,
    /// Ascending integer bin edges: key `i` means `bins[i] <= x < bins[i + 1]`.
    pub bins: Option<Vec<i64>>,
}

/// A measure: a fixed-point value per contribution, clamped to `[min, max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureDecl {
    /// Name of the measure.
    pub name: String,
    /// Decimal digits of the values the guest returns (value × 10^scale), 0..=6.
    #[serde(default)]
    pub scale: u32,
    /// Lower clamp bound.
    pub min: f64,
    /// Upper clamp bound.
    pub max: f64,
}

/// Largest absolute measure bound in fixed point (so sums of bounded values fit `i64` and
/// noise scales stay within the sampler's exact range).
pub const MAX_MEASURE_FIXED: f64 = 1e12;

/// Whether `s` may name a dataset, aggregate, dimension or measure: it becomes part of an
/// export name, so lower-case ASCII letters, digits and `_`, starting with a letter.
fn is_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Manifest {
    /// Parses a manifest from TOML and checks what can be checked without the data.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        if let Ok(v) = toml::from_str::<toml::Table>(text)
            && v.get("abi").and_then(toml::Value::as_integer) == Some(1)
        {
            return Err(retired());
        }
        let m: Manifest = toml::from_str(text).map_err(|e| format!("manifest: {e}"))?;
        m.check()?;
        Ok(m)
    }

    /// Checks the manifest alone (names, bounds, ABI version).
    pub fn check(&self) -> Result<(), String> {
        if self.abi == 1 {
            return Err(retired());
        }
        if self.abi != ABI_VERSION {
            return Err(format!(
                "manifest: ABI version {} is not supported (this host implements {ABI_VERSION})",
                self.abi
            ));
        }
        if self.datasets.is_empty() {
            return Err("manifest: no dataset is declared".into());
        }
        if self.aggregates.is_empty() {
            return Err("manifest: no aggregate is declared".into());
        }
        let names = |it: &mut dyn Iterator<Item = &str>, what: &str| -> Result<(), String> {
            unique(it, what)
        };
        names(
            &mut self.datasets.iter().map(|d| d.name.as_str()),
            "dataset",
        )?;
        names(
            &mut self.aggregates.iter().map(|a| a.name.as_str()),
            "aggregate",
        )?;
        names(
            &mut self.person.iter().map(|p| p.dataset.as_str()),
            "per-person input",
        )?;
        for d in &self.datasets {
            unique(d.columns.iter().map(String::as_str), "column")?;
        }
        let declared = |n: &str| self.datasets.iter().any(|d| d.name == n);
        for p in &self.person {
            let at = |m: String| format!("per-person input `{}`: {m}", p.dataset);
            if !declared(&p.dataset) {
                return Err(at("the dataset is not declared".into()));
            }
            if p.max_rows == 0 {
                return Err(at("max_rows must be at least 1".into()));
            }
            unique(p.measures.iter().map(|m| m.name.as_str()), "measure").map_err(at)?;
            for m in &p.measures {
                check_measure(m).map_err(at)?;
            }
        }
        for a in &self.aggregates {
            let at = |m: String| format!("aggregate `{}`: {m}", a.name);
            if a.name == "person" {
                return Err(at(
                    "the name `person` is reserved for the per-person stage".into()
                ));
            }
            unique(
                a.dimensions
                    .iter()
                    .map(|d| d.name.as_str())
                    .chain(a.measures.iter().map(|m| m.name.as_str())),
                "dimension or measure",
            )
            .map_err(at)?;
            if a.dimensions
                .iter()
                .map(|d| d.name.as_str())
                .chain(a.measures.iter().map(|m| m.name.as_str()))
                .any(|n| n == "keep")
            {
                return Err(at("the name `keep` is reserved for the row filter".into()));
            }
            match (&a.dataset, a.per_person) {
                (Some(d), false) if declared(d) => {}
                (Some(d), false) => return Err(at(format!("dataset `{d}` is not declared"))),
                (None, true) if !self.person.is_empty() => {
                    if a.max_cells_per_person != 1 || a.max_rows_per_person_cell != 1 {
                        return Err(at(
                            "a per-person aggregate takes one contribution per person: set max_cells_per_person = 1 and max_rows_per_person_cell = 1"
                                .into(),
                        ));
                    }
                }
                (None, true) => {
                    return Err(at(
                        "per_person needs the per-person stage: declare [[person]] inputs".into(),
                    ));
                }
                _ => {
                    return Err(at(
                        "give either `dataset` (one contribution per row) or `per_person = true`"
                            .into(),
                    ));
                }
            }
            if a.max_cells_per_person == 0 || a.max_rows_per_person_cell == 0 {
                return Err(at("per-person bounds must be at least 1".into()));
            }
            if let Some(e) = a.epsilon
                && !e.is_finite()
            {
                return Err(at(format!("epsilon {e} is not a number")));
            }
            for d in &a.dimensions {
                match (&d.column, &d.bins) {
                    (Some(_), None) => {}
                    (None, Some(b)) => {
                        if b.len() < 2 || b.windows(2).any(|w| w[0] >= w[1]) {
                            return Err(at(format!(
                                "dimension `{}`: bins need at least two strictly ascending edges",
                                d.name
                            )));
                        }
                    }
                    _ => {
                        return Err(at(format!(
                            "dimension `{}`: give either `column` or `bins`",
                            d.name
                        )));
                    }
                }
            }
            for m in &a.measures {
                check_measure(m).map_err(at)?;
            }
        }
        Ok(())
    }
}

/// The refusal of an ABI v1 manifest or module.
pub(crate) fn retired() -> String {
    "ABI v1 is retired: this platform runs ABI v2 jobs (pure exported functions, no imports; see sandbox/ABI.md)".into()
}

fn check_measure(m: &MeasureDecl) -> Result<(), String> {
    if !is_name(&m.name) {
        return Err(format!(
            "measure `{}`: names use a-z, 0-9 and _, start with a letter, at most 64 bytes",
            m.name
        ));
    }
    if m.scale > crate::columnar::MAX_DECIMAL_SCALE {
        return Err(format!("measure `{}`: scale above 6", m.name));
    }
    let f = 10f64.powi(m.scale as i32);
    let ok = |x: f64| x.is_finite() && (x * f).abs() <= MAX_MEASURE_FIXED;
    if !(ok(m.min) && ok(m.max) && m.min <= m.max) {
        return Err(format!(
            "measure `{}`: needs finite bounds min <= max of at most 10^12 in fixed point",
            m.name
        ));
    }
    Ok(())
}

fn unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut seen = HashSet::new();
    for n in names {
        if !is_name(n) {
            return Err(format!(
                "manifest: {what} `{n}`: names use a-z, 0-9 and _, start with a letter, at most 64 bytes"
            ));
        }
        if !seen.insert(n) {
            return Err(format!("manifest: {what} `{n}` is declared twice"));
        }
    }
    Ok(())
}

/// What the platform requires of a release from a dataset of one sensitivity grade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReleasePolicy {
    /// Smallest k.
    pub min_k: u64,
    /// Whether every aggregate must be released with differential privacy.
    pub dp_required: bool,
    /// Whether every aggregate with measures (sums and means of values the guest computes)
    /// must be released with differential privacy (implied by `dp_required`).
    pub dp_for_measures: bool,
    /// Largest epsilon one release may spend on a dataset of the grade: the sum over the
    /// release's aggregates that read it.
    pub max_epsilon: f64,
}

/// The rule of a grade's [`ReleasePolicy`] a manifest breaks, with its figures.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyBreach {
    /// An aggregate declares a k below the grade's minimum.
    MinK {
        /// The aggregate.
        aggregate: String,
        /// The k it declares.
        k: u64,
        /// The grade's minimum.
        min_k: u64,
    },
    /// An aggregate has no epsilon where the grade requires differential privacy.
    DpRequired {
        /// The aggregate.
        aggregate: String,
    },
    /// An aggregate with measures has no epsilon where the grade requires differential privacy
    /// for measures.
    DpForMeasures {
        /// The aggregate.
        aggregate: String,
    },
    /// The release's aggregates that read the dataset spend more epsilon together than the
    /// grade allows per release.
    EpsilonCap {
        /// Their epsilon, summed.
        epsilon: f64,
        /// The grade's largest epsilon per release.
        max_epsilon: f64,
    },
}

/// A release the policy of a dataset's grade forbids: the rule, the grade and the dataset
/// whose grade it is (its name in the manifest). Everything in it comes from the manifest the
/// reviewer approved and the platform's settings, nothing from the data or the module.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRefusal {
    /// The dataset's grade, 1 to 4.
    pub grade: u8,
    /// The dataset (its name in the manifest).
    pub dataset: String,
    /// The rule and its figures.
    pub breach: PolicyBreach,
}

impl PolicyRefusal {
    /// The rule's code: `min_k`, `dp_required`, `dp_for_measures` or `epsilon_cap`.
    pub fn rule(&self) -> &'static str {
        match self.breach {
            PolicyBreach::MinK { .. } => "min_k",
            PolicyBreach::DpRequired { .. } => "dp_required",
            PolicyBreach::DpForMeasures { .. } => "dp_for_measures",
            PolicyBreach::EpsilonCap { .. } => "epsilon_cap",
        }
    }

    /// The refusal's figures by name (`grade`, `dataset`, then the rule's: `aggregate`, `k`,
    /// `min_k`, `epsilon`, `max_epsilon`), for a message with placeholders.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        let mut args = vec![
            ("grade", self.grade.to_string()),
            ("dataset", self.dataset.clone()),
        ];
        match &self.breach {
            PolicyBreach::MinK {
                aggregate,
                k,
                min_k,
            } => args.extend([
                ("aggregate", aggregate.clone()),
                ("k", k.to_string()),
                ("min_k", min_k.to_string()),
            ]),
            PolicyBreach::DpRequired { aggregate } | PolicyBreach::DpForMeasures { aggregate } => {
                args.push(("aggregate", aggregate.clone()));
            }
            PolicyBreach::EpsilonCap {
                epsilon,
                max_epsilon,
            } => args.extend([
                ("epsilon", epsilon.to_string()),
                ("max_epsilon", max_epsilon.to_string()),
            ]),
        }
        args
    }
}

impl std::fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (g, d) = (self.grade, &self.dataset);
        match &self.breach {
            PolicyBreach::MinK {
                aggregate,
                k,
                min_k,
            } => write!(
                f,
                "aggregate `{aggregate}`: k = {k} is below {min_k}, the minimum the release policy of grade {g} sets (dataset `{d}`)"
            ),
            PolicyBreach::DpRequired { aggregate } => write!(
                f,
                "aggregate `{aggregate}`: dataset `{d}` is of grade {g}: the release policy of grade {g} requires differential privacy (set epsilon)"
            ),
            PolicyBreach::DpForMeasures { aggregate } => write!(
                f,
                "aggregate `{aggregate}`: dataset `{d}` is of grade {g}: the release policy of grade {g} requires differential privacy for sums and means of measures (set epsilon)"
            ),
            PolicyBreach::EpsilonCap {
                epsilon,
                max_epsilon,
            } => write!(
                f,
                "the aggregates reading dataset `{d}` spend epsilon {epsilon} together, above {max_epsilon}, the most the release policy of grade {g} allows per release"
            ),
        }
    }
}

/// `grade` when it is one of 1 to 4, else 4 (the strictest).
fn known_grade(grade: u8) -> u8 {
    if (1..=4).contains(&grade) { grade } else { 4 }
}

/// Checks `m` against the release policy of its datasets' grades (`grade_of` a manifest
/// dataset's grade; datasets it does not know are left out): the rules an aggregate breaks
/// under the strictest grade it reads (k below the minimum, no epsilon where differential
/// privacy is required, for every aggregate or for those with measures), then, per dataset,
/// the epsilon of the aggregates that read it summed against its grade's cap per release.
/// Every breach, in the manifest's order.
pub fn check_policy(
    m: &Manifest,
    grade_of: &dyn Fn(&str) -> Option<u8>,
    limits: &Limits,
) -> Vec<PolicyRefusal> {
    /// The datasets an aggregate reads: its own, or every per-person input's.
    fn reads<'a>(m: &'a Manifest, a: &'a AggregateDecl) -> Vec<&'a str> {
        match &a.dataset {
            Some(d) => vec![d.as_str()],
            None => m.person.iter().map(|p| p.dataset.as_str()).collect(),
        }
    }
    let mut refusals = Vec::new();
    for a in &m.aggregates {
        let Some((grade, dataset)) = reads(m, a)
            .into_iter()
            .filter_map(|d| grade_of(d).map(|g| (known_grade(g), d)))
            .max_by_key(|(g, _)| *g)
        else {
            continue;
        };
        let policy = limits.policy(grade);
        let refuse = |breach| PolicyRefusal {
            grade,
            dataset: dataset.to_owned(),
            breach,
        };
        if let Some(k) = a.k
            && k < policy.min_k
        {
            refusals.push(refuse(PolicyBreach::MinK {
                aggregate: a.name.clone(),
                k,
                min_k: policy.min_k,
            }));
        }
        if a.epsilon.is_none() {
            if policy.dp_required {
                refusals.push(refuse(PolicyBreach::DpRequired {
                    aggregate: a.name.clone(),
                }));
            } else if policy.dp_for_measures && !a.measures.is_empty() {
                refusals.push(refuse(PolicyBreach::DpForMeasures {
                    aggregate: a.name.clone(),
                }));
            }
        }
    }
    for d in &m.datasets {
        let Some(grade) = grade_of(&d.name).map(known_grade) else {
            continue;
        };
        let max_epsilon = limits.policy(grade).max_epsilon;
        // Summed in billionths, so that 5 × 0.1 is 0.5 and not a little more.
        let units = |e: f64| (e * 1e9).round() as i64;
        let total = m
            .aggregates
            .iter()
            .filter(|a| reads(m, a).contains(&d.name.as_str()))
            .filter_map(|a| a.epsilon)
            .fold(0i64, |sum, e| sum.saturating_add(units(e)));
        if total > units(max_epsilon) {
            refusals.push(PolicyRefusal {
                grade,
                dataset: d.name.clone(),
                breach: PolicyBreach::EpsilonCap {
                    epsilon: total as f64 / 1e9,
                    max_epsilon,
                },
            });
        }
    }
    refusals
}

/// Platform limits that apply to every run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Lowest k any aggregate may use (default 10).
    pub k_floor: u64,
    /// Largest number of cells (product of dimension sizes) of one aggregate.
    pub max_groups: u64,
    /// Largest number of cells of all aggregates together.
    pub max_total_cells: u64,
    /// Largest number of aggregates of one manifest.
    pub max_aggregates: usize,
    /// Largest number of dimensions, and of measures, of one aggregate or per-person input.
    pub max_fields: usize,
    /// Largest number of columns of one dataset (the parameters of its row functions).
    pub max_columns: usize,
    /// Largest number of per-person inputs.
    pub max_person_inputs: usize,
    /// Largest `max_cells_per_person` a manifest may ask for.
    pub max_cells_per_person: u32,
    /// Largest `max_rows_per_person_cell` (and per-person `max_rows`) a manifest may ask for.
    pub max_rows_per_person_cell: u32,
    /// Epsilon of one aggregate must lie in this range.
    pub epsilon_range: (f64, f64),
    /// The run's host-buffer budget, in bytes: everything the host allocates for a run as it
    /// grows with the data or the manifest (raw and compacted (person, cell) contributions of
    /// every instance, per-person totals, the tallies of every thread, member lists and the
    /// released tables) counts against it, all instances together.
    pub max_host_bytes: u64,
    /// Largest number of contributions per run.
    pub max_contributions: u64,
    /// Largest module size in bytes.
    pub max_module_bytes: usize,
    /// Largest number of functions (and of exports) of a module.
    pub max_functions: u32,
    /// Largest code size of all function bodies together, in bytes (bounds compilation).
    pub max_code_bytes: usize,
    /// Largest code size of one function body, in bytes (bounds compilation).
    pub max_function_bytes: usize,
    /// Largest number of locals one function declares (bounds compilation).
    pub max_function_locals: u32,
    /// Largest memory of one instance (linear memory and tables together), in bytes.
    pub max_memory_bytes: usize,
    /// Wall-clock time limit of a run.
    pub timeout: std::time::Duration,
    /// Rows the host hands to the guest's functions at a time.
    pub batch_rows: u32,
    /// Without noise, a cell's sums and means are withheld when one person makes up more than
    /// this share of the cell's total of a measure (absolute values).
    pub dominance_share: f64,
    /// The release policy of each grade, 1 to 4.
    pub grades: [ReleasePolicy; 4],
}

impl Default for Limits {
    fn default() -> Self {
        let open = ReleasePolicy {
            min_k: 10,
            dp_required: false,
            dp_for_measures: false,
            max_epsilon: 10.0,
        };
        Limits {
            k_floor: 10,
            max_groups: 100_000,
            max_total_cells: 400_000,
            max_aggregates: 16,
            max_fields: 8,
            max_columns: 16,
            max_person_inputs: 4,
            max_cells_per_person: 16,
            max_rows_per_person_cell: 1000,
            epsilon_range: (0.01, 10.0),
            max_host_bytes: 4 << 30,
            max_contributions: 1_000_000_000,
            max_module_bytes: 4 * 1024 * 1024,
            max_functions: 10_000,
            max_code_bytes: 256 * 1024,
            max_function_bytes: 8 * 1024,
            max_function_locals: 1_000,
            max_memory_bytes: 256 * 1024 * 1024,
            timeout: std::time::Duration::from_secs(600),
            batch_rows: 4096,
            dominance_share: 0.5,
            grades: [
                open,
                open,
                ReleasePolicy {
                    min_k: 10,
                    dp_required: true,
                    dp_for_measures: true,
                    max_epsilon: 2.0,
                },
                ReleasePolicy {
                    min_k: 20,
                    dp_required: true,
                    dp_for_measures: true,
                    max_epsilon: 0.5,
                },
            ],
        }
    }
}

impl Limits {
    /// The release policy of `grade` (1 to 4; anything else is treated as the strictest).
    pub fn policy(&self, grade: u8) -> ReleasePolicy {
        self.grades[usize::from(known_grade(grade)) - 1]
    }
}

/// The wasm value type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wasm {
    /// `i32` (dates, category codes).
    I32,
    /// `i64` (integers, decimals, counts and sums).
    I64,
}

impl Wasm {
    /// The type's WAT name.
    pub(crate) fn wat(self) -> &'static str {
        match self {
            Wasm::I32 => "i32",
            Wasm::I64 => "i64",
        }
    }

    /// Bytes per value.
    pub(crate) fn width(self) -> usize {
        match self {
            Wasm::I32 => 4,
            Wasm::I64 => 8,
        }
    }
}

/// A column the guest's row functions receive, resolved against its dataset.
#[derive(Debug, Clone)]
pub(crate) struct PlanColumn {
    pub index: usize,
    pub wasm: Wasm,
}

/// A dataset resolved against the run's inputs.
#[derive(Clone)]
pub(crate) struct PlanDataset {
    pub name: String,
    pub input: DatasetInput,
    pub columns: Vec<PlanColumn>,
    pub privacy_unit: usize,
}

/// A dimension with its labels.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanDimension {
    pub name: String,
    pub labels: Vec<String>,
}

/// A measure with its bounds in fixed point.
#[derive(Debug, Clone)]
pub(crate) struct PlanMeasure {
    pub name: String,
    pub scale: u32,
    pub lo: i64,
    pub hi: i64,
}

impl PlanMeasure {
    fn of(m: &MeasureDecl) -> Self {
        let f = 10f64.powi(m.scale as i32);
        PlanMeasure {
            name: m.name.clone(),
            scale: m.scale,
            lo: (m.min * f).round() as i64,
            hi: (m.max * f).round() as i64,
        }
    }

    /// The largest absolute value, at least 1.
    pub(crate) fn magnitude(&self) -> u128 {
        u128::from(self.lo.unsigned_abs().max(self.hi.unsigned_abs()).max(1))
    }
}

/// Where an aggregate's contributions come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stage {
    /// The rows of dataset `.0`, one contribution per kept row.
    Rows(usize),
    /// The per-person stage, one contribution per kept person.
    Persons,
}

/// The exact noise scales of an aggregate under epsilon (see `ABI.md` §4).
#[derive(Debug, Clone)]
pub(crate) struct Noise {
    pub epsilon: f64,
    pub count: Scale,
    pub persons: Scale,
    pub sums: Vec<Scale>,
}

/// An aggregate ready to receive contributions.
#[derive(Debug, Clone)]
pub(crate) struct PlanAggregate {
    pub name: String,
    pub stage: Stage,
    pub dims: Vec<PlanDimension>,
    pub measures: Vec<PlanMeasure>,
    pub cells: u64,
    pub k: u64,
    pub noise: Option<Noise>,
    pub max_cells_per_person: u32,
    pub max_rows_per_person_cell: u32,
}

/// A per-person input ready to be summed.
#[derive(Debug, Clone)]
pub(crate) struct PlanPerson {
    pub dataset: usize,
    pub max_rows: u32,
    pub measures: Vec<PlanMeasure>,
}

/// A manifest bound to the inputs of a run: everything the host needs, checked.
#[derive(Clone)]
pub(crate) struct Plan {
    pub datasets: Vec<PlanDataset>,
    pub person: Vec<PlanPerson>,
    pub aggregates: Vec<PlanAggregate>,
}

impl Plan {
    /// The parameters of the per-person stage's functions: per input, the person's row count
    /// then each measure's sum (all `i64`).
    pub(crate) fn person_params(&self) -> usize {
        self.person.iter().map(|p| 1 + p.measures.len()).sum()
    }
}

/// The wasm type of a column handed to a guest, if it may be handed at all.
fn wasm_type(ty: &ColumnType) -> Option<Wasm> {
    match ty {
        ColumnType::Integer | ColumnType::Decimal { .. } => Some(Wasm::I64),
        ColumnType::Date | ColumnType::Category { .. } => Some(Wasm::I32),
        ColumnType::Text => None,
    }
}

/// Why a manifest cannot run on the given inputs.
pub(crate) enum PlanError {
    /// Refused before the run (column rules, missing datasets, policy, …).
    Refused(String),
    /// An aggregate has more cells than the platform allows.
    TooManyGroups(String),
}

/// Binds `m` to `inputs`: every declared dataset must be given, every declared column must
/// exist, be allowed, and be neither an identifier, nor the privacy unit, nor text; every
/// dataset needs exactly one privacy-unit column; the platform's caps and the release policy
/// of the datasets' grades apply.
pub(crate) fn plan(
    m: &Manifest,
    inputs: &[DatasetInput],
    limits: &Limits,
) -> Result<Plan, PlanError> {
    m.check().map_err(PlanError::Refused)?;
    let refuse = |s: String| PlanError::Refused(s);
    if m.aggregates.len() > limits.max_aggregates {
        return Err(refuse(format!(
            "manifest: {} aggregates, more than the limit of {}",
            m.aggregates.len(),
            limits.max_aggregates
        )));
    }
    if m.person.len() > limits.max_person_inputs {
        return Err(refuse(format!(
            "manifest: {} per-person inputs, more than the limit of {}",
            m.person.len(),
            limits.max_person_inputs
        )));
    }
    let mut datasets = Vec::new();
    for d in &m.datasets {
        let input = inputs.iter().find(|i| i.name == d.name).ok_or_else(|| {
            refuse(format!(
                "dataset `{}` is declared but was not given",
                d.name
            ))
        })?;
        if d.columns.len() > limits.max_columns {
            return Err(refuse(format!(
                "dataset `{}`: {} columns, more than the limit of {}",
                d.name,
                d.columns.len(),
                limits.max_columns
            )));
        }
        let specs = input.source.columns();
        let pus: Vec<usize> = specs
            .iter()
            .enumerate()
            .filter(|(_, c)| c.role == ColumnRole::PrivacyUnit)
            .map(|(i, _)| i)
            .collect();
        if pus.len() != 1 {
            return Err(refuse(format!(
                "dataset `{}` must have exactly one privacy_unit column, it has {}",
                d.name,
                pus.len()
            )));
        }
        let mut columns = Vec::new();
        for name in &d.columns {
            let at = |m: &str| refuse(format!("column `{name}` of dataset `{}`: {m}", d.name));
            let index = specs
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| at("no such column"))?;
            let spec = &specs[index];
            match spec.role {
                ColumnRole::Identifier => return Err(at("identifier columns can never be read")),
                ColumnRole::PrivacyUnit => {
                    return Err(at("the privacy unit is never handed to a job"));
                }
                _ => {}
            }
            let wasm = wasm_type(&spec.ty)
                .filter(|_| spec.storage() != Storage::Text)
                .ok_or_else(|| at("text columns are never handed to a job"))?;
            if !input.allowed_columns.iter().any(|a| a == name) {
                return Err(at("not allowed by the agreement"));
            }
            columns.push(PlanColumn { index, wasm });
        }
        datasets.push(PlanDataset {
            name: d.name.clone(),
            input: input.clone(),
            columns,
            privacy_unit: pus[0],
        });
    }
    let index_of = |n: &str| datasets.iter().position(|d| d.name == n);
    let mut person = Vec::new();
    for p in &m.person {
        let at = |s: String| refuse(format!("per-person input `{}`: {s}", p.dataset));
        if p.max_rows > limits.max_rows_per_person_cell {
            return Err(at(format!(
                "max_rows {} is above the platform's limit of {}",
                p.max_rows, limits.max_rows_per_person_cell
            )));
        }
        if p.measures.len() > limits.max_fields {
            return Err(at(format!(
                "{} measures, more than the limit of {}",
                p.measures.len(),
                limits.max_fields
            )));
        }
        person.push(PlanPerson {
            dataset: index_of(&p.dataset).expect("checked by Manifest::check"),
            max_rows: p.max_rows,
            measures: p.measures.iter().map(PlanMeasure::of).collect(),
        });
    }
    let mut aggregates = Vec::new();
    let mut total_cells: u64 = 0;
    for a in &m.aggregates {
        let at = |s: String| refuse(format!("aggregate `{}`: {s}", a.name));
        let stage = match &a.dataset {
            Some(d) => Stage::Rows(index_of(d).expect("checked by Manifest::check")),
            None => Stage::Persons,
        };
        if a.dimensions.len() > limits.max_fields || a.measures.len() > limits.max_fields {
            return Err(at(format!(
                "more than {} dimensions or measures",
                limits.max_fields
            )));
        }
        if a.max_cells_per_person > limits.max_cells_per_person {
            return Err(at(format!(
                "max_cells_per_person {} is above the platform's limit of {}",
                a.max_cells_per_person, limits.max_cells_per_person
            )));
        }
        if a.max_rows_per_person_cell > limits.max_rows_per_person_cell {
            return Err(at(format!(
                "max_rows_per_person_cell {} is above the platform's limit of {}",
                a.max_rows_per_person_cell, limits.max_rows_per_person_cell
            )));
        }
        let mut dims = Vec::new();
        let mut cells: u64 = 1;
        for d in &a.dimensions {
            let labels = if let Some(bins) = &d.bins {
                bins.windows(2)
                    .map(|w| format!("[{},{})", w[0], w[1]))
                    .collect::<Vec<_>>()
            } else {
                let column = d.column.as_deref().unwrap_or_default();
                let ds = match (&d.dataset, stage) {
                    (Some(n), _) => datasets.iter().find(|x| &x.name == n).ok_or_else(|| {
                        at(format!("dimension `{}`: unknown dataset `{n}`", d.name))
                    })?,
                    (None, Stage::Rows(i)) => &datasets[i],
                    (None, Stage::Persons) if datasets.len() == 1 => &datasets[0],
                    (None, Stage::Persons) => {
                        return Err(at(format!("dimension `{}`: name its dataset", d.name)));
                    }
                };
                let spec = ds
                    .input
                    .source
                    .columns()
                    .iter()
                    .find(|c| c.name == column)
                    .ok_or_else(|| at(format!("dimension `{}`: no column `{column}`", d.name)))?;
                match (&spec.ty, spec.role) {
                    (ColumnType::Category { codes }, role) if !role.is_pseudonymized() => {
                        codes.clone()
                    }
                    _ => {
                        return Err(at(format!(
                            "dimension `{}`: column `{column}` is not a category column",
                            d.name
                        )));
                    }
                }
            };
            cells = cells.saturating_mul(labels.len() as u64);
            dims.push(PlanDimension {
                name: d.name.clone(),
                labels,
            });
        }
        if cells > limits.max_groups {
            return Err(PlanError::TooManyGroups(format!(
                "aggregate `{}` has {cells} cells, more than the limit of {}",
                a.name, limits.max_groups
            )));
        }
        total_cells = total_cells.saturating_add(cells);
        if total_cells > limits.max_total_cells {
            return Err(PlanError::TooManyGroups(format!(
                "the aggregates have more than {} cells together",
                limits.max_total_cells
            )));
        }
        // The strictest grade among the datasets the aggregate reads decides its policy.
        let read: Vec<usize> = match stage {
            Stage::Rows(i) => vec![i],
            Stage::Persons => person.iter().map(|p| p.dataset).collect(),
        };
        let grade = read
            .iter()
            .map(|&i| known_grade(datasets[i].input.grade))
            .max()
            .unwrap_or(1);
        let policy = limits.policy(grade);
        let measures: Vec<PlanMeasure> = a.measures.iter().map(PlanMeasure::of).collect();
        let noise = match a.epsilon {
            None => None,
            Some(e) => {
                let (lo, hi) = limits.epsilon_range;
                if !(lo..=hi).contains(&e) {
                    return Err(at(format!(
                        "epsilon {e} is outside the platform's range [{lo}, {hi}]"
                    )));
                }
                Some(noise_scales(a, &measures, e).map_err(at)?)
            }
        };
        aggregates.push(PlanAggregate {
            name: a.name.clone(),
            stage,
            dims,
            measures,
            cells,
            k: a.k.unwrap_or(0).max(limits.k_floor).max(policy.min_k),
            noise,
            max_cells_per_person: a.max_cells_per_person,
            max_rows_per_person_cell: a.max_rows_per_person_cell,
        });
    }
    // The release policy of the datasets' grades; a k below a grade's minimum is raised above
    // rather than refused.
    let grade_of = |n: &str| datasets.iter().find(|d| d.name == n).map(|d| d.input.grade);
    if let Some(r) = check_policy(m, &grade_of, limits)
        .into_iter()
        .find(|r| !matches!(r.breach, PolicyBreach::MinK { .. }))
    {
        return Err(refuse(r.to_string()));
    }
    Ok(Plan {
        datasets,
        person,
        aggregates,
    })
}

/// The exact scales of the noise of each released value: the budget is split equally between
/// the count, the distinct persons and each sum, so value `i` gets `t = Δ_i · (2 + m) / ε`.
fn noise_scales(
    a: &AggregateDecl,
    measures: &[PlanMeasure],
    epsilon: f64,
) -> Result<Noise, String> {
    let parts = 2 + measures.len() as u128;
    let l = u128::from(a.max_cells_per_person);
    let c = u128::from(a.max_rows_per_person_cell);
    let scale = |sensitivity: u128| {
        Scale::laplace(sensitivity * parts, epsilon)
            .map_err(|e| format!("the noise of epsilon {epsilon} cannot be drawn exactly: {e}"))
    };
    Ok(Noise {
        epsilon,
        count: scale(l * c)?,
        persons: scale(l)?,
        sums: measures
            .iter()
            .map(|x| scale(l * c * x.magnitude()))
            .collect::<Result<_, _>>()?,
    })
}
